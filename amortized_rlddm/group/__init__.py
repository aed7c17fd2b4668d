"""The group level: hierarchical posteriors from the per-participant networks
(:func:`~amortized_rlddm.group.fit.fit_group`) and the PyMC reference model."""

"""The exact side (the ``[pymc]`` extra): the RL-DDM with the exact WFPT likelihood in PyMC,
NUTS per participant (nutpie) and maximum likelihood."""

from ..logs import native_logs_withheld

with native_logs_withheld():  # ArviZ's import logs its backends; see amortized_rlddm.logs
    import arviz  # noqa: F401
    import pymc  # noqa: F401

"""The amortized side (Keras/BayesFlow): packing, networks, training, checkpoints and the posterior."""

from ..logs import native_logs_withheld

with native_logs_withheld():  # these imports print native log lines and notices; see amortized_rlddm.logs
    import arviz_stats  # noqa: F401
    import bayesflow  # noqa: F401
    import keras  # noqa: F401

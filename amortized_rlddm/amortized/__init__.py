"""The amortized side (Keras/BayesFlow): packing, networks, training, checkpoints and the posterior."""

from ..logs import native_logs_withheld

with native_logs_withheld():  # TensorFlow's import prints native log lines; see amortized_rlddm.logs
    import bayesflow  # noqa: F401
    import keras  # noqa: F401

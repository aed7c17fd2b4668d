"""The amortized side (Keras/BayesFlow): packing, networks, training, checkpoints and the posterior."""

from ..logs import native_logs_withheld

with native_logs_withheld():  # these imports print native log lines and notices; see amortized_rlddm.logs
    import arviz_stats  # noqa: F401
    import bayesflow  # noqa: F401
    import keras  # noqa: F401

from .checkpoint import InferenceError  # noqa: E402  (after the imports above, which withhold their logs)
from .passes import NetworkPasses  # noqa: E402
from .posterior import AmortizedPosterior  # noqa: E402
from .training import TrainingError, train  # noqa: E402

__all__ = ["AmortizedPosterior", "InferenceError", "NetworkPasses", "TrainingError", "train"]

"""amortized_rlddm: amortized Bayesian inference for reinforcement-learning drift-diffusion models.

The user API::

    from amortized_rlddm import AmortizedPosterior, simulate, read_study, loglik

    posterior = AmortizedPosterior.load("default")   # the shipped network, once
    tree = posterior.infer("data.csv")               # an xarray DataTree, as ArviZ reads it

The names load on first use, so ``import amortized_rlddm`` does not start TensorFlow.
The subpackages follow the data path: ``model`` (design, priors, simulator, exact
likelihood) -> ``data`` (the Study, CSV reading and writing) -> ``amortized`` (packing,
networks, training, the posterior) -> ``group`` (the hierarchical sampler) -> ``validation``
(diagnostics, comparison with NUTS); ``exact`` holds the PyMC model (the ``[pymc]`` extra).
"""

import importlib
import os

__version__ = "0.4.0"

# The Keras backend must be fixed before anything imports keras or bayesflow, so the package
# sets its default here. TensorFlow trains the default network 2.0x faster than JAX on CPU
# (docs/benchmarks.md); KERAS_BACKEND=jax overrides it.
DEFAULT_BACKEND = "tensorflow"
os.environ.setdefault("KERAS_BACKEND", DEFAULT_BACKEND)
# TensorFlow's and XLA's C++ log lines tell a user nothing they can act on: below the warning
# level unless RLDDM_TF_LOGS=1 (amortized_rlddm.logs withholds what this setting misses).
if os.environ.get("RLDDM_TF_LOGS", "0") != "1":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_API = {
    "AmortizedPosterior": "amortized.posterior",
    "InferenceError": "amortized.checkpoint",
    "summarize": "output",
    "save_posterior": "output",
    "simulate": "model.simulator",
    "loglik": "model.likelihood",
    "load_config": "model.config",
    "TaskDesign": "model.task",
    "LikelihoodSettings": "model.task",
    "PriorSet": "model.priors",
    "Study": "data.study",
    "read_study": "data.io",
    "write_study": "data.io",
    "DataError": "data.io",
    "fit_group": "group.fit",
    "pointwise_loglik": "model.likelihood",
    "ExactTarget": "model.target",
    "SettingOptions": "model.settings",
    "prepare_study": "model.settings",
}
__all__ = sorted(_API)


def __getattr__(name):
    if name in _API:
        value = getattr(importlib.import_module(f".{_API[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_API])

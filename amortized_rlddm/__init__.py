"""amortized_rlddm: amortized Bayesian inference for reinforcement-learning drift-diffusion models."""

import os

__version__ = "0.3.0"

# The Keras backend must be fixed before anything imports keras or bayesflow, so the package
# sets its default here. TensorFlow trains the default network 2.0x faster than JAX on CPU
# (README, "Backends"); KERAS_BACKEND=jax overrides it.
DEFAULT_BACKEND = "tensorflow"
os.environ.setdefault("KERAS_BACKEND", DEFAULT_BACKEND)

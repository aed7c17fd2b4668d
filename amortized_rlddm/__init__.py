"""amortized_rlddm: amortized Bayesian inference for reinforcement-learning drift-diffusion models."""

__version__ = "0.1.0"

"""The NumPy/Numba core: task design, priors, configs, the exact simulator, the exact
likelihood and the exact target (prior times likelihood). Importing it starts neither
TensorFlow nor PyMC."""

from .config import MODELS, Config, load_config
from .designs import NAMED_DESIGNS, named_design
from .likelihood import likelihood_function, loglik, loglik_draws, pointwise_loglik
from .priors import DUAL_RATE, SINGLE_RATE, ParameterSpace, PriorSet
from .settings import SettingOptions, prepare_study, with_settings
from .simulator import simulate, simulate_from_priors
from .target import ExactTarget
from .task import LikelihoodSettings, Pair, TaskDesign

__all__ = ["DUAL_RATE", "MODELS", "NAMED_DESIGNS", "SINGLE_RATE", "Config", "ExactTarget", "LikelihoodSettings", "Pair",
           "ParameterSpace",
           "PriorSet", "SettingOptions", "TaskDesign", "likelihood_function", "load_config", "loglik", "loglik_draws",
           "named_design", "pointwise_loglik", "prepare_study", "simulate", "simulate_from_priors", "with_settings"]

"""Posteriors made exact from a network's draws, over one exact target
(:class:`~amortized_rlddm.model.target.ExactTarget`): the PSIS check and resampling
(:mod:`.importance`), adaptive importance sampling (:mod:`.adaptive`), DE-MCz chains
(:mod:`.demcmc`) and the order they run in (:mod:`.correct`). NumPy, SciPy and arviz-stats
only: importing it starts neither TensorFlow nor PyMC."""

from .adaptive import AdaptiveResult, adaptive_importance_sampling
from .correct import check_ratios, correct_draws, min_ess
from .demcmc import DEMCMCResult, differential_evolution_mcmc
from .importance import khat_threshold, psis, resample

__all__ = ["AdaptiveResult", "DEMCMCResult", "adaptive_importance_sampling", "check_ratios", "correct_draws",
           "differential_evolution_mcmc", "khat_threshold", "min_ess", "psis", "resample"]

"""The exact side (the ``[pymc]`` extra): the RL-DDM with the exact WFPT likelihood in PyMC,
NUTS per participant (nutpie) and maximum likelihood."""

from ..logs import native_logs_withheld

with native_logs_withheld():  # ArviZ's import logs its backends; see amortized_rlddm.logs
    import arviz  # noqa: F401
    import pymc  # noqa: F401

from .logdensity import log_likelihood, t0_below_fastest_response  # noqa: E402  (after the logs are withheld)
from .mle import fit_mle  # noqa: E402
from .model import ExactPosterior, ParticipantFit, converged, posterior_tree  # noqa: E402

__all__ = ["ExactPosterior", "ParticipantFit", "converged", "fit_mle", "log_likelihood", "posterior_tree",
           "t0_below_fastest_response"]

"""A study's exact posterior as one object: the prior times the exact likelihood, on the
parameters' own scale and in the unbounded space the samplers move in.

Every correction of the networks' draws (importance sampling, its adaptive rounds, MCMC) and
the model comparison evaluate the posterior through :class:`ExactTarget`, so the prior, the
likelihood settings and the Jacobian of the transforms are put together in one place.
"""

from collections.abc import Mapping

import numpy as np

from ..data.study import Study
from .likelihood import likelihood_function
from .priors import ParameterSpace, PriorSet
from .task import LikelihoodSettings, TaskDesign

__all__ = ["ExactTarget"]


class ExactTarget:
    """The exact (unnormalised) posterior of every participant of a study.

    Parameters
    ----------
    study
        The data (its exclusions applied).
    priors
        The model's priors; their names are the model's parameters.
    settings
        The likelihood settings (:class:`~amortized_rlddm.model.task.LikelihoodSettings`, or a
        :class:`~amortized_rlddm.model.task.TaskDesign`'s): deadline, missing kind, q_init
        (the data's own column wins) and contaminants.
    t0_upper
        ``"fastest_response"``: t0's support ends at the participant's fastest response that
        enters the likelihood, where the likelihood does without contaminants; ``"prior"``:
        the prior's support (a network's choice, ``network.t0_upper`` of its config).
    fixed
        Parameters held at a value (name -> number) rather than sampled: absent from `priors`,
        they enter the likelihood as constants (an exact fit's ``fixed``, e.g. z = 0.5).

    Notes
    -----
    The unbounded space maps each parameter's support to the real line (logit, log or
    identity; :class:`~amortized_rlddm.model.priors.ParameterSpace`), the space the networks
    model the parameters in. With contaminants t0's support is the prior's either way (a
    contaminant may come before t0).
    """

    def __init__(self, study: Study, priors: PriorSet, settings: LikelihoodSettings | TaskDesign,
                 t0_upper: str = "fastest_response", fixed: Mapping[str, float] | None = None):
        if t0_upper not in ("fastest_response", "prior"):
            raise ValueError(f"t0_upper: expected 'fastest_response' or 'prior', got {t0_upper!r}")
        self.study, self.priors, self.t0_upper = study, priors, t0_upper
        self.names = tuple(priors.names)
        self.fixed = {name: float(value) for name, value in (fixed or {}).items()}
        if set(self.fixed) & set(self.names):
            raise ValueError(f"fixed parameters {sorted(set(self.fixed) & set(self.names))} also have a prior")
        self.settings = (settings.likelihood if isinstance(settings, TaskDesign) else settings).for_study(study)
        contaminated = np.full(study.n_participants, self.settings.p_outlier > 0)
        bounded_by_data = t0_upper == "fastest_response" and "t0" in self.names
        self.space = ParameterSpace.given_data(priors, study, contaminated) if bounded_by_data \
            else ParameterSpace(priors)
        self._likelihood = None  # built at the first evaluation: drawing and transforming need no likelihood
        # a value inside every prior's support: stands in where a draw lies outside it
        self._inside = {name: float(x[0]) for name, x in priors.sample(np.random.default_rng(0), 1).items()}

    @property
    def n_participants(self) -> int:
        return self.study.n_participants

    def select(self, participants) -> "ExactTarget":
        """The target of the participants at `participants` (indices into the study)."""
        return ExactTarget(self.study.select(np.asarray(participants)), self.priors, self.settings, self.t0_upper,
                           self.fixed)

    def log_likelihood(self, values: dict) -> np.ndarray:
        """(participants, draws) exact log-likelihood of name -> (participants, draws) values."""
        if self._likelihood is None:
            self._likelihood = likelihood_function(self.study, self.settings)
        sampled = {name: np.asarray(values[name], np.float64) for name in self.names}
        shape = sampled[self.names[0]].shape
        return self._likelihood(sampled | {name: np.full(shape, value) for name, value in self.fixed.items()})

    def log_posterior(self, values: dict) -> np.ndarray:
        """(participants, draws) log prior + log-likelihood of values on their own scale
        (-inf outside the support; the likelihood is not evaluated there)."""
        values = {name: np.asarray(values[name], np.float64) for name in self.names}
        log_prior = self.priors.logpdf(values).reshape(values[self.names[0]].shape)
        inside = np.isfinite(log_prior)
        if inside.all():
            return log_prior + self.log_likelihood(values)
        safe = {name: np.where(inside, x, self._inside[name]) for name, x in values.items()}  # discarded
        return np.where(inside, log_prior + self.log_likelihood(safe), -np.inf)

    def to_natural(self, y: np.ndarray) -> dict:
        """Unbounded values (participants, draws, parameters) on the parameters' own scale."""
        return self.space.inverse(y)

    def to_unbounded(self, values: dict) -> np.ndarray:
        """Values on their own scale as unbounded ones (participants, draws, parameters)."""
        return self.space.forward(values)

    def log_jacobian(self, values: dict) -> np.ndarray:
        """log |d unbounded / d natural| at the values: a density over the parameters minus this
        is the density over the unbounded space."""
        return self.space.log_abs_det_jacobian(values)

    def log_density(self, y: np.ndarray) -> np.ndarray:
        """(participants, draws) log posterior density of unbounded values y (participants,
        draws, parameters), up to each participant's log evidence."""
        values = self.to_natural(y)
        return self.log_posterior(values) - self.log_jacobian(values)

"""The hierarchical RL-DDM: each participant's parameters, on an unbounded scale, drawn from
a normal distribution per parameter whose mean is their group's and whose sd all groups
share.

The unbounded scale of a parameter is the package's transform of its prior's support
(:class:`~amortized_rlddm.model.priors.ParameterSpace`: logit of the rescaled value on an
interval, log above a lower bound, identity when unbounded):

    y_ik = transform_k(theta_ik) ~ Normal(mu_{g(i),k}, sigma_k)

Hyperpriors, per parameter: mu_gk ~ Normal(m_k, s_k) and sigma_k ~ HalfNormal(s_k), where
m_k and s_k are the mean and sd of transform_k(theta) under the per-participant prior (so the
group level starts as wide as the per-participant prior the networks were trained with).
"""

from dataclasses import dataclass

import numpy as np

from ..model.priors import ParameterSpace, PriorSet

HYPERPRIOR_DRAWS = 200_000  # prior draws that fix m_k and s_k (with HYPERPRIOR_SEED)
HYPERPRIOR_SEED = 0


@dataclass(frozen=True)
class GroupModel:
    """The hierarchical model over a per-participant prior set.

    Parameters
    ----------
    priors
        The per-participant priors: their supports give the unbounded scale, and their
        spread there the hyperpriors (see the module notes).
    groups
        The group labels, in order (one group: ``("all",)``).
    """

    priors: PriorSet
    groups: tuple = ("all",)

    @property
    def names(self) -> tuple:
        return self.priors.names

    @property
    def space(self) -> ParameterSpace:
        """The unbounded scale: each parameter's transform of its prior's support."""
        return ParameterSpace(self.priors)

    def hyperpriors(self) -> tuple[np.ndarray, np.ndarray]:
        """(m, s): per parameter, the mean and sd of the unbounded per-participant prior,
        the location and scale of mu's normal hyperprior and the scale of sigma's half-normal."""
        draws = self.priors.sample(np.random.default_rng(HYPERPRIOR_SEED), HYPERPRIOR_DRAWS)
        y = self.space.forward(draws)
        y = y[np.isfinite(y).all(axis=1)]
        return y.mean(axis=0), y.std(axis=0)

    def log_jacobian(self, values: dict) -> np.ndarray:
        """log |dy / dtheta| of natural values (any shape): the term that turns the normal
        density of y into a density over the parameters."""
        return self.space.log_abs_det_jacobian(values)

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

Optionally (`correlated`) the parameters' group normals are correlated: y_i ~ MultivariateNormal(
mu_{g(i)}, D R D), D = diag(sigma), with R ~ LKJ(LKJ_ETA) (the separation strategy of PyMC's
LKJCholeskyCov). R is parameterised by its canonical partial correlations (CPCs): z_ij, i > j,
the partial correlation of parameters i and j given parameters 0 to j - 1, whose Cholesky
factor is L_ij = z_ij sqrt(1 - sum_{k<j} L_ik^2), L_ii = sqrt(1 - sum_{k<i} L_ik^2). Under
LKJ(eta) the CPCs are independent, z_ij ~ Beta(b_j, b_j) on (-1, 1) with b_j = eta + (p - 2 - j) / 2
(Lewandowski, Kurowicka and Joe 2009, the vine method), so on w = atanh(z) the prior's log
density is sum_ij b_j log(1 - z_ij^2) up to a constant.
"""

from dataclasses import dataclass

import numpy as np

from ..model.priors import ParameterSpace, PriorSet

__all__ = ["LKJ_ETA", "GroupModel", "correlation_cholesky", "correlation_pairs", "cpc_log_prior",
           "sample_correlation_cholesky"]

HYPERPRIOR_DRAWS = 200_000  # prior draws that fix m_k and s_k (with HYPERPRIOR_SEED)
HYPERPRIOR_SEED = 0
LKJ_ETA = 2.0  # the LKJ prior's shape when the group normals are correlated: mildly toward R = I


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
    correlated
        Whether the parameters' group normals are correlated (an LKJ(LKJ_ETA) prior on their
        correlation matrix) or independent.
    """

    priors: PriorSet
    groups: tuple = ("all",)
    correlated: bool = False

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


def correlation_pairs(names) -> list:
    """The pairs (earlier, later) of parameter names below the correlation matrix's diagonal,
    row by row: the order of the CPCs and of the `rho` variable."""
    return [(names[j], names[i]) for i in range(1, len(names)) for j in range(i)]


def correlation_cholesky(cpc: np.ndarray, p: int) -> np.ndarray:
    """The Cholesky factor (..., p, p) of the correlation matrix of canonical partial
    correlations (..., p (p - 1) / 2), in the order of :func:`correlation_pairs`."""
    factor = np.zeros(cpc.shape[:-1] + (p, p))
    factor[..., 0, 0] = 1.0
    k = 0
    for i in range(1, p):
        remaining = np.ones(cpc.shape[:-1])
        for j in range(i):
            factor[..., i, j] = cpc[..., k] * np.sqrt(remaining)
            remaining = remaining - factor[..., i, j] ** 2
            k += 1
        factor[..., i, i] = np.sqrt(np.maximum(remaining, 0.0))
    return factor


def _cpc_shapes(p: int, eta: float) -> np.ndarray:
    """b_j = eta + (p - 2 - j) / 2 of each CPC (the module notes), in pair order."""
    return np.array([eta + (p - 2 - j) / 2 for i in range(1, p) for j in range(i)])


def cpc_log_prior(w: np.ndarray, p: int, eta: float = LKJ_ETA) -> np.ndarray:
    """The LKJ(eta) prior's log density (up to a constant) of w = atanh(CPCs) (..., pairs)."""
    log_one_minus_z2 = 2.0 * (np.log(2.0) - np.abs(w) - np.log1p(np.exp(-2.0 * np.abs(w))))  # log sech(w)^2
    return (_cpc_shapes(p, eta) * log_one_minus_z2).sum(-1)


def sample_correlation_cholesky(rng: np.random.Generator, p: int, eta: float = LKJ_ETA,
                                size: tuple = ()) -> np.ndarray:
    """Cholesky factors (*size, p, p) of correlation matrices drawn from LKJ(eta)."""
    shapes = _cpc_shapes(p, eta)
    return correlation_cholesky(2.0 * rng.beta(shapes, shapes, size=tuple(size) + shapes.shape) - 1.0, p)

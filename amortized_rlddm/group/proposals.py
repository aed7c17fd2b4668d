"""The group sampler's proposals: each participant's corrected (exact) posterior, given by the
package's correction of the network's draws, summarised as a defensive Student-t mixture on
the group model's unbounded scale. Its density is analytic, so the chains evaluate it at their
current values without a network pass, and its draws are independent of the network once it
is fitted."""

from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln, logsumexp

from ..correction.adaptive import fit_student_t_mixture

__all__ = ["ParticipantMixtures"]

COMPONENTS = 2  # fitted Student-t components per participant (with the wide one)
DF = 5.0  # their degrees of freedom
WIDE_SHARE = 0.1  # the defensive wide component's share
WIDE_SCALE = 3.0  # its scale: the draws' covariance times WIDE_SCALE ** 2


@dataclass(frozen=True)
class ParticipantMixtures:
    """One Student-t mixture per participant, stacked so that their densities are evaluated for
    every participant and chain at once.

    log_shares (n, K): log mixture weights, -inf for a participant's unused slots; means
    (n, K, d); inverse_cholesky (n, K, d, d): inverses of the scale matrices' lower Cholesky
    factors; log_normalisers (n, K); df (n, K).
    """

    log_shares: np.ndarray
    means: np.ndarray
    inverse_cholesky: np.ndarray
    log_normalisers: np.ndarray
    df: np.ndarray

    @classmethod
    def fit(cls, draws: np.ndarray) -> "ParticipantMixtures":
        """The mixtures fitted to each participant's equally weighted draws (n, S, d)
        (:func:`~amortized_rlddm.correction.adaptive.fit_student_t_mixture`)."""
        fitted = [fit_student_t_mixture(points, components=COMPONENTS, df=DF, wide_share=WIDE_SHARE,
                                        wide_scale=WIDE_SCALE) for points in np.asarray(draws, float)]
        n, d, slots = len(fitted), draws.shape[2], max(m.log_shares.size for m in fitted)
        log_shares = np.full((n, slots), -np.inf)
        means, df = np.zeros((n, slots, d)), np.full((n, slots), DF)
        inverse = np.broadcast_to(np.eye(d), (n, slots, d, d)).copy()
        for i, mixture in enumerate(fitted):
            k = mixture.log_shares.size
            log_shares[i, :k], means[i, :k], df[i, :k] = mixture.log_shares, mixture.means, mixture.df
            inverse[i, :k] = np.linalg.inv(mixture.cholesky)
        log_det = np.log(np.abs(np.diagonal(inverse, axis1=-2, axis2=-1))).sum(-1)  # log |L^-1|
        log_normalisers = gammaln((df + d) / 2) - gammaln(df / 2) - d / 2 * np.log(df * np.pi) + log_det
        return cls(log_shares, means, inverse, log_normalisers, df)

    @property
    def n_participants(self) -> int:
        return self.means.shape[0]

    def logpdf(self, y: np.ndarray) -> np.ndarray:
        """(..., n) log density of each participant's mixture at values y (..., n, d)."""
        standardised = np.einsum("nkde,...nke->...nkd", self.inverse_cholesky, y[..., None, :] - self.means)
        mahalanobis = np.einsum("...d,...d->...", standardised, standardised)
        d = y.shape[-1]
        terms = self.log_normalisers - (self.df + d) / 2 * np.log1p(mahalanobis / self.df)
        return logsumexp(self.log_shares + terms, axis=-1)

    def sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """(n, count, d) independent draws from each participant's mixture."""
        n, slots, d = self.means.shape
        used = np.isfinite(self.log_shares).sum(axis=1)  # each participant's components fill the first slots
        bounds = np.cumsum(np.exp(self.log_shares), axis=1)[:, None, :-1]
        component = np.minimum((rng.random((n, count, 1)) > bounds).sum(-1), used[:, None] - 1)  # (n, count)
        cholesky = np.linalg.inv(self.inverse_cholesky)
        normal = rng.standard_normal((n, count, d))
        draws = np.empty((n, count, d))
        for k in range(slots):
            chosen = component == k
            scaled = np.einsum("nde,nse->nsd", cholesky[:, k], normal)
            scaled /= np.sqrt(rng.chisquare(self.df[:, k, None], (n, count)) / self.df[:, k, None])[..., None]
            draws = np.where(chosen[..., None], self.means[:, k, None] + scaled, draws)
        return draws

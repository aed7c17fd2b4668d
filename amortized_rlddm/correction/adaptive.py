"""Adaptive multiple importance sampling (AMIS; Cornuet et al. 2012, after the population Monte
Carlo of Cappe et al. 2004) that corrects a neural posterior estimator's draws where PSIS says
they are off, in an unconstrained space R^d, for many participants at once.

Round 0 is the flow's own draws with the flow's density. Each later round fits a mixture of
multivariate Student-t distributions to the importance-weighted draws of all rounds so far,
widens it with a heavy-tailed defensive component, and draws new points from it. Every draw of
every round is then weighted by the deterministic mixture (balance heuristic) of all the
rounds' proposals, so the weights of past draws improve as later proposals cover the target,
and Pareto-smoothed importance sampling (:func:`~amortized_rlddm.correction.importance.psis`)
judges the result. A participant stops when its k-hat is below the threshold and its effective
sample size reaches the requested one.

The module itself needs NumPy, SciPy and the PSIS of :mod:`.importance`; the target and the
flow's density come in as functions.
"""

from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln

from .importance import khat_threshold, psis
from .importance import resample as resample_by_weights

__all__ = ["AdaptiveResult", "StudentTMixture", "adaptive_importance_sampling", "deterministic_mixture_log_weights",
           "fit_student_t_mixture"]

# The defensive wide component's degrees of freedom: heavy tails that cover what the fit misses.
WIDE_DF = 3.0
# Ridge added to every fitted scale matrix, relative to the overall weighted variance per
# coordinate: it keeps the matrices positive definite without changing their shape.
RIDGE = 1e-4
# Weighted EM of the Student-t mixture: at most this many steps, stopping earlier when the
# weighted log-likelihood improves by less than EM_TOLERANCE per unit weight.
EM_STEPS = 50
EM_TOLERANCE = 1e-6
# A component whose share of the weight falls below this is dropped during EM.
MIN_COMPONENT_SHARE = 1e-3
# Effective draws per fitted parameter a mixture component needs (a component has d + d(d+1)/2
# parameters); below components x that, the fit falls back to one inflated component.
ESS_PER_PARAMETER = 2.0
# The fallback component's scale matrix is the weighted covariance times FALLBACK_INFLATION ** 2.
FALLBACK_INFLATION = 2.0
# The fitted components propose with their scale matrices times FIT_INFLATION ** 2: a proposal
# wider than the weighted draws explores the tails that the draws so far under-represent
# (importance sampling fails with too narrow a proposal, and only loses some efficiency with a
# too wide one).
FIT_INFLATION = 1.5


@dataclass(frozen=True)
class StudentTMixture:
    """A mixture of multivariate Student-t distributions in R^d.

    log_shares (K,): the log mixture weights (summing to 1 in probability); means (K, d);
    cholesky (K, d, d): lower Cholesky factors of the scale matrices; df (K,): degrees of freedom.
    """

    log_shares: np.ndarray
    means: np.ndarray
    cholesky: np.ndarray
    df: np.ndarray

    @classmethod
    def from_scales(cls, shares, means, scales, df) -> "StudentTMixture":
        """The mixture with weights `shares` (K,), `means` (K, d), scale matrices `scales`
        (K, d, d) (positive definite) and degrees of freedom `df` (K,)."""
        shares = np.asarray(shares, float)
        return cls(np.log(shares / shares.sum()), np.asarray(means, float), np.linalg.cholesky(np.asarray(scales)),
                   np.asarray(df, float))

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def component_logpdf(self, points: np.ndarray) -> np.ndarray:
        """(K, N) log density of each component (without its mixture weight) at points (N, d)."""
        return np.stack([_student_t_terms(points, mean, chol, df)[0]
                         for mean, chol, df in zip(self.means, self.cholesky, self.df, strict=True)])

    def logpdf(self, points: np.ndarray) -> np.ndarray:
        """(N,) log density of the mixture at points (N, d)."""
        return _logsumexp(self.log_shares[:, None] + self.component_logpdf(points), axis=0)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, d) independent draws from the mixture, in random order."""
        counts = rng.multinomial(n, np.exp(self.log_shares - _logsumexp(self.log_shares, axis=0)))
        parts = []
        for count, mean, chol, df in zip(counts, self.means, self.cholesky, self.df, strict=True):
            normal = rng.standard_normal((count, self.dim)) @ chol.T
            parts.append(mean + normal / np.sqrt(rng.chisquare(df, count) / df)[:, None])
        return rng.permutation(np.concatenate(parts))


def _logsumexp(x, axis):
    """log(sum(exp(x))) along `axis`, -inf where every term is -inf (NumPy alone: SciPy's
    version costs more than the sums themselves on the small arrays here)."""
    top = np.max(x, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.sum(np.exp(x - top), axis=axis)) + np.squeeze(top, axis=axis)


def _student_t_terms(points, mean, chol, df):
    """(N,) log density of a multivariate Student-t with scale matrix chol chol^T at points
    (N, d), and (N,) the points' Mahalanobis distances (squared) under that scale."""
    d = points.shape[1]
    # (y - mean) L^-T: a d x d inverse and a matrix product beat a triangular solve with N right-hand sides
    # (NumPy's inverse, not SciPy's LAPACK, whose separate BLAS thread pool stalls on tiny matrices)
    standardised = (points - mean) @ np.linalg.inv(chol).T
    mahalanobis = np.einsum("nd,nd->n", standardised, standardised)
    log_normaliser = (gammaln((df + d) / 2) - gammaln(df / 2) - d / 2 * np.log(df * np.pi)
                      - np.log(np.diag(chol)).sum())
    return log_normaliser - (df + d) / 2 * np.log1p(mahalanobis / df), mahalanobis


def deterministic_mixture_log_weights(log_target: np.ndarray, log_proposals: np.ndarray,
                                      counts) -> np.ndarray:
    """Deterministic-mixture (balance heuristic) log importance weights.

    Parameters
    ----------
    log_target : numpy.ndarray
        (..., N) unnormalised log target density at all N draws of all proposals; -inf allowed.
    log_proposals : numpy.ndarray
        (..., T, N) log density of each of the T proposals at every one of the N draws (not
        only its own).
    counts : array_like
        (T,) how many of the N draws each proposal generated (summing to N).

    Returns
    -------
    numpy.ndarray
        (..., N) log w(y) = log target(y) - log(sum_t N_t q_t(y) / N), unnormalised; -inf where
        the target is -inf. With draws from proposal t counted N_t times, the self-normalised
        estimator sum_i w_i f(y_i) / sum_i w_i is consistent for the target's expectation of f.
    """
    counts = np.asarray(counts, float)
    if log_proposals.shape[-2] != counts.size or log_proposals.shape[-1] != log_target.shape[-1]:
        raise ValueError(f"log_proposals {log_proposals.shape} does not match {counts.size} proposals and "
                         f"{log_target.shape[-1]} draws")
    log_mixture = _logsumexp(log_proposals + np.log(counts)[:, None], axis=-2) - np.log(counts.sum())
    return np.where(np.isneginf(log_target), -np.inf, log_target - log_mixture)


@dataclass(frozen=True)
class AdaptiveResult:
    """What :func:`adaptive_importance_sampling` returns, per participant (P of them).

    draws (P, N, d): every participant's draws of all its rounds, padded with zeros to the
    largest count N; mask (P, N): which entries are draws; log_weights (P, N): the normalised
    PSIS-smoothed log weights (-inf on padding and where the target is -inf); khat, ess,
    log_evidence (P,): PSIS's k-hat, the smoothed weights' effective sample size and the
    importance-sampling estimate of the log normalising constant of the target; rounds (P,):
    adaptive rounds run after the flow's round 0; evaluations (P,): calls of the log target
    per draw, all rounds together (the flow's density was evaluated at every draw after
    round 0 as well); converged (P,); reason (P,): "" for a converged participant, otherwise
    why not; khat_threshold (P,): the threshold each k-hat was judged against; min_ess.
    """

    draws: np.ndarray
    mask: np.ndarray
    log_weights: np.ndarray
    khat: np.ndarray
    ess: np.ndarray
    log_evidence: np.ndarray
    rounds: np.ndarray
    evaluations: np.ndarray
    converged: np.ndarray
    reason: tuple
    khat_threshold: np.ndarray
    min_ess: int

    def resample(self, n: int, rng: np.random.Generator, participants=None) -> np.ndarray:
        """(len(participants), n, d) draws of each participant resampled by its weights.

        Stratified resampling with replacement
        (:func:`amortized_rlddm.correction.importance.resample`), so each draw is the target's
        in distribution as far as the weights are right. participants: indices (default all);
        a participant whose weights are all zero (a target -inf at every draw) cannot be
        resampled and raises ValueError.
        """
        chosen = np.arange(self.draws.shape[0]) if participants is None else np.asarray(participants, int)
        empty = [int(i) for i in chosen if not np.isfinite(self.log_weights[i]).any()]
        if empty:
            raise ValueError(f"participants {empty} have no draw with positive weight ({self.reason[empty[0]]})")
        out = np.empty((chosen.size, n, self.draws.shape[2]))
        for row, i in enumerate(chosen):
            valid = self.mask[i]
            out[row] = resample_by_weights({"y": self.draws[i, valid]}, self.log_weights[i, valid], n, rng)["y"]
        return out


def adaptive_importance_sampling(log_target, log_flow, draws0, log_q0, *, draws, rng, max_rounds=8, round_size=None,
                                 flow_weight=0.1, wide_weight=0.1, wide_scale=3.0, df=5.0, components=2,
                                 min_ess=None) -> AdaptiveResult:
    """Correct a flow's posterior draws by adaptive multiple importance sampling.

    Parameters
    ----------
    log_target : callable
        ``log_target(y, participants)`` with y (R, M, d) and participants an int array (R,)
        of which participants (rows of `draws0`) the rows of y belong to; returns (R, M), the
        unnormalised log posterior density in the unconstrained space (Jacobian included).
        -inf is allowed (weight 0); NaN and +inf are read as -inf, as PSIS does. It is called
        once per round, for all participants still running together.
    log_flow : callable
        ``log_flow(y, participants)``, likewise: the flow's (round 0 proposal's) log density at
        arbitrary points, normalised and consistent with `log_q0`. Called once per round on
        that round's new draws.
    draws0 : numpy.ndarray
        (P, S0, d) the flow's draws, S0 >= 25 (PSIS needs them).
    log_q0 : numpy.ndarray
        (P, S0) the flow's log density at them (finite).
    draws : int
        The number of posterior draws the caller wants; sets the default `round_size` and `min_ess`.
    rng : numpy.random.Generator
        Spawned into one stream per participant, so a participant's result depends only on
        its own inputs and stream (not on which others run beside it).
    max_rounds : int
        Adaptive rounds after round 0, at most.
    round_size : int, optional
        New draws per round and participant (default `draws`).
    flow_weight, wide_weight : float
        The defensive mixture's shares: proposal = (1 - flow_weight - wide_weight) x fitted +
        flow_weight x flow + wide_weight x wide. New flow draws would need the network, so a
        round draws from the fitted and wide components only, renormalised (wide's share is
        wide_weight / (1 - flow_weight)); the flow stays in the deterministic mixture through
        round 0, whose S0 draws are the flow's. The densities entering the weights are exactly
        those of the mixtures the draws came from.
    wide_scale : float
        The wide component is a Student-t with df 3 centred on the weighted mean, its scale
        matrix the weighted covariance times wide_scale ** 2.
    df : float
        Degrees of freedom of the fitted mixture's Student-t components.
    components : int
        Components of the fitted mixture (fewer when the effective sample size cannot support
        them: see Notes).
    min_ess : int, optional
        Effective sample size at which a participant stops (default max(400, draws // 2)).

    Returns
    -------
    AdaptiveResult
        Per participant: all draws with their normalised PSIS-smoothed log weights, k-hat,
        ESS, rounds, target evaluations, whether it converged (k-hat <= the threshold for its
        number of draws and ESS >= `min_ess`) and, if not, why.

    Notes
    -----
    Each round's mixture is fitted to the draws of all rounds, weighted by their PSIS-smoothed
    weights. While those weights' ESS is below ``2 x components x p``, p = d + d(d+1)/2 the
    parameters of one component, one component is fitted: the weighted mean, and the
    weighted covariance times 2 ** 2 as its scale matrix. Otherwise a weighted EM for a
    Student-t mixture with fixed df (latent-scale E-step) runs up to 50 steps, starting from
    the previous round's fit or, the first time, from means spread along the principal axis
    over +-1 sd; its components propose with their scales inflated by 1.5 ** 2, so that the
    proposal is wider than the weighted draws. For the fit only (never for the estimates),
    weights whose ESS is below 2p have their 2p largest clipped to the 2p-th largest, which
    guarantees that ESS (nonlinear PMC, Koblents and Miguez 2015). Every scale matrix gets a
    ridge of 1e-4 x the weighted variance per coordinate, so it stays positive definite.

    Re-weighting past draws by later proposals that depended on them makes AMIS consistent
    in practice but not under the plain importance-sampling theory (Marin, Pudlo and Sedki
    2019). k-hat and ESS judge the draws that were made and cannot see a region that no
    proposal reached: early rounds on a curved posterior can pass with k-hat low and the
    variances along the curve still short (a few Student-t components approximate a thin
    banana poorly, and its arms' draws then carry the largest weights); more `components`
    and more rounds are the remedies.
    """
    draws0 = np.asarray(draws0, float)
    log_q0 = np.asarray(log_q0, float)
    if draws0.ndim != 3 or log_q0.shape != draws0.shape[:2]:
        raise ValueError(f"draws0 must be (participants, draws, d) and log_q0 (participants, draws), got "
                         f"{draws0.shape} and {log_q0.shape}")
    n_participants, n_initial, _ = draws0.shape
    if n_initial < 25:
        raise ValueError(f"PSIS needs at least 25 initial draws per participant, got {n_initial}")
    if not np.isfinite(log_q0).all() or not np.isfinite(draws0).all():
        raise ValueError("draws0 and log_q0 must be finite (a flow draw has a finite density)")
    if not (flow_weight >= 0 and wide_weight > 0 and flow_weight + wide_weight < 1):
        raise ValueError(f"need flow_weight >= 0, wide_weight > 0 and flow_weight + wide_weight < 1, got "
                         f"{flow_weight} and {wide_weight}")
    if components < 1 or max_rounds < 0 or draws < 1:
        raise ValueError("components and draws must be >= 1 and max_rounds >= 0")
    round_size = int(draws if round_size is None else round_size)
    min_ess = int(max(400, draws // 2) if min_ess is None else min_ess)
    fitted_share = (1.0 - flow_weight - wide_weight) / (1.0 - flow_weight)
    streams = rng.spawn(n_participants)

    everyone = np.arange(n_participants)
    initial_target = _checked_target(log_target(draws0, everyone), draws0.shape[:2], "log_target")
    states = [_Participant(draws0[i], initial_target[i], log_q0[i][None]) for i in everyone]
    for state in states:
        state.assess(min_ess)
        if not np.isfinite(state.log_target).any():
            state.stop("log target -inf at every draw")
        elif state.converged:
            state.stop("")

    for _ in range(max_rounds):
        running = np.asarray([i for i, state in enumerate(states) if not state.done], int)
        if running.size == 0:
            break
        proposals = [_round_proposal(states[i], components, df, wide_scale, fitted_share) for i in running]
        new = np.stack([proposal.sample(round_size, streams[i])
                        for proposal, i in zip(proposals, running, strict=True)])
        new_target = _checked_target(log_target(new, running), new.shape[:2], "log_target")
        new_flow = np.asarray(log_flow(new, running), float)
        if new_flow.shape != new.shape[:2] or np.isnan(new_flow).any():
            raise ValueError(f"log_flow must return {new.shape[:2]} log densities without NaN")
        for row, i in enumerate(running):
            states[i].add_round(proposals[row], new[row], new_target[row], new_flow[row])
            states[i].assess(min_ess)
            if states[i].converged:
                states[i].stop("")

    for state in states:
        if not state.done:
            state.stop(f"max_rounds ({max_rounds}) reached with k-hat {state.khat:.2f} (threshold "
                       f"{state.threshold:.2f}) and ESS {state.ess:.0f} (min_ess {min_ess})")
    return _collect(states, n_initial, round_size, min_ess)


class _Participant:
    """One participant's draws of all rounds, the log density of every round's proposal at
    every draw, and its PSIS assessment. Invariant: log_proposals has one row per round (row 0
    the flow) and one column per draw; counts[t] draws came from round t."""

    def __init__(self, points, log_target, log_flow):
        self.points, self.log_target, self.log_proposals = points, log_target, log_flow
        self.counts = [points.shape[0]]
        self.proposals = []  # the mixtures of rounds 1, 2, ...
        self.fit = None  # the last EM fit (shares, means, scales), where the next one starts
        self.done, self.converged, self.reason = False, False, ""

    def add_round(self, proposal, points, log_target, log_flow):
        """Append a round's draws; fill in the new proposal's density at the old draws and
        every proposal's density (the flow's from log_flow) at the new ones."""
        at_new = np.stack([log_flow] + [past.logpdf(points) for past in self.proposals] + [proposal.logpdf(points)])
        at_old = proposal.logpdf(self.points)
        self.log_proposals = np.concatenate([np.vstack([self.log_proposals, at_old]), at_new], axis=1)
        self.points = np.concatenate([self.points, points])
        self.log_target = np.concatenate([self.log_target, log_target])
        self.counts.append(points.shape[0])
        self.proposals.append(proposal)

    def assess(self, min_ess):
        """PSIS of the deterministic-mixture weights of all draws."""
        self.raw_log_weights = deterministic_mixture_log_weights(self.log_target, self.log_proposals, self.counts)
        self.threshold = khat_threshold(self.points.shape[0])
        if not np.isfinite(self.raw_log_weights).any():
            self.log_weights = np.full(self.points.shape[0], -np.inf)
            self.khat, self.ess, self.log_evidence = np.inf, 0.0, -np.inf
        else:
            result = psis(self.raw_log_weights[None])
            khat = float(result["khat"].values[0])
            self.khat = khat if np.isfinite(khat) else np.inf  # no NaN k-hat: an unfittable tail fails
            self.ess = float(result["ess"].values[0])
            self.log_evidence = float(result["log_evidence"].values[0])
            # PSIS gives draws the target rules out a weight of exp(-1e300); they are exactly 0
            self.log_weights = np.where(np.isfinite(self.raw_log_weights), result["log_weights"].values[0], -np.inf)
        self.converged = bool(self.khat <= self.threshold and self.ess >= min_ess)

    def stop(self, reason):
        self.done, self.reason = True, reason

    @property
    def rounds(self):
        return len(self.proposals)


def _checked_target(values, shape, name):
    """The target's log densities as floats of the expected shape, NaN and +inf read as -inf."""
    values = np.asarray(values, float)
    if values.shape != shape:
        raise ValueError(f"{name} returned shape {values.shape}, expected {shape}")
    return np.where(np.isnan(values) | np.isposinf(values), -np.inf, values)


def _round_proposal(state, components, df, wide_scale, fitted_share):
    """The next round's proposal: the fitted mixture (share fitted_share) and the wide
    Student-t around the weighted mean (the rest)."""
    proposal, state.fit = _fitted_mixture(state.points, np.exp(state.log_weights), state.ess, components, df,
                                          wide_scale, fitted_share, state.fit)
    return proposal


def fit_student_t_mixture(points: np.ndarray, weights: np.ndarray | None = None, *, components: int = 2,
                          df: float = 5.0, wide_share: float = 0.1, wide_scale: float = 3.0) -> StudentTMixture:
    """A defensive Student-t mixture proposal fitted to (weighted) draws, as each adaptive
    round fits one (see :func:`adaptive_importance_sampling`'s Notes).

    Parameters
    ----------
    points : numpy.ndarray
        (N, d) draws.
    weights : numpy.ndarray, optional
        (N,) their non-negative importance weights (default: equal).
    components : int
        Components of the fitted part (fewer when the weights' ESS cannot support them).
    df : float
        Their degrees of freedom.
    wide_share, wide_scale : float
        The defensive component's share, and its scale matrix as the weighted covariance
        times wide_scale ** 2 (a Student-t with df 3 around the weighted mean).

    Returns
    -------
    StudentTMixture
        The fitted components (scales inflated by 1.5 ** 2) with share 1 - wide_share, and the
        wide component.
    """
    points = np.asarray(points, float)
    weights = np.ones(points.shape[0]) if weights is None else np.asarray(weights, float)
    if points.ndim != 2 or weights.shape != points.shape[:1] or not (weights >= 0).all() or not weights.any():
        raise ValueError(f"need points (N, d) and N non-negative weights, not all zero; got {points.shape} and "
                         f"{weights.shape}")
    if not 0 < wide_share < 1:
        raise ValueError(f"wide_share must lie in (0, 1), got {wide_share}")
    ess = weights.sum() ** 2 / np.sum(weights ** 2)
    return _fitted_mixture(points, weights, ess, components, df, wide_scale, 1.0 - wide_share, None)[0]


def _fitted_mixture(points, weights, ess, components, df, wide_scale, fitted_share, start):
    """The defensive mixture fitted to weighted points, and the EM fit (shares, means, scales)
    a later fit may start from (`start`; None where one inflated component stood in)."""
    dim = points.shape[1]
    parameters = dim + dim * (dim + 1) / 2  # of one Student-t component
    fit_weights = _clipped(weights, int(np.ceil(ESS_PER_PARAMETER * parameters)))
    mean, covariance = _weighted_moments(points, fit_weights)
    ridge = RIDGE * _reference_variance(covariance, points)
    covariance = covariance + np.diag(ridge)
    if ess < ESS_PER_PARAMETER * parameters * components:
        shares, means, scales = np.ones(1), mean[None], (FALLBACK_INFLATION ** 2 * covariance)[None]
        fit = start
    else:
        fit = _fit_em(points, fit_weights, components, df, covariance, ridge, start)
        shares, means, scales = fit
        scales = scales * FIT_INFLATION ** 2
    mixture = StudentTMixture.from_scales(np.append(fitted_share * shares, 1.0 - fitted_share),
                                          np.vstack([means, mean]),
                                          np.concatenate([scales, (wide_scale ** 2 * covariance)[None]]),
                                          np.append(np.full(shares.size, df), WIDE_DF))
    return mixture, fit


def _clipped(weights, count):
    """Normalised weights with the `count` largest clipped to the count-th largest, when their
    effective sample size is below count: the clipped weights' ESS is then at least
    min(count, the number of positive weights). Used for fitting proposals only."""
    total = weights.sum()
    weights = weights / total
    positive = np.count_nonzero(weights)
    if 1.0 / np.sum(weights ** 2) >= count or positive <= 1:
        return weights
    cap = np.sort(weights)[::-1][min(count, positive) - 1]
    clipped = np.minimum(weights, cap)
    return clipped / clipped.sum()


def _weighted_moments(points, weights):
    """Mean (d,) and covariance (d, d) of points under normalised weights."""
    mean = weights @ points
    centred = points - mean
    return mean, (weights[:, None] * centred).T @ centred


def _reference_variance(covariance, points):
    """Per-coordinate variance setting the ridge's scale: the weighted variance, or the
    draws' unweighted variance (or 1) where the weighted one is degenerate."""
    variance = np.diag(covariance).copy()
    fallback = points.var(axis=0)
    fallback = np.where(fallback > 0, fallback, 1.0)
    degenerate = ~(variance > 1e-12 * fallback)
    variance[degenerate] = fallback[degenerate]
    return variance


def _fit_em(points, weights, components, df, covariance, ridge, start=None):
    """Weighted EM for a Student-t mixture with fixed df: shares (K,), means (K, d) and scale
    matrices (K, d, d). Starts from means spread along the principal axis over +-1 sd, each
    with the weighted covariance as its scale; drops components whose share falls below
    MIN_COMPONENT_SHARE."""
    dim = points.shape[1]
    positive = weights > 0
    points, weights = points[positive], weights[positive]
    if start is not None and start[0].size == components:
        shares, means, scales = start
    else:
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        offsets = np.linspace(-1.0, 1.0, components) if components > 1 else np.zeros(1)
        means = weights @ points + np.sqrt(eigenvalues[-1]) * offsets[:, None] * eigenvectors[:, -1]
        scales = np.repeat(covariance[None], components, axis=0)
        shares = np.full(components, 1.0 / components)
    previous = -np.inf
    for _ in range(EM_STEPS):
        terms = [_student_t_terms(points, mean, np.linalg.cholesky(scale), df)
                 for mean, scale in zip(means, scales, strict=True)]
        log_joint = np.log(shares)[:, None] + np.stack([log_density for log_density, _ in terms])
        log_mixture = _logsumexp(log_joint, axis=0)
        responsibility = np.exp(log_joint - log_mixture) * weights  # (K, N); sums over K to the weights
        # the latent precision scales' conditional means, E[u | y, k] = (df + d) / (df + Mahalanobis)
        scaled = responsibility * (df + dim) / (df + np.stack([mahalanobis for _, mahalanobis in terms]))
        mass = responsibility.sum(axis=1)
        keep = mass >= MIN_COMPONENT_SHARE
        responsibility, scaled, mass = responsibility[keep], scaled[keep], mass[keep]
        means = (scaled @ points) / scaled.sum(axis=1)[:, None]
        scales = np.stack([(s[:, None] * (points - m)).T @ (points - m) / total + np.diag(ridge)
                           for s, m, total in zip(scaled, means, mass, strict=True)])
        shares = mass / mass.sum()
        objective = float(weights @ log_mixture)  # of the parameters before this step's update
        if objective - previous < EM_TOLERANCE:
            break
        previous = objective
    return shares, means, scales


def _collect(states, n_initial, round_size, min_ess):
    """The per-participant states as one AdaptiveResult, draws padded to the longest."""
    count = np.asarray([state.points.shape[0] for state in states])
    n_participants, longest, dim = len(states), count.max(), states[0].points.shape[1]
    draws = np.zeros((n_participants, longest, dim))
    log_weights = np.full((n_participants, longest), -np.inf)
    mask = np.arange(longest) < count[:, None]
    for i, state in enumerate(states):
        draws[i, :count[i]] = state.points
        log_weights[i, :count[i]] = state.log_weights
    rounds = np.asarray([state.rounds for state in states])
    return AdaptiveResult(
        draws=draws, mask=mask, log_weights=log_weights,
        khat=np.asarray([state.khat for state in states]), ess=np.asarray([state.ess for state in states]),
        log_evidence=np.asarray([state.log_evidence for state in states]), rounds=rounds,
        evaluations=n_initial + rounds * round_size, converged=np.asarray([state.converged for state in states]),
        reason=tuple(state.reason for state in states),
        khat_threshold=np.asarray([state.threshold for state in states]), min_ess=min_ess)

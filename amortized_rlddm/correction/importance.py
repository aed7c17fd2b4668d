"""The per-participant check of amortized draws against the exact posterior: Pareto-smoothed
importance sampling (PSIS) with the flow's density as the proposal and the exact likelihood
times the prior as the target.

For each participant the log importance ratios are log p(theta) + log p(data | theta) -
log q(theta | data) over the draws; ArviZ's PSIS smooths their largest values with a
generalized Pareto fit whose shape k-hat says whether the weights can be trusted: below
min(1 - 1 / log10(S), 0.7) for S draws (Vehtari et al. 2024), the importance-sampling
estimates (and the draws resampled by the weights) approach the exact posterior's.
Refinement resamples the requested number of draws by the weights
(:mod:`~amortized_rlddm.correction.correct`). The pointwise log-likelihood of the draws
(:func:`pointwise_group`) gives each participant's PSIS-LOO (:func:`participant_loo`), with
the approximate-posterior correction for the flow's own draws.
"""

import warnings

import arviz_stats
import numpy as np
import xarray as xr
from arviz_stats.base import array_stats
from scipy.special import logsumexp

from ..data.study import Study
from ..model.likelihood import likelihood_function

# a log ratio of -inf (a draw the target rules out) enters PSIS as this: weight 0, and finite
IMPOSSIBLE = -1e300
# ArviZ fits the Pareto tail to ceil(min(S / 5, 3 sqrt(S))) draws and needs 5 of them
MIN_DRAWS = 25


def khat_threshold(draws):
    """ArviZ's Pareto k-hat threshold for `draws` importance-sampling draws (a number or an
    array of them)."""
    threshold = np.minimum(1.0 - 1.0 / np.log10(np.asarray(draws, float)), 0.7)
    return float(threshold) if threshold.ndim == 0 else threshold


def psis(log_ratios: np.ndarray) -> xr.Dataset:
    """PSIS of each participant's log ratios (participants, draws).

    Returns
    -------
    xarray.Dataset
        Per participant: ``khat``; ``ess`` (the effective sample size of the smoothed
        weights); ``log_evidence`` (the importance-sampling estimate of log p(data), from the
        raw ratios) and its Monte Carlo standard error ``log_evidence_se``; ``above_threshold``
        (k-hat above :func:`khat_threshold`); and ``log_weights`` (participant, draw), the
        normalised smoothed log weights. A participant whose tail cannot be fitted (its
        largest weights all equal) gets its raw weights and k-hat = inf, or 0 when all its
        weights are equal (the proposal is the target).
    """
    draws = log_ratios.shape[1]
    if draws < MIN_DRAWS:
        raise ValueError(f"PSIS needs at least {MIN_DRAWS} draws per participant (its Pareto fit needs 5 "
                         f"in the tail), got {draws}")
    ratios = np.where(np.isfinite(log_ratios), log_ratios, IMPOSSIBLE)
    smoothed, khat = np.empty_like(ratios), np.empty(ratios.shape[0])
    for i, row in enumerate(ratios):
        try:  # ArviZ smooths the right tail of -ary (it is written for PSIS-LOO's -log-likelihood)
            smoothed[i], khat[i] = array_stats.psislw(-row, r_eff=1.0, axis=-1)
        except ValueError:  # a tail of equal weights cannot be fitted: exact weights if every weight is equal
            exact = row[0] > IMPOSSIBLE and np.ptp(row) == 0
            smoothed[i], khat[i] = row, 0.0 if exact else np.inf
    log_weights = smoothed - logsumexp(smoothed, axis=-1, keepdims=True)
    ess = 1.0 / np.exp(logsumexp(2.0 * log_weights, axis=-1))
    log_evidence = logsumexp(ratios, axis=-1) - np.log(draws)
    raw = np.exp(ratios - ratios.max(axis=-1, keepdims=True))
    log_evidence_se = raw.std(axis=-1, ddof=1) / np.sqrt(draws) / raw.mean(axis=-1)  # delta method
    threshold = khat_threshold(draws)
    return xr.Dataset({"khat": (("participant",), np.asarray(khat, float)), "ess": (("participant",), ess),
                       "log_evidence": (("participant",), log_evidence),
                       "log_evidence_se": (("participant",), log_evidence_se),
                       "above_threshold": (("participant",), np.asarray(khat) > threshold),
                       "log_weights": (("participant", "draw"), log_weights)},
                      attrs={"khat_threshold": threshold, "method": "PSIS (arviz-stats), exact likelihood x prior "
                                                                     "over the flow's density"})


def resample(values: dict, log_weights: np.ndarray, draws: int, rng: np.random.Generator) -> dict:
    """`draws` draws of one participant taken by their normalised importance weights:
    stratified resampling (one uniform in each of `draws` equal slices of the weights' CDF),
    with replacement, so each draw is the target's in distribution; returned in random order.

    values: name -> (proposals,) arrays; log_weights: (proposals,)."""
    weights = np.exp(log_weights - logsumexp(log_weights))
    cumulative = np.cumsum(weights)
    points = (np.arange(draws) + rng.random(draws)) / draws * cumulative[-1]
    chosen = rng.permutation(np.minimum(np.searchsorted(cumulative, points, side="right"), weights.size - 1))
    return {name: x[chosen] for name, x in values.items()}


def pointwise_group(study: Study, values: dict, settings) -> xr.Dataset:
    """The ``log_likelihood`` group of a posterior: ``choice_rt`` (chain, draw, obs), each
    trial's log-likelihood given its history under each draw, over the trials that enter the
    likelihood, with coordinates ``participant`` and ``trial`` (1-based) along obs.

    values: name -> (participants, draws) draws of the model's parameters; settings: the
    likelihood's (:class:`~amortized_rlddm.model.task.LikelihoodSettings`)."""
    terms = likelihood_function(study, settings)(values, pointwise=True)  # (participants, draws, trials)
    scored = ~np.isnan(terms[:, 0, :])
    rows, trials = np.nonzero(scored)
    participants = np.asarray([str(p) for p in study.participant])
    return xr.Dataset({"choice_rt": (("chain", "draw", "obs"), terms[rows, :, trials].T[None])},
                      coords={"chain": [0], "draw": np.arange(terms.shape[1]), "obs": np.arange(rows.size),
                              "participant": ("obs", participants[rows]), "trial": ("obs", trials + 1)})


def pointwise_elpd(log_likelihood: xr.Dataset, log_corrections: np.ndarray, participants) -> tuple:
    """Each trial's PSIS-LOO elpd and Pareto k (arviz-stats), as arrays along obs.

    log_likelihood: a :func:`pointwise_group`. participants: the ids, in the study's order.
    log_corrections: (participants, draws), in that order, log p(theta | data) - log q(theta)
    up to a constant per participant for draws from an approximate posterior q (zeros for
    posterior draws); each trial gets its own participant's correction, as
    :func:`arviz_stats.loo_approximate_posterior` prescribes.
    """
    index = _owner_index(log_likelihood, participants)
    per_obs = xr.DataArray(log_corrections[index].T[None], dims=("chain", "draw", "obs"))
    tree = xr.DataTree.from_dict({"log_likelihood": log_likelihood})
    try:
        with warnings.catch_warnings():  # they concern pointwise k-hats, which the callers report
            warnings.simplefilter("ignore")
            result = arviz_stats.loo_approximate_posterior(tree, log_p=per_obs, log_q=xr.zeros_like(per_obs),
                                                           pointwise=True, var_name="choice_rt")
        return result.elpd_i.values, result.pareto_k.values
    except ValueError:  # some trial's largest ratios are all equal: no Pareto tail to fit
        return _elpd_trial_by_trial(log_likelihood["choice_rt"].values[0], log_corrections[index].T)


def _elpd_trial_by_trial(log_lik, corrections):
    """The PSIS-LOO elpd and Pareto k of each trial, log_lik and corrections (draws, obs), with
    the raw weights (and k = inf) where the tail of a trial's ratios cannot be fitted, as
    where a contaminant-only response is faster than most draws' t0."""
    elpd, khat = np.empty(log_lik.shape[1]), np.empty(log_lik.shape[1])
    for j in range(log_lik.shape[1]):
        ratios = corrections[:, j] - log_lik[:, j]
        ratios = ratios - ratios.max()
        try:
            log_weights, khat[j] = array_stats.psislw(-ratios, r_eff=1.0)
        except ValueError:
            log_weights, khat[j] = ratios, np.inf
        elpd[j] = logsumexp(log_lik[:, j] + log_weights - logsumexp(log_weights))
    return elpd, khat


def _owner_index(log_likelihood, participants):
    """Each obs's participant, as a position in `participants` (the study's order)."""
    position = {str(p): i for i, p in enumerate(participants)}
    return np.asarray([position[p] for p in log_likelihood["participant"].values], int)


def participant_loo(log_likelihood: xr.Dataset, pointwise: tuple, participants) -> xr.Dataset:
    """PSIS-LOO of each participant from the trials' (elpd, Pareto k) that
    :func:`pointwise_elpd` gives: ``elpd_loo`` (the sum of their trials' elpd),
    ``elpd_loo_se`` (sqrt(n) x the trials' sd, as ArviZ's) and ``loo_khat_max`` (the largest
    pointwise Pareto k); 0, 0 and NaN for a participant without a trial in the likelihood."""
    index = _owner_index(log_likelihood, participants)
    elpd_i, pareto_k = pointwise
    size = len(participants)
    counts = np.bincount(index, minlength=size)
    n = np.maximum(counts, 1)
    elpd = np.bincount(index, elpd_i, minlength=size)
    variance = np.bincount(index, elpd_i ** 2, minlength=size) / n - (elpd / n) ** 2
    khat = np.full(size, -np.inf)
    np.fmax.at(khat, index, pareto_k)  # a NaN k (no tail) does not hide the others
    khat[counts == 0] = np.nan
    return xr.Dataset({"elpd_loo": ("participant", elpd),
                       "elpd_loo_se": ("participant", np.sqrt(n * np.maximum(variance, 0.0))),
                       "loo_khat_max": ("participant", khat)})

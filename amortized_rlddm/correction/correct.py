"""The correction of a network's draws with the exact posterior, participant by participant.

Each participant's flow draws are checked by PSIS against the exact posterior
(:class:`~amortized_rlddm.model.target.ExactTarget`). Where the check passes (k-hat below its
threshold and enough effective draws) the draws are resampled by their weights (``refined``);
elsewhere adaptive importance sampling started from the flow's draws takes over
(``adaptive``, :func:`~amortized_rlddm.correction.adaptive.adaptive_importance_sampling`),
and where its weights still fail the check, DE-MCz chains started from them
(``mcmc``, :func:`~amortized_rlddm.correction.demcmc.differential_evolution_mcmc`). A
participant is ``trusted`` when its final weights pass the check or its chains the
convergence gate; the others are named with the reason, and the caller may fit them by NUTS.
"""

import numpy as np
import xarray as xr

from ..model.target import ExactTarget
from .adaptive import adaptive_importance_sampling
from .demcmc import differential_evolution_mcmc
from .importance import khat_threshold, psis, resample

__all__ = ["MAX_ROUNDS", "check_ratios", "correct_draws", "min_ess"]

MAX_ROUNDS = 16  # adaptive rounds per participant at most
# DE-MCz for the participants adaptive importance sampling leaves untrusted: chains, and the
# archive's first states per parameter, all resampled from the adaptive weights
MCMC_CHAINS = 8
MCMC_ARCHIVE_PER_PARAMETER = 20


def min_ess(draws: int) -> int:
    """The effective sample size a participant's weights need to be trusted: max(400, draws / 2)."""
    return max(400, draws // 2)


def check_ratios(ratios: np.ndarray, required_ess: float) -> xr.Dataset:
    """PSIS of each participant's log ratios (participants, proposals), log exact posterior
    minus log flow density of the flow's draws: :func:`~amortized_rlddm.correction.importance.psis`'s
    check with ``trusted`` (k-hat below the threshold and ESS >= `required_ess`) and
    ``reason`` ("" where trusted)."""
    checks = psis(ratios)
    trusted = ~checks["above_threshold"].values & (checks["ess"].values >= required_ess)
    reasons = []
    for khat, ess, above, row in zip(checks["khat"].values, checks["ess"].values,
                                     checks["above_threshold"].values, ratios):
        if not np.isfinite(row).any():
            reasons.append("the exact posterior is zero at every draw (e.g. a response faster than every t0 "
                           "without contaminants)")
        elif above:
            reasons.append(f"k-hat {khat:.2f} above the threshold")
        elif ess < required_ess:
            reasons.append(f"effective sample size {ess:.0f} below {required_ess:.0f}")
        else:
            reasons.append("")
    return checks.assign(trusted=("participant", trusted), reason=("participant", np.asarray(reasons, str)))


def _density_of(target, participants):
    """``log_density(y, rows)`` of the target's participants at participants[rows], each
    subset's target built once."""
    targets = {}

    def log_density(points, rows):
        key = tuple(participants[rows])
        if key not in targets:
            targets[key] = target.select(participants[rows])
        return targets[key].log_density(points)

    return log_density


def _chains_for_the_rest(target, result, rows, failing, draws, rng, out, table):
    """DE-MCz chains for the participants whose adaptive weights stay untrusted, started from
    and archived with their weighted draws resampled; their draws and table rows replaced."""
    dim = result.draws.shape[2]
    pool = result.resample(MCMC_CHAINS + MCMC_ARCHIVE_PER_PARAMETER * dim, rng, participants=rows)
    chains = differential_evolution_mcmc(_density_of(target, failing[rows]), pool[:, :MCMC_CHAINS],
                                         pool[:, MCMC_CHAINS:], draws=draws, rng=rng)
    for k, i in enumerate(failing[rows]):
        out[i] = chains.draws[k]
        table["method"][i], table["trusted"][i] = "mcmc", bool(chains.converged[k])
        table["reason"][i] = "" if chains.converged[k] else (
            f"DE-MCz chains did not pass the convergence gate in {chains.iterations[k]} iterations (r-hat "
            f"{chains.rhat[k]:.3f}, bulk ESS {chains.ess_bulk[k]:.0f})")
        table["evaluations"][i] += chains.evaluations[k]
        table["mcmc_rhat"][i], table["mcmc_ess_bulk"][i] = chains.rhat[k], chains.ess_bulk[k]


def correct_draws(target: ExactTarget, y: np.ndarray, log_q: np.ndarray, log_flow, draws: int,
                  rng: np.random.Generator, max_rounds: int = MAX_ROUNDS) -> tuple[np.ndarray, xr.Dataset]:
    """Draws of every participant's exact posterior, started from the flow's.

    Parameters
    ----------
    target
        The study's exact posterior.
    y, log_q
        The flow's draws in the target's unbounded space (participants, proposals,
        parameters) and their log density there (participants, proposals).
    log_flow
        ``log_flow(y, participants)``: the flow's log density in the target's unbounded space
        at new points y (len(participants), M, parameters) of the participants at those
        indices.
    draws
        Draws to return per participant.
    rng
        The random generator of the resampling and the adaptive rounds.
    max_rounds
        Adaptive rounds per participant at most.

    Returns
    -------
    tuple
        (participants, draws, parameters) unbounded draws, and per participant ``method``
        (``refined``, ``adaptive``, ``mcmc``, or ``flow`` where the exact posterior is zero at
        every flow draw and nothing could be weighted), ``trusted``, ``reason`` ("" when trusted),
        ``khat``, ``ess``, ``log_evidence``, ``log_evidence_se``, ``above_threshold`` (of the
        final importance weights), ``flow_khat`` (of the flow's own draws), ``proposals`` (the
        flow's draws), ``rounds``, ``evaluations``
        (exact posterior evaluations, all steps) and ``mcmc_rhat``, ``mcmc_ess_bulk``.
    """
    n, proposals, _ = y.shape
    ratios = target.log_density(y) - log_q
    checks = check_ratios(ratios, min_ess(draws))
    out = np.empty((n, draws, y.shape[2]))
    passed = checks["trusted"].values
    for i in np.flatnonzero(passed):
        out[i] = resample({"y": y[i]}, checks["log_weights"].values[i], draws, rng)["y"]
    table = {name: checks[name].values.copy() for name in ("khat", "ess", "log_evidence", "log_evidence_se",
                                                              "trusted")}
    table["flow_khat"] = checks["khat"].values.copy()  # the network's own draws' check, kept as they are replaced
    table["reason"] = checks["reason"].values.astype(object)  # any length: the later steps' reasons are longer
    table["method"] = np.where(passed, "refined", "adaptive").astype(object)
    table["rounds"] = np.zeros(n, int)
    table["evaluations"] = np.full(n, proposals)
    table["threshold"] = np.full(n, khat_threshold(proposals))
    table["mcmc_rhat"], table["mcmc_ess_bulk"] = np.full(n, np.nan), np.full(n, np.nan)
    failing = np.flatnonzero(~passed)
    hopeless = ~np.isfinite(ratios[failing]).any(axis=1)
    for i in failing[hopeless]:
        out[i], table["method"][i] = y[i, :draws], "flow"  # nothing to weight: the flow's draws, untrusted
    failing = failing[~hopeless]
    if failing.size:
        result = adaptive_importance_sampling(_density_of(target, failing),
                                              lambda points, rows: log_flow(points, failing[rows]),
                                              y[failing], log_q[failing], draws=draws, rng=rng,
                                              max_rounds=max_rounds, min_ess=min_ess(draws),
                                              round_size=max(draws, 2 * min_ess(draws)))
        usable = np.flatnonzero(np.isfinite(result.log_weights).any(axis=1))
        out[failing[usable]] = result.resample(draws, rng, participants=usable)
        for row, i in enumerate(failing):
            table["khat"][i], table["ess"][i] = result.khat[row], result.ess[row]
            table["log_evidence"][i], table["log_evidence_se"][i] = result.log_evidence[row], np.nan
            table["trusted"][i], table["reason"][i] = bool(result.converged[row]), result.reason[row]
            table["rounds"][i], table["evaluations"][i] = result.rounds[row], result.evaluations[row]
            table["threshold"][i] = result.khat_threshold[row]
            if row not in usable:
                out[i] = y[i, :draws]
        left = [row for row in usable if not result.converged[row]]
        if left:
            _chains_for_the_rest(target, result, np.asarray(left), failing, draws, rng, out, table)
    dataset = xr.Dataset({name: ("participant", np.asarray(values, object if name in ("method", "reason")
                                                           else None))
                          for name, values in table.items() if name != "threshold"})
    dataset["above_threshold"] = ("participant", table["khat"] > table["threshold"])
    dataset["method"] = dataset["method"].astype(str)
    dataset["reason"] = dataset["reason"].astype(str)
    dataset["proposals"] = ("participant", np.full(n, proposals))
    dataset.attrs.update(khat_threshold="min(1 - 1/log10(draws weighted), 0.7)", min_ess=min_ess(draws),
                         method="PSIS of the flow's draws against the exact posterior; adaptive multiple "
                                "importance sampling (Student-t mixtures, deterministic-mixture weights) where it "
                                "fails; DE-MCz chains where that fails too")
    return out, dataset

"""Differential-evolution MCMC with an archive of past states (DE-MCz; ter Braak & Vrugt
2008) on the exact posterior, for the participants whose importance weights cannot be
trusted: chains started from draws already near the posterior propose moves along the
difference of two states drawn from an archive, which starts as a pool of such draws and
grows with the chains' own history. No gradient and no proposal scale to tune are needed,
and the chains, unlike those of plain DE-MC, do not move as one population.

Each iteration moves every chain of every running participant with one batched call of the
log target. A participant's chains run in blocks until they pass the convergence gate (rank
r-hat and bulk ESS of every parameter, arviz-stats) or the iteration limit.
"""

from dataclasses import dataclass

import numpy as np
from arviz_stats.base import array_stats

__all__ = ["DEMCMCResult", "differential_evolution_mcmc"]

RHAT_MAX = 1.01  # the gate of the NUTS fits (Vehtari et al. 2021)
ESS_BULK_MIN = 400
JUMP_EVERY = 10  # every this many iterations the step is the full difference (gamma 1): a jump between modes
ARCHIVE_EVERY = 10  # the chains' states join the archive every this many iterations
JITTER = 1e-4  # the sd of the small normal added to every proposal (relative to each coordinate's spread)


@dataclass(frozen=True)
class DEMCMCResult:
    """What :func:`differential_evolution_mcmc` returns, per participant (P of them).

    draws (P, draws, d): draws thinned evenly from the kept second half of the chains;
    rhat, ess_bulk (P,): the worst parameter's rank r-hat and bulk ESS; iterations (P,);
    evaluations (P,): log-target evaluations; acceptance (P,); converged (P,): the gate passed.
    """

    draws: np.ndarray
    rhat: np.ndarray
    ess_bulk: np.ndarray
    iterations: np.ndarray
    evaluations: np.ndarray
    acceptance: np.ndarray
    converged: np.ndarray


def differential_evolution_mcmc(log_target, start: np.ndarray, archive: np.ndarray, *, draws: int,
                                rng: np.random.Generator, block: int = 500, max_iterations: int = 6000,
                                archive_every: int = ARCHIVE_EVERY) -> DEMCMCResult:
    """Sample each participant's target with DE-MCz.

    Parameters
    ----------
    log_target : callable
        ``log_target(y, participants)``: y (R, C, d) -> (R, C) log density (-inf allowed) of
        the participants at indices `participants`.
    start : numpy.ndarray
        (P, C, d) the chains' starting points (C >= 2), inside the target's support, e.g.
        importance-weighted draws resampled.
    archive : numpy.ndarray
        (P, M, d) the archive's first states (M >= 2 d), e.g. more such draws.
    draws : int
        Draws to return per participant.
    rng : numpy.random.Generator
        The random generator.
    block : int
        Iterations between convergence checks.
    max_iterations : int
        Iterations per participant at most.
    archive_every : int
        The chains' states join the archive every this many iterations.

    Returns
    -------
    DEMCMCResult

    Notes
    -----
    Chain k proposes x_k + gamma (z_r1 - z_r2) + e with z_r1 != z_r2 drawn from the archive,
    gamma = 2.38 / sqrt(2 d) (1 every JUMP_EVERY-th iteration, a jump between modes) and e a
    small normal; the move is accepted with the Metropolis probability (the proposal is
    symmetric given the archive). The first half of each participant's iterations is
    discarded; the gate reads the second half.
    """
    start, archive = np.asarray(start, float), np.asarray(archive, float)
    n, chains, dim = start.shape
    if chains < 2 or archive.shape[0] != n or archive.shape[2] != dim or archive.shape[1] < 2 * dim:
        raise ValueError(f"need start (P, C >= 2, d) and archive (P, M >= 2 d, d), got {start.shape} and "
                         f"{archive.shape}")
    everyone = np.arange(n)
    state = start.copy()
    log_p = np.asarray(log_target(state, everyone), float)
    if not np.isfinite(log_p).all():
        raise ValueError("every chain must start where the target is positive")
    pool = np.empty((n, archive.shape[1] + chains * (max_iterations // archive_every + 1), dim))
    pool[:, :archive.shape[1]] = archive
    pool_size = np.full(n, archive.shape[1])
    history = [state.copy()]
    accepted = np.zeros(n)
    evaluations = np.full(n, chains)
    iterations = np.zeros(n, int)
    running = np.ones(n, bool)
    stop_at = np.zeros(n, int)  # each participant's history ends here (later entries repeat its last state)
    rhat, ess = np.full(n, np.inf), np.zeros(n)
    scale = JITTER * archive.std(axis=1, keepdims=True)
    gamma = 2.38 / np.sqrt(2 * dim)
    step = 0
    while running.any():
        rows = np.flatnonzero(running)
        picked = np.arange(rows.size)[:, None]
        for _ in range(min(block, max_iterations - iterations[rows].max())):  # the running share one count
            step += 1
            r1, r2 = _archive_pairs(rng, pool_size[rows], chains)
            difference = pool[rows[:, None], r1] - pool[rows[:, None], r2]
            factor = 1.0 if step % JUMP_EVERY == 0 else gamma
            proposal = state[rows] + factor * difference + scale[rows] * rng.standard_normal((rows.size, chains, dim))
            log_proposal = np.asarray(log_target(proposal, rows), float)
            accept = (np.log(rng.random((rows.size, chains))) < log_proposal - log_p[rows]) & np.isfinite(log_proposal)
            new_state, new_log_p = state[rows], log_p[rows]
            new_state[accept], new_log_p[accept] = proposal[accept], log_proposal[accept]
            state[rows], log_p[rows] = new_state, new_log_p
            accepted[rows] += accept.mean(axis=1)
            evaluations[rows] += chains
            iterations[rows] += 1
            if step % archive_every == 0:
                slots = pool_size[rows][:, None] + np.arange(chains)
                pool[rows[:, None], slots] = state[rows][picked, np.arange(chains)]
                pool_size[rows] += chains
            history.append(state.copy())
        stop_at[rows] = len(history)
        chain_draws = np.stack(history)  # (iterations + 1, P, C, d)
        for i in rows:
            rhat[i], ess[i] = _diagnostics(_second_half(chain_draws, i, stop_at[i], iterations[i]))
            if (rhat[i] <= RHAT_MAX and ess[i] >= ESS_BULK_MIN) or iterations[i] >= max_iterations:
                running[i] = False
    chain_draws = np.stack(history)
    out = np.empty((n, draws, dim))
    for i in range(n):
        kept = _second_half(chain_draws, i, stop_at[i], iterations[i]).reshape(-1, dim)
        out[i] = kept[np.round(np.linspace(0, kept.shape[0] - 1, draws)).astype(int)]
    return DEMCMCResult(draws=out, rhat=rhat, ess_bulk=ess, iterations=iterations, evaluations=evaluations,
                        acceptance=accepted / np.maximum(iterations, 1),
                        converged=(rhat <= RHAT_MAX) & (ess >= ESS_BULK_MIN))


def _second_half(chain_draws, participant, stop_at, iterations):
    """(iterations // 2 + 1, C, d): the participant's states over the second half of its iterations."""
    return chain_draws[stop_at - iterations // 2 - 1:stop_at, participant]


def _archive_pairs(rng, sizes, chains):
    """Two distinct archive indices per chain, below each participant's archive size:
    (rows, C) each."""
    sizes = np.asarray(sizes)[:, None]
    r1 = np.floor(rng.random((sizes.shape[0], chains)) * sizes).astype(int)
    r2 = np.floor(rng.random((sizes.shape[0], chains)) * (sizes - 1)).astype(int)
    return r1, np.where(r2 >= r1, r2 + 1, r2)  # uniform over the others


def _diagnostics(kept):
    """The worst rank r-hat and bulk ESS over the parameters of (iterations, C, d) draws."""
    chains_first = np.moveaxis(kept, 0, 1)  # (C, iterations, d)
    rhat = max(float(array_stats.rhat(chains_first[..., j])) for j in range(kept.shape[2]))
    ess = min(float(array_stats.ess(chains_first[..., j])) for j in range(kept.shape[2]))
    return rhat, ess

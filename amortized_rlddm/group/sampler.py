"""An exact sampler of the hierarchical posterior built on the per-participant networks.

Metropolis-within-Gibbs, several chains at once:

1. each participant's parameters by an independence Metropolis-Hastings step whose proposal
   is a fresh draw from their amortized posterior q(theta | data_i), with the density the
   flow gives it; the acceptance ratio uses the exact likelihood and the current group
   normal, so the chain's stationary distribution is the exact hierarchical posterior and the
   network's error only lowers the acceptance rate (reported per participant);
2. each group mean by its conjugate normal update given the participants' values;
3. each group sd by random-walk Metropolis steps on its log.

The proposals, their flow densities and their exact likelihoods are computed before the
chains run, in vectorized calls (one network pass per batch of draws, one parallel Numba
call); the chains then only evaluate normal densities.
"""

import numpy as np

from ..amortized.posterior import AmortizedPosterior
from ..data.study import Study
from ..model.likelihood import likelihood_options, loglik_draws
from .model import GroupModel

PROPOSAL_BATCH = 1000  # draws per participant per network pass
PARTICIPANT_STEPS = 2  # independence steps per participant per iteration
SIGMA_STEPS = 3  # random-walk steps on each log sd per iteration
SIGMA_STEP_SCALE = 2.4  # their sd, over the conditional's approximate sd 1 / sqrt(2 n)


def proposals(posterior: AmortizedPosterior, study: Study, count: int, seed: int):
    """`count` draws per participant from the amortized posterior: natural values (name ->
    (participants, count)), their log density under the flow and their exact log-likelihood."""
    values, log_q = {}, []
    for start in range(0, count, PROPOSAL_BATCH):
        batch = min(PROPOSAL_BATCH, count - start)
        draws, log_density = posterior.sample_with_density(study, batch, seed + start)
        for name, x in draws.items():
            values.setdefault(name, []).append(x)
        log_q.append(log_density)
    values = {name: np.concatenate(parts, axis=1) for name, parts in values.items()}
    log_q = np.concatenate(log_q, axis=1)
    return values, log_q, loglik_draws(study, values, **likelihood_options(posterior.design))


def _normal_logpdf(y, mean, sd):
    return -0.5 * ((y - mean) / sd) ** 2 - np.log(sd) - 0.5 * np.log(2 * np.pi)


def metropolis_within_gibbs(y: np.ndarray, log_weight: np.ndarray, group_index: np.ndarray, n_groups: int,
                            hyper_mean: np.ndarray, hyper_sd: np.ndarray, chains: int = 4, tune: int = 500,
                            draws: int = 1000, seed: int = 0, participant_steps: int = PARTICIPANT_STEPS) -> dict:
    """Run the chains on precomputed proposals.

    Parameters
    ----------
    y
        (participants, proposals, parameters): the proposals on the unbounded scale; at least
        chains x ((tune + draws) x participant_steps + 1) per participant, each used once.
    log_weight
        (participants, proposals): log p(data_i | theta) + log |dy/dtheta| - log q(theta),
        the part of each proposal's acceptance ratio that does not depend on the group level.
    group_index
        (participants,) each participant's group, 0 to n_groups - 1.
    n_groups
        The number of groups.
    hyper_mean, hyper_sd
        (parameters,) m and s of the hyperpriors mu ~ Normal(m, s), sigma ~ HalfNormal(s).
    chains, tune, draws
        Chains, and iterations per chain discarded and kept.
    seed
        Seed of the sampler's random numbers.
    participant_steps
        Independence steps per participant per iteration (each with a fresh proposal).

    Returns
    -------
    dict
        ``mu`` (chains, draws, groups, parameters), ``sigma`` (chains, draws, parameters),
        ``index`` (chains, draws, participants): which proposal each participant holds, and
        ``accepted`` (chains, participants): accepted proposals after tuning (out of draws x
        participant_steps).
    """
    n, k, p = y.shape
    steps = tune + draws
    per_chain = steps * participant_steps + 1
    if k < chains * per_chain:
        raise ValueError(f"{k} proposals per participant; {chains} chains x (({tune} + {draws}) x "
                         f"{participant_steps} + 1) need {chains * per_chain}")
    rng = np.random.default_rng(seed)
    members = np.eye(n_groups)[group_index]  # (participants, groups)
    counts = members.sum(axis=0)
    if (counts == 0).any():
        raise ValueError(f"group(s) {np.flatnonzero(counts == 0).tolist()} have no participant")
    participants = np.arange(n)
    base = np.arange(chains)[:, None] * per_chain  # chain c uses proposals c x per_chain onwards
    index = np.broadcast_to(base, (chains, n)).copy()
    current_y, current_w = y[participants, index], log_weight[participants, index]  # (chains, n, p), (chains, n)
    mu = np.einsum("cnp,ng->cgp", current_y, members) / counts[None, :, None]
    sigma = np.maximum(current_y.std(axis=1), 0.1 * hyper_sd) if n > 1 else np.broadcast_to(hyper_sd, (chains, p))
    sigma = np.array(sigma, float)
    step = SIGMA_STEP_SCALE / np.sqrt(2.0 * n)
    kept = {"mu": np.empty((chains, draws, n_groups, p)), "sigma": np.empty((chains, draws, p)),
            "index": np.empty((chains, draws, n), np.int64)}
    accepted = np.zeros((chains, n), np.int64)
    for t in range(steps):
        # 1. every participant: independence steps, each with a fresh amortized draw
        centre = mu[:, group_index]  # (chains, n, p)
        current_log_normal = _normal_logpdf(current_y, centre, sigma[:, None]).sum(-1)
        for j in range(participant_steps):
            proposal = base + 1 + t * participant_steps + j
            new_y, new_w = y[participants, proposal], log_weight[participants, proposal]
            new_log_normal = _normal_logpdf(new_y, centre, sigma[:, None]).sum(-1)
            accept = np.log(rng.random((chains, n))) < new_w + new_log_normal - current_w - current_log_normal
            current_y = np.where(accept[..., None], new_y, current_y)
            current_w = np.where(accept, new_w, current_w)
            current_log_normal = np.where(accept, new_log_normal, current_log_normal)
            index = np.where(accept, proposal, index)
            if t >= tune:
                accepted += accept
        # 2. the group means: conjugate normal given the participants' values and the sd
        precision = 1.0 / hyper_sd ** 2 + counts[None, :, None] / sigma[:, None] ** 2
        total = np.einsum("cnp,ng->cgp", current_y, members)
        mean = (hyper_mean / hyper_sd ** 2 + total / sigma[:, None] ** 2) / precision
        mu = mean + rng.standard_normal(mean.shape) / np.sqrt(precision)
        # 3. the group sds: random-walk Metropolis on log sigma (half-normal prior, its Jacobian)
        squares = ((current_y - mu[:, group_index]) ** 2).sum(axis=1)  # (chains, p)

        def log_conditional(log_sd):
            return (-0.5 * (np.exp(log_sd) / hyper_sd) ** 2 + log_sd
                    - n * log_sd - 0.5 * squares * np.exp(-2.0 * log_sd))

        log_sd = np.log(sigma)
        for _ in range(SIGMA_STEPS):
            candidate = log_sd + step * rng.standard_normal(log_sd.shape)
            move = np.log(rng.random(log_sd.shape)) < log_conditional(candidate) - log_conditional(log_sd)
            log_sd = np.where(move, candidate, log_sd)
        sigma = np.exp(log_sd)
        if t >= tune:
            kept["mu"][:, t - tune], kept["sigma"][:, t - tune], kept["index"][:, t - tune] = mu, sigma, index
    kept["accepted"] = accepted
    return kept


def group_weights(model: GroupModel, values: dict, log_q: np.ndarray, log_likelihood: np.ndarray):
    """The proposals on the group model's unbounded scale (participants, proposals, parameters)
    and their log weights log p(data | theta) + log |dy/dtheta| - log q(theta)."""
    y = model.space.forward(values)
    weight = log_likelihood + model.log_jacobian(values) - log_q
    return y, np.where(np.isfinite(weight), weight, -np.inf)


def contrast_labels(groups) -> list:
    """"B - A" for every pair of groups, later minus earlier."""
    return [f"{groups[j]} - {groups[i]}" for i in range(len(groups)) for j in range(i + 1, len(groups))]

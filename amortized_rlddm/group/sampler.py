"""An exact sampler of the hierarchical posterior built on the per-participant networks.

Metropolis-within-Gibbs, several chains at once, on the unbounded scale y:

1. each participant's parameters by an independence Metropolis-Hastings step whose proposal
   is a fresh draw from their amortized posterior, weighed with the exact likelihood and the
   current group normal (log w = l(y) - log q_y(y)), so the network's error lowers the
   acceptance rate only;
2. each group mean by its conjugate normal update;
3. each group sd by random-walk Metropolis steps on its log;
4. optionally, a random-walk step of every participant (shaped by their proposals', later
   their chains', covariance) and, for `move_steps` parameters per iteration, a scale move of
   sigma_k with the participants' values and a shift move of each group's mean with its
   participants': they carry the participants along where the group sd is small (a funnel).

With correlated group normals the group normal is multivariate, the means take their
multivariate update and R joint random-walk steps on the atanh of its canonical partial
correlations. Step sizes are tuned during the tuning iterations and then fixed, so the kept
draws come from one fixed, exact kernel. The target, each move's acceptance ratio and their
derivations are in docs/group.md ("The sampler").

The proposals, their flow densities and their exact likelihoods are computed before the
chains run, in vectorized calls; the chains then evaluate normal densities and, with the
moves, 1 + 2 x move_steps exact likelihoods and one flow density per participant and chain
per iteration.
"""

import numpy as np

from ..amortized.posterior import AmortizedPosterior
from ..data.study import Study
from ..model.likelihood import likelihood_function, loglik_draws, study_likelihood_options
from .model import GroupModel, correlation_cholesky, cpc_log_prior

PROPOSAL_BATCH = 1000  # draws per participant per network pass
PARTICIPANT_STEPS = 2  # independence steps per participant per iteration
SIGMA_STEPS = 3  # random-walk steps on each log sd per iteration
SIGMA_STEP_SCALE = 2.4  # their sd, over the conditional's approximate sd 1 / sqrt(2 n)
MOVE_TARGET = 0.35  # acceptance rate the scale and shift moves' step sizes are tuned toward
SCALE_STEP = 0.3  # the scale move's initial sd of log c
SHIFT_STEP = 1.0  # the shift move's initial sd, in units of sigma_k / sqrt(n_g)
WALK_TARGET = 0.3  # acceptance rate each participant's random-walk step size is tuned toward
WALK_STEP = 0.5  # its initial size, in units of the participant's proposal sd (per direction)
ADAPTED_WALK_STEP = 2.38  # over sqrt(parameters): its size once shaped by the chains' own values
SLOW_ACCEPTANCE = 0.1  # independence steps accepted less often than this in the tuning's 2nd quarter ...
EXTRA_WALKS = 2  # ... earn the participant this many more random-walk steps per iteration
CORRELATION_TARGET = 0.3  # acceptance rate the correlations' joint random-walk step is tuned toward


def proposals(posterior: AmortizedPosterior, study: Study, count: int, seed: int, design=None):
    """`count` draws per participant from the amortized posterior: natural values (name ->
    (participants, count)), their log density under the flow and their exact log-likelihood.
    `design`: the study's settings (default: the posterior's study_design())."""
    design = design or posterior.study_design()
    # Batches of one size, so that the network's pass compiles once: the last batch's surplus
    # draws (fewer than one per batch) are dropped.
    n_batches = -(-count // PROPOSAL_BATCH)
    batch = -(-count // n_batches)
    values, log_q = {}, []
    for index in range(n_batches):
        draws, log_density = posterior.sample_with_density(study, batch, seed + index * batch, design)
        for name, x in draws.items():
            values.setdefault(name, []).append(x)
        log_q.append(log_density)
    values = {name: np.concatenate(parts, axis=1)[:, :count] for name, parts in values.items()}
    log_q = np.concatenate(log_q, axis=1)[:, :count]
    return values, log_q, loglik_draws(study, values, **study_likelihood_options(study, design))


def _normal_logpdf(y, mean, sd):
    return -0.5 * ((y - mean) / sd) ** 2 - np.log(sd) - 0.5 * np.log(2 * np.pi)


def _group_logpdf(y, centre, sigma, correlation):
    """log N(y_i; centre_i, D R D) of values y (chains, n, p), D = diag(sigma) (chains, p):
    (chains, n). `correlation`: None (R = I), or R's inverse (chains, p, p) and log det."""
    if correlation is None:
        return _normal_logpdf(y, centre, sigma[:, None]).sum(-1)
    precision, log_det = correlation
    e = (y - centre) / sigma[:, None]
    return (-0.5 * np.einsum("cnp,cpq,cnq->cn", e, precision, e) - np.log(sigma).sum(-1)[:, None]
            - 0.5 * log_det[:, None] - 0.5 * y.shape[-1] * np.log(2 * np.pi))


def _correlation_state(w, p):
    """R^-1 (chains, p, p), log det R (chains,) and R's Cholesky factor, of atanh(CPCs) w."""
    factor = correlation_cholesky(np.tanh(w), p)
    inverse_factor = np.linalg.inv(factor)
    diagonal = np.diagonal(factor, axis1=-2, axis2=-1)
    return (np.swapaxes(inverse_factor, -1, -2) @ inverse_factor,
            2.0 * np.log(np.maximum(diagonal, 1e-300)).sum(-1)), factor


def move_densities(posterior: AmortizedPosterior, study: Study, model: GroupModel, chains: int, design=None):
    """The two functions the scale and shift moves need, of the chains' current values y
    (chains, participants, parameters) on the group model's unbounded scale, each giving
    (chains, participants): the exact log-likelihood log p(data_i | theta(y_i)) (with the
    likelihood options of :func:`proposals`), and the amortized posterior's log density on
    that scale, log q(theta) - log |dy/dtheta| (one compiled flow pass per call). The first
    also takes `participants` (indices): the likelihood of those participants alone."""
    design = design or posterior.study_design()
    options = study_likelihood_options(study, design)
    evaluate = {None: likelihood_function(study, **options)}  # by participants evaluated (None: all)
    log_q = posterior.density_function(study, design, draws=chains)

    def natural(y):  # participants x chains as the draws axis
        return model.space.inverse(np.swapaxes(y, 0, 1))

    def log_likelihood(y, participants=None):
        key = None if participants is None else tuple(int(i) for i in participants)
        if key not in evaluate:
            evaluate[key] = likelihood_function(study.select(participants), **options)
        return evaluate[key](natural(y)).T

    def log_proposal(y):
        values = natural(y)
        return (log_q(values) - model.log_jacobian(values)).T

    return log_likelihood, log_proposal


def metropolis_within_gibbs(y: np.ndarray, log_weight: np.ndarray, group_index: np.ndarray, n_groups: int,
                            hyper_mean: np.ndarray, hyper_sd: np.ndarray, chains: int = 4, tune: int = 500,
                            draws: int = 1000, seed: int = 0, participant_steps: int = PARTICIPANT_STEPS,
                            log_likelihood=None, log_proposal=None, proposal_log_likelihood=None,
                            move_steps: int = 1, correlation_eta: float | None = None) -> dict:
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
    log_likelihood, log_proposal
        Functions of values y (chains, participants, parameters) on the unbounded scale, each
        giving (chains, participants): log p(data_i | theta(y_i)), and the proposals' log
        density on the unbounded scale, log q(theta) - log |dy/dtheta| (so that their
        difference is the log weight). ``log_likelihood(y, participants)`` gives that of the
        participants at those indices alone, y (chains, len(participants), parameters). Given
        both, every iteration ends with the random-walk steps and the scale and shift moves of
        the module notes; None (the default): neither.
    proposal_log_likelihood
        (participants, proposals): the proposals' log p(data_i | theta), optional with the
        moves; it spares the moves one call of `log_likelihood` per iteration.
    move_steps
        Parameters given a scale and a shift move per iteration, cycling through them (each
        costs two calls of `log_likelihood`; `log_proposal` is called once per iteration).
    correlation_eta
        None: the group normals of the parameters are independent. A number: they are
        correlated, with an LKJ(correlation_eta) prior on their correlation matrix R (see
        :mod:`amortized_rlddm.group.model`); the group means then take their multivariate
        conjugate update, each log sd its own random-walk steps, and R joint random-walk
        steps on the atanh of its canonical partial correlations (tuned during the tuning
        toward CORRELATION_TARGET acceptance). The scale and shift moves keep their ratios:
        they leave the standardised distances to the group means unchanged.

    Returns
    -------
    dict
        ``mu`` (chains, draws, groups, parameters), ``sigma`` (chains, draws, parameters),
        ``y`` (chains, draws, participants, parameters): the participants' values, and
        ``accepted`` (chains, participants): accepted proposals after tuning (out of draws x
        participant_steps). Without the moves, ``index`` (chains, draws, participants): which
        proposal each participant holds. With them, ``scale_acceptance`` (chains,
        parameters) and ``shift_acceptance`` (chains, groups, parameters): the moves'
        acceptance rates after tuning (NaN for a parameter never moved then), and their
        tuned step sizes ``scale_step`` and ``shift_step`` (parameters,); ``walk_accepted``
        (chains, participants): accepted random-walk steps after tuning (out of draws x
        walk_steps), their tuned sizes ``walk_step`` and steps per iteration ``walk_steps``
        (participants,). With `correlation_eta`, ``rho`` (chains, draws, pairs): R's entries
        below the diagonal, row by row (see :func:`~amortized_rlddm.group.model.correlation_pairs`),
        ``correlation_acceptance`` (chains,): the acceptance rate of R's steps after tuning, and
        their tuned size ``correlation_step``.
    """
    n, k, p = y.shape
    steps = tune + draws
    per_chain = steps * participant_steps + 1
    if k < chains * per_chain:
        raise ValueError(f"{k} proposals per participant; {chains} chains x (({tune} + {draws}) x "
                         f"{participant_steps} + 1) need {chains * per_chain}")
    if (log_likelihood is None) != (log_proposal is None):
        raise ValueError("the moves need both log_likelihood and log_proposal")
    moves = log_likelihood is not None
    if moves and not 1 <= move_steps <= p:
        raise ValueError(f"move_steps: expected 1 to {p} parameters per iteration, got {move_steps}")
    rng = np.random.default_rng(seed)
    members = np.eye(n_groups)[group_index]  # (participants, groups)
    counts = members.sum(axis=0)
    if (counts == 0).any():
        raise ValueError(f"group(s) {np.flatnonzero(counts == 0).tolist()} have no participant")
    participants = np.arange(n)
    base = np.arange(chains)[:, None] * per_chain  # chain c uses proposals c x per_chain onwards
    index = np.broadcast_to(base, (chains, n)).copy()
    current_y, current_w = y[participants, index], log_weight[participants, index]  # (chains, n, p), (chains, n)
    tracked = moves and proposal_log_likelihood is not None  # the current values' log-likelihood, followed
    if tracked:
        current_ll = proposal_log_likelihood[participants, index]
    mu = np.einsum("cnp,ng->cgp", current_y, members) / counts[None, :, None]
    sigma = np.maximum(current_y.std(axis=1), 0.1 * hyper_sd) if n > 1 else np.broadcast_to(hyper_sd, (chains, p))
    sigma = np.array(sigma, float)
    step = SIGMA_STEP_SCALE / np.sqrt(2.0 * n)
    correlation = None  # R^-1 and log det R (chains, ...), or None: independent group normals
    if correlation_eta is not None:
        n_pairs = p * (p - 1) // 2
        w = np.zeros((chains, n_pairs))  # atanh of R's canonical partial correlations: R = I
        correlation, factor = _correlation_state(w, p)
        correlation_step = SIGMA_STEP_SCALE / np.sqrt(n * max(n_pairs, 1))
        correlation_accepted = np.zeros(chains)
        below = np.tril_indices(p, -1)
    kept = {"mu": np.empty((chains, draws, n_groups, p)), "sigma": np.empty((chains, draws, p)),
            "y": np.empty((chains, draws, n, p))}
    if not moves:
        kept["index"] = np.empty((chains, draws, n), np.int64)
    if correlation is not None:
        kept["rho"] = np.empty((chains, draws, n_pairs))
    accepted = np.zeros((chains, n), np.int64)
    if moves:
        scale_step, shift_step = np.full(p, SCALE_STEP), np.full(p, SHIFT_STEP)
        adapted = np.zeros(p, np.int64)  # tuning updates per parameter
        tries = np.zeros(p, np.int64)  # moves per parameter after tuning
        scale_accepted, shift_accepted = np.zeros((chains, p)), np.zeros((chains, n_groups, p))
        walk_shape = _cholesky_of_covariance(y)
        walk_step, walk_accepted = np.full(n, WALK_STEP), np.zeros((chains, n), np.int64)
        walk_steps = np.ones(n, np.int64)  # random-walk steps per iteration, per participant
        early_accepted = np.zeros((chains, n), np.int64)  # independence steps accepted in the tuning's 2nd quarter
        slow = np.zeros(0, np.int64)  # the participants given EXTRA_WALKS more random-walk steps
        slow_cells = np.ix_(np.arange(chains), slow)  # their (chains, participants) entries
        walk_gain_start = 0  # iteration the Robbins-Monro gain of the step sizes counts from
        history = []  # the chains' values over the tuning's second quarter, for the walk's shape
    for t in range(steps):
        # 1. every participant: independence steps, each with a fresh amortized draw
        centre = mu[:, group_index]  # (chains, n, p)
        current_log_normal = _group_logpdf(current_y, centre, sigma, correlation)
        for j in range(participant_steps):
            proposal = base + 1 + t * participant_steps + j
            new_y, new_w = y[participants, proposal], log_weight[participants, proposal]
            new_log_normal = _group_logpdf(new_y, centre, sigma, correlation)
            accept = np.log(rng.random((chains, n))) < new_w + new_log_normal - current_w - current_log_normal
            current_y = np.where(accept[..., None], new_y, current_y)
            current_w = np.where(accept, new_w, current_w)
            if tracked:
                current_ll = np.where(accept, proposal_log_likelihood[participants, proposal], current_ll)
            current_log_normal = np.where(accept, new_log_normal, current_log_normal)
            index = np.where(accept, proposal, index)
            if t >= tune:
                accepted += accept
            elif moves and tune // 4 <= t < tune // 2:
                early_accepted += accept
        # 2. the group means: conjugate normal given the participants' values and the sd
        total = np.einsum("cnp,ng->cgp", current_y, members)
        if correlation is None:
            precision = 1.0 / hyper_sd ** 2 + counts[None, :, None] / sigma[:, None] ** 2
            mean = (hyper_mean / hyper_sd ** 2 + total / sigma[:, None] ** 2) / precision
            mu = mean + rng.standard_normal(mean.shape) / np.sqrt(precision)
        else:
            mu = _correlated_means(total, counts, sigma, correlation[0], hyper_mean, hyper_sd, rng)
        # 3. the group sds: random-walk Metropolis on log sigma (half-normal prior, its Jacobian)
        log_sd = np.log(sigma)
        if correlation is None:
            squares = ((current_y - mu[:, group_index]) ** 2).sum(axis=1)  # (chains, p)

            def log_conditional(log_sd):
                return (-0.5 * (np.exp(log_sd) / hyper_sd) ** 2 + log_sd
                        - n * log_sd - 0.5 * squares * np.exp(-2.0 * log_sd))

            for _ in range(SIGMA_STEPS):
                candidate = log_sd + step * rng.standard_normal(log_sd.shape)
                move = np.log(rng.random(log_sd.shape)) < log_conditional(candidate) - log_conditional(log_sd)
                log_sd = np.where(move, candidate, log_sd)
        else:  # one log sd at a time: the others enter through R
            spread = current_y - mu[:, group_index]  # (chains, n, p)

            def log_conditional(log_sd):
                e = spread * np.exp(-log_sd)[:, None]
                return ((-0.5 * (np.exp(log_sd) / hyper_sd) ** 2 + log_sd - n * log_sd).sum(-1)
                        - 0.5 * np.einsum("cnp,cpq,cnq->c", e, correlation[0], e))

            for _ in range(SIGMA_STEPS):
                for k in range(p):
                    candidate = log_sd.copy()
                    candidate[:, k] += step * rng.standard_normal(chains)
                    move = np.log(rng.random(chains)) < log_conditional(candidate) - log_conditional(log_sd)
                    log_sd = np.where(move[:, None], candidate, log_sd)
        sigma = np.exp(log_sd)
        if correlation is not None:
            # 3b. R: joint random-walk steps on w = atanh(CPCs), its LKJ prior and the group normal
            e = spread / sigma[:, None]
            w, correlation, factor, moved = _correlation_steps(w, correlation, factor, np.einsum("cnp,cnq->cpq", e, e),
                                                               n, correlation_eta, correlation_step, rng)
            if t < tune:
                correlation_step *= np.exp((t + 1.0) ** -0.6 * (moved.mean() / SIGMA_STEPS - CORRELATION_TARGET))
            else:
                correlation_accepted += moved
        if moves:
            # 4. the scale and shift moves of move_steps parameters (cycling), then the current
            # values' weights for the next iteration's independence steps
            if not tracked:
                current_ll = log_likelihood(current_y)
            if t == tune // 2 and history:
                # the walk's shape from the chains' own values (pooled over chains) in the second
                # quarter of the tuning: the participant's conditional posterior, not the network's
                walk_shape = _cholesky_of_covariance(np.concatenate(history, axis=0).swapaxes(0, 1))
                walk_step, walk_gain_start, history = np.full(n, ADAPTED_WALK_STEP / np.sqrt(p)), t, []
                # where the independence steps seldom accept, the random walk does the mixing
                early_tries = (tune // 2 - tune // 4) * participant_steps
                slow = np.flatnonzero(early_accepted.mean(axis=0) < SLOW_ACCEPTANCE * early_tries)
                walk_steps[slow] += EXTRA_WALKS
                slow_cells = np.ix_(np.arange(chains), slow)
            walk_gain = (t - walk_gain_start + 1.0) ** -0.6
            centre = mu[:, group_index]
            current_y, current_ll, walk_moved = _random_walk(current_y, current_ll, centre, sigma, correlation,
                                                             walk_shape, walk_step, log_likelihood, rng)
            moved = walk_moved.astype(np.int64)
            for _ in range(EXTRA_WALKS if slow.size else 0):
                y_slow, ll_slow, slow_moved = _random_walk(
                    current_y[slow_cells], current_ll[slow_cells], centre[slow_cells], sigma, correlation,
                    walk_shape[slow], walk_step[slow], lambda values: log_likelihood(values, slow), rng)
                current_y[slow_cells], current_ll[slow_cells] = y_slow, ll_slow
                moved[slow_cells] += slow_moved
            if t < tune:  # Robbins-Monro on each participant's log step size, toward WALK_TARGET
                walk_step *= np.exp(walk_gain * (moved.mean(axis=0) / walk_steps - WALK_TARGET))
                if tune // 4 <= t < tune // 2:
                    history.append(current_y)
            else:
                walk_accepted += moved
            for par in (t * move_steps + np.arange(move_steps)) % p:
                current_y, current_ll, scale_rate, shift_rate = _scale_and_shift(
                    par, current_y, current_ll, mu, sigma, group_index, counts, hyper_mean[par], hyper_sd[par],
                    scale_step[par], shift_step[par], log_likelihood, rng)
                if t < tune:  # Robbins-Monro on the log step sizes, toward MOVE_TARGET
                    gain = (adapted[par] + 1.0) ** -0.6
                    adapted[par] += 1
                    scale_step[par] *= np.exp(gain * (scale_rate[0].mean() - MOVE_TARGET))
                    shift_step[par] *= np.exp(gain * (shift_rate[0].mean() - MOVE_TARGET))
                else:
                    tries[par] += 1
                    scale_accepted[:, par] += scale_rate[1]
                    shift_accepted[:, :, par] += shift_rate[1]
            with np.errstate(invalid="ignore"):
                log_q = log_proposal(current_y)
                current_w = np.where(np.isnan(log_q), np.inf, current_ll - log_q)  # no flow density: +inf
        if t >= tune:
            kept["mu"][:, t - tune], kept["sigma"][:, t - tune], kept["y"][:, t - tune] = mu, sigma, current_y
            if not moves:
                kept["index"][:, t - tune] = index
            if correlation is not None:
                kept["rho"][:, t - tune] = (factor @ np.swapaxes(factor, -1, -2))[:, below[0], below[1]]
    kept["accepted"] = accepted
    if moves:
        with np.errstate(invalid="ignore", divide="ignore"):
            kept["scale_acceptance"] = scale_accepted / tries
            kept["shift_acceptance"] = shift_accepted / tries
        kept["scale_step"], kept["shift_step"] = scale_step, shift_step
        kept["walk_accepted"], kept["walk_step"], kept["walk_steps"] = walk_accepted, walk_step, walk_steps
    if correlation is not None:
        kept["correlation_acceptance"] = correlation_accepted / (draws * SIGMA_STEPS)
        kept["correlation_step"] = correlation_step
    return kept


def _correlation_steps(w, correlation, factor, scatter, n, eta, step, rng):
    """SIGMA_STEPS joint random-walk Metropolis steps of w = atanh(R's CPCs) (chains, pairs)
    under the LKJ(eta) prior and the group normal of n participants, whose standardised
    distances to their group means have the scatter matrix `scatter` (chains, p, p). Returns
    w, R's inverse and log det (see :func:`_group_logpdf`), its Cholesky factor, and each
    chain's accepted steps."""
    p = scatter.shape[-1]

    def log_conditional(w, correlation):
        inverse, log_det = correlation
        return cpc_log_prior(w, p, eta) - 0.5 * n * log_det - 0.5 * np.einsum("cpq,cqp->c", inverse, scatter)

    moved = np.zeros(w.shape[0])
    for _ in range(SIGMA_STEPS):
        candidate = w + step * rng.standard_normal(w.shape)
        candidate_correlation, candidate_factor = _correlation_state(candidate, p)
        with np.errstate(invalid="ignore"):
            log_r = log_conditional(candidate, candidate_correlation) - log_conditional(w, correlation)
        move = np.log(rng.random(w.shape[0])) < np.where(np.isnan(log_r), -np.inf, log_r)
        w = np.where(move[:, None], candidate, w)
        correlation = (np.where(move[:, None, None], candidate_correlation[0], correlation[0]),
                       np.where(move, candidate_correlation[1], correlation[1]))
        factor = np.where(move[:, None, None], candidate_factor, factor)
        moved += move
    return w, correlation, factor, moved


def _correlated_means(total, counts, sigma, r_inverse, hyper_mean, hyper_sd, rng):
    """Each group's mean vector (chains, groups, p) from its conjugate multivariate normal
    given the participants' values (their sums `total` (chains, groups, p)) under the group
    covariance D R D and the independent normal hyperpriors."""
    covariance_inverse = r_inverse / sigma[:, :, None] / sigma[:, None, :]  # (D R D)^-1, (chains, p, p)
    precision = np.diag(hyper_sd ** -2.0) + counts[None, :, None, None] * covariance_inverse[:, None]
    right = hyper_mean / hyper_sd ** 2 + np.einsum("cpq,cgq->cgp", covariance_inverse, total)
    factor = np.linalg.cholesky(precision)  # precision = F F^T: the draw is mean + F^-T u
    mean = np.linalg.solve(precision, right[..., None])[..., 0]
    return mean + np.linalg.solve(np.swapaxes(factor, -1, -2), rng.standard_normal(mean.shape)[..., None])[..., 0]


def _cholesky_of_covariance(values):
    """Per participant, the Cholesky factor of the covariance of values (participants,
    samples, parameters), with a small ridge so that it exists."""
    spread = values - values.mean(axis=1, keepdims=True)
    covariance = np.einsum("nkp,nkq->npq", spread, spread) / (values.shape[1] - 1)
    ridge = 1e-10 * np.trace(covariance, axis1=1, axis2=2)[:, None, None] / values.shape[2] + 1e-12
    return np.linalg.cholesky(covariance + ridge * np.eye(values.shape[2]))


def _random_walk(current_y, current_ll, centre, sigma, correlation, shape, step, log_likelihood, rng):
    """One random-walk Metropolis step of every participant's values in every chain: a normal
    step shaped by a covariance per participant (its Cholesky factor `shape`, scaled by
    `step`), accepted with the exact likelihood and the group normal (`correlation`: see
    :func:`_group_logpdf`). Returns the values, their log-likelihood and which chains and
    participants moved."""
    walked = current_y + step[None, :, None] * np.einsum("npq,cnq->cnp", shape, rng.standard_normal(current_y.shape))
    walked_ll = log_likelihood(walked)
    with np.errstate(invalid="ignore"):
        log_r = walked_ll - current_ll + (_group_logpdf(walked, centre, sigma, correlation)
                                          - _group_logpdf(current_y, centre, sigma, correlation))
        accept = np.log(rng.random(log_r.shape)) < log_r
    return (np.where(accept[..., None], walked, current_y), np.where(accept, walked_ll, current_ll), accept)


def _scale_and_shift(k, current_y, current_ll, mu, sigma, group_index, counts, m, s, scale_step, shift_step,
                     log_likelihood, rng):
    """The scale move of sigma_k and the shift moves of each group's mu_gk (see the module
    notes), updating mu and sigma in place. Returns the participants' new values, their
    log-likelihood and, per move, its acceptance probabilities and acceptances ((chains,) for
    the scale move, (chains, groups) for the shift)."""
    chains = current_y.shape[0]
    centre = mu[:, group_index, k]  # (chains, n)
    # the scale move: sigma_k and every participant's distance to their group mean, times c
    log_c = scale_step * rng.standard_normal(chains)
    new_sigma = sigma[:, k] * np.exp(log_c)
    candidate = current_y.copy()
    candidate[..., k] = centre + np.exp(log_c)[:, None] * (current_y[..., k] - centre)
    new_ll = log_likelihood(candidate)
    with np.errstate(invalid="ignore"):
        log_ratio = (new_ll - current_ll).sum(axis=1) - 0.5 * (new_sigma ** 2 - sigma[:, k] ** 2) / s ** 2 + log_c
    log_ratio = np.where(np.isnan(log_ratio), -np.inf, log_ratio)
    accept = np.log(rng.random(chains)) < log_ratio
    scale = (np.exp(np.minimum(log_ratio, 0.0)), accept)
    current_y = np.where(accept[:, None, None], candidate, current_y)
    current_ll = np.where(accept[:, None], new_ll, current_ll)
    sigma[:, k] = np.where(accept, new_sigma, sigma[:, k])
    # the shift move: each group's mean and its participants' values, by one delta
    delta = shift_step * sigma[:, k, None] / np.sqrt(counts) * rng.standard_normal((chains, counts.size))
    new_mu = mu[..., k] + delta
    candidate = current_y.copy()
    candidate[..., k] += delta[:, group_index]
    new_ll = log_likelihood(candidate)
    gain = np.zeros((chains, counts.size))
    with np.errstate(invalid="ignore"):
        np.add.at(gain, (slice(None), group_index), new_ll - current_ll)  # per group, -inf kept
        log_ratio = gain - 0.5 * ((new_mu - m) ** 2 - (mu[..., k] - m) ** 2) / s ** 2
    log_ratio = np.where(np.isnan(log_ratio), -np.inf, log_ratio)
    accept = np.log(rng.random(log_ratio.shape)) < log_ratio
    shift = (np.exp(np.minimum(log_ratio, 0.0)), accept)
    mu[..., k] = np.where(accept, new_mu, mu[..., k])
    take = accept[:, group_index]  # (chains, n)
    current_y = np.where(take[..., None], candidate, current_y)
    return current_y, np.where(take, new_ll, current_ll), scale, shift


def group_weights(model: GroupModel, values: dict, log_q: np.ndarray, log_likelihood: np.ndarray):
    """The proposals on the group model's unbounded scale (participants, proposals, parameters)
    and their log weights log p(data | theta) + log |dy/dtheta| - log q(theta)."""
    y = model.space.forward(values)
    weight = log_likelihood + model.log_jacobian(values) - log_q
    return y, np.where(np.isfinite(weight), weight, -np.inf)


def contrast_labels(groups) -> list:
    """"B - A" for every pair of groups, later minus earlier."""
    return [f"{groups[j]} - {groups[i]}" for i in range(len(groups)) for j in range(i + 1, len(groups))]

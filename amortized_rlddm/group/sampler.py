"""An exact sampler of the hierarchical posterior, its proposals from each participant's own
posterior.

Metropolis-within-Gibbs, several chains at once, on the unbounded scale y:

1. each participant's parameters by an independence Metropolis-Hastings step whose proposal
   is a fresh draw from an approximation q of their posterior (in `rlddm group`, a mixture
   fitted to their corrected posterior: :mod:`amortized_rlddm.group.proposals`), weighed
   with the exact likelihood and the current group normal (log w = l(y) - log q(y)), so
   the approximation's error lowers the acceptance rate only;
2. each group mean by its conjugate normal update;
3. each group sd by random-walk Metropolis steps on its log;
4. with a quadratic surrogate of each likelihood (`surrogate`), an independence step of every
   participant from their conditional within the group under the surrogate (a Student-t:
   it follows the group where the group pulls a participant from their own posterior), and
   scale moves of sigma_k with the participants' values and shift moves of each group's mean
   with its participants' under the surrogate, with one exact check of where they end (they
   carry the participants along where the group sd is small: a funnel); or, exactly checked
   one by one, a random-walk step of every participant and `move_steps` parameters' scale and
   shift moves.

With correlated group normals the group normal is multivariate, the means take their
multivariate update and R joint random-walk steps on the atanh of its canonical partial
correlations. Step sizes are tuned during the tuning iterations and then fixed, so the kept
draws come from one fixed, exact kernel. The target, each move's acceptance ratio and their
derivations are in docs/group.md ("The sampler").

The proposals, their densities and their exact likelihoods are computed before the chains
run, in vectorized calls; the chains then evaluate normal densities and, with the surrogate,
two exact likelihoods (with the exact moves 1 + 2 x move_steps) and one proposal density per
participant and chain per iteration. The module is NumPy alone: the likelihood and the
proposal density come in as functions.
"""

from dataclasses import dataclass

import numpy as np

from .model import correlation_cholesky, cpc_log_prior

__all__ = ["contrast_labels", "gaussian_surrogate", "metropolis_within_gibbs"]

PARTICIPANT_STEPS = 1  # independence steps per participant per iteration
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
SURROGATE_STEPS = 10  # scale or shift moves under the surrogate per iteration, before their exact check
CONDITIONAL_DF = 5.0  # degrees of freedom of the conditional step's Student-t proposal


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


def metropolis_within_gibbs(y: np.ndarray, log_weight: np.ndarray, group_index: np.ndarray, n_groups: int,
                            hyper_mean: np.ndarray, hyper_sd: np.ndarray, chains: int = 4, tune: int = 500,
                            draws: int = 1000, seed: int = 0, participant_steps: int = PARTICIPANT_STEPS,
                            log_likelihood=None, log_proposal=None, proposal_log_likelihood=None,
                            move_steps: int = 1, correlation_eta: float | None = None, surrogate=None,
                            surrogate_steps: int = SURROGATE_STEPS) -> dict:
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

    surrogate
        (P, b) of :func:`gaussian_surrogate`: with `log_likelihood`, `log_proposal` and
        `proposal_log_likelihood`, every iteration ends with the conditional step of every
        participant (:func:`_conditional_step`) and `surrogate_steps` scale and shift moves
        under the surrogate posterior with one exact check of their end point
        (:func:`_surrogate_moves`): two calls of `log_likelihood` per iteration, instead of the
        exact random walk and moves.
    surrogate_steps
        The surrogate moves per iteration.

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
        their tuned size ``correlation_step``. With `surrogate`, ``conditional_acceptance``
        (chains, participants): the conditional steps' acceptance rate after tuning,
        ``surrogate_acceptance`` (chains,): the share of iterations after tuning whose
        surrogate moves passed the exact check, and the tuned ``scale_step`` and ``shift_step``.
    """
    n, k, p = y.shape
    steps = tune + draws
    per_chain = steps * participant_steps + 1
    if k < chains * per_chain:
        raise ValueError(f"{k} proposals per participant; {chains} chains x (({tune} + {draws}) x "
                         f"{participant_steps} + 1) need {chains * per_chain}")
    if (log_likelihood is None) != (log_proposal is None):
        raise ValueError("the moves need both log_likelihood and log_proposal")
    if surrogate is not None and (log_likelihood is None or proposal_log_likelihood is None):
        raise ValueError("the surrogate moves need log_likelihood, log_proposal and proposal_log_likelihood")
    moves = log_likelihood is not None and surrogate is None
    if moves and not 1 <= move_steps <= p:
        raise ValueError(f"move_steps: expected 1 to {p} parameters per iteration, got {move_steps}")
    hierarchy = _Hierarchy.of(group_index, n_groups, hyper_mean, hyper_sd)
    rng = np.random.default_rng(seed)
    # the current values' log-likelihood, followed from the proposals' instead of evaluated again
    follow = (moves or surrogate is not None) and proposal_log_likelihood is not None
    independence = _IndependenceSteps(y, log_weight, proposal_log_likelihood if follow else None, chains, per_chain,
                                      participant_steps)
    state = independence.start(hierarchy)
    correlated = None if correlation_eta is None else _CorrelationSteps(correlation_eta, state, n)
    if moves:
        extra = _ExactMoves(y, chains, n_groups, move_steps, participant_steps, log_likelihood, log_proposal,
                            follow, independence.early_accepted)
    elif surrogate is not None:
        extra = _SurrogateMoves(surrogate, surrogate_steps, chains, n, p, log_likelihood, log_proposal)
    else:
        extra = None
    kept = {"mu": np.empty((chains, draws, n_groups, p)), "sigma": np.empty((chains, draws, p)),
            "y": np.empty((chains, draws, n, p))}
    if log_likelihood is None:
        kept["index"] = np.empty((chains, draws, n), np.int64)
    if correlated is not None:
        kept["rho"] = np.empty((chains, draws, p * (p - 1) // 2))
    sd_step = SIGMA_STEP_SCALE / np.sqrt(2.0 * n)
    for t in range(steps):
        independence(state, hierarchy, t, tune, rng)  # 1.
        _group_means(state, hierarchy, rng)  # 2.
        _group_sds(state, hierarchy, sd_step, rng)  # 3.
        for block in (correlated, extra):  # 3b. R; 4. the exact or the surrogate moves
            if block is not None:
                block(state, hierarchy, t, tune, rng)
        if t >= tune:
            kept["mu"][:, t - tune], kept["sigma"][:, t - tune], kept["y"][:, t - tune] = state.mu, state.sigma, state.y
            if "index" in kept:
                kept["index"][:, t - tune] = state.index
            if correlated is not None:
                kept["rho"][:, t - tune] = correlated.below_diagonal()
    kept["accepted"] = independence.accepted
    for block in (correlated, extra):
        if block is not None:
            kept.update(block.summary(draws))
    return kept


@dataclass
class _Hierarchy:
    """What the chains share and never change: the participants' groups and the hyperpriors."""

    group_index: np.ndarray  # (participants,) each participant's group
    members: np.ndarray  # (participants, groups) one-hot
    counts: np.ndarray  # (groups,) participants per group
    hyper_mean: np.ndarray  # (parameters,) m of mu ~ Normal(m, s)
    hyper_sd: np.ndarray  # (parameters,) s of mu and of sigma ~ HalfNormal(s)

    @classmethod
    def of(cls, group_index, n_groups, hyper_mean, hyper_sd):
        members = np.eye(n_groups)[group_index]
        counts = members.sum(axis=0)
        if (counts == 0).any():
            raise ValueError(f"group(s) {np.flatnonzero(counts == 0).tolist()} have no participant")
        return cls(group_index, members, counts, hyper_mean, hyper_sd)


@dataclass
class _ChainState:
    """Every chain's current values."""

    y: np.ndarray  # the participants' values (chains, participants, parameters)
    w: np.ndarray  # their log weights, l(y) - log q(y) (chains, participants)
    ll: np.ndarray | None  # their exact log-likelihood, where followed (chains, participants)
    index: np.ndarray  # the proposal each holds (chains, participants), while only step 1 moves them
    mu: np.ndarray  # the group means (chains, groups, parameters)
    sigma: np.ndarray  # the group sds (chains, parameters)
    correlation: tuple | None = None  # R^-1 and log det R (see _group_logpdf), or None: independent normals


class _IndependenceSteps:
    """Step 1: independence Metropolis-Hastings steps of every participant, each with a fresh
    proposal; chain c uses the proposals from c x per_chain onwards, each once."""

    def __init__(self, y, log_weight, proposal_log_likelihood, chains, per_chain, steps):
        self.y, self.log_weight, self.proposal_log_likelihood = y, log_weight, proposal_log_likelihood
        self.per_chain, self.steps = per_chain, steps
        self.participants = np.arange(y.shape[0])
        self.base = np.arange(chains)[:, None] * per_chain
        self.accepted = np.zeros((chains, y.shape[0]), np.int64)  # after tuning
        self.early_accepted = np.zeros((chains, y.shape[0]), np.int64)  # in the tuning's second quarter

    def start(self, hierarchy) -> _ChainState:
        """Each chain at its first proposal of positive weight (as far as its proposals reach),
        the group means at the participants' means and the sds at their spread."""
        index = self.base + _first_positive(self.log_weight, self.base[:, 0], self.per_chain)
        y, w = self.y[self.participants, index], self.log_weight[self.participants, index]
        ll = None if self.proposal_log_likelihood is None else self.proposal_log_likelihood[self.participants, index]
        mu = np.einsum("cnp,ng->cgp", y, hierarchy.members) / hierarchy.counts[None, :, None]
        n, chains, p = y.shape[1], y.shape[0], y.shape[2]
        sigma = np.maximum(y.std(axis=1), 0.1 * hierarchy.hyper_sd) if n > 1 else \
            np.broadcast_to(hierarchy.hyper_sd, (chains, p))
        return _ChainState(y, w, ll, index, mu, np.array(sigma, float))

    def __call__(self, state, hierarchy, t, tune, rng):
        centre = state.mu[:, hierarchy.group_index]  # (chains, n, p)
        current_log_normal = _group_logpdf(state.y, centre, state.sigma, state.correlation)
        for j in range(self.steps):
            proposal = self.base + 1 + t * self.steps + j
            new_y, new_w = self.y[self.participants, proposal], self.log_weight[self.participants, proposal]
            new_log_normal = _group_logpdf(new_y, centre, state.sigma, state.correlation)
            with np.errstate(invalid="ignore"):  # -inf - -inf: NaN, never accepted
                accept = np.log(rng.random(state.w.shape)) < new_w + new_log_normal - state.w - current_log_normal
            state.y = np.where(accept[..., None], new_y, state.y)
            state.w = np.where(accept, new_w, state.w)
            if self.proposal_log_likelihood is not None:
                state.ll = np.where(accept, self.proposal_log_likelihood[self.participants, proposal], state.ll)
            current_log_normal = np.where(accept, new_log_normal, current_log_normal)
            state.index = np.where(accept, proposal, state.index)
            if t >= tune:
                self.accepted += accept
            elif tune // 4 <= t < tune // 2:
                self.early_accepted += accept


def _group_means(state, hierarchy, rng):
    """Step 2: the group means from their conjugate normal given the participants' values and
    the sds (multivariate with correlated group normals)."""
    h = hierarchy
    total = np.einsum("cnp,ng->cgp", state.y, h.members)
    if state.correlation is None:
        precision = 1.0 / h.hyper_sd ** 2 + h.counts[None, :, None] / state.sigma[:, None] ** 2
        mean = (h.hyper_mean / h.hyper_sd ** 2 + total / state.sigma[:, None] ** 2) / precision
        state.mu = mean + rng.standard_normal(mean.shape) / np.sqrt(precision)
    else:
        state.mu = _correlated_means(total, h.counts, state.sigma, state.correlation[0], h.hyper_mean, h.hyper_sd,
                                     rng)


def _group_sds(state, hierarchy, step, rng):
    """Step 3: SIGMA_STEPS random-walk Metropolis steps on each log sd (half-normal prior, its
    Jacobian); with correlated group normals one log sd at a time, the others entering through R."""
    hyper_sd, n = hierarchy.hyper_sd, hierarchy.group_index.size
    log_sd = np.log(state.sigma)
    spread = state.y - state.mu[:, hierarchy.group_index]  # (chains, n, p)
    if state.correlation is None:
        squares = (spread ** 2).sum(axis=1)  # (chains, p)

        def log_conditional(log_sd):
            return -0.5 * (np.exp(log_sd) / hyper_sd) ** 2 + log_sd - n * log_sd - 0.5 * squares * np.exp(-2.0 * log_sd)

        for _ in range(SIGMA_STEPS):
            candidate = log_sd + step * rng.standard_normal(log_sd.shape)
            move = np.log(rng.random(log_sd.shape)) < log_conditional(candidate) - log_conditional(log_sd)
            log_sd = np.where(move, candidate, log_sd)
    else:
        r_inverse = state.correlation[0]

        def log_conditional(log_sd):
            e = spread * np.exp(-log_sd)[:, None]
            return ((-0.5 * (np.exp(log_sd) / hyper_sd) ** 2 + log_sd - n * log_sd).sum(-1)
                    - 0.5 * np.einsum("cnp,cpq,cnq->c", e, r_inverse, e))

        chains, p = log_sd.shape
        for _ in range(SIGMA_STEPS):
            for k in range(p):
                candidate = log_sd.copy()
                candidate[:, k] += step * rng.standard_normal(chains)
                move = np.log(rng.random(chains)) < log_conditional(candidate) - log_conditional(log_sd)
                log_sd = np.where(move[:, None], candidate, log_sd)
    state.sigma = np.exp(log_sd)


class _CorrelationSteps:
    """Step 3b: joint random-walk steps of the atanh of R's canonical partial correlations under
    their LKJ prior and the group normal, the step size tuned toward CORRELATION_TARGET."""

    def __init__(self, eta, state, n):
        chains, p = state.sigma.shape
        self.eta, self.n, self.p = eta, n, p
        n_pairs = p * (p - 1) // 2
        self.w = np.zeros((chains, n_pairs))  # R = I
        state.correlation, self.factor = _correlation_state(self.w, p)
        self.step = SIGMA_STEP_SCALE / np.sqrt(n * max(n_pairs, 1))
        self.accepted = np.zeros(chains)

    def __call__(self, state, hierarchy, t, tune, rng):
        e = (state.y - state.mu[:, hierarchy.group_index]) / state.sigma[:, None]
        self.w, state.correlation, self.factor, moved = _correlation_steps(
            self.w, state.correlation, self.factor, np.einsum("cnp,cnq->cpq", e, e), self.n, self.eta, self.step, rng)
        if t < tune:
            self.step *= np.exp((t + 1.0) ** -0.6 * (moved.mean() / SIGMA_STEPS - CORRELATION_TARGET))
        else:
            self.accepted += moved

    def below_diagonal(self):
        """R's entries below the diagonal, row by row (chains, pairs)."""
        below = np.tril_indices(self.p, -1)
        return (self.factor @ np.swapaxes(self.factor, -1, -2))[:, below[0], below[1]]

    def summary(self, draws):
        return {"correlation_acceptance": self.accepted / (draws * SIGMA_STEPS), "correlation_step": self.step}


class _ExactMoves:
    """Step 4, every move checked with the exact likelihood: a random-walk step of every
    participant (EXTRA_WALKS more for those the independence steps seldom moved in the tuning's
    second quarter; the walk shaped by the chains' own values from its middle on) and the scale
    and shift moves of `move_steps` parameters, cycling; their step sizes tuned toward
    WALK_TARGET and MOVE_TARGET (Robbins-Monro on their logs). Then the values' log weights for
    the next independence steps."""

    def __init__(self, y, chains, n_groups, move_steps, participant_steps, log_likelihood, log_proposal, follow,
                 early_accepted):
        n, _, p = y.shape
        self.move_steps, self.participant_steps = move_steps, participant_steps
        self.log_likelihood, self.log_proposal, self.follow = log_likelihood, log_proposal, follow
        self.early_accepted = early_accepted
        self.scale_step, self.shift_step = np.full(p, SCALE_STEP), np.full(p, SHIFT_STEP)
        self.adapted = np.zeros(p, np.int64)  # tuning updates per parameter
        self.tries = np.zeros(p, np.int64)  # moves per parameter after tuning
        self.scale_accepted, self.shift_accepted = np.zeros((chains, p)), np.zeros((chains, n_groups, p))
        self.walk_shape = _cholesky_of_covariance(y)
        self.walk_step, self.walk_accepted = np.full(n, WALK_STEP), np.zeros((chains, n), np.int64)
        self.walk_steps = np.ones(n, np.int64)  # random-walk steps per iteration, per participant
        self.slow = np.zeros(0, np.int64)  # the participants given EXTRA_WALKS more random-walk steps
        self.walk_gain_start = 0  # iteration the Robbins-Monro gain of the walk's step sizes counts from
        self.history = []  # the chains' values over the tuning's second quarter, for the walk's shape

    def __call__(self, state, hierarchy, t, tune, rng):
        if not self.follow:
            state.ll = self.log_likelihood(state.y)
        if t == tune // 2 and self.history:
            self._reshape_walk(t, tune)
        self._walk(state, hierarchy, t, tune, rng)
        p = state.y.shape[-1]
        for par in (t * self.move_steps + np.arange(self.move_steps)) % p:
            state.y, state.ll, scale_rate, shift_rate = _scale_and_shift(
                par, state.y, state.ll, state.mu, state.sigma, hierarchy.group_index, hierarchy.counts,
                hierarchy.hyper_mean[par], hierarchy.hyper_sd[par], self.scale_step[par], self.shift_step[par],
                self.log_likelihood, rng)
            if t < tune:
                gain = (self.adapted[par] + 1.0) ** -0.6
                self.adapted[par] += 1
                self.scale_step[par] *= np.exp(gain * (scale_rate[0].mean() - MOVE_TARGET))
                self.shift_step[par] *= np.exp(gain * (shift_rate[0].mean() - MOVE_TARGET))
            else:
                self.tries[par] += 1
                self.scale_accepted[:, par] += scale_rate[1]
                self.shift_accepted[:, :, par] += shift_rate[1]
        with np.errstate(invalid="ignore"):
            log_q = self.log_proposal(state.y)
            state.w = np.where(np.isnan(log_q), np.inf, state.ll - log_q)  # no proposal density: +inf

    def _reshape_walk(self, t, tune):
        """The walk's shape from the chains' own values (pooled over chains) in the tuning's
        second quarter: the participant's conditional posterior, not the proposal's; where the
        independence steps seldom accepted, the random walk does the mixing."""
        p = self.history[0].shape[-1]
        self.walk_shape = _cholesky_of_covariance(np.concatenate(self.history, axis=0).swapaxes(0, 1))
        self.walk_step = np.full(self.walk_step.size, ADAPTED_WALK_STEP / np.sqrt(p))
        self.walk_gain_start, self.history = t, []
        early_tries = (tune // 2 - tune // 4) * self.participant_steps
        self.slow = np.flatnonzero(self.early_accepted.mean(axis=0) < SLOW_ACCEPTANCE * early_tries)
        self.walk_steps[self.slow] += EXTRA_WALKS

    def _walk(self, state, hierarchy, t, tune, rng):
        """The random-walk steps of every participant, and their step sizes' tuning."""
        walk_gain = (t - self.walk_gain_start + 1.0) ** -0.6
        centre = state.mu[:, hierarchy.group_index]
        state.y, state.ll, walk_moved = _random_walk(state.y, state.ll, centre, state.sigma, state.correlation,
                                                     self.walk_shape, self.walk_step, self.log_likelihood, rng)
        moved = walk_moved.astype(np.int64)
        slow_cells = np.ix_(np.arange(state.y.shape[0]), self.slow)  # the slow participants' (chains, n) entries
        for _ in range(EXTRA_WALKS if self.slow.size else 0):
            y_slow, ll_slow, slow_moved = _random_walk(
                state.y[slow_cells], state.ll[slow_cells], centre[slow_cells], state.sigma, state.correlation,
                self.walk_shape[self.slow], self.walk_step[self.slow],
                lambda values: self.log_likelihood(values, self.slow), rng)
            state.y[slow_cells], state.ll[slow_cells] = y_slow, ll_slow
            moved[slow_cells] += slow_moved
        if t < tune:  # Robbins-Monro on each participant's log step size, toward WALK_TARGET
            self.walk_step *= np.exp(walk_gain * (moved.mean(axis=0) / self.walk_steps - WALK_TARGET))
            if tune // 4 <= t < tune // 2:
                self.history.append(state.y)
        else:
            self.walk_accepted += moved

    def summary(self, draws):
        with np.errstate(invalid="ignore", divide="ignore"):
            rates = {"scale_acceptance": self.scale_accepted / self.tries,
                     "shift_acceptance": self.shift_accepted / self.tries}
        return {**rates, "scale_step": self.scale_step, "shift_step": self.shift_step,
                "walk_accepted": self.walk_accepted, "walk_step": self.walk_step, "walk_steps": self.walk_steps}


class _SurrogateMoves:
    """Step 4 under the surrogate: the conditional step of every participant
    (:func:`_conditional_step`), then `steps` scale and shift moves under the surrogate
    posterior with one exact check of their end point (:func:`_surrogate_moves`), their step
    sizes tuned toward MOVE_TARGET under the surrogate; then the values' log weights."""

    def __init__(self, surrogate, steps, chains, n, p, log_likelihood, log_proposal):
        self.surrogate, self.steps = surrogate, steps
        self.log_likelihood, self.log_proposal = log_likelihood, log_proposal
        self.scale_step, self.shift_step = np.full(p, SCALE_STEP), np.full(p, SHIFT_STEP)
        self.adapted = np.zeros((p, 2), np.int64)  # tuning updates per parameter and kind of move
        self.surrogate_accepted = np.zeros(chains, np.int64)
        self.conditional_accepted = np.zeros((chains, n), np.int64)

    def __call__(self, state, hierarchy, t, tune, rng):
        h = hierarchy
        state.y, state.ll, moved = _conditional_step(state.y, state.ll, state.mu, state.sigma, state.correlation,
                                                     h.group_index, self.surrogate, self.log_likelihood, rng)
        if t >= tune:
            self.conditional_accepted += moved
        state.y, state.ll, state.mu, state.sigma, passed, tried = _surrogate_moves(
            state.y, state.ll, state.mu, state.sigma, h.group_index, h.counts, h.hyper_mean, h.hyper_sd,
            self.surrogate, self.steps, self.scale_step, self.shift_step, self.log_likelihood, rng)
        if t < tune:  # Robbins-Monro on the log step sizes, toward MOVE_TARGET under the surrogate
            for par, kind, rate in tried:
                self.adapted[par, kind] += 1
                sizes = self.shift_step if kind else self.scale_step
                sizes[par] *= np.exp(self.adapted[par, kind] ** -0.6 * (rate.mean() - MOVE_TARGET))
        else:
            self.surrogate_accepted += passed
        with np.errstate(invalid="ignore"):
            state.w = state.ll - self.log_proposal(state.y)

    def summary(self, draws):
        return {"surrogate_acceptance": self.surrogate_accepted / draws,
                "conditional_acceptance": self.conditional_accepted / draws,
                "scale_step": self.scale_step, "shift_step": self.shift_step}


def _first_positive(log_weight, starts, length):
    """(chains, participants): per chain's block of proposals (starting at `starts`, `length`
    long), the offset of each participant's first proposal with a finite log weight (0 where
    there is none)."""
    offsets = np.empty((starts.size, log_weight.shape[0]), np.int64)
    for c, start in enumerate(starts):
        offsets[c] = np.argmax(np.isfinite(log_weight[:, start:start + length]), axis=1)
    return offsets


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
    """The scale move of sigma_k and then the shift moves of each group's mu_gk (see the
    module notes), updating mu and sigma in place. Returns the participants' new values, their
    log-likelihood and, per move, its acceptance probabilities and acceptances ((chains,) for
    the scale move, (chains, groups) for the shift)."""
    current_y, current_ll, scale = _scale_move(k, current_y, current_ll, mu, sigma, group_index, s, scale_step,
                                               log_likelihood, rng)
    current_y, current_ll, shift = _shift_move(k, current_y, current_ll, mu, sigma, group_index, counts, m, s,
                                               shift_step, log_likelihood, rng)
    return current_y, current_ll, scale, shift


def _scale_move(k, current_y, current_ll, mu, sigma, group_index, s, step, log_likelihood, rng):
    """sigma_k and every participant's distance to their group mean on k, times one c per
    chain; sigma updated in place. Returns the values, their log-likelihood (of
    `log_likelihood`) and the move's acceptance probabilities and acceptances (chains,)."""
    chains = current_y.shape[0]
    centre = mu[:, group_index, k]  # (chains, n)
    log_c = step * rng.standard_normal(chains)
    new_sigma = sigma[:, k] * np.exp(log_c)
    candidate = current_y.copy()
    candidate[..., k] = centre + np.exp(log_c)[:, None] * (current_y[..., k] - centre)
    new_ll = log_likelihood(candidate)
    with np.errstate(invalid="ignore"):
        log_ratio = (new_ll - current_ll).sum(axis=1) - 0.5 * (new_sigma ** 2 - sigma[:, k] ** 2) / s ** 2 + log_c
    log_ratio = np.where(np.isnan(log_ratio), -np.inf, log_ratio)
    accept = np.log(rng.random(chains)) < log_ratio
    sigma[:, k] = np.where(accept, new_sigma, sigma[:, k])
    return (np.where(accept[:, None, None], candidate, current_y), np.where(accept[:, None], new_ll, current_ll),
            (np.exp(np.minimum(log_ratio, 0.0)), accept))


def _shift_move(k, current_y, current_ll, mu, sigma, group_index, counts, m, s, step, log_likelihood, rng):
    """Each group's mu_gk and its participants' values on k, shifted by one delta per chain
    and group; mu updated in place. Returns the values, their log-likelihood and the move's
    acceptance probabilities and acceptances (chains, groups)."""
    chains = current_y.shape[0]
    delta = step * sigma[:, k, None] / np.sqrt(counts) * rng.standard_normal((chains, counts.size))
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
    mu[..., k] = np.where(accept, new_mu, mu[..., k])
    take = accept[:, group_index]  # (chains, n)
    return (np.where(take[..., None], candidate, current_y), np.where(take, new_ll, current_ll),
            (np.exp(np.minimum(log_ratio, 0.0)), accept))


def gaussian_surrogate(draws: np.ndarray, prior_mean: np.ndarray, prior_sd: np.ndarray) -> tuple:
    """A quadratic approximation of each participant's log-likelihood on the unbounded scale,
    from draws of their posterior (n, S, p) and the per-participant prior's mean and sd there:
    the posterior's normal approximation divided by the prior's, l_i(y) ~ -y'P_i y / 2 + b_i'y,
    P_i = Sigma_i^-1 - diag(prior_sd^-2) with negative eigenvalues set to 0, b_i = Sigma_i^-1
    mu_i - prior_mean / prior_sd^2. Returns (P (n, p, p), b (n, p))."""
    mean = draws.mean(axis=1)
    spread = draws - mean[:, None]
    covariance = np.einsum("nsp,nsq->npq", spread, spread) / (draws.shape[1] - 1)
    covariance += 1e-9 * np.trace(covariance, axis1=1, axis2=2)[:, None, None] * np.eye(draws.shape[2])
    inverse = np.linalg.inv(covariance)
    eigenvalues, eigenvectors = np.linalg.eigh(inverse - np.diag(prior_sd ** -2.0))
    precision = np.einsum("npk,nk,nqk->npq", eigenvectors, np.maximum(eigenvalues, 0.0), eigenvectors)
    return precision, np.einsum("npq,nq->np", inverse, mean) - prior_mean / prior_sd ** 2


def _conditional_step(y, ll, mu, sigma, correlation, group_index, surrogate, log_likelihood, rng):
    """One independence Metropolis-Hastings step of every participant in every chain, its
    proposal the participant's conditional posterior within the group under the surrogate:
    a Student-t (CONDITIONAL_DF) with the precision P_i + Sigma_g^-1 and the mean of the
    product of the surrogate's normal and the current group normal, so that it follows the
    group where the group pulls the participant from their own posterior. Accepted with the
    exact likelihood. Returns y, ll and the acceptances (chains, n)."""
    precision, linear = surrogate
    chains, n, p = y.shape
    if correlation is None:
        group_precision = np.eye(p) / sigma[:, None, :] ** 2  # (chains, p, p)
    else:
        group_precision = correlation[0] / sigma[:, :, None] / sigma[:, None, :]
    centre = mu[:, group_index]  # (chains, n, p)
    conditional = precision[None] + group_precision[:, None]  # (chains, n, p, p)
    right = linear[None] + np.einsum("cpq,cnq->cnp", group_precision, centre)
    mean = np.linalg.solve(conditional, right[..., None])[..., 0]
    factor = np.linalg.cholesky(conditional)  # conditional = F F'; a draw is mean + F^-T u
    step = np.linalg.solve(np.swapaxes(factor, -1, -2), rng.standard_normal((chains, n, p, 1)))[..., 0]
    proposal = mean + step / np.sqrt(rng.chisquare(CONDITIONAL_DF, (chains, n)) / CONDITIONAL_DF)[..., None]

    def log_proposal(values):  # up to a constant shared by both points
        e = values - mean
        return -(CONDITIONAL_DF + p) / 2 * np.log1p(np.einsum("cnp,cnpq,cnq->cn", e, conditional, e) / CONDITIONAL_DF)

    new_ll = log_likelihood(proposal)
    with np.errstate(invalid="ignore"):
        log_ratio = ((new_ll + _group_logpdf(proposal, centre, sigma, correlation) - log_proposal(proposal))
                     - (ll + _group_logpdf(y, centre, sigma, correlation) - log_proposal(y)))
        accept = np.log(rng.random((chains, n))) < np.where(np.isnan(log_ratio), -np.inf, log_ratio)
    return np.where(accept[..., None], proposal, y), np.where(accept, new_ll, ll), accept


def _surrogate_moves(y, ll, mu, sigma, group_index, counts, hyper_mean, hyper_sd, surrogate, steps, scale_step,
                     shift_step, log_likelihood, rng):
    """`steps` scale or shift moves (each a random parameter's, either kind with probability
    1/2) under the surrogate posterior, whose likelihood is the quadratic `surrogate` (P, b)
    of :func:`gaussian_surrogate`, then one exact Metropolis-Hastings check of where they
    ended (Liu's surrogate transitions): with l the exact and s the surrogate log-likelihood,
    summed over participants, log r = [l(y') - s(y')] - [l(y) - s(y)]. The random scan is
    reversible under the surrogate posterior, so the check makes the block exact.

    Returns y, ll, mu, sigma after the block, whether each chain's block was accepted
    (chains,), and the surrogate moves' acceptances: per move the parameter, its kind (0
    scale, 1 shift) and the chains' acceptance probabilities."""
    precision, linear = surrogate

    def log_surrogate(values):  # -y'Py / 2 + b'y
        return np.einsum("cnp,cnp->cn", values, linear - 0.5 * np.einsum("npq,cnq->cnp", precision, values))

    start_y, start_mu, start_sigma = y, mu.copy(), sigma.copy()
    start_s = log_surrogate(y)
    s_now, moves = start_s, []
    for _ in range(steps):
        k = int(rng.integers(y.shape[-1]))
        if rng.random() < 0.5:
            y, s_now, (rate, _) = _scale_move(k, y, s_now, mu, sigma, group_index, hyper_sd[k], scale_step[k],
                                              log_surrogate, rng)
            moves.append((k, 0, rate))
        else:
            y, s_now, (rate, _) = _shift_move(k, y, s_now, mu, sigma, group_index, counts, hyper_mean[k], hyper_sd[k],
                                              shift_step[k], log_surrogate, rng)
            moves.append((k, 1, rate.mean(axis=1)))
    moved = np.flatnonzero((y != start_y).any(axis=(1, 2)))
    accept = np.zeros(y.shape[0], bool)
    new_ll = ll.copy()
    if moved.size:
        new_ll[moved] = log_likelihood(y[moved])
        with np.errstate(invalid="ignore"):
            log_ratio = ((new_ll[moved] - s_now[moved]) - (ll[moved] - start_s[moved])).sum(axis=1)
        accept[moved] = np.log(rng.random(moved.size)) < np.where(np.isnan(log_ratio), -np.inf, log_ratio)
    return (np.where(accept[:, None, None], y, start_y), np.where(accept[:, None], new_ll, ll),
            np.where(accept[:, None, None], mu, start_mu), np.where(accept[:, None], sigma, start_sigma), accept, moves)


def contrast_labels(groups) -> list:
    """"B - A" for every pair of groups, later minus earlier."""
    return [f"{groups[j]} - {groups[i]}" for i in range(len(groups)) for j in range(i + 1, len(groups))]

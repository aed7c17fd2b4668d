"""Q-value trajectories replayed from observed choices and rewards (docs/model.md).

The drift of trial t is v * (Q[1] - Q[0]) before trial t, and the Q-values depend only on
what the participant chose and saw, so for any learning rate the Q difference can be
replayed from a data file. Replaying it under a fixed grid of learning rates gives the
summary network per-trial inputs whose agreement with the choices and RTs tells which
learning rate fits: the information about alpha, in a form a network learns quickly.
q_profile condenses the same evidence per participant (a choice rule fitted under each
replayed rate) for the inference network's conditions.
"""

import numba as nb
import numpy as np

from ..data.study import Study

# Learning rates the "qtraces" input replays: spread over the prior's (0, 1) support.
TRACE_LEARNING_RATES = (0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95)


@nb.njit(cache=True, inline="always")
def start_trial(q, t, block, q_init):
    """Every pair's Q-values set to q_init at the first trial and at each new block (block:
    the participant's block labels, by trial)."""
    if t == 0 or block[t] != block[t - 1]:
        q[:] = q_init


@nb.njit(cache=True, inline="always")
def learn(q, k, c, reward, alpha_pos, alpha_neg):
    """The Q-learning update after choice c (0 or 1) of pair k and its reward: Q[k, c] moves
    toward the reward by the prediction error times alpha_pos where it is positive, alpha_neg
    otherwise. The one update the simulator, the likelihood and the replays call."""
    delta = reward - q[k, c]
    q[k, c] += (alpha_pos if delta > 0 else alpha_neg) * delta


@nb.njit(cache=True)
def _q_difference_kernel(choice, reward, block, condition, n_conditions, n_trials, alphas, q_init, out):
    q = np.empty((n_conditions, 2))
    for i in range(choice.shape[0]):
        for j in range(alphas.shape[0]):
            for t in range(n_trials[i]):
                start_trial(q, t, block[i], q_init[i])
                k = condition[i, t]
                out[i, t, j] = q[k, 1] - q[k, 0]
                c = choice[i, t]
                if c < 0:
                    continue  # missing response: nothing seen, nothing learned
                learn(q, k, c, reward[i, t], alphas[j], alphas[j])


def q_differences(study: Study, learning_rates, q_init):
    """(B, T, K) Q[1] - Q[0] of each trial's stimulus pair before the trial, replayed with
    each of K learning rates.

    Q-values start at q_init (a number, or one per participant) and every pair's reset at
    each new block; a missing response leaves them unchanged. Padding positions are 0.
    """
    alphas = np.asarray(learning_rates, np.float64)
    if alphas.ndim != 1 or not ((alphas > 0) & (alphas <= 1)).all():
        raise ValueError(f"learning rates must be a 1-D sequence in (0, 1], got {learning_rates!r}")
    out = np.zeros((study.n_participants, study.max_trials, alphas.size))
    q_start = np.broadcast_to(np.asarray(q_init, np.float64), (study.n_participants,)).copy()
    _q_difference_kernel(study.choice, study.reward, study.block, study.condition, study.n_conditions,
                         study.n_trials.astype(np.int64), alphas, q_start, out)
    return out


# The "qprofile" condition: per replayed learning rate, how well a logistic choice rule on the
# replayed Q difference fits the choices, and how RTs go with its size. Across the grid this
# is a profile of the data's fit over alpha, one number set per participant.
PROFILE_RIDGE = 0.01  # Gaussian penalty on the logistic intercept and slope: finite fits when choices separate
PROFILE_SLOPE_SCALE = 10.0  # slopes (drift x boundary, roughly) enter divided by this
PROFILE_MAX_STEP = 5.0  # damped Newton: no coefficient moves further than this per iteration
PROFILE_ITERATIONS = 100


@nb.njit(cache=True)
def _ridge_logistic_fit(x, y, ridge):
    """(slope, summed log-likelihood) of P(y = 1) = sigmoid(b0 + b1 x) with the Gaussian
    penalty ridge / 2 (b0^2 + b1^2), by damped Newton steps from zero."""
    b0 = 0.0
    b1 = 0.0
    for _ in range(PROFILE_ITERATIONS):
        g0 = -ridge * b0
        g1 = -ridge * b1
        h00 = ridge
        h01 = 0.0
        h11 = ridge
        for t in range(x.size):
            p = 1.0 / (1.0 + np.exp(-(b0 + b1 * x[t])))
            r = y[t] - p
            w = p * (1.0 - p)
            g0 += r
            g1 += r * x[t]
            h00 += w
            h01 += w * x[t]
            h11 += w * x[t] * x[t]
        det = h00 * h11 - h01 * h01
        d0 = min(max((h11 * g0 - h01 * g1) / det, -PROFILE_MAX_STEP), PROFILE_MAX_STEP)
        d1 = min(max((h00 * g1 - h01 * g0) / det, -PROFILE_MAX_STEP), PROFILE_MAX_STEP)
        b0 += d0
        b1 += d1
        if abs(d0) + abs(d1) < 1e-10:
            break
    loglik = 0.0
    for t in range(x.size):
        eta = b0 + b1 * x[t]
        signed = eta if y[t] == 1.0 else -eta
        loglik -= np.log1p(np.exp(-abs(signed))) + max(-signed, 0.0)  # log sigmoid(signed)
    return b1, loglik


@nb.njit(cache=True)
def _correlation(x, y):
    """Pearson correlation; 0 when either variable is constant."""
    ex = x - x.mean()
    ey = y - y.mean()
    cxx = (ex * ex).sum()
    cyy = (ey * ey).sum()
    return (ex * ey).sum() / np.sqrt(cxx * cyy) if cxx > 1e-12 and cyy > 1e-12 else 0.0


@nb.njit(cache=True)
def _profile_kernel(dq, choice, rt, excluded, n_trials, ridge, out):
    n_rates = dq.shape[2]
    for i in range(dq.shape[0]):
        seen = np.nonzero((choice[i, :n_trials[i]] >= 0) & ~excluded[i, :n_trials[i]])[0]
        if seen.size == 0:
            continue
        y = choice[i][seen].astype(np.float64)
        rts = rt[i][seen]
        for k in range(n_rates):
            x = dq[i, :, k][seen]
            slope, loglik = _ridge_logistic_fit(x, y, ridge)
            out[i, k] = loglik / seen.size + np.log(2.0)
            out[i, n_rates + k] = slope / PROFILE_SLOPE_SCALE
            out[i, 2 * n_rates + k] = _correlation(np.abs(x), rts)


def q_profile(study: Study, learning_rates, q_init):
    """(B, 3K) per participant, for each of K replayed learning rates: the mean log-likelihood
    per response of a ridge-penalised logistic choice rule P(arm 1) = sigmoid(b0 + b1 dQ),
    plus log 2 (0 = chance); its slope b1 / PROFILE_SLOPE_SCALE; and the correlation of the
    RT with |dQ| (the diffusion is faster when the Q values differ more). Only responses
    count; a participant without any has all zeros.

    The diffusion's choice probability is logistic in the drift when z = 1/2 (slope: the
    boundary separation), so the first block is nearly a profile likelihood of the choices
    over alpha: the learning-rate information, in a form the inference network reads directly.
    Excluded trials update the Q-values but, as in the likelihood, are not fitted.
    """
    dq = q_differences(study, learning_rates, q_init)
    out = np.zeros((study.n_participants, 3 * dq.shape[2]))
    _profile_kernel(dq, study.choice, study.rt, study.excluded, study.n_trials.astype(np.int64), PROFILE_RIDGE, out)
    return out

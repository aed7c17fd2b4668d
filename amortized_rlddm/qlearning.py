"""Q-value trajectories replayed from observed choices and rewards (DESIGN.md §2).

The drift of trial t is v * (Q[1] - Q[0]) before trial t, and the Q-values depend only on
what the participant chose and saw, so for any learning rate the Q difference can be
replayed from a data file. Replaying it under a fixed grid of learning rates gives the
summary network per-trial inputs whose agreement with the choices and RTs tells which
learning rate fits: the information about alpha, in a form a network learns quickly.
"""

import numba as nb
import numpy as np

from .study import Study

# Learning rates the "qtraces" input replays: spread over the prior's (0, 1) support.
TRACE_LEARNING_RATES = (0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95)


@nb.njit(cache=True)
def _q_difference_kernel(choice, reward, block, n_trials, alphas, q_init, out):
    for i in range(choice.shape[0]):
        for k in range(alphas.shape[0]):
            q0 = q_init
            q1 = q_init
            for t in range(n_trials[i]):
                if t > 0 and block[i, t] != block[i, t - 1]:
                    q0 = q_init
                    q1 = q_init
                out[i, t, k] = q1 - q0
                c = choice[i, t]
                if c < 0:
                    continue  # missing response: nothing seen, nothing learned
                if c == 1:
                    q1 += alphas[k] * (reward[i, t] - q1)
                else:
                    q0 += alphas[k] * (reward[i, t] - q0)


def q_differences(study: Study, learning_rates, q_init):
    """(B, T, K) Q[1] - Q[0] before each trial, replayed with each of K learning rates.

    Q-values start at q_init and reset at each new block; a missing response leaves them
    unchanged. Padding positions are 0.
    """
    alphas = np.asarray(learning_rates, np.float64)
    if alphas.ndim != 1 or not ((alphas > 0) & (alphas <= 1)).all():
        raise ValueError(f"learning rates must be a 1-D sequence in (0, 1], got {learning_rates!r}")
    out = np.zeros((study.n_participants, study.max_trials, alphas.size))
    _q_difference_kernel(study.choice, study.reward, study.block, study.n_trials.astype(np.int64),
                         alphas, float(q_init), out)
    return out

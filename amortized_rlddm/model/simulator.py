"""Exact simulation of the coupled Q-learning drift-diffusion process (docs/model.md).

One compiled kernel runs every participant and trial: draw both arms' potential outcomes,
set the drift from the current Q difference, draw an exact Wiener first passage, apply the
deadline, reveal the chosen arm's outcome and update its Q-value.
"""

import math
from collections.abc import Mapping

import numba as nb
import numpy as np

from ..data.study import Study
from .fast_random import new_state, uniform
from .task import TaskDesign
from .wiener import sample_first_passage


@nb.njit(cache=True)
def _simulate_kernel(v, a, z, t0, alpha_pos, alpha_neg, q_init, deadline,
                     n_trials, block, arm_probs, state, choice, rt, reward, outcomes):
    for i in range(v.shape[0]):
        q0 = q_init
        q1 = q_init
        for t in range(n_trials[i]):
            if t > 0 and block[i, t] != block[i, t - 1]:
                q0 = q_init
                q1 = q_init
            for arm in range(2):
                outcomes[i, t, arm] = 1 if uniform(state) < arm_probs[i, t, arm] else 0
            upper, decision_time = sample_first_passage(v[i] * (q1 - q0), a[i], z[i], state)
            response_time = t0[i] + decision_time
            if response_time > deadline:
                continue  # missing response: nothing seen, nothing learned
            c = 1 if upper else 0
            r = outcomes[i, t, c]
            choice[i, t] = c
            rt[i, t] = response_time
            reward[i, t] = r
            q = q1 if c == 1 else q0
            delta = r - q
            q += (alpha_pos[i] if delta > 0 else alpha_neg[i]) * delta
            if c == 1:
                q1 = q
            else:
                q0 = q


def learning_rates(params):
    """(alpha_pos, alpha_neg) arrays from a single-rate or dual-rate parameter mapping."""
    if "alpha" in params:
        if "alpha_pos" in params or "alpha_neg" in params:
            raise ValueError("give either 'alpha' or both 'alpha_pos' and 'alpha_neg', not both")
        alpha = np.asarray(params["alpha"], float)
        return alpha, alpha
    if "alpha_pos" in params and "alpha_neg" in params:
        return np.asarray(params["alpha_pos"], float), np.asarray(params["alpha_neg"], float)
    raise ValueError("parameters need a learning rate: 'alpha', or 'alpha_pos' and 'alpha_neg'")


def participant_arrays(params, names=("v", "a", "z", "t0")):
    """Validate a parameter mapping: equal-length 1-D float arrays inside the model's support."""
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError(f"missing parameter(s) {missing}")
    arrays = {n: np.atleast_1d(np.asarray(params[n], float)) for n in names}
    arrays["alpha_pos"], arrays["alpha_neg"] = (np.atleast_1d(x) for x in learning_rates(params))
    sizes = {n: x.shape for n, x in arrays.items()}
    if len(set(sizes.values())) != 1 or len(next(iter(sizes.values()))) != 1:
        raise ValueError(f"parameters must be 1-D arrays of one length (one value per participant), got shapes {sizes}")
    checks = {"a": (0.0, math.inf, False), "z": (0.0, 1.0, False), "t0": (0.0, math.inf, True),
              "alpha_pos": (0.0, 1.0, True), "alpha_neg": (0.0, 1.0, True), "v": (-math.inf, math.inf, True)}
    for n, (lo, hi, closed) in checks.items():
        x = arrays[n]
        ok = np.isfinite(x) & ((x >= lo) & (x <= hi) if closed else (x > lo) & (x < hi))
        if not ok.all():
            i = int(np.argmin(ok))
            raise ValueError(f"parameter '{n}' of participant {i} is {x[i]}, outside its support "
                             f"{'[' if closed else '('}{lo}, {hi}{']' if closed else ')'}")
    return arrays


def simulate(params: Mapping[str, np.ndarray], design: TaskDesign, seed: int,
             n_trials: int | np.ndarray | None = None, participant_ids: np.ndarray | None = None) -> Study:
    """Simulate a study exactly (no discretisation of the diffusion).

    Parameters
    ----------
    params
        Parameter name -> one value per participant (v, a, z, t0 and alpha, or alpha_pos
        and alpha_neg).
    design
        The task design (trials, reward schedule, blocks, deadline, q_init).
    seed
        The same seed gives the same study.
    n_trials
        Per-participant trial counts (default: drawn from the design).
    participant_ids
        Participant ids (default: 1, 2, ...).

    Returns
    -------
    Study
        Choices, RTs and rewards, plus both arms' potential outcomes (``outcomes``).
    """
    p = participant_arrays(params)
    n = p["v"].shape[0]
    rng = np.random.default_rng(seed)
    if n_trials is None:
        n_trials = design.sample_trial_counts(rng, n)
    n_trials = np.broadcast_to(np.asarray(n_trials, dtype=np.int64), (n,)).copy()
    if (n_trials < 1).any():
        raise ValueError("every participant needs at least one trial")
    max_trials = int(n_trials.max())
    block, position = design.block_layout(n_trials, max_trials)
    arm_probs = design.arm_probabilities(position)
    choice = np.full((n, max_trials), -1, np.int8)
    reward = np.full((n, max_trials), -1, np.int8)
    rt = np.full((n, max_trials), np.nan)
    outcomes = np.full((n, max_trials, 2), -1, np.int8)
    deadline = math.inf if design.deadline is None else float(design.deadline)
    _simulate_kernel(p["v"], p["a"], p["z"], p["t0"], p["alpha_pos"], p["alpha_neg"],
                     float(design.q_init), deadline, n_trials, block, arm_probs,
                     new_state(int(rng.integers(2**63))),
                     choice, rt, reward, outcomes)
    if participant_ids is None:
        participant_ids = np.arange(1, n + 1)
    return Study(participant=np.asarray(participant_ids), n_trials=n_trials, choice=choice, rt=rt,
                 reward=reward, block=block, outcomes=outcomes)

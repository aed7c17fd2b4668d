"""The exact RL-DDM likelihood: hand replay, missing trials, and recovery of the truth."""

import numpy as np
import pandas as pd
import pytest

from amortized_rlddm.model import wiener
from amortized_rlddm.model.likelihood import loglik
from amortized_rlddm.model.simulator import simulate
from amortized_rlddm.model.task import TaskDesign

TRUE = {"v": 3.0, "a": 1.3, "z": 0.45, "t0": 0.35, "alpha": 0.25}


def one(**values):
    return {k: np.array([float(v)]) for k, v in values.items()}


def test_matches_a_hand_computed_replay():
    frame = pd.DataFrame({"participant": ["p"] * 4, "trial": [1, 2, 3, 4],
                          "choice": [1, 1, None, 0], "rt": [0.8, 0.6, None, 1.1],
                          "reward": [1, 0, None, 1]})
    v, a, z, t0, alpha = 2.0, 1.5, 0.4, 0.3, 0.5
    # Q after trial 1 (arm 1 rewarded): Q1 = 0.75; after trial 2 (arm 1 unrewarded): 0.375;
    # trial 3 missing: no update; trial 4 chooses arm 0 with Q = (0.5, 0.375).
    expected = (wiener.log_density(0.5, True, 0.0, a, z)
                + wiener.log_density(0.3, True, v * 0.25, a, z)
                + wiener.log_density(0.8, False, v * -0.125, a, z))
    got = loglik(frame, one(v=v, a=a, z=z, t0=t0, alpha=alpha))
    assert got[0] == pytest.approx(expected, rel=1e-12)


def test_dual_rates_and_blocks_in_the_replay():
    frame = pd.DataFrame({"participant": [7] * 4, "trial": [1, 2, 3, 4], "choice": [1, 1, 1, 1],
                          "rt": [0.8, 0.6, 0.7, 0.9], "reward": [1, 0, 1, 1], "block": [1, 1, 2, 2]})
    v, a, z, t0 = 2.0, 1.5, 0.4, 0.3
    # block 1: Q1 0.5 -> 0.5 + 0.8 * 0.5 = 0.9 (positive error); block 2 resets to 0.5 -> 0.9
    expected = (wiener.log_density(0.5, True, 0.0, a, z) + wiener.log_density(0.3, True, v * 0.4, a, z)
                + wiener.log_density(0.4, True, 0.0, a, z) + wiener.log_density(0.6, True, v * 0.4, a, z))
    got = loglik(frame, one(v=v, a=a, z=z, t0=t0, alpha_pos=0.8, alpha_neg=0.1))
    assert got[0] == pytest.approx(expected, rel=1e-12)


def test_missing_trials_add_the_deadline_survival():
    design = TaskDesign(n_trials=60, deadline=1.0)
    params = one(**TRUE)
    study = simulate(params, design, seed=1)
    assert study.missing.sum() > 0
    without = loglik(study, params)[0]
    with_deadline = loglik(study, params, deadline=1.0)[0]
    # hand replay: each missing trial adds log P(rt > deadline) under its trial's drift
    q, added = [0.5, 0.5], 0.0
    for t in range(60):
        c = study.choice[0, t]
        if c < 0:
            added += wiener.log_survival(1.0 - TRUE["t0"], TRUE["v"] * (q[1] - q[0]), TRUE["a"], TRUE["z"])
            continue
        q[c] += TRUE["alpha"] * (study.reward[0, t] - q[c])
    assert added < 0
    assert with_deadline == pytest.approx(without + added, rel=1e-12)
    # a missed response is impossible under a deadline nobody can miss
    assert loglik(study, params, deadline=1e6)[0] == -np.inf


def test_rt_below_t0_has_zero_likelihood():
    frame = pd.DataFrame({"participant": [1, 1], "trial": [1, 2], "choice": [1, 0],
                          "rt": [0.8, 0.2], "reward": [1, 0]})
    assert loglik(frame, one(v=1, a=1, z=0.5, t0=0.3, alpha=0.3))[0] == -np.inf


def test_profile_over_learning_rate_peaks_near_the_truth():
    design = TaskDesign(n_trials=3000)
    study = simulate(one(**TRUE), design, seed=12)
    grid = np.linspace(0.05, 0.95, 37)
    profile = [loglik(study, one(**{**TRUE, "alpha": g}))[0] for g in grid]
    assert abs(grid[int(np.argmax(profile))] - TRUE["alpha"]) <= 0.075


def test_profile_over_each_ddm_parameter_peaks_near_the_truth():
    design = TaskDesign(n_trials=3000)
    study = simulate(one(**TRUE), design, seed=13)
    for name, width in (("v", 0.5), ("a", 0.1), ("z", 0.05), ("t0", 0.05)):
        grid = TRUE[name] + np.linspace(-3, 3, 61) * width / 3
        profile = [loglik(study, one(**{**TRUE, name: g}))[0] for g in grid]
        assert abs(grid[int(np.argmax(profile))] - TRUE[name]) <= width / 2, name


def test_participant_count_must_match():
    study = simulate({k: np.full(2, v) for k, v in TRUE.items()}, TaskDesign(), seed=1)
    with pytest.raises(ValueError, match="2 participant"):
        loglik(study, one(**TRUE))

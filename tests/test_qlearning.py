"""The replayed Q differences behind the "qtraces" network input."""

import numpy as np
import pytest

from amortized_rlddm.networks import FEATURE_WIDTHS, trial_features
from amortized_rlddm.qlearning import TRACE_LEARNING_RATES, q_differences
from amortized_rlddm.simulator import simulate
from amortized_rlddm.study import Study
from amortized_rlddm.task import TaskDesign


def _study(choice, reward, block=None, n_trials=None):
    choice = np.asarray(choice, np.int8)
    reward = np.asarray(reward, np.int8)
    b, t = choice.shape
    rt = np.where(choice >= 0, 0.5, np.nan)
    block = np.zeros((b, t), np.int32) if block is None else np.asarray(block, np.int32)
    n_trials = np.full(b, t) if n_trials is None else np.asarray(n_trials)
    return Study(participant=np.arange(b), n_trials=n_trials, choice=choice, rt=rt, reward=reward, block=block)


def test_hand_computed_trace():
    # alpha 0.5, q_init 0.5: arm 1 rewarded -> Q1 0.75; missing -> unchanged; arm 0 unrewarded
    # -> Q0 0.25; new block -> both reset.
    study = _study([[1, -1, 0, 1, 1]], [[1, -1, 0, 0, 1]], block=[[0, 0, 0, 0, 1]])
    dq = q_differences(study, [0.5], q_init=0.5)[0, :, 0]
    np.testing.assert_allclose(dq, [0.0, 0.25, 0.25, 0.5, 0.0])


def test_matches_a_plain_loop_on_simulated_data():
    design = TaskDesign(n_trials=(20, 50), reward_probs=(0.8, 0.2), reversal_every=12, deadline=1.5,
                        n_blocks=2, q_init=0.3)
    rng = np.random.default_rng(4)
    n = 40
    params = {"v": rng.normal(0, 2, n), "a": rng.uniform(0.5, 2, n), "z": rng.uniform(0.3, 0.7, n),
              "t0": rng.uniform(0.1, 0.5, n), "alpha": rng.uniform(0, 1, n)}
    study = simulate(params, design, seed=9)
    assert (study.missing.sum() > 0) and (study.block.max() == 1)
    alphas = [0.1, 0.6]
    got = q_differences(study, alphas, design.q_init)
    for i in range(n):
        for k, alpha in enumerate(alphas):
            q = [design.q_init, design.q_init]
            for t in range(study.n_trials[i]):
                if t > 0 and study.block[i, t] != study.block[i, t - 1]:
                    q = [design.q_init, design.q_init]
                assert got[i, t, k] == pytest.approx(q[1] - q[0], abs=1e-12)
                c = study.choice[i, t]
                if c >= 0:
                    q[c] += alpha * (study.reward[i, t] - q[c])
    assert (got[~study.valid] == 0).all()


def test_qtraces_feature_layout():
    study = _study([[1, 0, -1]], [[1, 1, -1]], n_trials=[3])
    design = TaskDesign(n_trials=3, q_init=0.5)
    x, mask = trial_features(study, ["choice", "qtraces"], design, max_trials=5)
    k = len(TRACE_LEARNING_RATES)
    assert x.shape == (1, 5, 1 + FEATURE_WIDTHS["qtraces"])
    dq = q_differences(study, TRACE_LEARNING_RATES, 0.5)[0]
    np.testing.assert_allclose(x[0, :3, 1:1 + k], dq, atol=1e-7)
    np.testing.assert_allclose(x[0, :3, 1 + k:], np.array([1.0, -1.0, 0.0])[:, None] * dq, atol=1e-7)
    assert (x[0, 3:] == 0).all() and mask.tolist() == [[1, 1, 1, 0, 0]]


def test_rejects_learning_rates_outside_the_unit_interval():
    with pytest.raises(ValueError, match="learning rates"):
        q_differences(_study([[1]], [[1]]), [0.0, 0.5], 0.5)

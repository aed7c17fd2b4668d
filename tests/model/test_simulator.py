"""The RL-DDM simulator against hand-computed cases and closed forms."""

import numpy as np
import pytest
from scipy import stats

from amortized_rlddm.model import wiener
from amortized_rlddm.model.simulator import simulate
from amortized_rlddm.model.task import Pair, TaskDesign


def constant(n, **values):
    return {k: np.full(n, float(v)) for k, v in values.items()}


def replay_upper_probability(study, v, a, z, alpha_pos, alpha_neg, q_init=0.5):
    """Hand replay of the Q-learning rule on the observed choices and rewards: the model's
    probability that each response is arm 1, plus a mask of the responses."""
    probs = np.full(study.choice.shape, np.nan)
    for i in range(study.n_participants):
        q = [q_init, q_init]
        for t in range(study.n_trials[i]):
            if t > 0 and study.block[i, t] != study.block[i, t - 1]:
                q = [q_init, q_init]
            c = study.choice[i, t]
            if c < 0:
                continue
            probs[i, t] = wiener.prob_upper(v * (q[1] - q[0]), a, z)
            delta = study.reward[i, t] - q[c]
            q[c] += (alpha_pos if delta > 0 else alpha_neg) * delta
    return probs


def calibration_pvalue(probs, chose_upper, bins=10):
    """Chi-square test that choices are Bernoulli(probs): observed vs expected counts of arm-1
    choices within deciles of the predicted probability."""
    mask = ~np.isnan(probs)
    p, k = probs[mask], chose_upper[mask]
    edges = np.quantile(p, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    chi2 = sum((k[which == b].sum() - p[which == b].sum()) ** 2 / (p[which == b] * (1 - p[which == b])).sum()
               for b in range(bins))
    return stats.chi2.sf(chi2, bins)


@pytest.mark.parametrize("alpha_pos, alpha_neg", [(0.3, 0.3), (0.9, 0.05)])
def test_choices_follow_the_replayed_q_values(alpha_pos, alpha_neg):
    design = TaskDesign(n_trials=40)
    n = 3000
    params = constant(n, v=4.0, a=1.2, z=0.45, t0=0.3)
    params.update(alpha_pos=np.full(n, alpha_pos), alpha_neg=np.full(n, alpha_neg))
    study = simulate(params, design, seed=3)
    probs = replay_upper_probability(study, 4.0, 1.2, 0.45, alpha_pos, alpha_neg)
    assert calibration_pvalue(probs, study.choice == 1) > 1e-3


def test_wrong_learning_rate_is_detected_by_the_replay():
    """The replay test above has power: a learning rate off by 0.1 is rejected."""
    design = TaskDesign(n_trials=40)
    n = 3000
    params = constant(n, v=4.0, a=1.2, z=0.45, t0=0.3, alpha=0.3)
    study = simulate(params, design, seed=3)
    for wrong in ((0.4, 0.4), (0.3, 0.2), (0.2, 0.3)):
        probs = replay_upper_probability(study, 4.0, 1.2, 0.45, *wrong)
        assert calibration_pvalue(probs, study.choice == 1) < 1e-3, wrong


def test_reversal_schedule_and_blocks_with_deterministic_rewards():
    design = TaskDesign(n_trials=8, reward_probs=(1.0, 0.0), reversal_every=3, n_blocks=2)
    study = simulate(constant(2, v=1.0, a=1.0, z=0.5, t0=0.2, alpha=0.5), design, seed=1)
    arm0 = [1, 1, 1, 0, 1, 1, 1, 0]  # two blocks of 4, schedule restarts in each
    assert study.outcomes[:, :, 0].tolist() == [arm0, arm0]
    assert (study.outcomes[:, :, 1] == 1 - study.outcomes[:, :, 0]).all()
    assert study.block.tolist() == [[0, 0, 0, 0, 1, 1, 1, 1]] * 2
    chosen = np.take_along_axis(study.outcomes, study.choice[..., None].astype(int), 2)[..., 0]
    assert (study.reward == chosen).all()


def test_default_schedule_reverses_every_12_trials():
    design = TaskDesign()
    study = simulate(constant(4000, v=0.0, a=1.0, z=0.5, t0=0.2, alpha=0.2), design, seed=2)
    p_arm0 = study.outcomes[:, :, 0].mean(0)
    expected = np.where((np.arange(60) // 12) % 2 == 0, 0.8, 0.2)
    assert np.all(np.abs(p_arm0 - expected) < 4 * np.sqrt(0.16 / 4000))
    assert study.outcomes.shape == (4000, 60, 2)


def test_q_values_reset_at_each_block():
    """With blocks, the first trial of every block has Q = q_init, so its choice
    probability is z-driven only (drift 0): P(upper) = z."""
    design = TaskDesign(n_trials=30, n_blocks=3)
    n = 6000
    study = simulate(constant(n, v=5.0, a=1.0, z=0.3, t0=0.2, alpha=0.8), design, seed=4)
    for t in (0, 10, 20):
        freq = (study.choice[:, t] == 1).mean()
        assert abs(freq - 0.3) < 4 * np.sqrt(0.21 / n), t
    assert abs((study.choice[:, 9] == 1).mean() - 0.3) > 0.05  # learning happened within a block


def test_deadline_makes_slow_responses_missing():
    # alpha = 0 keeps Q equal, so every trial has drift 0 and the same miss probability
    deadline = 0.9
    design = TaskDesign(n_trials=50, deadline=deadline)
    n = 2000
    study = simulate(constant(n, v=2.0, a=1.5, z=0.5, t0=0.3, alpha=0.0), design, seed=5)
    observed = study.valid & ~study.missing
    assert np.nanmax(study.rt) <= deadline
    p_miss = np.exp(wiener.log_survival(deadline - 0.3, 0.0, 1.5, 0.5))
    total = study.valid.sum()
    assert abs(study.missing.sum() / total - p_miss) < 4 * np.sqrt(p_miss * (1 - p_miss) / total)
    assert (study.reward[study.missing] == -1).all() and np.isnan(study.rt[study.missing]).all()
    assert (study.choice[observed] >= 0).all()


def test_missing_responses_do_not_update_q_values():
    design = TaskDesign(n_trials=40, deadline=0.8)
    n = 3000
    params = constant(n, v=4.0, a=1.0, z=0.5, t0=0.3, alpha=0.6)
    study = simulate(params, design, seed=6)
    assert 0.05 < study.missing.mean() < 0.6
    probs = replay_upper_probability(study, 4.0, 1.0, 0.5, 0.6, 0.6)
    # Being observed (rt <= deadline) does not bias the choice: with z = 0.5 the passage
    # time has the same law at both boundaries, so P(arm 1 | observed) = P(arm 1).
    assert calibration_pvalue(probs, study.choice == 1) > 1e-3


def test_variable_trial_counts_and_padding():
    design = TaskDesign(n_trials=(30, 150))
    study = simulate(constant(500, v=1.0, a=1.0, z=0.5, t0=0.2, alpha=0.3), design, seed=7)
    assert study.n_trials.min() >= 30 and study.n_trials.max() <= 150
    assert study.max_trials == study.n_trials.max()
    pad = ~study.valid
    assert (study.choice[pad] == -1).all() and np.isnan(study.rt[pad]).all()
    assert (study.choice[study.valid] >= 0).all()


def test_rt_is_t0_plus_decision_time():
    design = TaskDesign(n_trials=20)
    t0 = np.linspace(0.1, 1.0, 50)
    study = simulate({"v": np.ones(50), "a": np.ones(50), "z": np.full(50, 0.5), "t0": t0,
                      "alpha": np.full(50, 0.2)}, design, seed=8)
    assert (study.rt > t0[:, None]).all()


def test_same_seed_same_study_and_different_seed_differs():
    design = TaskDesign()
    params = constant(20, v=1.0, a=1.0, z=0.5, t0=0.3, alpha=0.3)
    a, b, c = (simulate(params, design, seed=s) for s in (9, 9, 10))
    assert np.array_equal(a.rt, b.rt, equal_nan=True) and np.array_equal(a.choice, b.choice)
    assert not np.array_equal(a.rt, c.rt, equal_nan=True)


@pytest.mark.parametrize("bad, message", [
    ({"a": -1.0}, "'a'"), ({"z": 1.0}, "'z'"), ({"t0": -0.1}, "'t0'"), ({"alpha": 1.5}, "'alpha_pos'"),
])
def test_parameters_outside_support_are_refused(bad, message):
    params = constant(3, v=1.0, a=1.0, z=0.5, t0=0.3, alpha=0.3)
    params.update({k: np.full(3, v) for k, v in bad.items()})
    with pytest.raises(ValueError, match=message):
        simulate(params, TaskDesign(), seed=1)


def test_learning_rate_must_be_single_or_dual():
    params = constant(3, v=1.0, a=1.0, z=0.5, t0=0.3)
    with pytest.raises(ValueError, match="learning rate"):
        simulate(params, TaskDesign(), seed=1)
    with pytest.raises(ValueError, match="not both"):
        simulate({**params, "alpha": np.full(3, 0.2), "alpha_pos": np.full(3, 0.2)}, TaskDesign(), seed=1)


def replay_pairs_upper_probability(study, v, a, z, alpha, q_init=0.5):
    """Hand replay with one Q-value pair per stimulus pair, every pair reset at a new block."""
    probs = np.full(study.choice.shape, np.nan)
    for i in range(study.n_participants):
        q = {}
        for t in range(study.n_trials[i]):
            if t == 0 or study.block[i, t] != study.block[i, t - 1]:
                q = {k: [q_init, q_init] for k in range(study.n_conditions)}
            k, c = study.condition[i, t], study.choice[i, t]
            if c < 0:
                continue
            probs[i, t] = wiener.prob_upper(v * (q[k][1] - q[k][0]), a, z)
            q[k][c] += alpha * (study.reward[i, t] - q[k][c])
    return probs


def test_each_stimulus_pair_learns_on_its_own():
    design = TaskDesign(n_trials=120, n_blocks=2, pairs=[Pair((0.9, 0.1), None), Pair((0.2, 0.8), None),
                                                         Pair((0.6, 0.4), None)])
    params = constant(300, v=3.0, a=1.2, z=0.5, t0=0.3, alpha=0.4)
    study = simulate(params, design, seed=5)
    probs = replay_pairs_upper_probability(study, 3.0, 1.2, 0.5, 0.4)
    assert calibration_pvalue(probs, study.choice == 1) > 0.001
    # the pairs are interleaved evenly within each block: 20 trials of each per block
    for block in (0, 1):
        counts = [((study.condition == k) & (study.block == block)).sum(axis=1) for k in range(3)]
        assert all((c == 20).all() for c in counts)
    # rewards follow each pair's own probabilities
    for k, better in ((0, 0), (1, 1), (2, 0)):
        chose = (study.condition == k) & (study.choice == better)
        rate = study.reward[chose].mean()
        assert rate == pytest.approx(design.pairs[k].reward_probs[better], abs=0.02)


def test_blocked_pairs_take_one_block_each_and_schedules_count_their_own_trials():
    design = TaskDesign(n_trials=8, n_blocks=4, presentation="blocked",
                        pairs=[Pair((1.0, 0.0), None), Pair((0.0, 1.0), 1)])
    block, condition, probs = design.trial_layout(np.array([8]), 8)
    np.testing.assert_array_equal(block, [[0, 0, 1, 1, 2, 2, 3, 3]])
    np.testing.assert_array_equal(condition, [[0, 0, 1, 1, 0, 0, 1, 1]])
    np.testing.assert_array_equal(probs[0, :, 1], [0, 0, 1, 0, 0, 0, 1, 0])  # pair 1 reverses every trial


def test_omissions_are_ignorable_and_happen_at_their_rate():
    design = TaskDesign(n_trials=200, missing="ignorable", omission_rate=0.1)
    study = simulate(constant(200, v=2.0, a=1.0, z=0.5, t0=0.3, alpha=0.3), design, seed=8)
    assert study.missing.mean() == pytest.approx(0.1, abs=0.005)
    probs = replay_upper_probability(study, 2.0, 1.0, 0.5, 0.3, 0.3)  # omissions do not update
    assert calibration_pvalue(probs, study.choice == 1) > 0.001


def test_contaminants_have_uniform_rts_and_random_choices():
    p, rt_max = 0.2, 4.0
    design = TaskDesign(n_trials=500, p_outlier=p, rt_max=rt_max)
    study = simulate(constant(100, v=4.0, a=1.0, z=0.5, t0=0.6, alpha=0.3), design, seed=9)
    rt = study.rt[study.valid]
    fast = rt < 0.6  # no diffusion response is faster than t0: these are contaminants
    assert fast.mean() == pytest.approx(p * 0.6 / rt_max, rel=0.05)
    assert stats.kstest(rt[fast] / 0.6, "uniform").pvalue > 0.001
    assert (study.choice[study.valid][fast] == 1).mean() == pytest.approx(0.5, abs=0.02)


def test_designs_without_the_new_keys_simulate_exactly_as_before():
    """A one-pair design draws no extra random numbers: old seeds give the old studies."""
    params = constant(5, v=1.0, a=1.0, z=0.5, t0=0.3, alpha=0.3)
    old = simulate(params, TaskDesign(n_trials=30), seed=3)
    same = simulate(params, TaskDesign(n_trials=30, pairs=[Pair((0.8, 0.2), 12)]), seed=3)
    np.testing.assert_array_equal(old.choice, same.choice)
    np.testing.assert_array_equal(old.rt, same.rt)
    assert TaskDesign(n_trials=30).to_dict() == {"n_trials": 30, "reward_probs": [0.8, 0.2], "reversal_every": 12,
                                                 "deadline": None, "n_blocks": 1, "q_init": 0.5}


def test_design_keys_are_checked():
    for bad, words in (({"missing": "ignorable", "deadline": 1.0}, "missing"), ({"omission_rate": 0.1}, "omission"),
                       ({"presentation": "random"}, "presentation"), ({"pairs": [{"reward_probs": [0.5]}]}, "pairs"),
                       ({"p_outlier": 1.0}, "p_outlier")):
        with pytest.raises(ValueError, match=words):
            TaskDesign.from_dict(bad)

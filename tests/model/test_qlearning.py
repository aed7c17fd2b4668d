"""The replayed Q differences behind the "qtraces" network input, and the per-participant
conditions "qprofile" and "rtstats"."""

import numpy as np
import pytest
from scipy.optimize import minimize

from amortized_rlddm.amortized.packing import (
    CONDITION_WIDTHS,
    FEATURE_WIDTHS,
    RT_QUANTILES,
    check_conditions,
    pack,
    rt_statistics,
    trial_features,
)
from amortized_rlddm.data.study import Study
from amortized_rlddm.model.qlearning import (
    PROFILE_RIDGE,
    PROFILE_SLOPE_SCALE,
    TRACE_LEARNING_RATES,
    q_differences,
    q_profile,
)
from amortized_rlddm.model.simulator import simulate
from amortized_rlddm.model.task import TaskDesign


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


def test_q_differences_follow_each_pair():
    study = Study(participant=np.array([1]), n_trials=np.array([5]), choice=np.array([[1, 0, 1, 0, 1]], np.int8),
                  rt=np.full((1, 5), 0.5), reward=np.array([[1, 1, 0, 1, 1]], np.int8),
                  block=np.zeros((1, 5), np.int32), condition=np.array([[0, 1, 0, 1, 0]], np.int32),
                  condition_labels=("AB", "CD"))
    got = q_differences(study, [0.5], np.array([0.5]))[0, :, 0]
    # AB: Q1 0.5 -> 0.75 -> 0.375; CD: Q0 0.5 -> 0.75 -> 0.875 (CD's trials never see AB's)
    np.testing.assert_allclose(got, [0.0, 0.0, 0.25, -0.25, -0.125])


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


def _simulated_study(seed, n=30):
    design = TaskDesign(n_trials=(20, 60), reward_probs=(0.8, 0.2), reversal_every=12, deadline=1.2,
                        n_blocks=2, q_init=0.5)
    rng = np.random.default_rng(seed)
    params = {"v": rng.normal(0, 3, n), "a": rng.uniform(0.5, 2, n), "z": rng.uniform(0.3, 0.7, n),
              "t0": rng.uniform(0.1, 0.4, n), "alpha": rng.uniform(0, 1, n)}
    return simulate(params, design, seed=seed), design


def test_q_profile_matches_an_independent_penalised_logistic_fit():
    study, design = _simulated_study(5)
    assert study.missing.sum() > 0
    alphas = [0.15, 0.7]
    got = q_profile(study, alphas, design.q_init)
    dq = q_differences(study, alphas, design.q_init)
    for i in range(study.n_participants):
        seen = study.valid[i] & (study.choice[i] >= 0)
        y, rt = study.choice[i, seen].astype(float), study.rt[i, seen]
        for k in range(len(alphas)):
            x = dq[i, seen, k]

            def objective(b):
                eta = b[0] + b[1] * x
                return -(y * eta - np.logaddexp(0.0, eta)).sum() + 0.5 * PROFILE_RIDGE * (b @ b)

            fit = minimize(objective, np.zeros(2), method="BFGS", options={"gtol": 1e-10})
            loglik = -(objective(fit.x) - 0.5 * PROFILE_RIDGE * (fit.x @ fit.x))
            assert got[i, k] == pytest.approx(loglik / seen.sum() + np.log(2), abs=1e-6)
            assert got[i, 2 + k] == pytest.approx(fit.x[1] / PROFILE_SLOPE_SCALE, abs=1e-4)
            assert got[i, 4 + k] == pytest.approx(np.corrcoef(rt, np.abs(x))[0, 1], abs=1e-9)


def test_q_profile_is_unchanged_when_missing_trials_are_removed():
    # A missing response teaches nothing, so the same responses without it replay the same Q values.
    study, design = _simulated_study(6)
    keep = study.valid & (study.choice >= 0)
    counts = keep.sum(axis=1)
    compact = {name: np.full(study.choice.shape, fill, dtype)
               for name, fill, dtype in (("choice", -1, np.int8), ("reward", -1, np.int8),
                                         ("rt", np.nan, float), ("block", 0, np.int32))}
    for i in range(study.n_participants):
        for name in compact:
            compact[name][i, :counts[i]] = getattr(study, name)[i, keep[i]]
    responded_only = Study(participant=study.participant, n_trials=counts, **compact)
    np.testing.assert_allclose(q_profile(responded_only, TRACE_LEARNING_RATES, design.q_init),
                               q_profile(study, TRACE_LEARNING_RATES, design.q_init), atol=1e-9)


def test_q_profile_separated_choices_stay_finite_and_no_responses_give_zeros():
    # Participant 0 always takes the arm with the higher replayed Q value (a perfect fit);
    # participant 1 never responds.
    study = _study([[1, 1, 0, 0, 1, 1, 0, 0], [-1] * 8], [[1, 0, 1, 0, 1, 1, 1, 0], [-1] * 8])
    dq = q_differences(study, [0.5], 0.5)[0, :, 0]
    study.choice[0] = np.where(dq > 0, 1, np.where(dq < 0, 0, study.choice[0]))
    profile = q_profile(study, [0.5], 0.5)
    assert np.isfinite(profile).all() and profile[0, 1] > 0
    assert (profile[1] == 0).all()


def test_pack_adds_the_qprofile_condition_after_the_trial_count():
    study, design = _simulated_study(7, n=4)
    network = {"features": ["choice", "rt"], "conditions": ["n_trials", "qprofile"]}
    data = pack(study, network, design, 70)
    assert data["inference_conditions"].shape == (4, 1 + CONDITION_WIDTHS["qprofile"])
    np.testing.assert_allclose(data["inference_conditions"][:, 0], study.n_trials / 100, rtol=1e-6)
    np.testing.assert_allclose(data["inference_conditions"][:, 1:],
                               q_profile(study, TRACE_LEARNING_RATES, design.q_init), rtol=1e-5, atol=1e-6)
    assert pack(study, {"features": ["choice"]}, design, 70)["inference_conditions"].shape == (4, 1)
    for bad in ([], ["qprofile"], ["n_trials", "n_trials"], ["n_trials", "profile"],
                ["n_trials", "rtstats", "rtstats"]):
        with pytest.raises(ValueError, match="network.conditions"):
            check_conditions(bad)


def test_rt_statistics_match_a_plain_loop_and_ignore_padding():
    study, design = _simulated_study(11, n=40)
    assert study.missing.sum() > 0 and (study.n_trials < study.max_trials).any()
    study.choice[0, :study.n_trials[0]] = np.where(study.missing[0, :study.n_trials[0]], -1, 1)  # one arm only
    study.choice[1, :study.n_trials[1]] = -1  # never responds
    got = rt_statistics(study)
    assert got.shape == (40, CONDITION_WIDTHS["rtstats"])
    for i in range(40):
        choices = [int(c) for c in study.choice[i, :study.n_trials[i]]]
        rts = [float(r) for r, c in zip(study.rt[i], choices) if c >= 0]
        missing_share = choices.count(-1) / len(choices)
        if not rts:
            np.testing.assert_allclose(got[i], [0.0] * (got.shape[1] - 1) + [1.0])
            continue
        upper = [r for r, c in zip(study.rt[i], choices) if c == 1]
        lower = [r for r, c in zip(study.rt[i], choices) if c == 0]
        asymmetry = np.mean(upper) - np.mean(lower) if upper and lower else 0.0
        expected = [*np.quantile(rts, RT_QUANTILES), min(rts), len(upper) / len(rts), asymmetry, missing_share]
        np.testing.assert_allclose(got[i], expected, rtol=1e-12, atol=1e-12)
    assert got[0, len(RT_QUANTILES) + 1] == 1.0 and got[0, len(RT_QUANTILES) + 2] == 0.0
    # appending padding trials (NaN RTs, choice -1) changes nothing
    padded = Study(participant=study.participant, n_trials=study.n_trials,
                   choice=np.pad(study.choice, ((0, 0), (0, 5)), constant_values=-1),
                   rt=np.pad(study.rt, ((0, 0), (0, 5)), constant_values=np.nan),
                   reward=np.pad(study.reward, ((0, 0), (0, 5)), constant_values=-1),
                   block=np.pad(study.block, ((0, 0), (0, 5))))
    np.testing.assert_allclose(rt_statistics(padded), got, rtol=1e-12, atol=1e-15)
    network = {"features": ["choice"], "conditions": ["n_trials", "qprofile", "rtstats"]}
    conditions = pack(study, network, design, study.max_trials)["inference_conditions"]
    np.testing.assert_allclose(conditions[:, -CONDITION_WIDTHS["rtstats"]:], got, rtol=1e-6)

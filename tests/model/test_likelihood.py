"""The exact RL-DDM likelihood: hand replay, stimulus pairs, missing trials of both kinds,
contaminants, excluded trials, and recovery of the truth."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import integrate

from amortized_rlddm.data.study import Study
from amortized_rlddm.model import wiener
from amortized_rlddm.model.likelihood import loglik
from amortized_rlddm.model.simulator import simulate
from amortized_rlddm.model.task import Pair, TaskDesign

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
    got = loglik(frame, one(v=v, a=a, z=z, t0=t0, alpha=alpha), missing="ignorable")
    assert got[0] == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="trial 3.*missing='deadline'.*missing='ignorable'"):
        loglik(frame, one(v=v, a=a, z=z, t0=t0, alpha=alpha))  # what a missing response is: never guessed


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
    without = loglik(study, params, missing="ignorable")[0]
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


def _study(choice, rt, reward, condition=None, block=None, excluded=None, labels=(0,)):
    """One participant's trials as a Study."""
    n = len(choice)
    arr = lambda x, dtype: np.asarray(x, dtype)[None]  # noqa: E731
    return Study(participant=np.array(["p"]), n_trials=np.array([n]), choice=arr(choice, np.int8),
                 rt=arr(rt, float), reward=arr(reward, np.int8),
                 block=arr(block if block is not None else [0] * n, np.int32),
                 condition=None if condition is None else arr(condition, np.int32),
                 excluded=None if excluded is None else arr(excluded, bool), condition_labels=labels)


def test_each_pair_has_its_own_q_values_and_blocks_reset_every_pair():
    v, a, z, t0, alpha = 2.0, 1.5, 0.4, 0.3, 0.5
    study = _study(choice=[1, 0, 1, 1, 0], rt=[0.8, 0.6, 0.7, 0.9, 0.5], reward=[1, 1, 0, 1, 1],
                   condition=[0, 1, 0, 1, 1], block=[0, 0, 0, 0, 1], labels=("AB", "CD"))
    # pair AB: (0.5, 0.5) -> arm 1 rewarded -> (0.5, 0.75); pair CD: arm 0 rewarded -> (0.75, 0.5);
    # trial 3, AB: dQ = 0.25; trial 4, CD: dQ = -0.25; trial 5: a new block, CD back to (0.5, 0.5)
    expected = (wiener.log_density(0.5, True, 0.0, a, z) + wiener.log_density(0.3, False, 0.0, a, z)
                + wiener.log_density(0.4, True, v * 0.25, a, z) + wiener.log_density(0.6, True, v * -0.25, a, z)
                + wiener.log_density(0.2, False, 0.0, a, z))
    got = loglik(study, one(v=v, a=a, z=z, t0=t0, alpha=alpha))
    assert got[0] == pytest.approx(expected, rel=1e-12)


def test_the_likelihood_does_not_depend_on_the_order_across_pairs():
    design = TaskDesign(n_trials=90, pairs=[Pair((0.8, 0.2), None), Pair((0.7, 0.3), None), Pair((0.6, 0.4), None)])
    params = one(**TRUE)
    study = simulate(params, design, seed=4)
    rng = np.random.default_rng(0)
    # another interleaving: each pair's trials in their own order, the pairs dealt out anew
    own = [np.flatnonzero(study.condition[0] == k) for k in range(3)]
    dealt = rng.permutation(np.repeat(np.arange(3), [len(trials) for trials in own]))
    positions = {k: iter(trials) for k, trials in enumerate(own)}
    new_order = np.array([next(positions[k]) for k in dealt])
    other = _study(study.choice[0, new_order], study.rt[0, new_order], study.reward[0, new_order],
                   condition=study.condition[0, new_order], labels=study.condition_labels)
    assert not np.array_equal(other.condition, study.condition)
    assert loglik(other, params)[0] == pytest.approx(loglik(study, params)[0], rel=1e-12)
    # while the order within a pair matters
    swapped = new_order.copy()
    first, second = np.flatnonzero(other.condition[0] == 0)[:2]
    swapped[[first, second]] = swapped[[second, first]]
    third = _study(study.choice[0, swapped], study.rt[0, swapped], study.reward[0, swapped],
                   condition=study.condition[0, swapped], labels=study.condition_labels)
    assert loglik(third, params)[0] != pytest.approx(loglik(study, params)[0], rel=1e-9)


def test_ignorable_omissions_add_nothing_and_do_not_update():
    v, a, z, t0, alpha = 2.0, 1.5, 0.4, 0.3, 0.5
    with_gap = _study(choice=[1, -1, 1], rt=[0.8, np.nan, 0.7], reward=[1, -1, 0])
    without = _study(choice=[1, 1], rt=[0.8, 0.7], reward=[1, 0])
    params = one(v=v, a=a, z=z, t0=t0, alpha=alpha)
    assert loglik(with_gap, params, missing="ignorable")[0] == pytest.approx(loglik(without, params)[0], rel=1e-14)
    with pytest.raises(ValueError, match="deadline"):
        loglik(with_gap, params, missing="deadline")  # censoring needs the deadline


def test_excluded_trials_update_the_q_values_but_add_nothing():
    v, a, z, t0, alpha = 2.0, 1.5, 0.4, 0.3, 0.5
    study = _study(choice=[1, 1, 0], rt=[0.1, 0.6, 1.1], reward=[1, 0, 1], excluded=[True, False, False])
    # trial 1 (rt 0.1 < t0: impossible, but excluded) still moves Q1 to 0.75
    expected = wiener.log_density(0.3, True, v * 0.25, a, z) + wiener.log_density(0.8, False, v * -0.125, a, z)
    assert loglik(study, one(v=v, a=a, z=z, t0=t0, alpha=alpha))[0] == pytest.approx(expected, rel=1e-12)


def test_contaminant_mixture_against_its_definition():
    v, a, z, t0, alpha, p, rt_max = 2.0, 1.5, 0.4, 0.3, 0.5, 0.05, 8.0
    study = _study(choice=[1, 0, 1], rt=[0.8, 0.2, 9.0], reward=[1, 1, 0])
    params = one(v=v, a=a, z=z, t0=t0, alpha=alpha)
    contaminant = p * 0.5 / rt_max
    # rt 0.2 < t0: only a contaminant can give it, and it still updates Q0 to 0.75, so trial 3
    # has dQ = 0; rt 9 > rt_max: only the diffusion
    expected = (math.log((1 - p) * math.exp(wiener.log_density(0.5, True, 0.0, a, z)) + contaminant)
                + math.log(contaminant)
                + math.log((1 - p) * math.exp(wiener.log_density(8.7, True, 0.0, a, z))))
    assert loglik(study, params, p_outlier=p, rt_max=rt_max)[0] == pytest.approx(expected, rel=1e-12)
    assert loglik(study, params)[0] == -np.inf  # without contaminants the fast rt is impossible


def test_contaminant_density_integrates_to_one_with_the_deadline_miss():
    v, a, z, t0, p, rt_max, deadline = 1.5, 1.2, 0.45, 0.3, 0.1, 3.0, 2.0
    params = one(v=v, a=a, z=z, t0=t0, alpha=0.3)

    def density(rt, c):
        return math.exp(loglik(_study([c], [rt], [1]), params, p_outlier=p, rt_max=rt_max)[0])

    observed = sum(integrate.quad(density, 0.0, deadline, args=(c,), points=[t0], limit=200)[0] for c in (0, 1))
    missed = math.exp(loglik(_study([-1], [np.nan], [-1]), params, deadline=deadline, p_outlier=p,
                             rt_max=rt_max)[0])
    expected_missed = (1 - p) * math.exp(wiener.log_survival(deadline - t0, 0.0, a, z)) + p * (1 - deadline / rt_max)
    assert missed == pytest.approx(expected_missed, rel=1e-12)
    assert observed + missed == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("kind", ["pairs", "lapses", "omissions"])
def test_profile_over_learning_rate_peaks_near_the_truth_for_the_new_designs(kind):
    designs = {"pairs": TaskDesign(n_trials=3000, pairs=[Pair((0.8, 0.2), None), Pair((0.7, 0.3), 50)]),
               "lapses": TaskDesign(n_trials=3000, p_outlier=0.05, rt_max=5.0),
               "omissions": TaskDesign(n_trials=3000, missing="ignorable", omission_rate=0.1)}
    design = designs[kind]
    study = simulate(one(**TRUE), design, seed=21)
    settings = {"p_outlier": design.p_outlier, "rt_max": design.rt_max, "missing": design.missing}
    grid = np.linspace(0.05, 0.95, 37)
    profile = [loglik(study, one(**{**TRUE, "alpha": g}), **settings)[0] for g in grid]
    assert abs(grid[int(np.argmax(profile))] - TRUE["alpha"]) <= 0.075
    for name, width in (("v", 0.5), ("t0", 0.05)):
        values = TRUE[name] + np.linspace(-3, 3, 61) * width / 3
        profile = [loglik(study, one(**{**TRUE, name: g}), **settings)[0] for g in values]
        assert abs(values[int(np.argmax(profile))] - TRUE[name]) <= width / 2, (kind, name)

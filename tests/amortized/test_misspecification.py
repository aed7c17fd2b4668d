"""The misspecification check: its design-matched null, its false-alarm rate on data simulated
from the priors, and its power on data no prior of the model produces."""

from dataclasses import replace

import numpy as np
import pytest

from amortized_rlddm.amortized.misspecification import (
    ALPHA,
    design_replicates,
    empirical_arm_probs,
    misspecification_check,
)
from amortized_rlddm.amortized.posterior import AmortizedPosterior
from amortized_rlddm.data.study import Study
from amortized_rlddm.model.priors import SINGLE_RATE, PriorSet
from amortized_rlddm.model.simulator import simulate
from amortized_rlddm.model.task import DesignSettings, TaskDesign

PRIORS = PriorSet.from_dict({}, SINGLE_RATE)
DESIGN = TaskDesign(n_trials=(60, 120), reward_probs=(0.25, 0.75), reversal_every=40)


def rt_features(study, settings):
    """Hand-made statistics in place of a network: RT quantiles, the choice share, the reward rate."""
    responded = study.valid & (study.choice >= 0)
    rt = np.where(responded, study.rt, np.nan)
    return np.column_stack([*np.log(np.nanquantile(rt, [0.0, 0.1, 0.5, 0.9], axis=1)),
                            np.nanmean(np.where(responded, study.choice, np.nan), 1),
                            np.nanmean(np.where(responded, study.reward, np.nan), 1)])


def simulated_study(participants, seed):
    return simulate(PRIORS.sample(np.random.default_rng(seed), participants), DESIGN, seed=seed + 1)


def test_empirical_arm_probs_are_each_arms_reward_rate_per_pair():
    choice = np.array([[0, 0, 1, 1, 0, 1]], np.int8)
    reward = np.array([[1, 0, 1, 1, 1, 0]], np.int8)
    condition = np.array([[0, 0, 0, 1, 1, 1]], np.int32)
    study = Study(participant=np.array([1]), n_trials=np.array([6]), choice=choice, rt=np.full((1, 6), 0.5),
                  reward=reward, block=np.zeros((1, 6), np.int32), condition=condition, condition_labels=(0, 1))
    probs = empirical_arm_probs(study)
    np.testing.assert_allclose(probs[0, :3], [[0.5, 1.0]] * 3)  # pair 0: arm 0 paid 1 of 2, arm 1 1 of 1
    np.testing.assert_allclose(probs[0, 3:], [[1.0, 0.5]] * 3)  # pair 1: arm 0 paid 1 of 1, arm 1 1 of 2


def test_replicates_keep_each_participants_trial_structure():
    study = simulated_study(5, seed=0)
    study.excluded[:, 0] = True
    settings = DesignSettings.of(DESIGN, study)
    replicated, replicated_settings = design_replicates(study, settings, PRIORS, 7, seed=1)
    rows = np.repeat(np.arange(5), 7)
    np.testing.assert_array_equal(replicated.n_trials, study.n_trials[rows])
    np.testing.assert_array_equal(replicated.block, study.block[rows])
    np.testing.assert_array_equal(replicated.arm_probs, study.arm_probs[rows])  # the reversals included
    assert replicated.excluded[:, 0].all() and replicated_settings.q_init.shape == (35,)
    assert len({tuple(r) for r in replicated.choice}) == 35  # each replicate has its own parameters


def test_false_alarms_on_data_from_the_priors_are_at_the_designed_rate():
    study = simulated_study(300, seed=4)
    check = misspecification_check(rt_features, study, DesignSettings.of(DESIGN, study), PRIORS, seed=5)
    flagged = check.participants["unlike_training"].values
    assert flagged.sum() <= 9  # 300 x 1% = 3 expected; P(more than 9) < 0.002
    assert not check.study_flagged
    p = check.participants["p_value"].values
    assert 0.4 < p.mean() < 0.6  # uniform under the null


def test_data_no_prior_produces_are_flagged():
    study = simulated_study(40, seed=6)
    slowed = replace(study, rt=study.rt * 1000)  # RTs recorded in ms, read as s: beyond the priors' reach
    check = misspecification_check(rt_features, slowed, DesignSettings.of(DESIGN, study), PRIORS, seed=7)
    assert check.participants["unlike_training"].values.mean() > 0.9
    assert check.study_flagged and check.study_p_value <= ALPHA


def test_too_few_replicates_are_refused():
    study = simulated_study(3, seed=8)
    with pytest.raises(ValueError, match="replicates"):
        misspecification_check(rt_features, study, DesignSettings.of(DESIGN, study), PRIORS, replicates=3)


@pytest.mark.slow
def test_the_shipped_network_flags_few_of_its_own_simulations():
    posterior = AmortizedPosterior.load("default")
    params = posterior.config.priors.sample(np.random.default_rng(9), 60)
    study = simulate(params, posterior.design, seed=10)
    check = posterior.misspecification(study, replicates=99, seed=11)
    assert check.participants["unlike_training"].values.sum() <= 4  # 60 x 1% expected 0.6
    assert not check.study_flagged
    milliseconds = replace(study, rt=study.rt * 1000)  # RTs recorded in ms, read as s
    flagged = posterior.misspecification(milliseconds, replicates=99, seed=11)
    assert flagged.participants["unlike_training"].values.mean() > 0.9 and flagged.study_flagged

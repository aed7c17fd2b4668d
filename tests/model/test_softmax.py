"""The choice-only softmax Q-learning models: the likelihood against a direct loop and the
PyMC example gallery's maximum-likelihood estimate, the simulator against the likelihood's
choice probabilities, their priors, and what they refuse."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from amortized_rlddm.data.study import Study
from amortized_rlddm.exact.mle import fit_mle
from amortized_rlddm.model.config import MODELS
from amortized_rlddm.model.likelihood import likelihood_function, loglik, pointwise_loglik
from amortized_rlddm.model.priors import SOFTMAX, SOFTMAX_DUAL, PriorSet
from amortized_rlddm.model.simulator import simulate
from amortized_rlddm.model.target import ExactTarget
from amortized_rlddm.model.task import LikelihoodSettings, Pair, TaskDesign


def direct_loglik(study, i, alpha_pos, alpha_neg, beta, q_init, lapse):
    """One participant's log-likelihood by a plain loop over trials, written from the model's
    definition: every pair's Q-values start at q_init and restart at each new block; a response
    has P(choice = 1) = (1 - lapse) / (1 + exp(-beta (Q1 - Q0))) + lapse / 2 and moves the
    chosen arm's Q toward the reward by alpha_pos (positive error) or alpha_neg; an omission
    changes nothing; an excluded trial learns but adds nothing."""
    q, total = {}, 0.0
    for t in range(study.n_trials[i]):
        if t == 0 or study.block[i, t] != study.block[i, t - 1]:
            q = {}
        k = int(study.condition[i, t])
        q.setdefault(k, [q_init, q_init])
        c = int(study.choice[i, t])
        if c < 0:
            continue
        p1 = (1 - lapse) / (1 + math.exp(-beta * (q[k][1] - q[k][0]))) + lapse / 2
        if not study.excluded[i, t]:
            total += math.log(p1 if c == 1 else 1 - p1)
        error = study.reward[i, t] - q[k][c]
        q[k][c] += (alpha_pos if error > 0 else alpha_neg) * error
    return total


def choice_study(seed, params, lapse=0.0):
    design = TaskDesign(n_trials=(40, 90), n_blocks=2, pairs=(Pair((0.8, 0.2), 10), Pair((0.3, 0.7), None)),
                        missing="ignorable", omission_rate=0.1, p_outlier=lapse)
    study = simulate(params, design, seed=seed)
    study.excluded = study.valid & (study.choice >= 0) & (np.random.default_rng(seed).random(study.choice.shape) < 0.1)
    return study


@pytest.mark.parametrize("lapse", [0.0, 0.08])
@pytest.mark.parametrize("dual", [False, True])
def test_the_likelihood_is_the_direct_loop_with_pairs_blocks_omissions_exclusions_and_lapses(dual, lapse):
    rng = np.random.default_rng(3)
    n = 4
    truth = {"alpha_pos": rng.uniform(0.1, 0.9, n), "alpha_neg": rng.uniform(0.1, 0.9, n)} if dual \
        else {"alpha": rng.uniform(0.1, 0.9, n)}
    study = choice_study(1, {**truth, "beta": rng.uniform(1, 8, n)}, lapse)
    study.q_init = np.array([0.5, 0.2, 0.9, 0.0])  # the data may give them
    assert study.missing.any() and study.excluded.any() and len(set(study.n_trials)) > 1
    draws = {name: rng.uniform(0.05, 0.95, (n, 3)) for name in truth}
    draws["beta"] = rng.uniform(0.0, 12.0, (n, 3))
    got = likelihood_function(study, LikelihoodSettings(missing="ignorable", p_outlier=lapse))(draws)
    rates = ("alpha_pos", "alpha_neg") if dual else ("alpha", "alpha")
    for i in range(n):
        for d in range(3):
            expected = direct_loglik(study, i, draws[rates[0]][i, d], draws[rates[1]][i, d], draws["beta"][i, d],
                                     study.q_init[i], lapse)
            assert got[i, d] == pytest.approx(expected, rel=1e-12, abs=1e-12)
    terms = pointwise_loglik(study, draws, missing="ignorable", p_outlier=lapse)
    np.testing.assert_allclose(np.nansum(terms, axis=-1), got, rtol=1e-12)
    assert np.isnan(terms[study.missing[:, None, :].repeat(3, 1)]).all()


def gallery_data():
    """The PyMC example gallery's data ("Fitting a reinforcement learning model to behavioral
    data with PyMC"): its generator and seed, 150 trials at alpha 0.5, beta 5, reward
    probabilities 0.4 and 0.6, Q starting at 0.5."""
    rng = np.random.default_rng(sum(map(ord, "RL_PyMC")))
    actions, rewards, q = np.zeros(150, int), np.zeros(150, int), np.array([0.5, 0.5])
    for i in range(150):
        prob = np.exp(5 * q) / np.exp(5 * q).sum()
        a = rng.choice([0, 1], p=prob)
        r = rng.random() < [0.4, 0.6][a]
        q[a] += 0.5 * (r - q[a])
        actions[i], rewards[i] = a, r
    return Study(participant=np.array(["gallery"]), n_trials=np.array([150]), choice=actions[None].astype(np.int8),
                 rt=np.full((1, 150), np.nan), reward=rewards[None].astype(np.int8),
                 block=np.zeros((1, 150), np.int32))


def test_the_maximum_likelihood_of_the_gallery_example_is_the_one_it_prints():
    study = gallery_data()

    def negative(x):
        return -loglik(study, {"alpha": np.array([x[0]]), "beta": np.array([x[1]])})[0]

    fit = optimize.minimize(negative, [0.5, 5.0], method="L-BFGS-B", bounds=[(1e-6, 1.0), (0.0, 50.0)])
    assert (round(fit.x[0], 2), round(fit.x[1], 2)) == (0.50, 5.71)
    ours = fit_mle(study, PriorSet.from_dict({}, MODELS["softmax"]), starts=4, seed=0)["params"]
    assert (round(ours["alpha"], 2), round(ours["beta"], 2)) == (0.50, 5.71)


def test_the_simulated_choices_follow_the_likelihoods_probabilities():
    """Each simulated response's probability of choice 1 under the likelihood (from its
    pointwise term), binned: the observed share of choice 1 per bin matches the mean probability
    (chi-square, fixed seed); a likelihood with the wrong beta fails it."""
    n = 400
    params = {"alpha": np.full(n, 0.3), "beta": np.full(n, 4.0)}
    study = choice_study(7, params, lapse=0.05)
    study.excluded[:] = False

    def binned_statistic(beta):
        terms = pointwise_loglik(study, {"alpha": params["alpha"][:, None], "beta": np.full((n, 1), beta)},
                                 missing="ignorable", p_outlier=0.05)[:, 0, :]
        scored = ~np.isnan(terms)
        chosen = study.choice[scored] == 1
        p1 = np.where(chosen, np.exp(terms[scored]), 1 - np.exp(terms[scored]))
        edges = np.quantile(p1, np.linspace(0, 1, 11))
        bins = np.clip(np.searchsorted(edges, p1, side="right") - 1, 0, 9)
        expected = np.bincount(bins, weights=p1, minlength=10)
        count = np.bincount(bins, minlength=10)
        observed = np.bincount(bins, weights=chosen, minlength=10)
        return (((observed - expected) ** 2) / (expected * (1 - expected / count))).sum()

    assert stats.chi2.sf(binned_statistic(4.0), 10) > 0.01
    assert stats.chi2.sf(binned_statistic(2.0), 10) < 1e-6


def test_the_choice_only_priors_are_the_gallerys():
    priors = PriorSet.from_dict({}, SOFTMAX)
    x = np.array([0.1, 3.0, 17.0])
    np.testing.assert_allclose(priors.priors["beta"].logpdf(x), stats.halfnorm(scale=10).logpdf(x), rtol=1e-12)
    np.testing.assert_allclose(priors.priors["alpha"].logpdf(np.array([0.2, 0.7])), 0.0, atol=1e-12)
    assert PriorSet.from_dict({}, SOFTMAX_DUAL).names == ("alpha_pos", "alpha_neg", "beta")
    with pytest.raises(ValueError, match="beta"):
        PriorSet.from_dict({"beta": {"dist": "normal", "mu": 0.0, "sigma": 1.0}}, SOFTMAX)  # beta >= 0


def test_the_exact_target_serves_the_choice_only_models():
    study = gallery_data()
    priors = PriorSet.from_dict({}, SOFTMAX)
    target = ExactTarget(study, priors, LikelihoodSettings())
    values = {"alpha": np.array([[0.3, 0.6]]), "beta": np.array([[2.0, 7.0]])}
    likelihoods = [loglik(study, {"alpha": np.array([a]), "beta": np.array([b])})[0]
                   for a, b in ((0.3, 2.0), (0.6, 7.0))]
    expected = priors.logpdf(values)[0] + np.array(likelihoods)
    np.testing.assert_allclose(target.log_posterior(values)[0], expected, rtol=1e-12)


def test_what_the_two_families_refuse():
    rng = np.random.default_rng(0)
    choices = choice_study(2, {"alpha": rng.uniform(0.2, 0.8, 2), "beta": rng.uniform(1, 5, 2)})
    with pytest.raises(ValueError, match="without an RT; the RL-DDM needs response times"):
        loglik(choices, {"v": [1.0, 1.0], "a": [1.0, 1.0], "z": [0.5, 0.5], "t0": [0.1, 0.1], "alpha": [0.3, 0.3]},
               missing="ignorable")
    with pytest.raises(ValueError, match="no response times, so no deadline"):
        loglik(choices, {"alpha": [0.3, 0.3], "beta": [2.0, 2.0]}, deadline=1.0)
    with pytest.raises(ValueError, match="no deadline"):
        simulate({"alpha": [0.3], "beta": [2.0]}, TaskDesign(n_trials=20, deadline=1.0), seed=0)


def test_a_file_without_rts_reads_as_choices_alone_and_the_rl_ddm_refuses_it(tmp_path):
    from amortized_rlddm.data.io import read_study

    frame = pd.DataFrame({"participant": [1, 1, 1, 2, 2], "trial": [1, 2, 3, 1, 2], "choice": [0, 1, "", 1, 1],
                          "reward": [1, 0, "", 1, 0]})
    path = tmp_path / "choices.csv"
    frame.to_csv(path, index=False)
    study = read_study(path)
    assert not study.has_rt and np.isnan(study.rt).all()
    np.testing.assert_array_equal(study.choice, [[0, 1, -1], [1, 1, -1]])
    assert study.missing.sum() == 1
    settings = {"missing": "ignorable"}
    assert np.isfinite(loglik(study, {"alpha": [0.3, 0.3], "beta": [2.0, 2.0]}, **settings)).all()
    with pytest.raises(ValueError, match="participant '1', trial 1: a response without an RT"):
        loglik(study, {"v": [1.0, 1.0], "a": [1.0, 1.0], "z": [0.5, 0.5], "t0": [0.1, 0.1], "alpha": [0.3, 0.3]},
               **settings)
    with pytest.raises(ValueError, match="row 3, column 'reward': a response without a reward"):
        read_study(frame.assign(reward=[1, 0, "", "", 0]))


def test_hddms_hrl_choice_probability_is_the_softmax_with_beta_equal_to_its_v():
    """HDDM's Hrl scores choice 1 by the Wiener upper-boundary probability with a = 1 and
    z = 0.5 (wiener_like_rl): (exp(-2 z v dQ) - 1) / (exp(-2 v dQ) - 1). That is
    logistic(v dQ), so its v maps to beta itself (validation.group.HDDM_HRL_NODES), not 2 v."""
    from amortized_rlddm.validation.group import HDDM_HRL_NODES

    drift = np.linspace(-6, 6, 121)
    drift = drift[drift != 0]  # HDDM sets p = 1/2 there, as the logistic gives
    hddm = (np.exp(-2 * 0.5 * drift) - 1) / (np.exp(-2 * drift) - 1)
    np.testing.assert_allclose(hddm, 1 / (1 + np.exp(-drift)), rtol=1e-12)
    assert not np.allclose(hddm, 1 / (1 + np.exp(-2 * drift)))
    assert HDDM_HRL_NODES == {"alpha": ("alpha", "logit"), "v": ("beta", "natural")}

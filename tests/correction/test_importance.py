"""The per-participant check: the flow's density of its draws, the exact log target for many
draws at once, and PSIS on cases with a known posterior."""

from dataclasses import replace

import arviz_stats
import numpy as np
import pytest
from scipy import stats

from amortized_rlddm.amortized.packing import pack
from amortized_rlddm.amortized.posterior import AmortizedPosterior
from amortized_rlddm.correction.importance import khat_threshold, psis, resample
from amortized_rlddm.exact.model import ExactPosterior
from amortized_rlddm.model.config import load_config
from amortized_rlddm.model.likelihood import loglik, loglik_draws, pointwise_loglik
from amortized_rlddm.model.priors import ParameterSpace, PriorSet
from amortized_rlddm.model.simulator import simulate

SMOKE = "training_configs/smoke.yaml"


@pytest.fixture
def smoke(smoke_posterior):
    return smoke_posterior


def test_psis_corrects_a_wrong_proposal_and_khat_rises_as_it_worsens():
    rng = np.random.default_rng(0)
    target = stats.norm(1.0, 1.0)
    khats, means = [], []
    for scale in (1.0, 0.8, 0.6, 0.4):  # ever narrower proposals centred off the target
        proposal = stats.norm(0.5, scale)
        x = proposal.rvs(size=(20, 4000), random_state=rng)
        result = psis(target.logpdf(x) - proposal.logpdf(x))
        w = np.exp(result["log_weights"].values)
        khats.append(float(np.median(result["khat"])))
        means.append(float(np.median((w * x).sum(axis=1))))
        assert np.allclose(w.sum(axis=1), 1.0)
        # the log evidence of a normalised target is 0
        assert np.median(result["log_evidence"]) == pytest.approx(0.0, abs=0.05 if scale >= 0.6 else 0.3)
    assert khats == sorted(khats) and khats[0] < 0.3 < khats[-1]
    assert means[0] == pytest.approx(1.0, abs=0.03) and abs(means[1] - 1.0) < abs(0.5 - 1.0) / 2
    assert khat_threshold(1000) == pytest.approx(2 / 3) and khat_threshold(10**8) == 0.7


def test_loglik_draws_equals_loglik_draw_by_draw():
    config = load_config(SMOKE)
    rng = np.random.default_rng(1)
    params = config.priors.sample(rng, 4)
    study = simulate(params, config.design, seed=2)
    draws = {k: np.stack([config.priors.sample(rng, 4)[k] for _ in range(3)], axis=1) for k in params}
    draws["t0"] = np.minimum(draws["t0"], 0.9 * np.nanmin(study.rt, axis=1, keepdims=True))
    got = loglik_draws(study, draws)
    for d in range(3):
        np.testing.assert_allclose(got[:, d], loglik(study, {k: v[:, d] for k, v in draws.items()}), rtol=1e-12)


def test_parameter_space_jacobian_against_finite_differences():
    priors = PriorSet.from_dict({}, ("v", "a", "z", "t0", "alpha"))
    space = ParameterSpace(priors, supports={"t0": (np.array([0.0, 0.0]), np.array([0.4, 0.7]))})
    values = {"v": np.array([1.0, -2.0]), "a": np.array([1.2, 2.5]), "z": np.array([0.3, 0.6]),
              "t0": np.array([0.2, 0.65]), "alpha": np.array([0.1, 0.9])}
    got = space.log_abs_det_jacobian(values)
    h, expected = 1e-6, 0.0
    for k, name in enumerate(space.names):
        up = space.forward({**values, name: values[name] + h})[:, k]
        down = space.forward({**values, name: values[name] - h})[:, k]
        expected = expected + np.log(np.abs(up - down) / (2 * h))
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_the_flows_density_of_its_draws_is_bayesflows_forward_density(smoke):
    study = simulate(smoke.config.priors.sample(np.random.default_rng(3), 3), smoke.design, seed=4)
    y, _, log_q = smoke._sample(study, 50, seed=5, density=True)
    data = pack(study, smoke.network, smoke.design, smoke.design.max_trials)
    repeated = {k: np.repeat(v, 50, axis=0) for k, v in data.items()}
    repeated["inference_variables"] = y.reshape(150, -1).astype(np.float32)
    forward = smoke.estimator.log_prob(repeated)  # BayesFlow's own forward pass and standardization
    np.testing.assert_allclose(log_q.ravel(), np.asarray(forward).ravel(), rtol=1e-4, atol=1e-3)


def test_infer_checks_every_participant(smoke):
    study = simulate(smoke.config.priors.sample(np.random.default_rng(6), 5), smoke.design, seed=7)
    tree = smoke.infer(study, draws=300, seed=1)
    checks = tree["importance"]
    assert checks["khat"].shape == (5,) and np.isfinite(checks["khat"]).all()
    assert checks["log_weights"].shape == (5, 300) and np.isfinite(checks["log_evidence"]).all()
    assert checks.attrs["khat_threshold"] == pytest.approx(khat_threshold(300))
    assert "importance" not in smoke.infer(study, draws=50, seed=1, check=False).children


def test_resampling_by_the_weights_gives_the_target():
    # the refinement's regime: two proposals per draw, proposal N(0, 2), target N(1, 1);
    # drawing without replacement would give mean 0.89 and sd 1.15 here
    rng = np.random.default_rng(2)
    moments = []
    for _ in range(10):
        x = rng.normal(0.0, 2.0, 4000)
        log_w = stats.norm(1, 1).logpdf(x) - stats.norm(0, 2).logpdf(x)
        picked = resample({"x": x, "y": -x}, log_w, 2000, rng)
        np.testing.assert_array_equal(picked["y"], -picked["x"])  # one index for every parameter
        moments.append([picked["x"].mean(), picked["x"].std()])
    mean, sd = np.mean(moments, axis=0)
    assert mean == pytest.approx(1.0, abs=0.03) and sd == pytest.approx(1.0, abs=0.02)
    # stratified: a draw's share of the resampled set is its weight to within one draw
    weights = np.array([0.5, 0.25, 0.125, 0.125])
    counts = np.bincount(resample({"i": np.arange(4)}, np.log(weights), 1000, rng)["i"], minlength=4)
    assert np.all(np.abs(counts - 1000 * weights) <= 1)


def test_corrected_posteriors_say_how_each_participant_was_corrected(smoke):
    study = simulate(smoke.config.priors.sample(np.random.default_rng(8), 4), smoke.design, seed=9)
    tree = smoke.infer(study, draws=200, seed=2, refine=True)
    checks = tree["importance"]
    assert tree["posterior"]["alpha"].shape == (1, 200, 4) and tree["posterior"].attrs["corrected"] != "no"
    assert (checks["proposals"] == 400).all()
    refined = checks["method"].values == "refined"
    assert set(checks["method"].values) <= {"refined", "adaptive"}
    # the resampled flow draws passed the check; the others went through adaptive rounds
    assert checks["trusted"].values[refined].all() and (checks["rounds"].values[refined] == 0).all()
    assert (checks["rounds"].values[~refined] >= 1).all()
    assert (checks["evaluations"].values[~refined] > 400).all()
    trusted = checks["trusted"].values
    assert ((checks["ess"].values >= 400) | ~trusted).all() and (checks["reason"].values[trusted] == "").all()
    assert all(reason for reason in checks["reason"].values[~trusted])


def test_the_flows_density_integrates_to_one_over_a_grid(smoke):
    study = simulate(smoke.config.priors.sample(np.random.default_rng(10), 1), smoke.design, seed=11)
    y = smoke.sample_unbounded(study, 4000, seed=12)[0]
    centre, scale = y.mean(0), y.std(0)
    axes = [np.linspace(c - 6 * s, c + 6 * s, 11) for c, s in zip(centre, scale)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(1, -1, len(axes))
    volume = np.prod([ax[1] - ax[0] for ax in axes])
    assert np.exp(smoke.unbounded_log_density(study, grid)).sum() * volume == pytest.approx(1.0, abs=0.01)
    # and on the parameters' own scale, at the sampler's draws, it is the density the draws came with
    values, log_q, _ = smoke._draws(study, 300, seed=13, density=True)
    np.testing.assert_allclose(smoke.log_density(study, values), log_q, atol=1e-4)


def _study_with_every_kind_of_trial(config, seed):
    """Simulated participants with excluded trials, a second pair and a block reset."""
    study = simulate(config.priors.sample(np.random.default_rng(seed), 3), config.design, seed=seed + 1)
    excluded, condition, block = study.excluded.copy(), study.condition.copy(), study.block.copy()
    excluded[:, ::7], condition[:, 30:], block[:, 45:] = True, 1, 1
    return replace(study, excluded=excluded, condition=condition, block=block, condition_labels=(0, 1))


def test_pointwise_loglik_sums_to_loglik():
    config = load_config(SMOKE)
    study = _study_with_every_kind_of_trial(config, 14)
    rng = np.random.default_rng(15)
    draws = {k: np.stack([config.priors.sample(rng, 3)[k] for _ in range(4)], axis=1) for k in config.priors.names}
    draws["t0"] = np.minimum(draws["t0"], 0.9 * np.nanmin(study.rt, axis=1, keepdims=True))
    for options in ({}, {"p_outlier": 0.05, "rt_max": 5.0}):
        terms = pointwise_loglik(study, draws, **options)
        assert terms.shape == (3, 4, study.max_trials)
        assert np.isnan(terms[:, :, ::7]).all() and np.isfinite(terms[:, :, 1]).all()
        np.testing.assert_allclose(np.nansum(terms, axis=-1), loglik_draws(study, draws, **options), rtol=1e-12)
    # a missed deadline is an observation too: log P(no response before the deadline)
    study.choice[:, 3], study.rt[:, 3] = -1, np.nan
    terms = pointwise_loglik(study, draws, deadline=3.0)
    np.testing.assert_allclose(np.nansum(terms, axis=-1), loglik_draws(study, draws, deadline=3.0), rtol=1e-12)
    assert (terms[:, :, 3] < 0).all()
    assert np.isnan(pointwise_loglik(study, draws, missing="ignorable")[:, :, 3]).all()


def test_arviz_loo_runs_on_the_output(smoke):
    study = simulate(smoke.config.priors.sample(np.random.default_rng(16), 3), smoke.design, seed=17)
    tree = smoke.infer(study, draws=300, seed=3, refine=True, log_likelihood=True)
    ll = tree["log_likelihood"]["choice_rt"]
    assert ll.shape == (1, 300, int(study.n_trials.sum()))
    total = pointwise_loglik(study, {k: tree["posterior"][k].values[0].T for k in smoke.parameter_names})
    np.testing.assert_allclose(ll.values[0].sum(-1), np.nansum(total, -1).sum(0))
    assert np.isfinite(tree["importance"]["elpd_loo"]).all()
    # refined draws are posterior draws: the participants' LOO adds up to ArviZ's of the study
    # (the shipped network: the smoke network's refined draws repeat a few proposals so often
    # that ArviZ cannot fit their Pareto tails; elpd_loo then goes trial by trial)
    shipped = AmortizedPosterior.load("default")
    shipped_study = simulate(shipped.config.priors.sample(np.random.default_rng(16), 3), shipped.config.design,
                             seed=17)
    refined = shipped.infer(shipped_study, draws=300, seed=3, refine=True, log_likelihood=True)
    result = arviz_stats.loo(refined)
    assert refined["importance"]["elpd_loo"].sum() == pytest.approx(result.elpd, rel=1e-9)
    raw = smoke.infer(study, draws=300, seed=3, log_likelihood=True)["importance"]  # corrected by the ratios
    assert np.isfinite(raw["elpd_loo"]).all() and (raw["elpd_loo_se"] > 0).all()
    assert raw["loo_khat_max"].shape == (3,)


def test_the_nuts_fallback_fits_a_participant_the_check_fails(smoke, monkeypatch):
    study = simulate(smoke.config.priors.sample(np.random.default_rng(18), 2), smoke.design, seed=19)

    def failing_first(log_ratios):  # a forced failure: participant 0 above the threshold, 1 passing
        result = psis(log_ratios)
        return result.assign(above_threshold=("participant", np.array([True, False])),
                             ess=("participant", np.array([result["ess"].values[0], log_ratios.shape[1]])))

    monkeypatch.setattr("amortized_rlddm.correction.correct.psis", failing_first)
    amortized = smoke.infer(study, draws=200, seed=4)
    tree = smoke.infer(study, draws=200, seed=4, fallback="nuts")
    checks = tree["importance"]
    assert checks["method"].values.tolist() == ["nuts", "flow"]
    assert checks["trusted"].values[0] == (checks["nuts_rhat_max"].values[0] <= 1.01
                                           and checks["nuts_ess_bulk_min"].values[0] >= 400
                                           and checks["nuts_divergences"].values[0] == 0)
    assert "1 participant(s) fitted with NUTS" in tree["posterior"].attrs["nuts_fallback"]
    assert checks["nuts_rhat_max"].values[0] < 1.05 and np.isnan(checks["nuts_rhat_max"].values[1])
    post, before = tree["posterior"], amortized["posterior"]
    for name in smoke.parameter_names:
        assert not np.array_equal(post[name].values[..., 0], before[name].values[..., 0])
        np.testing.assert_array_equal(post[name].values[..., 1], before[name].values[..., 1])
    # participant 0's draws are the exact posterior's: an independent NUTS fit from the default start
    exact = ExactPosterior(smoke.config.priors, max_trials=study.max_trials).fit_one(study, 0, draws=500, seed=5)
    for name in smoke.parameter_names:
        reference = exact.trace["posterior"][name].values
        assert post[name].values[0, :, 0].mean() == pytest.approx(reference.mean(), abs=0.3 * reference.std())
    with pytest.raises(ValueError, match="needs check"):
        smoke.infer(study, draws=200, fallback="nuts", check=False)

"""The per-participant check: the flow's density of its draws, the exact log target for many
draws at once, and PSIS on cases with a known posterior."""

import numpy as np
import pytest
from scipy import stats

from amortized_rlddm.amortized.importance import khat_threshold, proposal_factor, psis, resample
from amortized_rlddm.amortized.packing import pack
from amortized_rlddm.amortized.posterior import AmortizedPosterior
from amortized_rlddm.amortized.training import train
from amortized_rlddm.model.config import load_config
from amortized_rlddm.model.likelihood import loglik, loglik_draws
from amortized_rlddm.model.priors import ParameterSpace, PriorSet
from amortized_rlddm.model.simulator import simulate

SMOKE = "training_configs/smoke.yaml"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke") / "net"
    train(load_config(SMOKE), out, verbose=0)
    return AmortizedPosterior.load(out)


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
    rng = np.random.default_rng(2)
    x = rng.normal(0.0, 2.0, 20000)  # proposal N(0, 2), target N(1, 1)
    log_w = stats.norm(1, 1).logpdf(x) - stats.norm(0, 2).logpdf(x)
    picked = resample({"x": x}, log_w, 2000, rng)["x"]
    assert len(np.unique(picked)) == 2000  # without replacement: no draw repeats
    assert picked.mean() == pytest.approx(1.0, abs=0.06) and picked.std() == pytest.approx(1.0, abs=0.06)
    assert proposal_factor(np.array([1000.0, 500.0, 10.0]), 1000).tolist() == [2, 3, 20]


def test_refined_posteriors_resample_enough_proposals(smoke):
    study = simulate(smoke.config.priors.sample(np.random.default_rng(8), 4), smoke.design, seed=9)
    tree = smoke.infer(study, draws=200, seed=2, refine=True)
    checks = tree["importance"]
    assert tree["posterior"]["alpha"].shape == (1, 200, 4) and tree["posterior"].attrs["refined"] != "no"
    assert (checks["proposals"] >= 400).all() and (checks["proposals"] % 400 == 0).all()
    short = checks["ess"].values < 200
    assert (checks["proposals"].values[short] > 400).all()  # a short first pass drew more proposals

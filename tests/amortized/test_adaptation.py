"""Adapting a network to a study's own data: the self-consistency loss against a conjugate
model's exact posterior, adaptation lowering the k-hat failures of data from a shifted prior,
the refusals, and an interrupted run (kill -9) that resumes."""

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from amortized_rlddm.amortized import adaptation
from amortized_rlddm.amortized.adaptation import AdaptationError, adapt, held_out_split, self_consistency_loss
from amortized_rlddm.amortized.checkpoint import InferenceError
from amortized_rlddm.amortized.posterior import AmortizedPosterior
from amortized_rlddm.correction.importance import khat_threshold
from amortized_rlddm.data.io import write_study
from amortized_rlddm.model.simulator import simulate

from .interrupt import ENV, kill_after_epochs


def conjugate_normal(draws, seed, shift=0.0, scale=1.0, spread=1.0):
    """A normal mean with a N(0, 1) prior and 20 N(theta, 1) observations: log prior + log
    likelihood and log q of q = the exact posterior shifted by `shift` posterior sds and widened
    by `scale`, at draws from q widened by `spread` about its mean, for 30 datasets."""
    rng = np.random.default_rng(seed)
    x = rng.normal(rng.normal(size=(30, 1)), 1.0, size=(30, 20))
    precision = 1.0 + x.shape[1]
    mean, sd = x.sum(1, keepdims=True) / precision, precision ** -0.5
    q = stats.norm(mean + shift * sd, scale * sd)
    theta = stats.norm(mean + shift * sd, spread * scale * sd).rvs(size=(30, draws), random_state=rng)
    log_target = stats.norm.logpdf(theta) + stats.norm.logpdf(x[:, None, :], theta[..., None], 1.0).sum(-1)
    return log_target, q.logpdf(theta)


def test_self_consistency_loss_is_zero_at_the_exact_posterior():
    log_target, log_q = conjugate_normal(500, seed=0)
    assert float(self_consistency_loss(log_target, log_q)) < 1e-6  # float32 rounding of values near -30


def test_self_consistency_loss_of_a_shifted_posterior_is_its_shift_squared():
    # log target - log q is linear in theta for a shifted q: its variance is shift^2
    log_target, log_q = conjugate_normal(4000, seed=1, shift=0.5)
    assert float(self_consistency_loss(log_target, log_q)) == pytest.approx(0.25, rel=0.05)
    log_target, log_q = conjugate_normal(4000, seed=2, scale=1.5)
    assert float(self_consistency_loss(log_target, log_q)) > 0.1


def test_self_consistency_loss_holds_at_draws_wider_than_the_network():
    # the identity holds for any theta: wider draws keep the exact posterior's loss at zero
    # and the shifted one's at shift^2
    log_target, log_q = conjugate_normal(500, seed=4, spread=1.3)
    assert float(self_consistency_loss(log_target, log_q)) < 1e-6
    log_target, log_q = conjugate_normal(4000, seed=5, shift=0.5, spread=1.3)
    assert float(self_consistency_loss(log_target, log_q)) == pytest.approx(0.25 * 1.3**2, rel=0.05)


def test_the_draws_spread_and_a_draw_without_a_finite_target_does_not_count(smoke_posterior, monkeypatch):
    study = shifted_study(smoke_posterior, 3, seed=1)
    design = smoke_posterior.study_design()
    narrow, _, _ = smoke_posterior._sample(study, 4000, 0, design=design)
    wide, _, _ = smoke_posterior._sample(study, 4000, 0, design=design, spread=1.3)
    assert np.all(wide.std(axis=1) > narrow.std(axis=1))  # the latent normal widened: so are the draws
    pieces = adaptation._Adaptation(smoke_posterior, study, design,
                                    adaptation._checked_settings({"draws": 16}))
    real = pieces.targets[1].log_density
    monkeypatch.setattr(pieces.targets[1], "log_density",
                        lambda y: np.where(np.arange(y.shape[1]) % 2 == 0, -np.inf, real(y)))
    inputs = pieces.self_consistency_inputs(np.array([0, 1, 2]), seed=0)
    valid, theta = inputs["valid"], inputs["theta"].reshape(3, 16, -1)
    assert valid[[0, 2]].all() and np.array_equal(valid[1], np.arange(16) % 2 == 1)
    assert np.all(inputs["log_target"][1, ::2] == 0) and np.isfinite(inputs["log_target"]).all()
    assert np.all(theta[1, ::2] == theta[1, 1])  # replaced by a counted draw: no gradient from an invalid one
    with pytest.raises(ValueError, match="draw_spread"):
        adaptation._checked_settings({"draw_spread": 0.0})


def test_self_consistency_loss_leaves_out_invalid_draws():
    log_target, log_q = conjugate_normal(200, seed=3)
    valid = np.ones_like(log_target, bool)
    valid[:, :10] = False
    log_target[:, :10] = 1e6  # what an invalid draw's target would do to the variance
    assert float(self_consistency_loss(log_target, log_q, valid)) < 1e-6
    assert float(self_consistency_loss(log_target, log_q)) > 1e6


def test_held_out_split():
    adapted, held = held_out_split(28, 0.2, seed=0)
    assert held.size == 6 and np.array_equal(np.sort(np.concatenate([adapted, held])), np.arange(28))
    assert held_out_split(4, 0.5, seed=0)[1].size == 0 and held_out_split(28, 0.0, seed=0)[1].size == 0
    with pytest.raises(ValueError, match="held_out"):
        held_out_split(28, 1.0, seed=0)


def shifted_study(posterior, participants, seed):
    """Data from parameters in the tails of the priors: slow non-decision times, wide bounds,
    strong drift."""
    params = posterior.config.priors.sample(np.random.default_rng(seed), participants)
    params["t0"] = np.clip(params["t0"] + 0.7, 0.05, 1.45)
    params["a"] = np.clip(params["a"] * 2.5, 0.3, 4.9)
    params["v"] = params["v"] * 2
    return simulate(params, posterior.design, seed=seed + 1)


def khat_failures(posterior, study):
    khat = posterior.infer(study, draws=500, seed=0, check=True)["importance"]["khat"].values
    return int((khat > khat_threshold(500)).sum()), float(np.median(khat))


def test_refusals(smoke_checkpoint, smoke_posterior, tmp_path, monkeypatch):
    study = shifted_study(smoke_posterior, 4, seed=0)
    design = smoke_posterior.study_design()
    with pytest.raises(AdaptationError, match="is the network being adapted"):
        adapt(smoke_checkpoint, study, design, smoke_checkpoint)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "file").write_text("x")
    with pytest.raises(AdaptationError, match="not empty"):
        adapt(smoke_checkpoint, study, design, tmp_path / "full")
    with pytest.raises(AdaptationError, match="nothing to resume"):
        adapt(smoke_checkpoint, study, design, tmp_path / "none", resume=True)
    with pytest.raises(ValueError, match="unknown key"):
        adapt(smoke_checkpoint, study, design, tmp_path / "a", settings={"epoch": 3})
    with pytest.raises(ValueError, match="draws"):
        adapt(smoke_checkpoint, study, design, tmp_path / "a", settings={"draws": 1})
    short = simulate(smoke_posterior.config.priors.sample(np.random.default_rng(1), 3),
                     smoke_posterior.design_with_trials(30), seed=2)
    short = short.select([0, 1, 2])
    short.n_trials[:] = 20  # fewer trials than the network serves
    with pytest.raises(InferenceError):
        adapt(smoke_checkpoint, short, design, tmp_path / "b")
    assert not (tmp_path / "b").exists()
    monkeypatch.setattr(adaptation, "backend", lambda: "jax")
    with pytest.raises(AdaptationError, match="KERAS_BACKEND=tensorflow"):
        adapt(smoke_checkpoint, study, design, tmp_path / "c")


def test_kill_9_during_adaptation_then_resume(smoke_checkpoint, smoke_posterior, tmp_path):
    data = tmp_path / "data.csv"
    write_study(shifted_study(smoke_posterior, 6, seed=3), data)
    out = tmp_path / "adapted"
    cmd = [sys.executable, "-m", "amortized_rlddm.cli", "adapt", "--checkpoint", str(smoke_checkpoint),
           "--data", str(data), "--out", str(out), "--epochs", "6", "--steps-per-epoch", "8", "--held-out", "0.4",
           "--validation-simulations", "16"]
    env = {**ENV, "KERAS_BACKEND": "tensorflow"}
    state = kill_after_epochs(cmd, out / "adaptation.json", 2, env)
    done = state["epochs_done"]
    assert 2 <= done < 6 and (out / f"resume-{done}.keras").is_file()
    AmortizedPosterior.load(out)  # the last complete checkpoint is intact
    again = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert again.returncode != 0 and "not empty" in again.stderr  # never overwritten without --resume
    finished = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    final = json.loads((out / "adaptation.json").read_text())
    assert final["epochs_done"] == 6 and final["history"]["epoch"] == list(range(7))
    assert {key: values[:done + 1] for key, values in final["history"].items()} == state["history"]  # nothing lost
    assert len(final["held_out"]) == 2 and (out / "ood_reference.npz").is_file()
    assert sorted(p.name for p in out.glob("resume-*.keras")) == ["resume-6.keras"]
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["adapted"]["from"] == str(smoke_checkpoint) and metadata["adapted"]["participants"] == 6
    tree = AmortizedPosterior.load(out).infer(str(data), draws=50, seed=0, check=False)
    assert tree["posterior"].sizes["participant"] == 6


@pytest.mark.slow
def test_short_adaptation_lowers_khat_failures_on_data_from_a_shifted_prior(tmp_path):
    posterior = AmortizedPosterior.load("default")
    study = shifted_study(posterior, 24, seed=5)
    before = khat_failures(posterior, study)
    state = adapt("default", study, posterior.study_design(), tmp_path / "adapted",
                  settings={"epochs": 8, "steps_per_epoch": 50, "validation_simulations": 64}, progress=False)
    after = khat_failures(AmortizedPosterior.load(tmp_path / "adapted"), study)
    assert state["best_epoch"] > 0
    assert after[0] < before[0] and after[1] < before[1], (before, after)


def test_the_command_line_takes_every_setting():
    from amortized_rlddm.amortized.adaptation import ADAPTATION_DEFAULTS
    from amortized_rlddm.cli import build_parser
    from amortized_rlddm.cli.networks import ADAPT_OPTIONS

    assert list(ADAPT_OPTIONS) == list(ADAPTATION_DEFAULTS)
    args = build_parser().parse_args(["adapt", "--data", "d.csv", "--out", "o", "--epochs", "3", "--held-out", "0.5"])
    assert (args.epochs, args.held_out, args.draws) == (3, 0.5, None)  # None: the default

"""Packing, training, checkpoints and amortized inference on the smoke network."""

import json
from dataclasses import replace

import keras
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from amortized_rlddm.amortized.checkpoint import InferenceError
from amortized_rlddm.amortized.packing import pack, trial_features
from amortized_rlddm.amortized.posterior import AmortizedPosterior
from amortized_rlddm.amortized.training import TrainingError, train
from amortized_rlddm.model.config import load_config
from amortized_rlddm.model.priors import ParameterSpace
from amortized_rlddm.model.simulator import simulate
from amortized_rlddm.model.task import Pair, TaskDesign
from amortized_rlddm.output import hdi, save_posterior, summarize

SMOKE = "training_configs/smoke.yaml"


def study_of(n, n_trials=60, seed=0, design=None, **fixed):
    config = load_config(SMOKE)
    params = config.priors.sample(np.random.default_rng(seed), n)
    params.update({k: np.full(n, v) for k, v in fixed.items()})
    return simulate(params, design or TaskDesign(n_trials=n_trials), seed=seed), params


def test_packing_codes_and_masks():
    study, _ = study_of(3, design=TaskDesign(n_trials=(30, 50), deadline=0.9))
    x, mask = trial_features(study, ["choice", "rt", "reward", "missing"], max_trials=150)
    assert x.shape == (3, 150, 4) and mask.shape == (3, 150)
    assert (mask.sum(1) == study.n_trials).all()
    valid = study.valid
    responded = valid & (study.choice >= 0)
    head = x[:, : study.max_trials]
    assert set(np.unique(head[..., 0][responded])) <= {-1.0, 1.0}
    assert np.allclose(head[..., 1][responded], study.rt[responded])
    assert (head[..., 3][valid] == (~responded[valid])).all()
    assert study.missing.any() and (head[..., :3][study.missing] == 0).all()
    assert (x[:, study.max_trials:] == 0).all() and (mask[:, study.max_trials:] == 0).all()


def test_unchosen_outcomes_are_not_available_from_real_data(tmp_path):
    study, _ = study_of(2)
    path = tmp_path / "d.csv"
    study.to_dataframe().to_csv(path, index=False)
    from amortized_rlddm.data.io import read_study

    with pytest.raises(ValueError, match="unchosen arm"):
        trial_features(read_study(path), ["choice", "outcomes"])


def test_parameter_space_round_trip_and_support():
    config = load_config(SMOKE)
    space = ParameterSpace(config.priors)
    params = config.priors.sample(np.random.default_rng(1), 1000)
    back = space.inverse(space.forward(params))
    for name in params:
        assert np.allclose(back[name], params[name], rtol=1e-4, atol=1e-5)
    extreme = space.inverse(np.full((10, 5), 30.0))
    for name, (lo, hi) in zip(space.names, space.bounds):
        assert np.all(extreme[name] >= lo) and np.all(extreme[name] <= hi)


def test_data_dependent_space_keeps_t0_below_each_fastest_response():
    config = load_config(SMOKE)
    study, params = study_of(50, design=TaskDesign(n_trials=40, deadline=1.2))
    fastest = np.where(study.valid & (study.choice >= 0), study.rt, np.inf).min(1)
    space = ParameterSpace.given_data(config.priors, study)
    y = space.forward(params)
    assert y.shape == (50, 5) and np.isfinite(y).all()
    back = space.inverse(y)
    for name in params:
        assert np.allclose(back[name], params[name], rtol=1e-9, atol=1e-12)
    # per-participant bounds broadcast over draws; extreme draws stay inside them
    extreme = space.inverse(np.stack([np.full((50, 7, 5), 30.0), np.full((50, 7, 5), -30.0)], 1).reshape(50, 14, 5))
    hi = np.minimum(fastest, config.priors.support("t0")[1])
    assert np.all(extreme["t0"] < hi[:, None] + 1e-12) and np.all(extreme["t0"] >= 0)
    assert np.allclose(extreme["t0"][:, 0], hi) and np.allclose(extreme["t0"][:, -1], 0.0)
    # the same value maps differently for participants whose fastest responses differ
    i, j = np.argsort(fastest)[[0, -1]]
    t0 = 0.5 * fastest[i]
    same = {k: np.full(2, v[i]) for k, v in params.items()} | {"t0": np.full(2, t0)}
    pair = ParameterSpace.given_data(config.priors, study_pick(study, [i, j])).forward(same)
    expected = np.log(t0) - np.log(np.array([fastest[i], min(fastest[j], hi[j])]) - t0)
    assert np.allclose(pair[:, 3], expected)
    # without any response the prior's bound applies
    silent = study_pick(study, [0])
    silent.choice[:] = -1
    silent.rt[:] = np.nan
    assert ParameterSpace.given_data(config.priors, silent).bounds[3][1][0] == config.priors.support("t0")[1]


def test_t0_upper_setting_picks_the_space_and_is_checked():
    from amortized_rlddm.amortized.training import simulate_packed, training_settings
    from amortized_rlddm.model.config import config_from_dict

    raw = {"network": {"n_trials": [30, 40]}}
    for t0_upper, expected in (("prior", ParameterSpace), ("fastest_response", ParameterSpace.given_data)):
        config = config_from_dict({"network": {**raw["network"], "t0_upper": t0_upper}})
        network, _ = training_settings(config)
        data = simulate_packed(config, network, np.random.default_rng(5), 8)
        rng = np.random.default_rng(5)
        params = config.priors.sample(rng, 8)
        study = simulate(params, TaskDesign(n_trials=(30, 40)), seed=int(rng.integers(2**63)))
        space = expected(config.priors) if t0_upper == "prior" else expected(config.priors, study)
        assert np.allclose(data["inference_variables"], space.forward(params), atol=1e-5)
    with pytest.raises(ValueError, match="network.t0_upper"):
        training_settings(config_from_dict({"network": {"t0_upper": "fastest"}}))


def test_trial_buckets_cut_the_range_into_bands_weighted_by_width():
    from amortized_rlddm.amortized.training import trial_buckets

    bands, probs = trial_buckets({"n_trials": [30, 150]}, 4)
    assert bands == [(30, 60), (61, 90), (91, 120), (121, 150)]
    np.testing.assert_allclose(probs, np.array([31, 30, 30, 30]) / 121)
    assert trial_buckets({"n_trials": [30, 150]}, 1) == ([(30, 150)], [1.0])
    bands, probs = trial_buckets({"n_trials": [60, 62]}, 5)  # more bands than counts: one per count
    assert bands == [(60, 60), (61, 61), (62, 62)] and np.allclose(probs, 1 / 3)


def test_bucketed_batches_keep_trial_counts_uniform_and_pad_to_their_band():
    from scipy import stats

    from amortized_rlddm.amortized.training import SimulatedBatches, training_settings
    from amortized_rlddm.model.config import config_from_dict

    config = config_from_dict({"network": {"n_trials": [30, 41], "features": ["choice", "rt"],
                                           "conditions": ["n_trials"]}})
    network, _ = training_settings(config)
    batches = SimulatedBatches(config, network, batch_size=5, num_batches=600, seed=3, buckets=3)
    counts, pads = [], set()
    for k in range(len(batches)):
        data = batches[k]
        n = data["summary_mask"].sum(1).astype(int)
        band = next(b for b in batches.bands if b[0] <= n[0] <= b[1])
        assert np.all((n >= band[0]) & (n <= band[1])), "a batch mixes bands"
        assert data["summary_variables"].shape[1] == band[1]  # padded to its band's top only
        np.testing.assert_allclose(data["inference_conditions"][:, 0], n / 100, rtol=1e-6)
        counts.extend(n)
        pads.add(band[1])
    assert pads == {33, 37, 41}
    observed = np.bincount(counts, minlength=42)[30:]
    assert stats.chisquare(observed).pvalue > 0.01  # every count in 30..41 equally likely


def test_trial_buckets_setting_is_checked():
    from amortized_rlddm.amortized.training import training_settings
    from amortized_rlddm.model.config import config_from_dict

    for bad in (0, 2.0, "4", True):
        with pytest.raises(ValueError, match="training.trial_buckets"):
            training_settings(config_from_dict({"training": {"trial_buckets": bad}}))
    unmasked = {"network": {"summary": {"kind": "TimeSeriesNetwork"}}, "training": {"trial_buckets": 2}}
    with pytest.raises(ValueError, match="no padding mask"):
        training_settings(config_from_dict(unmasked))


def study_pick(study, rows):
    from amortized_rlddm.data.study import Study

    return Study(participant=study.participant[rows], n_trials=study.n_trials[rows], choice=study.choice[rows].copy(),
                 rt=study.rt[rows].copy(), reward=study.reward[rows].copy(), block=study.block[rows].copy())


def test_checkpoint_files_and_metadata(smoke_checkpoint):
    for name in ("model.keras", "config.yaml", "metadata.json", "state.json", "training_log.csv", "loss.png"):
        assert (smoke_checkpoint / name).is_file(), name
    meta = json.loads((smoke_checkpoint / "metadata.json").read_text())
    assert meta["parameters"] == ["v", "a", "z", "t0", "alpha"] and meta["n_trials"] == [30, 150]
    assert meta["t0_upper"] == "fastest_response"
    assert meta["conditions"] == ["n_trials", "qprofile"]
    state = json.loads((smoke_checkpoint / "state.json").read_text())
    assert state["epochs_done"] == 2 and len(state["history"]["val_loss"]) == 2
    log = pd.read_csv(smoke_checkpoint / "training_log.csv")
    assert list(log["epoch"]) == [1, 2] and np.isfinite(log["loss"]).all()


def test_training_refuses_to_overwrite_and_finished_resume_is_a_no_op(smoke_checkpoint):
    with pytest.raises(TrainingError, match="--resume"):
        train(load_config(SMOKE), smoke_checkpoint, verbose=0)
    assert train(load_config(SMOKE), smoke_checkpoint, resume=True, verbose=0)["epochs_done"] == 2


def test_interrupted_training_resumes_where_it_stopped(tmp_path, smoke_checkpoint):
    class StopAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    out = tmp_path / "interrupted"
    train(load_config(SMOKE), out, verbose=0, extra_callbacks=[StopAfterFirstEpoch()])
    first = json.loads((out / "state.json").read_text())
    assert first["epochs_done"] == 1
    state = train(load_config(SMOKE), out, resume=True, verbose=0)
    assert state["epochs_done"] == 2
    resumed = keras.saving.load_model(out / "model.keras")
    assert int(resumed.optimizer.iterations.numpy()) == 8  # 2 epochs x 4 batches: optimizer state kept
    # the same run as the uninterrupted one: same data, optimizer state and dropout masks. The
    # smoke config's trial buckets pad batches to two lengths, and a resumed process may compile
    # them in another order (another kernel, another rounding): weights agree to float32 rounding
    straight = json.loads((smoke_checkpoint / "state.json").read_text())["history"]
    assert state["history"] == straight
    for a, b in zip(resumed.get_weights(), keras.saving.load_model(smoke_checkpoint / "model.keras").get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)


def optimizer_variables(path):
    """How many optimizer variables a .keras file stores."""
    import io
    import zipfile

    import h5py

    with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5"))) as weights:
        found = []
        if "optimizer" in weights:
            weights["optimizer"].visititems(lambda name, item: found.append(name) if isinstance(item, h5py.Dataset)
                                            else None)
        return len(found)


def test_an_exported_checkpoint_infers_the_same_and_cannot_be_resumed(tmp_path, smoke_checkpoint):
    import shutil

    from amortized_rlddm.amortized.checkpoint import InferenceError, export_checkpoint

    source = tmp_path / "finished"
    shutil.copytree(smoke_checkpoint, source)
    with pytest.raises(InferenceError, match="has not finished"):
        export_checkpoint(source, tmp_path / "early")
    AmortizedPosterior.load(source).write_ood_reference(source)
    out = export_checkpoint(source, tmp_path / "exported")
    assert (out / "model.keras").stat().st_size < (source / "model.keras").stat().st_size
    assert optimizer_variables(source / "model.keras") > 0 and optimizer_variables(out / "model.keras") == 0
    study, _ = study_of(3)
    for name in ("alpha", "t0"):
        a = AmortizedPosterior.load(source).infer(study, draws=200, seed=7)["posterior"][name].values
        b = AmortizedPosterior.load(out).infer(study, draws=200, seed=7)["posterior"][name].values
        np.testing.assert_array_equal(a, b)
    with pytest.raises(InferenceError, match="exists already"):
        export_checkpoint(source, out)
    with pytest.raises(TrainingError, match="exported checkpoint"):
        train(load_config(SMOKE), out, resume=True, verbose=0)


def test_resume_with_another_config_is_refused(tmp_path, smoke_checkpoint):
    config = load_config(SMOKE)
    config.sections["training"] = {**config.sections["training"], "epochs": 3}
    with pytest.raises(TrainingError, match="different config"):
        train(config, smoke_checkpoint, resume=True, verbose=0)
    with pytest.raises(TrainingError, match="nothing to resume"):
        train(config, tmp_path / "empty", resume=True, verbose=0)


def test_infer_returns_a_datatree_inside_the_support(smoke_checkpoint, tmp_path):
    posterior = AmortizedPosterior.load(smoke_checkpoint)
    study, _ = study_of(4)
    tree = posterior.infer(study, draws=300, seed=3)
    post = tree["posterior"]
    assert dict(post.sizes) == {"chain": 1, "draw": 300, "participant": 4}
    assert list(post.data_vars) == ["v", "a", "z", "t0", "alpha"]
    for name in post.data_vars:
        lo, hi = posterior.config.priors.support(name)
        values = post[name].values
        assert np.isfinite(values).all() and (values >= lo).all() and (values <= hi).all()
    fastest = np.nanmin(study.rt, axis=1)
    assert (post["t0"].values[0] < fastest[None, :]).all()  # network.t0_upper: fastest_response
    save_posterior(tree, tmp_path / "p.nc")
    back = xr.open_datatree(tmp_path / "p.nc")
    assert np.array_equal(back["posterior"]["alpha"].values, post["alpha"].values)
    summary = summarize(tree)
    assert len(summary) == 20 and (summary["hdi_94_lower"] <= summary["mean"]).all()


@pytest.mark.parametrize("section, spec", [
    ("summary", {"kind": "TimeSeriesNetwork", "summary_dim": 4, "filters": [8], "kernel_sizes": [3], "strides": [1],
                 "recurrent_dim": 8, "dropout": 0.0}),
    ("inference", {"kind": "FlowMatching", "subnet_kwargs": {"widths": [16, 16]},
                   "integrate_kwargs": {"method": "euler", "steps": 4}}),
])
@pytest.mark.slow
def test_ablation_network_kinds_train_save_and_infer(tmp_path, section, spec):
    config = load_config(SMOKE)
    config.sections["network"] = {**config.sections["network"], section: spec}
    config.sections["training"] = {**config.sections["training"], "epochs": 1,
                                   "trial_buckets": 1 if spec["kind"] == "TimeSeriesNetwork" else 2}
    train(config, tmp_path / "net", verbose=0)
    posterior = AmortizedPosterior.load(tmp_path / "net")
    net = posterior.estimator.summary_network if section == "summary" else posterior.estimator.inference_network
    assert type(net).__name__ == spec["kind"]
    study, _ = study_of(3)
    post = posterior.infer(study, draws=50, seed=1)["posterior"]
    for name in post.data_vars:
        lo, hi = posterior.config.priors.support(name)
        values = post[name].values
        assert np.isfinite(values).all() and (values >= lo).all() and (values <= hi).all()
    again = posterior.infer(study, draws=50, seed=1)["posterior"]
    assert np.array_equal(again["alpha"].values, post["alpha"].values)


def test_learning_rate_schedules():
    from amortized_rlddm.amortized.training import learning_rate_schedule, training_settings
    from amortized_rlddm.model.config import config_from_dict

    def schedule_of(name):
        _, training = training_settings(config_from_dict({"training": {"schedule": name}}))
        return learning_rate_schedule(training, 1000)  # warm-up: the first 5% of the steps

    cosine, constant = schedule_of("cosine"), schedule_of("constant")
    assert float(cosine(0)) == pytest.approx(5e-5) and float(constant(0)) == pytest.approx(5e-5)
    assert float(cosine(50)) == pytest.approx(5e-4) and float(constant(50)) == pytest.approx(5e-4)
    assert float(cosine(525)) == pytest.approx(2.5e-4, rel=1e-3)  # half-way through the decay
    assert float(cosine(1000)) < 1e-8 and float(constant(1000)) == pytest.approx(5e-4)
    with pytest.raises(ValueError, match="training.schedule"):
        training_settings(config_from_dict({"training": {"schedule": "step"}}))


def test_same_seed_same_draws_after_save_and_load(smoke_checkpoint):
    loaded = AmortizedPosterior.load(smoke_checkpoint)
    again = AmortizedPosterior(keras.saving.load_model(smoke_checkpoint / "model.keras"), loaded.config)
    study, _ = study_of(3)
    a = loaded.infer(study, draws=200, seed=7)["posterior"]["alpha"].values
    b = again.infer(study, draws=200, seed=7)["posterior"]["alpha"].values
    c = loaded.infer(study, draws=200, seed=8)["posterior"]["alpha"].values
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_posterior_does_not_depend_on_padding(smoke_checkpoint):
    posterior = AmortizedPosterior.load(smoke_checkpoint)
    study, _ = study_of(3, n_trials=40)
    base = np.random.default_rng(0).standard_normal((3, 50, 5)).astype(np.float32)
    draws = []
    for max_trials in (40, 150, 400):
        data = pack(study, posterior.network, posterior.design, max_trials)
        draws.append(posterior.passes.draws(data, base)[0])
    assert np.allclose(draws[0], draws[1], atol=1e-5) and np.allclose(draws[0], draws[2], atol=1e-5)


def test_a_participant_does_not_depend_on_the_others(smoke_checkpoint):
    posterior = AmortizedPosterior.load(smoke_checkpoint)
    study, _ = study_of(5, design=TaskDesign(n_trials=(30, 150)))
    frame = study.to_dataframe()
    alone = frame[frame["participant"] == 3]
    a = posterior.infer(frame, draws=100, seed=1)["posterior"]["v"].sel(participant="3").values
    b = posterior.infer(alone, draws=100, seed=1)["posterior"]["v"].sel(participant="3").values
    assert a.shape == b.shape  # different base draws per position; compare distributions
    assert abs(np.median(a) - np.median(b)) < 0.5 * np.std(a)


def test_refusals(smoke_checkpoint):
    posterior = AmortizedPosterior.load(smoke_checkpoint)
    short, _ = study_of(2, n_trials=20)
    with pytest.raises(InferenceError, match="serves 30 to 150 trials"):
        posterior.infer(short)
    with pytest.raises(InferenceError, match="the dual model was requested but this network is the single model"):
        posterior.infer(study_of(2)[0], model="dual")
    with pytest.raises(InferenceError, match="deadline"):
        posterior.infer(study_of(2)[0], deadline=1.5)
    missing, _ = study_of(20, design=TaskDesign(n_trials=60, deadline=0.7))
    assert missing.missing.any()
    with pytest.raises(InferenceError, match="missing responses"):
        posterior.infer(missing)
    blocks, _ = study_of(2, design=TaskDesign(n_trials=60, n_blocks=2))
    with pytest.raises(InferenceError, match="block"):
        posterior.infer(blocks)
    pairs, _ = study_of(2, design=TaskDesign(n_trials=60, pairs=[Pair((0.8, 0.2), None), Pair((0.7, 0.3), None)]))
    with pytest.raises(InferenceError, match="2 stimulus pairs"):
        posterior.infer(pairs)
    one, _ = study_of(2)
    with pytest.raises(InferenceError, match="excluded"):
        posterior.infer(replace(one, excluded=one.valid & (one.rt < 0.5)))
    with pytest.raises(InferenceError, match="q_init = 0.5"):
        posterior.infer(replace(one, q_init=np.zeros(2)))


def test_incomplete_checkpoint_is_refused(tmp_path):
    (tmp_path / "config.yaml").write_text("model: single\n")
    with pytest.raises(InferenceError, match="model.keras is missing"):
        AmortizedPosterior.load(tmp_path)


def test_hdi_of_known_distribution():
    draws = np.random.default_rng(0).standard_normal((2, 200_000))
    lo, hi = hdi(draws, 0.94)
    assert np.allclose(lo, -1.8808, atol=0.03) and np.allclose(hi, 1.8808, atol=0.03)


def test_out_of_distribution_flags(smoke_checkpoint, tmp_path):
    posterior = AmortizedPosterior.load(smoke_checkpoint)
    study, _ = study_of(400, design=TaskDesign(n_trials=(30, 150)), seed=11)
    checks = posterior.data_checks(study)
    assert checks["out_of_distribution"].values.mean() < 0.05  # false alarms on in-distribution data
    # infer() reuses the sampler's summaries for the checks: the same distances
    inferred = posterior.infer(study, draws=10, seed=0)["data_checks"]
    np.testing.assert_allclose(inferred["summary_distance"].values, checks["summary_distance"].values,
                               rtol=1e-4, atol=1e-4)
    slow, _ = study_of(3, seed=12)
    slow.rt = slow.rt * 1000  # milliseconds recorded as seconds
    flagged = posterior.data_checks(slow)
    assert flagged["out_of_distribution"].values.all()
    assert all("slower than" in r for r in flagged["reasons"].values)
    summary = summarize(posterior.infer(slow, draws=50, seed=0))
    assert summary["out_of_distribution"].all()
    # stored with the checkpoint, the reference reproduces the same thresholds
    posterior.write_ood_reference(tmp_path)
    (tmp_path / "x").mkdir()
    for name in ("model.keras", "config.yaml", "metadata.json"):
        (tmp_path / "x" / name).write_bytes((smoke_checkpoint / name).read_bytes())
    (tmp_path / "ood_reference.npz").rename(tmp_path / "x" / "ood_reference.npz")
    reloaded = AmortizedPosterior.load(tmp_path / "x")
    assert reloaded._reference["distance_threshold"] == pytest.approx(
        posterior._reference["distance_threshold"])


def test_damaged_checkpoints_are_refused(smoke_checkpoint, tmp_path):
    def copy_to(name):
        target = tmp_path / name
        target.mkdir()
        for f in ("model.keras", "config.yaml", "metadata.json"):
            (target / f).write_bytes((smoke_checkpoint / f).read_bytes())
        return target

    truncated = copy_to("truncated")
    data = (truncated / "model.keras").read_bytes()
    (truncated / "model.keras").write_bytes(data[: len(data) // 2])
    with pytest.raises(InferenceError, match="damaged or truncated"):
        AmortizedPosterior.load(truncated)

    old = copy_to("old_version")
    meta = json.loads((old / "metadata.json").read_text())
    (old / "metadata.json").write_text(json.dumps({**meta, "package_version": "0.0.1"}))
    with pytest.raises(InferenceError, match="written by amortized_rlddm 0.0.1"):
        AmortizedPosterior.load(old)

    other = copy_to("other_config")
    text = (other / "config.yaml").read_text().replace("summary_dim: 8", "summary_dim: 12")
    (other / "config.yaml").write_text(text)
    with pytest.raises(InferenceError):
        AmortizedPosterior.load(other).infer(study_of(1)[0], draws=10)

    unprofiled = copy_to("other_conditions")  # a packing the network was not trained with
    text = (unprofiled / "config.yaml").read_text()
    assert "conditions:\n  - n_trials\n  - qprofile\n" in text
    (unprofiled / "config.yaml").write_text(text.replace("  - n_trials\n  - qprofile\n", "  - n_trials\n"))
    with pytest.raises(InferenceError, match="conditions"):
        AmortizedPosterior.load(unprofiled)


def test_checkpoint_from_the_other_backend_gives_the_same_draws(smoke_checkpoint):
    import os
    import subprocess
    import sys

    from amortized_rlddm.amortized.networks import backend

    other = "jax" if backend() == "tensorflow" else "tensorflow"
    code = ("import numpy as np, sys;"
            "from amortized_rlddm.amortized.posterior import AmortizedPosterior;"
            "from tests.amortized.test_amortized import study_of;"
            f"p = AmortizedPosterior.load({str(smoke_checkpoint)!r});"
            "t = p.infer(study_of(2)[0], draws=20, seed=4);"
            "print(p.converted_from); np.save(sys.argv[1], t['posterior']['v'].values)")
    out = smoke_checkpoint.parent / "other.npy"
    env = {**os.environ, "KERAS_BACKEND": other, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", code, str(out)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == backend()
    here = AmortizedPosterior.load(smoke_checkpoint).infer(study_of(2)[0], draws=20, seed=4)
    assert np.allclose(np.load(out), here["posterior"]["v"].values, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_training_step_benchmark_times_each_trial_band():
    from amortized_rlddm.benchmarks import bench_backends

    (result,) = bench_backends(SMOKE, steps=8, backends=(keras.backend.backend(),))
    assert list(result["train_ms_per_band"]) == ["30-90", "91-150"]  # smoke: trial_buckets 2
    times = [result["train_ms_per_step"], result["train_ms_per_step_bucketed"], *result["train_ms_per_band"].values()]
    assert all(np.isfinite(t) and t > 0 for t in times)


def test_every_ablation_variant_of_the_default_config_is_valid():
    from amortized_rlddm.amortized.training import training_settings
    from amortized_rlddm.validation.ablation import VARIANTS, variant_config

    default = load_config("training_configs/default.yaml")
    for name, overrides in VARIANTS.items():
        network, training = training_settings(variant_config(default, overrides, epochs=1))
        assert training["epochs"] == 1, name

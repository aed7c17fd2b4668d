"""Training survives kill -9, and numerical faults stop it before anything broken is saved."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from amortized_rlddm.amortized import training
from amortized_rlddm.amortized.posterior import AmortizedPosterior
from amortized_rlddm.amortized.training import EpochCheckpoint, TrainingError, train
from amortized_rlddm.model.config import config_from_dict, load_config

from .interrupt import ENV, kill_after_epochs


def smoke_spec(**training_overrides):
    spec = load_config("training_configs/smoke.yaml").to_dict()
    spec["training"] = {**spec["training"], **training_overrides}
    return spec


def test_kill_9_during_training_then_resume(tmp_path):
    config_path = tmp_path / "cfg.yaml"
    config_path.write_text(yaml.safe_dump(smoke_spec(epochs=6, batches_per_epoch=6)))
    out = tmp_path / "net"
    cmd = [sys.executable, "-m", "amortized_rlddm.cli", "train", "--config", str(config_path),
           "--out", str(out), "--no-progress"]
    state = kill_after_epochs(cmd, out / "state.json", 2)
    done = state["epochs_done"]
    assert 2 <= done < 6
    AmortizedPosterior.load(out)  # the last complete checkpoint is intact
    assert subprocess.run(cmd + ["--resume"], env=ENV, capture_output=True).returncode == 0
    final = json.loads((out / "state.json").read_text())
    assert final["epochs_done"] == 6 and len(final["history"]["loss"]) == 6
    assert final["history"]["loss"][:done] == state["history"]["loss"]  # nothing lost or redone
    assert (out / "ood_reference.npz").is_file()


def test_non_finite_simulation_stops_training(tmp_path, monkeypatch):
    real = training.simulate

    def broken(params, design, seed, **kwargs):
        study = real(params, design, seed, **kwargs)
        study.rt[0, 0] = np.inf
        return study

    monkeypatch.setattr(training, "simulate", broken)
    with pytest.raises(TrainingError, match="non-finite"):
        train(config_from_dict(smoke_spec()), tmp_path / "net", verbose=0)
    assert not (tmp_path / "net" / "model.keras").exists()


def test_non_finite_loss_stops_before_the_checkpoint(tmp_path):
    state = {"epochs_done": 3, "history": {}, "train_seconds": 0.0}
    callback = EpochCheckpoint(tmp_path, state)
    with pytest.raises(TrainingError, match="non-finite training loss"):
        callback.on_train_batch_end(5, {"loss": float("nan")})
    with pytest.raises(TrainingError, match="checkpoint not written"):
        callback.epoch_start = time.perf_counter()
        callback.on_epoch_end(3, {"loss": 1.0, "val_loss": float("inf")})
    assert not any(tmp_path.iterdir())


def test_init_from_starts_at_the_source_weights(tmp_path, smoke_checkpoint):
    spec = smoke_spec(epochs=1, learning_rate=1e-12, init_from=str(smoke_checkpoint))
    train(config_from_dict(spec), tmp_path / "continued", verbose=0)

    def weights(path):
        return [np.asarray(w) for w in AmortizedPosterior.load(path).estimator.trainable_weights]

    # with a vanishing rate the run keeps the source's weights (a fresh start would not have them)
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(weights(smoke_checkpoint), weights(tmp_path / "continued")))
    metadata = json.loads((tmp_path / "continued" / "metadata.json").read_text())
    assert metadata["training"]["init_from"] == str(smoke_checkpoint)


def test_init_from_refuses_another_network(tmp_path, smoke_checkpoint):
    spec = smoke_spec(init_from=str(smoke_checkpoint))
    spec["network"]["summary"] = {**spec["network"]["summary"], "summary_dim": 6}
    with pytest.raises(TrainingError, match="network.summary"):
        train(config_from_dict(spec), tmp_path / "continued", verbose=0)
    assert not (tmp_path / "continued").exists()

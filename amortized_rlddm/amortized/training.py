"""Online training of the amortized posterior (`rlddm train`).

Every batch is simulated fresh from the config's priors and design; batch i of epoch e is
seeded by (seed, e, i), so a run is reproducible and a resumed run sees the batches the
interrupted one would have. After each epoch the estimator (with its optimizer state) and a
small state file are written atomically (temporary file + rename), so a run killed at any
moment resumes from its last complete epoch. A NaN or inf in a batch or in the loss stops
training before anything broken is written.
"""

import csv
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import yaml

from .. import __version__
from ..model.config import Config
from ..model.priors import choice_only
from ..model.simulator import simulate, simulate_family
from .checkpoint import (
    CONFIG_FILE,
    LOG_FILE,
    LOSS_PLOT,
    METADATA_FILE,
    MODEL_FILE,
    STATE_FILE,
    canonical,
    read_checkpoint,
    resolve_checkpoint,
)
from .networks import backend, build_estimator, network_kinds
from .packing import DEFAULT_CONDITIONS, DEFAULT_FEATURES, T0_UPPER_CHOICES, check_conditions, pack, parameter_space

DEFAULT_TRAINING = {"epochs": 60, "batches_per_epoch": 200, "batch_size": 64,
                    "learning_rate": 5e-4, "schedule": "cosine", "validation_datasets": 500, "seed": 1,
                    "trial_buckets": 1, "init_from": None}
# training.schedule: the learning rate warms up over the first 5% of steps, then decays to 0
# along a cosine ("cosine", the default) or stays at training.learning_rate ("constant").
SCHEDULES = ("cosine", "constant")
# training.trial_buckets: the network's trial-count range is cut into this many consecutive
# bands of (nearly) equal width; each training batch draws all its participants' counts from
# one band, picked in proportion to its width (so every count stays equally likely), and is
# padded only to that band's top. A masked summary network's output does not depend on the
# padding, so this only saves computation. The default, 1, keeps one band: a saved config
# then still means the run it made. The summary network without a mask (TimeSeriesNetwork)
# would learn from the padding and is refused.
# training.init_from: a checkpoint (directory or shipped name) whose trained weights the run
# starts from instead of a random initialisation, with a fresh optimizer and this config's
# schedule: to go on training a shipped network (whose exported checkpoint keeps no optimizer
# state, so --resume refuses it), e.g. on a widened family. Its model and network section must
# be this config's; the priors and the family may differ.


class TrainingError(RuntimeError):
    """Training cannot start, continue, or produce a sound checkpoint."""


def training_settings(config: Config):
    """Network and training sections with defaults filled in, checked."""
    network = dict(config.sections.get("network") or {})
    choices_alone = choice_only(config.parameter_names)
    network.setdefault("features", [f for f in DEFAULT_FEATURES if f != "rt"] if choices_alone
                       else list(DEFAULT_FEATURES))
    n_trials = network.setdefault("n_trials", [config.design.min_trials, config.design.max_trials])
    if not (isinstance(n_trials, (list, tuple)) and len(n_trials) == 2 and 1 <= n_trials[0] <= n_trials[1]):
        raise ValueError(f"network.n_trials: expected [min, max], got {n_trials!r}")
    check_conditions(network.setdefault("conditions", list(DEFAULT_CONDITIONS)))
    if choices_alone and ("rt" in network["features"] or "rtstats" in network["conditions"]):
        raise ValueError(f"network: a choice-only model ({config.model}) reads no response times: leave 'rt' out "
                         "of network.features and 'rtstats' out of network.conditions")
    network_kinds(network)
    if network.setdefault("t0_upper", T0_UPPER_CHOICES[0]) not in T0_UPPER_CHOICES:
        raise ValueError(f"network.t0_upper: expected one of {T0_UPPER_CHOICES}, got {network['t0_upper']!r}")
    training = {**DEFAULT_TRAINING, **(config.sections.get("training") or {})}
    unknown = sorted(set(training) - set(DEFAULT_TRAINING))
    if unknown:
        raise ValueError(f"training: unknown key(s) {unknown}; expected some of {sorted(DEFAULT_TRAINING)}")
    if training["schedule"] not in SCHEDULES:
        raise ValueError(f"training.schedule: expected one of {SCHEDULES}, got {training['schedule']!r}")
    buckets = training["trial_buckets"]
    if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 1:
        raise ValueError(f"training.trial_buckets: expected a positive integer, got {buckets!r}")
    if buckets > 1 and network_kinds(network)[0] == "TimeSeriesNetwork":
        raise ValueError("training.trial_buckets: TimeSeriesNetwork has no padding mask, so batches "
                         "padded to different lengths would differ from the data it infers; use 1")
    return network, training


def trial_buckets(network, count):
    """The network's trial counts cut into `count` consecutive (min, max) bands of nearly equal
    width, and each band's probability (its share of the counts); empty bands are dropped."""
    lo, hi = network["n_trials"]
    bands = [b for b in np.array_split(np.arange(lo, hi + 1), count) if b.size]
    return [(int(b[0]), int(b[-1])) for b in bands], np.array([b.size for b in bands]) / (hi - lo + 1)


def training_design(config: Config, network):
    """The design (or family of designs) the network is trained on: the config's, with the
    trial-count range it serves."""
    return replace(config.design, n_trials=tuple(int(n) for n in network["n_trials"]))


def simulate_packed(config: Config, network, rng, n, trials=None):
    """Draw n parameter sets, simulate, pack: the estimator's input dict (with targets).

    trials: a (min, max) band of trial counts inside the network's range to draw from and
    pad to (default: the whole range)."""
    design = training_design(config, network)
    band = design if trials is None else replace(design, n_trials=tuple(trials))
    params = config.priors.sample(rng, n)
    if config.is_family:
        study, settings = simulate_family(params, band, seed=int(rng.integers(2**63)))
    else:
        study, settings = simulate(params, band, seed=int(rng.integers(2**63))), design
    space = parameter_space(config.priors, study, network["t0_upper"], settings)
    data = pack(study, network, settings, band.max_trials, params, space)
    for key, value in data.items():
        if not np.all(np.isfinite(value)):
            raise TrainingError(f"simulation produced non-finite values in '{key}'; "
                                f"parameters drawn: { {k: v[:5] for k, v in params.items()} }")
    return data


class SimulatedBatches(keras.utils.PyDataset):
    """Fresh simulations for every training step, seeded by (seed, step).

    One long sequence covers all remaining steps and Keras epochs are consecutive slices
    of it (fit with steps_per_epoch, no shuffling). A batch's data depends only on its step
    number, never on when Keras asks for it (it prefetches across epoch boundaries), so a
    resumed run sees exactly the batches an uninterrupted one would.
    """

    def __init__(self, config, network, batch_size, num_batches, seed, first_step=0, buckets=1):
        super().__init__(workers=1, use_multiprocessing=False)
        self.config, self.network = config, network
        self.batch_size, self._num_batches, self.seed = batch_size, num_batches, seed
        self.first_step = first_step
        self.bands, self.band_probs = trial_buckets(network, buckets)

    def __len__(self):
        return self._num_batches

    @property
    def num_batches(self):
        return self._num_batches

    def __getitem__(self, index):
        rng = np.random.default_rng([self.seed, self.first_step + index])
        if len(self.bands) == 1:  # no band to draw: the generator yields what it did before buckets
            return simulate_packed(self.config, self.network, rng, self.batch_size)
        band = self.bands[rng.choice(len(self.bands), p=self.band_probs)]
        return simulate_packed(self.config, self.network, rng, self.batch_size, trials=band)


def _tensorflow_dataset(batches, example):
    """`batches` as a tf.data pipeline whose trial axis has no fixed length; `example` (any
    packed data, e.g. the validation set) gives the keys, dtypes and feature widths.

    Keras would infer the TensorFlow signature of a PyDataset from its first two batches and
    refuse any later batch of another length; with trial buckets those two may share a band.
    The pipeline yields the same batches in the same order, one prefetched."""
    import tensorflow as tf

    def spec(key, value):
        shape = [None, *value.shape[1:]]
        if key.startswith("summary_"):
            shape[1] = None  # the trial axis
        return tf.TensorSpec(shape, tf.as_dtype(value.dtype))

    signature = {key: spec(key, value) for key, value in example.items()}
    return tf.data.Dataset.from_generator(lambda: (batches[i] for i in range(len(batches))),
                                          output_signature=signature).prefetch(1)


class FixedBatches(keras.utils.PyDataset):
    """A fixed dataset (the validation set) served in batches."""

    def __init__(self, data, batch_size):
        super().__init__(workers=1, use_multiprocessing=False)
        self.data, self.batch_size = data, batch_size
        self.n = len(next(iter(data.values())))

    def __len__(self):
        return -(-self.n // self.batch_size)

    @property
    def num_batches(self):
        return len(self)

    def __getitem__(self, index):
        sl = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return {k: v[sl] for k, v in self.data.items()}


def _atomic_write_text(path, text):
    tmp = Path(f"{path}.tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _seed_generator_states(estimator):
    """The random-number states training advances: the estimator's own (dropout in the
    flow's subnets) and Keras' global generator (random ops without their own generator).
    A .keras file keeps neither, so the checkpoint's state.json does: a resumed run then
    draws the same random numbers as an uninterrupted one. Keras exposes the global
    generator only under keras.src."""
    from keras.src.random.seed_generator import global_seed_generator

    own = [v for v in estimator.variables if v.path.endswith("seed_generator_state")]
    return [*own, global_seed_generator().state]


def _restore_seed_generator_states(estimator, saved, out_dir):
    states = _seed_generator_states(estimator)
    if len(states) != len(saved):
        raise TrainingError(f"'{out_dir}': {STATE_FILE} holds {len(saved)} random-number states but the "
                            f"saved network has {len(states)}; the files do not belong together")
    for variable, value in zip(states, saved):
        variable.assign(np.asarray(value, dtype=variable.dtype))


def save_estimator_atomically(estimator, out_dir):
    tmp = Path(out_dir) / f"tmp-{MODEL_FILE}"
    estimator.save(tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, Path(out_dir) / MODEL_FILE)


def plot_loss(history, path):
    """The training and validation loss per epoch, written atomically to `path`."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    epochs = np.arange(1, len(history["loss"]) + 1)
    ax.plot(epochs, history["loss"], label="training")
    if history.get("val_loss"):
        ax.plot(epochs, history["val_loss"], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (negative log posterior density)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(f"{path}.tmp.png", dpi=110)
    os.replace(f"{path}.tmp.png", path)


class EpochCheckpoint(keras.callbacks.Callback):
    """After each epoch: refuse non-finite losses, then save model, state, log and plot."""

    def __init__(self, out_dir, state):
        super().__init__()
        self.out_dir, self.state = Path(out_dir), state
        self.epoch_start = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            raise TrainingError(f"non-finite training loss ({loss}) at epoch "
                                f"{self.state['epochs_done'] + 1}, batch {batch + 1}; the last complete "
                                f"checkpoint in {self.out_dir} is left untouched")

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        if not all(np.isfinite(v) for v in logs.values()):
            raise TrainingError(f"non-finite metrics {logs} at epoch {epoch + 1}; checkpoint not written")
        history = self.state["history"]
        for key in ("loss", "val_loss"):
            if key in logs:
                history.setdefault(key, []).append(logs[key])
        self.state["epochs_done"] = epoch + 1
        self.state["train_seconds"] += time.perf_counter() - self.epoch_start
        self.state["seed_generator_states"] = [v.numpy().tolist() for v in _seed_generator_states(self.model)]
        save_estimator_atomically(self.model, self.out_dir)
        _atomic_write_text(self.out_dir / STATE_FILE, json.dumps(self.state, indent=1))
        rows = zip(range(1, len(history["loss"]) + 1), history["loss"],
                   history.get("val_loss", [None] * len(history["loss"])))
        with open(self.out_dir / f"{LOG_FILE}.tmp", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["epoch", "loss", "val_loss"])
            writer.writerows(rows)
        os.replace(self.out_dir / f"{LOG_FILE}.tmp", self.out_dir / LOG_FILE)
        plot_loss(history, self.out_dir / LOSS_PLOT)


class TrainingProgress(keras.callbacks.Callback):
    """After each epoch, one line: epochs done of the total, this run's training time and the
    estimated time left (at this run's mean time per epoch)."""

    def __init__(self, state, epochs):
        super().__init__()
        self.state, self.epochs = state, epochs
        self.first_epoch, self.start = state["epochs_done"], None

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        elapsed = time.perf_counter() - self.start
        done = self.state["epochs_done"]
        per_epoch = elapsed / max(done - self.first_epoch, 1)
        print(f"epoch {done}/{self.epochs}: {_minutes(elapsed)} in this run, about "
              f"{_minutes(per_epoch * (self.epochs - done))} left", flush=True)


def _minutes(seconds):
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def _metadata(config, network, training):
    import bayesflow

    return {"package_version": __version__, "backend": backend(), "bayesflow_version": bayesflow.__version__,
            "keras_version": keras.__version__, "model": config.model,
            "parameters": list(config.parameter_names), "features": list(network["features"]),
            "n_trials": list(network["n_trials"]), "t0_upper": network["t0_upper"],
            "conditions": list(network["conditions"]), "design": training_design(config, network).to_dict(),
            "priors": config.priors.to_dict(), "training": training}


def learning_rate_schedule(training, total_steps):
    """training.schedule over total_steps: a linear warm-up from a tenth of the learning rate
    over the first 5% of the steps, then a cosine decay to 0 or a constant rate."""
    warmup = int(0.05 * total_steps)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.1 * training["learning_rate"], warmup_target=training["learning_rate"],
        warmup_steps=warmup, decay_steps=max(total_steps - warmup, 1),
        alpha=1.0 if training["schedule"] == "constant" else 0.0)  # alpha: the final fraction kept


def initial_weights(config: Config, network, source):
    """The estimator of checkpoint `source` (a directory or shipped name) to start training
    `config` from, refused unless its model and network section are the config's."""
    path = resolve_checkpoint(source)
    estimator, saved, _ = read_checkpoint(path)
    saved_network, wanted = canonical(training_settings(saved)[0]), canonical(network)
    differ = sorted(k for k in saved_network.keys() | wanted.keys() if saved_network.get(k) != wanted.get(k))
    if saved.model != config.model or differ:
        what = f"model {saved.model} (this config: {config.model})" if saved.model != config.model else \
            "network." + ", network.".join(differ)
        raise TrainingError(f"training.init_from: '{path}' differs from this config in {what}; its weights "
                            "fit only the same model and network section")
    return estimator


def _optimizer(training, total_steps):
    return keras.optimizers.Adam(learning_rate_schedule(training, total_steps), clipnorm=1.5)


def train(config: Config, out_dir, resume=False, verbose=1, extra_callbacks=()):
    """Train (or resume training) a network for `config`, writing the checkpoint to out_dir.

    verbose: Keras' output (0 none, 1 a progress bar per epoch, 2 a line per epoch); with 1 or
    2 a line after each epoch also gives the epochs done and the time left.
    extra_callbacks: Keras callbacks run after the checkpointing one (e.g. timers).
    """
    network, training = training_settings(config)
    out_dir = Path(out_dir)
    state_path, model_path = out_dir / STATE_FILE, out_dir / MODEL_FILE
    keras.utils.set_random_seed(int(training["seed"]))
    if resume:
        if not (state_path.is_file() and model_path.is_file()):
            raise TrainingError(f"nothing to resume in '{out_dir}': no complete checkpoint "
                                f"({MODEL_FILE} and {STATE_FILE}) found")
        state = json.loads(state_path.read_text())
        if "exported_from" in state:
            raise TrainingError(f"'{out_dir}' is an exported checkpoint (rlddm export), without the optimizer's "
                                f"state; resume the run it came from ({state['exported_from']})")
        saved = yaml.safe_load((out_dir / CONFIG_FILE).read_text())
        if saved != config.to_dict():
            raise TrainingError(f"'{out_dir}' was trained with a different config; resume with the "
                                f"config saved there ({out_dir / CONFIG_FILE}) or start a new --out")
        if state.get("backend") != backend():
            raise TrainingError(f"'{out_dir}' was trained on the {state.get('backend')} backend, "
                                f"this process runs {backend()}; set KERAS_BACKEND={state.get('backend')}")
        estimator = keras.saving.load_model(model_path)
        if "seed_generator_states" in state:
            _restore_seed_generator_states(estimator, state["seed_generator_states"], out_dir)
    else:
        if model_path.exists() or state_path.exists():
            raise TrainingError(f"'{out_dir}' already holds a checkpoint; pass --resume to continue "
                                "it, or choose another --out")
        estimator = build_estimator(network) if training["init_from"] is None else \
            initial_weights(config, network, training["init_from"])
        out_dir.mkdir(parents=True, exist_ok=True)
        state = {"epochs_done": 0, "history": {}, "train_seconds": 0.0, "backend": backend()}
        _atomic_write_text(out_dir / CONFIG_FILE, yaml.safe_dump(config.to_dict(), sort_keys=False))
        _atomic_write_text(out_dir / METADATA_FILE, json.dumps(_metadata(config, network, training), indent=1))
    epochs = int(training["epochs"])
    if state["epochs_done"] >= epochs:
        return state
    val_rng = np.random.default_rng([int(training["seed"]), 2**31 - 1])
    validation = FixedBatches(simulate_packed(config, network, val_rng, int(training["validation_datasets"])),
                              int(training["batch_size"]))
    steps = int(training["batches_per_epoch"])
    dataset = SimulatedBatches(config, network, int(training["batch_size"]), (epochs - state["epochs_done"]) * steps,
                               int(training["seed"]), first_step=state["epochs_done"] * steps,
                               buckets=int(training["trial_buckets"]))
    if not resume:
        if training["init_from"] is None:
            estimator.build_from_data(keras.tree.map_structure(keras.ops.convert_to_tensor, dataset[0]))
        estimator.compile(optimizer=_optimizer(training, epochs * steps))
    if backend() == "tensorflow" and len(dataset.bands) > 1:
        dataset = _tensorflow_dataset(dataset, validation.data)
    estimator.fit(dataset=dataset, epochs=epochs, initial_epoch=state["epochs_done"], steps_per_epoch=steps,
                  shuffle=False, validation_data=validation, verbose=verbose,
                  callbacks=[EpochCheckpoint(out_dir, state), *([TrainingProgress(state, epochs)] if verbose else []),
                             *extra_callbacks])
    return state

"""Adapting a trained network to a study's own data (`rlddm adapt`).

The self-consistency loss (Mishra, Habermann, Schmitt, Radev and Buerkner 2025): for a
participant's data x and any parameters theta,

    log p(theta) + log p(x | theta) - log q(theta | x) = log p(x)

exactly when q is the exact posterior, so the variance of the left side over draws of theta
is zero there and positive elsewhere. The draws come from the network with its latent normal
widened (``draw_spread``), so that its tails count. The prior and the exact likelihood enter
as values (the package's :class:`~amortized_rlddm.model.target.ExactTarget`, in the flow's
unbounded space); the gradient runs through log q alone, the draws held fixed. Each step
takes the mean of that variance over a few of the study's participants and adds the usual
simulation loss (the flow's negative log density of the true parameters) on fresh
simulations of the same participants' designs and like the network's training data, so the
network keeps what it learnt. After each epoch the same losses on fixed draws and
simulations (of the held-out participants, if any) pick the epoch the checkpoint keeps, the
network before adaptation included.

The adapted checkpoint is a new directory: ``model.keras`` (the chosen epoch's network),
the source's config and metadata (which records the adaptation), ``adaptation.json`` and
``adaptation_log.csv`` (losses per epoch), ``resume-EPOCH.keras`` (the last epoch's network with
its optimizer) and, once finished, the out-of-distribution reference. Every file is written
atomically after each epoch, so a run killed at any moment resumes (``resume=True``) from its
last complete epoch with the batches an uninterrupted run would have drawn.
"""

import csv
import hashlib
import json
import time
from pathlib import Path

import keras
import numpy as np

from ..data.study import Study
from ..model.target import ExactTarget
from ..model.task import DesignSettings, TaskDesign
from .checkpoint import CONFIG_FILE, METADATA_FILE, resolve_checkpoint
from .misspecification import design_replicates
from .networks import backend, network_kinds
from .packing import pack, parameter_space
from .passes import flow_log_density, summaries_and_conditions
from .training import (
    TrainingError,
    _atomic_write_text,
    _minutes,
    learning_rate_schedule,
    save_estimator_atomically,
    simulate_packed,
    training_settings,
    trial_buckets,
)

__all__ = ["ADAPTATION_DEFAULTS", "AdaptationError", "adapt", "self_consistency_loss"]

STATE_FILE = "adaptation.json"
LOG_FILE = "adaptation_log.csv"
ADAPTATION_DEFAULTS = {
    "epochs": 20,  # passes of steps_per_epoch steps; the checkpoint keeps the best by the held-out losses
    "steps_per_epoch": 100,
    "participants_per_step": 8,  # the study's participants in each step's self-consistency loss
    "draws": 64,  # network draws per participant for the variance
    "draw_spread": 1.3,  # their latent normal's sd: wider than the network's own draws (1), so its tails count
    "simulations_per_step": 32,  # simulated participants of the study's designs in each step's simulation loss
    "training_simulations_per_step": 32,  # and simulations like the network's training batches (its whole family)
    "simulation_weight": 1.0,  # the simulation loss's weight beside the self-consistency loss
    "learning_rate": 4e-4,  # the peak of a cosine schedule with a warm-up (as in training)
    "held_out": 0.0,  # share of the participants (at least 2, if the study has 5 or more) held out to pick the epoch
    "validation_simulations": 256,
    "seed": 0,
}
CLIP_NORM = 1.5  # the optimizer's gradient clipping, as in training


class AdaptationError(TrainingError):
    """Adaptation cannot start, continue, or produce a sound checkpoint."""


def self_consistency_loss(log_target, log_q, valid=None):
    """The mean over participants of the variance over draws of ``log_target - log_q``.

    Parameters
    ----------
    log_target
        (participants, draws): the unnormalised log posterior (log prior + log likelihood) of
        each draw, a value (no gradient is taken through it).
    log_q
        (participants, draws): the network's log density of the same draws.
    valid
        (participants, draws) booleans: the draws that count (default: all); each
        participant needs at least one.

    Returns
    -------
    Tensor
        A scalar: zero when every participant's log q equals their log target up to a
        constant (q is the exact posterior), positive otherwise.
    """
    residual = keras.ops.convert_to_tensor(log_target, "float32") - keras.ops.cast(log_q, "float32")
    weight = (keras.ops.ones_like(residual) if valid is None else keras.ops.cast(valid, "float32"))
    count = keras.ops.sum(weight, axis=1, keepdims=True)
    mean = keras.ops.sum(residual * weight, axis=1, keepdims=True) / count
    variance = keras.ops.sum(weight * (residual - mean) ** 2, axis=1, keepdims=True) / count
    return keras.ops.mean(variance)


def fingerprint(study: Study, design: TaskDesign) -> str:
    """A hash of the data and the settings adaptation saw, so that a resumed run refuses others."""
    digest = hashlib.sha256("\x1f".join(map(str, study.participant)).encode())
    for name in ("choice", "rt", "reward", "valid", "excluded", "condition", "block", "n_trials"):
        digest.update(np.ascontiguousarray(getattr(study, name)).tobytes())
    digest.update(json.dumps(design.to_dict(), sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def held_out_split(n_participants: int, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(adapted, held out) participant indices: `share` of them held out at random, at least 2
    when the study has 5 or more participants, none when share is 0."""
    if not 0 <= share < 1:
        raise ValueError(f"held_out: expected a share in [0, 1), got {share!r}")
    count = 0 if share == 0 or n_participants < 5 else max(2, int(round(share * n_participants)))
    held = np.sort(np.random.default_rng([seed, 7]).choice(n_participants, count, replace=False))
    return np.setdiff1d(np.arange(n_participants), held), held


class _Adaptation:
    """The pieces of one adaptation: the network's passes, the study's exact targets and
    packed data, and the simulation of its designs."""

    def __init__(self, posterior, study, design, settings):
        self.posterior, self.study, self.design = posterior, study, design
        self.estimator = posterior.estimator
        self.settings = DesignSettings.of(design, study)
        self.data = posterior._pack(study, design)
        self.targets = [ExactTarget(study.select([i]), posterior.config.priors, design, posterior.network["t0_upper"])
                        for i in range(study.n_participants)]
        self.draws, self.simulations = int(settings["draws"]), int(settings["simulations_per_step"])
        self.spread = float(settings["draw_spread"])
        self.training_simulations = int(settings["training_simulations_per_step"])
        self.weight = float(settings["simulation_weight"])
        self.bands, self.band_probs = trial_buckets(posterior.network,
                                                    int(training_settings(posterior.config)[1]["trial_buckets"]))

    def self_consistency_inputs(self, participants, seed):
        """Draws of `participants` from the network with its latent normal widened by
        `draw_spread` (no gradient), and their exact log targets. A draw where the target or the
        network's density is not finite does not count; it is replaced by a counted draw of the
        same participant, so that no gradient passes through it."""
        y, _, log_q = self.posterior._sample(self.study.select(participants), self.draws, seed, density=True,
                                             design=self.design, spread=self.spread)
        log_target = np.stack([self.targets[i].log_density(y[j:j + 1])[0] for j, i in enumerate(participants)])
        valid = np.isfinite(log_target) & np.isfinite(log_q)
        if not valid.any(axis=1).all():
            bad = self.study.participant[np.asarray(participants)[~valid.any(axis=1)]]
            raise AdaptationError(f"participant(s) {', '.join(map(str, bad))}: the exact posterior is zero at "
                                  "every network draw; the data do not fit the model's support")
        y = np.where(valid[..., None], y, y[np.arange(len(y)), valid.argmax(axis=1)][:, None, :])
        return {key: self.data[key][participants] for key in ("summary_variables", "summary_mask",
                                                               "inference_conditions")} | {
            "theta": y.reshape(-1, y.shape[-1]), "log_target": np.where(valid, log_target, 0.0), "valid": valid}

    def simulated(self, participants, seed):
        """Packed simulations (with their parameters) of the designs of `participants`, one per
        entry, parameters drawn from the priors."""
        priors, network = self.posterior.config.priors, self.posterior.network
        rng = np.random.default_rng(seed)
        params = priors.sample(rng, len(participants))
        simulated, settings = design_replicates(self.study.select(participants), self.settings.select(participants),
                                                params, 1, int(rng.integers(2**63)))
        space = parameter_space(priors, simulated, network["t0_upper"], settings)
        return pack(simulated, network, settings, self.posterior.design.max_trials, params, space)

    def like_training(self, count, seed, whole_range=False):
        """`count` packed simulations like the network's training batches (its priors and
        design or family), with their parameters; one trial band per call, as in training."""
        rng = np.random.default_rng(seed)
        band = None if whole_range else self.bands[rng.choice(len(self.bands), p=self.band_probs)]
        return simulate_packed(self.posterior.config, self.posterior.network, rng, count, trials=band)

    def log_q(self, inputs):
        """The flow's log density of the draws given the participants' data, differentiable."""
        _, rows = summaries_and_conditions(self.estimator, inputs["summary_variables"], inputs["summary_mask"],
                                           inputs["inference_conditions"])
        log_density = flow_log_density(self.estimator, keras.ops.repeat(rows, self.draws, axis=0), inputs["theta"])
        return keras.ops.reshape(log_density, (-1, self.draws))

    def losses(self, inputs, simulations, training_simulations):
        """The self-consistency loss of `inputs` and the simulation losses of the study's
        designs' `simulations` and of the `training_simulations` (zero when there are none)."""
        sc = self_consistency_loss(inputs["log_target"], self.log_q(inputs), inputs["valid"])
        npe = self.estimator.compute_metrics(**simulations, stage="validation")["loss"]
        family = (self.estimator.compute_metrics(**training_simulations, stage="validation")["loss"]
                  if training_simulations else keras.ops.zeros(()))
        return sc, npe, family

    def simulation_loss(self, simulations):
        """The mean simulation loss of packed simulations, in blocks of 64, as a float."""
        n = len(simulations["summary_variables"])
        return sum(float(self.estimator.compute_metrics(**{k: v[i:i + 64] for k, v in simulations.items()},
                                                        stage="validation")["loss"]) * min(64, n - i)
                   for i in range(0, n, 64)) / n


def _train_step(adaptation, optimizer):
    """One compiled gradient step on the self-consistency loss + weight x the simulation losses
    (TensorFlow)."""
    import tensorflow as tf

    variables = adaptation.estimator.trainable_variables

    @tf.function(reduce_retracing=True)
    def step(inputs, simulations, training_simulations):
        with tf.GradientTape() as tape:
            sc, npe, family = adaptation.losses(inputs, simulations, training_simulations)
            loss = sc + adaptation.weight * (npe + family)
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])
        return sc, npe, family

    return step


def _checked_settings(settings):
    merged = {**ADAPTATION_DEFAULTS, **(settings or {})}
    unknown = sorted(set(merged) - set(ADAPTATION_DEFAULTS))
    if unknown:
        raise ValueError(f"adaptation settings: unknown key(s) {unknown}; expected some of "
                         f"{sorted(ADAPTATION_DEFAULTS)}")
    for key in ("epochs", "steps_per_epoch", "participants_per_step", "simulations_per_step",
                "validation_simulations"):
        if isinstance(merged[key], bool) or not isinstance(merged[key], int) or merged[key] < 1:
            raise ValueError(f"adaptation setting {key}: expected a positive integer, got {merged[key]!r}")
    count = merged["training_simulations_per_step"]
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"adaptation setting training_simulations_per_step: expected an integer >= 0, got {count!r}")
    if isinstance(merged["draws"], bool) or not isinstance(merged["draws"], int) or merged["draws"] < 2:
        raise ValueError(f"adaptation setting draws: expected an integer of at least 2, got {merged['draws']!r}")
    for key in ("learning_rate", "simulation_weight", "draw_spread"):
        if not (np.isfinite(merged[key]) and merged[key] >= (0 if key == "simulation_weight" else 1e-12)):
            raise ValueError(f"adaptation setting {key}: expected a positive number, got {merged[key]!r}")
    held_out_split(5, merged["held_out"], 0)  # refuses a share outside [0, 1)
    return merged


STEP_LOSSES = ("self_consistency", "design_simulation", "training_simulation")  # each epoch's means
CHECK_LOSSES = ("check_self_consistency", "check_design_simulation", "check_training_simulation")


def _check_losses(adaptation, participants, design_simulations, training_simulations):
    """The losses that pick the epoch, as floats: the self-consistency loss of `participants`
    (fixed base draws: the same at every epoch) and the simulation losses of the fixed
    simulations of their designs and like the training data."""
    inputs = adaptation.self_consistency_inputs(participants, seed=12345)
    log_q = adaptation.posterior.unbounded_log_density(
        adaptation.study.select(participants), inputs["theta"].reshape(len(participants), adaptation.draws, -1),
        adaptation.design)
    sc = float(self_consistency_loss(inputs["log_target"], log_q, inputs["valid"]))
    family = adaptation.simulation_loss(training_simulations) if training_simulations else 0.0
    return sc, adaptation.simulation_loss(design_simulations), family


def _total(losses, weight):
    """The self-consistency loss plus `weight` times the simulation losses."""
    return losses[0] + weight * (losses[1] + losses[2])


def _write_log(out, history):
    keys = ("epoch", *STEP_LOSSES, *CHECK_LOSSES, "check_total")
    tmp = out / f"{LOG_FILE}.tmp"
    with open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(keys)
        writer.writerows(zip(*(history[key] for key in keys)))
    tmp.replace(out / LOG_FILE)


def _losses_line(history, epoch):
    """One epoch's losses as the progress line shows them."""
    line = ("" if history["self_consistency"][epoch] is None else "steps: self-consistency {:.3f}, simulations "
            "{:.3f} (study's designs) and {:.3f} (training data); ".format(*(history[k][epoch] for k in STEP_LOSSES)))
    return line + "check: {:.3f}, {:.3f}, {:.3f}".format(*(history[k][epoch] for k in CHECK_LOSSES))


def _save_resume_point(estimator, out, epoch):
    """The estimator with its optimizer as resume-EPOCH.keras (atomically); earlier ones go once
    the state naming this one is written."""
    tmp = out / f"tmp-resume-{epoch}.keras"
    estimator.save(tmp)
    tmp.replace(out / f"resume-{epoch}.keras")


def adapt(checkpoint, study: Study, design: TaskDesign, out_dir, settings: dict | None = None,
          resume: bool = False, model: str | None = None, data_source: str | None = None,
          progress: bool = True) -> dict:
    """Fine-tune a trained network on a study's own data; write the adapted checkpoint.

    Parameters
    ----------
    checkpoint
        The network to adapt: a shipped network's name or a checkpoint directory (never
        written to).
    study
        The study's data, its exclusions applied (as :meth:`AmortizedPosterior.infer` reads it).
    design
        The study's likelihood settings (:meth:`AmortizedPosterior.study_design`).
    out_dir
        The new checkpoint directory (must not hold a checkpoint unless `resume`).
    settings
        Overrides of :data:`ADAPTATION_DEFAULTS`.
    resume
        Continue the interrupted adaptation in `out_dir` (the same data and settings).
    model
        ``"single"``, ``"dual"``, ...: refuse unless the network is this model (as infer does).
    data_source
        Where the data came from, recorded in the metadata.
    progress
        Print a line per epoch.

    Returns
    -------
    dict
        The adaptation's state: ``epochs_done``, ``best_epoch`` (0: the network before
        adaptation), ``history`` (the losses per epoch), ``seconds`` and the participants
        held out.
    """
    from .posterior import AmortizedPosterior

    if backend() != "tensorflow":
        raise AdaptationError(f"adaptation differentiates through the network with TensorFlow; this process runs "
                              f"the {backend()} backend: set KERAS_BACKEND=tensorflow (the adapted checkpoint then "
                              "loads on either backend)")
    settings = _checked_settings(settings)
    out = Path(out_dir)
    source = resolve_checkpoint(checkpoint) if not resume else None
    if source is not None and out.resolve() == source.resolve():
        raise AdaptationError(f"--out '{out}' is the network being adapted; adaptation writes a new checkpoint")
    if resume:
        state_path = out / STATE_FILE
        if not state_path.is_file():
            raise AdaptationError(f"nothing to resume in '{out}': no {STATE_FILE} found")
        state = json.loads(state_path.read_text())
        if state["settings"] != settings:
            raise AdaptationError(f"'{out}' was adapted with other settings ({state['settings']}); resume with "
                                  "those or choose a new --out")
        if state["backend"] != backend():
            raise AdaptationError(f"'{out}' was adapted on the {state['backend']} backend; set "
                                  f"KERAS_BACKEND={state['backend']}")
        posterior = AmortizedPosterior.load(out)
        estimator = keras.saving.load_model(out / f"resume-{state['epochs_done']}.keras")
        posterior = AmortizedPosterior(estimator, posterior.config, posterior.metadata, source=str(out))
    else:
        if out.exists() and any(out.iterdir()):
            raise AdaptationError(f"'{out}' exists and is not empty; pass --resume to continue an adaptation "
                                  "there, or choose a new --out")
        posterior = AmortizedPosterior.load(source)
        estimator = posterior.estimator
    if network_kinds(posterior.network)[1] != "CouplingFlow":
        raise AdaptationError("adaptation needs the network's density of its own draws: a CouplingFlow "
                              f"network, not a {network_kinds(posterior.network)[1]}")
    posterior.check(study, model=model, design=design)
    data_id = fingerprint(study, design)
    if resume and state["data"] != data_id:
        raise AdaptationError(f"'{out}' was adapted on other data or settings; resume with the same data and "
                              "settings, or choose a new --out")
    adaptation = _Adaptation(posterior, study, design, settings)
    seed = int(settings["seed"])
    if resume:
        held = np.flatnonzero(np.isin(study.participant.astype(str), state["held_out"]))
        adapted = np.setdiff1d(np.arange(study.n_participants), held)
    else:
        adapted, held = held_out_split(study.n_participants, settings["held_out"], seed)
    checked = held if held.size else adapted
    check_rng = np.random.default_rng([seed, 3])
    check_simulations = (adaptation.simulated(check_rng.choice(checked, settings["validation_simulations"]),
                                              seed=int(check_rng.integers(2**31))),
                         adaptation.like_training(settings["validation_simulations"], int(check_rng.integers(2**31)),
                                                  whole_range=True) if adaptation.training_simulations else None)
    weight = settings["simulation_weight"]
    if not resume:
        out.mkdir(parents=True, exist_ok=True)
        _atomic_write_text(out / CONFIG_FILE, (source / CONFIG_FILE).read_text())
        metadata = {**posterior.metadata, "adapted": {
            "from": str(checkpoint), "data": data_source, "participants": int(study.n_participants),
            "held_out": int(held.size), "design": design.to_dict(), "settings": settings}}
        _atomic_write_text(out / METADATA_FILE, json.dumps(metadata, indent=1, default=str))
        schedule = learning_rate_schedule({"learning_rate": settings["learning_rate"], "schedule": "cosine"},
                                          settings["epochs"] * settings["steps_per_epoch"])
        estimator.compile(optimizer=keras.optimizers.Adam(schedule, clipnorm=CLIP_NORM))
        estimator.optimizer.build(estimator.trainable_variables)
        losses = _check_losses(adaptation, checked, *check_simulations)
        state = {"epochs_done": 0, "best_epoch": 0, "seconds": 0.0, "backend": backend(), "data": data_id,
                 "settings": settings, "source": str(checkpoint),
                 "held_out": [str(p) for p in study.participant[held]],
                 "history": {"epoch": [0], **{key: [None] for key in STEP_LOSSES},
                             **{key: [value] for key, value in zip(CHECK_LOSSES, losses)},
                             "check_total": [_total(losses, weight)]}}
        save_estimator_atomically(estimator, out)
        _save_resume_point(estimator, out, 0)
        _atomic_write_text(out / STATE_FILE, json.dumps(state, indent=1))
        _write_log(out, state["history"])
    step = _train_step(adaptation, estimator.optimizer)
    steps, epochs = int(settings["steps_per_epoch"]), int(settings["epochs"])
    batch = min(int(settings["participants_per_step"]), adapted.size)
    history, start = state["history"], time.perf_counter()
    first = state["epochs_done"]
    if progress and first == 0:
        print(f"before adaptation: {_losses_line(history, 0)} ("
              + (f"{held.size} participants held out" if held.size else "none held out: the epoch is picked on "
                 "the adapted participants' own losses") + ")", flush=True)
    for epoch in range(first + 1, epochs + 1):
        epoch_start, sums = time.perf_counter(), np.zeros(3)
        for i in range(steps):
            rng = np.random.default_rng([seed, (epoch - 1) * steps + i])
            participants = rng.choice(adapted, batch, replace=False)
            inputs = adaptation.self_consistency_inputs(participants, int(rng.integers(2**31)))
            simulations = adaptation.simulated(rng.choice(adapted, adaptation.simulations), int(rng.integers(2**31)))
            like_training = (adaptation.like_training(adaptation.training_simulations, int(rng.integers(2**31)))
                             if adaptation.training_simulations else {})
            losses = np.array([float(x) for x in step(inputs, simulations, like_training)])
            if not np.all(np.isfinite(losses)):
                raise AdaptationError(f"non-finite loss ({dict(zip(STEP_LOSSES, losses))}) at epoch {epoch}, step "
                                      f"{i + 1}; the last complete checkpoint in {out} is left untouched")
            sums += losses
        checked_losses = _check_losses(adaptation, checked, *check_simulations)
        for key, value in (("epoch", epoch), *zip(STEP_LOSSES, (sums / steps).tolist()),
                           *zip(CHECK_LOSSES, checked_losses), ("check_total", _total(checked_losses, weight))):
            history[key].append(value)
        if history["check_total"][-1] < history["check_total"][state["best_epoch"]]:
            state["best_epoch"] = epoch
            save_estimator_atomically(estimator, out)
        _save_resume_point(estimator, out, epoch)
        state["epochs_done"] = epoch
        state["seconds"] += time.perf_counter() - epoch_start
        _write_log(out, history)
        _atomic_write_text(out / STATE_FILE, json.dumps(state, indent=1))
        for old in out.glob("resume-*.keras"):
            if old.name != f"resume-{epoch}.keras":
                old.unlink()
        if progress:
            elapsed = time.perf_counter() - start
            print(f"epoch {epoch}/{epochs}: {_losses_line(history, epoch)}"
                  + (" (best so far)" if state["best_epoch"] == epoch else "")
                  + f"; {_minutes(elapsed)} in this run, about "
                  f"{_minutes(elapsed / (epoch - first) * (epochs - epoch))} left", flush=True)
    if not (out / "ood_reference.npz").is_file():
        AmortizedPosterior.load(out).write_ood_reference(out)
    return state

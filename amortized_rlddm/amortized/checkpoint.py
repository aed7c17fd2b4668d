"""Checkpoint directories: their files, the shipped networks by name, and loading with checks.

A checkpoint is a directory written by `rlddm train`: the Keras estimator (``model.keras``),
the config it was trained with (``config.yaml``), what the package recorded about the run
(``metadata.json``) and, once training has finished, the out-of-distribution reference
(``ood_reference.npz``). Loading refuses a missing or damaged file, a checkpoint written by
a package version whose networks read data differently, and files that do not belong
together.
"""

import json
import shutil
import zipfile
from pathlib import Path

import keras
import yaml

from .. import __version__
from ..model.config import MODELS, Config, config_from_dict
from ..model.priors import choice_only
from ..resources import path_or_shipped, shipped_checkpoints
from .networks import network_kinds

MODEL_FILE = "model.keras"
STATE_FILE = "state.json"
METADATA_FILE = "metadata.json"
CONFIG_FILE = "config.yaml"
LOG_FILE = "training_log.csv"
LOSS_PLOT = "loss.png"
OOD_REFERENCE_FILE = "ood_reference.npz"
# Package versions (major.minor) whose checkpoints this version reads: 0.4 moved modules but
# packs data and maps parameters exactly as 0.3 did.
READABLE_VERSIONS = ("0.3", "0.4")


class InferenceError(ValueError):
    """Data, a checkpoint or a request the network cannot answer faithfully."""


def resolve_checkpoint(checkpoint: str | Path) -> Path:
    """The directory of a checkpoint given as a path or as a shipped network's name.

    Parameters
    ----------
    checkpoint
        An existing checkpoint directory, or the name of a network shipped with the package
        (``"default"``); an existing directory of that name wins.

    Returns
    -------
    Path
        The checkpoint directory.
    """
    shipped = shipped_checkpoints()
    found = path_or_shipped(checkpoint, shipped, Path.is_dir)
    if found is None:
        raise InferenceError(f"'{checkpoint}' is neither a checkpoint directory nor a shipped network "
                             f"(shipped: {', '.join(sorted(shipped)) or 'none'})")
    return found


def checkpoint_for_model(checkpoint: str | Path, model: str | None) -> str | Path:
    """The shipped network of `model` in the family `checkpoint` names: a shipped network
    "NAME" (single-rate) has its dual-rate sibling "NAME-dual", so ``--checkpoint general
    --model dual`` picks ``general-dual`` and the reverse; a choice-only model picks the
    network of its name (``--model softmax``: ``softmax``). Anything else is returned as is
    (a wrong model is then refused by inference)."""
    shipped = shipped_checkpoints()
    name = str(checkpoint)
    if model is None or Path(name).is_dir() or name not in shipped:
        return checkpoint
    base = name.removesuffix("-dual")
    wanted = model if choice_only(MODELS[model]) else f"{base}-dual" if model == "dual" else base
    return wanted if wanted in shipped else checkpoint


def canonical(x):
    """`x` as JSON reads it back: tuples and lists compare equal."""
    return json.loads(json.dumps(x))


def check_consistency(path, config, network, design, metadata, estimator):
    """Refuse a config.yaml that does not belong to the saved networks: it decides the
    packing, the priors and the parameter transforms, so a mismatch would be silent."""
    expected = {"model": config.model, "parameters": list(config.parameter_names),
                "features": list(network["features"]), "n_trials": list(network["n_trials"]),
                "t0_upper": network["t0_upper"], "conditions": list(network["conditions"]),
                "design": design.to_dict(), "priors": config.priors.to_dict()}
    for key, value in expected.items():
        if key in metadata and canonical(metadata[key]) != canonical(value):
            raise InferenceError(f"'{path}': {CONFIG_FILE} says {key} = {value} but the network was trained "
                                 f"with {metadata[key]} ({METADATA_FILE}); the files do not belong together")
    kinds = dict(zip(("summary", "inference"), network_kinds(network)))
    for section, net in (("summary", estimator.summary_network), ("inference", estimator.inference_network)):
        if type(net).__name__ != kinds[section]:
            raise InferenceError(f"'{path}': {CONFIG_FILE} asks for a {kinds[section]} {section} network but "
                                 f"the saved one is a {type(net).__name__}; the files do not belong together")
        saved = net.get_config()
        for key, value in (network.get(section) or {}).items():
            if key in saved and canonical(saved[key]) != canonical(value):
                raise InferenceError(f"'{path}': {CONFIG_FILE} sets network.{section}.{key} = {value} but "
                                     f"the saved network has {saved[key]}; the files do not belong together")


def read_checkpoint(path: Path) -> tuple[keras.Model, Config, dict]:
    """The estimator, config and metadata of a checkpoint directory, each file checked.

    Refused with an InferenceError: a missing or damaged file, or a checkpoint written by a
    package version outside READABLE_VERSIONS.
    """
    for name in (MODEL_FILE, CONFIG_FILE, METADATA_FILE):
        if not (path / name).is_file():
            raise InferenceError(f"'{path}' is not a complete checkpoint: {name} is missing")
    try:
        metadata = json.loads((path / METADATA_FILE).read_text())
        config = config_from_dict(yaml.safe_load((path / CONFIG_FILE).read_text()), source=str(path / CONFIG_FILE))
    except (ValueError, yaml.YAMLError) as err:
        raise InferenceError(f"'{path}': damaged {METADATA_FILE} or {CONFIG_FILE}: {err}") from None
    saved_version = str(metadata.get("package_version"))
    if ".".join(saved_version.split(".")[:2]) not in READABLE_VERSIONS:
        raise InferenceError(f"'{path}' was written by amortized_rlddm {saved_version}; this is "
                             f"{__version__}, which reads checkpoints of versions {', '.join(READABLE_VERSIONS)} "
                             "only, because other versions' networks may read data differently. Retrain it "
                             "with this version (rlddm train) or install the version it was made with")
    try:
        with zipfile.ZipFile(path / MODEL_FILE) as archive:
            broken = archive.testzip()
        if broken is not None:
            raise zipfile.BadZipFile(f"corrupt member {broken}")
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise InferenceError(f"'{path / MODEL_FILE}' is damaged or truncated ({err}); restore it "
                             "or retrain") from None
    try:
        estimator = keras.saving.load_model(path / MODEL_FILE, compile=False)  # inference needs no optimizer
    except (ValueError, TypeError, KeyError) as err:
        raise InferenceError(f"'{path / MODEL_FILE}' does not match its config or this package: "
                             f"{str(err)[:300]}") from None
    return estimator, config, metadata


def export_checkpoint(source: str | Path, out: str | Path) -> Path:
    """Write an inference-only copy of a finished checkpoint: the networks without the
    optimizer's state (a third of the size of a training checkpoint), with the config,
    metadata, OOD reference, training log and loss plot. Its state.json records the training
    (epochs, time, losses) and where it came from; it cannot be resumed.

    Parameters
    ----------
    source
        A checkpoint directory whose training has finished (it holds the OOD reference).
    out
        The new checkpoint directory; must not exist yet.

    Returns
    -------
    Path
        `out`.
    """
    source, out = resolve_checkpoint(source), Path(out)
    if not (source / OOD_REFERENCE_FILE).is_file():
        raise InferenceError(f"'{source}' has no {OOD_REFERENCE_FILE}: its training has not finished "
                             "(rlddm train writes it at the end); finish it before exporting")
    if out.exists():
        raise InferenceError(f"'{out}' exists already; choose a new directory")
    estimator, _, _ = read_checkpoint(source)
    out.mkdir(parents=True)
    estimator.save(out / MODEL_FILE)
    for name in (CONFIG_FILE, METADATA_FILE, OOD_REFERENCE_FILE, LOG_FILE, LOSS_PLOT):
        if (source / name).is_file():
            shutil.copy2(source / name, out / name)
    state = json.loads((source / STATE_FILE).read_text())
    state = {k: v for k, v in state.items() if k != "seed_generator_states"} | {"exported_from": str(source)}
    (out / STATE_FILE).write_text(json.dumps(state, indent=1))
    return out

"""Amortized inference: load a trained network once, then posteriors for any DataFrame or
CSV in milliseconds (`rlddm infer`).

Sampling runs one compiled function (jax.jit or tf.function) per chunk of participants:
summary network -> conditions -> inverse coupling flow -> un-standardize, with the base
draws taken from a seeded NumPy generator, so a seed fixes the draws. The draws are mapped
back from the unbounded space in float64, so every draw lies inside the prior's support
(and, by default, every t0 draw below the participant's fastest response).
The posterior is an xarray DataTree with a `posterior` group (chain, draw, participant),
as ArviZ >= 1 reads it, and a `data_checks` group flagging participants whose data look
unlike anything the network was trained on (see :meth:`AmortizedPosterior.data_checks`).
"""

import json
import math
import zipfile
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import xarray as xr
import yaml

from . import __version__
from .config import config_from_dict
from .data_io import read_study
from .networks import backend, network_kinds, pack, parameter_space
from .simulator import simulate
from .study import Study
from .training import CONFIG_FILE, METADATA_FILE, MODEL_FILE, training_design, training_settings


CHUNK = 256  # participants per compiled call; a fixed shape avoids recompiling
HDI_PROB = 0.94
OOD_REFERENCE_FILE = "ood_reference.npz"
# Out-of-distribution check: reference simulations and the quantiles that set its thresholds.
OOD_REFERENCE_DATASETS = 2000
OOD_DISTANCE_QUANTILE = 0.99  # designed false-alarm rate of the summary-distance check: 1%
OOD_RT_QUANTILE = 0.9999


def _check_consistency(path, config, metadata, estimator):
    """Refuse a config.yaml that does not belong to the saved networks: it decides the
    packing, the priors and the parameter transforms, so a mismatch would be silent."""
    network, _ = training_settings(config)
    expected = {"model": config.model, "parameters": list(config.parameter_names),
                "features": list(network["features"]), "n_trials": list(network["n_trials"]),
                "t0_upper": network["t0_upper"], "conditions": list(network["conditions"]),
                "design": training_design(config, network).to_dict(), "priors": config.priors.to_dict()}

    def canonical(x):  # tuples and lists compare equal
        return json.loads(json.dumps(x))

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


def _chunks(n):
    """(start, stop, indices) per compiled call: chunks of CHUNK participants, the last one
    padded by repeating its final participant so every call has the same shape."""
    size = min(n, CHUNK)
    for start in range(0, n, size):
        stop = min(start + size, n)
        yield start, stop, np.arange(start, start + size).clip(max=stop - 1)


class InferenceError(ValueError):
    """Data or a request the network cannot answer faithfully."""


class AmortizedPosterior:
    """A trained estimator with its config: `AmortizedPosterior.load(dir).infer(data)`."""

    def __init__(self, estimator, config, metadata=None, source="estimator"):
        self.estimator, self.config, self.source = estimator, config, source
        self.network, _ = training_settings(config)
        self.design = training_design(config, self.network)
        self.metadata = metadata or {}
        self.converted_from = None
        self._compiled = self._compile()
        self._reference = None

    @classmethod
    def load(cls, checkpoint_dir):
        """Load a checkpoint directory written by `rlddm train` (no network access needed).

        Refused with an InferenceError: a missing or damaged file, a checkpoint written by
        another version of the package, weights that do not fit the saved config. A
        checkpoint trained on the other Keras backend is loaded (the saved weights are
        backend-neutral; tested to give the same draws) and the fact recorded.
        """
        path = Path(checkpoint_dir)
        for name in (MODEL_FILE, CONFIG_FILE, METADATA_FILE):
            if not (path / name).is_file():
                raise InferenceError(f"'{path}' is not a complete checkpoint: {name} is missing")
        try:
            metadata = json.loads((path / METADATA_FILE).read_text())
            config = config_from_dict(yaml.safe_load((path / CONFIG_FILE).read_text()),
                                      source=str(path / CONFIG_FILE))
        except (ValueError, yaml.YAMLError) as err:
            raise InferenceError(f"'{path}': damaged {METADATA_FILE} or {CONFIG_FILE}: {err}") from None
        saved_version = str(metadata.get("package_version"))
        if saved_version.split(".")[:2] != __version__.split(".")[:2]:
            raise InferenceError(f"'{path}' was written by amortized_rlddm {saved_version}; this is "
                                 f"{__version__}, whose networks may read data differently. Retrain it "
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
            estimator = keras.saving.load_model(path / MODEL_FILE)
        except (ValueError, TypeError, KeyError) as err:
            raise InferenceError(f"'{path / MODEL_FILE}' does not match its config or this package: "
                                 f"{str(err)[:300]}") from None
        _check_consistency(path, config, metadata, estimator)
        posterior = cls(estimator, config, metadata, source=str(path))
        posterior.converted_from = metadata.get("backend") if metadata.get("backend") != backend() else None
        if (path / OOD_REFERENCE_FILE).is_file():
            with np.load(path / OOD_REFERENCE_FILE) as ref:
                posterior._reference = {k: ref[k] if ref[k].ndim else float(ref[k]) for k in ref.files}
        return posterior

    def write_ood_reference(self, checkpoint_dir):
        """Store the out-of-distribution reference in the checkpoint so loading needs no
        reference simulations (`rlddm train` calls this when training ends)."""
        path = Path(checkpoint_dir) / OOD_REFERENCE_FILE
        np.savez(f"{path}.tmp.npz", **self._ood_reference())
        Path(f"{path}.tmp.npz").replace(path)

    def design_with_trials(self, n_trials):
        """The network's design with n_trials trials per participant, for simulating at one
        count of the range the network serves; a count outside that range is refused."""
        lo, hi = self.design.min_trials, self.design.max_trials
        if not lo <= n_trials <= hi:
            raise ValueError(f"trial count {n_trials} is outside the {lo}-{hi} this network serves")
        return replace(self.design, n_trials=int(n_trials))

    @property
    def parameter_names(self):
        return self.config.parameter_names

    def _compile(self):
        est = self.estimator

        def unbounded_draws(x, mask, condition, base):
            summary = est.summary_network(x, mask=mask, training=False)
            conditions = keras.ops.concatenate([condition, summary], axis=-1)
            draws_per = keras.ops.shape(base)[0] // keras.ops.shape(x)[0]
            conditions = keras.ops.repeat(conditions, draws_per, axis=0)
            theta = est.inference_network(base, conditions=conditions, inverse=True, training=False)
            theta = est.standardizer.maybe_standardize(theta, key="inference_variables", stage="inference",
                                                       forward=False)
            return theta, summary  # the summaries serve the data checks: one network pass

        def summaries(x, mask):
            return est.summary_network(x, mask=mask, training=False)

        if backend() == "jax":
            import jax

            self._summaries = jax.jit(summaries)
            return jax.jit(unbounded_draws)
        if backend() == "tensorflow":
            import tensorflow as tf

            # XLA-compiled (jit_compile): markedly faster on CPU (README, inference speed)
            self._summaries = tf.function(summaries, reduce_retracing=True, autograph=False, jit_compile=True)
            return tf.function(unbounded_draws, reduce_retracing=True, autograph=False, jit_compile=True)
        self._summaries = summaries
        return unbounded_draws

    def check(self, study: Study, model=None, deadline="design"):
        """Refuse data and requests the network was not trained for."""
        if model is not None and model != self.config.model:
            raise InferenceError(f"a {model}-rate model was requested but this network is "
                                 f"{self.config.model}-rate (parameters {list(self.parameter_names)})")
        if deadline != "design" and deadline != self.design.deadline:
            raise InferenceError(f"the data's response deadline ({deadline}) differs from the one the "
                                 f"network was trained with ({self.design.deadline}); train a network "
                                 "for this design")
        lo, hi = self.design.min_trials, self.design.max_trials
        bad = np.flatnonzero((study.n_trials < lo) | (study.n_trials > hi))
        if bad.size:
            i = bad[0]
            raise InferenceError(f"participant {study.participant[i]!r} has {study.n_trials[i]} trials; "
                                 f"this network serves {lo} to {hi} trials")
        if self.design.deadline is None and study.missing.any():
            i = int(np.flatnonzero(study.missing.any(1))[0])
            raise InferenceError(f"participant {study.participant[i]!r} has missing responses, but this "
                                 "network was trained on a design without a response deadline and has "
                                 "never seen one; train a network whose design sets the deadline")
        blocks = study.block.max(1) + 1
        bad = np.flatnonzero(blocks != self.design.n_blocks)
        if bad.size:
            i = bad[0]
            raise InferenceError(f"participant {study.participant[i]!r} has {blocks[i]} block(s); this "
                                 f"network was trained on designs with {self.design.n_blocks}")

    def summary_statistics(self, study: Study):
        """The summary network's output for each participant, (participants, summary_dim)."""
        data = pack(study, self.network, self.design, self.design.max_trials)
        parts = [np.asarray(self._summaries(data["summary_variables"][idx], data["summary_mask"][idx]))[: stop - start]
                 for start, stop, idx in _chunks(study.n_participants)]
        return np.concatenate(parts).astype(np.float64)

    def _ood_reference(self):
        """Reference summaries of simulated data (fixed seed), their mean and precision, and
        the thresholds of the checks, computed once per loaded network."""
        if self._reference is None:
            rng = np.random.default_rng(20261122)
            params = self.config.priors.sample(rng, OOD_REFERENCE_DATASETS)
            study = simulate(params, self.design, seed=int(rng.integers(2**63)))
            s = self.summary_statistics(study)
            mean = s.mean(0)
            cov = np.cov(s, rowvar=False) + 1e-6 * np.eye(s.shape[1])
            precision = np.linalg.inv(cov)
            d2 = np.einsum("ij,jk,ik->i", s - mean, precision, s - mean)
            self._reference = {"mean": mean, "precision": precision,
                               "distance_threshold": float(np.quantile(d2, OOD_DISTANCE_QUANTILE)),
                               "rt_max": float(np.nanquantile(study.rt, OOD_RT_QUANTILE))}
        return self._reference

    def data_checks(self, study: Study, summaries=None):
        """Per participant: squared Mahalanobis distance of its summary statistics to those
        of simulations from the priors (as in BayesFlow's summary-space misspecification
        check), and a flag with the reasons when the data look unlike the training data:
        the distance beyond the 99th percentile of simulated data, RTs faster than any
        non-decision time the prior allows, or RTs slower than 99.99% of simulated RTs.
        summaries: the study's summary statistics when already computed."""
        ref = self._ood_reference()
        s = (self.summary_statistics(study) if summaries is None else summaries) - ref["mean"]
        d2 = np.einsum("ij,jk,ik->i", s, ref["precision"], s)
        t0_lower = self.config.priors.support("t0")[0]
        finite = np.isfinite(study.rt)
        fastest = np.where(finite, study.rt, np.inf).min(axis=1)
        slowest = np.where(finite, study.rt, -np.inf).max(axis=1)
        reasons = np.full(study.n_participants, "", dtype=object)
        for i in np.flatnonzero((d2 > ref["distance_threshold"]) | (fastest <= t0_lower) | (slowest > ref["rt_max"])):
            why = []
            if d2[i] > ref["distance_threshold"]:
                why.append("summary statistics far from simulated data")
            if fastest[i] <= t0_lower:
                why.append(f"RT {fastest[i]:.3f} s not above the smallest non-decision time the prior allows")
            if slowest[i] > ref["rt_max"]:
                why.append(f"RT {slowest[i]:.2f} s slower than 99.99% of simulated RTs")
            reasons[i] = "; ".join(why)
        return xr.Dataset({"summary_distance": (("participant",), d2),
                           "out_of_distribution": (("participant",), reasons != ""),
                           "reasons": (("participant",), reasons.astype(str))},
                          attrs={"distance_threshold": ref["distance_threshold"],
                                 "distance_quantile": OOD_DISTANCE_QUANTILE})

    def sample_unbounded(self, study: Study, draws, seed=None):
        """Draws in the unbounded space, shape (participants, draws, parameters)."""
        return self._sample(study, draws, seed)[0]

    def _sample(self, study: Study, draws, seed):
        """Unbounded draws (participants, draws, parameters) and summary statistics
        (participants, summary_dim) from one pass of the compiled sampler."""
        rng = np.random.default_rng(seed)
        data = pack(study, self.network, self.design, self.design.max_trials)
        n, p = study.n_participants, len(self.parameter_names)
        base = rng.standard_normal((n, draws, p)).astype(np.float32)
        out = np.empty((n, draws, p), np.float32)
        summaries = []
        for start, stop, idx in _chunks(n):
            y, summary = self._compiled(data["summary_variables"][idx], data["summary_mask"][idx],
                                        data["inference_conditions"][idx], base[idx].reshape(len(idx) * draws, p))
            out[start:stop] = np.asarray(y).reshape(len(idx), draws, p)[: stop - start]
            summaries.append(np.asarray(summary)[: stop - start])
        return out, np.concatenate(summaries).astype(np.float64)

    def infer(self, data, draws=1000, seed=None, convention="rlddm", model=None, deadline="design"):
        """Posterior of each participant of a Study, DataFrame or CSV path, as a DataTree."""
        study = data if isinstance(data, Study) else read_study(data, convention=convention)
        self.check(study, model=model, deadline=deadline)
        y, summaries = self._sample(study, draws, seed)
        if not np.all(np.isfinite(y)):
            raise InferenceError("the network produced non-finite draws; the checkpoint may be damaged")
        values = parameter_space(self.config.priors, study, self.network["t0_upper"]).inverse(y)
        participants = np.asarray([str(p) for p in study.participant])
        posterior = xr.Dataset(
            {name: (("chain", "draw", "participant"), v.T[None, :, :]) for name, v in values.items()},
            coords={"chain": [0], "draw": np.arange(draws), "participant": participants})
        posterior.attrs.update({"inference_library": "amortized_rlddm / BayesFlow", "checkpoint": self.source,
                                "backend": backend(), "model": self.config.model})
        if self.converted_from:
            posterior.attrs["trained_on_backend"] = self.converted_from
        checks = self.data_checks(study, summaries).assign_coords(participant=participants)
        return xr.DataTree.from_dict({"posterior": posterior, "data_checks": checks})


def hdi(draws, prob=HDI_PROB):
    """Shortest interval holding `prob` of the draws along the last axis: (lower, upper)."""
    x = np.sort(draws, axis=-1)
    n = x.shape[-1]
    k = int(math.ceil(prob * n))
    widths = x[..., k - 1:] - x[..., : n - k + 1]
    start = np.argmin(widths, axis=-1)[..., None]
    return np.take_along_axis(x, start, -1)[..., 0], np.take_along_axis(x, start + k - 1, -1)[..., 0]


def summarize(tree, prob=HDI_PROB):
    """One row per participant and parameter: mean, sd and the `prob` HDI."""
    post = tree["posterior"].to_dataset()
    rows = []
    pct = int(round(100 * prob))
    for name in post.data_vars:
        values = post[name].transpose("participant", "chain", "draw").values
        values = values.reshape(values.shape[0], -1)
        lo, hi = hdi(values, prob)
        rows.append(pd.DataFrame({"participant": post["participant"].values, "parameter": name,
                                  "mean": values.mean(1), "sd": values.std(1, ddof=1),
                                  f"hdi_{pct}_lower": lo, f"hdi_{pct}_upper": hi}))
    table = pd.concat(rows, ignore_index=True)
    if "data_checks" in tree.children:
        checks = tree["data_checks"].to_dataset()
        flags = pd.DataFrame({"participant": checks["participant"].values,
                              "out_of_distribution": checks["out_of_distribution"].values,
                              "ood_reasons": checks["reasons"].values})
        table = table.merge(flags, on="participant", how="left")
    return table


def save_posterior(tree, path):
    """Write the DataTree as NetCDF (readable by xarray.open_datatree and ArviZ >= 1)."""
    tree.to_netcdf(path, engine="h5netcdf")

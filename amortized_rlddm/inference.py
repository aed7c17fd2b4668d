"""Amortized inference: load a trained network once, then posteriors for any DataFrame or
CSV in milliseconds (`rlddm infer`).

Sampling runs one compiled function (jax.jit or tf.function) per chunk of participants:
summary network -> conditions -> inverse coupling flow -> un-standardize, with the base
draws taken from a seeded NumPy generator, so a seed fixes the draws. The draws are mapped
back from the unbounded space in float64, so every draw lies inside the prior's support.
The posterior is an xarray DataTree with a `posterior` group (chain, draw, participant),
as ArviZ >= 1 reads it.
"""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
import yaml

from .config import config_from_dict
from .data_io import read_study
from .networks import ParameterSpace, backend, pack
from .study import Study
from .training import CONFIG_FILE, METADATA_FILE, MODEL_FILE, training_design, training_settings

import keras  # noqa: E402  (after .networks has chosen the backend)

CHUNK = 256  # participants per compiled call; a fixed shape avoids recompiling
HDI_PROB = 0.94


class InferenceError(ValueError):
    """Data or a request the network cannot answer faithfully."""


class AmortizedPosterior:
    """A trained estimator with its config: `AmortizedPosterior.load(dir).infer(data)`."""

    def __init__(self, estimator, config, metadata=None, source="estimator"):
        self.estimator, self.config, self.source = estimator, config, source
        self.network, _ = training_settings(config)
        self.design = training_design(config, self.network)
        self.space = ParameterSpace(config.priors)
        self.metadata = metadata or {}
        self._compiled = self._compile()

    @classmethod
    def load(cls, checkpoint_dir):
        """Load a checkpoint directory written by `rlddm train` (no network access needed)."""
        path = Path(checkpoint_dir)
        for name in (MODEL_FILE, CONFIG_FILE, METADATA_FILE):
            if not (path / name).is_file():
                raise InferenceError(f"'{path}' is not a complete checkpoint: {name} is missing")
        config = config_from_dict(yaml.safe_load((path / CONFIG_FILE).read_text()), source=str(path / CONFIG_FILE))
        metadata = json.loads((path / METADATA_FILE).read_text())
        estimator = keras.saving.load_model(path / MODEL_FILE)
        return cls(estimator, config, metadata, source=str(path))

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
            return est.standardizer.maybe_standardize(theta, key="inference_variables", stage="inference",
                                                      forward=False)

        if backend() == "jax":
            import jax

            return jax.jit(unbounded_draws)
        if backend() == "tensorflow":
            import tensorflow as tf

            return tf.function(unbounded_draws, reduce_retracing=True)
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

    def sample_unbounded(self, study: Study, draws, seed=None):
        """Draws in the unbounded space, shape (participants, draws, parameters)."""
        rng = np.random.default_rng(seed)
        data = pack(study, self.network["features"], self.design, self.design.max_trials)
        n, p = study.n_participants, len(self.parameter_names)
        base = rng.standard_normal((n, draws, p)).astype(np.float32)
        chunk = min(CHUNK, n) if n < CHUNK else CHUNK
        out = np.empty((n, draws, p), np.float32)
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            idx = np.arange(start, start + chunk).clip(max=stop - 1)  # pad the last chunk by repetition
            y = self._compiled(data["summary_variables"][idx], data["summary_mask"][idx],
                               data["inference_conditions"][idx], base[idx].reshape(chunk * draws, p))
            out[start:stop] = np.asarray(y).reshape(chunk, draws, p)[: stop - start]
        return out

    def infer(self, data, draws=1000, seed=None, convention="rlddm", model=None, deadline="design"):
        """Posterior of each participant of a Study, DataFrame or CSV path, as a DataTree."""
        study = data if isinstance(data, Study) else read_study(data, convention=convention)
        self.check(study, model=model, deadline=deadline)
        y = self.sample_unbounded(study, draws, seed)
        if not np.all(np.isfinite(y)):
            raise InferenceError("the network produced non-finite draws; the checkpoint may be damaged")
        values = self.space.inverse(y)
        participants = np.asarray([str(p) for p in study.participant])
        posterior = xr.Dataset(
            {name: (("chain", "draw", "participant"), v.T[None, :, :]) for name, v in values.items()},
            coords={"chain": [0], "draw": np.arange(draws), "participant": participants})
        posterior.attrs.update({"inference_library": "amortized_rlddm / BayesFlow", "checkpoint": self.source,
                                "backend": backend(), "model": self.config.model})
        return xr.DataTree.from_dict({"posterior": posterior})


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
    return pd.concat(rows, ignore_index=True)


def save_posterior(tree, path):
    """Write the DataTree as NetCDF (readable by xarray.open_datatree and ArviZ >= 1)."""
    tree.to_netcdf(path, engine="h5netcdf")

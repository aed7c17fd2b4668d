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

from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import xarray as xr

from ..data.io import read_study
from ..data.study import Study
from ..model.config import Config
from ..model.task import TaskDesign
from .checkpoint import OOD_REFERENCE_FILE, InferenceError, check_consistency, read_checkpoint, resolve_checkpoint
from .data_checks import ood_flags, ood_reference, refuse_unserved
from .networks import backend
from .packing import pack, parameter_space
from .training import training_design, training_settings

CHUNK = 256  # participants per compiled call; a fixed shape avoids recompiling


def _chunks(n):
    """(start, stop, indices) per compiled call: chunks of CHUNK participants, the last one
    padded by repeating its final participant so every call has the same shape."""
    size = min(n, CHUNK)
    for start in range(0, n, size):
        stop = min(start + size, n)
        yield start, stop, np.arange(start, start + size).clip(max=stop - 1)


class AmortizedPosterior:
    """A trained network with its config: load once, then infer any number of participants.

    Parameters
    ----------
    estimator
        A trained BayesFlow estimator.
    config
        The configuration it was trained with.
    metadata
        What training recorded (``metadata.json``).
    source
        Where it came from, recorded in the posterior's attributes.

    Examples
    --------
    >>> posterior = AmortizedPosterior.load("default")          # doctest: +SKIP
    >>> tree = posterior.infer("data.csv", draws=1000, seed=0)  # doctest: +SKIP
    """

    def __init__(self, estimator: keras.Model, config: Config, metadata: dict | None = None,
                 source: str = "estimator"):
        self.estimator, self.config, self.source = estimator, config, source
        self.network, _ = training_settings(config)
        self.design = training_design(config, self.network)
        self.metadata = metadata or {}
        self.converted_from = None
        self._compiled = self._compile()
        self._reference = None

    @classmethod
    def load(cls, checkpoint: str | Path = "default") -> "AmortizedPosterior":
        """Load a shipped network by name or a checkpoint directory written by `rlddm train`.

        Parameters
        ----------
        checkpoint
            ``"default"`` (the shipped network) or a checkpoint directory.

        Returns
        -------
        AmortizedPosterior

        Raises
        ------
        InferenceError
            A missing or damaged file, a checkpoint written by a package version whose
            networks read data differently, or weights that do not fit the saved config.

        Notes
        -----
        A checkpoint trained on the other Keras backend is loaded (the saved weights are
        backend-neutral; tested to give the same draws) and the fact recorded.
        """
        path = resolve_checkpoint(checkpoint)
        estimator, config, metadata = read_checkpoint(path)
        network, _ = training_settings(config)
        check_consistency(path, config, network, training_design(config, network), metadata, estimator)
        posterior = cls(estimator, config, metadata, source=str(path))
        posterior.converted_from = metadata.get("backend") if metadata.get("backend") != backend() else None
        if (path / OOD_REFERENCE_FILE).is_file():
            with np.load(path / OOD_REFERENCE_FILE) as ref:
                posterior._reference = {k: ref[k] if ref[k].ndim else float(ref[k]) for k in ref.files}
        return posterior

    def write_ood_reference(self, checkpoint_dir: str | Path) -> None:
        """Store the out-of-distribution reference in the checkpoint so loading needs no
        reference simulations (`rlddm train` calls this when training ends)."""
        path = Path(checkpoint_dir) / OOD_REFERENCE_FILE
        np.savez(f"{path}.tmp.npz", **self._ood_reference())
        Path(f"{path}.tmp.npz").replace(path)

    def design_with_trials(self, n_trials: int) -> TaskDesign:
        """The network's design with n_trials trials per participant, for simulating at one
        count of the range the network serves; a count outside that range is refused."""
        lo, hi = self.design.min_trials, self.design.max_trials
        if not lo <= n_trials <= hi:
            raise ValueError(f"trial count {n_trials} is outside the {lo}-{hi} this network serves")
        return replace(self.design, n_trials=int(n_trials))

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """The model's parameters, in the order of the draws."""
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

            # XLA-compiled (jit_compile): markedly faster on CPU (docs/benchmarks.md)
            self._summaries = tf.function(summaries, reduce_retracing=True, autograph=False, jit_compile=True)
            return tf.function(unbounded_draws, reduce_retracing=True, autograph=False, jit_compile=True)
        self._summaries = summaries
        return unbounded_draws

    def check(self, study: Study, model: str | None = None, deadline="design") -> None:
        """Refuse data and requests the network was not trained for (an InferenceError)."""
        refuse_unserved(study, self.config, self.design, model=model, deadline=deadline)

    def summary_statistics(self, study: Study) -> np.ndarray:
        """The summary network's output for each participant, (participants, summary_dim)."""
        data = pack(study, self.network, self.design, self.design.max_trials)
        parts = [np.asarray(self._summaries(data["summary_variables"][idx], data["summary_mask"][idx]))[: stop - start]
                 for start, stop, idx in _chunks(study.n_participants)]
        return np.concatenate(parts).astype(np.float64)

    def _ood_reference(self):
        """The out-of-distribution reference, computed once per loaded network."""
        if self._reference is None:
            self._reference = ood_reference(self.summary_statistics, self.config, self.design)
        return self._reference

    def data_checks(self, study: Study, summaries: np.ndarray | None = None) -> xr.Dataset:
        """Per participant, whether the data look unlike the training simulations.

        Parameters
        ----------
        study
            The data.
        summaries
            The study's summary statistics when already computed.

        Returns
        -------
        xarray.Dataset
            ``summary_distance`` (squared Mahalanobis distance of the summary statistics to
            those of simulations from the priors), ``out_of_distribution`` and ``reasons``,
            per participant. A participant is flagged when the distance lies beyond the 99th
            percentile of simulated data, an RT is faster than any non-decision time the
            prior allows, or an RT is slower than 99.99% of simulated RTs.
        """
        s = self.summary_statistics(study) if summaries is None else summaries
        return ood_flags(study, s, self._ood_reference(), self.config)

    def sample_unbounded(self, study: Study, draws: int, seed: int | None = None) -> np.ndarray:
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

    def infer(self, data: Study | pd.DataFrame | str | Path, draws: int = 1000, seed: int | None = None,
              convention: str = "rlddm", model: str | None = None, deadline="design") -> xr.DataTree:
        """The posterior of every participant.

        Parameters
        ----------
        data
            A Study, a DataFrame or a CSV path in the layout `convention` names
            (see :func:`amortized_rlddm.read_study`).
        draws
            Posterior draws per participant.
        seed
            Seed of the base draws; the same seed gives the same draws.
        convention
            ``"rlddm"``, ``"hssm"`` or ``"hddm"`` (data given as a DataFrame or CSV).
        model
            ``"single"`` or ``"dual"``: refuse unless the network is this model.
        deadline
            The data's response deadline in seconds (or None); refused unless it is the
            network's. The default, ``"design"``, takes the network's.

        Returns
        -------
        xarray.DataTree
            ``posterior`` (dimensions chain, draw, participant; one variable per parameter,
            on its natural scale) and ``data_checks`` (see :meth:`data_checks`).

        Raises
        ------
        InferenceError
            Data the network was not trained for (trial count, blocks, missing responses,
            deadline, model).
        """
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

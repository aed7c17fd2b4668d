"""Amortized inference: load a trained network once, then posteriors for any DataFrame or
CSV in milliseconds (`rlddm infer`).

Sampling runs the estimator's compiled passes (:mod:`.passes`): summary network ->
conditions -> inverse coupling flow -> un-standardize, with the base draws taken from a
seeded NumPy generator, so a seed fixes the draws. The draws are mapped
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

from ..correction.correct import check_ratios, correct_draws
from ..correction.importance import (
    MIN_DRAWS,
    participant_loo,
    pointwise_elpd,
    pointwise_group,
)
from ..data.io import read_study
from ..data.study import Study
from ..model.config import Config
from ..model.family import DesignFamily
from ..model.priors import choice_only
from ..model.settings import with_settings
from ..model.target import ExactTarget
from ..model.task import DesignSettings, TaskDesign
from .checkpoint import OOD_REFERENCE_FILE, InferenceError, check_consistency, read_checkpoint, resolve_checkpoint
from .data_checks import ood_flags, ood_reference, refuse_unserved
from .misspecification import REPLICATES, MisspecificationCheck, misspecification_check
from .networks import backend, network_kinds
from .packing import pack, parameter_space
from .passes import NetworkPasses
from .training import training_design, training_settings

INITIAL_PROPOSALS = 2  # proposals per requested draw on a refined posterior's first pass
NUTS_CHAINS, NUTS_TUNE = 4, 1000  # the NUTS fallback's chains and tuning steps
NUTS_MIN_CHAIN_DRAWS = 250  # the fallback's shortest chain, so that its r-hat means something


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
        self.passes = NetworkPasses(estimator)
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
        posterior = cls(estimator, config, metadata, source=str(checkpoint))  # as the user named it
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

    @property
    def serves_family(self) -> bool:
        """Whether the network was trained over a family of designs (a general network)."""
        return isinstance(self.design, DesignFamily)

    def study_design(self, deadline="design", missing: str | None = None, q_init: float | None = None,
                     p_outlier: float | None = None, rt_max: float | None = None) -> TaskDesign:
        """The settings of a study's likelihood, as a TaskDesign: the network's own, with the
        options given replacing them (a network for one design then refuses any change).

        Parameters
        ----------
        deadline
            The response deadline in seconds, or None; ``"design"`` keeps the network's (a
            general network's: none).
        missing
            ``"deadline"`` or ``"ignorable"``: what missing responses are.
        q_init, p_outlier, rt_max
            Initial Q-values (the data's q_init column wins), the contaminant probability
            and the contaminants' RT range; None keeps the network's (a general network's:
            0.5, no contaminants).
        """
        try:
            return with_settings(self.base_design, deadline, missing, q_init, p_outlier, rt_max)
        except ValueError as err:
            raise InferenceError(str(err)) from None

    @property
    def base_design(self) -> TaskDesign:
        """The settings where a study states none: the network's design, or for a general
        network a design without a deadline, at q_init 0.5 and without contaminants."""
        return self.design if not self.serves_family else TaskDesign(n_trials=self.design.n_trials)

    def design_with_trials(self, n_trials: int) -> TaskDesign:
        """The network's design with n_trials trials per participant, for simulating at one
        count of the range the network serves; a count outside that range is refused."""
        if self.serves_family:
            raise InferenceError("this network serves a family of designs: name the design to simulate "
                                 "(amortized_rlddm.model.designs.NAMED_DESIGNS, or a TaskDesign)")
        lo, hi = self.design.min_trials, self.design.max_trials
        if not lo <= n_trials <= hi:
            raise ValueError(f"trial count {n_trials} is outside the {lo}-{hi} this network serves")
        return replace(self.design, n_trials=int(n_trials))

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """The model's parameters, in the order of the draws."""
        return self.config.parameter_names

    def check(self, study: Study, model: str | None = None, design: TaskDesign | None = None) -> None:
        """Refuse data and requests the network was not trained for (an InferenceError);
        `design`: the study's settings (default: :meth:`study_design`)."""
        refuse_unserved(study, self.config, self.design, design or self.study_design(), model=model)

    def summary_statistics(self, study: Study, design=None) -> np.ndarray:
        """The summary network's output for each participant, (participants, summary_dim).
        `design`: the study's settings (a TaskDesign or per-participant DesignSettings;
        default: :meth:`study_design`)."""
        return self.passes.conditions(self._pack(study, design))[0]

    def _pack(self, study, design=None):
        """The study as the networks read it, under `design` (default: :meth:`study_design`)."""
        return pack(study, self.network, design or self.study_design(), self.design.max_trials)

    def _ood_reference(self):
        """The out-of-distribution reference, computed once per loaded network."""
        if self._reference is None:
            self._reference = ood_reference(self.summary_statistics, self.config, self.design)
        return self._reference

    def data_checks(self, study: Study, summaries: np.ndarray | None = None,
                    design: TaskDesign | None = None) -> xr.Dataset:
        """Per participant, whether the data look unlike the training simulations.

        Parameters
        ----------
        study
            The data.
        summaries
            The study's summary statistics when already computed.
        design
            The study's settings (default: :meth:`study_design`).

        Returns
        -------
        xarray.Dataset
            ``summary_distance`` (squared Mahalanobis distance of the summary statistics to
            those of simulations from the priors), ``out_of_distribution`` and ``reasons``,
            per participant. A participant is flagged when the distance lies beyond the 99th
            percentile of simulated data, an RT is faster than any non-decision time the
            prior allows, or an RT is slower than 99.99% of simulated RTs.
        """
        s = self.summary_statistics(study, design) if summaries is None else summaries
        return ood_flags(study, s, self._ood_reference(), self.config)

    def misspecification(self, data, design: TaskDesign | None = None, replicates: int = REPLICATES,
                         seed: int = 0, convention: str = "auto") -> MisspecificationCheck:
        """Whether each participant's data, and the study's, are like simulations of the study's
        own design under the priors, in everything the flow is conditioned on
        (:mod:`~amortized_rlddm.amortized.misspecification`).

        Parameters
        ----------
        data
            A Study, DataFrame or CSV path, as for :meth:`infer`.
        design
            The study's settings (default: :meth:`study_design`).
        replicates
            Simulated participants per participant (p-values in steps of 1 / (replicates + 1)).
        seed
            Seeds the simulations.
        convention
            How to read a file, as for :meth:`infer`.

        Returns
        -------
        MisspecificationCheck
            Per participant ``distance``, ``p_value`` and ``unlike_training`` (p <= 0.01), and
            the study's maximum mean discrepancy to its replicates with its p-value.
        """
        study = self._readable(data, convention)
        design = design or self.study_design()
        self.check(study, design=design)

        def conditions(s, settings):
            return self.passes.conditions(self._pack(s, settings))[1].astype(np.float64)

        return misspecification_check(conditions, study, DesignSettings.of(design, study), self.config.priors,
                                      replicates=replicates, seed=seed)

    def _readable(self, data, convention="auto") -> Study:
        """The data as a Study, as this network reads it (a choice-only model without RTs)."""
        study = data if isinstance(data, Study) else read_study(data, convention=convention)
        if choice_only(self.parameter_names) and study.has_rt:
            study = replace(study, rt=np.full_like(study.rt, np.nan))
        return study

    def sample_unbounded(self, study: Study, draws: int, seed: int | None = None,
                         design: TaskDesign | None = None) -> np.ndarray:
        """Draws in the unbounded space, shape (participants, draws, parameters)."""
        return self._sample(study, draws, seed, design=design)[0]

    def _sample(self, study: Study, draws, seed, density=False, design=None, spread=1.0):
        """Unbounded draws (participants, draws, parameters), summary statistics
        (participants, summary_dim) and, with `density`, the draws' log density in the
        unbounded space (participants, draws), from one pass of the compiled sampler; `spread`
        widens the flow's latent normal (1: the network's own draws)."""
        rng = np.random.default_rng(seed)
        base = rng.standard_normal((study.n_participants, draws, len(self.parameter_names))).astype(np.float32)
        base *= np.float32(spread)
        return self.passes.draws(self._pack(study, design), base, density)

    def sample_with_density(self, study: Study, draws: int, seed: int | None = None,
                            design: TaskDesign | None = None) -> tuple[dict, np.ndarray]:
        """Draws on the parameters' own scale with their log density under the flow.

        Parameters
        ----------
        study
            The data.
        draws
            Draws per participant.
        seed
            Seed of the base draws.
        design
            The study's settings (default: :meth:`study_design`).

        Returns
        -------
        tuple
            name -> (participants, draws) values, and their (participants, draws) log density.
        """
        values, log_q, _ = self._draws(study, draws, seed, density=True, design=design)
        return values, log_q

    def unbounded_log_density(self, study: Study, y: np.ndarray, design: TaskDesign | None = None) -> np.ndarray:
        """The flow's log density of unbounded values y (participants, draws, parameters), each
        participant's under their own data: (participants, draws)."""
        return self.unbounded_density_function(study, design)(y, np.arange(study.n_participants))

    def unbounded_density_function(self, study: Study, design: TaskDesign | None = None):
        """The flow's log density in the unbounded space as a function of new values, for
        evaluating it at many points of a study's participants (the correction's adaptive
        rounds): the summaries are computed here, once, and each call runs the flow in
        blocks of :data:`~.passes.FLOW_BLOCK` rows, one compiled shape whatever the number of points.

        Returns
        -------
        callable
            ``log_flow(y, participants)``: unbounded values y (R, M, parameters) of the
            participants at indices `participants` (R of them) -> (R, M) log densities.
        """
        rows = self.passes.conditions(self._pack(study, design))[1]

        def log_flow(y: np.ndarray, participants) -> np.ndarray:
            r, m, p = y.shape
            return self.passes.flow_log_density(np.repeat(rows[np.asarray(participants)], m, axis=0),
                                                y.reshape(r * m, p)).reshape(r, m)

        return log_flow

    def log_density(self, study: Study, values: dict, design: TaskDesign | None = None) -> np.ndarray:
        """The amortized posterior's log density of parameter values, on their natural scale.

        Parameters
        ----------
        study
            The data.
        values
            Parameter name -> (participants, draws) values inside the network's support (t0
            below each participant's fastest response).
        design
            The study's settings (default: :meth:`study_design`).

        Returns
        -------
        numpy.ndarray
            (participants, draws): log q(theta | data), the flow's density of the unbounded
            values times the transforms' Jacobian.
        """
        design = design or self.study_design()
        space = parameter_space(self.config.priors, study, self.network["t0_upper"], design)
        y = space.forward(values)
        return self.unbounded_log_density(study, y, design) + space.log_abs_det_jacobian(values)

    @property
    def density_is_cheap(self) -> bool:
        """Whether the draws' density comes with them: a coupling flow's inverse pass gives it;
        flow matching would need an ODE solve with a trace per draw."""
        return network_kinds(self.network)[1] == "CouplingFlow"

    def infer(self, data: Study | pd.DataFrame | str | Path, draws: int = 1000, seed: int | None = None,
              convention: str = "rlddm", model: str | None = None, deadline="design",
              missing: str | None = None, q_init: float | None = None, p_outlier: float | None = None,
              rt_max: float | None = None, design: TaskDesign | None = None, check: bool | None = None,
              refine: bool = False, fallback: str | None = None, log_likelihood: bool = False) -> xr.DataTree:
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
        deadline, missing, q_init, p_outlier, rt_max
            The study's likelihood settings (see :meth:`study_design`): the response deadline
            in seconds (or None; ``"design"``: the network's), what missing responses are,
            the initial Q-values, the contaminant probability and RT range. A network for
            one design refuses any other; a general network, any outside its family.
        design
            The study's design, instead of those keywords: its deadline, missing kind,
            q_init and contaminants are the settings (e.g. a design of
            :data:`~amortized_rlddm.model.designs.NAMED_DESIGNS`).
        check
            Check every participant's draws against the exact posterior by Pareto-smoothed
            importance sampling (an ``importance`` group: ``trusted``, ``method`` "flow",
            ``reason``, ``khat``, ``ess``, ``log_evidence`` and its standard error,
            ``above_threshold``). The draws are trusted where k-hat is below its threshold
            and half of them are effective. Default: on when the network gives each draw's
            density with it (coupling flows), as it then costs one exact likelihood per draw,
            a few milliseconds per participant, and there are at least 25 draws (PSIS's
            Pareto fit needs them).
        refine
            Return draws of each participant's exact posterior
            (:func:`~amortized_rlddm.correction.correct.correct_draws`): the network's draws
            (twice as many as asked) resampled by their importance weights where those pass
            the check with an effective size of max(400, draws / 2) (``method`` "refined"),
            adaptive importance sampling started from them where they do not ("adaptive"), and
            DE-MCz chains where its weights still fail ("mcmc"). ``importance`` says per
            participant whether the result is ``trusted`` (and if not, the ``reason``), the
            adaptive ``rounds`` and the exact posterior's ``evaluations``.
        fallback
            ``"nuts"``: participants still not trusted are fitted with NUTS on the exact
            likelihood (:class:`~amortized_rlddm.exact.model.ExactPosterior`, 4 chains started
            from their draws, 1,000 tuning steps) and their draws replaced; ``importance``
            says which (``method`` "nuts"), whether the fit passed the convergence gate
            (``trusted``) and gives its r-hat, bulk ESS and divergences. Implies `check`.
        log_likelihood
            Add a ``log_likelihood`` group: variable ``choice_rt`` (chain, draw, obs), each
            trial's log-likelihood given the participant's history, over the trials that enter
            the likelihood (coordinates ``participant`` and ``trial``, 1-based), so that
            ``arviz_stats.loo`` and ``compare`` work on the output. With `check`,
            ``importance`` also gets each participant's PSIS-LOO (``elpd_loo``,
            ``elpd_loo_se``, ``loo_khat_max``), with the approximate-posterior correction of
            :func:`arviz_stats.loo_approximate_posterior` for unrefined draws. Memory:
            8 bytes x draws x trials x participants.

        Returns
        -------
        xarray.DataTree
            ``posterior`` (dimensions chain, draw, participant; one variable per parameter,
            on its natural scale), ``data_checks`` (see :meth:`data_checks`) and, as asked,
            ``importance`` and ``log_likelihood``.

        Raises
        ------
        InferenceError
            Data the network was not trained for (trial count, blocks, missing responses,
            deadline, model).
        """
        if fallback not in (None, "nuts"):
            raise ValueError(f"fallback: expected None or 'nuts', got {fallback!r}")
        if fallback and check is False:
            raise ValueError("fallback='nuts' acts on the importance check's k-hat; it needs check")
        study = data if isinstance(data, Study) else read_study(data, convention=convention)
        ignored_rts = choice_only(self.parameter_names) and study.has_rt
        study = self._readable(study)  # a choice-only model reads choices alone (as its network was trained)
        if design is None:
            design = self.study_design(deadline, missing, q_init, p_outlier, rt_max)
        elif deadline != "design" or any(x is not None for x in (missing, q_init, p_outlier, rt_max)):
            raise ValueError("give the study's settings either as a design or as keywords, not both")
        self.check(study, model=model, design=design)
        check = refine or fallback is not None or (self.density_is_cheap and draws >= MIN_DRAWS
                                                   if check is None else check)
        # the correction starts from INITIAL_PROPOSALS flow draws per requested draw
        proposals = draws * INITIAL_PROPOSALS if refine else draws
        y, summaries, log_q = self._sample(study, proposals, seed, density=check, design=design)
        if not np.all(np.isfinite(y)):
            raise InferenceError("the network produced non-finite draws; the checkpoint may be damaged")
        target = ExactTarget(study, self.config.priors, design, self.network["t0_upper"])
        values = target.to_natural(y)
        participants = np.asarray([str(p) for p in study.participant])
        groups = {"data_checks": self.data_checks(study, summaries).assign_coords(participant=participants)}
        if check:
            if refine:
                corrected, importance = correct_draws(target, y, log_q, self.unbounded_density_function(study, design),
                                                      draws, np.random.default_rng(seed))
                values = target.to_natural(corrected)
                corrections = np.zeros((study.n_participants, draws))  # the draws are the exact posterior's
            else:
                # the LOO correction of the flow's own draws: their log ratios
                corrections = target.log_density(y) - log_q
                # the flow's draws themselves are trusted where half of them are effective
                importance = check_ratios(corrections, draws / 2)
                importance = importance.assign(method=("participant", np.full(study.n_participants, "flow")),
                                               flow_khat=importance["khat"])
            if fallback:
                values, importance = self._nuts_fallback(study, values, importance, seed, design)
                corrections[importance["method"].values == "nuts"] = 0.0
        if log_likelihood:
            groups["log_likelihood"] = pointwise_group(study, values, target.settings)
            if check:
                pointwise = pointwise_elpd(groups["log_likelihood"], corrections, participants)
                importance = importance.merge(participant_loo(groups["log_likelihood"], pointwise, participants))
        if check:
            groups["importance"] = importance.assign_coords(participant=participants)
        posterior = xr.Dataset(
            {name: (("chain", "draw", "participant"), v.T[None, :, :]) for name, v in values.items()},
            coords={"chain": [0], "draw": np.arange(draws), "participant": participants})
        posterior.attrs.update({"inference_library": "amortized_rlddm / BayesFlow", "checkpoint": self.source,
                                "backend": backend(), "model": self.config.model,
                                "corrected": "exact: PSIS resampling, adaptive importance sampling, DE-MCz"
                                if refine else "no"})
        if check and fallback:
            nuts = participants[importance["method"].values == "nuts"]
            posterior.attrs["nuts_fallback"] = (f"{nuts.size} participant(s) fitted with NUTS on the exact likelihood"
                                                + (f": {', '.join(nuts)}" if nuts.size else ""))
        if self.converted_from:
            posterior.attrs["trained_on_backend"] = self.converted_from
        if ignored_rts:
            posterior.attrs["note"] = (f"the data's response times were ignored: the {self.config.model} model reads "
                                       "choices alone")
        return xr.DataTree.from_dict({"posterior": posterior, **groups})

    def _draws(self, study, draws, seed, density, design=None):
        """Draws over the parameters, name -> (participants, draws), their log density under the
        flow (with `density`; the unbounded density times |dy / dtheta|) and the summaries."""
        design = design or self.study_design()
        y, summaries, log_density = self._sample(study, draws, seed, density=density, design=design)
        if not np.all(np.isfinite(y)):
            raise InferenceError("the network produced non-finite draws; the checkpoint may be damaged")
        space = parameter_space(self.config.priors, study, self.network["t0_upper"], design)
        values = space.inverse(y)
        log_proposal = log_density + space.log_abs_det_jacobian(values) if density else None
        return values, log_proposal, summaries

    def _nuts_fallback(self, study, values, importance, seed, design):
        """The values with every participant above the k-hat threshold replaced by a NUTS fit
        of the exact posterior, its chains started from the participant's draws; the
        importance check gains ``method`` "nuts" for them and their fits' diagnostics."""
        from ..exact.model import ExactPosterior, converged  # PyMC loads only when a participant needs it

        flagged = np.flatnonzero(~importance["trusted"].values)
        diagnostics = {name: np.full(study.n_participants, np.nan)
                       for name in ("nuts_rhat_max", "nuts_ess_bulk_min", "nuts_divergences")}
        method = importance["method"].values.astype(object)
        trusted, reason = importance["trusted"].values.copy(), importance["reason"].values.astype(object)
        if flagged.size:
            draws = next(iter(values.values())).shape[1]
            chains = NUTS_CHAINS
            per_chain = max(-(-draws // chains), NUTS_MIN_CHAIN_DRAWS)
            kept = np.round(np.linspace(0, chains * per_chain - 1, draws)).astype(int)  # evenly over the chains
            exact = ExactPosterior(self.config.priors, self.config.model, design.likelihood.for_study(study),
                                   max_trials=study.max_trials, n_conditions=study.n_conditions)
            rng = np.random.default_rng(seed)
            values = {k: v.copy() for k, v in values.items()}
            for i in flagged:
                start = rng.choice(draws, size=chains, replace=False)
                fit = exact.fit_one(study, int(i), draws=per_chain, tune=NUTS_TUNE, chains=chains,
                                    seed=None if seed is None else seed + int(i),
                                    start={k: v[i, start] for k, v in values.items()})
                posterior = fit.trace["posterior"]
                for name in values:
                    values[name][i] = posterior[name].transpose("chain", "draw").values.reshape(-1)[kept]
                method[i] = "nuts"
                diagnostics["nuts_rhat_max"][i] = fit.diagnostics["rhat_max"]
                diagnostics["nuts_ess_bulk_min"][i] = fit.diagnostics["ess_bulk_min"]
                diagnostics["nuts_divergences"][i] = fit.diagnostics["divergences"]
                trusted[i] = converged(fit.diagnostics)
                reason[i] = "" if trusted[i] else (
                    f"NUTS did not pass the convergence gate (r-hat {fit.diagnostics['rhat_max']:.3f}, bulk ESS "
                    f"{fit.diagnostics['ess_bulk_min']:.0f}, {fit.diagnostics['divergences']} divergences)")
        return values, importance.assign(method=("participant", method.astype(str)),
                                         trusted=("participant", trusted), reason=("participant", reason.astype(str)),
                                         **{k: ("participant", v) for k, v in diagnostics.items()})

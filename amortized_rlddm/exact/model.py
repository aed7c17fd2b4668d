"""The exact-likelihood PyMC model of one participant: the reference posterior the networks
are checked against.

:class:`ExactPosterior` builds the RL-DDM in PyMC once, with data containers padded to
``max_trials``, and compiles it once (nutpie); :meth:`ExactPosterior.fit` samples each
participant of a study by swapping its data in. The drift of every trial comes from
:mod:`.qvalues` and the density from :mod:`.wfpt`. Backend measurements:
:mod:`.benchmark` and docs/benchmarks.md.
"""

import itertools
import json
import threading
import time
from dataclasses import dataclass, replace

import arviz as az
import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from tqdm.auto import tqdm

from ..data.study import Study
from ..model.config import MODELS
from ..model.priors import Beta, Normal, PriorSet, TruncatedNormal, Uniform, choice_only
from ..model.task import LikelihoodSettings, refuse_unexplained_missing
from ..output import FitStore
from .logdensity import choice_log_likelihood, log_likelihood, t0_below_fastest_response
from .participant import check_trials, participant_trials
from .qvalues import CLOSED_FORM_MAX_TRIALS, Q_VALUES, closed_form_arrays, q_difference_closed_form, q_difference_scan


def _model_arrays(trials, max_trials, q_values, censored, q_init):
    """The model's data containers for one participant, padded to max_trials. `scored`
    marks the responses that enter the likelihood; with `censored`, `missing` marks the
    missing responses that enter it through the survival probability."""
    n = trials["choice"].shape[0]
    if n > max_trials:
        raise ValueError(f"participant has {n} trials but the model was built for max_trials={max_trials}")
    pad = max_trials - n
    choice = np.pad(trials["choice"].astype(np.int64), (0, pad), constant_values=-1)
    responded = choice >= 0
    included = np.pad(~trials["excluded"].astype(bool), (0, pad), constant_values=False)
    reward = np.where(responded, np.pad(trials["reward"], (0, pad), constant_values=0), 0).astype(np.int64)
    block = np.pad(trials["block"].astype(np.int64), (0, pad), mode="edge" if n else "constant")
    condition = np.pad(trials["condition"].astype(np.int64), (0, pad), constant_values=0)
    arrays = {"choice": choice, "scored": (responded & included).astype(np.int64),
              "rt": np.where(responded, np.pad(trials["rt"], (0, pad), constant_values=1.0), 1.0),
              "q_init": np.float64(q_init)}
    if censored:
        arrays["missing"] = (np.r_[np.ones(n, bool), np.zeros(pad, bool)] & ~responded & included).astype(np.int64)
    if q_values == "scan":
        arrays["reward"] = reward.astype(float)
        arrays["reset"] = np.r_[True, block[1:] != block[:-1]].astype(np.int64)
        arrays["condition"] = condition
    else:
        arrays.update(closed_form_arrays(choice, reward, block, condition))
    return arrays


def _pymc_distribution(prior):
    """(PyMC distribution class, its float64 arguments) of a :mod:`amortized_rlddm.model.priors` prior.

    Parameters are passed as float64: PyTensor turns a Python float that float32 represents
    exactly (2.0, 0.5) into a float32 constant, and PyMC's log densities then lose about
    1e-8 (e.g. Normal(0, 2).logp(3) is off by 2e-9).
    """
    f = np.float64
    if isinstance(prior, Normal):
        return pm.Normal, {"mu": f(prior.mu), "sigma": f(prior.sigma)}
    if isinstance(prior, TruncatedNormal):
        return pm.TruncatedNormal, {"mu": f(prior.mu), "sigma": f(prior.sigma), "lower": f(prior.lower),
                                    "upper": f(prior.upper)}
    if isinstance(prior, Beta):
        return pm.Beta, {"alpha": f(prior.a), "beta": f(prior.b)}
    if isinstance(prior, Uniform):
        return pm.Uniform, {"lower": f(prior.lower), "upper": f(prior.upper)}
    raise TypeError(f"no PyMC distribution for a {type(prior).__name__} prior")


def _fastest_response(data):
    """The fastest response that enters the likelihood (inf if none), from the model's data."""
    return pt.min(pt.switch(pt.eq(data["scored"], 1), data["rt"], np.inf))


BACKENDS = ("nutpie", "nutpie-jax", "pymc", "pymc-c")
ADAPTATIONS = ("diag", "low_rank")


# The convergence gate of a NUTS fit (Vehtari et al. 2021's r-hat and bulk-ESS thresholds; no
# divergent transition), and the seed offset of a retried fit.
RHAT_MAX = 1.01
ESS_BULK_MIN = 400
RETRY_SEED_OFFSET = 100_003
# A retried fit samples this many times the draws and keeps every RETRY_THIN-th: where the
# draws are strongly autocorrelated (v and alpha on their ridge) that multiplies the effective
# sample size while the stored posterior keeps its size.
RETRY_THIN = 4
# ... and aims at this acceptance rate (nutpie's default is 0.8): smaller steps, where the first
# fit's divergences came from the sharp edges of the posterior (t0 near the fastest response).
RETRY_TARGET_ACCEPT = 0.95


def converged(diagnostics: dict) -> bool:
    """Whether a fit passes the gate: r-hat <= RHAT_MAX, bulk ESS >= ESS_BULK_MIN, no divergences."""
    return (diagnostics["rhat_max"] <= RHAT_MAX and diagnostics["ess_bulk_min"] >= ESS_BULK_MIN
            and diagnostics["divergences"] == 0)


@dataclass
class ParticipantFit:
    """One participant's NUTS posterior: the sampler's DataTree and convergence figures.

    diagnostics: rhat_max, ess_bulk_min, divergences and wall_time_s (seconds of the fit: data
    swap and sampling, plus nutpie's compilation when it was not compiled before).
    """

    participant: object
    trace: xr.DataTree
    diagnostics: dict


class ExactPosterior:
    """NUTS on the exact likelihood of the RL-DDM or of a choice-only model, one participant
    at a time.

    Parameters
    ----------
    priors
        A :class:`~amortized_rlddm.model.priors.PriorSet` with the model's parameter names
        (:data:`~amortized_rlddm.model.config.MODELS`); each prior becomes the PyMC
        distribution of the same family and support.
    model
        "single", "dual", "softmax" or "softmax-dual"; must match the names of `priors`.
    settings
        The likelihood settings (:class:`~amortized_rlddm.model.task.LikelihoodSettings`):
        q_init for data that give none (0.5 if None); what missing responses are, "deadline"
        (each adds log P(no response before the deadline)) or "ignorable" (left out), and
        participants with missing responses and neither are refused; the contaminant mixture,
        with which t0 is no longer bounded by the fastest response. A missing response never
        updates the Q-values.
    max_trials
        The data containers' length; participants with fewer trials are padded.
    fixed
        Parameters held at a value instead of sampled (HDDM's RL-DDM fixes z = 0.5).
    n_conditions
        The most stimulus pairs a participant has (the scan carries that many Q-value pairs).
    q_values
        "closed_form", "scan" or "auto" (the closed form up to 300 trials; see
        :mod:`.qvalues`).
    backend
        "nutpie" (nutpie, Numba-compiled logp), "nutpie-jax", "pymc" (PyMC's NUTS,
        Numba-compiled logp) or "pymc-c" (PyMC's NUTS, C-compiled logp).
    adaptation
        nutpie's mass matrix adaptation: "diag" (the default) or "low_rank" (a diagonal plus
        low-rank mass matrix, for posteriors with strongly correlated parameters, such as v and
        alpha where the learning rate is small).

    Notes
    -----
    The model is built once; nutpie backends also compile it once and swap each participant's
    data into the compiled model. PyMC's own sampler recompiles inside every ``pm.sample``
    call (from PyTensor's cache after the first). Excluded trials update the Q-values and add
    nothing to the likelihood.
    """

    def __init__(self, priors: PriorSet, model: str = "single", settings: LikelihoodSettings | None = None,
                 max_trials: int = 60, fixed: dict | None = None, n_conditions: int = 1, q_values: str = "auto",
                 backend: str = "nutpie", adaptation: str = "diag"):
        if model not in MODELS:
            raise ValueError(f"model must be one of {sorted(MODELS)}, got {model!r}")
        if set(priors.names) != set(MODELS[model]):
            raise ValueError(f"priors have parameters {list(priors.names)}, the {model} model needs "
                             f"{list(MODELS[model])}")
        if q_values == "auto":
            q_values = "closed_form" if max_trials <= CLOSED_FORM_MAX_TRIALS else "scan"
        if q_values not in Q_VALUES:
            raise ValueError(f"q_values must be one of {Q_VALUES + ('auto',)}, got {q_values!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        fixed = dict(fixed or {})
        unknown = sorted(set(fixed) - set(MODELS[model]))
        if unknown or "t0" in fixed:
            raise ValueError(f"fixed: expected some of {[n for n in MODELS[model] if n != 't0']}, got {sorted(fixed)}")
        self.priors = priors
        self.fixed = {name: float(value) for name, value in fixed.items()}
        self.parameter_names = tuple(n for n in MODELS[model] if n not in self.fixed)
        self.choice_only = choice_only(MODELS[model])
        self.max_trials = int(max_trials)
        self.settings = settings or LikelihoodSettings()
        if self.choice_only and self.settings.missing == "deadline":
            raise ValueError("a choice-only model has no response times, so no deadline: its omissions are ignorable")
        self.q_init = 0.5 if self.settings.q_init is None else float(self.settings.q_init)
        self.deadline, self.missing = self.settings.deadline, self.settings.missing
        self.p_outlier, self.rt_max = float(self.settings.p_outlier), float(self.settings.rt_max)
        self.n_conditions = int(n_conditions)
        self.q_values = q_values
        if adaptation not in ADAPTATIONS:
            raise ValueError(f"adaptation must be one of {ADAPTATIONS}, got {adaptation!r}")
        self.backend, self.adaptation = backend, adaptation
        self.model = self._build()
        self._compiled = None

    def _empty_arrays(self):
        empty = {"choice": np.zeros(0, np.int8), "rt": np.zeros(0), "reward": np.zeros(0, np.int8),
                 "block": np.zeros(0, np.int32), "condition": np.zeros(0, np.int32), "excluded": np.zeros(0, bool)}
        return _model_arrays(empty, self.max_trials, self.q_values, self.missing == "deadline", self.q_init)

    def _build(self):
        t0_low, t0_high = self.priors.support("t0") if "t0" in self.parameter_names else (0.0, np.inf)
        with pm.Model() as model:
            data = {name: pm.Data(name, value) for name, value in self._empty_arrays().items()}
            p = {name: pt.as_tensor(np.float64(value)) for name, value in self.fixed.items()}
            for name in self.parameter_names:
                cls, args = _pymc_distribution(self.priors.priors[name])
                if name == "t0" and self.p_outlier == 0.0:  # the likelihood is zero above the fastest response
                    p[name] = t0_below_fastest_response(lambda t0, prior=cls.dist(**args): pm.logp(prior, t0), t0_low,
                                                        pt.minimum(_fastest_response(data), t0_high))
                else:
                    p[name] = cls(name, **args)
            alpha_pos, alpha_neg = (p["alpha"], p["alpha"]) if "alpha" in p else (p["alpha_pos"], p["alpha_neg"])
            if self.q_values == "scan":
                dq = q_difference_scan(data, alpha_pos, alpha_neg, data["q_init"], self.n_conditions)
            else:
                dq = q_difference_closed_form(data, alpha_pos, alpha_neg, data["q_init"])
            if self.choice_only:
                total = choice_log_likelihood(data, p["beta"] * dq, self.p_outlier)
            else:
                total = log_likelihood(data, p["v"] * dq, p["a"], p["z"], p["t0"], self.deadline, self.p_outlier,
                                       self.rt_max)
            pm.Potential("loglik", total)
        return model

    def set_participant(self, data, index=0):
        """Put participant `index` of a Study (or one participant's arrays) into the model.

        data: a :class:`~amortized_rlddm.data.study.Study`, or a mapping with 1-D arrays choice
        (0/1, -1 missing), rt (s, NaN missing), reward (0/1) and optionally block, condition,
        excluded and a number q_init. Returns the participant's id and the arrays set.
        """
        trials, participant, data_q_init = participant_trials(data, index)
        check_trials(trials, needs_rt=not self.choice_only)
        responded = trials["choice"] >= 0
        scored = responded & ~trials["excluded"]
        if trials["condition"].size and trials["condition"].max() >= self.n_conditions:
            raise ValueError(f"participant {participant!r} has {trials['condition'].max() + 1} stimulus pairs; "
                             f"the model was built for n_conditions={self.n_conditions}")
        refuse_unexplained_missing(participant, ~responded, self.missing)
        t0_low, t0_high = self.priors.support("t0") if not self.choice_only else (-np.inf, np.inf)
        if self.p_outlier == 0.0 and scored.any() and trials["rt"][scored].min() <= t0_low:
            raise ValueError(f"participant {participant!r}: fastest rt {trials['rt'][scored].min()} s is not "
                             f"above the lower bound {t0_low} of the t0 prior")
        if not self.choice_only and self.p_outlier == 0.0 and not scored.any() and not np.isfinite(t0_high):
            raise ValueError(f"participant {participant!r}: no response enters the likelihood, and the t0 prior "
                             "has no upper bound to sample t0 below")
        if self.deadline is not None and responded.any() and trials["rt"][responded].max() > self.deadline:
            raise ValueError(f"participant {participant!r}: an rt exceeds the deadline {self.deadline} s")
        q_init = self.q_init if data_q_init is None else data_q_init
        arrays = _model_arrays(trials, self.max_trials, self.q_values, self.missing == "deadline", q_init)
        pm.set_data(arrays, model=self.model)
        return participant, arrays

    def _compile_nutpie(self):
        import nutpie

        if self._compiled is None:
            jax = self.backend == "nutpie-jax"
            # freeze_model=False keeps the data containers swappable (and t0's data-dependent interval)
            self._compiled = nutpie.compile_pymc_model(self.model, backend="jax" if jax else "numba",
                                                       gradient_backend="jax" if jax else "pytensor",
                                                       freeze_model=False)
        return self._compiled

    def compile(self):
        """Compile the model now (nutpie backends; PyMC compiles inside each fit)."""
        if self.backend.startswith("nutpie"):
            self._compile_nutpie()

    def _starting_points(self, start, arrays):
        """nutpie's initial-point function giving chain c the c-th (cycled) of the `start`
        values (name -> one value per chain, on the parameters' own scale), mapped to the
        sampler's unconstrained space by the model's transforms (for the data `arrays` now set;
        a t0 below the fastest response by its interval's map)."""
        from pymc.initial_point import make_initial_point_fn

        names = [value.name for value in self.model.value_vars]  # nutpie's order of the unconstrained space
        overrides = {name: np.asarray(values, np.float64) for name, values in start.items()}
        if "t0_interval" in names:
            lo, hi = self.priors.support("t0")
            ceiling = min(arrays["rt"][arrays["scored"] == 1].min(initial=np.inf), hi)
            share = np.clip((overrides.pop("t0") - lo) / (ceiling - lo), 1e-9, 1.0 - 1e-9)
            overrides["t0_interval"] = np.log(share) - np.log1p(-share)
        n = len(next(iter(overrides.values())))
        points = []
        for c in range(n):
            point = make_initial_point_fn(model=self.model, overrides={k: float(v[c]) for k, v in overrides.items()},
                                          jitter_rvs=set(), return_transformed=True)(0)
            points.append(np.concatenate([np.reshape(point[name], -1) for name in names]).astype(np.float64))
        chain = itertools.count()
        lock = threading.Lock()

        def initial_point(seed=None):
            with lock:
                return points[next(chain) % n].copy()

        return initial_point

    def fit_one(self, data, index=0, draws=1000, tune=1000, chains=4, seed=None, cores=None, thin=1, start=None,
                target_accept=None):
        """NUTS posterior of one participant (see :meth:`set_participant` for `data`): `draws`
        per chain kept from draws x thin sampled (every thin-th, renumbered 0 to draws - 1; the
        divergences count all). target_accept: the step size adaptation's target acceptance
        rate (default: the sampler's, 0.8).
        start: name -> one value per chain (e.g. amortized draws) to start the chains from
        instead of the prior's central values (nutpie backends)."""
        begin = time.perf_counter()
        participant, arrays = self.set_participant(data, index)
        if self.backend.startswith("nutpie"):
            import nutpie

            # a choice-only model's density reads no RTs: its compiled model has no rt to swap
            compiled = self._compile_nutpie().with_data(**{k: v for k, v in arrays.items()
                                                           if not (self.choice_only and k == "rt")})
            if start is not None:
                compiled = replace(compiled, initial_point_func=self._starting_points(start, arrays))
            extra = {} if target_accept is None else {"target_accept": target_accept}
            trace = nutpie.sample(compiled, draws=draws * thin, tune=tune, chains=chains, seed=seed, cores=cores,
                                  progress_bar=False, adaptation=self.adaptation, **extra)
        else:
            mode = "NUMBA" if self.backend == "pymc" else "CVM"
            extra = {} if target_accept is None else {"target_accept": target_accept}
            trace = pm.sample(draws=draws * thin, tune=tune, chains=chains, cores=cores, random_seed=seed,
                              model=self.model, nuts_sampler="pymc", compile_kwargs={"mode": mode},
                              progressbar=False, quiet=True, compute_convergence_checks=False, **extra)
        wall = time.perf_counter() - begin
        divergences = int(trace["sample_stats"]["diverging"].sum())
        # the parameters only (not the sampler's t0_interval), every thin-th draw renumbered
        trace = xr.DataTree.from_dict({
            name: trace[name].to_dataset()[variables].isel(draw=slice(None, None, thin)).assign_coords(
                draw=np.arange(draws))
            for name, variables in (("posterior", list(self.parameter_names)),
                                    ("sample_stats", list(trace["sample_stats"].data_vars)))})
        posterior = trace["posterior"].to_dataset()
        diagnostics = {
            "rhat_max": float(az.rhat(posterior).to_array().max()),
            "ess_bulk_min": float(az.ess(posterior, method="bulk").to_array().min()),
            "divergences": divergences,
            "wall_time_s": wall,
        }
        diagnostics["converged"] = converged(diagnostics)
        return ParticipantFit(participant, trace, diagnostics)

    def fit(self, data, participants=None, draws=1000, tune=1000, chains=4, seed=None, cores=None,
            progress=False, retry=False, store=None):
        """NUTS posterior of each participant of a Study, or of one participant's arrays.

        participants: indices into the study (default: all). seed: int; participant i of the
        list is sampled with seed + i. progress: a progress bar over the participants, with
        the last fit's time and convergence. retry: a fit that fails the convergence gate
        (:func:`converged`) is run once more with twice the tuning steps, RETRY_THIN times
        the draws, thinned back to `draws`, and target acceptance RETRY_TARGET_ACCEPT (its
        diagnostics say ``attempts``; the wall time counts both). store: a folder keeping each
        fit (a NetCDF file named by a hash of the participant's data, the model and the
        sampler settings); a fit found there is read instead of sampled again, so an
        interrupted run continues and another network's check reuses the reference. Returns a
        list of :class:`ParticipantFit`; :func:`posterior_tree` stacks them into one DataTree.
        """
        if not isinstance(data, Study):
            return [self.fit_one(data, 0, draws, tune, chains, seed, cores)]
        indices = list(range(data.n_participants) if participants is None else participants)
        fits = []
        with tqdm(total=len(indices), desc="NUTS fits", unit="participant", disable=not progress) as bar:
            for k, i in enumerate(indices):
                fit_seed = None if seed is None else seed + k
                path = None if store is None else self._stored_path(FitStore(store), data, i, draws, tune, chains,
                                                                       fit_seed, retry)
                fit = None if path is None else _read_fit(path)
                if fit is None:
                    fit = self._fit_with_retry(data, i, draws, tune, chains, fit_seed, cores, retry)
                    if path is not None:
                        _write_fit(fit, path)
                fits.append(fit)
                d = fits[-1].diagnostics
                bar.set_postfix_str(f"last {d['wall_time_s']:.1f} s, r-hat {d['rhat_max']:.3f}, "
                                    f"{d['divergences']} divergences", refresh=False)
                bar.update()
        return fits

    def _fit_with_retry(self, data, index, draws, tune, chains, seed, cores, retry):
        fit = self.fit_one(data, index, draws, tune, chains, seed, cores)
        fit.diagnostics["attempts"] = 1
        if retry and not fit.diagnostics["converged"]:  # once more, longer (see RETRY_THIN)
            again = self.fit_one(data, index, draws, 2 * tune, chains,
                                 None if seed is None else seed + RETRY_SEED_OFFSET, cores, thin=RETRY_THIN,
                                 target_accept=RETRY_TARGET_ACCEPT)
            again.diagnostics["wall_time_s"] += fit.diagnostics["wall_time_s"]
            again.diagnostics["attempts"] = 2
            fit = again
        return fit

    def _stored_path(self, store, data, index, draws, tune, chains, seed, retry):
        """Where participant `index`'s fit is kept in `store` (a FitStore): a file named by the hash of its
        model arrays and of everything else that decides the fit."""
        participant, arrays = self.set_participant(data, index)
        settings = {"participant": str(participant), "priors": self.priors.to_dict(), "fixed": self.fixed,
                    "names": self.parameter_names, "q_values": self.q_values, "deadline": self.deadline,
                    "missing": self.missing, "p_outlier": self.p_outlier, "rt_max": self.rt_max,
                    "n_conditions": self.n_conditions, "backend": self.backend, "adaptation": self.adaptation,
                    "draws": draws, "tune": tune, "chains": chains, "seed": seed,
                    "retry": [2 * tune, RETRY_THIN, RETRY_TARGET_ACCEPT, RETRY_SEED_OFFSET] if retry else None}
        return store.path({name: arrays[name] for name in sorted(arrays)}, settings)


def _write_fit(fit, path):
    tree = xr.DataTree.from_dict({"posterior": fit.trace["posterior"].to_dataset(),
                                  "sample_stats": fit.trace["sample_stats"].to_dataset()[["diverging"]]})
    tree.attrs = {"participant": str(fit.participant), "diagnostics": json.dumps(fit.diagnostics)}
    FitStore.write(tree, path)


def _read_fit(path):
    """The ParticipantFit kept at `path`, or None."""
    tree = FitStore.read(path)
    return None if tree is None else ParticipantFit(tree.attrs["participant"], tree,
                                                    json.loads(tree.attrs["diagnostics"]))


def posterior_tree(fits):
    """Stack participant fits into one DataTree: a posterior group (chain, draw, participant).

    The layout of the amortized posterior (docs/data.md), with participant ids as strings.
    """
    posteriors = [f.trace["posterior"].to_dataset() for f in fits]
    stacked = xr.concat(posteriors, dim="participant", coords="minimal", compat="override")
    stacked = stacked.assign_coords(participant=[str(f.participant) for f in fits])
    return xr.DataTree.from_dict({"posterior": stacked.transpose("chain", "draw", "participant")})

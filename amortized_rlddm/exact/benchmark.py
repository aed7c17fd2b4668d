"""Speed of the exact fits: NUTS per backend (:func:`bench_nuts`) and the log density per
Q-value method (:func:`bench_logp`). Their measurements, and why the default backend is
nutpie with the Numba log density, are in docs/benchmarks.md ("NUTS backend").
"""

import time

import numpy as np
import pytensor

from ..model.config import MODELS
from ..model.priors import PriorSet
from ..model.simulator import simulate
from ..model.task import TaskDesign
from .model import BACKENDS, ExactPosterior
from .qvalues import Q_VALUES


def _bench_participant(n_trials, seed):
    """Default priors and one simulated single-rate participant of the default design."""
    truth = {"v": 3.0, "a": 1.3, "z": 0.5, "t0": 0.3, "alpha": 0.3}
    study = simulate({k: np.array([v]) for k, v in truth.items()}, TaskDesign(n_trials=n_trials), seed=seed)
    return PriorSet.from_dict({}, MODELS["single"]), study


def bench_logp(n_trials=(60, 500), repeats=300, seed=0):
    """Seconds per evaluation of the log posterior and its gradient (Numba), per Q-value method.

    Returns {n_trials: {"closed_form": s, "scan": s}} for one simulated participant of the
    default design with that many trials.
    """
    results = {}
    for n in n_trials:
        priors, study = _bench_participant(n, seed)
        results[n] = {}
        for q_values in Q_VALUES:
            exact = ExactPosterior(priors, "single", max_trials=n, q_values=q_values)
            exact.set_participant(study)
            model = exact.model
            logp = model.logp()
            fn = model.compile_fn([logp, *pytensor.grad(logp, model.value_vars)], mode="NUMBA")
            point = model.initial_point()
            fn(point)  # compiles
            start = time.perf_counter()
            for _ in range(repeats):
                fn(point)
            results[n][q_values] = (time.perf_counter() - start) / repeats
    return results


def bench_nuts(backends=BACKENDS, n_trials=60, draws=1000, tune=1000, chains=4, seed=0, cores=None,
               q_values="auto"):
    """Time NUTS on one simulated participant of the default design for each backend.

    Per backend: build_s (model construction, plus compilation for nutpie), first_fit_s (a
    fit including PyMC's compilation), fit_s (a second fit of the same participant: the warm
    cost per participant), and that fit's diagnostics. A backend whose package is missing
    reports {"error": ...}.
    """
    priors, study = _bench_participant(n_trials, seed)
    results = {}
    for backend in backends:
        try:
            start = time.perf_counter()
            exact = ExactPosterior(priors, "single", max_trials=n_trials, q_values=q_values, backend=backend)
            exact.compile()
            build = time.perf_counter() - start
            first = exact.fit_one(study, 0, draws, tune, chains, seed, cores)
            fit = exact.fit_one(study, 0, draws, tune, chains, seed + 1, cores)
        except ImportError as err:
            results[backend] = {"error": str(err)}
            continue
        results[backend] = {"build_s": build, "first_fit_s": first.diagnostics["wall_time_s"],
                            "fit_s": fit.diagnostics["wall_time_s"],
                            **{k: v for k, v in fit.diagnostics.items() if k != "wall_time_s"}}
    return results

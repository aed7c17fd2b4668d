"""The hierarchical model in PyMC with the exact WFPT likelihood, sampled by NUTS (nutpie): the
reference the amortized group sampler is validated against, not a tool for studies.

The same model as :mod:`amortized_rlddm.group.model`, parameterised for NUTS: the group
normal of every parameter but t0 is non-centred (y = mu + sigma * z, z ~ Normal(0, 1));
t0 is sampled on each participant's own interval below their fastest response (where the
likelihood is not zero) and its group normal density, with the Jacobian, enters as a
potential, so the posterior has no cliff for NUTS to fall off. With contaminant responses
(p_outlier > 0) any t0 is possible, and t0 is non-centred like the others. Missing responses
enter as in the per-participant model: censored by a deadline (the survival probability) or
ignorable; excluded trials update the Q-values and add nothing.
"""

import time

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from ..data.study import Study
from ..exact.model import _model_arrays
from ..exact.participant import participant_trials
from ..exact.qvalues import q_difference_closed_form
from ..exact.wfpt import wfpt_log_survival, wfpt_logp
from ..model.likelihood import missing_kind
from .model import GroupModel


def _natural(y, lo, hi):
    """The inverse of the unbounded transform of a support [lo, hi], in PyTensor."""
    if np.isfinite(lo) and np.isfinite(hi):
        return lo + (hi - lo) * pt.sigmoid(y)
    if np.isfinite(lo):
        return lo + pt.exp(y)
    if np.isfinite(hi):
        return hi - pt.exp(y)
    return y


def _stacked_arrays(study: Study, q_init: float, censored: bool):
    """Every participant's closed-form arrays, stacked on a leading participant axis."""
    arrays = []
    for i in range(study.n_participants):
        trials, _, data_q_init = participant_trials(study, i)
        arrays.append(_model_arrays(trials, study.max_trials, "closed_form", censored,
                                    q_init if data_q_init is None else data_q_init))
    return {name: np.stack([a[name] for a in arrays]) for name in arrays[0]}


def reference_model(study: Study, model: GroupModel, group_index: np.ndarray, q_init: float = 0.5,
                    deadline: float | None = None, missing: str | None = None, p_outlier: float = 0.0,
                    rt_max: float = 10.0) -> pm.Model:
    """The PyMC hierarchical model of a study (see the module notes); the likelihood settings
    as in :func:`amortized_rlddm.loglik`."""
    m, s = model.hyperpriors()
    space = model.space
    kind = missing_kind(study, missing, deadline)
    data = _stacked_arrays(study, q_init, kind == "deadline")
    scored = data["scored"].astype(bool)
    fastest = np.where(scored, data["rt"], np.inf).min(axis=1)
    n_groups = int(group_index.max()) + 1
    coords = {"participant": [str(p) for p in study.participant], "group": list(model.groups)[:n_groups]}
    with pm.Model(coords=coords) as pymc_model:
        theta = {}
        for k, (name, (lo, hi)) in enumerate(zip(model.names, space.bounds)):
            mu = pm.Normal(f"mu_{name}", m[k], s[k], dims="group")
            sigma = pm.HalfNormal(f"sigma_{name}", s[k])
            if name == "t0" and p_outlier == 0.0:
                ceiling = np.minimum(fastest, hi)
                u = pm.Flat("t0_interval", dims="participant")
                t0 = lo + (ceiling - lo) * pt.sigmoid(u)
                y = pt.log(t0 - lo) - pt.log(hi - t0) if np.isfinite(hi) else pt.log(t0 - lo)
                log_dt0_du = np.log(ceiling - lo) + pt.log(pt.sigmoid(u)) + pt.log(pt.sigmoid(-u))
                log_dy_dt0 = (np.log(hi - lo) - pt.log(t0 - lo) - pt.log(hi - t0)) if np.isfinite(hi) \
                    else -pt.log(t0 - lo)
                pm.Potential("t0_group", pm.logp(pm.Normal.dist(mu[group_index], sigma), y)
                             + log_dy_dt0 + log_dt0_du)
                theta[name] = pm.Deterministic(name, t0, dims="participant")
            else:
                offset = pm.Normal(f"{name}_offset", 0.0, 1.0, dims="participant")
                theta[name] = pm.Deterministic(name, _natural(mu[group_index] + sigma * offset, lo, hi),
                                               dims="participant")
        alpha_pos = theta.get("alpha_pos", theta.get("alpha"))
        alpha_neg = theta.get("alpha_neg", theta.get("alpha"))
        dq = q_difference_closed_form(data, alpha_pos, alpha_neg, data["q_init"])
        drift, a, z, t0 = theta["v"][:, None] * dq, theta["a"][:, None], theta["z"][:, None], theta["t0"][:, None]
        logp = wfpt_logp(data["rt"] - t0, data["choice"] == 1, drift, a, z)
        if p_outlier > 0.0:
            contaminant = np.where(data["rt"] <= rt_max, np.log(0.5 * p_outlier / rt_max), -np.inf)
            logp = pt.logaddexp(np.log1p(-p_outlier) + logp, contaminant)
        total = pt.sum(pt.switch(scored, logp, 0.0))
        if kind == "deadline":
            survival = wfpt_log_survival(deadline - t0, drift, a, z)
            if p_outlier > 0.0:
                missed = p_outlier * max(0.0, 1.0 - deadline / rt_max)
                survival = pt.log((1.0 - p_outlier) * pt.exp(survival) + missed)
            total = total + pt.sum(pt.switch(data["missing"].astype(bool), survival, 0.0))
        pm.Potential("loglik", total)
    return pymc_model


def fit_reference(study: Study, model: GroupModel, group_index: np.ndarray, chains: int = 4, tune: int = 1000,
                  draws: int = 1000, seed: int = 0, q_init: float = 0.5, **options) -> xr.DataTree:
    """NUTS (nutpie) on :func:`reference_model` (`options`: its deadline, missing, p_outlier
    and rt_max); the posterior's attributes give the time (compilation and sampling) and the
    divergences."""
    import nutpie

    start = time.perf_counter()
    compiled = nutpie.compile_pymc_model(reference_model(study, model, group_index, q_init, **options))
    compiled_at = time.perf_counter()
    trace = nutpie.sample(compiled, chains=chains, tune=tune, draws=draws, seed=seed, progress_bar=False)
    trace["posterior"].attrs.update({"compile_seconds": compiled_at - start,
                                     "sample_seconds": time.perf_counter() - compiled_at,
                                     "divergences": int(trace["sample_stats"]["diverging"].sum())})
    return trace

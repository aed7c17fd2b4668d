"""The hierarchical model in PyMC with the exact WFPT likelihood, sampled by NUTS (nutpie): the
reference the amortized group sampler is validated against, not a tool for studies.

The same model as :mod:`amortized_rlddm.group.model`, parameterised for NUTS: the group
normal of every parameter but t0 is non-centred (y = mu + sigma * z, z ~ Normal(0, 1));
t0 is sampled on each participant's own interval below their fastest response (where the
likelihood is not zero) and its group normal density, with the Jacobian, enters as a
potential, so the posterior has no cliff for NUTS to fall off. With contaminant responses
(p_outlier > 0) any t0 is possible, and t0 is non-centred like the others. Missing responses
enter as in the per-participant model: censored by a deadline (the survival probability) or
ignorable; excluded trials update the Q-values and add nothing. The participants' trials are
laid end to end without padding, and the Q-values come from the closed form's nonzero terms
only (:func:`~amortized_rlddm.exact.qvalues.q_difference_terms`).

With correlated group normals (`GroupModel.correlated`) the sds and the correlation matrix
come from PyMC's LKJCholeskyCov (sd_dist the half-normals, eta LKJ_ETA), over the parameters
in an order that puts t0 last when it sits on its interval: the others are non-centred
(y = mu + L_11 u, u ~ Normal(0, I)), and t0's normal given them, Normal(mu_t0 + L_21 u,
L_22), enters as the potential with its Jacobian, as above. ``rho`` holds the correlations
in the pair order of :func:`~amortized_rlddm.group.model.correlation_pairs`.
"""

import time

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from ..data.study import Study
from ..exact.logdensity import choice_log_likelihood, log_likelihood, t0_below_fastest_response
from ..exact.model import _model_arrays
from ..exact.participant import participant_trials
from ..exact.qvalues import closed_form_terms, q_difference_terms
from ..model.likelihood import check_missing
from ..model.priors import log_jacobian, to_natural, to_unbounded
from ..model.task import LikelihoodSettings
from .model import LKJ_ETA, GroupModel, correlation_pairs


def _end_to_end_arrays(study: Study, q_init: float | None, censored: bool):
    """Every participant's trials laid end to end (no padding): the likelihood's arrays,
    each trial's participant and the closed form's nonzero terms (:func:`closed_form_terms`)."""
    parts, terms, start = [], [], 0
    q_inits = np.empty(study.n_participants)
    for i in range(study.n_participants):
        trials, _, data_q_init = participant_trials(study, i)
        n = trials["choice"].shape[0]
        own_q_init = data_q_init if data_q_init is not None else 0.5 if q_init is None else q_init
        arrays = _model_arrays(trials, n, "closed_form", censored, own_q_init)
        q_inits[i] = arrays["q_init"]
        own = closed_form_terms(arrays)
        own["term_trial"] = own["term_trial"] + start
        own["term_participant"] = np.full(own["term_trial"].shape, i)
        terms.append(own)
        parts.append({"participant": np.full(n, i), **{k: arrays[k] for k in arrays
                                                         if k not in ("q_init", "sign", "power_pos", "power_neg")}})
        start += n
    data = {k: np.concatenate([part[k] for part in parts], axis=-1) for k in parts[0]}
    data.update({k: np.concatenate([own[k] for own in terms]) for k in terms[0]})
    data["q_init"] = q_inits
    return data


def reference_model(study: Study, model: GroupModel, group_index: np.ndarray,
                    settings: LikelihoodSettings | None = None) -> pm.Model:
    """The PyMC hierarchical model of a study (see the module notes) under the likelihood
    `settings` (:class:`~amortized_rlddm.model.task.LikelihoodSettings`)."""
    settings = settings or LikelihoodSettings()
    check_missing(study, settings)
    p_outlier = settings.p_outlier
    m, s = model.hyperpriors()
    data = _end_to_end_arrays(study, settings.q_init, settings.missing == "deadline")
    scored = data["scored"].astype(bool)
    fastest = np.full(study.n_participants, np.inf)
    np.minimum.at(fastest, data["participant"][scored], data["rt"][scored])
    n_groups = int(group_index.max()) + 1
    coords = {"participant": [str(p) for p in study.participant], "group": list(model.groups)[:n_groups]}
    if model.correlated:
        coords["pair"] = [f"{a}, {b}" for a, b in correlation_pairs(model.names)]
    with pm.Model(coords=coords) as pymc_model:
        parameters = _correlated_parameters if model.correlated else _independent_parameters
        theta = parameters(model, m, s, group_index, fastest, p_outlier)
        alpha_pos = theta.get("alpha_pos", theta.get("alpha"))
        alpha_neg = theta.get("alpha_neg", theta.get("alpha"))
        dq = q_difference_terms(data, alpha_pos, alpha_neg, data["q_init"])
        trial_of = data["participant"]
        if "beta" in theta:  # a choice-only model
            total = choice_log_likelihood(data, theta["beta"][trial_of] * dq, p_outlier)
        else:
            drift, a, z, t0 = (theta["v"][trial_of] * dq, theta["a"][trial_of], theta["z"][trial_of],
                               theta["t0"][trial_of])
            total = log_likelihood(data, drift, a, z, t0, settings.deadline, p_outlier, settings.rt_max)
        pm.Potential("loglik", total)
    return pymc_model


def _t0_on_interval(log_group_density, lo, hi, fastest):
    """Each participant's t0 on its interval below their fastest response, whose density is
    the group normal's of y(t0) (`log_group_density`, a function of y) with the Jacobian."""
    return t0_below_fastest_response(lambda t0: log_group_density(to_unbounded(t0, lo, hi, pt))
                                     + log_jacobian(t0, lo, hi, pt), lo, np.minimum(fastest, hi), dims="participant")


def _independent_parameters(model, m, s, group_index, fastest, p_outlier):
    """The participants' parameters (name -> PyTensor vector) under independent group
    normals, each non-centred but t0 on its interval (see the module notes)."""
    theta = {}
    for k, (name, (lo, hi)) in enumerate(zip(model.names, model.space.bounds)):
        mu = pm.Normal(f"mu_{name}", m[k], s[k], dims="group")
        sigma = pm.HalfNormal(f"sigma_{name}", s[k])
        if name == "t0" and p_outlier == 0.0:
            theta[name] = _t0_on_interval(lambda y, mu=mu, sigma=sigma: pm.logp(pm.Normal.dist(mu[group_index], sigma),
                                                                                 y), lo, hi, fastest)
        else:
            offset = pm.Normal(f"{name}_offset", 0.0, 1.0, dims="participant")
            theta[name] = pm.Deterministic(name, to_natural(mu[group_index] + sigma * offset, lo, hi, pt),
                                           dims="participant")
    return theta


def _correlated_parameters(model, m, s, group_index, fastest, p_outlier):
    """The participants' parameters (name -> PyTensor vector) under correlated group normals
    (see the module notes), with mu_<name>, sigma_<name> and rho as named variables."""
    names, bounds = list(model.names), model.space.bounds
    cliff = p_outlier == 0.0 and "t0" in names  # t0 on its interval, last in the order
    order = [k for k, name in enumerate(names) if not (cliff and name == "t0")] + ([names.index("t0")] if cliff else [])
    free = len(order) - int(cliff)
    mu = [pm.Normal(f"mu_{names[k]}", m[k], s[k], dims="group") for k in order]
    factor, corr, sds = pm.LKJCholeskyCov("group_cholesky", n=len(order), eta=LKJ_ETA,
                                          sd_dist=pm.HalfNormal.dist(s[order], shape=len(order)), compute_corr=True)
    for position, k in enumerate(order):
        pm.Deterministic(f"sigma_{names[k]}", sds[position])
    position = {k: i for i, k in enumerate(order)}
    pm.Deterministic("rho", pt.stack([corr[position[names.index(b)], position[names.index(a)]]
                                      for a, b in correlation_pairs(names)]), dims="pair")
    offset = pm.Normal("group_offset", 0.0, 1.0, shape=(len(group_index), free))
    y = pt.stack([mu[i][group_index] for i in range(free)], axis=-1) + offset @ factor[:free, :free].T
    theta = {names[k]: pm.Deterministic(names[k], to_natural(y[:, i], *bounds[k], pt), dims="participant")
             for i, k in enumerate(order[:free])}
    if cliff:
        t0 = names.index("t0")
        mean = mu[-1][group_index] + offset @ factor[-1, :free]
        theta["t0"] = _t0_on_interval(lambda y_t0: pm.logp(pm.Normal.dist(mean, factor[-1, -1]), y_t0),
                                      *bounds[t0], fastest)
    return theta


def fit_reference(study: Study, model: GroupModel, group_index: np.ndarray, chains: int = 4, tune: int = 1000,
                  draws: int = 1000, seed: int = 0, settings: LikelihoodSettings | None = None) -> xr.DataTree:
    """NUTS (nutpie) on :func:`reference_model`; the posterior's attributes give the time
    (compilation and sampling) and the divergences."""
    import nutpie

    start = time.perf_counter()
    compiled = nutpie.compile_pymc_model(reference_model(study, model, group_index, settings))
    compiled_at = time.perf_counter()
    trace = nutpie.sample(compiled, chains=chains, tune=tune, draws=draws, seed=seed, progress_bar=False)
    trace["posterior"].attrs.update({"compile_seconds": compiled_at - start,
                                     "sample_seconds": time.perf_counter() - compiled_at,
                                     "divergences": int(trace["sample_stats"]["diverging"].sum())})
    return trace

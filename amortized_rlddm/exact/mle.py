"""Maximum-likelihood fits of one participant with the exact NumPy likelihood."""

import numpy as np
from scipy import optimize

from ..data.study import Study
from ..model.likelihood import loglik
from ..model.priors import ParameterSpace, PriorSet, choice_only
from .participant import check_trials, participant_trials


def _interior(bounds, margin=1e-6):
    """Clip limits just inside (lo, hi), so that starting points map to finite values."""
    lo, hi = bounds
    width = hi - lo if np.isfinite(hi - lo) else 1.0
    return lo + margin * width, hi - margin * width


def fit_mle(data, priors: PriorSet, participant=0, starts=10, seed=None, q_init=None, deadline=None,
            missing=None):
    """Maximum-likelihood fit of one participant with :func:`amortized_rlddm.model.likelihood.loglik`.

    q_init, deadline and missing as in ``loglik`` (q_init by default the data's, else 0.5).
    Each parameter is optimised on an unconstrained scale mapped onto its prior's support;
    the RL-DDM's t0 is also kept below the fastest response, where the likelihood is positive.
    The model is the one the priors' names make (:data:`~amortized_rlddm.model.config.MODELS`:
    the RL-DDM's or a choice-only model's).
    `starts` starting points are drawn from the priors (a t0 draw at or above the fastest
    response is replaced by a uniform draw below it) and each is refined with L-BFGS-B.
    Returns {"params": name -> value, "loglik": best log-likelihood, "starts": list of the
    log-likelihoods reached from each start}.
    """
    trials, pid, data_q_init = participant_trials(data, participant)
    check_trials(trials, needs_rt=not choice_only(priors.names))
    n = trials["choice"].shape[0]
    study = Study(participant=np.array([pid]), n_trials=np.array([n]), choice=trials["choice"][None],
                  rt=trials["rt"][None].astype(float), reward=trials["reward"][None],
                  block=trials["block"][None].astype(np.int32),
                  condition=trials["condition"][None].astype(np.int32), excluded=trials["excluded"][None],
                  condition_labels=range(int(trials["condition"].max(initial=0)) + 1),
                  q_init=None if data_q_init is None else np.array([data_q_init]))
    names = priors.names
    bounds = {nm: priors.support(nm) for nm in names}
    if "t0" in names:  # t0 below the fastest response, as in the network's space (one participant: scalars)
        t0_bounds = ParameterSpace.given_data(priors, study).bounds[names.index("t0")]
        bounds["t0"] = tuple(float(b[0]) for b in t0_bounds)
    space = ParameterSpace(priors, supports=bounds)

    def params_of(x):
        return {nm: np.atleast_1d(value) for nm, value in space.inverse(x).items()}

    def objective(x):
        value = -loglik(study, params_of(x), q_init=q_init, deadline=deadline, missing=missing)[0]
        return value if np.isfinite(value) else 1e12

    rng = np.random.default_rng(seed)
    draws = priors.sample(rng, starts)
    if "t0" in names:
        lo, hi = bounds["t0"]
        too_slow = draws["t0"] >= lo + 0.999 * (hi - lo)
        if too_slow.any():
            draws["t0"][too_slow] = rng.uniform(lo, hi, too_slow.sum())
    results = []
    for s in range(starts):
        x0 = space.forward({nm: np.clip(draws[nm][s], *_interior(bounds[nm])) for nm in names})
        results.append(optimize.minimize(objective, x0, method="L-BFGS-B"))
    best = min(results, key=lambda r: r.fun)
    return {"params": {nm: float(v[0]) for nm, v in params_of(best.x).items()}, "loglik": -float(best.fun),
            "starts": [-float(r.fun) for r in results]}

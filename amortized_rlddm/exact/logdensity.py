"""The exact model's log density in PyTensor, shared by the PyMC models (one participant's
NUTS fit, :mod:`.model`, and the group reference, :mod:`amortized_rlddm.group.reference`).

It is the target :class:`~amortized_rlddm.model.target.ExactTarget` evaluates in Numba, written
symbolically for the gradients NUTS needs; the tests check the two agree point by point.
"""

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from .wfpt import wfpt_log_survival, wfpt_logp

__all__ = ["choice_log_likelihood", "log_likelihood", "t0_below_fastest_response"]


def log_likelihood(data, drift, a, z, t0, deadline=None, p_outlier=0.0, rt_max=10.0):
    """The exact log-likelihood of trials, summed (a PyTensor scalar).

    Parameters
    ----------
    data
        Arrays or PyTensor variables over trials: ``rt``, ``choice`` (1: the upper boundary),
        ``scored`` (1 where a response enters the likelihood) and, with a deadline,
        ``missing`` (1 where a missing response is censored by it).
    drift, a, z, t0
        Each trial's drift rate and the DDM's parameters (scalars or one value per trial).
    deadline
        The response deadline (s) of censored missing responses, or None.
    p_outlier, rt_max
        The contaminant mixture: with probability p_outlier a response's RT is uniform on
        [0, rt_max] and its choice random; a contaminant may also miss the deadline.
    """
    logp = wfpt_logp(data["rt"] - t0, pt.eq(data["choice"], 1), drift, a, z)
    if p_outlier > 0.0:
        contaminant = pt.switch(pt.le(data["rt"], rt_max), np.log(0.5 * p_outlier / rt_max), -np.inf)
        logp = pt.logaddexp(np.log1p(-p_outlier) + logp, contaminant)
    total = pt.sum(pt.switch(pt.eq(data["scored"], 1), logp, 0.0))
    if deadline is not None:
        survival = wfpt_log_survival(deadline - t0, drift, a, z)
        if p_outlier > 0.0:
            missed = p_outlier * max(0.0, 1.0 - deadline / rt_max)
            survival = pt.log((1.0 - p_outlier) * pt.exp(survival) + missed)
        total = total + pt.sum(pt.switch(pt.eq(data["missing"], 1), survival, 0.0))
    return total


def choice_log_likelihood(data, logit, lapse=0.0):
    """The log-likelihood of a choice-only model's responses, summed (a PyTensor scalar):
    P(choice = 1) = (1 - lapse) logistic(logit) + lapse / 2, logit = beta (Q1 - Q0) per trial;
    `data` as in :func:`log_likelihood` (rt unused)."""
    signed = pt.switch(pt.eq(data["choice"], 1), logit, -logit)
    logp = -pt.softplus(-signed)  # log logistic
    if lapse > 0.0:
        logp = pt.log((1.0 - lapse) * pt.exp(logp) + 0.5 * lapse)
    return pt.sum(pt.switch(pt.eq(data["scored"], 1), logp, 0.0))


def t0_below_fastest_response(log_density, lower, ceiling, dims=None):
    """t0 on the interval (lower, ceiling) where the likelihood is not zero, inside a PyMC model.

    The sampler moves u (``t0_interval``, flat): t0 = lower + (ceiling - lower) sigmoid(u),
    the map of :class:`~amortized_rlddm.model.priors.ParameterSpace.given_data`, and the
    potential ``t0_density`` adds t0's log density (`log_density`, a function of t0: its prior,
    or its group normal with the Jacobian) and the Jacobian of u -> t0. The exact posterior
    piles up against the fastest response; on the prior's own support NUTS would fall off
    that cliff. `ceiling`: the fastest scored response (or the prior's upper bound, if
    lower), a number, an array over participants or a PyTensor variable. Returns t0, a
    deterministic.
    """
    u = pm.Flat("t0_interval", dims=dims)
    t0 = lower + (ceiling - lower) * pt.sigmoid(u)
    log_dt0_du = pt.log(ceiling - lower) + pt.log(pt.sigmoid(u)) + pt.log(pt.sigmoid(-u))
    pm.Potential("t0_density", log_density(t0) + log_dt0_du)
    return pm.Deterministic("t0", t0, dims=dims)

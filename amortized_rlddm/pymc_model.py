"""Exact-likelihood inference with PyMC: the reference posterior the networks are checked against.

The RL-DDM of DESIGN.md §2 written in PyTensor, so that NUTS samples the exact posterior of
one participant and maximum likelihood can be compared with it:

* :func:`wfpt_logp` - log WFPT density at either boundary, vectorised and differentiable;
  :func:`wfpt_log_survival` - log P(decision time > t) for a missed response deadline.
* :class:`ExactPosterior` - the PyMC model of one participant, built and compiled once with
  data containers padded to ``max_trials``; :meth:`ExactPosterior.fit` samples each
  participant of a study by swapping the data in.
* :func:`fit_mle` - maximum likelihood with :func:`amortized_rlddm.likelihood.loglik`.
* :func:`bench_nuts` - time one fit per NUTS backend.

Q-values. Rewards are 0 or 1 and Q-values stay in [0, 1], so the prediction error r - Q is
>= 0 after a reward and <= 0 otherwise (and where it is 0 the rate does not matter): a
rewarded update is always ``Q <- (1 - alpha_pos) Q + alpha_pos`` and an unrewarded one
``Q <- (1 - alpha_neg) Q``. Each Q-value before trial t is therefore a
closed-form sum over the earlier rewarded trials of its arm in its block, with exponents that
are update counts known from the data (``q_values="closed_form"``, a (trials x trials)
weighted sum). ``q_values="scan"`` replays the trials with ``pytensor.scan`` instead. Both
give the drift of every trial at once, and the WFPT density is then evaluated vectorised.

The closed form costs O(trials^2) and the scan O(trials) with a larger constant;
``q_values="auto"`` takes the closed form up to 300 trials and the scan above.

Measured with :func:`bench_nuts` and :func:`bench_logp` on a 2-core machine shared with a
running network training (load 2-6: absolute times are inflated and vary by about 30%
between runs); PyMC 6.4, PyTensor 3.3, nutpie 0.16.11. One single-rate participant of the
default design (60 trials), 4 chains x (1000 tune + 1000 draws), chains on both cores:

    backend                            compile      first fit   warm fit / participant
    nutpie, Numba logp, closed form    34 s, once    6.7 s        6.4 s
    nutpie, Numba logp, scan           32 s, once   22 s         19 s
    nutpie-jax, JAX logp and gradient   3.4 s, once 28 s         30 s
    pymc, PyMC's NUTS, Numba logp      in each fit  37 s         29 s
    pymc-c, PyMC's NUTS, C logp        in each fit  61 s         79 s (52 s in another run)

Every fit had r-hat <= 1.004, bulk ESS >= 1700 and 0-3 divergences in 4000 draws. Log
posterior plus gradient, one evaluation (Numba): 60 trials 105 us (closed form) vs 197 us
(scan); 500 trials 2.4 ms vs 1.1 ms. NumPyro and BlackJAX are not installed and were not
measured. The default backend is therefore nutpie with the Numba logp: its compilation is
paid once per ExactPosterior, then each participant costs only sampling.
"""

import math
import time
from dataclasses import dataclass

import arviz as az
import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import xarray as xr
from scipy import optimize

from .config import MODELS
from .likelihood import loglik
from .priors import Beta, Normal, ParameterSpace, PriorSet, TruncatedNormal, Uniform
from .simulator import simulate
from .study import Study
from .task import TaskDesign
from .wiener import _TAIL

_LOG_2PI = math.log(2.0 * math.pi)
_LOG_PI = math.log(math.pi)
_PI2 = math.pi * math.pi


# ---------------------------------------------------------------------------------------------
# WFPT density
# ---------------------------------------------------------------------------------------------

def _density_terms(tail):
    """Most terms a density series needs when the shorter of the two is used (as in wiener.py).

    Beyond k = 0 the small-time series needs floor((w + sqrt(w^2 + 2 tail u)) / 2) terms and
    the large-time one floor(sqrt(1 + 2 tail / (pi^2 u))) for a relative tail below
    exp(-tail); the shorter of the two is longest where the counts cross, at w = 1.
    """
    def gap(log_u):
        u = math.exp(log_u)
        return 0.5 * (1.0 + math.sqrt(1.0 + 2.0 * tail * u)) - math.sqrt(1.0 + 2.0 * tail / (_PI2 * u))

    u = math.exp(optimize.brentq(gap, -20.0, 20.0))
    return int(math.sqrt(1.0 + 2.0 * tail / (_PI2 * u)))


_K = np.arange(1, _density_terms(_TAIL) + 1, dtype=float)  # k = 1..4 for exp(-50) tails
_K_SIGN = np.where(_K % 2 == 1, 1.0, -1.0)  # (-1)^(k+1): sin(k pi w) = (-1)^(k+1) sin(k pi (1-w))


def _use_small_time(u, w):
    """True where the small-time series needs no more terms than the large-time one."""
    return 0.5 * (w + pt.sqrt(w * w + 2.0 * _TAIL * u)) <= pt.sqrt(1.0 + 2.0 * _TAIL / (_PI2 * u))


def _log_small_time(u, w, small):
    """Log standardised lower density from the small-time series (used where `small`).

    The k = 0 term (the one-barrier Levy density) is factored out; the pair of terms k and -k
    is added in exponential form, or as 2 exp(-2k^2/u) [cosh x - (4k^2/u) sinh(x)/x] with
    x = 2kw/u <= 1/2, where the exponential form would cancel (w near 0).
    """
    uk, wk = pt.shape_padright(u), pt.shape_padright(w)
    x = 2.0 * _K * wk / uk
    wide = x > 0.5
    pair_exp = (1.0 + 2.0 * _K / wk) * pt.exp(-2.0 * _K * (_K + wk) / uk) \
        + (1.0 - 2.0 * _K / wk) * pt.exp(-2.0 * _K * (_K - wk) / uk)
    xs = pt.switch(wide, 0.5, pt.maximum(x, 1e-300))  # keeps the unused branch finite
    pair_hyp = 2.0 * pt.exp(-2.0 * _K * _K / uk) * (pt.cosh(xs) - 4.0 * _K * _K / uk * pt.sinh(xs) / xs)
    ratio = pt.switch(small, 1.0 + pt.sum(pt.switch(wide, pair_exp, pair_hyp), axis=-1), 1.0)
    return pt.log(w) - 0.5 * (_LOG_2PI + 3.0 * pt.log(u)) - w * w / (2.0 * u) + pt.log(ratio)


def _log_large_time(u, w, small):
    """Log standardised lower density from the large-time series (used where not `small`)."""
    uk, wk = pt.shape_padright(u), pt.shape_padright(w)
    sine = pt.switch(wk <= 0.5, pt.sin(_K * math.pi * wk), _K_SIGN * pt.sin(_K * math.pi * (1.0 - wk)))
    total = pt.sum(_K * pt.exp(-(_K * _K - 1.0) * _PI2 * uk / 2.0) * sine, axis=-1)
    return _LOG_PI - _PI2 * u / 2.0 + pt.log(pt.switch(small, 1.0, total))


def wfpt_logp(t, upper, v, a, w):
    """Log WFPT density of decision time `t` at the upper (True) or lower boundary.

    Unit noise, drift `v` toward the upper boundary, boundary separation `a`, relative start
    point `w` from the lower boundary (DESIGN.md §2); the upper density is the lower one with
    v -> -v and w -> 1 - w. Arguments broadcast. Per element the Navarro & Fuss (2009)
    small-time or large-time series is used, whichever needs fewer terms for an exp(-50)
    relative tail (at most four, so both are evaluated with four terms and one is selected),
    with its leading term factored out so that nothing under- or overflows. -inf where t <= 0.
    Every branch is evaluated at finite arguments, so gradients are finite everywhere.
    """
    t, upper, v, a, w = pt.broadcast_arrays(*map(pt.as_tensor, (t, upper, v, a, w)))
    v = pt.switch(upper, -v, v)
    w = pt.switch(upper, 1.0 - w, w)
    positive = t > 0.0
    t = pt.switch(positive, t, 1.0)
    u = t / (a * a)
    small = _use_small_time(u, w)
    log_std = pt.switch(small, _log_small_time(u, w, small), _log_large_time(u, w, small))
    logp = -v * a * w - 0.5 * v * v * t - 2.0 * pt.log(a) + log_std
    return pt.switch(positive, logp, -np.inf)


# ---------------------------------------------------------------------------------------------
# WFPT survival
# ---------------------------------------------------------------------------------------------

_SURVIVAL_TERMS = 32
_KS = np.arange(1, _SURVIVAL_TERMS + 1, dtype=float)
# the large-time survival series with 32 terms has an exp(-50) tail for t / a^2 above this
_SURVIVAL_MIN_U = 2.0 * _TAIL / (_PI2 * (_SURVIVAL_TERMS ** 2 - 1.0))
_IMAGES = 5
_KI = np.arange(_IMAGES, dtype=float)
# the small-time CDF series with 5 image pairs has an exp(-50) tail for t / a^2 below this
_CDF_MAX_U = 2.0 * _IMAGES ** 2 / _TAIL


def _log_ndtr(x):
    """log Phi(x), accurate in both tails (erfcx below -1, log1p of erfc above)."""
    lo = pt.minimum(x, -1.0)
    hi = pt.maximum(x, -1.0)
    return pt.switch(x < -1.0,
                     pt.log(0.5 * pt.erfcx(-lo / math.sqrt(2.0))) - 0.5 * lo * lo,
                     pt.log1p(-0.5 * pt.erfc(hi / math.sqrt(2.0))))


def _log_lower_survival_large(t, v, a, w):
    """Log P(lower boundary hit after t): the large-time series integrated term by term."""
    tk, vk, ak, wk = (pt.shape_padright(x) for x in (t, v, a, w))
    scale = _PI2 / (2.0 * ak * ak)
    lam = 0.5 * vk * vk + _KS * _KS * scale
    total = pt.sum(_KS * pt.sin(_KS * math.pi * wk) * pt.exp(-(_KS * _KS - 1.0) * scale * tk) / lam, axis=-1)
    lam1 = 0.5 * v * v + _PI2 / (2.0 * a * a)
    return _LOG_PI - 2.0 * pt.log(a) - v * a * w - lam1 * t + pt.log(total)


def _log_lower_cdf_small(t, v, a, w):
    """Log P(lower boundary hit by t): the small-time (image) series integrated term by term.

    Image c = a (w + 2k) contributes sign(c) e^{-vaw} [e^{-v|c|} Phi((vt - |c|)/sqrt t)
    + e^{v|c|} Phi(-(vt + |c|)/sqrt t)], summed in log space over the positive (k >= 0) and the
    negative (k < 0) images separately.
    """
    tk, vk, ak, wk = (pt.shape_padright(x) for x in (t, v, a, w))
    root = pt.sqrt(tk)

    def log_terms(c):
        return pt.concatenate([-vk * c + _log_ndtr((vk * tk - c) / root),
                               vk * c + _log_ndtr(-(vk * tk + c) / root)], axis=-1)

    pos = pt.logsumexp(log_terms(ak * (wk + 2.0 * _KI)), axis=-1)
    neg = pt.logsumexp(log_terms(ak * (2.0 * (_KI + 1.0) - wk)), axis=-1)
    return -v * a * w + pos + pt.log1mexp(neg - pos)


def wfpt_log_survival(t, v, a, w):
    """Log P(decision time > t), both boundaries together (a missed response deadline).

    Arguments broadcast; 0 where t <= 0. Two exact series, chosen per element:
    the large-time series of each boundary's survival (32 terms, converged for t/a^2 >= 0.0099),
    or one minus the small-time series of both boundary CDFs (5 image pairs, converged for
    t/a^2 <= 1). The large-time series multiplies its sum by up to exp(max(-vaw, va(1-w)) - lam1 t)
    and so cancels when that growth is positive; it is used where it has converged and
    either does not grow or the small-time series has not converged. (wiener.log_survival
    uses the large-time series alone and loses digits where the growth is large: log S at
    t = 0.001, v = -10, a = 5, w = 0.98 is -0.000552, NumPy gives -2.0.) The small-time
    form, 1 - CDF, keeps about 1e-16 absolute accuracy in S.
    """
    t, v, a, w = pt.broadcast_arrays(*map(pt.as_tensor, (t, v, a, w)))
    a2 = a * a
    positive = t > 0.0
    u = pt.switch(positive, t / a2, 1.0)
    growth = pt.maximum(-v * a * w, v * a * (1.0 - w)) - (0.5 * v * v + _PI2 / (2.0 * a2)) * u * a2
    large = (u >= _SURVIVAL_MIN_U) & ((growth <= 0.0) | (u > _CDF_MAX_U))
    # each series is evaluated where it is used and at a harmless point elsewhere
    t_large = a2 * pt.switch(large, u, 1.0)
    t_small = a2 * pt.switch(large, 0.5 * _CDF_MAX_U, u)
    log_large = pt.logaddexp(_log_lower_survival_large(t_large, v, a, w),
                             _log_lower_survival_large(t_large, -v, a, 1.0 - w))
    log_cdf = pt.logaddexp(_log_lower_cdf_small(t_small, v, a, w),
                           _log_lower_cdf_small(t_small, -v, a, 1.0 - w))
    log_small = pt.log1mexp(pt.minimum(log_cdf, 0.0))
    return pt.switch(positive, pt.minimum(pt.switch(large, log_large, log_small), 0.0), 0.0)


# ---------------------------------------------------------------------------------------------
# Q-values
# ---------------------------------------------------------------------------------------------

Q_VALUES = ("closed_form", "scan")
_CLOSED_FORM_MAX_TRIALS = 300  # "auto": where the closed form is still the faster (bench_logp)


def _q_difference_scan(data, alpha_pos, alpha_neg, q_init):
    """Q[1] - Q[0] before each trial, by replaying the trials with pytensor.scan."""
    q_start = pt.as_tensor(np.float64(q_init))
    rates = [alpha_pos] if alpha_pos is alpha_neg else [alpha_pos, alpha_neg]  # scan rejects duplicates

    def step(upper, reward, reset, responded, q0, q1, *rates):
        q0 = pt.switch(reset, q_start, q0)
        q1 = pt.switch(reset, q_start, q1)
        chosen = pt.switch(upper, q1, q0)
        delta = reward - chosen
        learned = chosen + pt.switch(delta > 0.0, rates[0], rates[-1]) * delta
        return (pt.switch(responded & ~upper, learned, q0), pt.switch(responded & upper, learned, q1),
                q1 - q0)

    _, _, dq = pytensor.scan(
        step, sequences=[pt.eq(data["choice"], 1), data["reward"], pt.eq(data["reset"], 1),
                         pt.ge(data["choice"], 0)],
        outputs_info=[q_start, q_start, None], non_sequences=rates, return_updates=False)
    return dq


def _q_difference_closed_form(data, alpha_pos, alpha_neg, q_init):
    """Q[1] - Q[0] before each trial from the update counts (see the module docstring).

    Q_arm(t) = q_init (1-alpha_pos)^P (1-alpha_neg)^N
               + alpha_pos sum_j (1-alpha_pos)^{P - P_j - 1} (1-alpha_neg)^{N - N_j},
    over the earlier rewarded trials j of that arm in the block, where P and N count the
    rewarded and unrewarded updates of the arm before t and P_j, N_j those before j.
    """
    log_keep_pos = pt.log1p(-alpha_pos)
    log_keep_neg = pt.log1p(-alpha_neg)
    kept = pt.exp(data["count_pos"] * log_keep_pos + data["count_neg"] * log_keep_neg)  # (2, T)
    learned = pt.sum(data["sign"] * pt.exp(data["power_pos"] * log_keep_pos + data["power_neg"] * log_keep_neg),
                     axis=1)
    return q_init * (kept[1] - kept[0]) + alpha_pos * learned


def _closed_form_arrays(choice, reward, block):
    """Update counts and the weight structure of :func:`_q_difference_closed_form`."""
    n = choice.shape[0]
    idx = np.arange(n)
    responded = choice >= 0
    start = np.maximum.accumulate(np.where(np.r_[True, block[1:] != block[:-1]], idx, 0))
    arms = np.arange(2)[:, None, None]
    outcomes = np.array([1, 0])[None, :, None]
    updates = (responded & (choice == arms) & (reward == outcomes)).astype(np.int64)  # (arm, outcome, T)
    before = np.cumsum(updates, axis=-1) - updates
    counts = before - before[..., start]  # updates before each trial within its block
    arm = np.where(responded, choice, 0)
    earlier = (idx[None, :] < idx[:, None]) & (start[None, :] == start[:, None]) \
        & (responded & (reward == 1))[None, :]
    powers = counts[arm[None, :], :, idx[:, None]] - counts[arm, :, idx][None, :, :]  # (t, j, outcome)
    return {"count_pos": counts[:, 0].astype(float), "count_neg": counts[:, 1].astype(float),
            "sign": np.where(earlier, 2.0 * arm[None, :] - 1.0, 0.0),
            "power_pos": np.where(earlier, powers[..., 0] - 1, 0).astype(float),
            "power_neg": np.where(earlier, powers[..., 1], 0).astype(float)}


# ---------------------------------------------------------------------------------------------
# Data of one participant
# ---------------------------------------------------------------------------------------------

def _participant_trials(data, index):
    """choice, rt, reward, block (1-D, the participant's own trials) and its id."""
    if isinstance(data, Study):
        n = int(data.n_trials[index])
        return ({"choice": data.choice[index, :n], "rt": data.rt[index, :n], "reward": data.reward[index, :n],
                 "block": data.block[index, :n]}, data.participant[index])
    trials = {k: np.asarray(data[k]) for k in ("choice", "rt", "reward")}
    trials["block"] = np.asarray(data.get("block", np.zeros(trials["choice"].shape[0], np.int32)))
    return trials, data.get("participant", index)


def _check_trials(trials):
    choice, rt, reward = trials["choice"], trials["rt"], trials["reward"]
    shapes = {k: np.shape(x) for k, x in trials.items()}
    if len(set(shapes.values())) != 1 or len(shapes["choice"]) != 1:
        raise ValueError(f"choice, rt, reward and block must be 1-D arrays of one length, got {shapes}")
    responded = choice >= 0
    if not np.isin(choice, (-1, 0, 1)).all() or not np.isin(reward[responded], (0, 1)).all():
        raise ValueError("choice must be 0, 1 or -1 (missing) and rewards of responses 0 or 1")
    if not (np.isfinite(rt[responded]) & (rt[responded] > 0)).all():
        raise ValueError("every response needs a finite rt > 0")


def _model_arrays(trials, max_trials, q_values, deadline):
    """The model's data containers for one participant, padded to max_trials."""
    n = trials["choice"].shape[0]
    if n > max_trials:
        raise ValueError(f"participant has {n} trials but the model was built for max_trials={max_trials}")
    pad = max_trials - n
    choice = np.pad(trials["choice"].astype(np.int64), (0, pad), constant_values=-1)
    responded = choice >= 0
    reward = np.where(responded, np.pad(trials["reward"], (0, pad), constant_values=0), 0).astype(np.int64)
    block = np.pad(trials["block"].astype(np.int64), (0, pad), mode="edge" if n else "constant")
    arrays = {"choice": choice,
              "rt": np.where(responded, np.pad(trials["rt"], (0, pad), constant_values=1.0), 1.0)}
    if deadline is not None:
        arrays["missing"] = np.r_[np.ones(n, np.int64), np.zeros(pad, np.int64)] * (~responded)
    if q_values == "scan":
        arrays["reward"] = reward.astype(float)
        arrays["reset"] = np.r_[True, block[1:] != block[:-1]].astype(np.int64)
    else:
        arrays.update(_closed_form_arrays(choice, reward, block))
    return arrays


def _pymc_distribution(prior):
    """(PyMC distribution class, its float64 arguments) of a :mod:`amortized_rlddm.priors` prior.

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


def _pymc_prior(name, prior):
    """The PyMC random variable of a :mod:`amortized_rlddm.priors` prior."""
    cls, args = _pymc_distribution(prior)
    return cls(name, **args)


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------

BACKENDS = ("nutpie", "nutpie-jax", "pymc", "pymc-c")


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
    """NUTS on the exact RL-DDM likelihood, one participant at a time.

    priors: a :class:`~amortized_rlddm.priors.PriorSet` with the single-rate (v, a, z, t0,
        alpha) or dual-rate (alpha_pos, alpha_neg) parameter names; each prior becomes the
        PyMC distribution of the same family and support.
    model: "single" or "dual"; must match the names of `priors`.
    max_trials: the data containers' length; participants with fewer trials are padded.
    q_init: initial Q-value of both arms, in [0, 1]. deadline: the design's response deadline
        (s); when given, a missing response adds log P(decision time > deadline - t0),
        otherwise it adds nothing. A missing response never updates the Q-values.
    q_values: "closed_form", "scan" or "auto" (the closed form up to 300 trials; see the
        module docstring).
    backend: "nutpie" (nutpie, Numba-compiled logp), "nutpie-jax", "pymc" (PyMC's NUTS,
        Numba-compiled logp) or "pymc-c" (PyMC's NUTS, C-compiled logp).

    The model is built once; nutpie backends also compile it once and swap each participant's
    data into the compiled model. PyMC's own sampler recompiles inside every ``pm.sample``
    call (from PyTensor's cache after the first).
    """

    def __init__(self, priors: PriorSet, model="single", max_trials=60, q_init=0.5, deadline=None,
                 q_values="auto", backend="nutpie"):
        if model not in MODELS:
            raise ValueError(f"model must be one of {sorted(MODELS)}, got {model!r}")
        if set(priors.names) != set(MODELS[model]):
            raise ValueError(f"priors have parameters {list(priors.names)}, the {model} model needs "
                             f"{list(MODELS[model])}")
        if not 0.0 <= q_init <= 1.0:
            raise ValueError(f"q_init must be in [0, 1], got {q_init}")
        if q_values == "auto":
            q_values = "closed_form" if max_trials <= _CLOSED_FORM_MAX_TRIALS else "scan"
        if q_values not in Q_VALUES:
            raise ValueError(f"q_values must be one of {Q_VALUES + ('auto',)}, got {q_values!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if deadline is not None and not deadline > 0:
            raise ValueError(f"deadline must be > 0 seconds or None, got {deadline!r}")
        self.priors = priors
        self.parameter_names = MODELS[model]
        self.max_trials = int(max_trials)
        self.q_init = float(q_init)
        self.deadline = deadline
        self.q_values = q_values
        self.backend = backend
        self.model = self._build()
        self._compiled = None

    def _build(self):
        empty = {"choice": np.zeros(0, np.int8), "rt": np.zeros(0), "reward": np.zeros(0, np.int8),
                 "block": np.zeros(0, np.int32)}
        t0_low, t0_high = self.priors.support("t0")
        with pm.Model() as model:
            data = {name: pm.Data(name, value) for name, value in
                    _model_arrays(empty, self.max_trials, self.q_values, self.deadline).items()}
            responded = pt.ge(data["choice"], 0)
            # t0's prior is truncated at the fastest response, where the likelihood becomes zero,
            # so its interval transform spans only the values the data allow, as in the
            # network's space. The exact posterior piles up against that edge; on the prior's
            # own support the sampler diverged there. The truncation's normalising constant
            # depends on the data only, so the posterior is unchanged. t0 starts halfway.
            fastest = pt.min(pt.switch(responded, data["rt"], np.inf))
            ceiling = pt.minimum(fastest, t0_high if np.isfinite(t0_high) else t0_low + 1.0)
            p = {}
            for name in self.parameter_names:
                if name == "t0":
                    cls, args = _pymc_distribution(self.priors.priors[name])
                    p[name] = pm.Truncated(name, cls.dist(**args), lower=t0_low, upper=ceiling,
                                           initval=t0_low + 0.5 * (ceiling - t0_low))
                else:
                    p[name] = _pymc_prior(name, self.priors.priors[name])
            alpha_pos, alpha_neg = (p["alpha"], p["alpha"]) if "alpha" in p else (p["alpha_pos"], p["alpha_neg"])
            q_difference = _q_difference_scan if self.q_values == "scan" else _q_difference_closed_form
            drift = p["v"] * q_difference(data, alpha_pos, alpha_neg, self.q_init)
            logp = wfpt_logp(data["rt"] - p["t0"], pt.eq(data["choice"], 1), drift, p["a"], p["z"])
            total = pt.sum(pt.switch(responded, logp, 0.0))
            if self.deadline is not None:
                survival = wfpt_log_survival(self.deadline - p["t0"], drift, p["a"], p["z"])
                total = total + pt.sum(pt.switch(pt.eq(data["missing"], 1), survival, 0.0))
            pm.Potential("loglik", total)
        return model

    def set_participant(self, data, index=0):
        """Put participant `index` of a Study (or one participant's arrays) into the model.

        data: a :class:`~amortized_rlddm.study.Study`, or a mapping with 1-D arrays choice
        (0/1, -1 missing), rt (s, NaN missing), reward (0/1) and optionally block.
        Returns the participant's id and the arrays set.
        """
        trials, participant = _participant_trials(data, index)
        _check_trials(trials)
        responded = trials["choice"] >= 0
        t0_low = self.priors.support("t0")[0]
        if responded.any() and trials["rt"][responded].min() <= t0_low:
            raise ValueError(f"participant {participant!r}: fastest rt {trials['rt'][responded].min()} s is not "
                             f"above the lower bound {t0_low} of the t0 prior")
        if self.deadline is not None and responded.any() and trials["rt"][responded].max() > self.deadline:
            raise ValueError(f"participant {participant!r}: an rt exceeds the deadline {self.deadline} s")
        arrays = _model_arrays(trials, self.max_trials, self.q_values, self.deadline)
        pm.set_data(arrays, model=self.model)
        return participant, arrays

    def _compile_nutpie(self):
        import nutpie

        if self._compiled is None:
            jax = self.backend == "nutpie-jax"
            # freeze_model=False keeps the data containers swappable (and t0's data-dependent start)
            self._compiled = nutpie.compile_pymc_model(self.model, backend="jax" if jax else "numba",
                                                       gradient_backend="jax" if jax else "pytensor",
                                                       freeze_model=False)
        return self._compiled

    def compile(self):
        """Compile the model now (nutpie backends; PyMC compiles inside each fit)."""
        if self.backend.startswith("nutpie"):
            self._compile_nutpie()

    def fit_one(self, data, index=0, draws=1000, tune=1000, chains=4, seed=None, cores=None):
        """NUTS posterior of one participant (see :meth:`set_participant` for `data`)."""
        start = time.perf_counter()
        participant, arrays = self.set_participant(data, index)
        if self.backend.startswith("nutpie"):
            import nutpie

            compiled = self._compile_nutpie().with_data(**arrays)
            trace = nutpie.sample(compiled, draws=draws, tune=tune, chains=chains, seed=seed, cores=cores,
                                  progress_bar=False)
        else:
            mode = "NUMBA" if self.backend == "pymc" else "CVM"
            trace = pm.sample(draws=draws, tune=tune, chains=chains, cores=cores, random_seed=seed,
                              model=self.model, nuts_sampler="pymc", compile_kwargs={"mode": mode},
                              progressbar=False, quiet=True, compute_convergence_checks=False)
        wall = time.perf_counter() - start
        posterior = trace["posterior"].to_dataset()[list(self.parameter_names)]
        diagnostics = {
            "rhat_max": float(az.rhat(posterior).to_array().max()),
            "ess_bulk_min": float(az.ess(posterior, method="bulk").to_array().min()),
            "divergences": int(trace["sample_stats"]["diverging"].sum()),
            "wall_time_s": wall,
        }
        return ParticipantFit(participant, trace, diagnostics)

    def fit(self, data, participants=None, draws=1000, tune=1000, chains=4, seed=None, cores=None):
        """NUTS posterior of each participant of a Study, or of one participant's arrays.

        participants: indices into the study (default: all). seed: int; participant i of the
        list is sampled with seed + i. Returns a list of :class:`ParticipantFit`;
        :func:`posterior_tree` stacks them into one DataTree.
        """
        if not isinstance(data, Study):
            return [self.fit_one(data, 0, draws, tune, chains, seed, cores)]
        indices = range(data.n_participants) if participants is None else participants
        return [self.fit_one(data, i, draws, tune, chains, None if seed is None else seed + k, cores)
                for k, i in enumerate(indices)]


def posterior_tree(fits):
    """Stack participant fits into one DataTree: a posterior group (chain, draw, participant).

    The layout of the amortized posterior (DESIGN.md §4), with participant ids as strings.
    """
    posteriors = [f.trace["posterior"].to_dataset() for f in fits]
    stacked = xr.concat(posteriors, dim="participant", coords="minimal", compat="override")
    stacked = stacked.assign_coords(participant=[str(f.participant) for f in fits])
    return xr.DataTree.from_dict({"posterior": stacked.transpose("chain", "draw", "participant")})


# ---------------------------------------------------------------------------------------------
# Maximum likelihood
# ---------------------------------------------------------------------------------------------

def _interior(bounds, margin=1e-6):
    """Clip limits just inside (lo, hi), so that starting points map to finite values."""
    lo, hi = bounds
    width = hi - lo if np.isfinite(hi - lo) else 1.0
    return lo + margin * width, hi - margin * width


def fit_mle(data, priors: PriorSet, participant=0, starts=10, seed=None, q_init=0.5, deadline=None):
    """Maximum-likelihood fit of one participant with :func:`amortized_rlddm.likelihood.loglik`.

    Each parameter is optimised on an unconstrained scale mapped onto its prior's support;
    t0 is also kept below the fastest response, where the likelihood is positive.
    `starts` starting points are drawn from the priors (a t0 draw at or above the fastest
    response is replaced by a uniform draw below it) and each is refined with L-BFGS-B.
    Returns {"params": name -> value, "loglik": best log-likelihood, "starts": list of the
    log-likelihoods reached from each start}.
    """
    trials, pid = _participant_trials(data, participant)
    _check_trials(trials)
    n = trials["choice"].shape[0]
    study = Study(participant=np.array([pid]), n_trials=np.array([n]), choice=trials["choice"][None],
                  rt=trials["rt"][None].astype(float), reward=trials["reward"][None],
                  block=trials["block"][None].astype(np.int32))
    names = priors.names
    # t0 below the fastest response, as in the network's space (one participant: scalars)
    t0_bounds = ParameterSpace.given_data(priors, study).bounds[names.index("t0")]
    bounds = {nm: priors.support(nm) for nm in names} | {"t0": tuple(float(b[0]) for b in t0_bounds)}
    space = ParameterSpace(priors, supports=bounds)

    def params_of(x):
        return {nm: np.atleast_1d(value) for nm, value in space.inverse(x).items()}

    def objective(x):
        value = -loglik(study, params_of(x), q_init=q_init, deadline=deadline)[0]
        return value if np.isfinite(value) else 1e12

    rng = np.random.default_rng(seed)
    draws = priors.sample(rng, starts)
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


# ---------------------------------------------------------------------------------------------
# Benchmark
# ---------------------------------------------------------------------------------------------

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

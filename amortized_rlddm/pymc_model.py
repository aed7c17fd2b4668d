"""Exact-likelihood inference with PyMC (draft)."""

import math

import numpy as np
import pytensor.tensor as pt
from scipy import optimize

from .wiener import _TAIL

_LOG_2PI = math.log(2.0 * math.pi)
_PI2 = math.pi * math.pi
_LOG_PI = math.log(math.pi)


def _density_terms(tail):
    """Most terms either density series needs when the shorter one is used (see wiener.py).

    The small-time series needs floor((w + sqrt(w^2 + 2 tail u)) / 2) terms beyond k = 0,
    the large-time one floor(sqrt(1 + 2 tail / (pi^2 u))); the shorter is at its longest
    where the two counts cross, at w = 1.
    """
    def gap(log_u):
        u = math.exp(log_u)
        return 0.5 * (1.0 + math.sqrt(1.0 + 2.0 * tail * u)) - math.sqrt(1.0 + 2.0 * tail / (_PI2 * u))
    u = math.exp(optimize.brentq(gap, -20.0, 20.0))
    return int(math.floor(math.sqrt(1.0 + 2.0 * tail / (_PI2 * u))))


_DENSITY_TERMS = _density_terms(_TAIL)
_K = np.arange(1, _DENSITY_TERMS + 1, dtype=float)
_K_SIGN = np.where(_K % 2 == 1, 1.0, -1.0)  # (-1)^(k+1)


def _use_small_time(u, w):
    return 0.5 * (w + pt.sqrt(w * w + 2.0 * _TAIL * u)) <= pt.sqrt(1.0 + 2.0 * _TAIL / (_PI2 * u))


def _log_small_time(u, w, small):
    uk, wk = pt.shape_padright(u), pt.shape_padright(w)
    x = 2.0 * _K * wk / uk
    wide = x > 0.5
    pair_exp = (1.0 + 2.0 * _K / wk) * pt.exp(-2.0 * _K * (_K + wk) / uk) \
        + (1.0 - 2.0 * _K / wk) * pt.exp(-2.0 * _K * (_K - wk) / uk)
    xs = pt.switch(wide, 0.25, pt.maximum(x, 1e-300))
    pair_hyp = 2.0 * pt.exp(-2.0 * _K * _K / uk) * (pt.cosh(xs) - 4.0 * _K * _K / uk * pt.sinh(xs) / xs)
    ratio = 1.0 + pt.sum(pt.switch(wide, pair_exp, pair_hyp), axis=-1)
    ratio = pt.switch(small, ratio, 1.0)
    return pt.log(w) - 0.5 * (_LOG_2PI + 3.0 * pt.log(u)) - w * w / (2.0 * u) + pt.log(ratio)


def _log_large_time(u, w, small):
    uk, wk = pt.shape_padright(u), pt.shape_padright(w)
    s = pt.switch(wk <= 0.5, pt.sin(_K * math.pi * wk), _K_SIGN * pt.sin(_K * math.pi * (1.0 - wk)))
    total = pt.sum(_K * pt.exp(-(_K * _K - 1.0) * _PI2 * uk / 2.0) * s, axis=-1)
    total = pt.switch(small, 1.0, total)
    return _LOG_PI - _PI2 * u / 2.0 + pt.log(total)


def wfpt_logp(t, upper, v, a, w):
    t, upper, v, a, w = pt.broadcast_arrays(pt.as_tensor(t), pt.as_tensor(upper), pt.as_tensor(v),
                                           pt.as_tensor(a), pt.as_tensor(w))
    v = pt.switch(upper, -v, v)
    w = pt.switch(upper, 1.0 - w, w)
    positive = t > 0.0
    t = pt.switch(positive, t, 1.0)
    u = t / (a * a)
    small = _use_small_time(u, w)
    log_std = pt.switch(small, _log_small_time(u, w, small), _log_large_time(u, w, small))
    logp = -v * a * w - 0.5 * v * v * t - 2.0 * pt.log(a) + log_std
    return pt.switch(positive, logp, -np.inf)


_SURVIVAL_TERMS = 16
_SURVIVAL_MIN_U = 2.0 * _TAIL / (_PI2 * (_SURVIVAL_TERMS ** 2 - 1.0))
_KS = np.arange(1, _SURVIVAL_TERMS + 1, dtype=float)
_IMAGES = 3
_KI = np.arange(_IMAGES, dtype=float)


def _log_ndtr(x):
    lo = pt.minimum(x, -1.0)
    hi = pt.maximum(x, -1.0)
    return pt.switch(x < -1.0,
                     pt.log(0.5 * pt.erfcx(-lo / math.sqrt(2.0))) - 0.5 * lo * lo,
                     pt.log1p(-0.5 * pt.erfc(hi / math.sqrt(2.0))))


def _log_lower_survival_large(t, v, a, w, use):
    tk, vk, ak, wk = (pt.shape_padright(x) for x in (t, v, a, w))
    scale = _PI2 / (2.0 * ak * ak)
    lam = 0.5 * vk * vk + _KS * _KS * scale
    total = pt.sum(_KS * pt.sin(_KS * math.pi * wk) * pt.exp(-(_KS * _KS - 1.0) * scale * tk) / lam, axis=-1)
    total = pt.switch(use, total, 1.0)
    lam1 = 0.5 * v * v + _PI2 / (2.0 * a * a)
    return _LOG_PI - 2.0 * pt.log(a) - v * a * w - lam1 * t + pt.log(total)


def _log_lower_cdf_small(t, v, a, w):
    tk, vk, ak, wk = (pt.shape_padright(x) for x in (t, v, a, w))
    root = pt.sqrt(tk)

    def log_g(c):
        return pt.concatenate([-vk * c + _log_ndtr((vk * tk - c) / root),
                               vk * c + _log_ndtr(-(vk * tk + c) / root)], axis=-1)
    pos = pt.logsumexp(log_g(ak * (wk + 2.0 * _KI)), axis=-1)
    neg = pt.logsumexp(log_g(ak * (2.0 * (_KI + 1.0) - wk)), axis=-1)
    return -v * a * w + pos + pt.log1mexp(neg - pos)


def wfpt_log_survival(t, v, a, w):
    t, v, a, w = pt.broadcast_arrays(pt.as_tensor(t), pt.as_tensor(v), pt.as_tensor(a), pt.as_tensor(w))
    positive = t > 0.0
    t = pt.switch(positive, t, 1.0)
    large = t / (a * a) >= _SURVIVAL_MIN_U
    log_large = pt.logaddexp(_log_lower_survival_large(t, v, a, w, large),
                             _log_lower_survival_large(t, -v, a, 1.0 - w, large))
    log_cdf = pt.logaddexp(_log_lower_cdf_small(t, v, a, w), _log_lower_cdf_small(t, -v, a, 1.0 - w))
    log_small = pt.log1mexp(pt.switch(large, -1.0, log_cdf))
    return pt.switch(positive, pt.minimum(pt.switch(large, log_large, log_small), 0.0), 0.0)

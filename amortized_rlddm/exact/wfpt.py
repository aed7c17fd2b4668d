"""The WFPT density and survival in PyTensor: vectorised, differentiable, in log space.

* :func:`wfpt_logp` - log WFPT density at either boundary (small- or large-time series per
  element, as in :mod:`amortized_rlddm.model.wiener`);
* :func:`wfpt_log_survival` - log P(decision time > t), for a missed response deadline.
"""

import math

import numpy as np
import pytensor.tensor as pt
from scipy import optimize

from ..model.wiener import SERIES_TAIL

_LOG_2PI = math.log(2.0 * math.pi)
_LOG_PI = math.log(math.pi)
_PI2 = math.pi * math.pi


def _density_terms(tail):
    """Most terms a density series needs when the shorter of the two is used (as in model/wiener.py).

    Beyond k = 0 the small-time series needs floor((w + sqrt(w^2 + 2 tail u)) / 2) terms and
    the large-time one floor(sqrt(1 + 2 tail / (pi^2 u))) for a relative tail below
    exp(-tail); the shorter of the two is longest where the counts cross, at w = 1.
    """
    def gap(log_u):
        u = math.exp(log_u)
        return 0.5 * (1.0 + math.sqrt(1.0 + 2.0 * tail * u)) - math.sqrt(1.0 + 2.0 * tail / (_PI2 * u))

    u = math.exp(optimize.brentq(gap, -20.0, 20.0))
    return int(math.sqrt(1.0 + 2.0 * tail / (_PI2 * u)))


_K = np.arange(1, _density_terms(SERIES_TAIL) + 1, dtype=float)  # k = 1..4 for exp(-50) tails
_K_SIGN = np.where(_K % 2 == 1, 1.0, -1.0)  # (-1)^(k+1): sin(k pi w) = (-1)^(k+1) sin(k pi (1-w))


def _use_small_time(u, w):
    """True where the small-time series needs no more terms than the large-time one."""
    return 0.5 * (w + pt.sqrt(w * w + 2.0 * SERIES_TAIL * u)) <= pt.sqrt(1.0 + 2.0 * SERIES_TAIL / (_PI2 * u))


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
    point `w` from the lower boundary (docs/model.md); the upper density is the lower one with
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


_SURVIVAL_TERMS = 32
_KS = np.arange(1, _SURVIVAL_TERMS + 1, dtype=float)
# the large-time survival series with 32 terms has an exp(-50) tail for t / a^2 above this
_SURVIVAL_MIN_U = 2.0 * SERIES_TAIL / (_PI2 * (_SURVIVAL_TERMS ** 2 - 1.0))
_IMAGES = 5
_KI = np.arange(_IMAGES, dtype=float)
# the small-time CDF series with 5 image pairs has an exp(-50) tail for t / a^2 below this
_CDF_MAX_U = 2.0 * _IMAGES ** 2 / SERIES_TAIL


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

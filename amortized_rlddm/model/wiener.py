"""The Wiener first-passage time (WFPT): exact log density, survival and sampling.

Conventions (docs/model.md): unit noise, boundary separation ``a``, relative start point
``w`` measured from the lower boundary, drift ``v`` (positive drift points to the upper
boundary). Densities are *defective*: the lower-boundary density integrates to P(lower).

Density: the small-time and large-time series of Navarro & Fuss (2009), each evaluated
with its leading term factored out so the sum stays in log space; the series needing fewer
terms is used. Sampling: exact, never an Euler walk (see :func:`sample_first_passage`).
"""

import math

import numba as nb
import numpy as np

from .fast_random import chi_square_1, new_state, uniform

# A series is truncated once the next term is below exp(-SERIES_TAIL) relative to the leading one.
SERIES_TAIL = 50.0
_SERIES_FLOOR = math.exp(-SERIES_TAIL)
_LOG_2PI = math.log(2.0 * math.pi)
_PI2 = math.pi * math.pi


@nb.njit(cache=True)
def _use_small_time(u, w):
    """True when the small-time series needs fewer terms than the large-time one."""
    return 0.5 * (w + math.sqrt(w * w + 2.0 * SERIES_TAIL * u)) <= math.sqrt(1.0 + 2.0 * SERIES_TAIL / (_PI2 * u))


@nb.njit(cache=True)
def _small_time_ratio(u, w):
    """Small-time series sum_k (w + 2k) exp(-((w + 2k)^2 - w^2) / 2u) divided by its k=0 term w.

    Terms k and -k together are (1 + 2k/w) A_k + (1 - 2k/w) B_k with A_k = exp(-2k(k + w)/u)
    and B_k = exp(-2k(k - w)/u), the larger; both follow from A_1 and B_1 by products
    (A_{k+1} = A_k A_1 G^k, B_{k+1} = B_k B_1 G^k, G = A_1 B_1), two exponentials in all.
    Where x = 2kw/u <= 0.5 the pair is taken as 2 exp(-2k^2/u) [cosh(x) - (4k^2/u) sinh(x)/x],
    which stays accurate when w is near 0 (where it nearly cancels).
    """
    inv_u = 1.0 / u
    a_1 = math.exp(-2.0 * (1.0 + w) * inv_u)
    b_1 = math.exp(-2.0 * (1.0 - w) * inv_u)
    g, g_power = a_1 * b_1, 1.0
    a_k, b_k = a_1, b_1
    total = 1.0
    k = 1
    while b_k >= _SERIES_FLOOR:
        x = 2.0 * k * w * inv_u
        if x > 0.5:
            ratio = 2.0 * k / w
            total += (1.0 + ratio) * a_k + (1.0 - ratio) * b_k
        else:
            sinhc = math.sinh(x) / x if x > 1e-8 else 1.0
            total += 2.0 * math.exp(-2.0 * k * k * inv_u) * (math.cosh(x) - 4.0 * k * k * inv_u * sinhc)
        g_power *= g
        a_k *= a_1 * g_power
        b_k *= b_1 * g_power
        k += 1
    return total


@nb.njit(cache=True)
def _large_time_sum(u, w):
    """sum_k k exp(-(k^2 - 1) pi^2 u / 2) sin(k pi w): the large-time series over its k=1 decay."""
    total = 0.0
    k = 1
    while True:
        # sin(k pi w) from the nearer end of (0, 1), keeping precision for w near 1
        s = math.sin(k * math.pi * w) if w <= 0.5 else (1 - 2 * (k % 2 == 0)) * math.sin(k * math.pi * (1.0 - w))
        total += k * math.exp(-(k * k - 1.0) * _PI2 * u / 2.0) * s
        k += 1
        if (k * k - 1.0) * _PI2 * u / 2.0 > SERIES_TAIL:
            return total


@nb.njit(cache=True)
def _log_std_density(u, w, log_w):
    """Log density of hitting the lower boundary at normalised time u (v=0, a=1); log_w = log(w)
    (given, so that a caller evaluating many times at one w computes it once). In the
    small-time branch log(u^-3/2 x ratio) is one logarithm (two where u^3/2 would underflow)."""
    if _use_small_time(u, w):
        lead = log_w - 0.5 * _LOG_2PI - w * w / (2.0 * u)
        if u > 1e-150:
            return lead + math.log(_small_time_ratio(u, w) / (u * math.sqrt(u)))
        return lead - 1.5 * math.log(u) + math.log(_small_time_ratio(u, w))
    total = _large_time_sum(u, w)
    if total <= 0.0:
        return -math.inf
    return math.log(math.pi) - _PI2 * u / 2.0 + math.log(total)


@nb.njit(cache=True)
def _two_barrier_ratio(u, w):
    """Two-barrier over one-barrier passage density at normalised time u (in [0, 1])."""
    if _use_small_time(u, w):
        return _small_time_ratio(u, w)
    total = _large_time_sum(u, w)
    return math.pi * math.sqrt(2.0 * math.pi * u * u * u) / w \
        * math.exp(w * w / (2.0 * u) - _PI2 * u / 2.0) * total


@nb.njit(cache=True)
def _normalised_time(t, a):
    """t / a^2 for t > 0, or inf where it overflows or a^2 underflows (a below about 1e-154):
    the boundaries then all but touch, and no time t > 0 has density or survival."""
    a2 = a * a
    return t / a2 if a2 > 0.0 else math.inf


@nb.njit(cache=True)
def log_density_lower(t, v, a, w):
    """Log WFPT density of a lower-boundary response at decision time t (-inf if t <= 0)."""
    return log_density_lower_at(t, v, a, w, math.log(a), math.log(w))


@nb.njit(cache=True)
def log_density_lower_at(t, v, a, w, log_a, log_w):
    """:func:`log_density_lower` with log(a) and log(w) given: a likelihood that evaluates many
    trials of one parameter draw computes them once per draw."""
    if t <= 0.0:
        return -math.inf
    u = _normalised_time(t, a)
    if u == math.inf:
        return -math.inf
    return -v * a * w - 0.5 * v * v * t - 2.0 * log_a + _log_std_density(u, w, log_w)


@nb.njit(cache=True)
def log_density(t, upper, v, a, w):
    """Log WFPT density of a response at the upper (True) or lower boundary."""
    if upper:
        return log_density_lower(t, -v, a, 1.0 - w)
    return log_density_lower(t, v, a, w)


@nb.njit(cache=True)
def log_density_at(t, upper, v, a, w, log_a, log_w, log_1mw):
    """:func:`log_density` with log(a), log(w) and log(1 - w) given (see :func:`log_density_lower_at`)."""
    if upper:
        return log_density_lower_at(t, -v, a, 1.0 - w, log_a, log_1mw)
    return log_density_lower_at(t, v, a, w, log_a, log_w)


@nb.njit(cache=True)
def prob_upper(v, a, w):
    """P(upper) = (1 - exp(-2vaw)) / (1 - exp(-2va)), with its v -> 0 limit w."""
    x = 2.0 * v * a
    if abs(x) < 1e-10:
        return w
    if x > 0.0:
        return math.expm1(-x * w) / math.expm1(-x)
    # same ratio multiplied through by exp(x), so large negative drifts cannot overflow
    return math.exp(x * (1.0 - w)) * math.expm1(x * w) / math.expm1(x)


@nb.njit(cache=True)
def _lower_survival(t, v, a, w):
    """P(lower boundary hit after t): large-time series integrated term by term."""
    if t <= 0.0:
        return 1.0 - prob_upper(v, a, w)
    scale = _PI2 / (2.0 * a * a)
    lam1 = 0.5 * v * v + scale
    total = 0.0
    k = 1
    while True:
        lam = 0.5 * v * v + k * k * scale
        total += k * math.sin(k * math.pi * w) * math.exp(-(lam - lam1) * t) / lam
        if (lam - lam1) * t > SERIES_TAIL and k > 1:
            break
        k += 1
    return max(math.pi / (a * a) * math.exp(-v * a * w - lam1 * t) * total, 0.0)


_CDF_IMAGES = 6  # image pairs of the small-time CDF series; the tail is below exp(-50) for u <= 1


@nb.njit(cache=True)
def _log_normal_cdf(x):
    """log Phi(x): erfc down to x = -30, below that the asymptotic series (error < 1e-12)."""
    if x >= -30.0:
        return math.log(0.5 * math.erfc(-x / math.sqrt(2.0)))
    r = 1.0 / (x * x)
    return -0.5 * x * x - math.log(-x) - 0.5 * _LOG_2PI + math.log1p(r * (-1.0 + r * (3.0 + r * (-15.0 + 105.0 * r))))


@nb.njit(cache=True)
def _log_sum_exp(x, y):
    if x == -math.inf and y == -math.inf:
        return -math.inf
    m = max(x, y)
    return m + math.log(math.exp(x - m) + math.exp(y - m))


@nb.njit(cache=True)
def _log_image_terms(c, t, v):
    """Log of the passage probability by t through the image at distance c (c > 0):
    e^{-vc} Phi((vt - c)/sqrt t) + e^{vc} Phi(-(vt + c)/sqrt t)."""
    root = math.sqrt(t)
    return _log_sum_exp(-v * c + _log_normal_cdf((v * t - c) / root), v * c + _log_normal_cdf(-(v * t + c) / root))


@nb.njit(cache=True)
def _log_lower_cdf_small(t, v, a, w):
    """Log P(lower boundary hit by t): the small-time (image) series integrated term by term.
    Images at a(w + 2k) add, images at a(2(k + 1) - w) subtract (k >= 0); each group is
    summed in log space and their difference taken once."""
    plus = -math.inf
    minus = -math.inf
    for k in range(_CDF_IMAGES):
        plus = _log_sum_exp(plus, _log_image_terms(a * (w + 2.0 * k), t, v))
        minus = _log_sum_exp(minus, _log_image_terms(a * (2.0 * (k + 1) - w), t, v))
    if minus >= plus:
        return -math.inf
    return -v * a * w + plus + math.log1p(-math.exp(minus - plus))


@nb.njit(cache=True)
def log_survival(t, v, a, w):
    """Log P(decision time > t), both boundaries together (a missed response deadline).

    The large-time series is multiplied by exp(max(-vaw, va(1-w)) - lambda_1 t); where that
    factor exceeds 1 at a short time (a steep drift toward the far boundary) its terms cancel,
    so there the survival is one minus the small-time series of both boundaries' CDFs.
    """
    if t <= 0.0:
        return 0.0
    u = _normalised_time(t, a)
    if u == math.inf:
        return -math.inf
    growth = max(-v * a * w, v * a * (1.0 - w)) - (0.5 * v * v + _PI2 / (2.0 * a * a)) * t
    if growth > 0.0 and u <= 1.0:
        log_cdf = _log_sum_exp(_log_lower_cdf_small(t, v, a, w), _log_lower_cdf_small(t, -v, a, 1.0 - w))
        if log_cdf >= 0.0:
            return -math.inf
        return math.log1p(-math.exp(log_cdf))
    s = _lower_survival(t, v, a, w) + _lower_survival(t, -v, a, 1.0 - w)
    if s <= 0.0:
        return -math.inf
    return math.log(min(s, 1.0))


@nb.njit(cache=True)
def sample_first_passage(v, a, w, state):
    """Draw (hit upper boundary?, decision time) exactly, using generator `state`.

    The boundary comes from the closed-form P(upper). The time is drawn by rejection: the
    proposal is the one-barrier passage to the chosen boundary (an inverse Gaussian, or a
    Levy law when v = 0), whose density bounds the two-barrier one pointwise; a proposal is
    accepted with the exact density ratio, which does not depend on the drift. Expected
    proposals per draw are at most 2.
    """
    upper = uniform(state) < prob_upper(v, a, w)
    dist = (1.0 - w) * a if upper else w * a  # distance to the chosen boundary
    w_chosen = 1.0 - w if upper else w
    mu = abs(v)
    a2 = a * a
    while True:
        y = chi_square_1(state) / dist
        # stable inverse-Gaussian root (mean dist/mu, shape dist^2); dist^2 / z^2 when mu = 0
        t = dist / (mu + 0.5 * y + math.sqrt(0.25 * y * y + mu * y))
        if mu > 0.0 and uniform(state) * (dist + mu * t) > dist:
            t = dist * dist / (mu * mu * t)
        if uniform(state) < _two_barrier_ratio(t / a2, w_chosen):
            return upper, t


@nb.njit(cache=True)
def _sample_many(v, a, w, n, state):
    upper = np.empty(n, dtype=np.bool_)
    times = np.empty(n)
    for i in range(n):
        upper[i], times[i] = sample_first_passage(v, a, w, state)
    return upper, times


def sample(v, a, w, n, seed):
    """Draw n first passages for fixed (v, a, w): boolean upper-boundary flags and times."""
    return _sample_many(float(v), float(a), float(w), int(n), new_state(seed))


@nb.njit(cache=True)
def _log_density_vec(t, upper, v, a, w):
    out = np.empty(t.shape[0])
    for i in range(t.shape[0]):
        out[i] = log_density(t[i], upper[i], v[i], a[i], w[i])
    return out


def log_wfpt(t, upper, v, a, w):
    """Vectorised log WFPT density; arguments broadcast against each other."""
    t, upper, v, a, w = np.broadcast_arrays(
        np.asarray(t, float), np.asarray(upper, bool), np.asarray(v, float),
        np.asarray(a, float), np.asarray(w, float))
    shape = t.shape
    out = _log_density_vec(t.ravel(), upper.ravel(), v.ravel(), a.ravel(), w.ravel())
    return out.reshape(shape)

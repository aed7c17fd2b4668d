"""The WFPT density and sampler against analytic truth (docs/model.md)."""

import numpy as np
import pytest
from scipy import integrate, stats

from amortized_rlddm.model import wiener

# (v, t0, a, w, rt, lower-boundary density) from docs/model.md
KNOWN = [
    (0.6056010862462016, 0.16871208306308166, 1.5524386791394562, 0.1286318302691049, 0.3836652143729468, 0.62063048896871487),  # noqa: E501
    (0.7175299762398688, 0.3566056886339434, 2.220795104898356, 0.45773365470000554, 2.1966769477884225, 0.030138660738276948),  # noqa: E501
    (-0.5187897244595112, 0.21532637320553233, 2.481938472673327, 0.18482168074390404, 1.0697490678038166, 0.23165988979463398),  # noqa: E501
    (-0.5719411096293123, 0.28837526790403306, 2.1929805341020145, 0.2243768947148022, 1.0791694385505024, 0.27868915917309367),  # noqa: E501
]


@pytest.mark.parametrize("v, t0, a, w, rt, density", KNOWN)
def test_known_lower_densities(v, t0, a, w, rt, density):
    got = np.exp(wiener.log_density(rt - t0, False, v, a, w))
    assert got == pytest.approx(density, rel=1e-9)


@pytest.mark.parametrize("v, t0, a, w, rt, density", KNOWN)
def test_upper_is_mirrored_lower(v, t0, a, w, rt, density):
    got = np.exp(wiener.log_density(rt - t0, True, -v, a, 1.0 - w))
    assert got == pytest.approx(density, rel=1e-9)


def test_known_both_boundaries():
    assert np.exp(wiener.log_density(1.0, False, 1.0, 2.0, 0.5)) == pytest.approx(0.051025988021, rel=1e-9)
    assert np.exp(wiener.log_density(1.0, True, 1.0, 2.0, 0.5)) == pytest.approx(0.377033887991, rel=1e-9)


def test_not_positive_time_has_zero_density():
    assert wiener.log_density(0.0, True, 1.0, 1.0, 0.5) == -np.inf
    assert wiener.log_density(-0.1, False, 1.0, 1.0, 0.5) == -np.inf


@pytest.mark.parametrize("a", [1e-200, 5e-324])
def test_boundaries_that_all_but_touch_have_no_density_or_survival(a):
    """Where a^2 underflows (a sampler's unbounded value far out on log a), every time t > 0
    has zero density and survival: -inf, not an error."""
    for upper in (False, True):
        assert wiener.log_density(0.3, upper, 1.0, a, 0.5) == -np.inf
    assert wiener.log_survival(0.3, 1.0, a, 0.5) == -np.inf
    assert -np.inf < wiener.log_density(0.3, False, 1.0, 1e-100, 0.5) < -1e199  # a^2 = 1e-200: computed


@pytest.mark.parametrize("t, w", [(1e-200, 1e-99), (1e-12, 1e-6), (1e-3, 0.02)])
def test_density_at_very_short_times_is_the_one_barrier_density(t, w):
    # at t << a^2 the far boundary cannot be reached: the density is Levy's passage density of the
    # near one, w / sqrt(2 pi t^3) exp(-w^2 / 2t) (v = 0, a = 1), even where t^3/2 underflows
    expected = np.log(w) - 0.5 * np.log(2 * np.pi) - 1.5 * np.log(t) - w * w / (2 * t)
    assert wiener.log_density(t, False, 0.0, 1.0, w) == pytest.approx(expected, rel=1e-12)


def test_density_with_its_logarithms_given_is_the_density():
    rng = np.random.default_rng(4)
    draws = rng.uniform(0.01, 4, 50), rng.normal(0, 3, 50), rng.uniform(0.4, 4, 50), rng.uniform(0.01, 0.99, 50)
    for t, v, a, w in zip(*draws):
        assert wiener.log_density_lower_at(t, v, a, w, np.log(a), np.log(w)) == wiener.log_density_lower(t, v, a, w)


PARAMS = [(0.0, 1.0, 0.5), (1.0, 2.0, 0.5), (-2.5, 0.3, 0.1), (6.0, 0.3, 0.9), (-6.0, 5.0, 0.1),
          (0.7, 5.0, 0.9), (3.0, 1.5, 0.02), (-0.4, 1.2, 0.98)]


def _density(t, upper, v, a, w):
    return np.exp(wiener.log_density(t, upper, v, a, w)) if t > 0 else 0.0


@pytest.mark.parametrize("v, a, w", PARAMS)
def test_density_integrates_to_boundary_probabilities(v, a, w):
    scale = a * a  # decision times scale with a^2
    masses = []
    for upper in (False, True):
        total = 0.0
        edges = scale * np.array([0.0, 0.01, 0.1, 1.0, 10.0, np.inf])
        for lo, hi in zip(edges[:-1], edges[1:]):
            total += integrate.quad(_density, lo, hi, args=(upper, v, a, w), limit=200, epsabs=1e-13)[0]
        masses.append(total)
    assert sum(masses) == pytest.approx(1.0, abs=1e-8)
    assert masses[1] == pytest.approx(wiener.prob_upper(v, a, w), abs=1e-8)


def test_prob_upper_closed_form():
    for v, a, w in PARAMS:
        if v == 0:
            expected = w
        else:
            expected = (1 - np.exp(-2 * v * a * w)) / (1 - np.exp(-2 * v * a))
        assert wiener.prob_upper(v, a, w) == pytest.approx(expected, rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("v, a, w", [(0.5, 1.0, 0.5), (-1.0, 2.0, 0.3), (2.0, 0.3, 0.9)])
def test_survival_matches_integrated_density(v, a, w):
    for t in (0.05 * a * a, 0.3 * a * a, 2.0 * a * a):
        done = sum(integrate.quad(_density, 0, t, args=(upper, v, a, w), limit=200, epsabs=1e-14)[0]
                   for upper in (False, True))
        assert np.exp(wiener.log_survival(t, v, a, w)) == pytest.approx(1.0 - done, abs=1e-9)


@pytest.mark.parametrize("t, v, a, w", [(0.001, -10.0, 5.0, 0.98), (0.05, 8.0, 4.0, 0.05),
                                        (0.5, -6.0, 3.0, 0.9), (0.3, 7.0, 2.5, 0.1)])
def test_survival_with_steep_drift_toward_the_far_boundary(t, v, a, w):
    # where the large-time series cancels (its prefactor exp(max(-vaw, va(1-w)) - lambda_1 t)
    # is huge), the survival must still match the integrated density in log space
    edges = np.unique(np.r_[0.0, np.geomspace(1e-4 * t, t, 12)])
    done = sum(integrate.quad(_density, lo, hi, args=(upper, v, a, w), limit=200, epsabs=1e-15, epsrel=1e-12)[0]
               for upper in (False, True) for lo, hi in zip(edges[:-1], edges[1:]))
    assert wiener.log_survival(t, v, a, w) == pytest.approx(np.log1p(-done), rel=1e-7, abs=1e-13)


def analytic_lower_cdf(t, v, a, w, terms=4000):
    """P(lower boundary hit by t): Feller's large-time series integrated term by term
    (independent of the package's density code)."""
    t = np.asarray(t, float)[:, None]
    k = np.arange(1, terms + 1)[None, :]
    lam = 0.5 * v * v + k ** 2 * np.pi ** 2 / (2 * a * a)
    tail = (np.pi / a ** 2) * np.exp(-v * a * w) * np.sum(k * np.sin(k * np.pi * w) * np.exp(-lam * t) / lam, axis=1)
    p_lower = 1.0 - ((1 - np.exp(-2 * v * a * w)) / (1 - np.exp(-2 * v * a)) if v != 0 else w)
    return p_lower - tail


# Extremes the package must handle: a = 0.3 and 5, |v| up to 6, start points 0.1 and 0.9.
SAMPLER_CASES = [(0.0, 1.0, 0.5), (1.0, 2.0, 0.5), (6.0, 0.3, 0.1), (-6.0, 0.3, 0.9),
                 (6.0, 5.0, 0.1), (-1.5, 5.0, 0.9), (2.0, 1.0, 0.1), (-3.0, 1.5, 0.9)]


@pytest.mark.parametrize("v, a, w", SAMPLER_CASES)
def test_sampler_choice_frequency(v, a, w):
    n = 40_000
    upper, _ = wiener.sample(v, a, w, n, seed=11)
    p = wiener.prob_upper(v, a, w)
    se = np.sqrt(p * (1 - p) / n)
    assert abs(upper.mean() - p) <= 4 * max(se, 1 / n)


@pytest.mark.parametrize("v, a, w", SAMPLER_CASES)
def test_sampler_decision_times_follow_the_analytic_cdf(v, a, w):
    n = 20_000
    p_upper = wiener.prob_upper(v, a, w)
    for upper_boundary in (False, True):
        p_boundary = p_upper if upper_boundary else 1 - p_upper
        if p_boundary < 0.02:
            continue  # too few hits on this boundary for a KS test of this size
        draws = []
        seed = 100
        while sum(len(d) for d in draws) < n:
            upper, times = wiener.sample(v, a, w, int(2 * n / p_boundary), seed=seed)
            draws.append(times[upper == upper_boundary])
            seed += 1
        times = np.concatenate(draws)[:n]
        # upper-boundary passages are lower-boundary passages of the mirrored process
        vv, ww = (-v, 1 - w) if upper_boundary else (v, w)
        result = stats.kstest(times, lambda t: analytic_lower_cdf(t, vv, a, ww) / p_boundary)
        assert result.pvalue > 1e-3, (upper_boundary, result)


def test_sampler_is_reproducible():
    a = wiener.sample(0.3, 1.0, 0.4, 1000, seed=5)
    b = wiener.sample(0.3, 1.0, 0.4, 1000, seed=5)
    c = wiener.sample(0.3, 1.0, 0.4, 1000, seed=6)
    assert np.array_equal(a[1], b[1]) and not np.array_equal(a[1], c[1])

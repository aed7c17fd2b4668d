"""The exact target: the prior times the exact likelihood, in the unbounded space too."""

import numpy as np
import pytest

from amortized_rlddm.model.config import load_config
from amortized_rlddm.model.designs import named_design
from amortized_rlddm.model.likelihood import loglik_draws
from amortized_rlddm.model.priors import PriorSet
from amortized_rlddm.model.simulator import simulate
from amortized_rlddm.model.target import ExactTarget


def _study(design="hddm_pst_contaminants", participants=3, seed=1):
    priors = load_config("general").priors
    truth = priors.sample(np.random.default_rng(seed), participants)
    return simulate(truth, named_design(design), seed=seed), priors


def test_the_target_is_the_prior_plus_the_likelihood_on_random_points():
    study, priors = _study()
    design = named_design("hddm_pst_contaminants")
    target = ExactTarget(study, priors, design)
    points = {k: v.reshape(3, 40) for k, v in priors.sample(np.random.default_rng(2), 120).items()}
    expected = priors.logpdf(points).reshape(3, 40) + loglik_draws(
        study, points, q_init=0.5, p_outlier=0.05, rt_max=5.0)
    assert np.allclose(target.log_posterior(points), expected, rtol=0, atol=1e-9)


def test_fixed_parameters_enter_the_likelihood_as_constants_and_leave_the_space():
    """With t0 and z held fixed, the target is the free parameters' prior plus the likelihood
    with the fixed values filled in; its space holds the free parameters only (t0 then has no
    data-bound support to take), and a fixed parameter that also has a prior is refused."""
    study, priors = _study(design="seed")
    fixed = {"t0": 0.25, "z": 0.5}
    free = PriorSet(priors.priors, [n for n in priors.names if n not in fixed])
    target = ExactTarget(study, free, named_design("seed"), fixed=fixed)
    points = {k: v.reshape(3, 10) for k, v in free.sample(np.random.default_rng(5), 30).items()}
    filled = points | {name: np.full((3, 10), value) for name, value in fixed.items()}
    expected = free.logpdf(points).reshape(3, 10) + loglik_draws(study, filled, q_init=0.5)
    assert np.allclose(target.log_posterior(points), expected, rtol=0, atol=1e-9)
    assert target.space.names == free.names and target.to_unbounded(points).shape == (3, 10, len(free.names))
    assert np.allclose(target.select([2]).log_posterior({k: v[2:] for k, v in points.items()}), expected[2:])
    with pytest.raises(ValueError, match="also have a prior"):
        ExactTarget(study, priors, named_design("seed"), fixed={"z": 0.5})


def test_outside_the_support_the_target_is_minus_infinity_without_an_error():
    study, priors = _study()
    target = ExactTarget(study, priors, named_design("hddm_pst_contaminants"))
    points = {k: v.reshape(3, 4) for k, v in priors.sample(np.random.default_rng(3), 12).items()}
    points["alpha"][0, 1] = 1.5
    points["a"][2, 3] = -0.2
    values = target.log_posterior(points)
    assert np.isneginf(values[0, 1]) and np.isneginf(values[2, 3])
    assert np.isfinite(np.delete(values.ravel(), [1, 11])).all()


def test_the_unbounded_density_carries_the_jacobian_of_each_transform():
    study, priors = _study("seed", participants=2)
    target = ExactTarget(study, priors, named_design("seed"))
    y = np.random.default_rng(4).normal(size=(2, 3, len(target.names)))
    # the Jacobian of y -> natural values by central differences, parameter by parameter (the
    # transforms act on each coordinate alone, so the determinant is the diagonal's product)
    h = 1e-6
    log_jacobian = 0.0
    for k, name in enumerate(target.names):
        up, down = y.copy(), y.copy()
        up[..., k] += h
        down[..., k] -= h
        log_jacobian = log_jacobian + np.log((target.to_natural(up)[name] - target.to_natural(down)[name]) / (2 * h))
    expected = target.log_posterior(target.to_natural(y)) + log_jacobian
    assert np.allclose(target.log_density(y), expected, atol=1e-5)
    # and the round trip of the values
    assert np.allclose(target.to_unbounded(target.to_natural(y)), y, atol=1e-9)


def test_t0_ends_at_the_fastest_response_without_contaminants_only():
    study, priors = _study("seed", participants=2)
    fastest = np.nanmin(np.where(study.valid, study.rt, np.nan), axis=1)
    plain = ExactTarget(study, priors, named_design("seed"))
    assert np.allclose(plain.space.bounds[plain.names.index("t0")][1], np.minimum(fastest, priors.support("t0")[1]))
    contaminated = ExactTarget(study, priors, named_design("hddm_pst_contaminants"))
    assert np.all(contaminated.space.bounds[contaminated.names.index("t0")][1] == priors.support("t0")[1])

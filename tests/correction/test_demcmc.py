"""DE-MCz chains against targets with known moments."""

import numpy as np
import pytest
from scipy import stats

from amortized_rlddm.correction.demcmc import differential_evolution_mcmc


def _gaussians(means, covariance):
    """log_target of one correlated 5-d normal per participant (its own mean)."""
    def log_target(y, participants):
        return np.stack([stats.multivariate_normal(means[i], covariance).logpdf(y[row])
                         for row, i in enumerate(participants)])
    return log_target


def test_the_chains_recover_correlated_normals_from_draws_near_them():
    rng = np.random.default_rng(0)
    d = 5
    root = rng.normal(size=(d, d))
    covariance = root @ root.T / d + 0.2 * np.eye(d)
    cholesky = np.linalg.cholesky(covariance)
    means = np.stack([np.zeros(d), np.full(d, 3.0)])
    sd = np.sqrt(np.diag(covariance))
    # chains and archive from a proposal half an sd off and 30% too narrow, as a correction's are
    start, archive = (means[:, None, :] + 0.5 * sd + 0.7 * rng.normal(size=(2, m, d)) @ cholesky.T
                      for m in (8, 100))
    result = differential_evolution_mcmc(_gaussians(means, covariance), start, archive, draws=2000, rng=rng)
    assert result.converged.all() and (result.rhat <= 1.01).all() and (result.ess_bulk >= 400).all()
    for i in range(2):
        error = np.abs(result.draws[i].mean(0) - means[i]) / sd
        assert (error < 4 / np.sqrt(result.ess_bulk[i])).all(), error  # 4 Monte Carlo errors at the gate's ESS
        np.testing.assert_allclose(np.cov(result.draws[i].T), covariance, atol=0.15 * sd.max() ** 2)
    assert 0.15 < result.acceptance.min() and result.acceptance.max() < 0.5
    assert (result.evaluations == 8 * (result.iterations + 1)).all()


def test_a_banana_is_sampled_into_its_arms():
    # x1 ~ N(0, 1), x2 | x1 ~ N(x1^2, 0.5^2): E[x2] = 1, E[x2 | |x1| > 1.5] > 2.25
    def log_target(y, participants):
        return stats.norm.logpdf(y[..., 0]) + stats.norm.logpdf(y[..., 1], y[..., 0] ** 2, 0.5)

    rng = np.random.default_rng(1)
    start = rng.normal(0.0, 0.3, size=(1, 8, 2)) + [0.0, 0.5]
    archive = rng.normal(0.0, 0.5, size=(1, 40, 2)) + [0.0, 0.5]  # the middle of the banana only
    result = differential_evolution_mcmc(log_target, start, archive, draws=4000, rng=rng, max_iterations=12000)
    assert result.converged[0]
    x = result.draws[0]
    error = 4 / np.sqrt(result.ess_bulk[0])
    assert x[:, 0].mean() == pytest.approx(0.0, abs=error) and x[:, 0].std() == pytest.approx(1.0, abs=2 * error)
    assert x[:, 1].mean() == pytest.approx(1.0, abs=2 * error)
    assert np.mean(np.abs(x[:, 0]) > 1.5) == pytest.approx(2 * stats.norm.sf(1.5), abs=0.04)


def test_an_unconverged_participant_is_said_to_be_so():
    rng = np.random.default_rng(2)
    means, covariance = np.zeros((1, 5)), np.eye(5)
    start, archive = rng.normal(size=(1, 8, 5)), rng.normal(size=(1, 20, 5))
    result = differential_evolution_mcmc(_gaussians(means, covariance), start, archive, draws=100, rng=rng, block=20,
                                         max_iterations=20)
    assert not result.converged[0] and result.iterations[0] == 20
    with pytest.raises(ValueError, match="M >= 2 d"):
        differential_evolution_mcmc(_gaussians(means, covariance), start, archive[:, :6], draws=100, rng=rng)

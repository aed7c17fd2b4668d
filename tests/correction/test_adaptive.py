"""Adaptive multiple importance sampling against targets whose moments are known exactly: a
correlated Student-t, a twisted Gaussian (banana), a hopeless start, a participant the target
rules out everywhere, and the deterministic-mixture weights with fixed proposals."""

import numpy as np
import pytest
from scipy import stats
from scipy.special import gammaln, logsumexp

from amortized_rlddm.correction.adaptive import (
    StudentTMixture,
    adaptive_importance_sampling,
    deterministic_mixture_log_weights,
)
from amortized_rlddm.correction.importance import khat_threshold

DIM = 5


def weighted_moments(result):
    """(P, d) means and variances of each participant's weighted draws."""
    weights = np.exp(result.log_weights)
    mean = np.einsum("pn,pnd->pd", weights, result.draws)
    variance = np.einsum("pn,pnd->pd", weights, (result.draws - mean[:, None]) ** 2)
    return mean, variance


def assert_below(errors, tolerances):
    """errors < tolerances elementwise, the tolerances broadcast to the errors' shape."""
    np.testing.assert_array_less(errors, np.broadcast_to(tolerances, errors.shape))


def gaussian_flow(means, sds):
    """A Gaussian 'flow' per participant with diagonal sd: (log density function, sampler)."""
    means, sds = np.atleast_2d(means), np.atleast_2d(sds)

    def log_flow(y, participants):
        z = (y - means[participants][:, None]) / sds[participants][:, None]
        return -0.5 * (z ** 2).sum(-1) - np.log(sds[participants]).sum(-1)[:, None] - DIM / 2 * np.log(2 * np.pi)

    def sample(n, rng):
        return means[:, None] + sds[:, None] * rng.standard_normal((means.shape[0], n, DIM))

    return log_flow, sample


class StudentTTarget:
    """Unnormalised multivariate Student-t log densities, one mean per participant."""

    def __init__(self, means, scale, df):
        self.means, self.scale, self.df = means, scale, df
        self.whitening = np.linalg.inv(np.linalg.cholesky(scale))

    def __call__(self, y, participants):
        z = np.einsum("ij,pnj->pni", self.whitening, y - self.means[participants][:, None])
        return -(self.df + DIM) / 2 * np.log1p((z ** 2).sum(-1) / self.df)

    @property
    def covariance(self):
        return self.scale * self.df / (self.df - 2)

    @property
    def log_normaliser(self):
        """log of the integral of exp(self(y)): the Student-t's normalising constant."""
        return (gammaln(self.df / 2) + DIM / 2 * np.log(self.df * np.pi) + 0.5 * np.linalg.slogdet(self.scale)[1]
                - gammaln((self.df + DIM) / 2))


def correlated_scale():
    """A fixed non-diagonal 5 x 5 scale matrix (correlations up to about 0.4)."""
    a = np.random.default_rng(1).normal(size=(DIM, DIM))
    return a @ a.T / DIM + 0.5 * np.eye(DIM)


def test_a_shifted_narrow_flow_is_corrected_to_four_student_t_targets():
    target = StudentTTarget(np.array([[0.0] * DIM, [3.0] * DIM, [-2, 1, 0, 4, -1.0], [10, -5, 2, 0, 1.0]]),
                            correlated_scale(), df=7.0)
    sd = np.sqrt(np.diag(target.covariance))
    log_flow, sample = gaussian_flow(target.means + 2 * sd, np.tile(0.5 * sd, (4, 1)))
    draws0 = sample(2000, np.random.default_rng(2))
    result = adaptive_importance_sampling(target, log_flow, draws0, log_flow(draws0, np.arange(4)), draws=2000,
                                          rng=np.random.default_rng(3))
    assert result.converged.all() and result.reason == ("",) * 4
    assert (result.khat <= khat_threshold(result.mask.sum(axis=1))).all()
    assert (result.ess >= result.min_ess).all() and result.min_ess == 1000
    assert (result.evaluations == 2000 + 2000 * result.rounds).all() and (result.rounds >= 1).all()
    mean, variance = weighted_moments(result)
    np.testing.assert_array_less(np.abs(mean - target.means) / sd, 0.1)
    np.testing.assert_array_less(np.abs(variance / sd ** 2 - 1), 0.15)
    # the raw weights' mean is an unbiased estimate of the normalising constant, with relative
    # standard error about 1 / sqrt(ESS)
    assert_below(np.abs(result.log_evidence - target.log_normaliser), 4 / np.sqrt(result.ess))
    resampled = result.resample(4000, np.random.default_rng(4))
    assert resampled.shape == (4, 4000, DIM)
    np.testing.assert_array_less(np.abs(resampled.mean(axis=1) - target.means) / sd, 0.1)


def test_a_too_narrow_flow_is_corrected_to_a_banana():
    # Haario's twisted Gaussian: x ~ N(0, diag(sd1^2, 1, 1, 1, 1)), y2 = x2 + b (x1^2 - sd1^2).
    # With c = b sd1^2 = 0.75 the twist is moderate; analytically E[y] = 0, var y1 = sd1^2,
    # var y2 = 1 + 2 c^2 and E[(y2 - E y2)^4] = 3 + 12 c^2 + 60 c^4.
    twist, sd1 = 0.03, 5.0
    c = twist * sd1 ** 2

    def log_banana(y, participants):
        untwisted = y[..., 1] - twist * (y[..., 0] ** 2 - sd1 ** 2)
        return -0.5 * (y[..., 0] / sd1) ** 2 - 0.5 * untwisted ** 2 - 0.5 * (y[..., 2:] ** 2).sum(-1)

    variance = np.array([sd1 ** 2, 1 + 2 * c ** 2, 1.0, 1.0, 1.0])
    kurtosis = np.array([3.0, (3 + 12 * c ** 2 + 60 * c ** 4) / (1 + 2 * c ** 2) ** 2])
    log_flow, sample = gaussian_flow(np.zeros((4, DIM)), np.tile(0.5 * np.sqrt(variance), (4, 1)))
    draws0 = sample(2000, np.random.default_rng(5))
    # three components: two ellipsoids leave the arms to the wide component, with larger weights
    result = adaptive_importance_sampling(log_banana, log_flow, draws0, log_flow(draws0, np.arange(4)), draws=2000,
                                          rng=np.random.default_rng(6), components=3)
    assert result.converged.all()
    mean, estimated = weighted_moments(result)
    # Tolerance: 5 standard errors of an independent sample of the effective size. ESS measures
    # the weights' spread, not how well the banana's arms were sampled, so its tail moments err
    # more than an independent sample of that size would (the largest weights sit in the arms).
    ess = result.ess[:, None]
    assert_below(np.abs(mean) / np.sqrt(variance), 5 / np.sqrt(ess))
    assert_below(np.abs(estimated[:, :2] / variance[:2] - 1), 5 * np.sqrt((kurtosis - 1) / ess))
    assert_below(np.abs(estimated[:, 2:] - 1), 5 * np.sqrt(2 / ess))


def test_one_round_from_a_hopeless_start_does_not_converge():
    target = StudentTTarget(np.zeros((1, DIM)), correlated_scale(), df=7.0)
    sd = np.sqrt(np.diag(target.covariance))
    log_flow, sample = gaussian_flow(6 * sd, 0.2 * sd)
    draws0 = sample(1000, np.random.default_rng(7))
    result = adaptive_importance_sampling(target, log_flow, draws0,
                                          log_flow(draws0, np.arange(1)), draws=1000, rng=np.random.default_rng(8),
                                          max_rounds=1)
    assert not result.converged[0] and result.rounds[0] == 1 and result.evaluations[0] == 2000
    assert result.khat[0] > result.khat_threshold[0] == khat_threshold(2000)
    assert result.reason[0].startswith("max_rounds (1) reached")


def test_a_participant_ruled_out_everywhere_fails_alone():
    target = StudentTTarget(np.array([[0.0] * DIM, [1.0] * DIM, [2.0] * DIM]), correlated_scale(), df=7.0)
    sd = np.sqrt(np.diag(target.covariance))
    log_flow, sample = gaussian_flow(target.means + sd, np.tile(0.8 * sd, (3, 1)))
    draws0 = sample(1000, np.random.default_rng(9))

    def ruled_out_last(y, participants):
        return np.where((participants == 2)[:, None], -np.inf, target(y, participants))

    calls = []

    def counted(y, participants):
        calls.append(participants.copy())
        return ruled_out_last(y, participants)

    result = adaptive_importance_sampling(counted, log_flow, draws0, log_flow(draws0, np.arange(3)), draws=1000,
                                          rng=np.random.default_rng(10))
    assert result.converged.tolist() == [True, True, False]
    assert result.reason[2] == "log target -inf at every draw" and result.rounds[2] == 0
    assert np.isneginf(result.log_weights[2]).all() and result.ess[2] == 0 and np.isinf(result.khat[2])
    for field in ("draws", "log_weights", "khat", "ess", "log_evidence"):
        assert not np.isnan(getattr(result, field)).any(), field
    # one batched call per round, for the participants still running
    assert calls[0].tolist() == [0, 1, 2] and all(2 not in c for c in calls[1:])
    assert len(calls) == 1 + result.rounds.max()
    with pytest.raises(ValueError, match=r"participants \[2\].*-inf at every draw"):
        result.resample(10, np.random.default_rng(0))
    assert result.resample(10, np.random.default_rng(0), participants=[0, 1]).shape == (2, 10, DIM)
    # each participant has its own random stream: the others' results do not depend on it
    alone = adaptive_importance_sampling(ruled_out_last, log_flow, draws0[:2], log_flow(draws0[:2], np.arange(2)),
                                         draws=1000, rng=np.random.default_rng(10))
    count = alone.mask.shape[1]
    np.testing.assert_array_equal(result.draws[:2, :count], alone.draws)
    np.testing.assert_array_equal(result.log_weights[:2, :count], alone.log_weights)


def test_deterministic_mixture_weights_give_the_target_expectation():
    # target N(1, 1.5^2), unnormalised; 3000 draws from N(0, 1) and 1000 from a t3 at 2 with scale 2
    rng = np.random.default_rng(11)
    first, second = stats.norm(0.0, 1.0), stats.t(3, loc=2.0, scale=2.0)
    y = np.concatenate([first.rvs(3000, random_state=rng), second.rvs(1000, random_state=rng)])
    log_target = -0.5 * ((y - 1.0) / 1.5) ** 2
    log_weights = deterministic_mixture_log_weights(log_target, np.stack([first.logpdf(y), second.logpdf(y)]),
                                                    [3000, 1000])
    weights = np.exp(log_weights - logsumexp(log_weights))
    for f, exact in ((y, 1.0), (y ** 2, 1.0 + 1.5 ** 2)):
        estimate = weights @ f
        standard_error = np.sqrt(np.sum(weights ** 2 * (f - estimate) ** 2))  # delta method
        assert abs(estimate - exact) < 4 * standard_error
    # the mean raw weight estimates the target's normalising constant
    log_constant = logsumexp(log_weights) - np.log(y.size)
    assert abs(log_constant - np.log(1.5 * np.sqrt(2 * np.pi))) < 4 / np.sqrt(1 / np.sum(weights ** 2))
    # a -inf target is a zero weight, and shapes must agree
    assert np.isneginf(deterministic_mixture_log_weights(np.array([-np.inf]), np.zeros((2, 1)), [1, 1])).all()
    with pytest.raises(ValueError, match="does not match"):
        deterministic_mixture_log_weights(log_target, np.zeros((3, y.size)), [3000, 1000])


def test_student_t_mixture_draws_follow_its_density():
    rng = np.random.default_rng(12)
    a = rng.normal(size=(2, 3, 3))
    scales = a @ np.transpose(a, (0, 2, 1)) + np.eye(3)
    means = rng.normal(size=(2, 3))
    mixture = StudentTMixture.from_scales([0.3, 0.7], means, scales, [3.0, 7.0])
    y = mixture.sample(100_000, rng)
    exact = np.log(0.3 * stats.multivariate_t(means[0], scales[0], df=3).pdf(y[:50])
                   + 0.7 * stats.multivariate_t(means[1], scales[1], df=7).pdf(y[:50]))
    np.testing.assert_allclose(mixture.logpdf(y[:50]), exact, rtol=1e-10)
    # E_q[g / q] = 1 for any density g, if the draws come from q
    ratio = np.exp(stats.multivariate_normal(np.zeros(3), np.eye(3)).logpdf(y) - mixture.logpdf(y))
    assert abs(ratio.mean() - 1) < 4 * ratio.std() / np.sqrt(ratio.size)


def test_a_flow_that_is_nearly_right_stops_at_round_zero():
    log_flow, sample = gaussian_flow(np.zeros((2, DIM)), np.ones((2, DIM)))
    log_target, _ = gaussian_flow(np.zeros((2, DIM)), np.full((2, DIM), 1.05))
    draws0 = sample(1000, np.random.default_rng(13))
    result = adaptive_importance_sampling(log_target, log_flow, draws0, log_flow(draws0, np.arange(2)), draws=800,
                                          rng=np.random.default_rng(0))
    assert result.converged.all() and (result.rounds == 0).all() and (result.evaluations == 1000).all()
    assert result.draws.shape == (2, 1000, DIM) and result.mask.all()
    np.testing.assert_array_equal(result.draws, draws0)


def test_invalid_inputs_are_refused():
    log_flow, sample = gaussian_flow(np.zeros((1, DIM)), np.ones((1, DIM)))
    draws0 = sample(100, np.random.default_rng(0))
    log_q0 = log_flow(draws0, np.arange(1))
    options = {"draws": 100, "rng": np.random.default_rng(0)}
    with pytest.raises(ValueError, match="at least 25"):
        adaptive_importance_sampling(log_flow, log_flow, draws0[:, :10], log_q0[:, :10], **options)
    with pytest.raises(ValueError, match="log_q0"):
        adaptive_importance_sampling(log_flow, log_flow, draws0, log_q0[:, :50], **options)
    with pytest.raises(ValueError, match="flow_weight"):
        adaptive_importance_sampling(log_flow, log_flow, draws0, log_q0, flow_weight=0.5, wide_weight=0.5, **options)
    with pytest.raises(ValueError, match="log_target returned shape"):
        adaptive_importance_sampling(lambda y, p: np.zeros(3), log_flow, draws0, log_q0, **options)

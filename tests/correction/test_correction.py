"""The correction of a network's draws, against an independent exact posterior."""

import numpy as np
import pytest
from scipy import stats

from amortized_rlddm.correction.correct import correct_draws, min_ess
from amortized_rlddm.correction.importance import psis
from amortized_rlddm.exact.model import ExactPosterior
from amortized_rlddm.model.config import load_config
from amortized_rlddm.model.designs import named_design
from amortized_rlddm.model.simulator import simulate
from amortized_rlddm.model.target import ExactTarget


@pytest.fixture(scope="module")
def participant():
    """A simulated participant of the seed design, its exact target and an independent NUTS
    fit of it (PyTensor's likelihood, not the Numba one the target uses)."""
    priors = load_config("default").priors
    design = named_design("seed")
    study = simulate(priors.sample(np.random.default_rng(3), 1), design, seed=4)
    target = ExactTarget(study, priors, design)
    fit = ExactPosterior(priors, max_trials=study.max_trials).fit_one(study, 0, draws=2000, chains=4, seed=5)
    reference = {name: fit.trace["posterior"][name].values.reshape(1, -1) for name in priors.names}
    return target, reference


def _shifted_flow(target, reference, shift, narrow):
    """A stand-in for a network that is off: a normal in the unbounded space, its mean `shift`
    sds from the posterior's and its sds `narrow` times the posterior's."""
    y = target.to_unbounded(reference)[0]
    sd = y.std(0)
    flow = stats.multivariate_normal(y.mean(0) + shift * sd, np.cov(y.T) * narrow ** 2)
    return flow, (lambda points, rows: flow.logpdf(points[:, :, :]).reshape(points.shape[:2]))


@pytest.mark.parametrize("shift, narrow", [(2.0, 0.7), (0.0, 1.3)])
def test_a_flow_off_by_two_sds_is_corrected_to_the_exact_posterior(participant, shift, narrow):
    target, reference = participant
    flow, log_flow = _shifted_flow(target, reference, shift, narrow)
    rng = np.random.default_rng(6)
    y0 = flow.rvs(2000, random_state=rng)[None]
    corrected, checks = correct_draws(target, y0, flow.logpdf(y0[0])[None], log_flow, 1000, rng)
    assert checks["trusted"].values[0], checks["reason"].values[0]
    assert checks["method"].values[0] == ("adaptive" if shift else "refined")
    values = target.to_natural(corrected)
    for name, exact in reference.items():
        # NUTS's 8,000 draws and the corrected 1,000 (at least 500 effective): a few Monte Carlo errors
        assert values[name].mean() == pytest.approx(exact.mean(), abs=0.15 * exact.std()), name
        assert values[name].std() == pytest.approx(exact.std(), rel=0.15), name


def test_a_round_limit_leaves_a_hopeless_participant_untrusted_with_the_reason(participant, monkeypatch):
    target, reference = participant
    flow, log_flow = _shifted_flow(target, reference, 8.0, 0.2)
    rng = np.random.default_rng(7)
    y0 = flow.rvs(200, random_state=rng)[None]
    monkeypatch.setattr("amortized_rlddm.correction.correct.differential_evolution_mcmc",
                        _chains_that_never_converge)
    _, checks = correct_draws(target, y0, flow.logpdf(y0[0])[None], log_flow, 100, rng, max_rounds=1)
    assert not checks["trusted"].values[0]
    assert checks["method"].values[0] == "mcmc" and "convergence gate" in checks["reason"].values[0]
    assert checks["rounds"].values[0] == 1 and checks["evaluations"].values[0] > 200


def _chains_that_never_converge(log_target, start, archive, *, draws, rng):
    from amortized_rlddm.correction.demcmc import differential_evolution_mcmc

    return differential_evolution_mcmc(log_target, start, archive, draws=draws, rng=rng, block=10, max_iterations=10)


def test_equal_weights_are_exact_and_a_participant_ruled_out_everywhere_is_named():
    ratios = np.zeros((2, 100))
    ratios[1] = -np.inf
    checks = psis(ratios)
    assert checks["khat"].values[0] == 0 and not checks["above_threshold"].values[0]
    assert checks["khat"].values[1] == np.inf
    assert min_ess(200) == 400 and min_ess(2000) == 1000


def test_a_participant_the_exact_posterior_rules_out_everywhere_is_named_and_the_others_go_on(participant):
    target, reference = participant
    both = target.select([0, 0])
    impossible = both.select([0])

    class OneRuledOut:  # participant 1's posterior is zero at every point (as an RT below every t0 would make it)
        def __init__(self, rows):
            self.rows = np.asarray(rows)

        def log_density(self, y):
            out = impossible.select(np.zeros(len(self.rows), int)).log_density(y)
            return np.where((self.rows == 1)[:, None], -np.inf, out)

        def select(self, rows):
            return OneRuledOut(self.rows[np.asarray(rows)])

    flow, log_flow = _shifted_flow(target, reference, 0.5, 1.0)
    rng = np.random.default_rng(8)
    y0 = np.stack([flow.rvs(400, random_state=rng)] * 2)
    corrected, checks = correct_draws(OneRuledOut([0, 1]), y0, flow.logpdf(y0[0])[None].repeat(2, 0), log_flow,
                                      200, rng)
    assert checks["trusted"].values.tolist() == [True, False]
    assert checks["method"].values[1] == "flow" and "zero at every draw" in checks["reason"].values[1]
    np.testing.assert_array_equal(corrected[1], y0[1, :200])

"""The PyMC model: PyTensor WFPT density and survival, the exact likelihood, NUTS and MLE."""

import numpy as np
import pytest
from scipy import integrate

pm = pytest.importorskip("pymc")
import pytensor  # noqa: E402  (after the importorskip)
import pytensor.tensor as pt  # noqa: E402

from amortized_rlddm.exact.benchmark import bench_logp, bench_nuts  # noqa: E402
from amortized_rlddm.exact.mle import fit_mle  # noqa: E402
from amortized_rlddm.exact.model import ExactPosterior, posterior_tree  # noqa: E402
from amortized_rlddm.exact.wfpt import wfpt_log_survival, wfpt_logp  # noqa: E402
from amortized_rlddm.model import wiener  # noqa: E402
from amortized_rlddm.model.likelihood import loglik  # noqa: E402
from amortized_rlddm.model.priors import DUAL_RATE, SINGLE_RATE, PriorSet  # noqa: E402
from amortized_rlddm.model.simulator import simulate  # noqa: E402
from amortized_rlddm.model.target import ExactTarget  # noqa: E402
from amortized_rlddm.model.task import LikelihoodSettings, Pair, TaskDesign  # noqa: E402

# (v, t0, a, w, rt, lower-boundary density) from docs/model.md
KNOWN = [
    (0.6056010862462016, 0.16871208306308166, 1.5524386791394562, 0.1286318302691049, 0.3836652143729468, 0.62063048896871487),  # noqa: E501
    (0.7175299762398688, 0.3566056886339434, 2.220795104898356, 0.45773365470000554, 2.1966769477884225, 0.030138660738276948),  # noqa: E501
    (-0.5187897244595112, 0.21532637320553233, 2.481938472673327, 0.18482168074390404, 1.0697490678038166, 0.23165988979463398),  # noqa: E501
    (-0.5719411096293123, 0.28837526790403306, 2.1929805341020145, 0.2243768947148022, 1.0791694385505024, 0.27868915917309367),  # noqa: E501
]


@pytest.fixture(scope="module")
def density():
    """Compiled log density and its gradient with respect to t, v, a and w (vectors)."""
    t, v, a, w = pt.dvectors("t", "v", "a", "w")
    upper = pt.bvector("upper")
    logp = wfpt_logp(t, upper, v, a, w)
    grads = pytensor.grad(logp.sum(), [t, v, a, w])
    return pytensor.function([t, upper, v, a, w], [logp, *grads])


@pytest.fixture(scope="module")
def survival():
    """Compiled log survival and its gradient with respect to t, v, a and w (vectors)."""
    t, v, a, w = pt.dvectors("t", "v", "a", "w")
    log_s = wfpt_log_survival(t, v, a, w)
    grads = pytensor.grad(log_s.sum(), [t, v, a, w])
    return pytensor.function([t, v, a, w], [log_s, *grads])


def grid(*axes):
    return [x.ravel() for x in np.meshgrid(*axes, indexing="ij")]


def test_density_matches_numpy_over_a_wide_grid(density):
    t, upper, v, a, w = grid(np.geomspace(0.01, 10.0, 25), [0, 1], [-6, -3, -1, -0.2, 0, 0.5, 2, 6],
                             [0.3, 0.5, 1.0, 2.0, 3.5, 5.0], [0.05, 0.1, 0.3, 0.5, 0.7, 0.95])
    got = density(t, upper.astype(np.int8), v, a, w)[0]
    expected = wiener.log_wfpt(t, upper.astype(bool), v, a, w)
    assert np.isfinite(expected).all()
    # a log difference of 1e-8 is a relative density difference of 1e-8
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-8)
    np.testing.assert_allclose(got, expected, rtol=1e-8)


def test_density_matches_the_known_values(density):
    v, t0, a, w, rt, value = map(np.array, zip(*KNOWN))
    lower, *_ = density(rt - t0, np.zeros(4, np.int8), v, a, w)
    mirrored, *_ = density(rt - t0, np.ones(4, np.int8), -v, a, 1.0 - w)
    np.testing.assert_allclose(np.exp(lower), value, rtol=1e-9)
    np.testing.assert_allclose(np.exp(mirrored), value, rtol=1e-9)
    both, *_ = density(np.ones(2), np.array([0, 1], np.int8), np.ones(2), np.full(2, 2.0), np.full(2, 0.5))
    np.testing.assert_allclose(np.exp(both), [0.051025988021, 0.377033887991], rtol=1e-9)


def test_density_is_zero_at_non_positive_times_with_finite_gradients(density):
    logp, *grads = density(np.array([0.0, -0.3]), np.array([0, 1], np.int8), np.ones(2), np.ones(2), np.full(2, 0.5))
    assert (logp == -np.inf).all()
    assert all(np.isfinite(g).all() for g in grads)


def central_difference(f, args, index, scale):
    """d f / d args[index] by central differences with a step of 1e-6 * scale."""
    h = 1e-6 * scale
    up, down = list(args), list(args)
    up[index] = args[index] + h
    down[index] = args[index] - h
    return (f(*up) - f(*down)) / (2 * h)


def test_density_gradients_match_finite_differences(density):
    rng = np.random.default_rng(0)
    n = 400
    a = rng.uniform(0.3, 5.0, n)
    t = a * a * np.exp(rng.uniform(np.log(0.01), np.log(3.0), n))  # both series' ranges of t / a^2
    v, w = rng.uniform(-6, 6, n), rng.uniform(0.05, 0.95, n)
    upper = rng.integers(0, 2, n).astype(np.int8)
    _, *grads = density(t, upper, v, a, w)

    def numpy_logp(t, v, a, w):
        return wiener.log_wfpt(t, upper.astype(bool), v, a, w)

    for i, (grad, scale) in enumerate(zip(grads, (t, 1.0, a, 1.0))):
        numeric = central_difference(numpy_logp, (t, v, a, w), i, scale)
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-5 * np.abs(numeric).max())


SURVIVAL_GRID = grid(np.geomspace(0.01, 10.0, 21), [-6, -2, -0.5, 0, 1, 4, 6], [0.3, 0.7, 1.5, 3.0, 5.0],
                     [0.05, 0.3, 0.5, 0.8, 0.95])


def numpy_error_growth(t, v, a, w):
    """Log of the factor by which cancellation inflates wiener.log_survival's rounding errors.

    Its large-time series is multiplied by exp(max(-vaw, va(1-w)) - lambda_1 t): where that is
    large (short deadlines, steep drift toward a far boundary) the NumPy value keeps only about
    1e-15 exp(growth) absolute accuracy, while the PyTensor survival switches to the
    small-time series there.
    """
    return np.maximum(-v * a * w, v * a * (1 - w)) - (0.5 * v * v + np.pi ** 2 / (2 * a * a)) * t


def test_survival_matches_numpy(survival):
    t, v, a, w = SURVIVAL_GRID
    growth = numpy_error_growth(t, v, a, w)
    keep = growth < 20.0
    assert keep.mean() > 0.95
    t, v, a, w, growth = t[keep], v[keep], a[keep], w[keep], growth[keep]
    got = survival(t, v, a, w)[0]
    expected = np.array([wiener.log_survival(*x) for x in zip(t, v, a, w)])
    tolerance = 1e-8 * np.abs(expected) + 1e-14 * np.exp(np.maximum(growth, 0.0))
    assert (np.abs(got - expected) <= tolerance).all()


def survival_by_quadrature(t, v, a, w):
    """1 - integral of both boundaries' densities up to t."""
    def density(s, upper):
        return np.exp(wiener.log_density(s, upper, v, a, w)) if s > 0 else 0.0
    edges = np.unique(np.r_[0.0, np.geomspace(1e-3 * t, t, 8)])
    done = sum(integrate.quad(density, lo, hi, args=(upper,), limit=200, epsabs=1e-15, epsrel=1e-13)[0]
               for upper in (False, True) for lo, hi in zip(edges[:-1], edges[1:]))
    return 1.0 - done


@pytest.mark.parametrize("t, v, a, w", [
    (0.01, -6.0, 5.0, 0.95),  # t/a^2 = 0.0004: small-time series
    (0.2, -6.0, 2.0, 0.9),  # large-time series would cancel: small-time series
    (0.05, 3.0, 0.3, 0.5),  # large-time series
    (1.0, -6.0, 5.0, 0.95),  # where the NumPy survival loses digits
    (0.004, 0.5, 0.7, 0.3),  # noqa: E501
])
def test_survival_matches_the_integrated_density(survival, t, v, a, w):
    got = survival(*(np.array([x]) for x in (t, v, a, w)))[0][0]
    assert np.exp(got) == pytest.approx(survival_by_quadrature(t, v, a, w), abs=1e-10)


def test_survival_gradients_match_finite_differences(survival):
    t, v, a, w = (x[::7] for x in SURVIVAL_GRID)

    def numpy_log_survival(t, v, a, w):
        return np.array([wiener.log_survival(*x) for x in zip(t, v, a, w)])

    # where NumPy is accurate: no cancellation, and survivals far from float64 underflow
    keep = (numpy_error_growth(t, v, a, w) < 0.0) & (numpy_log_survival(t, v, a, w) > -600.0)
    t, v, a, w = t[keep], v[keep], a[keep], w[keep]
    _, *grads = survival(t, v, a, w)

    for i, (grad, scale) in enumerate(zip(grads, (t, 1.0, a, 1.0))):
        numeric = central_difference(numpy_log_survival, (t, v, a, w), i, scale)
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-6 * np.abs(numeric).max())


def test_survival_is_one_at_non_positive_times(survival):
    log_s, *grads = survival(np.array([0.0, -1.0]), np.ones(2), np.ones(2), np.full(2, 0.5))
    assert (log_s == 0.0).all()
    assert all(np.isfinite(g).all() for g in grads)


# ---------------------------------------------------------------------------------------------
# The model's likelihood against amortized_rlddm.model.likelihood.loglik
# ---------------------------------------------------------------------------------------------

TRUE = {"v": 2.5, "a": 1.2, "z": 0.45, "t0": 0.3, "alpha": 0.3, "alpha_pos": 0.45, "alpha_neg": 0.15}


def model_point(model, target, values):
    """The PyMC model's unconstrained point of parameter values, mapped by the exact target's
    transforms (ExactTarget.to_unbounded): the model's transforms must be the same maps for
    its log density to equal the target's there."""
    y = target.to_unbounded({name: np.array([[values[name]]]) for name in target.names})[0, 0]
    point = {}
    for value in model.value_vars:
        name = "t0" if value.name == "t0_interval" else model.values_to_rvs[value].name
        point[value.name] = y[target.names.index(name)]
    return point


# the likelihood settings checked, and the data each is checked on
SETTINGS = {
    "ignorable": ({"missing": "ignorable"}, {}),
    "deadline": ({"deadline": 0.9}, {}),
    "pairs, contaminants, excluded": ({"deadline": 0.9, "p_outlier": 0.05, "rt_max": 5.0},
                                      {"pairs": [Pair((0.8, 0.2), None), Pair((0.7, 0.3), 5), Pair((0.6, 0.4), None)],
                                       "p_outlier": 0.05, "rt_max": 5.0}),
}


@pytest.mark.parametrize("q_values", ["closed_form", "scan"])
@pytest.mark.parametrize("kind", ["single", "dual"])
@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_model_loglik_equals_numpy_loglik(kind, setting, q_values):
    """Blocks, missing responses of both kinds, padding, stimulus pairs, contaminants and
    excluded trials: the PyMC model's log-likelihood is the NumPy one."""
    options, design = SETTINGS[setting]
    names = SINGLE_RATE if kind == "single" else DUAL_RATE
    priors = PriorSet.from_dict({}, names)
    settings = LikelihoodSettings(**options)
    exact = ExactPosterior(priors, kind, settings, max_trials=50, q_values=q_values, n_conditions=3)
    likelihood = exact.model.compile_logp(vars=[exact.model["loglik"]], jacobian=False, mode="FAST_COMPILE")
    log_density = exact.model.compile_logp(mode="FAST_COMPILE")
    truth = {n: np.full(3, TRUE[n]) for n in names}
    task = TaskDesign(n_trials=(17, 50), n_blocks=3, deadline=0.9, **design)
    study = simulate(truth, task, seed=2, n_trials=[50, 31, 17])
    if "pairs" in design:
        study.excluded = study.valid & (np.random.default_rng(5).random(study.choice.shape) < 0.15)
        study.q_init = np.array([0.5, 0.2, 0.9])  # the data may give q_init per participant
    assert study.missing.sum() > 3
    rng = np.random.default_rng(1)
    for i in range(3):
        exact.set_participant(study, i)
        target = ExactTarget(study.select(np.array([i])), priors, settings)
        scored = (study.choice[i] >= 0) & ~study.excluded[i]
        for _ in range(2):
            values = {n: float(priors.priors[n].sample(rng, 1)[0]) for n in names}
            values["t0"] = min(values["t0"], 0.9 * study.rt[i][scored].min())
            point = model_point(exact.model, target, values)
            expected = loglik(study, {n: np.full(3, x) for n, x in values.items()}, **options)[i]
            assert likelihood(point) == pytest.approx(expected, rel=1e-10, abs=1e-10)
            # the whole log density in the sampler's space is the exact target's (prior,
            # likelihood, Jacobians; t0 on its interval below the fastest response), but for
            # PyMC's truncated normals' normalising constants, a few 1e-9 off the closed form
            y = target.to_unbounded({n: np.array([[x]]) for n, x in values.items()})
            assert log_density(point) == pytest.approx(target.log_density(y)[0, 0], abs=1e-7)


def test_fixed_parameters_are_held_and_not_sampled():
    priors = PriorSet.from_dict({}, SINGLE_RATE)
    exact = ExactPosterior(priors, "single", max_trials=20, fixed={"z": 0.5})
    assert "z" not in exact.parameter_names and "z" not in [v.name for v in exact.model.free_RVs]
    study = simulate({n: np.array([TRUE[n]]) for n in SINGLE_RATE}, TaskDesign(n_trials=20), seed=3)
    exact.set_participant(study, 0)
    sampled = PriorSet.from_dict({}, tuple(n for n in SINGLE_RATE if n != "z"))
    target = ExactTarget(study, sampled, TaskDesign(n_trials=20), fixed={"z": 0.5})
    likelihood = exact.model.compile_logp(vars=[exact.model["loglik"]], jacobian=False, mode="FAST_COMPILE")
    values = {"v": 1.0, "a": 1.2, "t0": 0.2, "alpha": 0.3}
    point = model_point(exact.model, target, values)
    expected = loglik(study, {**{n: np.array([x]) for n, x in values.items()}, "z": np.array([0.5])})[0]
    assert likelihood(point) == pytest.approx(expected, rel=1e-10)
    y = target.to_unbounded({n: np.array([[x]]) for n, x in values.items()})
    assert exact.model.compile_logp()(point) == pytest.approx(target.log_density(y)[0, 0], abs=1e-7)
    with pytest.raises(ValueError, match="fixed"):
        ExactPosterior(priors, "single", fixed={"t0": 0.3})


def test_participant_checks():
    priors = PriorSet.from_dict({}, SINGLE_RATE)
    exact = ExactPosterior(priors, "single", LikelihoodSettings(deadline=1.0), max_trials=10)
    trials = {"choice": np.array([1, 0, -1]), "rt": np.array([0.5, 0.6, np.nan]), "reward": np.array([1, 0, -1])}
    exact.set_participant(trials)
    with pytest.raises(ValueError, match="max_trials"):
        exact.set_participant({k: np.tile(x, 4) for k, x in trials.items()})
    with pytest.raises(ValueError, match="deadline"):
        exact.set_participant({**trials, "rt": np.array([0.5, 1.2, np.nan])})
    with pytest.raises(ValueError, match="rewards"):
        exact.set_participant({**trials, "reward": np.array([1, 2, -1])})
    with pytest.raises(ValueError, match="priors have parameters"):
        ExactPosterior(priors, "dual")


# ---------------------------------------------------------------------------------------------
# Recovery: NUTS and maximum likelihood on long simulated datasets
# ---------------------------------------------------------------------------------------------

RECOVERY = {"v": 3.0, "a": 1.3, "z": 0.45, "t0": 0.3, "alpha": 0.3}


def long_study(n_trials, seed):
    return simulate({k: np.array([v]) for k, v in RECOVERY.items()}, TaskDesign(n_trials=n_trials), seed=seed)


def test_nuts_recovers_the_truth_of_a_long_dataset():
    pytest.importorskip("nutpie")
    study = long_study(400, seed=3)
    exact = ExactPosterior(PriorSet.from_dict({}, SINGLE_RATE), "single", max_trials=400, q_values="closed_form",
                           backend="nutpie-jax")
    fits = exact.fit(study, draws=300, tune=300, chains=2, seed=1)
    assert fits[0].diagnostics["rhat_max"] < 1.05 and fits[0].diagnostics["ess_bulk_min"] > 100
    tree = posterior_tree(fits)
    assert dict(tree["posterior"].sizes) == {"chain": 2, "draw": 300, "participant": 1}
    for name, value in RECOVERY.items():
        low, high = np.quantile(tree["posterior"][name].values, [0.025, 0.975])
        assert low < value < high, (name, value, low, high)


def test_a_stored_fit_is_read_back_instead_of_sampled_again(tmp_path, monkeypatch):
    pytest.importorskip("nutpie")
    params = {k: np.array([v, v]) for k, v in RECOVERY.items()}
    study = simulate(params, TaskDesign(n_trials=40), seed=5)
    exact = ExactPosterior(PriorSet.from_dict({}, SINGLE_RATE), "single", max_trials=40, backend="nutpie-jax")
    first = exact.fit(study, draws=50, tune=50, chains=2, seed=1, store=tmp_path)
    assert len(list(tmp_path.glob("*.nc"))) == 2

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled although the fit is stored")

    monkeypatch.setattr(exact, "fit_one", no_sampling)
    again = exact.fit(study, draws=50, tune=50, chains=2, seed=1, store=tmp_path)
    for old, new in zip(first, again):
        assert str(new.participant) == str(old.participant) and new.diagnostics == old.diagnostics
        for name in exact.parameter_names:
            np.testing.assert_array_equal(new.trace["posterior"][name].values, old.trace["posterior"][name].values)
    with pytest.raises(AssertionError, match="sampled although"):  # another seed is another fit
        exact.fit(study, draws=50, tune=50, chains=2, seed=2, store=tmp_path)
    monkeypatch.undo()
    # a thinned fit (a retry's) keeps `draws` draws numbered from 0, so fits stack without gaps
    thinned = exact.fit_one(study, 1, draws=50, tune=30, chains=2, seed=3, thin=3, target_accept=0.95)
    np.testing.assert_array_equal(thinned.trace["posterior"]["draw"].values, np.arange(50))
    stacked = posterior_tree([first[0], thinned])["posterior"]
    assert stacked.sizes["draw"] == 50 and np.isfinite(stacked["v"].values).all()


def test_mle_lands_near_the_truth_of_a_long_dataset():
    study = long_study(500, seed=3)
    priors = PriorSet.from_dict({}, SINGLE_RATE)
    fit = fit_mle(study, priors, starts=4, seed=0)
    at_truth = loglik(study, {k: np.array([v]) for k, v in RECOVERY.items()})[0]
    # the maximum is at least the truth's likelihood, and not implausibly above it (chi-square, 5 df)
    assert 0.0 <= fit["loglik"] - at_truth < 12.5
    tolerance = {"v": 0.6, "a": 0.1, "z": 0.04, "t0": 0.02, "alpha": 0.1}
    for name, value in RECOVERY.items():
        assert fit["params"][name] == pytest.approx(value, abs=tolerance[name]), name


def test_benchmarks_time_pymc_nuts_and_both_q_value_methods():
    """A short run of both benchmarks (PyMC's own NUTS here; nutpie's compilation takes ~35 s)."""
    nuts = bench_nuts(backends=("pymc",), n_trials=20, draws=40, tune=40, chains=2, cores=1)["pymc"]
    assert nuts["fit_s"] > 0 and nuts["first_fit_s"] > 0 and nuts["divergences"] >= 0
    assert np.isfinite(nuts["rhat_max"]) and nuts["ess_bulk_min"] > 0
    evaluation = bench_logp(n_trials=(20,), repeats=3)
    assert set(evaluation[20]) == {"closed_form", "scan"} and min(evaluation[20].values()) > 0


def test_a_store_finds_a_fit_of_data_equal_but_for_the_last_bits_of_its_floats(tmp_path):
    """Data simulated on another machine may differ in the last bits of its floats: they name
    the same stored fit; a real difference in the data, its dtype or the settings names another."""
    from amortized_rlddm.output import stored_fit_path

    rt = np.random.default_rng(0).uniform(0.2, 2.0, (20, 60))
    choice = np.ones((20, 60), np.int8)
    path = stored_fit_path(tmp_path, {"rt": rt, "choice": choice}, {"seed": 0})
    assert stored_fit_path(tmp_path, {"rt": np.nextafter(rt, 3.0), "choice": choice}, {"seed": 0}) == path
    changed = rt.copy()
    changed[3, 7] += 1e-6
    assert stored_fit_path(tmp_path, {"rt": changed, "choice": choice}, {"seed": 0}) != path
    assert stored_fit_path(tmp_path, {"rt": rt, "choice": choice.astype(np.int64)}, {"seed": 0}) != path
    assert stored_fit_path(tmp_path, {"rt": rt, "choice": choice}, {"seed": 1}) != path


# ---------------------------------------------------------------------------------------------
# The choice-only models: against the PyMC example gallery's own scan model
# ---------------------------------------------------------------------------------------------


def gallery_scan_loglik(alpha, beta, actions, rewards):
    """The gallery's PyTensor log-likelihood ("Fitting a reinforcement learning model to
    behavioral data with PyMC"): a scan over the trials, the softmax of beta Q, its first
    trial left out (its probability is 1/2 whatever the parameters)."""
    def update(action, reward, q, alpha):
        return pt.set_subtensor(q[action], q[action] + alpha * (reward - q[action]))

    qs = pytensor.scan(update, sequences=[pt.as_tensor_variable(actions, dtype="int32"),
                                          pt.as_tensor_variable(rewards, dtype="int32")],
                       outputs_info=[0.5 * pt.ones((2,), dtype="float64")], non_sequences=[alpha],
                       return_updates=False)
    qs = qs[:-1] * beta
    logp = qs - pt.logsumexp(qs, axis=1, keepdims=True)
    return pt.sum(logp[pt.arange(actions.shape[0] - 1), actions[1:]])


@pytest.mark.parametrize("q_values", ["closed_form", "scan"])
def test_the_softmax_model_is_the_gallerys_scan_model(q_values):
    """One pair, no blocks, Q from 0.5: the PyMC softmax model's log-likelihood equals the
    gallery's scan model plus the first trial's log(1/2), on random data and parameters, and
    its log density in the sampling space is ExactTarget's."""
    rng = np.random.default_rng(4)
    study = simulate({"alpha": [0.4], "beta": [3.0]}, TaskDesign(n_trials=80, reward_probs=(0.4, 0.6),
                                                                 reversal_every=None), seed=9)
    priors = PriorSet.from_dict({}, ("alpha", "beta"))
    exact = ExactPosterior(priors, "softmax", max_trials=80, q_values=q_values)
    exact.set_participant(study, 0)
    likelihood = exact.model.compile_logp(vars=[exact.model["loglik"]], jacobian=False, mode="FAST_COMPILE")
    alpha, beta = pt.dscalars("alpha", "beta")
    gallery = pytensor.function([alpha, beta], gallery_scan_loglik(alpha, beta, study.choice[0].astype(int),
                                                                   study.reward[0].astype(int)))
    target = ExactTarget(study, priors, LikelihoodSettings())
    log_density = exact.model.compile_logp(mode="FAST_COMPILE")
    for _ in range(4):
        values = {"alpha": float(rng.uniform(0.02, 0.98)), "beta": float(rng.uniform(0.0, 15.0))}
        point = model_point(exact.model, target, values)
        assert likelihood(point) == pytest.approx(float(gallery(values["alpha"], values["beta"])) + np.log(0.5),
                                                  rel=1e-10)
        y = target.to_unbounded({n: np.array([[x]]) for n, x in values.items()})
        assert log_density(point) == pytest.approx(target.log_density(y)[0, 0], abs=1e-7)


def test_the_dual_softmax_model_with_a_lapse_is_the_numpy_likelihood():
    rng = np.random.default_rng(5)
    design = TaskDesign(n_trials=(30, 60), n_blocks=2, pairs=[Pair((0.8, 0.2), 8), Pair((0.3, 0.7), None)],
                        missing="ignorable", omission_rate=0.1, p_outlier=0.1)
    study = simulate({"alpha_pos": [0.6, 0.2], "alpha_neg": [0.1, 0.5], "beta": [4.0, 8.0]}, design, seed=3)
    settings = LikelihoodSettings(missing="ignorable", p_outlier=0.1)
    priors = PriorSet.from_dict({}, ("alpha_pos", "alpha_neg", "beta"))
    exact = ExactPosterior(priors, "softmax-dual", settings, max_trials=60, n_conditions=2)
    likelihood = exact.model.compile_logp(vars=[exact.model["loglik"]], jacobian=False, mode="FAST_COMPILE")
    target = ExactTarget(study, priors, settings)
    for i in range(2):
        exact.set_participant(study, i)
        values = {"alpha_pos": rng.uniform(0.05, 0.95), "alpha_neg": rng.uniform(0.05, 0.95),
                  "beta": rng.uniform(0.5, 10.0)}
        expected = loglik(study, {n: np.full(2, x) for n, x in values.items()}, missing="ignorable",
                          p_outlier=0.1)[i]
        assert likelihood(model_point(exact.model, target.select([i]), values)) == pytest.approx(expected, rel=1e-10)
    with pytest.raises(ValueError, match="no deadline"):
        ExactPosterior(priors, "softmax-dual", LikelihoodSettings(deadline=1.0))

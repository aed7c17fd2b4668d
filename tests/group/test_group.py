"""The group level: the Metropolis-within-Gibbs sampler against a hierarchical posterior known
by quadrature, and the study-level call on a network."""

from dataclasses import asdict

import arviz_stats
import numpy as np
import pytest
import xarray as xr
from scipy import stats
from scipy.special import logsumexp

from amortized_rlddm.group.fit import group_labels
from amortized_rlddm.group.sampler import EXTRA_WALKS, metropolis_within_gibbs


def normal_hierarchy(seed, sds, per_group, count, missed=False):
    """Per parameter k, normal observations x_ik ~ N(y_ik, 1) of participants y_ik ~ N(mu_gk,
    sds[k]) in two groups (true means -1 and 1.5), with `count` proposals each from a
    deliberately wrong N(x_i + 0.3, 1.4) (with `missed`, participant 0's from N(x_0 + 6, 0.05),
    which its posterior never reaches): the data (participants, parameters), the proposals
    (participants, count, parameters), their log weights, and the moves' log-likelihood and
    proposal density of values (chains, participants, parameters)."""
    rng = np.random.default_rng(seed)
    group_index = np.repeat([0, 1], per_group)
    x = rng.normal(np.where(group_index == 0, -1.0, 1.5)[:, None], np.sqrt(np.square(sds) + 1.0))
    shift, scale = np.full((x.shape[0], 1), 0.3), np.full((x.shape[0], 1), 1.4)
    if missed:
        shift[0], scale[0] = 6.0, 0.05
    proposal = stats.norm(x[:, None] + shift[:, None], scale[:, None])
    y = proposal.rvs(size=(x.shape[0], count, x.shape[1]), random_state=rng)
    log_weight = (stats.norm(y, 1.0).logpdf(x[:, None]) - proposal.logpdf(y)).sum(-1)

    def log_likelihood(values, participants=None):  # log N(x; y, 1), as in the weights (scipy is slow per call)
        seen = x if participants is None else x[participants]
        return (-0.5 * (seen - values) ** 2 - 0.5 * np.log(2 * np.pi)).sum(-1)

    def log_proposal(values):  # log N(y; x + shift, scale)
        return (-0.5 * ((values - x - shift) / scale) ** 2 - np.log(scale) - 0.5 * np.log(2 * np.pi)).sum(-1)

    proposal_log_likelihood = log_likelihood(np.swapaxes(y, 0, 1)).T  # (participants, count)
    return x, group_index, y, log_weight, {"log_likelihood": log_likelihood, "log_proposal": log_proposal,
                                           "proposal_log_likelihood": proposal_log_likelihood}


def wrong_surrogate(x):
    """A quadratic surrogate of the log-likelihood sum_k log N(x_k; y_k, 1) (exactly P = I,
    b = x), deliberately off: half the curvature and a shifted centre."""
    n, p = x.shape
    return 0.5 * np.broadcast_to(np.eye(p), (n, p, p)), 0.5 * (x + 0.4)


def quadrature(x, group_index, m, s, mu, sigma):
    """Mean and sd of mu_1, mu_2 and sigma of one parameter under the exact posterior, on a grid
    (mu_1, mu_2, sigma) with the participants integrated out: x_i ~ N(mu_g, sqrt(sigma^2 + 1)).
    The log density is a(mu_1, sigma) + b(mu_2, sigma) + c(sigma), so each marginal is a sum
    over 2-d grids."""
    grid_mu, grid_sigma = np.meshgrid(mu, sigma, indexing="ij")
    spread = np.sqrt(grid_sigma[..., None] ** 2 + 1)
    part = [stats.norm(m, s).logpdf(grid_mu)
            + stats.norm(grid_mu[..., None], spread).logpdf(x[group_index == g]).sum(-1) for g in (0, 1)]  # (mu, sigma)
    c = stats.halfnorm(scale=s).logpdf(sigma)
    evidence = [logsumexp(a, axis=0) for a in part]  # (sigma,): each group's mean integrated out
    log_marginals = {"mu1": logsumexp(part[0] + c + evidence[1], axis=1),
                     "mu2": logsumexp(part[1] + c + evidence[0], axis=1), "sigma": c + evidence[0] + evidence[1]}
    out = {}
    for name, log_marginal in log_marginals.items():
        grid = sigma if name == "sigma" else mu
        weight = np.exp(log_marginal - logsumexp(log_marginal))
        mean = (weight * grid).sum()
        out[name] = mean, np.sqrt((weight * (grid - mean) ** 2).sum())
    return out


def assert_matches(chain, exact, k=0, tolerance=0.1):
    """The chains' mean within `tolerance` posterior sds of the exact one, their sd within
    `tolerance` of it, for mu_1, mu_2 and sigma of parameter k."""
    for name, draws_of in (("mu1", chain["mu"][..., 0, k]), ("mu2", chain["mu"][..., 1, k]),
                           ("sigma", chain["sigma"][..., k])):
        mean, sd_exact = exact[name]
        assert draws_of.mean() == pytest.approx(mean, abs=tolerance * sd_exact), (k, name)
        assert draws_of.std() == pytest.approx(sd_exact, rel=tolerance), (k, name)


@pytest.mark.parametrize("moves", ["none", "exact", "surrogate"])
def test_the_sampler_gives_a_hierarchical_posterior_known_by_quadrature(moves):
    """Two groups of normal participants with a deliberately wrong proposal: the chains must give
    the posterior of (mu_1, mu_2, sigma) that a grid over the marginal likelihood gives, with
    the independence steps alone, with the exactly checked scale and shift moves, and with
    those moves under a deliberately wrong surrogate and their exact check."""
    m, s = np.array([0.0]), np.array([2.0])
    chains, tune, draws, steps = 4, 300, 3000, 2
    count = chains * ((tune + draws) * steps + 1)
    x, group_index, y, log_weight, functions = normal_hierarchy(0, [0.8], 6, count)
    extra = {"none": {}, "exact": functions, "surrogate": {**functions, "surrogate": wrong_surrogate(x)}}[moves]
    chain = metropolis_within_gibbs(y, log_weight, group_index, 2, m, s, chains=chains, tune=tune, draws=draws,
                                    seed=1, participant_steps=steps, **extra)
    assert_matches(chain, quadrature(x[:, 0], group_index, 0.0, 2.0, np.linspace(-6, 6, 121),
                                     np.linspace(0.005, 6, 120)))
    # each participant's values: its posterior mean given the data, shrunk toward its group
    held = chain["y"][..., 0]  # (chains, draws, participants)
    if moves == "none":  # the proposals each participant holds
        np.testing.assert_array_equal(held, y[np.arange(x.shape[0])[None, None, :], chain["index"], 0])
    assert np.abs(held.mean(axis=(0, 1)) - x[:, 0]).max() < np.abs(x - x.mean()).max()
    assert 0.2 < chain["accepted"].sum() / (chains * draws * steps * x.shape[0]) < 1.0
    if moves == "surrogate":  # the wrong surrogate's end points pass their check sometimes, not always
        assert 0.1 < chain["surrogate_acceptance"].mean() < 0.9 and chain["surrogate_acceptance"].shape == (chains,)
    if moves == "exact":  # tuned toward MOVE_TARGET and WALK_TARGET
        assert 0.2 < chain["scale_acceptance"].mean() < 0.5 and 0.2 < chain["shift_acceptance"].mean() < 0.5
        assert chain["scale_acceptance"].shape == (chains, 1) and chain["shift_acceptance"].shape == (chains, 2, 1)
        assert 0.2 < chain["walk_accepted"].mean() / draws < 0.4 and chain["walk_step"].shape == (x.shape[0],)


@pytest.mark.parametrize("moves", ["exact", "surrogate"])
def test_a_participant_the_proposals_never_reach_still_moves(moves):
    """Participant 0's proposals lie far from its posterior (6 data sds off, sd 0.05), so its
    independence steps never accept; it moves by the random-walk step (tuned to accept often;
    exact moves) or by the conditional step under a deliberately wrong surrogate, and its
    values still match those of a run with good proposals on the same data, and the group
    posterior the one quadrature gives."""
    m, s = np.array([0.0]), np.array([2.0])
    chains, tune, draws, steps = 4, 500, 3000, 2
    fits = {}
    for missed in (False, True):
        x, group_index, y, log_weight, functions = normal_hierarchy(2, [0.8], 6, chains * ((tune + draws) * steps + 1),
                                                                    missed=missed)
        extra = {"surrogate": wrong_surrogate(x)} if moves == "surrogate" else {}
        fits[missed] = metropolis_within_gibbs(y, log_weight, group_index, 2, m, s, chains=chains, tune=tune,
                                               draws=draws, seed=1, participant_steps=steps, **functions, **extra)
    chain = fits[True]
    assert chain["accepted"][:, 0].sum() == 0
    if moves == "exact":
        assert chain["walk_steps"][0] == 1 + EXTRA_WALKS
        assert chain["walk_accepted"][:, 0].mean() / (draws * chain["walk_steps"][0]) > 0.15
    else:
        assert chain["conditional_acceptance"][:, 0].mean() > 0.15
    held, reference = chain["y"][..., 0, 0], fits[False]["y"][..., 0, 0]
    assert held.mean() == pytest.approx(reference.mean(), abs=0.1 * reference.std())
    assert held.std() == pytest.approx(reference.std(), rel=0.1)
    assert_matches(chain, quadrature(x[:, 0], group_index, 0.0, 2.0, np.linspace(-6, 6, 121),
                                     np.linspace(0.005, 6, 120)))


@pytest.mark.slow
@pytest.mark.parametrize("move_steps", [1, 2, "surrogate"])
def test_the_moves_mix_a_small_group_sd_where_the_independence_steps_stick(move_steps):
    """The funnel: a true sd of 0.05 under noisy data (parameter 0), so each participant must sit
    near their group mean where the wrong proposal seldom lands; a second parameter with a
    wide sd and other hyperpriors rides along. At the same seed the moves (checked exactly one
    by one, or under the surrogate with one exact check per iteration; a wrong surrogate's
    chains are checked in the quadrature test above) multiply the ESS of sigma_0, and their
    chains still give each parameter's posterior by quadrature."""
    m, s = np.array([0.0, 0.5]), np.array([2.0, 1.5])
    chains, tune, draws, steps = 4, 300, 2000, 2
    x, group_index, y, log_weight, functions = normal_hierarchy(1, [0.05, 0.8], 10,
                                                                chains * ((tune + draws) * steps + 1))
    exact_quadratic = (np.broadcast_to(np.eye(2), (x.shape[0], 2, 2)), x)  # sum_k log N(x_k; y_k, 1), P = I, b = x
    moved = {**functions, "surrogate": exact_quadratic} if move_steps == "surrogate" else \
        {**functions, "move_steps": move_steps}
    fits = {moves: metropolis_within_gibbs(y, log_weight, group_index, 2, m, s, chains=chains, tune=tune,
                                           draws=draws, seed=1, participant_steps=steps, **(moved if moves else {}))
            for moves in (False, True)}
    move_steps = 1 if move_steps == "surrogate" else move_steps
    ess = {moves: float(arviz_stats.ess(fit["sigma"][..., 0])) for moves, fit in fits.items()}
    rhat = {moves: float(arviz_stats.rhat(fit["sigma"][..., 0])) for moves, fit in fits.items()}
    assert ess[True] > 5 * ess[False] and ess[True] > 100 * move_steps
    assert rhat[True] < 1.03 < rhat[False], rhat
    for k in (0, 1):
        assert_matches(fits[True], quadrature(x[:, k], group_index, m[k], s[k], np.linspace(-6, 6, 481),
                                              np.linspace(0.0005, 4, 1600)), k)


def test_the_gaussian_surrogate_is_the_likelihood_of_a_normal_model_from_its_posterior_draws():
    """Prior N(m0, diag(s0^2)) and likelihood N(x; y, L^-1) make a normal posterior; the
    surrogate from its draws recovers the likelihood's quadratic form (P = L, b = L x) up to
    Monte Carlo error, and a direction the data do not inform (posterior = prior) gets no
    curvature."""
    from amortized_rlddm.group.sampler import gaussian_surrogate

    rng = np.random.default_rng(3)
    m0, s0 = np.array([0.5, -1.0, 0.0]), np.array([2.0, 1.5, 1.0])
    likelihood_precision = np.array([[4.0, 1.0, 0.0], [1.0, 3.0, 0.0], [0.0, 0.0, 0.0]])  # the third: no data
    x = np.array([1.0, -0.5, 0.3])
    precision = np.diag(s0 ** -2.0) + likelihood_precision
    covariance = np.linalg.inv(precision)
    mean = covariance @ (m0 / s0 ** 2 + likelihood_precision @ x)
    draws = rng.multivariate_normal(mean, covariance, size=(2, 200_000))
    P, b = gaussian_surrogate(draws, m0, s0)
    for i in range(2):
        np.testing.assert_allclose(P[i], likelihood_precision, atol=0.05)
        np.testing.assert_allclose(b[i], likelihood_precision @ x, atol=0.05)


def test_group_labels_come_from_a_column_constant_within_each_participant(tmp_path):
    frame = xr.Dataset({"participant": ("row", [1, 1, 2, 2]), "patient": ("row", ["yes", "yes", "no", "no"])})
    table = frame.to_dataframe()
    assert group_labels(table, "patient", [2, 1]) == ["no", "yes"]
    table.loc[1, "patient"] = "no"
    path = tmp_path / "groups.csv"
    table.to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"groups.csv, row 3, column 'patient': participant '1' is in group"):
        group_labels(path, "patient", [1, 2])
    with pytest.raises(ValueError, match="no column 'arm'"):
        group_labels(path, "arm", [1, 2])


@pytest.fixture
def smoke(smoke_checkpoint, smoke_posterior):
    return smoke_checkpoint, smoke_posterior


def test_the_participant_mixtures_have_the_student_t_mixture_density_and_draw_from_it():
    """Stacked over participants, each mixture's log density is the sum of SciPy's
    multivariate t densities with its shares, and its draws follow its CDF (SciPy's, at
    three points)."""
    from scipy import stats

    from amortized_rlddm.group.proposals import ParticipantMixtures

    rng = np.random.default_rng(0)
    draws = np.stack([rng.multivariate_normal([i, -i], [[1.0, 0.6 * i], [0.6 * i, 1.0 + i]], 600) for i in range(3)])
    draws[1, :300] += 4.0  # a bimodal participant: two components
    mixtures = ParticipantMixtures.fit(draws)
    points = rng.normal(size=(5, 3, 2)) * 2
    cholesky = np.linalg.inv(mixtures.inverse_cholesky)
    for i in range(3):
        used = np.isfinite(mixtures.log_shares[i])
        components = [stats.multivariate_t(mixtures.means[i, k], cholesky[i, k] @ cholesky[i, k].T,
                                           df=mixtures.df[i, k]) for k in np.flatnonzero(used)]
        shares = np.exp(mixtures.log_shares[i, used])
        expected = np.log(sum(w * c.pdf(points[:, i]) for w, c in zip(shares, components)))
        np.testing.assert_allclose(mixtures.logpdf(points)[:, i], expected, rtol=1e-10)
        sample = mixtures.sample(40_000, np.random.default_rng(i))[i]
        for corner in ([0.0, 0.0], [1.0, -1.0], [4.0, 0.5]):
            cdf = sum(w * c.cdf(corner) for w, c in zip(shares, components))
            assert abs(np.mean((sample <= corner).all(axis=1)) - cdf) < 4 * np.sqrt(cdf * (1 - cdf) / 40_000) + 2e-3
    assert mixtures.sample(7, rng).shape == (3, 7, 2)


def test_the_group_fit_proposes_from_the_corrected_posteriors_with_exact_weights(smoke, monkeypatch):
    """fit_group fits its proposals to the corrected posterior's draws and hands the sampler
    log weights equal to the exact log-likelihood minus the mixture's log density; the moves'
    likelihood is the exact one at the chains' values; the tree carries the correction."""
    from amortized_rlddm.group import fit as group_fit
    from amortized_rlddm.model.likelihood import likelihood_function
    from amortized_rlddm.model.simulator import simulate

    _, posterior = smoke
    study = simulate(posterior.config.priors.sample(np.random.default_rng(4), 5), posterior.design, seed=5)
    seen = {}
    sampler = group_fit.metropolis_within_gibbs

    def recorded(y, log_weight, *args, **kwargs):
        seen.update(y=y, log_weight=log_weight, **kwargs)
        return sampler(y, log_weight, *args, **kwargs)

    fit_mixtures = group_fit.ParticipantMixtures.fit

    def fitted_to(draws):
        seen["fitted_to"] = draws
        return fit_mixtures(draws)

    monkeypatch.setattr(group_fit, "metropolis_within_gibbs", recorded)
    monkeypatch.setattr(group_fit.ParticipantMixtures, "fit", fitted_to)
    monkeypatch.setattr(group_fit, "CORRECTED_DRAWS", 100)
    tree = group_fit.fit_group(posterior, study, chains=2, tune=10, draws=20, seed=3, moves="exact", move_steps=1)
    model = group_fit.GroupModel(posterior.config.priors)
    values = model.space.inverse(seen["y"])
    exact = likelihood_function(study, posterior.study_design().likelihood.for_study(study))(values)
    log_q = seen["log_proposal"](np.swapaxes(seen["y"], 0, 1)).T
    finite = np.isfinite(exact)
    np.testing.assert_allclose(seen["log_weight"][finite], (exact - log_q)[finite], rtol=1e-10)
    assert np.isneginf(seen["log_weight"][~finite]).all()
    chain_y = np.swapaxes(seen["y"][:, :3], 0, 1)  # three proposals as chains: (chains, participants, parameters)
    np.testing.assert_allclose(seen["log_likelihood"](chain_y), exact[:, :3].T, rtol=1e-10)
    np.testing.assert_allclose(seen["log_likelihood"](chain_y[:, [1, 3]], [1, 3]), exact[[1, 3], :3].T, rtol=1e-10)
    # the mixtures were fitted to the corrected posterior's draws, on the group's scale
    corrected = posterior.infer(study, draws=100, seed=3, refine=True)
    np.testing.assert_allclose(seen["fitted_to"], model.space.forward(
        {name: corrected["posterior"][name].values[0].T for name in model.names}))
    xr.testing.assert_equal(tree["correction"].to_dataset(), corrected["importance"].to_dataset())
    assert seen["y"].shape == (5, 2 * (30 * group_fit.PARTICIPANT_STEPS + 1), len(model.names))


def test_rlddm_group_writes_a_datatree_with_groups_contrasts_and_acceptance(smoke, tmp_path, capsys):
    from amortized_rlddm.cli import main
    from amortized_rlddm.data.io import write_study
    from amortized_rlddm.model.simulator import simulate

    checkpoint, posterior = smoke
    study = simulate(posterior.config.priors.sample(np.random.default_rng(2), 6), posterior.design, seed=3)
    path = tmp_path / "data.csv"
    write_study(study, path)
    frame = __import__("pandas").read_csv(path)
    frame["arm"] = np.where(frame["participant"].astype(int) <= 3, "control", "patient")
    frame.to_csv(path, index=False)
    out = tmp_path / "group.nc"
    assert main(["group", "--checkpoint", str(checkpoint), "--data", str(path), "--group-column", "arm",
                 "--chains", "2", "--tune", "50", "--draws", "100", "--moves", "exact", "--move-steps", "2",
                 "--out", str(out),
                 "--plots", str(tmp_path / "figures"), "--quiet"]) == 0
    assert "acceptance per participant" in capsys.readouterr().out
    tree = xr.open_datatree(out)
    post = tree["posterior"]
    assert post["mu_alpha"].dims == ("chain", "draw", "group") and list(post["group"].values) == ["control",
                                                                                                  "patient"]
    assert post["sigma_v"].shape == (2, 100) and post["alpha"].shape == (2, 100, 6)
    np.testing.assert_allclose(post["delta_mu_v"].sel(contrast="patient - control"),
                               post["mu_v"].sel(group="patient") - post["mu_v"].sel(group="control"))
    # the participants' values lie inside the supports
    assert ((post["alpha"] > 0) & (post["alpha"] < 1)).all()
    assert tree["acceptance"]["acceptance_rate_by_chain"].shape == (2, 6)
    np.testing.assert_allclose(tree["acceptance"]["acceptance_rate"],
                               tree["acceptance"]["acceptance_rate_by_chain"].mean("chain"))
    # the scale and shift moves: a rate and a tuned step per parameter
    moves = tree["acceptance"]
    assert list(moves["parameter"].values) == list(posterior.parameter_names)
    assert moves["scale_move_acceptance_rate_by_chain"].shape == (2, len(posterior.parameter_names))
    for name in ("scale_move_acceptance_rate", "shift_move_acceptance_rate"):
        assert ((moves[name] >= 0) & (moves[name] <= 1)).all()
    assert (moves["scale_move_step"] > 0).all() and (moves["shift_move_step"] > 0).all()
    assert moves["walk_acceptance_rate_by_chain"].shape == (2, 6) and (moves["walk_step"] > 0).all()
    assert np.isfinite(tree["diagnostics"]["rhat_mu_v"]).all()
    assert (tmp_path / "figures" / "group_difference.png").stat().st_size > 0


def test_rlddm_group_correlated_writes_the_correlations_and_their_diagnostics(smoke, tmp_path, capsys):
    """`rlddm group --correlated`: rho (chain, draw, pair) for every pair of parameters, labelled
    "v, a", inside [-1, 1], with r-hat and ESS, and the acceptance rate of its steps; with
    the default surrogate moves and the correction the proposals were fitted to."""
    from amortized_rlddm.cli import main
    from amortized_rlddm.data.io import write_study
    from amortized_rlddm.model.simulator import simulate

    checkpoint, posterior = smoke
    study = simulate(posterior.config.priors.sample(np.random.default_rng(2), 6), posterior.design, seed=3)
    write_study(study, tmp_path / "data.csv")
    out = tmp_path / "group.nc"
    assert main(["group", "--checkpoint", str(checkpoint), "--data", str(tmp_path / "data.csv"), "--correlated",
                 "--chains", "2", "--tune", "50", "--draws", "100", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "rho[v, a]" in printed and "proposals fitted to the corrected posteriors: trusted" in printed
    tree = xr.open_datatree(out)
    # the default moves: under the surrogate, with their exact check's acceptance and tuned steps
    assert float(tree["acceptance"]["surrogate_acceptance_rate"]) > 0  # some surrogate moves pass their check
    np.testing.assert_allclose(tree["acceptance"]["surrogate_acceptance_rate"],
                               tree["acceptance"]["surrogate_acceptance_rate_by_chain"].mean())
    assert float(tree["acceptance"]["conditional_acceptance_rate"].mean()) > 0
    assert (tree["acceptance"]["scale_move_step"] > 0).all() and (tree["acceptance"]["shift_move_step"] > 0).all()
    assert tree["correction"]["trusted"].dims == ("participant",)
    rho = tree["posterior"]["rho"]
    names = list(posterior.parameter_names)
    assert rho.dims == ("chain", "draw", "pair") and rho.shape == (2, 100, len(names) * (len(names) - 1) // 2)
    assert list(rho["pair"].values)[:3] == [f"{names[0]}, {names[1]}", f"{names[0]}, {names[2]}",
                                            f"{names[1]}, {names[2]}"]
    assert ((rho >= -1) & (rho <= 1)).all() and float(rho.std()) > 0
    assert np.isfinite(tree["diagnostics"]["rhat_rho"]).all()
    assert 0 < float(tree["acceptance"]["correlation_acceptance_rate"]) < 1
    assert "LKJ(2)" in tree["posterior"].attrs["hyperpriors"]


@pytest.mark.parametrize("correlated", [False, True])
def test_the_group_calibration_fits_with_the_chains_asked_for_and_reports_their_ess(smoke, monkeypatch, correlated):
    """calibrate() fits every study with the chains, tuning and draws given (and the
    correlated model when asked) and reports, per group variable (with `correlated`, each
    correlation too), the median of the fits' own bulk ESS."""
    import amortized_rlddm.validation.group as group_checks
    from amortized_rlddm.group.fit import fit_group

    _, posterior = smoke
    seen = []

    def recording_fit(*args, **kwargs):
        tree = fit_group(*args, **kwargs)
        sizes = tree["posterior"].sizes
        seen.append(((kwargs["chains"], kwargs["tune"], kwargs["draws"], kwargs["correlated"], sizes["chain"],
                      sizes["draw"]), float(tree["diagnostics"]["ess_bulk_sigma_alpha"])))
        return tree

    monkeypatch.setattr(group_checks, "fit_group", recording_fit)
    sbc = group_checks.calibrate(posterior, 3, participants=4, n_trials=30, chains=3, tune=15, draws=30,
                                 correlated=correlated)
    assert [settings for settings, _ in seen] == [(3, 15, 30, correlated, 3, 30)] * 3
    assert (sbc["chains"], sbc["tune"], sbc["draws"], sbc["studies"]) == (3, 15, 30, 3)
    assert sbc["parameters"]["sigma_alpha"]["ess_bulk_median"] == pytest.approx(np.median([e for _, e in seen]))
    assert all(m["ess_bulk_median"] > 0 for m in sbc["parameters"].values())
    pairs = [name for name in sbc["parameters"] if name.startswith("rho[")]
    assert len(pairs) == (10 if correlated else 0) and (not correlated or "rho[v, alpha]" in pairs)


def test_the_group_report_says_which_step_made_a_missing_file(tmp_path, monkeypatch):
    """validate(steps=["agreement"]) on a directory without sbc.json stops naming the step to run."""
    import amortized_rlddm.validation.group as group_checks

    monkeypatch.setattr(group_checks, "_agreement_studies", lambda *args: None)
    with pytest.raises(FileNotFoundError, match="--steps agreement"):
        group_checks.validate(None, tmp_path, steps=["agreement"])
    (tmp_path / "agreement.csv").write_text("study\n")
    (tmp_path / "timing.csv").write_text("study\n")
    with pytest.raises(FileNotFoundError, match="--steps sbc"):
        group_checks.validate(None, tmp_path, steps=["agreement"])


def test_bench_group_times_a_given_study_under_its_settings(smoke):
    """With a study (a data file's), the benchmark fits that study, not a simulated one."""
    from amortized_rlddm.benchmarks import bench_group
    from amortized_rlddm.model.simulator import simulate

    _, posterior = smoke
    study = simulate(posterior.config.priors.sample(np.random.default_rng(7), 3), posterior.design, seed=8)
    result = bench_group(posterior, chains=2, draws=30, reference=False, study=study,
                         design=posterior.study_design(), source="data.csv")
    assert (result["study"], result["participants"], result["trials"]) == ("data.csv", 3, int(study.n_trials.sum()))
    assert result["amortized_s"] > result["proposals_s"] > 0 and 0 <= result["acceptance_median"] <= 1
    assert "reference_sample_s" not in result


@pytest.mark.parametrize("design_name, settings, config_name", [
    ("seed", {}, "default"), ("seed", {"p_outlier": 0.05, "rt_max": 5.0}, "default"),
    ("seed", {"deadline": 0.9}, "default"), ("seed", {"missing": "ignorable", "omission_rate": 0.1}, "default"),
    ("hddm_pst", {}, "default"), ("gershman", {}, "default"),
    ("hddm_pst", {"missing": "ignorable", "omission_rate": 0.1, "p_outlier": 0.05}, "training_configs/softmax.yaml")])
def test_the_pymc_reference_model_has_the_hierarchical_density(design_name, settings, config_name):
    """Its log density at a point is the hyperpriors, the group normals (t0's with the Jacobian
    of its per-participant interval, unless contaminants make any t0 possible) and the exact
    likelihood (contaminants, a deadline's censoring, ignorable omissions; several pairs,
    blocks and participants of unequal lengths), computed here independently."""
    from dataclasses import replace

    from amortized_rlddm.group.model import GroupModel
    from amortized_rlddm.group.reference import reference_model
    from amortized_rlddm.model.config import load_config
    from amortized_rlddm.model.designs import named_design
    from amortized_rlddm.model.likelihood import loglik
    from amortized_rlddm.model.simulator import simulate

    config = load_config(config_name)
    params = {"v": np.array([2.0, 3.0, 1.0]), "a": np.array([1.0, 1.3, 1.1]), "z": np.array([0.45, 0.5, 0.55]),
              "t0": np.array([0.3, 0.35, 0.4]), "alpha": np.array([0.2, 0.4, 0.3]), "beta": np.array([2.0, 6.0, 9.0])}
    params = {name: params[name] for name in config.parameter_names}  # the RL-DDM's, or a choice-only model's
    design = replace(named_design(design_name), **settings)
    study = simulate(params, design, seed=5)
    assert (len(set(study.n_trials)) > 1) == (design_name == "hddm_pst")
    assert study.missing.any() == ("deadline" in settings or "missing" in settings)
    options = asdict(design.likelihood)
    model = GroupModel(config.priors, ("A", "B"))
    groups = np.array([0, 1, 1])
    pymc_model = reference_model(study, model, groups, design.likelihood)
    m, s = model.hyperpriors()
    rng = np.random.default_rng(6)
    point, expected = {}, 0.0
    theta = {}
    fastest = np.nanmin(study.rt, axis=1)
    for k, (name, (lo, hi)) in enumerate(zip(model.names, model.space.bounds)):
        mu, sigma = rng.normal(m[k], 0.3 * s[k], 2), 0.5 * s[k]
        point[f"mu_{name}"], point[f"sigma_{name}_log__"] = mu, np.log(sigma)
        expected += stats.norm(m[k], s[k]).logpdf(mu).sum() + stats.halfnorm(scale=s[k]).logpdf(sigma) + np.log(sigma)
        if name == "t0" and not settings.get("p_outlier"):
            u = rng.normal(0, 1, 3)
            point["t0_interval"] = u
            ceiling = np.minimum(fastest, hi)
            t0 = lo + (ceiling - lo) / (1 + np.exp(-u))
            y = np.log(t0 - lo) - np.log(hi - t0)
            jacobian = np.log(hi - lo) - np.log(t0 - lo) - np.log(hi - t0) + np.log(ceiling - lo) \
                + np.log(t0 - lo) - np.log(ceiling - lo) + np.log(ceiling - t0) - np.log(ceiling - lo)
            expected += (stats.norm(mu[groups], sigma).logpdf(y) + jacobian).sum()
            theta[name] = t0
        else:
            offset = rng.normal(0, 1, 3)
            point[f"{name}_offset"] = offset
            expected += stats.norm().logpdf(offset).sum()
            theta[name] = model.space.inverse(np.stack([np.zeros(3)] * len(model.names), -1)
                                              + np.eye(len(model.names))[k] * (mu[groups] + sigma * offset)[:, None]
                                              )[name]
    expected += loglik(study, theta, **options).sum()
    assert pymc_model.compile_logp()(point) == pytest.approx(expected, rel=1e-9)


def test_a_stored_reference_fit_is_read_back_and_keyed_by_data_and_settings(tmp_path, monkeypatch):
    """reference_posterior with a store runs the PyMC fit once per data and settings: the same
    call reads the stored group-level draws back (float32) without fitting; another seed or
    other data fit again."""
    import amortized_rlddm.group.reference as reference
    from amortized_rlddm.amortized.posterior import AmortizedPosterior
    from amortized_rlddm.validation.group import reference_posterior, simulate_group_study

    posterior = AmortizedPosterior.load("default")
    study, labels, _ = simulate_group_study(posterior, 3, 40, False, 0)
    fits = []

    def fake_fit(study, model, group_index, seed, draws, settings):  # a trace shaped like fit_reference's
        fits.append(seed)
        rng = np.random.default_rng(seed)
        data = {f"mu_{n}": (("chain", "draw", "group"), rng.normal(size=(2, draws, 1))) for n in model.names}
        data |= {f"sigma_{n}": (("chain", "draw"), rng.gamma(2.0, size=(2, draws))) for n in model.names}
        post = xr.Dataset(data, coords={"group": list(model.groups)})
        post.attrs.update(compile_seconds=1.0, sample_seconds=2.0, divergences=0)
        return xr.DataTree.from_dict({"posterior": post})

    monkeypatch.setattr(reference, "fit_reference", fake_fit)
    first, attrs = reference_posterior(study, posterior, labels, 3, 50, store=tmp_path)
    again, attrs_again = reference_posterior(study, posterior, labels, 3, 50, store=tmp_path)
    assert fits == [3] and len(list(tmp_path.glob("*.nc"))) == 1 and attrs_again == attrs
    np.testing.assert_allclose(again["mu_v"].values, first["mu_v"].values, rtol=1e-6)
    assert set(again.data_vars) == {f"{kind}_{n}" for kind in ("mu", "sigma") for n in posterior.parameter_names}
    reference_posterior(study, posterior, labels, 4, 50, store=tmp_path)
    other, _, _ = simulate_group_study(posterior, 3, 40, False, 1)
    reference_posterior(other, posterior, labels, 3, 50, store=tmp_path)
    assert fits == [3, 4, 3] and len(list(tmp_path.glob("*.nc"))) == 3


def test_lkj_correlations_from_canonical_partial_correlations_have_the_lkj_marginals_and_density():
    """Correlation matrices built from CPCs drawn from their Betas have LKJ(eta)'s marginals
    (each correlation Beta(eta - 1 + p / 2) on (-1, 1)), unit diagonals and positive
    definiteness; and the CPC prior's log density on w = atanh(CPC) is LKJ's (eta - 1) log det R
    plus the log Jacobian of w -> R's lower entries (by finite differences), to a constant."""
    from amortized_rlddm.group.model import correlation_cholesky, cpc_log_prior, sample_correlation_cholesky

    rng = np.random.default_rng(0)
    p, eta = 4, 2.0
    factor = sample_correlation_cholesky(rng, p, eta, (20000,))
    r = factor @ np.swapaxes(factor, -1, -2)
    np.testing.assert_allclose(np.diagonal(r, axis1=1, axis2=2), 1.0)
    assert (np.linalg.eigvalsh(r) > 0).all()
    b = eta - 1 + p / 2
    for i, j in ((1, 0), (3, 2), (3, 1)):  # first-level CPCs and entries made of several
        assert stats.kstest((r[:, i, j] + 1) / 2, stats.beta(b, b).cdf).pvalue > 0.01, (i, j)
    below = np.tril_indices(p, -1)  # row by row: the CPCs' order

    def lower(w):
        f = correlation_cholesky(np.tanh(w), p)
        return (f @ f.T)[below]

    constants = []
    for _ in range(5):
        w = rng.normal(0, 0.7, 6)
        jacobian = np.stack([(lower(w + 1e-6 * e) - lower(w - 1e-6 * e)) / 2e-6 for e in np.eye(6)], axis=1)
        f = correlation_cholesky(np.tanh(w), p)
        constants.append((eta - 1) * np.linalg.slogdet(f @ f.T)[1] + np.linalg.slogdet(jacobian)[1]
                         - cpc_log_prior(w, p, eta))
    assert np.ptp(constants) < 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("n_groups", [1, 2])
def test_the_correlated_sampler_gives_the_posterior_pymc_gives_for_correlated_normal_participants(n_groups):
    """Three correlated parameters per participant (true correlations 0.7, -0.3, 0), each
    observed once with unit noise, wrong proposals, in one group or two (means 1 apart): the
    chains' group means, sds and correlations match NUTS on the model with the participants
    integrated out (x_i ~ MultivariateNormal(mu_g(i), D R D + I), PyMC's LKJCholeskyCov with the
    same half-normal sds)."""
    import nutpie
    import pymc as pm

    rng = np.random.default_rng(3)
    n, p, chains, tune, draws = 60, 3, 4, 500, 2000
    m, s = np.zeros(p), np.full(p, 1.5)
    group_index = np.arange(n) % n_groups
    sds, r = np.array([1.0, 0.7, 1.2]), np.array([[1, 0.7, -0.3], [0.7, 1, 0], [-0.3, 0, 1]])
    x = (rng.multivariate_normal([0.5, -0.5, 0], r * np.outer(sds, sds), size=n) + rng.standard_normal((n, p))
         + group_index[:, None])
    y = x[:, None] + 0.3 + 1.4 * rng.standard_normal((n, chains * ((tune + draws) * 2 + 1), p))
    log_weight = (stats.norm(y, 1).logpdf(x[:, None]) - stats.norm(x[:, None] + 0.3, 1.4).logpdf(y)).sum(-1)

    def log_likelihood(values, participants=None):
        seen = x if participants is None else x[participants]
        return (-0.5 * (seen - values) ** 2 - 0.5 * np.log(2 * np.pi)).sum(-1)

    def log_proposal(values):
        return (-0.5 * ((values - x - 0.3) / 1.4) ** 2 - np.log(1.4) - 0.5 * np.log(2 * np.pi)).sum(-1)

    chain = metropolis_within_gibbs(y, log_weight, group_index, n_groups, m, s, chains=chains, tune=tune,
                                    draws=draws, seed=1, log_likelihood=log_likelihood, log_proposal=log_proposal,
                                    move_steps=p, correlation_eta=2.0)
    assert 0.2 < chain["correlation_acceptance"].mean() < 0.4
    with pm.Model() as model:
        mu = pm.Normal("mu", m, s, shape=(n_groups, p))
        factor, corr, group_sds = pm.LKJCholeskyCov("chol", n=p, eta=2.0, sd_dist=pm.HalfNormal.dist(s, shape=p),
                                                    compute_corr=True)
        pm.MvNormal("x", mu[group_index], factor @ factor.T + np.eye(p), observed=x)
    trace = nutpie.sample(nutpie.compile_pymc_model(model), chains=4, draws=3000, tune=1000, seed=2,
                          progress_bar=False)["posterior"]
    reference = {"mu": trace["mu"].values.reshape(-1, n_groups * p), "sigma": trace["chol_stds"].values.reshape(-1, p),
                 "rho": trace["chol_corr"].values.reshape(-1, p, p)[:, [1, 2, 2], [0, 0, 1]]}
    ours = {"mu": chain["mu"].reshape(-1, n_groups * p), "sigma": chain["sigma"].reshape(-1, p),
            "rho": chain["rho"].reshape(-1, 3)}
    for name, expected in reference.items():
        difference = (ours[name].mean(0) - expected.mean(0)) / expected.std(0)
        ratio = ours[name].std(0) / expected.std(0)
        assert (np.abs(difference) < 0.15).all() and (np.abs(ratio - 1) < 0.12).all(), (name, difference, ratio)


@pytest.mark.parametrize("settings", [{}, {"p_outlier": 0.05, "rt_max": 5.0}])
def test_the_correlated_pymc_reference_has_the_multivariate_group_normal(settings):
    """Between two points with the same group covariance, the correlated reference's log
    density changes as the hyperpriors of mu, the participants' multivariate group normal
    (scipy's, with t0's interval Jacobian unless contaminants make any t0 possible) and the
    exact likelihood do, computed here independently; its sigma_ and rho variables are the
    covariance's sds and correlations in the pair order."""
    from dataclasses import replace

    from amortized_rlddm.group.model import GroupModel, correlation_pairs
    from amortized_rlddm.group.reference import reference_model
    from amortized_rlddm.model.config import load_config
    from amortized_rlddm.model.designs import named_design
    from amortized_rlddm.model.likelihood import loglik
    from amortized_rlddm.model.simulator import simulate

    config = load_config("default")
    params = {"v": np.array([2.0, 3.0, 1.0]), "a": np.array([1.0, 1.3, 1.1]), "z": np.array([0.45, 0.5, 0.55]),
              "t0": np.array([0.3, 0.35, 0.4]), "alpha": np.array([0.2, 0.4, 0.3])}
    design = replace(named_design("seed"), **settings)
    study = simulate(params, design, seed=5)
    options = asdict(design.likelihood)
    model = GroupModel(config.priors, ("A", "B"), correlated=True)
    groups = np.array([0, 1, 1])
    pymc_model = reference_model(study, model, groups, design.likelihood)
    names, (m, s) = list(model.names), model.hyperpriors()
    cliff = not settings.get("p_outlier")
    order = [k for k, name in enumerate(names) if not (cliff and name == "t0")] + ([names.index("t0")] if cliff else [])
    free = len(order) - int(cliff)
    logp = pymc_model.compile_logp()
    outputs = pymc_model.replace_rvs_by_values([pymc_model["group_cholesky"], pymc_model["rho"]]
                                               + [pymc_model[f"sigma_{name}"] for name in names])
    evaluate = pymc_model.compile_fn(outputs, inputs=pymc_model.value_vars, on_unused_input="ignore")
    rng = np.random.default_rng(6)
    start = pymc_model.initial_point()
    packed = [v for v in start if v.startswith("group_cholesky")][0]
    start[packed] = rng.normal(0, 0.4, start[packed].shape)
    packed_factor, rho, *sigma = evaluate(start)
    factor = np.zeros((len(order), len(order)))
    factor[np.tril_indices(len(order))] = packed_factor  # PyMC packs the lower triangle row by row
    covariance = factor @ factor.T  # in `order`
    np.testing.assert_allclose(sigma, np.sqrt(np.diag(covariance))[np.argsort(order)], rtol=1e-10)
    correlation = covariance / np.outer(np.sqrt(np.diag(covariance)), np.sqrt(np.diag(covariance)))
    position = {k: i for i, k in enumerate(order)}
    np.testing.assert_allclose(rho, [correlation[position[names.index(a)], position[names.index(b)]]
                                     for a, b in correlation_pairs(names)], rtol=1e-10)
    fastest, (lo, hi) = np.nanmin(study.rt, axis=1), model.space.bounds[names.index("t0")]
    totals = []
    for _ in range(2):
        point = dict(start)
        mu = np.stack([rng.normal(m[k], 0.3 * s[k], 2) for k in order], -1)  # (groups, parameters in order)
        for i, k in enumerate(order):
            point[f"mu_{names[k]}"] = mu[:, i]
        offset = rng.normal(0, 1, (3, free))
        point["group_offset"] = offset
        y = mu[groups] + np.concatenate([offset, np.zeros((3, int(cliff)))], -1) @ factor.T  # t0's column below
        total = 0.0
        if cliff:
            u = rng.normal(0, 1, 3)
            point["t0_interval"] = u
            ceiling = np.minimum(fastest, hi)
            t0 = lo + (ceiling - lo) / (1 + np.exp(-u))
            y[:, -1] = np.log(t0 - lo) - np.log(hi - t0)
            total += (np.log(hi - lo) - np.log(t0 - lo) - np.log(hi - t0)  # dy/dt0 and dt0/du
                      + np.log(t0 - lo) + np.log(ceiling - t0) - np.log(ceiling - lo)).sum()
            total += np.log(np.abs(np.linalg.det(factor[:free, :free])))  # du -> dy of the non-centred ones
        else:
            total += np.log(np.abs(np.linalg.det(factor)))
        total += sum(stats.norm(m[k], s[k]).logpdf(mu[:, i]).sum() for i, k in enumerate(order))
        total += stats.multivariate_normal(np.zeros(len(order)), covariance).logpdf(y - mu[groups]).sum()
        theta = model.space.inverse(y[:, np.argsort(order)])
        total += loglik(study, theta, **options).sum()
        totals.append((logp(point), total))
    assert totals[0][0] - totals[1][0] == pytest.approx(totals[0][1] - totals[1][1], rel=1e-9)

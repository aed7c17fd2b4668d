"""The group level: the Metropolis-within-Gibbs sampler against a hierarchical posterior known
by quadrature, and the study-level call on a network."""

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

    return x, group_index, y, log_weight, {"log_likelihood": log_likelihood, "log_proposal": log_proposal}


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


@pytest.mark.parametrize("moves", [False, True])
def test_the_sampler_gives_a_hierarchical_posterior_known_by_quadrature(moves):
    """Two groups of normal participants with a deliberately wrong proposal: the chains must give
    the posterior of (mu_1, mu_2, sigma) that a grid over the marginal likelihood gives, with
    the independence steps alone and with the scale and shift moves."""
    m, s = np.array([0.0]), np.array([2.0])
    chains, tune, draws, steps = 4, 300, 3000, 2
    count = chains * ((tune + draws) * steps + 1)
    x, group_index, y, log_weight, functions = normal_hierarchy(0, [0.8], 6, count)
    chain = metropolis_within_gibbs(y, log_weight, group_index, 2, m, s, chains=chains, tune=tune, draws=draws,
                                    seed=1, participant_steps=steps, **(functions if moves else {}))
    assert_matches(chain, quadrature(x[:, 0], group_index, 0.0, 2.0, np.linspace(-6, 6, 121),
                                     np.linspace(0.005, 6, 120)))
    # each participant's values: its posterior mean given the data, shrunk toward its group
    held = chain["y"][..., 0]  # (chains, draws, participants)
    if not moves:  # the proposals each participant holds
        np.testing.assert_array_equal(held, y[np.arange(x.shape[0])[None, None, :], chain["index"], 0])
    assert np.abs(held.mean(axis=(0, 1)) - x[:, 0]).max() < np.abs(x - x.mean()).max()
    assert 0.2 < chain["accepted"].sum() / (chains * draws * steps * x.shape[0]) < 1.0
    if moves:  # tuned toward MOVE_TARGET and WALK_TARGET
        assert 0.2 < chain["scale_acceptance"].mean() < 0.5 and 0.2 < chain["shift_acceptance"].mean() < 0.5
        assert chain["scale_acceptance"].shape == (chains, 1) and chain["shift_acceptance"].shape == (chains, 2, 1)
        assert 0.2 < chain["walk_accepted"].mean() / draws < 0.4 and chain["walk_step"].shape == (x.shape[0],)


def test_the_random_walk_moves_a_participant_the_proposals_never_reach():
    """Participant 0's proposals lie far from its posterior (6 data sds off, sd 0.05), so its
    independence steps never accept; it moves by the random-walk step (tuned to accept often)
    and the moves, and its values still match those of a run with good proposals on the same
    data, and the group posterior the one quadrature gives."""
    m, s = np.array([0.0]), np.array([2.0])
    chains, tune, draws, steps = 4, 500, 3000, 2
    fits = {}
    for missed in (False, True):
        x, group_index, y, log_weight, functions = normal_hierarchy(2, [0.8], 6, chains * ((tune + draws) * steps + 1),
                                                                    missed=missed)
        fits[missed] = metropolis_within_gibbs(y, log_weight, group_index, 2, m, s, chains=chains, tune=tune,
                                               draws=draws, seed=1, participant_steps=steps, **functions)
    chain = fits[True]
    assert chain["accepted"][:, 0].sum() == 0 and chain["walk_steps"][0] == 1 + EXTRA_WALKS
    assert chain["walk_accepted"][:, 0].mean() / (draws * chain["walk_steps"][0]) > 0.15
    held, reference = chain["y"][..., 0, 0], fits[False]["y"][..., 0, 0]
    assert held.mean() == pytest.approx(reference.mean(), abs=0.1 * reference.std())
    assert held.std() == pytest.approx(reference.std(), rel=0.1)
    assert_matches(chain, quadrature(x[:, 0], group_index, 0.0, 2.0, np.linspace(-6, 6, 121),
                                     np.linspace(0.005, 6, 120)))


@pytest.mark.parametrize("move_steps", [1, 2])
def test_the_moves_mix_a_small_group_sd_where_the_independence_steps_stick(move_steps):
    """The funnel: a true sd of 0.05 under noisy data (parameter 0), so each participant must sit
    near their group mean where the wrong proposal seldom lands; a second parameter with a
    wide sd and other hyperpriors rides along. At the same seed the moves multiply the ESS of
    sigma_0, and their chains still give each parameter's posterior by quadrature."""
    m, s = np.array([0.0, 0.5]), np.array([2.0, 1.5])
    chains, tune, draws, steps = 4, 300, 2000, 2
    x, group_index, y, log_weight, functions = normal_hierarchy(1, [0.05, 0.8], 10,
                                                                chains * ((tune + draws) * steps + 1))
    fits = {moves: metropolis_within_gibbs(y, log_weight, group_index, 2, m, s, chains=chains, tune=tune,
                                           draws=draws, seed=1, participant_steps=steps,
                                           **({**functions, "move_steps": move_steps} if moves else {}))
            for moves in (False, True)}
    ess = {moves: float(arviz_stats.ess(fit["sigma"][..., 0])) for moves, fit in fits.items()}
    rhat = {moves: float(arviz_stats.rhat(fit["sigma"][..., 0])) for moves, fit in fits.items()}
    assert ess[True] > 5 * ess[False] and ess[True] > 100 * move_steps
    assert rhat[True] < 1.03 < rhat[False], rhat
    for k in (0, 1):
        assert_matches(fits[True], quadrature(x[:, k], group_index, m[k], s[k], np.linspace(-6, 6, 481),
                                              np.linspace(0.0005, 4, 1600)), k)


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


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    from amortized_rlddm.amortized.posterior import AmortizedPosterior
    from amortized_rlddm.amortized.training import train
    from amortized_rlddm.model.config import load_config

    out = tmp_path_factory.mktemp("smoke") / "net"
    train(load_config("training_configs/smoke.yaml"), out, verbose=0)
    return out, AmortizedPosterior.load(out)


def test_the_moves_densities_are_the_exact_likelihood_and_the_flow_density_on_the_group_scale(smoke):
    """density_function is log_density at conditions computed once; the moves' functions give,
    at the network's own draws, the log-likelihood of the proposals and log weights equal to
    those of group_weights (the Jacobian of the group scale on the right side)."""
    from amortized_rlddm.group.model import GroupModel
    from amortized_rlddm.group.sampler import group_weights, move_densities, proposals
    from amortized_rlddm.model.simulator import simulate

    _, posterior = smoke
    study = simulate(posterior.config.priors.sample(np.random.default_rng(4), 5), posterior.design, seed=5)
    values, log_q, log_likelihood = proposals(posterior, study, 3, seed=6)
    log_q_at = posterior.density_function(study, draws=3)
    np.testing.assert_allclose(log_q_at(values), posterior.log_density(study, values), atol=1e-4)
    np.testing.assert_allclose(log_q_at(values), log_q, atol=1e-3)  # the inverse pass's density
    with pytest.raises(ValueError, match="expected"):
        log_q_at({k: v[:, :2] for k, v in values.items()})
    model = GroupModel(posterior.config.priors)
    y, weight = group_weights(model, values, log_q, log_likelihood)
    chain_y = np.swapaxes(y, 0, 1)  # the draws as 3 chains: (chains, participants, parameters)
    move_log_likelihood, move_log_proposal = move_densities(posterior, study, model, chains=3)
    np.testing.assert_allclose(move_log_likelihood(chain_y), log_likelihood.T, rtol=1e-9)
    np.testing.assert_allclose(move_log_likelihood(chain_y) - move_log_proposal(chain_y), weight.T, atol=1e-3)


def test_proposals_come_in_batches_of_one_size_and_number_exactly_the_count(smoke, monkeypatch):
    """One batch size (the network's pass compiles once), `count` draws per participant, no
    batch repeating another's draws, each with the flow's density at it."""
    from amortized_rlddm.group import sampler
    from amortized_rlddm.model.simulator import simulate

    _, posterior = smoke
    study = simulate(posterior.config.priors.sample(np.random.default_rng(7), 3), posterior.design, seed=8)
    sizes = []
    sample_with_density = posterior.sample_with_density

    def recorded(study, draws, seed, design):
        sizes.append(draws)
        return sample_with_density(study, draws, seed, design)

    monkeypatch.setattr(sampler, "PROPOSAL_BATCH", 4)
    monkeypatch.setattr(posterior, "sample_with_density", recorded)
    values, log_q, log_likelihood = sampler.proposals(posterior, study, 10, seed=1)
    assert sizes == [4, 4, 4]
    assert log_q.shape == log_likelihood.shape == (3, 10)
    assert all(x.shape == (3, 10) for x in values.values())
    assert len(np.unique(values["v"])) == 30
    np.testing.assert_allclose(posterior.log_density(study, values), log_q, atol=1e-3)


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
                 "--chains", "2", "--tune", "50", "--draws", "100", "--out", str(out),
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
    # (the smoke network is a poor proposal: its acceptance rates are low, and they say so)
    assert ((tree["acceptance"]["acceptance_rate"] >= 0) & (tree["acceptance"]["acceptance_rate"] <= 1)).all()
    assert tree["acceptance"]["acceptance_rate_by_chain"].shape == (2, 6)
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


def test_the_group_calibration_fits_with_the_chains_asked_for_and_reports_their_ess(smoke, monkeypatch):
    """calibrate() fits every study with the chains, tuning and draws given and reports, per
    group parameter, the median of the fits' own bulk ESS."""
    import amortized_rlddm.checks.group as group_checks
    from amortized_rlddm.group.fit import fit_group

    _, posterior = smoke
    seen = []

    def recording_fit(*args, **kwargs):
        tree = fit_group(*args, **kwargs)
        sizes = tree["posterior"].sizes
        seen.append(((kwargs["chains"], kwargs["tune"], kwargs["draws"], sizes["chain"], sizes["draw"]),
                     float(tree["diagnostics"]["ess_bulk_sigma_alpha"])))
        return tree

    monkeypatch.setattr(group_checks, "fit_group", recording_fit)
    sbc = group_checks.calibrate(posterior, 3, participants=4, n_trials=30, chains=3, tune=15, draws=30)
    assert [settings for settings, _ in seen] == [(3, 15, 30, 3, 30)] * 3
    assert (sbc["chains"], sbc["tune"], sbc["draws"], sbc["studies"]) == (3, 15, 30, 3)
    assert sbc["parameters"]["sigma_alpha"]["ess_bulk_median"] == pytest.approx(np.median([e for _, e in seen]))
    assert all(m["ess_bulk_median"] > 0 for m in sbc["parameters"].values())


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


@pytest.mark.parametrize("design_name, settings", [
    ("seed", {}), ("seed", {"p_outlier": 0.05, "rt_max": 5.0}), ("seed", {"deadline": 0.9}),
    ("seed", {"missing": "ignorable", "omission_rate": 0.1}), ("hddm_pst", {}), ("gershman", {})])
def test_the_pymc_reference_model_has_the_hierarchical_density(design_name, settings):
    """Its log density at a point is the hyperpriors, the group normals (t0's with the Jacobian
    of its per-participant interval, unless contaminants make any t0 possible) and the exact
    likelihood (contaminants, a deadline's censoring, ignorable omissions; several pairs,
    blocks and participants of unequal lengths), computed here independently."""
    from dataclasses import replace

    from amortized_rlddm.group.model import GroupModel
    from amortized_rlddm.group.reference import reference_model
    from amortized_rlddm.model.config import load_config
    from amortized_rlddm.model.designs import named_design
    from amortized_rlddm.model.likelihood import likelihood_options, loglik
    from amortized_rlddm.model.simulator import simulate

    config = load_config("default")
    params = {"v": np.array([2.0, 3.0, 1.0]), "a": np.array([1.0, 1.3, 1.1]), "z": np.array([0.45, 0.5, 0.55]),
              "t0": np.array([0.3, 0.35, 0.4]), "alpha": np.array([0.2, 0.4, 0.3])}
    design = replace(named_design(design_name), **settings)
    study = simulate(params, design, seed=5)
    assert (len(set(study.n_trials)) > 1) == (design_name == "hddm_pst")
    assert study.missing.any() == ("deadline" in settings or "missing" in settings)
    options = likelihood_options(design)
    model = GroupModel(config.priors, ("A", "B"))
    groups = np.array([0, 1, 1])
    pymc_model = reference_model(study, model, groups, **options)
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
    from amortized_rlddm.checks.group import reference_posterior, simulate_group_study

    posterior = AmortizedPosterior.load("default")
    study, labels, _ = simulate_group_study(posterior, 3, 40, False, 0)
    fits = []

    def fake_fit(study, model, group_index, seed, draws, **options):  # a trace shaped like fit_reference's
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

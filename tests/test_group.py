"""The group level: the Metropolis-within-Gibbs sampler against a hierarchical posterior known
by quadrature, and the study-level call on a network."""

import numpy as np
import pytest
import xarray as xr
from scipy import stats
from scipy.special import logsumexp

from amortized_rlddm.group.fit import group_labels
from amortized_rlddm.group.sampler import metropolis_within_gibbs


def test_the_sampler_gives_a_hierarchical_posterior_known_by_quadrature():
    """Normal observations x_i ~ N(y_i, 1) of participants y_i ~ N(mu_g, sigma) in two groups,
    with proposals from a deliberately wrong N(x_i + 0.3, 1.4): the chains must give the
    posterior of (mu_1, mu_2, sigma) that a grid over the marginal likelihood gives."""
    rng = np.random.default_rng(0)
    group_index = np.repeat([0, 1], 6)
    x = rng.normal(np.where(group_index == 0, -1.0, 1.5), np.sqrt(0.8 ** 2 + 1.0))
    m, s = np.array([0.0]), np.array([2.0])
    chains, tune, draws, steps = 4, 300, 3000, 2
    count = chains * ((tune + draws) * steps + 1)
    proposal = stats.norm(x[:, None] + 0.3, 1.4)
    y = proposal.rvs(size=(x.size, count), random_state=rng)
    log_weight = stats.norm(y, 1.0).logpdf(x[:, None]) - proposal.logpdf(y)
    chain = metropolis_within_gibbs(y[..., None], log_weight, group_index, 2, m, s, chains=chains, tune=tune,
                                    draws=draws, seed=1, participant_steps=steps)
    # the exact marginal posterior of (mu_1, mu_2, sigma) on a grid: y integrated out
    mu = np.linspace(-6, 6, 121)
    sigma = np.linspace(0.005, 6, 120)
    m1, m2, sd = np.meshgrid(mu, mu, sigma, indexing="ij")
    centre = np.where(group_index == 0, m1[..., None], m2[..., None])
    log_post = (stats.norm(0, 2).logpdf(m1) + stats.norm(0, 2).logpdf(m2) + stats.halfnorm(scale=2).logpdf(sd)
                + stats.norm(centre, np.sqrt(sd[..., None] ** 2 + 1)).logpdf(x).sum(-1))
    weight = np.exp(log_post - logsumexp(log_post))
    for grid, draws_of in ((m1, chain["mu"][..., 0, 0]), (m2, chain["mu"][..., 1, 0]), (sd, chain["sigma"][..., 0])):
        mean = (weight * grid).sum()
        sd_exact = np.sqrt((weight * (grid - mean) ** 2).sum())
        assert draws_of.mean() == pytest.approx(mean, abs=0.1 * sd_exact)
        assert draws_of.std() == pytest.approx(sd_exact, rel=0.1)
    # each participant's values: its posterior mean given the data, shrunk toward its group
    held = y[np.arange(x.size)[None, None, :], chain["index"]]  # (chains, draws, participants)
    assert np.abs(held.mean(axis=(0, 1)) - x).max() < np.abs(x - x.mean()).max()
    assert 0.2 < chain["accepted"].sum() / (chains * draws * steps * x.size) < 1.0


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
    # the participants' values are amortized draws of their own, inside the supports
    assert ((post["alpha"] > 0) & (post["alpha"] < 1)).all()
    # (the smoke network is a poor proposal: its acceptance rates are low, and they say so)
    assert ((tree["acceptance"]["acceptance_rate"] >= 0) & (tree["acceptance"]["acceptance_rate"] <= 1)).all()
    assert tree["acceptance"]["acceptance_rate_by_chain"].shape == (2, 6)
    assert np.isfinite(tree["diagnostics"]["rhat_mu_v"]).all()
    assert (tmp_path / "figures" / "group_difference.png").stat().st_size > 0


def test_the_pymc_reference_model_has_the_hierarchical_density():
    """Its log density at a point is the hyperpriors, the group normals (t0's with the Jacobian
    of its per-participant interval) and the exact likelihood, computed here independently."""
    from amortized_rlddm.group.model import GroupModel
    from amortized_rlddm.group.reference import reference_model
    from amortized_rlddm.model.config import load_config
    from amortized_rlddm.model.likelihood import loglik
    from amortized_rlddm.model.simulator import simulate

    config = load_config("default")
    params = {"v": np.array([2.0, 3.0, 1.0]), "a": np.array([1.0, 1.3, 1.1]), "z": np.array([0.45, 0.5, 0.55]),
              "t0": np.array([0.3, 0.35, 0.4]), "alpha": np.array([0.2, 0.4, 0.3])}
    study = simulate(params, config.design, seed=5)
    model = GroupModel(config.priors, ("A", "B"))
    groups = np.array([0, 1, 1])
    pymc_model = reference_model(study, model, groups)
    m, s = model.hyperpriors()
    rng = np.random.default_rng(6)
    point, expected = {}, 0.0
    theta = {}
    fastest = np.nanmin(study.rt, axis=1)
    for k, (name, (lo, hi)) in enumerate(zip(model.names, model.space.bounds)):
        mu, sigma = rng.normal(m[k], 0.3 * s[k], 2), 0.5 * s[k]
        point[f"mu_{name}"], point[f"sigma_{name}_log__"] = mu, np.log(sigma)
        expected += stats.norm(m[k], s[k]).logpdf(mu).sum() + stats.halfnorm(scale=s[k]).logpdf(sigma) + np.log(sigma)
        if name == "t0":
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
    expected += loglik(study, theta).sum()
    assert pymc_model.compile_logp()(point) == pytest.approx(expected, rel=1e-9)

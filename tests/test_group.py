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

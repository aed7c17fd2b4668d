"""The group level beside published estimates: HDDM's print_stats table read node by node, the
subjects' means and the population's moments on HDDM's scales."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy.special import logit

from amortized_rlddm.model.config import MODELS
from amortized_rlddm.model.priors import PriorSet
from amortized_rlddm.validation.group import published_comparison


def _tree(rng, draws=400):
    """A group posterior of two participants: alpha, beta and their group normals (logit alpha,
    log beta)."""
    alpha = rng.uniform(0.05, 0.95, (1, draws, 2))
    beta = rng.uniform(1.0, 9.0, (1, draws, 2))
    post = xr.Dataset({"alpha": (("chain", "draw", "participant"), alpha),
                       "beta": (("chain", "draw", "participant"), beta),
                       "mu_alpha": (("chain", "draw"), rng.normal(-1.0, 0.1, (1, draws))),
                       "sigma_alpha": (("chain", "draw"), np.full((1, draws), 0.8)),
                       "mu_beta": (("chain", "draw"), rng.normal(1.5, 0.1, (1, draws))),
                       "sigma_beta": (("chain", "draw"), np.full((1, draws), 0.5))},
                      coords={"participant": ["3", "7"]})
    return xr.DataTree.from_dict({"posterior": post})


def _stats(path, participants=("3", "7")):
    nodes = ["alpha", "alpha_std", "v", "v_std"] + [f"{n}_subj.{p}" for n in ("alpha", "v") for p in participants]
    pd.DataFrame({"node": nodes, "mean": np.arange(len(nodes), dtype=float), "std": 1.0}).to_csv(path, index=False)


def test_subjects_and_population_on_hddms_scales(tmp_path):
    tree = _tree(np.random.default_rng(0))
    _stats(tmp_path / "stats.csv")
    subjects, group = published_comparison(tree, PriorSet.from_dict({}, MODELS["softmax"]), tmp_path / "stats.csv")
    post = tree["posterior"].to_dataset()
    alpha = subjects[subjects["parameter"] == "alpha"]
    np.testing.assert_allclose(alpha["ours"], logit(post["alpha"].values[0]).mean(0))  # the mean of the logits
    np.testing.assert_allclose(alpha["hddm"], [4.0, 5.0])
    beta = subjects[subjects["parameter"] == "beta"]
    np.testing.assert_allclose(beta["ours"], post["beta"].values[0].mean(0))
    assert list(beta["hddm_node"]) == ["v", "v"] and list(beta["hddm"]) == [6.0, 7.0]
    rows = group.set_index(["parameter", "statistic"])
    # logit alpha: the group normal itself; beta: a log-normal population, its moments in closed form
    mu_alpha, mu_beta = post["mu_alpha"].values.ravel(), post["mu_beta"].values.ravel()
    assert rows.loc[("alpha", "population mean"), "ours_mean"] == pytest.approx(mu_alpha.mean(), abs=0.01)
    assert rows.loc[("alpha", "population sd"), "ours_mean"] == pytest.approx(0.8, abs=0.01)
    lognormal_mean = np.exp(mu_beta + 0.5 ** 2 / 2)
    lognormal_sd = lognormal_mean * np.sqrt(np.exp(0.5 ** 2) - 1)
    assert rows.loc[("beta", "population mean"), "ours_mean"] == pytest.approx(lognormal_mean.mean(), rel=0.01)
    assert rows.loc[("beta", "population sd"), "ours_mean"] == pytest.approx(lognormal_sd.mean(), rel=0.03)
    assert rows.loc[("beta", "population sd"), "hddm_node"] == "v_std"
    assert rows.loc[("beta", "population sd"), "hddm_mean"] == 3.0


def test_a_subject_missing_from_the_published_table_is_named(tmp_path):
    _stats(tmp_path / "stats.csv", participants=("3",))
    with pytest.raises(ValueError, match=r"alpha_subj.<id> for participants \['7'\]"):
        published_comparison(_tree(np.random.default_rng(1)), PriorSet.from_dict({}, MODELS["softmax"]),
                             tmp_path / "stats.csv")

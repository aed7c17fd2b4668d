"""The gap report: its data features against hand-computed values, the predictive percentiles,
and the report on a shipped network."""

import json

import numpy as np
import pandas as pd
import pytest

from amortized_rlddm.amortized.posterior import AmortizedPosterior
from amortized_rlddm.data.study import Study
from amortized_rlddm.model.simulator import simulate
from amortized_rlddm.validation.gap import _percentiles, data_features, gap_report


def test_data_features_are_the_hand_computed_ones():
    choice = np.array([[1, 1, 0, 1, 0, 1, -1, 1]], np.int8)
    rt = np.array([[0.5, 0.6, 1.2, 0.4, 2.0, 0.7, np.nan, 0.8]])
    reward = np.array([[1, 0, 0, 1, 1, 1, -1, 0]], np.int8)
    probs = np.tile([0.2, 0.8], (1, 8, 1))  # arm 1 the better throughout
    study = Study(participant=np.array(["p"]), n_trials=np.array([8]), choice=choice, rt=rt, reward=reward,
                  block=np.zeros((1, 8), np.int32), arm_probs=probs)
    f = data_features(study).loc["p"]
    assert f["fastest_rt"] == pytest.approx(np.log(0.4)) and f["slowest_rt"] == pytest.approx(np.log(2.0))
    assert f["rt_q50"] == pytest.approx(np.log(0.7))
    assert f["worse_minus_better_rt"] == pytest.approx(np.log(np.sqrt(1.2 * 2.0)) - np.log(0.6))
    assert f["better_share"] == pytest.approx(5 / 7)
    assert f["learning"] == pytest.approx(2 / 3 - 3 / 4)  # trials 5-8 (one missing) against 1-4
    assert f["switch_rate"] == pytest.approx(4 / 5)  # 5 consecutive responded pairs, 4 switches


def test_choice_only_data_have_the_choice_features_alone():
    study = Study(participant=np.array([1]), n_trials=np.array([3]), choice=np.array([[0, 1, 1]], np.int8),
                  rt=np.full((1, 3), np.nan), reward=np.array([[0, 1, 1]], np.int8), block=np.zeros((1, 3), np.int32))
    assert list(data_features(study).columns) == ["better_share", "learning", "switch_rate"]


def test_percentiles_are_mid_ranks_among_each_participants_replicates():
    observed = pd.DataFrame({"x": [2.0, 10.0]}, index=["a", "b"])
    simulated = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 1.0, 2.0, np.nan, 4.0]})
    got = _percentiles(observed, simulated, 4)["x"].to_numpy()
    np.testing.assert_allclose(got, [1.5 / 4, 3 / 3])


@pytest.mark.slow
def test_the_gap_report_on_fresh_simulations(tmp_path):
    posterior = AmortizedPosterior.load("default")
    study = simulate(posterior.config.priors.sample(np.random.default_rng(0), 8), posterior.design, seed=1)
    summary = gap_report(posterior, study, posterior.design, tmp_path, draws=400, replicates=19, seed=2)
    table = pd.read_csv(tmp_path / "gap.csv")
    assert len(table) == 8 and table.filter(like="prior_pct_").stack().between(0, 1).all()
    assert set(summary["raw_error"]) == set(posterior.parameter_names)
    assert json.loads((tmp_path / "summary.json").read_text())["participants"] == 8
    for name in ("report.md", "correlations.csv", "percentiles.png", "correlations.png"):
        assert (tmp_path / name).stat().st_size > 0

"""Real experiments: exclusion rules, the exact fits of a study with their report, posterior
predictive statistics, and the comparison with published estimates."""

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from amortized_rlddm.cli import main
from amortized_rlddm.data.exclusions import exclude_fast_responses, exclude_first_trial_of_each_condition
from amortized_rlddm.data.io import read_study, write_study
from amortized_rlddm.data.study import Study
from amortized_rlddm.model.simulator import simulate
from amortized_rlddm.model.task import Pair, TaskDesign
from amortized_rlddm.validation.real_data import choice_curves, comparison_summary, rt_quantiles


def small_study():
    return Study(participant=np.array([1, 2]), n_trials=np.array([5, 3]),
                 choice=np.array([[1, 0, 1, 1, 0], [0, 1, 1, -1, -1]], np.int8),
                 rt=np.array([[0.1, 0.5, 0.6, 0.05, 0.9], [0.4, 0.5, 0.6, np.nan, np.nan]]),
                 reward=np.array([[1, 0, 1, 1, 0], [1, 1, 0, -1, -1]], np.int8), block=np.zeros((2, 5), np.int32),
                 condition=np.array([[0, 1, 0, 1, 0], [1, 1, 0, 0, 0]], np.int32), condition_labels=("AB", "CD"))


def test_exclusion_rules_mark_trials_and_count_them():
    study, counts = exclude_fast_responses(small_study(), 0.2)
    np.testing.assert_array_equal(study.excluded, [[True, False, False, True, False], [False] * 5])
    assert counts.tolist() == [2, 0]
    study, counts = exclude_first_trial_of_each_condition(study)
    np.testing.assert_array_equal(study.excluded[0], [True, True, False, True, False])
    np.testing.assert_array_equal(study.excluded[1], [True, False, True, False, False])
    assert counts.tolist() == [1, 2]  # participant 1's first AB trial was excluded already
    assert study.choice.tolist() == small_study().choice.tolist()  # nothing is dropped


def test_predictive_statistics_against_hand_counts():
    study = small_study()
    curves = choice_curves(study, width=2)
    np.testing.assert_allclose(curves[0, 0], [1.0, 0.0])  # AB trials: choices 1, 1 | 0
    np.testing.assert_allclose(curves[0, 1], [0.5, np.nan])  # CD trials: 0, 1
    np.testing.assert_allclose(curves[1, 0], [1.0, np.nan])  # the missing responses do not count
    quantiles = rt_quantiles(study)
    np.testing.assert_allclose(quantiles[0, 1], np.quantile([0.1, 0.6, 0.05], [0.1, 0.3, 0.5, 0.7, 0.9]))
    np.testing.assert_allclose(quantiles[1, 0], [0.4] * 5)


def test_comparison_summary_sees_shrinkage():
    rng = np.random.default_rng(0)
    ours = rng.normal(0, 1, 40)
    table = pd.DataFrame({"model": "single", "parameter": "a", "participant": range(40), "ours": ours,
                          "ours_sd": 0.2, "hddm": 0.5 * ours})  # a hierarchical fit halving the spread
    row = comparison_summary(table).iloc[0]
    assert row["r"] == pytest.approx(1.0) and row["spread_hddm"] == pytest.approx(0.5 * row["spread_ours"])
    assert row["r_difference_with_distance_from_mean"] > 0.99


def test_fit_exact_fits_every_participant_and_writes_the_report(tmp_path, capsys):
    pairs = [Pair((0.2, 0.8), None), Pair((0.35, 0.65), None)]
    params = {"v": np.array([4.0, 2.0]), "a": np.array([1.5, 1.2]), "z": np.array([0.5, 0.5]),
              "t0": np.array([0.3, 0.25]), "alpha": np.array([0.2, 0.5])}
    study = simulate(params, TaskDesign(n_trials=40, pairs=pairs), seed=1)
    frame = study.to_dataframe()
    frame["split_by"] = frame.pop("condition")
    frame["trial"] = frame.groupby(["participant", "split_by"]).cumcount() + 1
    path = tmp_path / "hddm_style.csv"
    frame.rename(columns={"participant": "subj_idx", "choice": "response", "reward": "feedback"}).to_csv(path)
    out = tmp_path / "fits"
    assert main(["fit-exact", "--data", str(path), "--convention", "hddm", "--model", "single", "--hddm-compatible",
                 "--pair-reward-probs", "0.2/0.8,0.35/0.65", "--chains", "2", "--tune", "150",
                 "--draws-per-chain", "150", "--ppc-draws", "20", "--quiet", "--out", str(out)]) == 0
    table = pd.read_csv(out / "single" / "subjects.csv")
    assert len(table) == 2 and {"v_mean", "a_mean", "t0_mean", "alpha_mean", "rhat_max", "converged"} <= set(table)
    assert "z_mean" not in table  # HDDM's choice: z fixed at 0.5
    report = (out / "report.md").read_text()
    assert "first trial of each pair (HDDM): 4 trials" in report and "predictive 90% interval" in report
    ppc = pd.read_csv(out / "ppc_single.csv")
    assert set(ppc["statistic"]) >= {"p_arm1", "rt_q50"} and ppc["inside"].mean() > 0.5
    assert json.loads((out / "summary.json").read_text())["single"]["seconds"] > 0
    assert (out / "ppc_single.png").stat().st_size > 0
    # fits failing the gate are fitted again, longer and thinned back to the stored size
    failing = (~table["converged"]).sum()
    assert main(["fit-exact", "--data", str(path), "--convention", "hddm", "--model", "single", "--hddm-compatible",
                 "--pair-reward-probs", "0.2/0.8,0.35/0.65", "--tune", "150", "--ppc-draws", "20", "--quiet",
                 "--refit-failed", "--out", str(out)]) == 0
    again = pd.read_csv(out / "single" / "subjects.csv")
    assert (again["attempts"] - table["attempts"]).tolist() == (~table["converged"]).astype(int).tolist()
    assert xr.open_datatree(out / "single" / "posterior.nc")["posterior"].sizes["draw"] == 150
    assert failing == 0 or (again.loc[~table["converged"], "wall_time_s"] > table.loc[~table["converged"],
                                                                                      "wall_time_s"]).all()
    # a study with missing responses and no word on what they are is refused, saying how to choose
    write_study(simulate(params, TaskDesign(n_trials=40, missing="ignorable", omission_rate=0.2), seed=2),
                tmp_path / "gaps.csv")
    assert read_study(tmp_path / "gaps.csv").missing.any()
    assert main(["fit-exact", "--data", str(tmp_path / "gaps.csv"), "--model", "single", "--quiet",
                 "--out", str(tmp_path / "refused")]) == 2
    assert "--missing" in capsys.readouterr().err


def test_fit_exact_fits_the_choice_only_models_to_a_file_without_rts(tmp_path, capsys):
    """Choices alone (no rt column): both choice-only models fitted with NUTS, their predictive
    checks of the choices, and one vs two learning rates compared."""
    params = {"alpha_pos": np.array([0.6, 0.3]), "alpha_neg": np.array([0.1, 0.3]), "beta": np.array([6.0, 4.0])}
    study = simulate(params, TaskDesign(n_trials=80, reward_probs=(0.25, 0.75), reversal_every=20), seed=3)
    path = tmp_path / "choices.csv"
    write_study(study, path)
    assert "rt" not in pd.read_csv(path).columns
    out = tmp_path / "fits"
    assert main(["fit-exact", "--data", str(path), "--model", "softmax", "softmax-dual", "--chains", "2",
                 "--tune", "200", "--draws-per-chain", "200", "--ppc-draws", "20", "--pair-reward-probs",
                 "0.25/0.75", "--quiet", "--out", str(out)]) == 0
    assert {"alpha_mean", "beta_mean"} <= set(pd.read_csv(out / "softmax" / "subjects.csv"))
    assert {"alpha_pos_mean", "alpha_neg_mean", "beta_mean"} <= set(pd.read_csv(out / "softmax-dual" / "subjects.csv"))
    ppc = pd.read_csv(out / "ppc_softmax.csv")
    assert set(ppc["statistic"]) == {"p_arm1"}
    report = (out / "report.md").read_text()
    assert "## The softmax model" in report and "RT quantiles" not in report and "Single vs dual" in report
    assert np.isfinite(pd.read_csv(out / "model_comparison.csv")["log_bayes_factor"]).all()
    assert main(["fit-exact", "--data", str(path), "--model", "softmax", "--hddm-compatible", "--quiet",
                 "--out", str(tmp_path / "refused")]) == 2
    assert "choice-only models do not have" in capsys.readouterr().err

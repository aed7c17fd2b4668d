"""The amortized-vs-NUTS comparison: its summary arithmetic, and every file on a smoke network."""

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pymc")

from amortized_rlddm.amortized.posterior import AmortizedPosterior  # noqa: E402
from amortized_rlddm.amortized.training import train  # noqa: E402
from amortized_rlddm.model.config import load_config  # noqa: E402
from amortized_rlddm.validation.compare import (  # noqa: E402
    agreement_by_informativeness,
    compare,
    headline_table,
    summary_table,
    tail_masses,
)


def test_compare_writes_every_file(tmp_path):
    train(load_config("training_configs/smoke.yaml"), tmp_path / "net", verbose=0)
    posterior = AmortizedPosterior.load(tmp_path / "net")
    summary, timing = compare(posterior, tmp_path / "cmp", n_datasets=2, seed=1, draws=200, chains=2,
                              draws_per_chain=100, tune=150, nuts_backend="pymc", n_trials=40,
                              gate=False)  # NUTS this short cannot pass the gate: the files are the test here
    for name in ("per_dataset.csv", "summary.csv", "nuts_diagnostics.csv", "truth.csv", "overlays.png",
                 "comparison.json", "report.md", "agreement_by_informativeness.csv", "per_dataset_refined.csv",
                 "summary_refined.csv"):
        assert (tmp_path / "cmp" / name).stat().st_size > 0, name
    table = pd.read_csv(tmp_path / "cmp" / "per_dataset.csv")
    assert len(table) == 2 * 5 and (table["sd_nuts"] > 0).all() and (table["wasserstein"] >= 0).all()
    assert set(summary["parameter"]) == {"v", "a", "z", "t0", "alpha"}
    assert {"r_amortized", "r_nuts", "median_sd_ratio", "mean_tail_below_nuts_q01"} <= set(summary.columns)
    assert table["tail_below_nuts_q01"].between(0, 1).all() and table["tail_above_nuts_q99"].between(0, 1).all()
    saved = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert saved["timing"]["speedup"] > 1 and saved["timing"]["datasets"] == 2
    assert len(saved["summary_refined"]) == 5 and 0 <= saved["importance"]["share_above_threshold"] <= 1
    # the smoke design has 60 trials; the network serves 30-150 and the comparison ran at 40
    assert saved["timing"]["trials"] == [40, 40] and "(40 trials each)" in (tmp_path / "cmp" / "report.md").read_text()
    with pytest.raises(ValueError, match="outside the 30-150"):
        compare(posterior, tmp_path / "bad", n_datasets=2, n_trials=200)
    with pytest.raises(ValueError, match="simulated datasets only"):
        compare(posterior, tmp_path / "bad", data=tmp_path / "any.csv", n_trials=60)
    assert not (tmp_path / "bad").exists()


def test_summary_table_medians_recovery_and_coverage():
    truth = pd.DataFrame({"participant": ["p1", "p2", "p3", "p4"], "alpha": [0.1, 0.2, 0.3, 0.4]})
    table = pd.DataFrame({
        "participant": ["p1", "p2", "p3", "p4"], "parameter": "alpha",
        "mean_amortized": [0.1, 0.2, 0.3, 0.5], "mean_nuts": [0.4, 0.3, 0.2, 0.1],
        "std_mean_difference": [-1.0, 0.5, 2.0, -0.2], "sd_ratio": [1.0, 2.0, 0.5, 1.5],
        "wasserstein": [0.1, 0.2, 0.3, 0.4], "sd_nuts": [0.1, 0.1, 0.1, 0.1],
        "q05_amortized": [0.0, 0.0, 0.35, 0.0], "q95_amortized": [0.2, 0.3, 0.5, 0.5],
        "q05_nuts": [0.0, 0.25, 0.0, 0.0], "q95_nuts": [0.05, 0.3, 0.5, 0.5],
        "tail_below_nuts_q01": [0.0, 0.01, 0.02, 0.05], "tail_above_nuts_q99": [0.01, 0.01, 0.01, 0.03]})
    row = summary_table(table, truth).iloc[0]
    assert row["median_abs_std_mean_difference"] == pytest.approx(0.75)
    assert row["median_sd_ratio"] == pytest.approx(1.25)
    assert row["median_wasserstein_over_nuts_sd"] == pytest.approx(2.5)
    assert row["mean_tail_below_nuts_q01"] == pytest.approx(0.02)
    assert row["mean_tail_above_nuts_q99"] == pytest.approx(0.015)
    assert row["r_amortized"] == pytest.approx(np.corrcoef([0.1, 0.2, 0.3, 0.5], [0.1, 0.2, 0.3, 0.4])[0, 1])
    assert row["r_nuts"] == pytest.approx(-1.0)
    assert row["coverage90_amortized"] == pytest.approx(0.75) and row["coverage90_nuts"] == pytest.approx(0.5)
    assert row["r_gap"] == pytest.approx(row["r_amortized"] - row["r_nuts"])


def test_tail_masses_match_the_normal_tails():
    # the same normal: 1% each side; amortized 1.3x as wide: Phi(z_0.01 / 1.3) each side
    from scipy import stats

    rng = np.random.default_rng(11)
    nuts = rng.standard_normal(200_000)
    same = tail_masses(rng.standard_normal(200_000), nuts)
    assert same["tail_below_nuts_q01"] == pytest.approx(0.01, abs=0.001)
    assert same["tail_above_nuts_q99"] == pytest.approx(0.01, abs=0.001)
    wide = tail_masses(1.3 * rng.standard_normal(200_000), nuts)
    expected = stats.norm.cdf(stats.norm.ppf(0.01) / 1.3)
    assert wide["tail_below_nuts_q01"] == pytest.approx(expected, abs=0.002)
    assert wide["tail_above_nuts_q99"] == pytest.approx(expected, abs=0.002)
    shifted = tail_masses(rng.standard_normal(200_000) + 0.5, nuts)  # shifted up: light below, heavy above
    assert shifted["tail_below_nuts_q01"] == pytest.approx(stats.norm.cdf(stats.norm.ppf(0.01) - 0.5), abs=0.001)
    assert shifted["tail_above_nuts_q99"] == pytest.approx(stats.norm.sf(stats.norm.ppf(0.99) - 0.5), abs=0.002)


def test_recovery_gap_standard_error_matches_the_asymptotic_one():
    # amortized means exact (r = 1, no sampling variation), NUTS means with r = 0.6: the gap's
    # standard error is then that of r_nuts alone, (1 - rho^2) / sqrt(n) for normal data
    from amortized_rlddm.validation.compare import paired_correlation_gap

    rng = np.random.default_rng(7)
    n, rho = 400, 0.6
    true = rng.standard_normal(n)
    nuts = rho * true + np.sqrt(1 - rho**2) * rng.standard_normal(n)
    gap, se = paired_correlation_gap(true.copy(), nuts, true)
    assert gap == pytest.approx(1 - np.corrcoef(nuts, true)[0, 1])
    assert se == pytest.approx((1 - rho**2) / np.sqrt(n), rel=0.2)
    assert paired_correlation_gap(nuts, nuts.copy(), true)[1] == 0.0  # identical methods: no gap, no noise


def test_agreement_by_informativeness_groups_by_nuts_sd():
    table = pd.DataFrame({
        "participant": [f"p{i}" for i in range(6)], "parameter": "alpha",
        "sd_nuts": [0.20, 0.05, 0.15, 0.10, 0.25, 0.30],
        "std_mean_difference": [0.1, -0.8, 0.3, 0.4, -0.2, 0.0], "sd_ratio": [1.0, 1.6, 1.1, 1.2, 1.0, 0.9],
        "mean_amortized": [0.5, 0.4, 0.5, 0.6, 0.5, 0.5], "mean_nuts": [0.5, 0.2, 0.5, 0.8, 0.4, 0.6]})
    groups = agreement_by_informativeness(table, "alpha", groups=3)
    assert list(groups["datasets"]) == [2, 2, 2]
    first, last = groups.iloc[0], groups.iloc[2]  # sd 0.05 and 0.10 first; 0.25 and 0.30 last
    assert first["median_sd_nuts"] == pytest.approx(0.075) and last["median_sd_nuts"] == pytest.approx(0.275)
    assert first["median_abs_std_mean_difference"] == pytest.approx(0.6)
    assert first["median_sd_ratio"] == pytest.approx(1.4)
    assert first["spread_of_means_amortized"] == pytest.approx(np.std([0.4, 0.6], ddof=1))
    assert first["spread_of_means_nuts"] == pytest.approx(np.std([0.2, 0.8], ddof=1))


def test_headline_table_joins_the_two_reports(tmp_path):
    (tmp_path / "diag").mkdir()
    (tmp_path / "cmp").mkdir()
    (tmp_path / "diag" / "metrics.json").write_text(json.dumps({"datasets": 1000, "parameters": {
        "alpha": {"calibration_error": 0.021, "ecdf_inside_95_band": True}}}))
    (tmp_path / "cmp" / "comparison.json").write_text(json.dumps({
        "timing": {"datasets": 50, "amortized_draws": 1000, "nuts_chains": 4, "nuts_draws_per_chain": 1000,
                   "nuts_tune": 1000, "nuts_backend": "nutpie", "amortized_s_per_participant": 0.0043,
                   "nuts_s_per_participant": 2.5, "nuts_compile_s": 30.0, "speedup": 581.4},
        "summary": [{"parameter": "alpha", "r_amortized": 0.31, "r_nuts": 0.37, "coverage90_amortized": 0.9,
                     "coverage90_nuts": 0.88, "median_abs_std_mean_difference": 0.12, "median_sd_ratio": 1.05}]}))
    table = headline_table(tmp_path / "diag", tmp_path / "cmp")
    assert "| alpha | 0.310 / 0.370 | 0.90 / 0.88 | 0.120 | 1.050 | 0.021 | yes |" in table
    assert "amortized 4.3 ms, NUTS 2.50 s" in table and "581x" in table

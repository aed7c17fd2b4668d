"""Diagnostics: exact toy posteriors, and every report file on the smoke network."""

import json

import numpy as np
import pandas as pd
import pytest

from amortized_rlddm import __version__
from amortized_rlddm.amortized.packing import pack
from amortized_rlddm.amortized.posterior import AmortizedPosterior
from amortized_rlddm.cli import main
from amortized_rlddm.model.config import load_config
from amortized_rlddm.model.simulator import simulate
from amortized_rlddm.model.task import TaskDesign
from amortized_rlddm.validation.ablation import VARIANTS, ablate
from amortized_rlddm.validation.diagnostics import (
    compute_metrics,
    diagnose,
    ecdf_cell,
    rank_ecdf_band_exits,
    replication_summary,
    simultaneous_ecdf_band,
)
from amortized_rlddm.validation.power import power_analysis

SMOKE = "training_configs/smoke.yaml"


def gaussian_toy(n=1000, draws=1000, scale=1.0, seed=0):
    """theta ~ N(0, 1), x ~ N(theta, 1): the exact posterior is N(x/2, 1/2); `scale`
    shrinks the posterior sd to make it overconfident."""
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal(n)
    x = theta + rng.standard_normal(n)
    samples = x[:, None] / 2 + scale * np.sqrt(0.5) * rng.standard_normal((n, draws))
    return {"alpha": samples}, {"alpha": theta}


def test_exact_posterior_is_calibrated():
    m = compute_metrics(*gaussian_toy())["alpha"]
    for level, cov in m["coverage"].items():
        assert cov == pytest.approx(int(level) / 100, abs=0.035)
    assert m["calibration_error"] < 0.03
    assert m["ecdf_inside_95_band"]
    assert m["correlation"] == pytest.approx(1 / np.sqrt(2), abs=0.04)
    assert m["contraction"] == pytest.approx(0.5, abs=0.06)


def test_overconfident_posterior_is_flagged():
    m = compute_metrics(*gaussian_toy(scale=0.6))["alpha"]
    assert m["coverage"]["90"] < 0.75
    assert m["calibration_error"] > 0.1
    assert not m["ecdf_inside_95_band"]
    sides = {d for _, _, d in m["ecdf_band_exits"]}
    assert sides == {"above", "below"}  # too narrow: truths pile into both tails


def test_band_exits_locate_a_tail_misfit():
    rng = np.random.default_rng(4)
    uniform = rng.random(1000)
    assert rank_ecdf_band_exits(uniform) == []
    # too few truths in the posteriors' upper 5%: the ECDF runs above the band near rank 1
    light_upper = np.where((uniform > 0.95) & (rng.random(1000) < 0.6), uniform - 0.5, uniform)
    exits = rank_ecdf_band_exits(light_upper)
    assert exits and all(d == "above" and a >= 0.9 for a, b, d in exits)
    # and the mirror image in the lower tail: below the band near rank 0
    exits = rank_ecdf_band_exits(1 - light_upper)
    assert exits and all(d == "below" and b <= 0.1 for a, b, d in exits)
    m = {"ecdf_inside_95_band": False, "ecdf_band_exits": exits}
    assert ecdf_cell(m).startswith("no: below at 0.0") and ecdf_cell({"ecdf_inside_95_band": True}) == "yes"


def test_simultaneous_band_holds_its_level_and_matches_bayesflow():
    from bayesflow.utils.ecdf import simultaneous_ecdf_bands

    n = 100
    z, lower, upper = simultaneous_ecdf_band(n)
    samples = np.sort(np.random.default_rng(3).random((1000, n)), axis=1)
    ecdf = np.stack([np.searchsorted(s, z, side="right") for s in samples]) / n
    left = np.mean(((ecdf < lower) | (ecdf > upper)).any(axis=1))
    assert 0.03 <= left <= 0.075  # 5% by construction; binomial sd 0.007 over 1,000 samples
    for size in (100, 1000):
        np.random.seed(0)  # noqa: NPY002 (BayesFlow's band draws from NumPy's global generator)
        _, z_bf, lower_bf, upper_bf = simultaneous_ecdf_bands(size)
        z, lower, upper = simultaneous_ecdf_band(size)
        np.testing.assert_array_equal(z, z_bf)
        for ours, theirs in ((lower, lower_bf), (upper, upper_bf)):
            assert np.abs(ours - theirs).max() <= 1 / size + 1e-12 and np.mean(ours == theirs) > 0.97


def test_replications_tell_chance_exits_from_a_systematic_tail_misfit():
    rng = np.random.default_rng(7)
    sets = 20

    def summary(rank_sets):
        exits = [rank_ecdf_band_exits(r) for r in rank_sets]
        return replication_summary(rank_sets, exits, [0.01] * sets)

    calibrated = summary([rng.random(1000) for _ in range(sets)])
    assert calibrated["exit_count"] <= 4 and calibrated["p_at_least_as_many_exits"] > 0.01
    assert calibrated["pooled_datasets"] == 20000 and calibrated["pooled_band_exits"] == []
    for key, expected in calibrated["pooled_tails_expected"].items():  # binomial sd: 14 at 1%, 31 at 5%
        assert abs(calibrated["pooled_tails"][key] - expected) < 4 * np.sqrt(expected), key
    # a lower tail too heavy by a little: a third of the truths below the posterior's 3% quantile
    # move up, so each set loses ~10 of its 30 there, which one set's band rarely resolves
    def heavy_lower_tail(u):
        return np.where((u < 0.03) & (rng.random(u.size) < 1 / 3), u + 0.1, u)

    misfit = summary([heavy_lower_tail(rng.random(1000)) for _ in range(sets)])
    assert misfit["pooled_band_exits"] and all(d == "below" and a < 0.05 for a, b, d in misfit["pooled_band_exits"])
    assert misfit["pooled_tails"]["below_1"] < 0.8 * misfit["pooled_tails_expected"]["below_1"]
    # a third of the lowest 3% moved by 0.1: the ECDF runs 0.01 low from rank 0.03 to 0.1 (pooled sd 0.002)
    gap, at = misfit["pooled_max_ecdf_difference"]
    assert -0.017 <= gap <= -0.008 and 0.03 <= at <= 0.1
    assert abs(calibrated["pooled_max_ecdf_difference"][0]) < 0.01
    # the binomial tail: P(X >= 0) is 1, and 20 exits in 20 sets cannot be chance
    assert summary([rng.random(1000) * 0.5 for _ in range(sets)])["p_at_least_as_many_exits"] < 1e-20
    assert calibrated["p_at_least_as_many_exits"] <= 1 and replication_summary(
        [rng.random(100)], [[]], [0.0])["p_at_least_as_many_exits"] == 1


def test_diagnose_writes_every_file(smoke_posterior, tmp_path):
    metrics = diagnose(smoke_posterior, 60, seed=1, out_dir=tmp_path, draws=200)
    for name in ("recovery.png", "calibration_ecdf.png", "z_score_contraction.png", "coverage.png",
                 "alpha_by_drift.png", "alpha_by_trials.png", "metrics.json", "report.md"):
        assert (tmp_path / name).stat().st_size > 0, name
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["parameters"].keys() == {"v", "a", "z", "t0", "alpha"}
    for m in saved["parameters"].values():
        assert -1 <= m["correlation"] <= 1 and m["nrmse"] >= 0 and 0 <= m["calibration_error"] <= 0.5
        assert all(0 <= c <= 1 for c in m["coverage"].values())
    assert saved["alpha_by_abs_v"] and saved["alpha_by_trials"]
    assert metrics["datasets"] == 60 and "| alpha |" in (tmp_path / "report.md").read_text()


def test_diagnose_replications_reuse_the_report_set(smoke_posterior, tmp_path, capsys):
    metrics = diagnose(smoke_posterior, 40, seed=3, out_dir=tmp_path, draws=100, replications=3)
    rep = metrics["replications"]
    assert rep["seeds"] == [3, 4, 5] and rep["datasets_each"] == 40
    for name, r in rep["parameters"].items():
        assert r["pooled_datasets"] == 120 and len(r["band_exits"]) == 3
        # the first set is the report's own: same exits and calibration error as its table
        assert r["band_exits"][0] == metrics["parameters"][name]["ecdf_band_exits"]
        assert r["calibration_errors"][0] == metrics["parameters"][name]["calibration_error"]
    for name, rows in rep["pooled_tails_by_trials"].items():  # the trial-count bins split the pooled tails
        assert sum(row["expected"]["below_5"] for row in rows) == pytest.approx(0.05 * 120)
        for tail in ("below_5", "above_95"):
            assert sum(row["observed"][tail] for row in rows) == rep["parameters"][name]["pooled_tails"][tail]
    alone = diagnose(smoke_posterior, 40, seed=4, out_dir=tmp_path / "seed4", draws=100)
    assert rep["parameters"]["alpha"]["calibration_errors"][1] == alone["parameters"]["alpha"]["calibration_error"]
    assert "independent replications" in (tmp_path / "report.md").read_text()
    with pytest.raises(ValueError, match="replications"):
        diagnose(smoke_posterior, 40, seed=3, out_dir=tmp_path, replications=0)
    # the command line: the table is printed, a bad count is a clear error
    args = ["diagnose", "--checkpoint", smoke_posterior.source, "--datasets", "30", "--draws", "100",
            "--out", str(tmp_path / "cli")]
    assert main(args + ["--replications", "2"]) == 0
    assert "band exits in 2 sets" in capsys.readouterr().out
    assert main(args + ["--replications", "0"]) == 2
    assert "at least 1 set" in capsys.readouterr().err


def test_design_table(smoke_posterior, tmp_path):
    table = power_analysis(smoke_posterior, [30, 150], 40, seed=2, out_dir=tmp_path, draws=100)
    assert set(table["trials"]) == {30, 150} and len(table) == 10
    assert (tmp_path / "power.png").stat().st_size > 0
    assert pd.read_csv(tmp_path / "power.csv").shape == (10, 5)
    with pytest.raises(ValueError, match="outside"):
        power_analysis(smoke_posterior, [10], 5, seed=0, out_dir=tmp_path)


def test_ablation_trains_variants_and_accumulates_their_table(tmp_path):
    config = load_config(SMOKE)
    first = ablate(config, tmp_path, variants=["default", "observed_only"], epochs=1, datasets=30, seed=0,
                   verbose=0)
    assert list(first) == ["default", "observed_only"]
    assert first["observed_only"]["overrides"] == {"network.features": ["choice", "rt", "reward", "missing"]}
    saved = (tmp_path / "observed_only" / "config.yaml").read_text()
    assert "qtraces" not in saved and "qtraces" in (tmp_path / "default" / "config.yaml").read_text()
    # a row that overrides an older version's default is kept, renamed with its run, when the
    # variant is rerun: here summary_gru's row and run of version 0.1
    rows = json.loads((tmp_path / "ablation.json").read_text())
    rows["summary_gru"] = {**rows["default"], "overrides": VARIANTS["summary_gru"], "package_version": "0.1.0"}
    (tmp_path / "ablation.json").write_text(json.dumps(rows))
    (tmp_path / "summary_gru").mkdir()
    (tmp_path / "summary_gru" / "older_run.txt").write_text("v0.1")
    both = ablate(config, tmp_path, variants=["summary_gru"], epochs=1, datasets=30, seed=0, verbose=0)
    assert list(both) == ["default", "observed_only", "summary_gru (v0.1)", "summary_gru"]
    assert both["summary_gru"]["package_version"] == __version__
    assert (tmp_path / "summary_gru_v0.1" / "older_run.txt").read_text() == "v0.1"
    assert (tmp_path / "summary_gru" / "model.keras").is_file()
    gru = AmortizedPosterior.load(tmp_path / "summary_gru")
    assert type(gru.estimator.summary_network).__name__ == "RecurrentNetwork"
    # the recurrent summary skips padding too: draws do not change with the padded length
    study = simulate(config.priors.sample(np.random.default_rng(0), 3), TaskDesign(n_trials=40), seed=0)
    base = np.random.default_rng(1).standard_normal((3, 20, 5)).astype(np.float32)
    draws = []
    for max_trials in (40, 150):
        data = pack(study, gru.network, gru.design, max_trials)
        draws.append(gru.passes.draws(data, base)[0])
    np.testing.assert_allclose(draws[0], draws[1], atol=1e-5)
    table = (tmp_path / "ablation.md").read_text()
    assert all(name in table for name in both) and "r(alpha)" in table
    with pytest.raises(ValueError, match="unknown ablation variant"):
        ablate(config, tmp_path, variants=["bigger"], epochs=1)
    assert set(VARIANTS) >= {"observed_only", "default", "summary_gru"}
    assert "| summary_gru (v0.1) | 0.1 |" in table

"""Diagnostics: exact toy posteriors, and every report file on the smoke network."""

import json

import numpy as np
import pandas as pd
import pytest

from amortized_rlddm import __version__
from amortized_rlddm.ablation import VARIANTS, ablate
from amortized_rlddm.config import load_config
from amortized_rlddm.diagnostics import compute_metrics, diagnose, ecdf_cell, plan_design, rank_ecdf_band_exits
from amortized_rlddm.inference import AmortizedPosterior
from amortized_rlddm.networks import pack
from amortized_rlddm.simulator import simulate
from amortized_rlddm.task import TaskDesign
from amortized_rlddm.training import train

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


@pytest.fixture(scope="module")
def smoke_posterior(tmp_path_factory):
    out = tmp_path_factory.mktemp("diag") / "net"
    train(load_config(SMOKE), out, verbose=0)
    return AmortizedPosterior.load(out)


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


def test_design_table(smoke_posterior, tmp_path):
    table = plan_design(smoke_posterior, [30, 150], 40, seed=2, out_dir=tmp_path, draws=100)
    assert set(table["trials"]) == {30, 150} and len(table) == 10
    assert (tmp_path / "design.png").stat().st_size > 0
    assert pd.read_csv(tmp_path / "design.csv").shape == (10, 5)
    with pytest.raises(ValueError, match="outside"):
        plan_design(smoke_posterior, [10], 5, seed=0, out_dir=tmp_path)


def test_ablation_trains_variants_and_accumulates_their_table(tmp_path):
    config = load_config(SMOKE)
    first = ablate(config, tmp_path, variants=["default", "observed_only"], epochs=1, datasets=30, seed=0,
                   verbose=0)
    assert list(first) == ["default", "observed_only"]
    assert first["observed_only"]["overrides"] == {"network.features": ["choice", "rt", "reward", "missing"]}
    saved = (tmp_path / "observed_only" / "config.yaml").read_text()
    assert "qtraces" not in saved and "qtraces" in (tmp_path / "default" / "config.yaml").read_text()
    # a row that overrides an older version's default is kept, renamed, when the variant is rerun
    rows = json.loads((tmp_path / "ablation.json").read_text())
    rows["default"]["package_version"] = "0.1.0"
    (tmp_path / "ablation.json").write_text(json.dumps(rows))
    both = ablate(config, tmp_path, variants=["default", "summary_gru"], epochs=1, datasets=30, seed=0, verbose=0)
    assert list(both) == ["observed_only", "default (v0.1)", "default", "summary_gru"]
    assert both["default"]["package_version"] == __version__
    assert (tmp_path / "default_v0.1" / "model.keras").is_file() and (tmp_path / "default" / "model.keras").is_file()
    gru = AmortizedPosterior.load(tmp_path / "summary_gru")
    assert type(gru.estimator.summary_network).__name__ == "RecurrentNetwork"
    # the recurrent summary skips padding too: draws do not change with the padded length
    study = simulate(config.priors.sample(np.random.default_rng(0), 3), TaskDesign(n_trials=40), seed=0)
    base = np.random.default_rng(1).standard_normal((3 * 20, 5)).astype(np.float32)
    draws = []
    for max_trials in (40, 150):
        data = pack(study, gru.network, gru.design, max_trials)
        draws.append(np.asarray(gru._compiled(data["summary_variables"], data["summary_mask"],
                                              data["inference_conditions"], base)[0]))
    np.testing.assert_allclose(draws[0], draws[1], atol=1e-5)
    table = (tmp_path / "ablation.md").read_text()
    assert all(name in table for name in both) and "r(alpha)" in table
    with pytest.raises(ValueError, match="unknown ablation variant"):
        ablate(config, tmp_path, variants=["bigger"], epochs=1)
    assert set(VARIANTS) >= {"observed_only", "default", "summary_gru"}
    assert "| default (v0.1) | 0.1 |" in table

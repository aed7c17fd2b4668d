"""Diagnostics: exact toy posteriors, and every report file on the smoke network."""

import json

import numpy as np
import pandas as pd
import pytest

from amortized_rlddm.ablation import VARIANTS, ablate
from amortized_rlddm.config import load_config
from amortized_rlddm.diagnostics import compute_metrics, diagnose, plan_design
from amortized_rlddm.inference import AmortizedPosterior
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


def test_ablation_trains_and_compares_each_variant(tmp_path):
    results = ablate(load_config(SMOKE), tmp_path, epochs=1, datasets=30, seed=0, verbose=0)
    assert list(results) == list(VARIANTS)
    assert results["b_with_outcomes"]["features"][-1] == "outcomes"
    table = (tmp_path / "ablation.md").read_text()
    assert all(name in table for name in VARIANTS) and "r(alpha)" in table

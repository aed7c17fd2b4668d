"""The adaptation report's scores: known shifts and widths of the raw draws against the
reference come out as their errors and sd ratios, the table reads the reports, and the paired
calibration change is BayesFlow's calibration error with an honest standard error."""

import json

import numpy as np
import pytest
import xarray as xr

from amortized_rlddm.correction.importance import khat_threshold
from amortized_rlddm.validation.adaptation import (
    adaptation_table,
    calibration_change,
    calibration_errors,
    interval_hits,
    paired_calibration_change,
    raw_scores,
)


class _Shifted:
    """A stand-in network whose raw draws are the reference's shifted by 0.5 of their sd and
    1.2 times as wide, with given k-hats."""

    parameter_names = ("v", "alpha")

    def __init__(self, reference, khat):
        self.reference, self.khat = reference, khat

    def infer(self, study, draws, seed, design, check):
        rows = study.rows
        posterior = {}
        for name, exact in self.reference.items():
            picked = exact[:, rows]
            mean, sd = picked.mean(0), picked.std(0)
            posterior[name] = (("chain", "draw", "participant"),
                               (mean + 0.5 * sd + 1.2 * (picked - mean))[None])
        importance = xr.Dataset({"khat": ("participant", self.khat[rows])})
        return xr.DataTree.from_dict({"posterior": xr.Dataset(posterior), "importance": importance})


class _Study:
    def __init__(self, rows):
        self.rows = np.asarray(rows)

    def select(self, rows):
        return _Study(self.rows[np.asarray(rows)])


def test_raw_scores_are_the_shift_in_exact_sds_and_the_sd_ratio():
    rng = np.random.default_rng(0)
    reference = {"v": rng.normal(2.0, 0.3, (1000, 6)), "alpha": rng.beta(2, 5, (1000, 6))}
    khat = np.array([0.1, 0.9, 0.3, 0.8, 0.2, 0.75])
    scores = raw_scores(_Shifted(reference, khat), _Study(np.arange(6)), None, reference, np.array([1, 3, 5]),
                        draws=1000, seed=0)
    assert scores["participants"] == 3 and scores["above_threshold"] == int((khat[[1, 3, 5]] > khat_threshold(1000))
                                                                            .sum())
    assert scores["median_khat"] == pytest.approx(0.8)
    for name in ("v", "alpha"):
        assert scores["parameters"][name]["error"] == pytest.approx(0.5)
        assert scores["parameters"][name]["sd_ratio"] == pytest.approx(1.2)


def test_the_table_reads_each_reports_summary(tmp_path):
    def scores(above, error, ratio):
        return {"participants": 10, "above_threshold": above, "median_khat": 0.5,
                "parameters": {"v": {"error": error, "sd_ratio": ratio}, "t0": {"error": error / 2, "sd_ratio": 1.0}}}

    summary = {"participants": 10, "before": scores(6, 1.9, 1.5),
               "runs": {"whole_study": {"seconds": 420.0, "adapted": scores(1, 0.08, 0.97)},
                        "half_study": {"held_out": scores(4, 0.9, 1.1), "held_out_before": scores(3, 2.0, 1.4)}},
               "calibration": {"max_change": 0.012, "before": {"seed": {"v": 0.010, "t0": 0.020}},
                               "after": {"seed": {"v": 0.022, "t0": 0.015}}}}
    (tmp_path / "hddm_general").mkdir()
    (tmp_path / "hddm_general" / "summary.json").write_text(json.dumps(summary))
    row = adaptation_table(tmp_path).splitlines()[-1]
    assert row == (
        "| hddm_general | 10 | 6 / 1 / 4 (3) | 1.90 / 0.08 / 0.90 | 0.97-1.00 | 7.0 | 0.012 / 0.005 (1 of 2) |")


def _conjugate_posteriors(rng, n, draws, sd):
    """Truths from N(0, 1), one observation each from N(truth, 1), and draws from N(x / 2, sd):
    the exact posterior when sd = sqrt(1/2)."""
    truth = rng.standard_normal(n)
    x = truth + rng.standard_normal(n)
    return truth, x[:, None] / 2 + sd * rng.standard_normal((n, draws))


def test_interval_hits_give_bayesflows_calibration_error():
    from bayesflow.diagnostics.metrics import calibration_error

    rng = np.random.default_rng(1)
    truth, draws = _conjugate_posteriors(rng, 400, 300, 0.45)  # too narrow: a clear error
    hits = interval_hits(draws, truth)
    ours = paired_calibration_change(hits, hits)
    assert ours["before"] == pytest.approx(calibration_error(draws[..., None], truth[:, None])["values"][0])
    assert ours["before"] > 0.05 and ours["change"] == 0.0 and ours["se"] == 0.0


def test_the_bootstrap_standard_error_is_the_changes_spread_over_independent_sets():
    rng = np.random.default_rng(2)
    changes, errors = [], []
    for _ in range(60):
        truth, exact = _conjugate_posteriors(rng, 500, 200, np.sqrt(0.5))
        narrow = exact.mean(1, keepdims=True) + 0.85 * (exact - exact.mean(1, keepdims=True))
        result = paired_calibration_change(interval_hits(exact, truth), interval_hits(narrow, truth), bootstraps=200,
                                           seed=int(rng.integers(1000)))
        changes.append(result["change"])
        errors.append(result["se"])
    assert np.mean(changes) > 0  # 15% too narrow: worse calibrated
    assert 0.6 < np.median(errors) / np.std(changes) < 1.6


def test_calibration_change_uses_the_reports_simulations():
    from amortized_rlddm.amortized.posterior import AmortizedPosterior

    network = AmortizedPosterior.load("general")
    report = calibration_errors(network, ["seed"], 40, seed=3)
    change = calibration_change(network, network, designs=["seed"], datasets=40, seed=3, bootstraps=50)
    for name, error in report["seed"].items():
        assert change["seed"][name]["before"] == pytest.approx(error)
        assert change["seed"][name]["change"] == 0.0 and change["seed"][name]["se"] == 0.0


@pytest.mark.parametrize("setting", ["datasets", "draws", "bootstraps"])
def test_calibration_change_refuses_fewer_than_two(setting):
    with pytest.raises(ValueError, match=f"{setting} must be an integer >= 2, got 1"):
        calibration_change(None, None, designs=["seed"], **{setting: 1})

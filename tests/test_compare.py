"""The amortized-vs-NUTS comparison on a smoke network writes every file."""

import json

import pandas as pd
import pytest

pytest.importorskip("pymc")

from amortized_rlddm.compare import compare  # noqa: E402
from amortized_rlddm.config import load_config  # noqa: E402
from amortized_rlddm.inference import AmortizedPosterior  # noqa: E402
from amortized_rlddm.training import train  # noqa: E402


def test_compare_writes_every_file(tmp_path):
    train(load_config("training_configs/smoke.yaml"), tmp_path / "net", verbose=0)
    posterior = AmortizedPosterior.load(tmp_path / "net")
    summary, timing = compare(posterior, tmp_path / "cmp", n_datasets=2, seed=1, draws=200, chains=2,
                              tune=150, nuts_backend="pymc")
    for name in ("per_dataset.csv", "summary.csv", "nuts_diagnostics.csv", "truth.csv", "overlays.png",
                 "comparison.json", "report.md"):
        assert (tmp_path / "cmp" / name).stat().st_size > 0, name
    table = pd.read_csv(tmp_path / "cmp" / "per_dataset.csv")
    assert len(table) == 2 * 5 and (table["sd_nuts"] > 0).all() and (table["wasserstein"] >= 0).all()
    assert set(summary["parameter"]) == {"v", "a", "z", "t0", "alpha"}
    assert {"r_amortized", "r_nuts", "median_sd_ratio"} <= set(summary.columns)
    saved = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert saved["timing"]["speedup"] > 1 and saved["timing"]["datasets"] == 2

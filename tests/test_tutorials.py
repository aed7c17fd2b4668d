"""The tutorials in docs/tutorials run as users run them, so they cannot rot."""

import runpy
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT.parent / "shared" / "real"


@pytest.mark.skipif(not (REAL / "hddm_rlddm_data.csv").is_file(), reason="needs ../shared/real (HDDM's data)")
def test_the_hddm_tutorial_runs_and_draws_its_figures(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HDDM_DATA", str(REAL / "hddm_rlddm_data.csv"))
    monkeypatch.setenv("TUTORIAL_OUT", str(tmp_path))
    runpy.run_path(str(ROOT / "docs" / "tutorials" / "hddm_example.py"), run_name="__main__")
    printed = capsys.readouterr().out
    assert "28 subjects" in printed and "single learning rate: trusted" in printed and "group level in" in printed
    for name in ("posteriors.png", "single_vs_dual.png", "group_posteriors.png"):
        assert (tmp_path / name).stat().st_size > 0


@pytest.mark.slow
def test_the_pymc_gallery_tutorial_reproduces_the_gallery_and_agrees_with_its_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TUTORIAL_OUT", str(tmp_path))
    runpy.run_path(str(ROOT / "docs" / "tutorials" / "pymc_gallery.py"), run_name="__main__")
    printed = capsys.readouterr().out
    assert "maximum likelihood: alpha 0.50, beta 5.71" in printed and "corrected: trusted True" in printed
    table = pd.read_csv(tmp_path / "gallery_posteriors.csv").set_index("method")
    for method in ("PyMC scan (the gallery's)", "network, corrected"):  # the exact posterior, sampled otherwise
        assert table.loc[method, ["alpha_shift_in_sd", "beta_shift_in_sd"]].abs().max() < 0.02, method
    for name in ("alpha", "beta"):
        assert float(printed.split(f"recovery of {name}: r = ")[1].split()[0]) > 0.8
    for name in ("gallery_posteriors.png", "gallery_recovery.png"):
        assert (tmp_path / name).stat().st_size > 0

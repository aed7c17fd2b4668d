"""The tutorials in docs/tutorials run as users run them, so they cannot rot."""

import runpy
from pathlib import Path

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

"""The committed reports: each has its commands and a manifest matching the inputs in the
checkout; reports/ holds nothing else; the docs' table of commands is the registry's."""

import json
import shlex
from pathlib import Path

import pytest

from amortized_rlddm.cli import build_parser
from amortized_rlddm.validation import reports
from amortized_rlddm.validation.adaptation import adaptation_table
from amortized_rlddm.validation.compare import nuts_comparison_table
from amortized_rlddm.validation.gap import gap_table
from amortized_rlddm.validation.posterior_check import misspecification_table
from amortized_rlddm.validation.reports import MANIFEST, REPORTS, Report, input_hashes, reproduce_table, stale_inputs

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_every_report_has_a_manifest_of_its_commands_and_current_inputs(name):
    """A report whose network or data changed since it was made is stale: rebuild it with
    `rlddm validate report NAME` (or, if it needs no rebuild, record it with --record)."""
    assert (ROOT / REPORTS[name].folder / MANIFEST).is_file(), name
    assert stale_inputs(name, ROOT) == [], f"{name}: rebuild it, `rlddm validate report {name}`"


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_every_report_command_is_one_the_command_line_takes(name):
    parser = build_parser()
    for command in REPORTS[name].commands:
        args = parser.parse_args(list(command))
        assert callable(args.func)
        assert Path(getattr(args, "out", REPORTS[name].folder)).is_relative_to(REPORTS[name].folder)


def test_reports_holds_only_what_its_commands_rebuild():
    """Every file under reports/ lies in a registered report's folder."""
    folders = [Path(report.folder) for report in REPORTS.values()]
    strays = [path for path in (ROOT / "reports").rglob("*") if path.is_file()
              and not any(path.relative_to(ROOT).is_relative_to(folder) for folder in folders)]
    assert strays == []


def test_the_docs_list_every_report_with_its_command():
    assert reproduce_table() in (ROOT / "docs" / "validation.md").read_text()


def test_the_docs_model_comparison_table_is_the_reports():
    assert reports.models_table(ROOT) in (ROOT / "docs" / "validation.md").read_text()


def test_the_docs_choice_only_nuts_table_is_the_reports():
    folders = {trials: ROOT / "reports" / "softmax" / f"compare_{trials}trials" for trials in ("100", "200")}
    assert nuts_comparison_table(folders) in (ROOT / "docs" / "validation.md").read_text()


def test_the_docs_human_data_tables_are_the_reports():
    docs = (ROOT / "docs" / "validation.md").read_text()
    assert misspecification_table(ROOT / "reports" / "misspecification") in docs
    assert gap_table(ROOT / "reports" / "real" / "gap") in docs
    assert adaptation_table(ROOT / "reports" / "real" / "adapt") in docs


def test_a_changed_input_makes_a_report_stale_and_rebuilding_records_the_commit(tmp_path, monkeypatch):
    import subprocess

    (tmp_path / "net").mkdir()
    for file in ("model.keras", "config.yaml"):
        (tmp_path / "net" / file).write_text(file)
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    (tmp_path / "reports" / "toy").mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x"],
                   cwd=tmp_path, check=True)
    toy = Report("reports/toy", (("power", "--out", "reports/toy"),), ("net", "data.csv"), "a toy")
    monkeypatch.setitem(REPORTS, "toy", toy)
    ran = []
    manifest = reports.rebuild("toy", lambda argv: ran.append(argv) or 0, tmp_path)
    assert ran == [["power", "--out", "reports/toy"]]
    assert manifest["commands"] == ["rlddm power --out reports/toy"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert manifest["commit"] == f"{head}+changes"  # the untracked files: not the commit's code alone
    assert json.loads((tmp_path / "reports" / "toy" / MANIFEST).read_text())["inputs"] == input_hashes(
        ("net", "data.csv"), tmp_path)
    assert stale_inputs("toy", tmp_path) == []
    (tmp_path / "net" / "model.keras").write_text("retrained")
    assert stale_inputs("toy", tmp_path) == ["net"]
    monkeypatch.setitem(REPORTS, "toy", Report(toy.folder, (("power", "--trials", "30"),), toy.inputs, toy.about))
    assert stale_inputs("toy", tmp_path) == ["(commands)", "net"]
    with pytest.raises(RuntimeError, match=shlex.join(["power", "--trials", "30"])):
        reports.rebuild("toy", lambda argv: 2, tmp_path)

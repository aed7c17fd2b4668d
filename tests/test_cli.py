"""The `rlddm` command line, run in-process."""

import ast
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import amortized_rlddm.cli
from amortized_rlddm.cli import main
from amortized_rlddm.data.io import read_study
from amortized_rlddm.model.simulator import simulate

SMOKE = "training_configs/smoke.yaml"
USER_COMMANDS = ("simulate", "demo", "infer", "check", "group", "fit-exact", "compare-models", "train", "adapt",
                 "export", "diagnose", "compare", "power")
VALIDATE_COMMANDS = ("group", "designs", "real-data", "gap", "adapt", "headline", "ablate", "bench")
LONGEST_FUNCTION = 60  # lines, in the cli package


def _help(argv, capsys):
    """What `rlddm ARGV --help` prints."""
    with pytest.raises(SystemExit) as raised:
        main([*argv, "--help"])
    assert raised.value.code == 0
    return capsys.readouterr().out


def test_the_help_lists_the_user_commands_and_validate(capsys):
    listed = _help([], capsys)
    for command in (*USER_COMMANDS, "validate"):
        assert f"\n    {command} " in listed, command


def test_validate_help_lists_its_commands_and_each_command_has_its_help(capsys):
    listed = _help(["validate"], capsys)
    for command in VALIDATE_COMMANDS:
        assert f"\n    {command} " in listed, command
    assert "{simulate,likelihood,train,infer,group}" in _help(["validate", "bench"], capsys)
    for argv in [[command] for command in USER_COMMANDS] + [["validate", command] for command in VALIDATE_COMMANDS]:
        assert _help(argv, capsys).startswith(f"usage: rlddm {' '.join(argv)} "), argv


@pytest.mark.parametrize("old", ["validate-group", "validate-designs", "real-amortized", "headline", "ablate", "bench",
                                 "design"])
def test_the_old_command_names_are_refused(old, capsys):
    with pytest.raises(SystemExit) as raised:
        main([old])
    assert raised.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_a_validate_command_names_itself_in_its_errors(tmp_path, capsys):
    assert main(["validate", "headline", "--diagnostics", str(tmp_path / "none"), "--compare",
                 str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.startswith("rlddm validate headline: error: ")


def test_no_function_of_the_cli_is_longer_than_the_limit():
    folder = Path(amortized_rlddm.cli.__file__).parent
    lengths = {f"{path.name}:{node.name}": node.end_lineno - node.lineno + 1
               for path in folder.glob("*.py") for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}
    assert lengths and max(lengths.values()) <= LONGEST_FUNCTION, \
        {name: n for name, n in lengths.items() if n > LONGEST_FUNCTION}


def test_simulate_writes_data_and_truth(tmp_path, capsys):
    data, truth = tmp_path / "data.csv", tmp_path / "truth.csv"
    assert main(["simulate", "--config", "training_configs/default.yaml", "--participants", "4",
                 "--seed", "3", "--out", str(data), "--truth", str(truth)]) == 0
    frame = pd.read_csv(data)
    assert list(frame.columns) == ["participant", "trial", "choice", "rt", "reward"]
    assert len(frame) == 4 * 60
    t = pd.read_csv(truth)
    assert list(t.columns) == ["participant", "v", "a", "z", "t0", "alpha"] and len(t) == 4
    assert read_study(data).n_participants == 4
    # the same seed reproduces the same files
    main(["simulate", "--participants", "4", "--seed", "3", "--out", str(tmp_path / "again.csv")])
    assert (tmp_path / "again.csv").read_text() == data.read_text()


@pytest.mark.slow
def test_train_then_infer(tmp_path, capsys):
    ckpt = tmp_path / "net"
    assert main(["train", "--config", SMOKE, "--out", str(ckpt), "--no-progress"]) == 0
    data = tmp_path / "data.csv"
    main(["simulate", "--config", SMOKE, "--participants", "3", "--seed", "1", "--out", str(data)])
    out, summary, plots = tmp_path / "post.nc", tmp_path / "summary.csv", tmp_path / "figs"
    assert main(["infer", "--checkpoint", str(ckpt), "--data", str(data), "--draws", "200", "--seed", "1",
                 "--out", str(out), "--summary", str(summary), "--plots", str(plots)]) == 0
    tree = xr.open_datatree(out)
    assert tree["posterior"]["alpha"].shape == (1, 200, 3)
    table = pd.read_csv(summary)
    assert set(table["parameter"]) == {"v", "a", "z", "t0", "alpha"} and np.isfinite(table["sd"]).all()
    assert (plots / "posteriors.png").stat().st_size > 0
    assert {"khat", "log_evidence", "method"} <= set(table)
    assert set(table["method"]) <= {"refined", "adaptive", "mcmc"}  # corrected by default
    assert main(["infer", "--checkpoint", str(ckpt), "--data", str(data), "--draws", "100", "--seed", "1", "--raw",
                 "--out", str(tmp_path / "raw.nc"), "--summary", str(tmp_path / "raw.csv")]) == 0
    assert set(pd.read_csv(tmp_path / "raw.csv")["method"]) == {"flow"}  # the network's own draws, checked
    capsys.readouterr()
    assert main(["infer", "--checkpoint", str(ckpt), "--data", str(data), "--no-check",
                 "--out", str(tmp_path / "x.nc")]) == 2
    assert "give it with --raw" in capsys.readouterr().err
    # the pointwise log-likelihood and each participant's PSIS-LOO
    assert main(["infer", "--checkpoint", str(ckpt), "--data", str(data), "--draws", "100", "--seed", "1",
                 "--log-likelihood", "--out", str(tmp_path / "loo.nc"), "--summary", str(summary)]) == 0
    assert xr.open_datatree(tmp_path / "loo.nc")["log_likelihood"]["choice_rt"].shape[:2] == (1, 100)
    assert np.isfinite(pd.read_csv(summary)["elpd_loo"]).all()
    # the check of fresh simulations: the share above the k-hat threshold, a histogram, overlays
    capsys.readouterr()
    assert main(["check", "--checkpoint", str(ckpt), "--participants", "12", "--draws", "100",
                 "--misspecification", "9", "--out", str(tmp_path / "check")]) == 0
    printed = capsys.readouterr().out
    assert "above the k-hat threshold" in printed and "unlike simulations of their own design" in printed
    checked = json.loads((tmp_path / "check" / "check.json").read_text())
    assert checked["participants"] == 12 and 0 <= checked["share_above_threshold"] <= 1
    mis = checked["misspecification"]
    assert mis["above_threshold"] == mis["above_threshold_and_unlike_training"] + mis["above_threshold_like_training"]
    table = pd.read_csv(tmp_path / "check" / "check.csv")
    assert len(table) == 12 and table["p_unlike_training"].between(0.1, 1).all()  # 9 replicates: p >= 0.1
    assert (tmp_path / "check" / "refined_overlays.png").stat().st_size > 0
    assert main(["train", "--config", SMOKE, "--out", str(ckpt)]) == 2
    assert "--resume" in capsys.readouterr().err


@pytest.mark.slow
def test_compare_models_finds_the_two_rates_where_they_differ_and_its_selection_is_the_bms_of_its_evidences(
        tmp_path, capsys):
    """Three simulated participants learn from gains far faster than from losses, three at one
    rate: the first three favour softmax-dual by their log Bayes factors, the others do not,
    and bms.csv is the random-effects selection of comparison.csv's log evidences."""
    from amortized_rlddm.model.task import TaskDesign
    from amortized_rlddm.validation.bms import random_effects_bms

    truth = {"alpha_pos": np.array([0.9, 0.9, 0.9, 0.3, 0.3, 0.3]),
             "alpha_neg": np.array([0.05, 0.05, 0.05, 0.3, 0.3, 0.3]), "beta": np.full(6, 8.0)}
    study = simulate(truth, TaskDesign(n_trials=300, reward_probs=(0.7, 0.3), reversal_every=50), seed=11)
    frame = pd.DataFrame({"participant": np.repeat(study.participant, 300), "trial": np.tile(np.arange(1, 301), 6),
                          "choice": study.choice.ravel(), "reward": study.reward.ravel()})
    frame.to_csv(tmp_path / "choices.csv", index=False)
    out = tmp_path / "models"
    assert main(["compare-models", "--models", "softmax", "softmax-dual", "--data", str(tmp_path / "choices.csv"),
                 "--draws", "500", "--out", str(out)]) == 0
    assert "softmax against softmax-dual" in capsys.readouterr().out
    table = pd.read_csv(out / "comparison.csv")
    assert (table["log_bayes_factor"][:3] > 2).all() and (table["log_bayes_factor"][3:] < 1).all()
    assert table[["trusted_single", "trusted_dual"]].all().all()
    expected = random_effects_bms(table[["log_evidence_single", "log_evidence_dual"]].to_numpy(),
                                  models=["softmax", "softmax-dual"])
    bms = pd.read_csv(out / "bms.csv", index_col="model")
    np.testing.assert_allclose(bms["expected_frequency"], expected["expected_frequency"].values, rtol=1e-9)
    np.testing.assert_allclose(bms["protected_exceedance_probability"],
                               expected["protected_exceedance_probability"].values, rtol=1e-9)
    assert (out / "bms.png").stat().st_size > 0 and (out / "report.md").is_file()
    assert main(["compare-models", "--models", "single", "softmax-dual", "--data", str(tmp_path / "choices.csv"),
                 "--out", str(out)]) == 2
    assert "one- and two-rate models" in capsys.readouterr().err


def test_bad_data_gives_a_clear_error_and_exit_code(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("participant,trial,choice,rt,reward\n1,1,0,fast,1\n")
    assert main(["infer", "--checkpoint", "checkpoints/default", "--data", str(bad),
                 "--out", str(tmp_path / "p.nc")]) == 2
    err = capsys.readouterr().err
    assert "line 2" in err and "'rt'" in err and "not a number" in err


def test_missing_config_is_reported(tmp_path, capsys):
    assert main(["simulate", "--config", str(tmp_path / "nope.yaml"), "--participants", "1",
                 "--seed", "1", "--out", str(tmp_path / "d.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_the_demo_on_a_data_file_lists_the_participants_in_the_files_order(tmp_path, capsys):
    data = tmp_path / "data.csv"
    main(["simulate", "--participants", "3", "--seed", "5", "--out", str(data)])
    frame = pd.read_csv(data)
    ids = dict(zip(frame["participant"].unique(), ["s10", "s9", "s1"]))  # not sorted, as strings or numbers
    frame["participant"] = frame["participant"].map(ids)
    frame.to_csv(data, index=False)
    capsys.readouterr()
    assert main(["demo", "--data", str(data), "--draws", "200", "--out", str(tmp_path / "demo")]) == 0
    printed = capsys.readouterr().out
    rows = [line.split()[0] for line in printed.splitlines() if line.split() and line.split()[0] in {"s10", "s9", "s1"}]
    assert rows[:3] == ["s10", "s9", "s1"]
    assert "median k-hat" in printed
    assert {"posterior.nc", "summary.csv", "posteriors.png"} <= {p.name for p in (tmp_path / "demo").iterdir()}


class _Reached(Exception):
    """Raised where a command hands its study and settings on: the test reads what it was given."""


class _Network:
    """A stand-in for a general network: the settings it gives where the options give none."""

    def __init__(self):
        from amortized_rlddm.model.task import TaskDesign

        self.base_design = TaskDesign(n_trials=(20, 400))


def _what_each_command_sees(monkeypatch, data, options):
    """(excluded mask, likelihood options) that infer, group, check, adapt and fit-exact hand on."""
    from amortized_rlddm.amortized import adaptation
    from amortized_rlddm.amortized.posterior import AmortizedPosterior
    from amortized_rlddm.exact import fit
    from amortized_rlddm.group import fit as group_fit
    from amortized_rlddm.validation import posterior_check

    seen = {}

    def record(name, study, design=None, settings=None):
        settings = design.likelihood.for_study(study) if settings is None else settings
        seen[name] = (study.excluded.copy(), settings)
        raise _Reached

    monkeypatch.setattr(AmortizedPosterior, "load", classmethod(lambda cls, checkpoint: _Network()))
    monkeypatch.setattr(_Network, "infer", lambda self, study, design, **kw: record("infer", study, design),
                        raising=False)
    monkeypatch.setattr(group_fit, "fit_group", lambda posterior, study, design, **kw: record("group", study, design))
    monkeypatch.setattr(posterior_check, "check_posteriors",
                        lambda posterior, study, out, design, **kw: record("check", study, design))
    monkeypatch.setattr(adaptation, "adapt",
                        lambda checkpoint, study, design, out, **kw: record("adapt", study, design))
    monkeypatch.setattr(fit, "fit_study", lambda study, priors, model, settings, **kw: record("fit-exact", study,
                                                                                              settings=settings))
    commands = {"infer": ["--out", "p.nc"], "group": ["--out", "g.nc"], "check": [], "adapt": ["--out", "a"],
                "fit-exact": ["--model", "single", "--out", str(data.parent / "fits")]}
    for command, extra in commands.items():
        with pytest.raises(_Reached):
            main([command, "--checkpoint", "general", "--data", str(data), *options, *extra]
                 if command != "fit-exact" else [command, "--data", str(data), *options, *extra])
    return seen


@pytest.mark.parametrize("options", [["--design", "hddm_pst_contaminants"],
                                     ["--exclude-first", "--p-outlier", "0.05", "--rt-max", "5", "--min-rt", "0.3"],
                                     ["--missing", "ignorable", "--q-init", "0.2"]])
def test_every_command_sees_the_same_settings_and_exclusions_for_the_same_options(tmp_path, monkeypatch, options):
    from amortized_rlddm.data.io import write_study
    from amortized_rlddm.model.config import load_config
    from amortized_rlddm.model.designs import named_design

    design = named_design("hddm_pst")
    study = simulate(load_config("general").priors.sample(np.random.default_rng(0), 3), design, seed=2)
    data = tmp_path / "data.csv"
    write_study(study, data)
    seen = _what_each_command_sees(monkeypatch, data, options)
    assert set(seen) == {"infer", "group", "check", "adapt", "fit-exact"}
    excluded, settings = seen["infer"]
    for command, (mask, given) in seen.items():
        assert np.array_equal(mask, excluded), command
        assert given == settings, command
    first_of_each_pair = 3 * study.n_conditions  # excluded by --design hddm_pst_contaminants and --exclude-first
    assert excluded.sum() >= (first_of_each_pair if "--missing" not in options else 0)
    assert settings.p_outlier == (0.0 if "--missing" in options else 0.05)
    assert settings.q_init == (0.2 if "--missing" in options else 0.5)


def test_settings_the_options_cannot_combine_are_refused(tmp_path, capsys):
    data = tmp_path / "data.csv"
    main(["simulate", "--participants", "2", "--seed", "5", "--out", str(data)])
    assert main(["group", "--data", str(data), "--design", "seed", "--p-outlier", "0.05", "--out", "g.nc"]) == 2
    assert "--design seed sets the deadline" in capsys.readouterr().err
    assert main(["check", "--p-outlier", "0.05", "--participants", "5"]) == 2
    assert "apply to --data" in capsys.readouterr().err

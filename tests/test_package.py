"""The package as users get it: the top-level API, the shipped files found by name, a wheel
installed outside the checkout, quiet output, and the README's generated table."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

import amortized_rlddm
from amortized_rlddm.amortized.checkpoint import InferenceError, resolve_checkpoint
from amortized_rlddm.cli import main
from amortized_rlddm.resources import shipped_checkpoints, shipped_configs

ROOT = Path(__file__).resolve().parent.parent


def test_the_user_api_is_exported_at_the_top_level_and_loads_lazily():
    code = ("import sys, amortized_rlddm as m; assert 'tensorflow' not in sys.modules; "
            "from amortized_rlddm import simulate, read_study, loglik, load_config; "
            "assert 'tensorflow' not in sys.modules; from amortized_rlddm import AmortizedPosterior; "
            "print(AmortizedPosterior.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "amortized_rlddm.amortized.posterior"
    assert set(amortized_rlddm.__all__) <= set(dir(amortized_rlddm))
    with pytest.raises(AttributeError, match="no_such_name"):
        amortized_rlddm.no_such_name  # noqa: B018


def test_shipped_network_and_configs_are_found_by_name(tmp_path):
    assert "default" in shipped_checkpoints() and {"default", "smoke"} <= set(shipped_configs())
    assert resolve_checkpoint("default") == shipped_checkpoints()["default"]
    assert resolve_checkpoint(ROOT / "checkpoints" / "default") == ROOT / "checkpoints" / "default"
    with pytest.raises(InferenceError, match="neither a checkpoint directory nor a shipped network.*default"):
        resolve_checkpoint(tmp_path / "nothing")
    assert amortized_rlddm.load_config("default").design.reversal_every == 12


def test_the_shipped_general_network_serves_its_family_and_refuses_outside_it():
    from amortized_rlddm.amortized.checkpoint import checkpoint_for_model
    from amortized_rlddm.model.designs import named_design

    shipped = shipped_checkpoints()
    assert "general" in shipped
    assert checkpoint_for_model("general", "single") == "general"
    assert checkpoint_for_model("general", "dual") == ("general-dual" if "general-dual" in shipped else "general")
    posterior = amortized_rlddm.AmortizedPosterior.load("general")
    assert posterior.serves_family and posterior.parameter_names == ("v", "a", "z", "t0", "alpha")
    design = named_design("gershman")
    study = amortized_rlddm.simulate(posterior.config.priors.sample(np.random.default_rng(0), 3), design, seed=1)
    tree = posterior.infer(study, draws=200, seed=0, design=design)
    alpha = tree["posterior"]["alpha"].values
    assert alpha.shape == (1, 200, 3) and ((alpha > 0) & (alpha < 1)).all()
    long = amortized_rlddm.simulate(posterior.config.priors.sample(np.random.default_rng(0), 1),
                                    named_design("seed"), seed=1, n_trials=450)
    with pytest.raises(InferenceError, match="450 trials; this network serves 20 to 400"):
        posterior.infer(long, draws=50, design=named_design("seed"))


def _clean_copy(dest):
    """The files a wheel is built from, without build leftovers of the checkout."""
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "tmp-*", "*.tmp", "state.json")
    for name in ("amortized_rlddm", "checkpoints", "training_configs"):  # the package's links kept as links
        shutil.copytree(ROOT / name, dest / name, ignore=ignore, symlinks=True)


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory):
    """A wheel built from a clean copy of the checkout, installed in a venv of its own: its
    `rlddm`, its python, an empty working folder outside the checkout and the environment."""
    tmp_path = tmp_path_factory.mktemp("wheel")
    source, dist, work = tmp_path / "source", tmp_path / "dist", tmp_path / "empty"
    source.mkdir(), work.mkdir()
    _clean_copy(source)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    str(source), "-w", str(dist)], check=True, capture_output=True)
    wheel = next(dist.glob("amortized_rlddm-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # the dependencies come from this environment (read through a .pth file, so its editable
    # install of the checkout is not); the package itself only from the wheel
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(purelib, "dependencies.pth").write_text("\n".join(sorted(deps)) + "\n")
    subprocess.run([python, "-m", "pip", "install", "--no-deps", "-q", str(wheel)], check=True,
                   capture_output=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([python, "-c", "import amortized_rlddm; print(amortized_rlddm.__file__)"], cwd=work,
                           env=env, check=True, capture_output=True, text=True).stdout
    assert Path(where.strip()).is_relative_to(venv)
    return {"rlddm": venv / "bin" / "rlddm", "python": python, "work": work, "env": env}


def test_the_wheel_holds_every_subpackage_of_the_checkout(installed_wheel):
    found = sorted(".".join(path.relative_to(ROOT).parent.parts)
                   for path in (ROOT / "amortized_rlddm").rglob("__init__.py"))
    assert "amortized_rlddm.group" in found
    code = "import importlib, sys; [importlib.import_module(name) for name in sys.argv[1:]]; print('ok')"
    out = subprocess.run([installed_wheel["python"], "-c", code, *found], cwd=installed_wheel["work"],
                         env=installed_wheel["env"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_a_wheel_installed_outside_the_checkout_runs_the_demo(installed_wheel):
    work, env = installed_wheel["work"], installed_wheel["env"]
    demo = subprocess.run([installed_wheel["rlddm"], "demo", "--participants", "5", "--draws", "200"], cwd=work,
                          env=env, capture_output=True, text=True, timeout=600)
    assert demo.returncode == 0, demo.stderr
    assert "inferred 5 participants x 200 draws" in demo.stdout
    for name in ("data.csv", "truth.csv", "posterior.nc", "summary.csv", "recovery.png"):
        assert (work / "demo_output" / name).stat().st_size > 0
    # quiet by default: no TensorFlow, XLA or CUDA log line on either stream
    for line in (demo.stdout + demo.stderr).splitlines():
        assert not any(key in line for key in ("absl", "cuda", "oneDNN", "tensorflow", "XLA", "I0000", "E0000"))


def test_a_wheel_installed_outside_the_checkout_fits_the_group_level(installed_wheel):
    work, env, rlddm = installed_wheel["work"], installed_wheel["env"], installed_wheel["rlddm"]
    subprocess.run([rlddm, "simulate", "--participants", "6", "--seed", "3", "--out", "study.csv"], cwd=work,
                   env=env, check=True, capture_output=True)
    group = subprocess.run([rlddm, "group", "--data", "study.csv", "--chains", "2", "--tune", "40", "--draws", "40",
                            "--out", "group.nc", "--quiet"], cwd=work, env=env, capture_output=True, text=True,
                           timeout=600)
    assert group.returncode == 0, group.stderr
    assert "6 participants, 2 chains x 40 draws" in group.stdout
    assert (work / "group.nc").stat().st_size > 0


def test_the_numpy_subpackages_import_without_tensorflow_or_pymc():
    code = ("import sys; import amortized_rlddm.data, amortized_rlddm.model, amortized_rlddm.correction, "
            "amortized_rlddm.group; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'bayesflow', 'pymc') "
            "if m in sys.modules))")  # jax comes with arviz-stats
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_quiet_turns_progress_off_and_progress_goes_to_stderr(tmp_path, capsys):
    args = ["simulate", "--participants", "25000", "--seed", "1", "--out", str(tmp_path / "d.csv")]
    assert main(args) == 0
    assert "simulate" in capsys.readouterr().err  # a bar over the chunks of participants
    assert main([*args, "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_the_headline_table_of_readme_and_docs_is_the_commands_output():
    from amortized_rlddm.validation.compare import headline_table

    table = headline_table(ROOT / "reports" / "default", ROOT / "reports" / "compare")
    rows = table.split("\n\n")[0]  # the docs wrap the timing sentence that follows the table
    assert table in (ROOT / "README.md").read_text()
    assert rows in (ROOT / "docs" / "validation.md").read_text()


def test_the_per_design_table_of_the_docs_is_made_from_the_committed_reports():
    from amortized_rlddm.validation.by_design import design_table

    docs = (ROOT / "docs" / "validation.md").read_text()
    for network in ("general", "general-dual"):
        table = design_table(ROOT / "reports" / network)
        assert (ROOT / "reports" / network / "table.md").read_text() == table + "\n", network
        assert table in docs, network


def test_the_correction_table_of_the_docs_is_made_from_the_committed_reports():
    from amortized_rlddm.validation.posterior_check import trusted_table

    table = trusted_table(ROOT / "reports" / "trusted")
    assert (ROOT / "reports" / "trusted" / "table.md").read_text() == table + "\n"
    assert table in (ROOT / "docs" / "validation.md").read_text()
    assert table.count("\n") == 11  # header, rule, two networks x five designs


def test_no_project_file_names_the_team_specification():
    name = "DESIGN" + ".md"
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    for path in tracked.stdout.splitlines():
        file = ROOT / path
        if file.suffix in {".py", ".md", ".yaml", ".toml", ".cff", ".txt"} and file.is_file():
            assert name not in file.read_text(errors="replace"), path

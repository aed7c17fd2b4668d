"""The committed reports under reports/: the commands that make each one, its inputs, and the
manifest each folder keeps.

`rlddm validate report NAME` runs a report's commands from the repository root and writes
``manifest.json`` in its folder: the commands, the commit of the code that ran them, and the
SHA-256 of every input (the networks' weights and configs, the data files). The tests check
each committed manifest against this registry and against the inputs in the checkout, so a
report that a retrained network or a changed file has made stale is seen.
"""

import hashlib
import json
import shlex
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["MANIFEST", "MODEL_COMPARISONS", "REPORTS", "Report", "command_lines", "input_hashes", "models_table",
           "rebuild", "record", "reproduce_table", "stale_inputs"]

MANIFEST = "manifest.json"
REAL = "../shared/real"  # the public human datasets beside the checkout (their sources: docs/data.md)
CHECKPOINT_FILES = ("model.keras", "config.yaml")  # what decides a network's draws
HDDM = f"{REAL}/hddm_rlddm_data.csv"
GERSHMAN = f"{REAL}/gershman_RL_DDM_data_bandit.csv"
MILETIC = f"{REAL}/miletic2021_exp1.csv"
HDDM_SETTINGS = ("--convention", "hddm", "--exclude-first", "--p-outlier", "0.05", "--rt-max", "5")
GERSHMAN_COLUMNS = "participant=subj_idx,choice=c,rt=rt,reward=r,block=s"
GERSHMAN_SETTINGS = ("--choice-codes", "1:0,2:1", "--q-init", "0", "--p-outlier", "0.05", "--rt-max", "12")
# Miletic et al. 2021, exp. 1: arm 1 the pair's better stimulus; rewards in points (100, 0, and -100
# or 0 for a response after the 2 s deadline); 21 trials without a response record 0 points,
# which is not an outcome; they are taken as ignorable omissions (late responses were recorded)
MILETIC_READING = ("--columns", "participant=pp,trial=TrialNumber,condition=stimulus_set,choice=choiceIsHighP,rt=rt,"
                   "reward=reward,p_reward_0=low_stim_prob,p_reward_1=high_stim_prob", "--reward-codes",
                   "100:1,0:0,-100:0", "--missing-rewards", "ignore", "--missing", "ignorable", "--p-outlier", "0.05",
                   "--rt-max", "3")
PAIRS = ("--pair-reward-probs", "0.2/0.8,0.3/0.7,0.4/0.6")
EXACT_FIT = ("--tune", "500", "--draws-per-chain", "500")
NETWORKS = ("checkpoints/general", "checkpoints/general-dual")
MISSPECIFICATION = ("--misspecification", "199")  # replicates per participant


@dataclass(frozen=True)
class Report:
    """One committed report.

    folder: where it lives, from the repository root. commands: `rlddm` arguments, run in order
    from the repository root. inputs: files and checkpoint folders whose content decides it.
    about: what it shows, in a few words.
    """

    folder: str
    commands: tuple[tuple[str, ...], ...]
    inputs: tuple[str, ...]
    about: str


def _report(folder, about, inputs, *commands):
    return Report(folder, tuple(tuple(command) for command in commands), tuple(inputs), about)


REPORTS = {
    "default": _report(
        "reports/default", "calibration of the shipped network, raw and corrected, recovery, replications",
        ["checkpoints/default"],
        ["diagnose", "--checkpoint", "default", "--datasets", "1000", "--seed", "1", "--replications", "20",
         "--refine", "--out", "reports/default"]),
    "default-check": _report(
        "reports/default/check", "k-hat of 1,000 fresh simulations, raw and corrected, trusted",
        ["checkpoints/default"],
        ["check", "--checkpoint", "default", "--participants", "1000", "--seed", "0", "--out",
         "reports/default/check"]),
    "trusted": _report(
        "reports/trusted", "the correction on 1,000 fresh participants of each named design, both general networks",
        NETWORKS,
        ["validate", "trusted", "--participants", "1000", "--seed", "0", "--out", "reports/trusted"]),
    "compare": _report(
        "reports/compare", "against NUTS, 50 datasets", ["checkpoints/default"],
        ["compare", "--checkpoint", "default", "--datasets", "50", "--seed", "3", "--out", "reports/compare"]),
    "compare-200": _report(
        "reports/compare_200", "against NUTS, 200 datasets", ["checkpoints/default"],
        ["compare", "--checkpoint", "default", "--datasets", "200", "--seed", "4", "--out", "reports/compare_200"]),
    "compare-150-trials": _report(
        "reports/compare_150trials", "against NUTS, 150 trials", ["checkpoints/default"],
        ["compare", "--checkpoint", "default", "--datasets", "50", "--seed", "6", "--trials", "150", "--out",
         "reports/compare_150trials"]),
    "real-hddm": _report(
        "reports/real/hddm", "exact fits of HDDM's RL-DDM example under HDDM's choices, beside HDDM's estimates",
        [HDDM, f"{REAL}/hddm_tutorial_subject_estimates.csv"],
        ["fit-exact", "--data", HDDM, "--convention", "hddm", "--hddm-compatible", *PAIRS, "--reference",
         f"{REAL}/hddm_tutorial_subject_estimates.csv", *EXACT_FIT, "--out", "reports/real/hddm"],
        ["fit-exact", "--data", HDDM, "--convention", "hddm", "--hddm-compatible", *PAIRS, "--reference",
         f"{REAL}/hddm_tutorial_subject_estimates.csv", *EXACT_FIT, "--refit-failed", "--out", "reports/real/hddm"]),
    "real-hddm-zfree": _report(
        "reports/real/hddm_zfree", "exact fits of HDDM's example with z free: the general networks' reference",
        [HDDM],
        ["fit-exact", "--data", HDDM, *HDDM_SETTINGS, *PAIRS, *EXACT_FIT, "--out", "reports/real/hddm_zfree"]),
    "real-gershman": _report(
        "reports/real/gershman", "exact fits of Gershman's bandit data", [GERSHMAN],
        ["fit-exact", "--data", GERSHMAN, "--columns", f"{GERSHMAN_COLUMNS},p_reward_0=prob1,p_reward_1=prob2",
         *GERSHMAN_SETTINGS, *EXACT_FIT, "--out", "reports/real/gershman"]),
    "real-hddm-amortized": _report(
        "reports/real/hddm_amortized", "HDDM's data through general and general-dual, against the exact fits",
        [HDDM, *NETWORKS],
        ["validate", "real-data", "--checkpoint", "general", "--model", "single", "dual", "--data", HDDM,
         *HDDM_SETTINGS, "--exact", "reports/real/hddm_zfree", "--draws", "1000", "--out",
         "reports/real/hddm_amortized"]),
    "real-gershman-amortized": _report(
        "reports/real/gershman_amortized", "Gershman's data through general and general-dual, against the exact fits",
        [GERSHMAN, *NETWORKS],
        ["validate", "real-data", "--checkpoint", "general", "--model", "single", "dual", "--data", GERSHMAN,
         "--columns", GERSHMAN_COLUMNS, *GERSHMAN_SETTINGS, "--exact", "reports/real/gershman", "--draws", "1000",
         "--out", "reports/real/gershman_amortized"]),
    "models-hddm": _report(
        "reports/real/hddm_models", "single vs dual on HDDM's data: per subject and random-effects BMS",
        [HDDM, *NETWORKS],
        ["compare-models", "--data", HDDM, *HDDM_SETTINGS, "--out", "reports/real/hddm_models"]),
    "models-gershman": _report(
        "reports/real/gershman_models", "single vs dual on Gershman's data: per subject and random-effects BMS",
        [GERSHMAN, *NETWORKS],
        ["compare-models", "--data", GERSHMAN, "--columns", GERSHMAN_COLUMNS, *GERSHMAN_SETTINGS, "--out",
         "reports/real/gershman_models"]),
    "gap": _report(
        "reports/real/gap", "where the raw networks depart from the exact posteriors on the human data, and why",
        [HDDM, GERSHMAN, MILETIC, *NETWORKS],
        *(["validate", "gap", "--checkpoint", network, "--data", HDDM, *HDDM_SETTINGS, "--out",
           f"reports/real/gap/hddm_{network}"] for network in ("general", "general-dual")),
        *(["validate", "gap", "--checkpoint", network, "--data", GERSHMAN, "--columns",
           f"{GERSHMAN_COLUMNS},p_reward_0=prob1,p_reward_1=prob2", *GERSHMAN_SETTINGS, "--out",
           f"reports/real/gap/gershman_{network}"] for network in ("general", "general-dual")),
        ["validate", "gap", "--checkpoint", "general", "--data", MILETIC, *MILETIC_READING, "--out",
         "reports/real/gap/miletic_general"]),
    "misspecification": _report(
        "reports/misspecification", "the misspecification check on the human data and on fresh simulations, "
        "beside the k-hat", [HDDM, GERSHMAN, *NETWORKS],
        *(["check", "--checkpoint", network, "--data", HDDM, *HDDM_SETTINGS, *MISSPECIFICATION, "--out",
           f"reports/misspecification/hddm_{network}"] for network in ("general", "general-dual")),
        *(["check", "--checkpoint", network, "--data", GERSHMAN, "--columns",
           f"{GERSHMAN_COLUMNS},p_reward_0=prob1,p_reward_1=prob2", *GERSHMAN_SETTINGS, *MISSPECIFICATION, "--out",
           f"reports/misspecification/gershman_{network}"] for network in ("general", "general-dual")),
        *(["check", "--checkpoint", "general", "--design", design, "--participants", "200", "--seed", "3",
           *MISSPECIFICATION, "--out", f"reports/misspecification/simulated_{design}"]
          for design in ("hddm_pst_contaminants", "gershman_contaminants"))),
    "adapt": _report(
        "reports/real/adapt", "the raw networks adapted to the human data (rlddm adapt): errors before and after, "
        "on held-out halves, and calibration on the five validation designs", [HDDM, GERSHMAN, MILETIC, *NETWORKS],
        *(["validate", "adapt", "--checkpoint", network, "--data", HDDM, *HDDM_SETTINGS, "--out",
           f"reports/real/adapt/hddm_{network}"] for network in ("general", "general-dual")),
        *(["validate", "adapt", "--checkpoint", network, "--data", GERSHMAN, "--columns",
           f"{GERSHMAN_COLUMNS},p_reward_0=prob1,p_reward_1=prob2", *GERSHMAN_SETTINGS, "--out",
           f"reports/real/adapt/gershman_{network}"] for network in ("general", "general-dual")),
        ["validate", "adapt", "--checkpoint", "general", "--data", MILETIC, *MILETIC_READING, "--out",
         "reports/real/adapt/miletic_general"]),
    "general": _report(
        "reports/general", "the general network design by design: calibration, k-hat, NUTS", ["checkpoints/general"],
        ["validate", "designs", "--checkpoint", "general", "--nuts-store", "runs/nuts_store", "--out",
         "reports/general"]),
    "general-dual": _report(
        "reports/general-dual", "the dual-rate general network design by design", ["checkpoints/general-dual"],
        ["validate", "designs", "--checkpoint", "general-dual", "--designs", "seed", "hddm_pst", "gershman",
         "stable300", "deadline", "--nuts-store", "runs/nuts_store", "--out", "reports/general-dual"]),
    "group": _report(
        "reports/group", "the group sampler against PyMC on simulated studies, and its SBC",
        ["checkpoints/default"],
        ["validate", "group", "--checkpoint", "default", "--sbc-studies", "200", "--seed", "0", "--sbc-chains", "8",
         "--sbc-draws", "1000", "--reference-store", "runs/group_reference", "--out", "reports/group"],
        ["validate", "group", "--checkpoint", "default", "--steps", "correlated-sbc", "--sbc-studies", "200",
         "--seed", "0", "--sbc-chains", "8", "--sbc-draws", "1000", "--reference-store", "runs/group_reference",
         "--out", "reports/group"]),
    "group-hddm": _report(
        "reports/group/hddm", "the group sampler against PyMC on HDDM's data", [HDDM, "checkpoints/general"],
        ["validate", "group", "--checkpoint", "general", "--data", HDDM, *HDDM_SETTINGS, "--seed", "0",
         "--reference-store", "runs/group_reference", "--out", "reports/group/hddm"]),
    "softmax": _report(
        "reports/softmax", "the choice-only network: calibration on HDDM's layout, raw and corrected",
        ["checkpoints/softmax"],
        ["diagnose", "--checkpoint", "softmax", "--design", "hddm_pst", "--datasets", "500", "--seed", "1", "--refine",
         "--out", "reports/softmax"]),
    "softmax-trusted": _report(
        "reports/softmax/trusted", "the choice-only network's correction on 200 fresh participants of four designs",
        ["checkpoints/softmax"],
        ["validate", "trusted", "--checkpoints", "softmax", "--designs", "seed", "hddm_pst", "gershman", "stable300",
         "--participants", "200", "--seed", "0", "--out", "reports/softmax/trusted"]),
    "softmax-dual": _report(
        "reports/softmax-dual", "the dual-rate choice-only network: calibration on HDDM's layout, raw and corrected",
        ["checkpoints/softmax-dual"],
        ["diagnose", "--checkpoint", "softmax-dual", "--design", "hddm_pst", "--datasets", "500", "--seed", "1",
         "--refine", "--out", "reports/softmax-dual"]),
    "softmax-dual-trusted": _report(
        "reports/softmax-dual/trusted", "the dual-rate choice-only network's correction on 200 fresh participants of "
                                        "four designs",
        ["checkpoints/softmax-dual"],
        ["validate", "trusted", "--checkpoints", "softmax-dual", "--designs", "seed", "hddm_pst", "gershman",
         "stable300", "--participants", "200", "--seed", "0", "--out", "reports/softmax-dual/trusted"]),
    "softmax-models-hddm": _report(
        "reports/softmax/models_hddm", "softmax vs softmax-dual on HDDM's choices: per subject and random-effects BMS",
        [HDDM, "checkpoints/softmax", "checkpoints/softmax-dual"],
        ["compare-models", "--models", "softmax", "softmax-dual", "--data", HDDM, "--convention", "hddm", "--out",
         "reports/softmax/models_hddm"]),
    "softmax-models-gershman": _report(
        "reports/softmax/models_gershman", "softmax vs softmax-dual on Gershman's choices: per subject and "
                                           "random-effects BMS",
        [GERSHMAN, "checkpoints/softmax", "checkpoints/softmax-dual"],
        ["compare-models", "--models", "softmax", "softmax-dual", "--data", GERSHMAN, "--columns", GERSHMAN_COLUMNS,
         "--choice-codes", "1:0,2:1", "--q-init", "0", "--out", "reports/softmax/models_gershman"]),
    "softmax-compare-100": _report(
        "reports/softmax/compare_100trials", "the choice-only network against NUTS: 300 gallery bandits of 100 trials",
        ["checkpoints/softmax"],
        ["compare", "--checkpoint", "softmax", "--design", "gallery", "--trials", "100", "--datasets", "300", "--seed",
         "7", "--nuts-store", "runs/nuts_store", "--out", "reports/softmax/compare_100trials"]),
    "softmax-compare-200": _report(
        "reports/softmax/compare_200trials", "the choice-only network against NUTS: 300 gallery bandits of 200 trials",
        ["checkpoints/softmax"],
        ["compare", "--checkpoint", "softmax", "--design", "gallery", "--trials", "200", "--datasets", "300", "--seed",
         "8", "--nuts-store", "runs/nuts_store", "--out", "reports/softmax/compare_200trials"]),
    "softmax-group-hddm": _report(
        "reports/softmax/group_hddm", "the choice-only group level on HDDM's data: PyMC and HDDM's published Hrl fit",
        [HDDM, f"{REAL}/hddm_tutorial_hrl_rl_only_stats.csv", "checkpoints/softmax"],
        ["validate", "group", "--checkpoint", "softmax", "--data", HDDM, "--convention", "hddm", "--published",
         f"{REAL}/hddm_tutorial_hrl_rl_only_stats.csv", "--seed", "0", "--reference-store", "runs/group_reference",
         "--out", "reports/softmax/group_hddm"]),
    "power": _report(
        "reports/power", "the power analysis: recovery per trial count", ["checkpoints/default"],
        ["power", "--checkpoint", "default", "--trials", "30", "60", "100", "150", "--datasets", "500", "--seed", "2",
         "--out", "reports/power"]),
}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def input_hashes(inputs, root: str | Path = ".") -> dict[str, str]:
    """SHA-256 of each input under `root`: of a file, its bytes; of a checkpoint folder, those of
    its CHECKPOINT_FILES in turn (the hash of their hashes)."""
    root, out = Path(root), {}
    for name in inputs:
        path = root / name
        if path.is_dir():
            parts = [f"{file}:{_sha256(path / file)}" for file in CHECKPOINT_FILES]
            out[name] = hashlib.sha256("\n".join(parts).encode()).hexdigest()
        elif path.is_file():
            out[name] = _sha256(path)
        else:
            raise FileNotFoundError(f"input {name} of a report is missing under {root.resolve()}")
    return out


def command_lines(report: Report) -> list[str]:
    """The report's commands as shell lines."""
    return [shlex.join(["rlddm", *command]) for command in report.commands]


def _git(root, *args) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()


def _write(report: Report, root: Path, commit: str, how: str) -> dict:
    manifest = {"commands": command_lines(report), "commit": commit, "how": how,
                "written": datetime.now(UTC).isoformat(timespec="seconds"),
                "inputs": input_hashes(report.inputs, root)}
    (root / report.folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def rebuild(name: str, run, root: str | Path = ".") -> dict:
    """Run report `name`'s commands with `run` (a function of the `rlddm` arguments returning
    an exit status, e.g. the CLI's ``main``) from `root`, then write its manifest: the commit
    checked out (marked ``+changes`` when the working tree differs from it)."""
    report, root = REPORTS[name], Path(root)
    for command in report.commands:
        status = run(list(command))
        if status:
            raise RuntimeError(f"report {name}: `rlddm {' '.join(command)}` failed with status {status}")
    commit = _git(root, "rev-parse", "HEAD") + ("+changes" if _git(root, "status", "--porcelain", "--", ".") else "")
    return _write(report, root, commit, "made by these commands at this commit")


def record(name: str, root: str | Path = ".") -> dict:
    """Write the manifest of report `name` as it stands: the commit that last changed its folder
    (whose code, or a close ancestor's, made it)."""
    report, root = REPORTS[name], Path(root)
    commit = _git(root, "log", "-1", "--format=%H", "--", report.folder)
    return _write(report, root, commit, "recorded for the committed report: the commit that last changed it")


def stale_inputs(name: str, root: str | Path = ".") -> list[str]:
    """The inputs of report `name` whose content differs from its manifest's (all of them when
    it has no manifest, and the commands when they differ from the registry's)."""
    report, root = REPORTS[name], Path(root)
    path = root / report.folder / MANIFEST
    if not path.is_file():
        return ["(no manifest)"]
    manifest = json.loads(path.read_text())
    stale = [] if manifest["commands"] == command_lines(report) else ["(commands)"]
    current = input_hashes(report.inputs, root)
    return stale + [name for name in report.inputs if manifest["inputs"].get(name) != current[name]]


def reproduce_table() -> str:
    """The markdown table of every report, what it shows and the command that rebuilds it."""
    lines = ["| report | what it shows | rebuilt by |", "|---|---|---|"]
    for name, report in REPORTS.items():
        lines.append(f"| [`{report.folder}/`](../{report.folder}/) | {report.about} | "
                     f"`rlddm validate report {name}` |")
    return "\n".join(lines)


# The committed model comparisons of the human data (`rlddm compare-models`), as docs/validation.md lists them
MODEL_COMPARISONS = {"HDDM's example": "models-hddm", "Gershman's bandit": "models-gershman",
                     "HDDM's example, choices alone": "softmax-models-hddm",
                     "Gershman's bandit, choices alone": "softmax-models-gershman"}


def models_table(root: str | Path = ".") -> str:
    """The markdown table of :data:`MODEL_COMPARISONS`, from their committed reports."""
    from .model_comparison import comparison_table

    return comparison_table({label: Path(root) / REPORTS[name].folder for label, name in MODEL_COMPARISONS.items()})

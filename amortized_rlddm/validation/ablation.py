"""The network ablation (`rlddm validate ablate`): with one training budget, train variants of the
default network that each change one thing (per-trial inputs, summary network, inference
network, optimisation), diagnose each on the same fresh datasets, and tabulate them.

Every variant is a set of overrides of the given config, written as dotted keys, so the
table says exactly what differs. Results accumulate in ablation.json: variants can be run
a few at a time and the table always shows all of them. Each row records the package
version whose default config it overrides; a rerun under a newer default keeps the older
row under "<variant> (v<version>)".
"""

import copy
import json
from pathlib import Path

from tqdm.auto import tqdm

from .. import __version__
from ..amortized.packing import OBSERVED_FEATURES
from ..amortized.posterior import AmortizedPosterior
from ..amortized.training import train, training_settings
from ..model.config import config_from_dict
from .diagnostics import diagnose

VARIANTS = {
    "default": {},
    "observed_only": {"network.features": list(OBSERVED_FEATURES)},
    "observed_with_outcomes": {"network.features": [*OBSERVED_FEATURES, "outcomes"]},
    "observed_with_phase": {"network.features": [*OBSERVED_FEATURES, "phase"]},
    "qprofile_condition": {"network.conditions": ["n_trials", "qprofile"]},  # the 0.3 default's
    "rtstats_condition": {"network.conditions": ["n_trials", "qprofile", "rtstats"]},
    "trial_count_condition_only": {"network.conditions": ["n_trials"]},  # as before 0.3
    "summary_dim_32": {"network.summary.summary_dim": 32},
    "summary_gru": {"network.summary": {"kind": "RecurrentNetwork", "summary_dim": 16, "hidden_dim": [64],
                                        "dropout": 0.0}},
    "summary_time_series_network": {"network.summary": {"kind": "TimeSeriesNetwork", "summary_dim": 16,
                                                        "recurrent_dim": 64, "dropout": 0.0},
                                    "training.trial_buckets": 1},  # it has no padding mask
    "t0_upper_prior": {"network.t0_upper": "prior"},
    "flow_depth_6": {"network.inference.depth": 6},
    "flow_spline": {"network.inference.transform": "spline"},
    "flow_no_dropout": {"network.inference.subnet_kwargs": {"widths": [64, 64], "dropout": 0.0}},
    "flow_matching": {"network.inference": {"kind": "FlowMatching", "subnet_kwargs": {"widths": [128, 128]},
                                            "integrate_kwargs": {"method": "rk45", "steps": 10}}},
    "batch_128": {"training.batch_size": 128, "training.batches_per_epoch": 100},
    "trial_buckets_4": {"training.trial_buckets": 4},  # the shipped 0.3 network's
    "learning_rate_1e-3": {"training.learning_rate": 1.0e-3},  # the 0.3 default's
    "learning_rate_5e-4": {"training.learning_rate": 5.0e-4},  # as before 0.3
    "constant_learning_rate": {"training.schedule": "constant"},
}
# What the default config was, per package version, for rows that override an older default.
DEFAULTS_BY_VERSION = {
    "0.1": "TimeSeriesTransformer summary; the flow's t0 bounded by its prior only",
    "0.2": "TimeSeriesTransformer summary; the flow's t0 below each participant's fastest RT",
    "0.3": "as 0.2, plus the qprofile condition and a learning rate of 1e-3",
}
RESULTS_FILE = "ablation.json"
TABLE_FILE = "ablation.md"


def variant_config(config, overrides, epochs):
    """The config with the variant's dotted-key overrides applied and, if given, the epochs."""
    spec = copy.deepcopy(config.to_dict())
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = spec
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = copy.deepcopy(value)
    if epochs is not None:
        spec.setdefault("training", {})["epochs"] = int(epochs)
    return config_from_dict(spec, source="ablation variant")


def ablate(config, out_dir, variants=None, epochs=None, datasets=500, seed=0, verbose=2, progress=False):
    """Train (or resume) each named variant under out_dir/<variant>, diagnose it on `datasets`
    fresh datasets, merge the results into ablation.json and rewrite ablation.md.
    verbose: Keras' training output (0, 1 or 2); progress: a progress bar over the variants."""
    names = list(VARIANTS) if variants is None else list(variants)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown ablation variant(s) {unknown}; expected some of {list(VARIANTS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / RESULTS_FILE
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for name in tqdm(names, desc="ablate: variants", disable=not progress):
        ckpt = out / name
        older = _minor(results[name]) if name in results else None
        if older and older != _minor_version(__version__):  # keep the row and run of an older default
            results[f"{name} (v{older})"] = results.pop(name)
            if ckpt.exists():
                ckpt.rename(out / f"{name}_v{older}")
        cfg = variant_config(config, VARIANTS[name], epochs)
        state = train(cfg, ckpt, resume=(ckpt / "state.json").exists(), verbose=verbose)
        metrics = diagnose(AmortizedPosterior.load(ckpt), datasets, seed, ckpt / "report", draws=1000,
                           progress=progress)
        _, training = training_settings(cfg)
        results[name] = {"overrides": VARIANTS[name], "package_version": __version__, "epochs": state["epochs_done"],
                         "batches_per_epoch": training["batches_per_epoch"], "batch_size": training["batch_size"],
                         "train_minutes": state["train_seconds"] / 60, "datasets": datasets, "seed": seed,
                         "final_val_loss": state["history"]["val_loss"][-1],
                         "parameters": metrics["parameters"]}
        results_path.write_text(json.dumps(results, indent=1))
        (out / TABLE_FILE).write_text(ablation_markdown(results))
    return results


def _minor_version(version):
    return ".".join(version.split(".")[:2])


def _minor(row):
    """The major.minor version of the default a row overrides (rows without one: 0.1)."""
    return _minor_version(row.get("package_version", "0.1.0"))


def _describe(overrides):
    if not overrides:
        return "the default config"
    return "; ".join(f"{k} = {json.dumps(v)}" for k, v in overrides.items())


def ablation_markdown(results):
    first = next(iter(results.values()))
    rates = [n for n in first["parameters"] if n.startswith("alpha")]
    versions = sorted({_minor(r) for r in results.values()})
    lines = ["Network ablation: each variant changes the stated settings of the default config of the "
             "package version in its row; diagnosed on fresh simulated datasets (same seed for all). "
             "The val loss is a negative log density in the flow's parameter space, so rows whose "
             "t0 spaces differ are not comparable on it; a FlowMatching row's is its velocity-matching "
             "error. A row of an older default keeps its run in <variant>_v<version>/.", "",
             *[f"- default of v{v}: {DEFAULTS_BY_VERSION.get(v, 'see that version')}" for v in versions], "",
             "| variant | version | change | epochs x batches x size | train min | val loss | " + " | ".join(
                 f"r({n}) | contraction({n}) | calib. error({n})" for n in rates)
             + " | calib. error, worst parameter |",
             "|---|---|---|---|---|---|" + "---|" * (3 * len(rates)) + "---|"]
    for name, r in results.items():
        p = r["parameters"]
        worst = max(p, key=lambda n: p[n]["calibration_error"])
        cells = " | ".join(f"{p[n]['correlation']:.3f} | {p[n]['contraction']:.3f} | "
                           f"{p[n]['calibration_error']:.3f}" for n in rates)
        lines.append(f"| {name} | {_minor(r)} | {_describe(r['overrides'])} | "
                     f"{r['epochs']} x {r['batches_per_epoch']} x "
                     f"{r['batch_size']} | {r['train_minutes']:.0f} | {r['final_val_loss']:.3f} | {cells} | "
                     f"{worst} {p[worst]['calibration_error']:.3f} |")
    return "\n".join(lines) + "\n"

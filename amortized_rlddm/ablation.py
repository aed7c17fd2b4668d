"""The input ablation (`rlddm ablate`): with one training budget, train networks whose
per-trial inputs differ, and compare their recovery and calibration.

(a) observed: choice, RT, reward seen, missing flag (what a real data file holds);
(b) plus both arms' potential outcomes, as the public BayesFlow example did (only a
    simulation has them);
(c) (a) plus the trial position in its block and the reversal phase.
"""

import copy
import json
from pathlib import Path

from .config import config_from_dict
from .diagnostics import diagnose
from .inference import AmortizedPosterior
from .networks import DEFAULT_FEATURES
from .training import train

VARIANTS = {
    "a_observed": list(DEFAULT_FEATURES),
    "b_with_outcomes": [*DEFAULT_FEATURES, "outcomes"],
    "c_with_phase": [*DEFAULT_FEATURES, "phase"],
}


def variant_config(config, features, epochs):
    spec = copy.deepcopy(config.to_dict())
    spec.setdefault("network", {})["features"] = features
    if epochs is not None:
        spec.setdefault("training", {})["epochs"] = int(epochs)
    return config_from_dict(spec, source="ablation variant")


def ablate(config, out_dir, epochs=None, datasets=500, seed=0, verbose=2):
    """Train (or resume) each variant under out_dir/<variant>, diagnose it, and write
    ablation.json and ablation.md comparing them."""
    out = Path(out_dir)
    results = {}
    for name, features in VARIANTS.items():
        ckpt = out / name
        cfg = variant_config(config, features, epochs)
        state = train(cfg, ckpt, resume=(ckpt / "state.json").exists(), verbose=verbose)
        metrics = diagnose(AmortizedPosterior.load(ckpt), datasets, seed, ckpt / "report", draws=1000)
        results[name] = {"features": features, "epochs": state["epochs_done"],
                         "train_minutes": state["train_seconds"] / 60,
                         "final_val_loss": state["history"]["val_loss"][-1],
                         "parameters": metrics["parameters"]}
    (out / "ablation.json").write_text(json.dumps(results, indent=1))
    (out / "ablation.md").write_text(ablation_markdown(results, datasets))
    return results


def ablation_markdown(results, datasets):
    rates = [n for n in next(iter(results.values()))["parameters"] if n.startswith("alpha")]
    lines = [f"Input ablation: same training budget, {datasets} fresh simulated datasets each.", "",
             "| inputs | epochs | train min | val loss | " + " | ".join(
                 f"r({n}) | NRMSE({n}) | contraction({n}) | calib. error({n})" for n in rates)
             + " | calib. error, worst parameter |",
             "|---|---|---|---|" + "---|" * (4 * len(rates)) + "---|"]
    for name, r in results.items():
        p = r["parameters"]
        worst = max(p, key=lambda n: p[n]["calibration_error"])
        cells = " | ".join(f"{p[n]['correlation']:.3f} | {p[n]['nrmse']:.3f} | {p[n]['contraction']:.3f} | "
                           f"{p[n]['calibration_error']:.3f}" for n in rates)
        lines.append(f"| {name}: {', '.join(r['features'])} | {r['epochs']} | {r['train_minutes']:.0f} | "
                     f"{r['final_val_loss']:.3f} | {cells} | {worst} {p[worst]['calibration_error']:.3f} |")
    return "\n".join(lines) + "\n"

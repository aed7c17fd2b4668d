"""Validation of a general network design by design (`rlddm validate designs`).

For each named design (:data:`~amortized_rlddm.model.designs.NAMED_DESIGNS`): calibration on
fresh datasets, raw and PSIS-refined (`rlddm diagnose --design NAME --refine`), the share of
participants whose k-hat lies below the threshold (`rlddm check --design NAME`) and agreement
with NUTS on the exact likelihood on shared datasets, raw and refined (`rlddm compare
--design NAME`). One table puts them beside the targets.
"""

import json
from pathlib import Path

from ..model.designs import NAMED_DESIGNS

# The targets of the general networks, per design (docs/validation.md).
TARGETS = {"calibration_error": 0.03, "khat_share_below": 0.99, "raw_alpha_difference": 0.1,
           "raw_alpha_sd_ratio": (0.9, 1.1), "refined_difference": 0.05}


STEPS = ("calibration", "compare")


def validate_designs(posterior, out, designs=None, datasets=1000, compare_datasets=50, draws=1000, seed=0,
                     tune=1000, draws_per_chain=1000, progress=False, nuts_store=None, steps=STEPS):
    """Run the checks for every design into out/<design>/{diagnose,check,compare} and write
    out/table.md (see :func:`design_table`). Returns the table's markdown.

    steps: "calibration" (diagnose, refined too, and the k-hat check on `datasets` fresh
    datasets) and "compare" (NUTS on `compare_datasets` shared ones); the table is made from
    all the reports under `out`, so the slow comparison may run later. nuts_store: a folder
    keeping the NUTS fits for reuse (see :func:`~amortized_rlddm.validation.compare.compare`).
    """
    from .compare import compare
    from .diagnostics import diagnose
    from .posterior_check import check_posteriors, fresh_simulations

    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        raise ValueError(f"steps: expected some of {list(STEPS)}, got {unknown}")
    out = Path(out)
    for name in designs or list(NAMED_DESIGNS):
        design = NAMED_DESIGNS[name]
        folder = out / name
        if "calibration" in steps:
            diagnose(posterior, datasets, seed, folder / "diagnose", draws=draws, refine=True, progress=progress,
                     design=name)
            study = fresh_simulations(posterior, datasets, seed, design)
            check_posteriors(posterior, study, folder / "check", draws=draws, seed=seed, design=design)
        if "compare" in steps:
            compare(posterior, folder / "compare", n_datasets=compare_datasets, seed=seed, draws=draws,
                    draws_per_chain=draws_per_chain, tune=tune, progress=progress, design=name,
                    nuts_store=nuts_store)
    table = design_table(out)
    (out / "table.md").write_text(table + "\n")
    return table


def _alpha_names(parameters):
    return [p for p in parameters if p.startswith("alpha")]


def design_table(out, designs=None) -> str:
    """The per-design table from the reports under `out`: per design, the worst calibration
    error over the parameters (raw / refined), the share of participants below the k-hat
    threshold, the learning rates' raw agreement with NUTS (median |mean difference| / NUTS
    sd, median sd ratio) and the worst refined agreement over the parameters. A design without
    its calibration and k-hat reports is left out; one without its NUTS comparison yet says so
    in those cells, and its verdict covers the targets measured."""
    out = Path(out)
    lines = ["| design | calibration error, worst raw / refined (parameter) | k-hat below threshold "
             "| learning rate vs NUTS, raw: diff / sd, sd ratio | refined vs NUTS, worst diff / sd (parameter) "
             "| targets met |",
             "|---|---|---|---|---|---|"]
    for name in designs or list(NAMED_DESIGNS):
        folder = out / name
        paths = [folder / "diagnose" / "metrics.json", folder / "check" / "check.json"]
        if not all(p.is_file() for p in paths):
            continue
        metrics, check = (json.loads(p.read_text()) for p in paths)
        raw = {k: v["calibration_error"] for k, v in metrics["parameters"].items()}
        refined = {k: v["calibration_error"] for k, v in metrics["refined_parameters"].items()}
        worst_raw, worst_refined = max(raw, key=raw.get), max(refined, key=refined.get)
        below = 1.0 - check["share_above_threshold"]
        met = {"calibration": max(refined.values()) <= TARGETS["calibration_error"],
               "k-hat": below >= TARGETS["khat_share_below"]}
        compared = folder / "compare" / "comparison.json"
        if compared.is_file():
            comparison = json.loads(compared.read_text())
            summary = {row["parameter"]: row for row in comparison["summary"]}
            summary_refined = {row["parameter"]: row for row in comparison["summary_refined"]}
            alphas = _alpha_names(summary)
            alpha_cells = "; ".join(f"{a} {summary[a]['median_abs_std_mean_difference']:.3f}, "
                                    f"{summary[a]['median_sd_ratio']:.2f}" for a in alphas)
            differences = {k: v["median_abs_std_mean_difference"] for k, v in summary_refined.items()}
            worst = max(differences, key=differences.get)
            refined_cell = f"{differences[worst]:.3f} ({worst})"
            lo, hi = TARGETS["raw_alpha_sd_ratio"]
            met["raw alpha"] = all(summary[a]["median_abs_std_mean_difference"] <= TARGETS["raw_alpha_difference"]
                                   and lo <= summary[a]["median_sd_ratio"] <= hi for a in alphas)
            met["refined"] = differences[worst] <= TARGETS["refined_difference"]
        else:
            alpha_cells = refined_cell = "not run yet"
        verdict = ("all" if all(met.values()) else "not " + ", ".join(k for k, ok in met.items() if not ok))
        if not compared.is_file():
            verdict += " (of calibration and k-hat)"
        lines.append(f"| {name} | {raw[worst_raw]:.3f} ({worst_raw}) / {refined[worst_refined]:.3f} ({worst_refined}) "
                     f"| {100 * below:.1f}% | {alpha_cells} | {refined_cell} | {verdict} |")
    return "\n".join(lines)

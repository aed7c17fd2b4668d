"""`rlddm check`: how well the amortized posteriors of a study match the exact ones.

Every participant's draws are checked by PSIS against the exact likelihood (k-hat, ESS, log
evidence) and corrected (`infer --refine`); the report gives the share of raw draws above
ArviZ's k-hat threshold, the share of corrected posteriors trusted and by which method, how
far the correction moved each parameter (in raw posterior sds), a k-hat histogram and
raw-vs-corrected overlays of the participants with the highest k-hat.
"""

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..amortized.checkpoint import InferenceError
from ..amortized.misspecification import ALPHA
from ..amortized.posterior import AmortizedPosterior
from ..correction.importance import khat_threshold
from ..data.study import Study
from ..model.simulator import simulate

OVERLAID = 4  # participants in the overlay figure: those with the highest k-hat


def fresh_simulations(posterior: AmortizedPosterior, participants: int, seed: int, design=None) -> Study:
    """Participants simulated from the network's priors and design (or `design`, a TaskDesign;
    a general network needs one): data it was trained for."""
    if design is None and posterior.serves_family:
        raise InferenceError("this network serves a family of designs: name the design to simulate (--design)")
    params = posterior.config.priors.sample(np.random.default_rng(seed), participants)
    return simulate(params, posterior.design if design is None else design, seed=seed + 1)


def check_posteriors(posterior: AmortizedPosterior, study: Study, out: str | Path, draws: int = 1000,
                     seed: int = 0, design=None, replicates: int = 0) -> dict:
    """Check and correct every participant's posterior; write check.csv, check.json,
    khat_histogram.png and refined_overlays.png to `out`.

    With `replicates`, also the misspecification check
    (:meth:`~amortized_rlddm.amortized.posterior.AmortizedPosterior.misspecification`, that many
    simulated participants per participant): per participant ``unlike_training`` and its
    ``p_unlike_training`` in check.csv, and in the summary the study's discrepancy, its p-value
    and how the flags and the k-hat failures overlap (``misspecification``).

    Returns the summary written to check.json: participants, draws, the k-hat threshold, the
    share of participants whose raw draws are above it, k-hat quantiles, per parameter the
    median |corrected mean - raw mean| / raw sd and median corrected sd / raw sd, the share of
    corrected posteriors trusted, the count per method, the untrusted with their reason, the
    median exact posterior evaluations and the correction's time. `design`: the study's
    settings (a TaskDesign; default: the network's).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    raw = posterior.infer(study, draws=draws, seed=seed, check=True, design=design)
    start = time.perf_counter()
    refined = posterior.infer(study, draws=draws, seed=seed, refine=True, design=design)
    seconds = time.perf_counter() - start
    checks, corrected = raw["importance"].to_dataset(), refined["importance"].to_dataset()
    table = pd.DataFrame({"participant": checks["participant"].values, "khat": checks["khat"].values,
                          "ess": checks["ess"].values, "above_threshold": checks["above_threshold"].values,
                          "log_evidence": checks["log_evidence"].values,
                          "log_evidence_se": checks["log_evidence_se"].values,
                          **{f"refined_{name}": corrected[name].values
                             for name in ("trusted", "method", "reason", "khat", "ess", "rounds", "evaluations")}})
    shifts, ratios = {}, {}
    for name in posterior.parameter_names:
        before = raw["posterior"][name].values[0].T  # (participants, draws)
        after = refined["posterior"][name].values[0].T
        sd = before.std(axis=1, ddof=1)
        table[f"{name}_shift"] = (after.mean(axis=1) - before.mean(axis=1)) / sd
        table[f"{name}_sd_ratio"] = after.std(axis=1, ddof=1) / sd
        shifts[name] = float(np.median(np.abs(table[f"{name}_shift"])))
        ratios[name] = float(np.median(table[f"{name}_sd_ratio"]))
    if replicates:
        check = posterior.misspecification(study, design=design, replicates=replicates, seed=seed)
        table["p_unlike_training"] = check.participants["p_value"].values
        table["unlike_training"] = check.participants["unlike_training"].values
    table.to_csv(out / "check.csv", index=False)
    threshold = khat_threshold(draws)
    summary = {"participants": int(study.n_participants), "draws": int(draws), "khat_threshold": threshold,
               "share_above_threshold": float(table["above_threshold"].mean()),
               "khat_quantiles": {q: float(np.quantile(table["khat"], float(q))) for q in ("0.5", "0.9", "0.99")},
               "refined_shift_in_raw_sd": shifts, "refined_sd_ratio": ratios,
               "trusted_share": float(table["refined_trusted"].mean()),
               "methods": {str(m): int(c) for m, c in zip(*np.unique(table["refined_method"], return_counts=True))},
               "untrusted": {str(p): str(r) for p, r in zip(table.loc[~table["refined_trusted"], "participant"],
                                                            table.loc[~table["refined_trusted"], "refined_reason"])},
               "evaluations_median": float(table["refined_evaluations"].median()),
               "seconds_corrected": seconds}
    if replicates:
        flagged, failed = table["unlike_training"], table["above_threshold"]
        summary["misspecification"] = {
            "replicates": replicates, "alpha": ALPHA, "unlike_training": int(flagged.sum()),
            "study_mmd": check.study_mmd, "study_p_value": check.study_p_value,
            "study_unlike_training": check.study_flagged, "above_threshold": int(failed.sum()),
            "above_threshold_and_unlike_training": int((failed & flagged).sum()),
            "above_threshold_like_training": int((failed & ~flagged).sum())}
    (out / "check.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_khat_histogram(table["khat"].to_numpy(), threshold, out / "khat_histogram.png")
    worst = np.argsort(-table["khat"].to_numpy())[:OVERLAID]
    plot_refined_overlays(raw, refined, worst, out / "refined_overlays.png")
    return summary


def plot_khat_histogram(khat, threshold, path):
    """Histogram of the participants' k-hat with ArviZ's threshold."""
    fig = Figure(figsize=(5.5, 3.4))
    ax = fig.subplots()
    finite = khat[np.isfinite(khat)]
    ax.hist(finite, bins=40, color="C0", alpha=0.8)
    ax.axvline(threshold, color="C3", ls="--", label=f"threshold {threshold:.2f}")
    above = np.mean(khat > threshold)
    ax.set_title(f"Pareto k-hat of {khat.size} participants: {100 * above:.1f}% above")
    ax.set_xlabel("k-hat (PSIS of exact posterior over amortized draws)")
    ax.set_ylabel("participants")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_refined_overlays(raw, refined, participants, path):
    """Raw and corrected marginal posteriors of some participants, one row each."""
    names = list(raw["posterior"].data_vars)
    fig = Figure(figsize=(2.6 * len(names), 2.1 * len(participants)))
    axes = fig.subplots(len(participants), len(names), squeeze=False)
    khat = raw["importance"]["khat"].values
    ids = raw["posterior"]["participant"].values
    for row, i in zip(axes, participants):
        for ax, name in zip(row, names):
            before = raw["posterior"][name].values[0, :, i]
            after = refined["posterior"][name].values[0, :, i]
            bins = np.histogram_bin_edges(np.concatenate([before, after]), bins=30)
            ax.hist(before, bins=bins, density=True, color="grey", alpha=0.5, label="amortized")
            ax.hist(after, bins=bins, density=True, histtype="step", color="C1", lw=1.5, label="corrected")
            ax.set_yticks([])
            ax.set_title(f"{name}, participant {ids[i]} (k-hat {khat[i]:.2f})", fontsize=8)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def trusted_table(root: str | Path) -> str:
    """The markdown table of the correction on fresh simulations: one row per network and
    design from the check.json files under root/<network>/<design>/."""
    lines = ["| network | design | participants | raw k-hat above the threshold | trusted after the correction | "
             "by method | median exact evaluations | seconds |", "|---|---|---|---|---|---|---|---|"]
    for path in sorted(Path(root).glob("*/*/check.json")):
        summary = json.loads(path.read_text())
        methods = ", ".join(f"{method} {count}" for method, count in summary["methods"].items())
        lines.append(f"| {path.parent.parent.name} | {path.parent.name} | {summary['participants']} | "
                     f"{100 * summary['share_above_threshold']:.1f}% | {100 * summary['trusted_share']:.1f}% | "
                     f"{methods} | {summary['evaluations_median']:.0f} | {summary['seconds_corrected']:.0f} |")
    return "\n".join(lines)


def misspecification_table(root: str | Path) -> str:
    """The markdown table of the misspecification check beside the k-hat: one row per check.json
    with a misspecification entry under root/<data>_<network>/."""
    lines = ["| data, network | participants | raw k-hat above the threshold | of them unlike the training data | "
             "participants unlike the training data | the study: MMD, p-value |", "|---|---|---|---|---|---|"]
    for path in sorted(Path(root).glob("*/check.json")):
        summary = json.loads(path.read_text())
        m = summary.get("misspecification")
        if m is None:
            continue
        lines.append(f"| {path.parent.name} | {summary['participants']} | {m['above_threshold']} | "
                     f"{m['above_threshold_and_unlike_training']} | {m['unlike_training']} | "
                     f"{m['study_mmd']:.3f}, {m['study_p_value']:.3f} |")
    return "\n".join(lines)

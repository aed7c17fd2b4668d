"""What adapting a network to a study does (`rlddm validate adapt`).

On one study: every participant's exact posterior (the corrected draws of the network before
adaptation) is the reference. The raw network before adaptation, after adapting on the whole
study, and after adapting on half of it (the other half held out) is scored per parameter by
the median absolute difference of the posterior means in exact posterior sds and the median
ratio of the sds, and by how many participants' PSIS k-hat lies above the threshold. Then
both networks' calibration on fresh simulations of each named design: adaptation should
leave it where it was. `calibration_change` measures that change on the same simulations with
its standard error (a bootstrap over the datasets): on 1,000 datasets the check's own noise is
about as large as the 0.01 it is held to.
"""

import json
import shutil
from pathlib import Path

import numpy as np

from ..amortized.adaptation import adapt
from ..correction.importance import khat_threshold
from ..model.designs import NAMED_DESIGNS
from .diagnostics import compute_metrics, simulate_and_infer

__all__ = ["VALIDATION_DESIGNS", "adaptation_report", "adaptation_table", "calibration_change"]

# the designs the general networks are validated on (docs/validation.md, reports/general-dual)
VALIDATION_DESIGNS = ("seed", "hddm_pst", "gershman", "stable300", "deadline")
# the central intervals BayesFlow's calibration_error checks (its defaults: 20 levels, 0.005 to 0.995)
CALIBRATION_LEVELS = np.linspace(0.005, 0.995, 20)


def raw_scores(posterior, study, design, reference, participants, draws, seed) -> dict:
    """The raw network's errors on `participants` (indices) against the reference draws
    (name -> (participants, draws)): per parameter the median |mean difference| / reference
    sd and the median sd ratio, and the k-hat failures."""
    picked = study.select(participants)
    tree = posterior.infer(picked, draws=draws, seed=seed, design=design, check=True)
    khat = tree["importance"]["khat"].values
    scores = {"participants": int(len(participants)),
              "above_threshold": int((khat > khat_threshold(draws)).sum()),
              "median_khat": float(np.median(khat)), "parameters": {}}
    for name in posterior.parameter_names:
        raw = tree["posterior"][name].values[0]
        exact = reference[name][:, participants]
        error = np.abs(raw.mean(0) - exact.mean(0)) / exact.std(0)
        scores["parameters"][name] = {"error": float(np.median(error)),
                                      "sd_ratio": float(np.median(raw.std(0) / exact.std(0)))}
    return scores


def calibration_errors(posterior, designs, datasets, seed) -> dict:
    """Per named design, each parameter's calibration error on `datasets` fresh simulations (the
    same simulations for every network given the same seed)."""
    errors = {}
    for name in designs:
        truth, samples, _ = simulate_and_infer(posterior, datasets, seed, draws=500, design=NAMED_DESIGNS[name])
        errors[name] = {p: m["calibration_error"] for p, m in compute_metrics(samples, truth).items()}
    return errors


def interval_hits(draws, truth) -> np.ndarray:
    """Whether each truth lies in its posterior's central interval at each of `CALIBRATION_LEVELS`
    (BayesFlow's calibration_error rule): draws (datasets, draws), truth (datasets,) ->
    (levels, datasets) booleans."""
    tails = (1 - CALIBRATION_LEVELS) / 2
    lower, upper = np.quantile(draws, tails, axis=1), np.quantile(draws, 1 - tails, axis=1)
    return (lower <= truth) & (upper >= truth)


def _calibration_error(hits):
    """BayesFlow's calibration error from interval hits (levels, ..., datasets): the median over
    the levels of |share of hits - level|."""
    shares = hits.mean(-1)
    return np.median(np.abs(shares - CALIBRATION_LEVELS.reshape((-1,) + (1,) * (shares.ndim - 1))), axis=0)


def paired_calibration_change(hits_before, hits_after, bootstraps=500, seed=0) -> dict:
    """The change of the calibration error between two posteriors of the same datasets (their
    `interval_hits`) and its standard error over `bootstraps` resamples of the datasets, the same
    resamples for both."""
    n = hits_before.shape[1]
    resamples = np.random.default_rng(seed).integers(0, n, size=(bootstraps, n))
    before, after = float(_calibration_error(hits_before)), float(_calibration_error(hits_after))
    changes = _calibration_error(hits_after[:, resamples]) - _calibration_error(hits_before[:, resamples])
    return {"before": before, "after": after, "change": after - before, "se": float(changes.std())}


def calibration_change(before, after, designs=VALIDATION_DESIGNS, datasets=4000, seed=0, draws=500,
                       bootstraps=500) -> dict:
    """Each parameter's calibration error of two networks on the same fresh simulations of each
    named design, the change and its bootstrap standard error.

    Parameters
    ----------
    before, after : AmortizedPosterior
        The networks compared (e.g. a network and its adapted copy); the same priors.
    designs : sequence of str
        Named designs (`NAMED_DESIGNS`) to simulate.
    datasets, draws : int
        Simulated datasets per design and posterior draws per dataset.
    seed : int
        Seeds the simulations (the same for both networks) and the resamples.
    bootstraps : int
        Resamples of the datasets for the standard error.

    Returns
    -------
    dict
        design -> parameter -> {"before", "after", "change", "se"}.
    """
    for key, value in (("datasets", datasets), ("draws", draws), ("bootstraps", bootstraps)):
        if int(value) != value or value < 2:
            raise ValueError(f"calibration_change: {key} must be an integer >= 2, got {value!r}")
    result = {}
    for name in designs:
        hits = []
        for posterior in (before, after):
            truth, samples, _ = simulate_and_infer(posterior, datasets, seed, draws=draws, design=NAMED_DESIGNS[name])
            hits.append({p: interval_hits(samples[p], truth[p]) for p in truth})
        result[name] = {p: paired_calibration_change(hits[0][p], hits[1][p], bootstraps, seed) for p in hits[0]}
    return result


def adaptation_report(checkpoint, study, design, out, settings=None, draws=1000, seed=0, calibration_datasets=1000,
                      designs=None, source=None, progress=False) -> dict:
    """Adapt `checkpoint` on the whole study and on half of it; score the raw networks and their
    calibration; write summary.json and report.md to `out` (the adapted checkpoints go to
    out/checkpoints, replaced on a rebuild and not kept in git). Returns the summary."""
    from ..amortized.posterior import AmortizedPosterior

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    original = AmortizedPosterior.load(checkpoint)
    tree = original.infer(study, draws=draws, seed=seed, design=design, refine=True)
    reference = {name: tree["posterior"][name].values[0] for name in original.parameter_names}
    everyone = np.arange(study.n_participants)
    summary = {"checkpoint": str(checkpoint), "data": source, "participants": int(study.n_participants),
               "draws": draws, "khat_threshold": float(khat_threshold(draws)),
               "untrusted_reference": int((~tree["importance"]["trusted"].values).sum()),
               "before": raw_scores(original, study, design, reference, everyone, draws, seed + 1)}
    runs = {}
    for run, held_out in (("whole_study", 0.0), ("half_study", 0.5)):
        folder = out / "checkpoints" / run
        if folder.exists():  # a previous build's: the report's own scratch
            shutil.rmtree(folder)
        state = adapt(checkpoint, study, design, folder, settings={**(settings or {}), "held_out": held_out},
                      data_source=source, progress=progress)
        held = np.flatnonzero(np.isin(study.participant.astype(str), state["held_out"]))
        adapted = np.setdiff1d(everyone, held)
        posterior = AmortizedPosterior.load(folder)
        runs[run] = {"seconds": state["seconds"], "best_epoch": state["best_epoch"], "epochs": state["epochs_done"],
                     "settings": state["settings"],
                     "adapted": raw_scores(posterior, study, design, reference, adapted, draws, seed + 1)}
        if held.size:
            runs[run]["held_out"] = raw_scores(posterior, study, design, reference, held, draws, seed + 1)
            runs[run]["held_out_before"] = raw_scores(original, study, design, reference, held, draws, seed + 1)
            runs[run]["adapted_before"] = raw_scores(original, study, design, reference, adapted, draws, seed + 1)
    summary["runs"] = runs
    designs = list(designs or VALIDATION_DESIGNS)
    if original.serves_family:
        before = calibration_errors(original, designs, calibration_datasets, seed)
        after = calibration_errors(AmortizedPosterior.load(out / "checkpoints" / "whole_study"), designs,
                                   calibration_datasets, seed)
        summary["calibration"] = {"datasets": calibration_datasets, "before": before, "after": after,
                                  "max_change": float(max(abs(after[d][p] - before[d][p])
                                                          for d in before for p in before[d]))}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "report.md").write_text(_markdown(summary))
    return summary


def _scores_row(label, scores):
    cells = " | ".join(f"{s['error']:.2f} / {s['sd_ratio']:.2f}" for s in scores["parameters"].values())
    return (f"| {label} | {scores['participants']} | {scores['above_threshold']} "
            f"({scores['median_khat']:.2f}) | {cells} |")


def _markdown(summary) -> str:
    names = list(summary["before"]["parameters"])
    runs = summary["runs"]
    lines = [f"# Adapting `{summary['checkpoint']}` to {summary['data'] or 'a study'}", "",
             f"{summary['participants']} participants; raw draws ({summary['draws']} per participant) against each "
             f"participant's exact posterior (the corrected draws; {summary['untrusted_reference']} not trusted). Per "
             "parameter: median |raw mean - exact mean| / exact sd, and median raw sd / exact sd. k-hat: participants "
             f"above the threshold {summary['khat_threshold']:.2f} (median k-hat).", "",
             "| network | participants | k-hat above (median) | " + " | ".join(names) + " |",
             "|---|---|---|" + "---|" * len(names),
             _scores_row("before adaptation", summary["before"]),
             _scores_row("adapted on the whole study", runs["whole_study"]["adapted"])]
    half = runs["half_study"]
    lines += [_scores_row("before, the half adapted on", half["adapted_before"]),
              _scores_row("adapted on half: that half", half["adapted"]),
              _scores_row("before, the half held out", half["held_out_before"]),
              _scores_row("adapted on half: the half held out", half["held_out"]), ""]
    lines.append("Adaptation: " + "; ".join(
        f"{run.replace('_', ' ')} {r['seconds'] / 60:.1f} min on the 2 cores, kept epoch {r['best_epoch']} of "
        f"{r['epochs']}" for run, r in runs.items()) + ".")
    if "calibration" in summary:
        c = summary["calibration"]
        lines += ["", f"Calibration error on {c['datasets']} fresh simulations per design, before -> after adapting "
                      f"on the whole study (largest change {c['max_change']:.3f}):", "",
                  "| design | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for design, before in c["before"].items():
            lines.append(f"| {design} | " + " | ".join(f"{before[p]:.3f} -> {c['after'][design][p]:.3f}"
                                                       for p in names) + " |")
    return "\n".join(lines) + "\n"


def adaptation_table(root: str | Path) -> str:
    """The markdown table of the adaptation reports under root/<name>/summary.json: per report,
    the raw k-hat failures and the largest per-parameter error and sd ratio range before, after
    adapting on the whole study, and on the held-out half; the time; the calibration errors'
    largest rise and largest fall, and how many (parameter, design) errors rose by 0.01 or less."""
    lines = ["| data, network | participants | raw k-hat above: before / adapted / held-out half (before) | "
             "largest median error (exact sds): before / adapted / held-out half | sd ratios adapted | "
             "minutes (whole study) | calibration errors: largest rise / fall (rises <= 0.01) |",
             "|---|---|---|---|---|---|---|"]
    for path in sorted(Path(root).glob("*/summary.json")):
        s = json.loads(path.read_text())
        whole, half = s["runs"]["whole_study"], s["runs"]["half_study"]

        def worst(scores):
            return max(p["error"] for p in scores["parameters"].values())

        ratios = [p["sd_ratio"] for p in whole["adapted"]["parameters"].values()]
        calibration = "-"
        if "calibration" in s:
            c = s["calibration"]
            rises = [c["after"][d][p] - c["before"][d][p] for d in c["before"] for p in c["before"][d]]
            calibration = (f"{max(max(rises), 0.0):.3f} / {max(-min(rises), 0.0):.3f} "
                           f"({sum(x <= 0.01 for x in rises)} of {len(rises)})")
        lines.append(
            f"| {path.parent.name} | {s['participants']} | {s['before']['above_threshold']} / "
            f"{whole['adapted']['above_threshold']} / {half['held_out']['above_threshold']} "
            f"({half['held_out_before']['above_threshold']}) | {worst(s['before']):.2f} / {worst(whole['adapted']):.2f}"
            f" / {worst(half['held_out']):.2f} | {min(ratios):.2f}-{max(ratios):.2f} | {whole['seconds'] / 60:.1f} "
            f"| {calibration} |")
    return "\n".join(lines)

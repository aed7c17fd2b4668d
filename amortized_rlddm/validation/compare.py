"""Side by side: the amortized posterior and the exact-likelihood NUTS posterior on the same
datasets (`rlddm compare`).

Per dataset and parameter: means, sds, 5/50/95% quantiles of both, the 1-Wasserstein
distance, the standardised mean difference (amortized - NUTS) / NUTS sd, the sd ratio and
the tail masses (the share of amortized draws beyond NUTS's 1% and 99% quantiles); over
datasets: the medians of the first three, the means of the tail masses, each method's
recovery correlation against the truth and 90% interval coverage, and the wall time per
participant of each method; for the learning rate(s), the agreement within groups of
datasets ordered by how informative the exact posterior is.
"""

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from ..data.io import read_study
from ..exact.model import ExactPosterior, posterior_tree
from ..model.designs import named_design
from ..model.simulator import simulate

OVERLAY_DATASETS = 4
TAIL_LEVEL = 0.01  # tail mass: the share of amortized draws beyond NUTS's 1% / 99% quantiles


def _draws(tree, name):
    """(participants, all draws) of one parameter of a posterior DataTree."""
    values = tree["posterior"][name].transpose("participant", "chain", "draw").values
    return values.reshape(values.shape[0], -1)


def per_dataset_table(amortized, exact, names, participants):
    """Per participant (those named, by id) and parameter: both posteriors' summaries and
    their agreement."""
    rows = []
    for name in names:
        a, e = _draws(amortized, name), _draws(exact, name)
        rows_a = {str(p): k for k, p in enumerate(amortized["posterior"]["participant"].values)}
        rows_e = {str(p): k for k, p in enumerate(exact["posterior"]["participant"].values)}
        for pid in participants:
            i, j = rows_a[pid], rows_e[pid]
            e_j = e[j]
            qa, qe = np.quantile(a[i], [0.05, 0.5, 0.95]), np.quantile(e_j, [0.05, 0.5, 0.95])
            sd_e = e_j.std(ddof=1)
            rows.append({"participant": pid, "parameter": name,
                         "mean_amortized": a[i].mean(), "mean_nuts": e_j.mean(),
                         "sd_amortized": a[i].std(ddof=1), "sd_nuts": sd_e,
                         **{f"q{int(q * 100):02d}_amortized": v for q, v in zip((0.05, 0.5, 0.95), qa)},
                         **{f"q{int(q * 100):02d}_nuts": v for q, v in zip((0.05, 0.5, 0.95), qe)},
                         "wasserstein": stats.wasserstein_distance(a[i], e_j),
                         "std_mean_difference": (a[i].mean() - e_j.mean()) / sd_e,
                         "sd_ratio": a[i].std(ddof=1) / sd_e,
                         **tail_masses(a[i], e_j)})
    return pd.DataFrame(rows)


def tail_masses(amortized, nuts, level=TAIL_LEVEL):
    """The share of amortized draws below NUTS's `level` quantile and above its 1 - `level`
    one: both equal `level` when the tails agree, more where the amortized tails are heavier.
    Calibration over many datasets can hide such tails while the bulk is right."""
    lo, hi = np.quantile(nuts, [level, 1 - level])
    return {"tail_below_nuts_q01": float(np.mean(amortized < lo)),
            "tail_above_nuts_q99": float(np.mean(amortized > hi))}


BOOTSTRAP_RESAMPLES = 2000


def paired_correlation_gap(amortized, nuts, true, resamples=BOOTSTRAP_RESAMPLES, seed=0):
    """r(amortized means, truth) - r(NUTS means, truth) and its bootstrap standard error,
    resampling datasets with both methods kept together (their errors are correlated, so
    the gap is far better determined than either r). Resamples that repeat one dataset
    throughout (r undefined; only likely with a handful of datasets) are skipped."""
    def gap(idx):
        return np.corrcoef(amortized[idx], true[idx])[0, 1] - np.corrcoef(nuts[idx], true[idx])[0, 1]

    n = len(true)
    idx = np.random.default_rng(seed).integers(0, n, (resamples, n))
    with np.errstate(invalid="ignore", divide="ignore"):
        gaps = np.array([gap(i) for i in idx])
    return float(gap(np.arange(n))), float(np.nanstd(gaps, ddof=1))


def summary_table(table, truth=None):
    """One row per parameter: agreement medians and, with the truth, recovery of each method
    and the recovery gap between them with its paired-bootstrap standard error."""
    rows = []
    for name, part in table.groupby("parameter", sort=False):
        row = {"parameter": name, "datasets": len(part),
               "median_abs_std_mean_difference": float(np.median(np.abs(part["std_mean_difference"]))),
               "median_sd_ratio": float(np.median(part["sd_ratio"])),
               "median_wasserstein_over_nuts_sd": float(np.median(part["wasserstein"] / part["sd_nuts"])),
               "mean_tail_below_nuts_q01": float(part["tail_below_nuts_q01"].mean()),
               "mean_tail_above_nuts_q99": float(part["tail_above_nuts_q99"].mean())}
        if truth is not None:
            true = truth.set_index("participant").loc[part["participant"], name].to_numpy()
            for method in ("amortized", "nuts"):
                row[f"r_{method}"] = float(np.corrcoef(part[f"mean_{method}"], true)[0, 1])
                inside = (part[f"q05_{method}"] <= true) & (true <= part[f"q95_{method}"])
                row[f"coverage90_{method}"] = float(inside.mean())
            row["r_gap"], row["r_gap_se"] = paired_correlation_gap(
                part["mean_amortized"].to_numpy(), part["mean_nuts"].to_numpy(), true)
        rows.append(row)
    return pd.DataFrame(rows)


def plot_overlays(amortized, exact, names, participants, path, truth=None):
    shown = participants[:OVERLAY_DATASETS]
    fig = Figure(figsize=(2.6 * len(names), 2.0 * len(shown)))
    axes = fig.subplots(len(shown), len(names), squeeze=False)
    for r in range(len(shown)):
        for c, name in enumerate(names):
            ax = axes[r][c]
            a, e = _draws(amortized, name)[r], _draws(exact, name)[r]
            bins = np.linspace(min(a.min(), e.min()), max(a.max(), e.max()), 40)
            ax.hist(e, bins, density=True, alpha=0.5, label="NUTS (exact)")
            ax.hist(a, bins, density=True, histtype="step", lw=1.5, label="amortized")
            if truth is not None:
                ax.axvline(truth.set_index("participant").loc[shown[r], name], color="k", lw=1)
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name)
        axes[r][0].set_ylabel(f"dataset {shown[r]}")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def compare(posterior, out_dir, n_datasets=50, seed=0, data=None, convention="rlddm", draws=1000,
            chains=4, draws_per_chain=1000, tune=1000, nuts_backend="nutpie", n_trials=None, progress=False,
            gate=True, design=None, nuts_store=None):
    """Run both methods on shared datasets (simulated from the network's priors and the
    config's design, with n_trials trials each if given, or the participants of `data`) and
    write the comparison to out_dir. draws: amortized draws per participant; NUTS runs
    `chains` x `draws_per_chain` after `tune` tuning steps, retried once with twice the tuning
    where a fit fails the convergence gate; with `gate`, a fit that still fails is left out
    of the agreement figures and named in the report. progress: say what runs, with a
    progress bar over the NUTS fits. The amortized draws are compared raw and refined
    (resampled by their PSIS weights). design: a name of NAMED_DESIGNS or a TaskDesign, to
    simulate from and fit with its settings (default: the network's own; a general network
    needs one). nuts_store: a folder keeping the NUTS fits, reused when the same datasets are
    fitted with the same settings again (another network's check, an interrupted run)."""
    config = posterior.config
    if n_trials is not None and data is not None:
        raise ValueError("a trial count applies to simulated datasets only, not to a data file")
    design = named_design(design) if isinstance(design, str) else design
    if design is None:
        design = posterior.design_with_trials(n_trials) if n_trials is not None or posterior.serves_family \
            else config.design
    elif n_trials is not None:
        design = replace(design, n_trials=int(n_trials))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    truth = None
    if data is None:
        rng = np.random.default_rng(seed)
        params = config.priors.sample(rng, n_datasets)
        study = simulate(params, design, seed=int(rng.integers(2**63)))
        participants = [str(p) for p in study.participant]
        truth = pd.DataFrame({"participant": participants, **params})
    else:
        study = read_study(data, convention=convention)
        participants = [str(p) for p in study.participant]
    posterior.infer(study, draws=draws, seed=seed, design=design)  # warm-up (compilation)
    start = time.perf_counter()
    amortized = posterior.infer(study, draws=draws, seed=seed, design=design)
    amortized_s = (time.perf_counter() - start) / study.n_participants

    exact = ExactPosterior(config.priors, config.model, design.likelihood.for_study(study),
                           max_trials=study.max_trials, n_conditions=study.n_conditions, backend=nuts_backend)
    if progress:
        print(f"amortized: {study.n_participants} participants in {amortized_s * study.n_participants:.2f} s; "
              f"compiling the exact model ({nuts_backend}, once)", file=sys.stderr, flush=True)
    start = time.perf_counter()
    exact.compile()
    compile_s = time.perf_counter() - start
    fits = exact.fit(study, draws=draws_per_chain, tune=tune, chains=chains, seed=seed, progress=progress,
                     retry=True, store=nuts_store)
    refined = posterior.infer(study, draws=draws, seed=seed, refine=True, design=design)

    nuts = posterior_tree(fits)
    nuts_s = float(np.mean([f.diagnostics["wall_time_s"] for f in fits]))
    diagnostics = pd.DataFrame([{"participant": f.participant, **f.diagnostics} for f in fits])
    # a NUTS fit that fails the convergence gate after its retry is no reference: left out, counted
    kept = [p for p, ok in zip(participants, diagnostics["converged"]) if ok or not gate]
    if not kept:
        raise RuntimeError(f"no NUTS fit passed the convergence gate ({len(participants)} tried); give NUTS more "
                           "tuning steps or draws (--tune, --draws-per-chain)")
    names = list(config.parameter_names)
    table = per_dataset_table(amortized, nuts, names, kept)
    summary = summary_table(table, None if truth is None else truth[truth["participant"].isin(kept)])
    refined_table = per_dataset_table(refined, nuts, names, kept)
    refined_summary = summary_table(refined_table, None if truth is None else truth[truth["participant"].isin(kept)])
    table.to_csv(out / "per_dataset.csv", index=False)
    summary.to_csv(out / "summary.csv", index=False)
    refined_table.to_csv(out / "per_dataset_refined.csv", index=False)
    refined_summary.to_csv(out / "summary_refined.csv", index=False)
    diagnostics.to_csv(out / "nuts_diagnostics.csv", index=False)
    if truth is not None:
        truth.to_csv(out / "truth.csv", index=False)
    plot_overlays(amortized, nuts, names, participants, out / "overlays.png", truth)
    timing = {"amortized_s_per_participant": amortized_s, "nuts_s_per_participant": nuts_s,
              "nuts_compile_s": compile_s, "speedup": nuts_s / amortized_s, "nuts_backend": nuts_backend,
              "nuts_chains": chains, "nuts_draws_per_chain": draws_per_chain, "nuts_tune": tune,
              "amortized_draws": draws, "datasets": study.n_participants,
              "trials": [int(study.n_trials.min()), int(study.n_trials.max())],
              "nuts_max_rhat": float(diagnostics["rhat_max"].max()),
              "nuts_min_ess_bulk": float(diagnostics["ess_bulk_min"].min()),
              "nuts_divergences": int(diagnostics["divergences"].sum()),
              "nuts_retried": int((diagnostics["attempts"] > 1).sum()),
              "nuts_failed": [str(p) for p in participants if p not in kept]}
    checks = amortized["importance"]
    importance = {"khat_median": float(checks["khat"].median()), "khat_threshold": checks.attrs["khat_threshold"],
                  "share_above_threshold": float(checks["above_threshold"].mean())}
    rates = [n for n in names if n.startswith("alpha")]
    by_informativeness = pd.concat([agreement_by_informativeness(table, n) for n in rates]) if rates else None
    if by_informativeness is not None:
        by_informativeness.to_csv(out / "agreement_by_informativeness.csv", index=False)
    (out / "comparison.json").write_text(json.dumps({"timing": timing, "importance": importance,
                                                     "summary": summary.to_dict(orient="records"),
                                                     "summary_refined": refined_summary.to_dict(orient="records")},
                                                    indent=1))
    (out / "report.md").write_text(report_markdown(summary, timing, posterior.source, by_informativeness,
                                                   refined_summary, importance))
    return summary, timing


def agreement_by_informativeness(table, name, groups=3):
    """Agreement for one parameter within groups of datasets of equal size, ordered by the
    NUTS posterior sd (the most informative datasets first): shows whether the amortized
    posterior falls short where the data say most. 'spread' is the sd over datasets of each
    method's posterior means; an amortized spread below the NUTS one means shrinkage."""
    part = table[table["parameter"] == name].sort_values("sd_nuts")
    groups = min(groups, len(part))
    rows = []
    for k, rows_of_group in enumerate(np.array_split(np.arange(len(part)), groups)):
        chunk = part.iloc[rows_of_group]
        rows.append({"parameter": name, "group": f"{k + 1} of {groups}", "datasets": len(chunk),
                     "median_sd_nuts": float(chunk["sd_nuts"].median()),
                     "median_abs_std_mean_difference": float(chunk["std_mean_difference"].abs().median()),
                     "median_sd_ratio": float(chunk["sd_ratio"].median()),
                     "spread_of_means_amortized": float(chunk["mean_amortized"].std(ddof=1)),
                     "spread_of_means_nuts": float(chunk["mean_nuts"].std(ddof=1))})
    return pd.DataFrame(rows)


def _trial_range(timing):
    if "trials" not in timing:  # comparisons written before the trial count was recorded
        return ""
    lo, hi = timing["trials"]
    return f" ({lo} trials each)" if lo == hi else f" ({lo}-{hi} trials)"


def _rows(frame, cols):
    return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)] + [
        "| " + " | ".join(f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in cols) + " |"
        for _, row in frame.iterrows()]


def report_markdown(summary, timing, source, by_informativeness=None, refined=None, importance=None):
    cols = [c for c in summary.columns if c != "datasets"]
    failed = timing.get("nuts_failed", [])
    lines = [f"# Amortized (`{source}`) vs exact NUTS posterior", "",
             f"{timing['datasets']} shared datasets{_trial_range(timing)}; NUTS: {timing['nuts_backend']}, "
             f"{timing['nuts_chains']} "
             f"chains x {timing['nuts_draws_per_chain']} draws after {timing['nuts_tune']} tuning steps "
             f"(max r-hat {timing['nuts_max_rhat']:.3f}, min bulk ESS {timing['nuts_min_ess_bulk']:.0f}, "
             f"{timing['nuts_divergences']} divergences in all; {timing.get('nuts_retried', 0)} fit(s) retried with "
             f"twice the tuning; left out as failing the convergence gate: {', '.join(failed) or 'none'}); "
             f"amortized: {timing['amortized_draws']} draws.", "", "Raw amortized draws:", ""]
    lines += _rows(summary, cols)
    if refined is not None:
        lines += ["", "Refined: the amortized draws resampled by their PSIS weights against the exact likelihood "
                  f"(median k-hat {importance['khat_median']:.2f}; above the threshold "
                  f"{importance['khat_threshold']:.2f}: {100 * importance['share_above_threshold']:.0f}% of the "
                  "datasets):", ""]
        lines += _rows(refined, [c for c in refined.columns if c != "datasets"])
    lines += ["", "std mean difference = (amortized mean - NUTS mean) / NUTS sd; sd ratio = amortized sd / "
              "NUTS sd; tail below q01 / above q99 = share of amortized draws below NUTS's 1% quantile / "
              "above its 99% one (0.010 when the tails agree, more when the amortized tails are heavier); "
              "r = correlation of the posterior mean with the true value; coverage90 = share of "
              "datasets whose central 90% interval holds the true value; r_gap = r_amortized - r_nuts, "
              f"r_gap_se its standard error ({BOOTSTRAP_RESAMPLES} paired bootstrap resamples of the "
              "datasets).", "",
              f"Wall time per participant: amortized {timing['amortized_s_per_participant'] * 1000:.1f} ms, "
              f"NUTS {timing['nuts_s_per_participant']:.1f} s (plus {timing['nuts_compile_s']:.0f} s compiling "
              f"once): amortized is {timing['speedup']:.0f}x faster."]
    if by_informativeness is not None and len(by_informativeness):
        cols = list(by_informativeness.columns)
        lines += ["", "Learning-rate agreement by how informative the data are (groups of datasets ordered by "
                  "the NUTS posterior sd, most informative first; spread = sd over datasets of the "
                  "posterior means):", ""]
        lines += _rows(by_informativeness, cols)
    return "\n".join(lines) + "\n"


def headline_table(diagnostics_dir, compare_dir):
    """The README's headline table (`rlddm validate headline`): per parameter, recovery and 90%
    coverage of both methods and their agreement on the shared datasets of `rlddm compare`,
    the amortized calibration over the many datasets of `rlddm diagnose`; then the time per
    participant of each method."""
    from .diagnostics import ecdf_cell  # diagnostics loads BayesFlow; only this table needs it

    metrics = json.loads((Path(diagnostics_dir) / "metrics.json").read_text())
    comparison = json.loads((Path(compare_dir) / "comparison.json").read_text())
    timing = comparison["timing"]
    n = timing["datasets"]
    refined = {row["parameter"]: row for row in comparison.get("summary_refined", [])}
    extra = " | median abs(mean diff.) / NUTS sd, refined | median sd ratio, refined" if refined else ""
    lines = [
        f"| parameter | r(mean, truth) amortized / NUTS ({n} shared datasets) | 90% coverage amortized / NUTS "
        f"| median abs(mean diff.) / NUTS sd | median sd ratio amortized / NUTS{extra} "
        f"| calibration error, amortized ({metrics['datasets']} datasets) | ECDF in 95% band |",
        "|---|---|---|---|---|" + ("---|---|" if refined else "") + "---|---|"]
    for row in comparison["summary"]:
        name = row["parameter"]
        diag = metrics["parameters"][name]
        cells = (f" | {refined[name]['median_abs_std_mean_difference']:.3f} | {refined[name]['median_sd_ratio']:.3f}"
                 if refined else "")
        lines.append(
            f"| {name} | {row['r_amortized']:.3f} / {row['r_nuts']:.3f} "
            f"| {row['coverage90_amortized']:.2f} / {row['coverage90_nuts']:.2f} "
            f"| {row['median_abs_std_mean_difference']:.3f} | {row['median_sd_ratio']:.3f}{cells} "
            f"| {diag['calibration_error']:.3f} | {ecdf_cell(diag)} |")
    lines += ["", f"Time per participant ({timing['amortized_draws']} amortized draws; NUTS {timing['nuts_chains']} "
              f"chains x {timing['nuts_draws_per_chain']} draws after {timing['nuts_tune']} tuning steps, "
              f"{timing['nuts_backend']}): amortized {timing['amortized_s_per_participant'] * 1000:.1f} ms, "
              f"NUTS {timing['nuts_s_per_participant']:.2f} s (+ {timing['nuts_compile_s']:.0f} s compiling once), "
              f"{timing['speedup']:.0f}x."]
    return "\n".join(lines)


def nuts_comparison_table(folders: dict) -> str:
    """Markdown rows, one per :func:`compare` report folder (label -> folder) and parameter: the
    datasets compared, then raw and corrected, the median abs. standardized mean difference,
    the median sd ratio and the recovery gap to NUTS (r_gap, with its standard error)."""
    lines = ["| trials | parameter | datasets | raw: abs(mean diff.) / NUTS sd | raw: sd ratio | raw: r gap | "
             "corrected: abs(mean diff.) | corrected: sd ratio | corrected: r gap |",
             "|---|---|---|---|---|---|---|---|---|"]
    for label, folder in folders.items():
        raw = pd.read_csv(Path(folder) / "summary.csv").set_index("parameter")
        refined = pd.read_csv(Path(folder) / "summary_refined.csv").set_index("parameter")
        for name, r in raw.iterrows():
            c = refined.loc[name]
            lines.append(f"| {label} | {name} | {r['datasets']:.0f} | {r['median_abs_std_mean_difference']:.3f} | "
                         f"{r['median_sd_ratio']:.3f} | {r['r_gap']:+.3f} ± {r['r_gap_se']:.3f} | "
                         f"{c['median_abs_std_mean_difference']:.3f} | {c['median_sd_ratio']:.3f} | "
                         f"{c['r_gap']:+.3f} ± {c['r_gap_se']:.3f} |")
    return "\n".join(lines)

"""A real dataset through the networks (`rlddm validate real-data`): per subject, the amortized
posteriors of the single- and dual-rate networks beside the exact fits of `rlddm fit-exact`
on the same likelihood settings, the PSIS k-hat and data-check flags, the time for the whole
study, and the single-vs-dual comparison per subject (importance-sampling log evidence and
PSIS-LOO) beside the exact fits' comparison.
"""

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.study import Study
from ..model.task import TaskDesign
from ..output import participant_table


def agreement(amortized: pd.DataFrame, exact: pd.DataFrame, names) -> pd.DataFrame:
    """Per participant and parameter: |amortized mean - exact mean| / exact sd and the sd ratio."""
    merged = amortized.merge(exact.assign(participant=exact["participant"].astype(str)), on="participant",
                             suffixes=("", "_exact"))
    rows = []
    for name in names:
        rows.append(pd.DataFrame({
            "participant": merged["participant"], "parameter": name,
            "std_mean_difference": (merged[f"{name}_mean"] - merged[f"{name}_mean_exact"]).abs()
            / merged[f"{name}_sd_exact"],
            "sd_ratio": merged[f"{name}_sd"] / merged[f"{name}_sd_exact"]}))
    return pd.concat(rows, ignore_index=True)


def real_amortized_report(posteriors: dict, study: Study, design: TaskDesign, exact_dir, out, draws: int = 2000,
                          seed: int = 0, source: str = "", excluded: dict | None = None) -> dict:
    """Infer `study` with each network of `posteriors` (model -> AmortizedPosterior), checked
    and refined by PSIS with the pointwise log-likelihood, compare with the exact fits in
    exact_dir/<model>/subjects.csv and exact_dir/model_comparison.csv, and write report.md,
    subjects_<model>.csv, agreement.csv, model_comparison.csv and summary.json into `out`.
    Returns the summary."""
    out, exact_dir = Path(out), Path(exact_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary, trees, agreements = {}, {}, []
    for model, posterior in posteriors.items():
        names = list(posterior.parameter_names)
        posterior.infer(study.select([0]), draws=draws, seed=seed, design=design)  # warm-up: compiles
        start = time.perf_counter()
        raw = posterior.infer(study, draws=draws, seed=seed, design=design, log_likelihood=True)
        raw_seconds = time.perf_counter() - start
        start = time.perf_counter()
        refined = posterior.infer(study, draws=draws, seed=seed, design=design, refine=True, log_likelihood=True)
        refined_seconds = time.perf_counter() - start
        fresh = type(posterior).load(posterior.source)  # nothing compiled: the first call as `infer` makes it
        start = time.perf_counter()
        fresh.infer(study, draws=draws, seed=seed, design=design, refine=True)
        first_call_seconds = time.perf_counter() - start
        trees[model] = refined
        checks = raw["importance"].to_dataset()
        flags = raw["data_checks"].to_dataset()
        table = participant_table(raw).merge(participant_table(refined), on="participant", suffixes=("", "_refined"))
        table["participant"] = table["participant"].astype(str)
        table["khat"] = checks["khat"].values
        table["above_threshold"] = checks["above_threshold"].values
        corrected = refined["importance"].to_dataset()
        for name in ("khat", "trusted", "method", "reason", "rounds", "evaluations"):
            table[f"refined_{name}"] = corrected[name].values
        table["out_of_distribution"] = flags["out_of_distribution"].values
        table["reasons"] = flags["reasons"].values
        table.to_csv(out / f"subjects_{model}.csv", index=False)
        methods, counts = np.unique(corrected["method"].values, return_counts=True)
        entry = {"seconds_checked": raw_seconds, "seconds_refined": refined_seconds,
                 "seconds_refined_first_call": first_call_seconds,
                 "trusted": int(corrected["trusted"].sum()),
                 "methods": {str(m): int(c) for m, c in zip(methods, counts)},
                 "untrusted": {str(p): str(r) for p, r, ok in zip(table["participant"], corrected["reason"].values,
                                                                   corrected["trusted"].values) if not ok},
                 "evaluations_median": float(np.median(corrected["evaluations"].values)),
                 "above_threshold": int(checks["above_threshold"].sum()),
                 "khat_median": float(np.median(checks["khat"].values)),
                 "flagged": [str(p) for p in table.loc[table["out_of_distribution"], "participant"]]}
        exact_file = exact_dir / model / "subjects.csv"
        if exact_file.is_file():
            exact = pd.read_csv(exact_file)
            if "converged" in exact.columns:
                exact = exact[exact["converged"].astype(bool)]
            raw_cols = [f"{n}_{m}" for n in names for m in ("mean", "sd")]
            raw_agreement = agreement(table[["participant", *raw_cols]], exact, names).assign(model=model, draws="raw")
            refined_cols = {f"{c}_refined": c for c in raw_cols}
            refined_agreement = agreement(table[["participant", *refined_cols]].rename(columns=refined_cols),
                                          exact, names).assign(model=model, draws="refined")
            both = pd.concat([raw_agreement, refined_agreement])
            # the corrected draws are the exact posterior's where the correction says they are trusted
            both["trusted"] = both["participant"].isin(table.loc[table["refined_trusted"], "participant"])
            agreements.append(both)
            medians = both.groupby(["draws", "parameter"])[["std_mean_difference", "sd_ratio"]].median()
            trusted = both[(both["draws"] == "refined") & both["trusted"]]
            trusted_medians = trusted.groupby("parameter")[["std_mean_difference", "sd_ratio"]].median()
            worst = trusted.groupby("parameter")["std_mean_difference"].max()
            entry["agreement"] = {f"{d}/{p}": {k: float(v) for k, v in row.items()}
                                  for (d, p), row in medians.iterrows()}
            entry["agreement"].update({f"trusted/{p}": {**{k: float(v) for k, v in row.items()},
                                                        "worst_std_mean_difference": float(worst[p])}
                                       for p, row in trusted_medians.iterrows()})
            entry["exact_subjects"] = int(exact.shape[0])
            entry["trusted_exact_subjects"] = int(trusted["participant"].nunique())
        summary[model] = entry
    if agreements:
        pd.concat(agreements).to_csv(out / "agreement.csv", index=False)
    if {"single", "dual"} <= set(trees):
        summary["model_comparison"] = _model_comparison(trees, exact_dir, out)
    summary.update(source=source, participants=study.n_participants, trials=int(study.n_trials.sum()),
                   settings={k: getattr(design, k) for k in ("deadline", "missing", "q_init", "p_outlier", "rt_max")},
                   excluded={k: int(np.sum(v)) for k, v in (excluded or {}).items()}, draws=draws)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    (out / "report.md").write_text(_markdown(summary, posteriors) + "\n")
    return summary


def _model_comparison(trees, exact_dir, out) -> dict:
    """Per subject, dual minus single from the corrected posteriors' importance weights: the log
    evidence (the importance-sampling estimate) and the PSIS-LOO elpd; beside the exact fits'."""
    single, dual = (trees[m]["importance"].to_dataset() for m in ("single", "dual"))
    table = pd.DataFrame({
        "participant": [str(p) for p in single["participant"].values],
        "log_bayes_factor": dual["log_evidence"].values - single["log_evidence"].values,
        "log_bayes_factor_se": np.hypot(dual["log_evidence_se"].values, single["log_evidence_se"].values),
        "elpd_difference": dual["elpd_loo"].values - single["elpd_loo"].values,
        "khat_single": single["khat"].values, "khat_dual": dual["khat"].values})
    totals = {"participants": int(table.shape[0]), "log_bayes_factor_total": float(table["log_bayes_factor"].sum()),
              "dual_by_evidence": int((table["log_bayes_factor"] > 0).sum()),
              "elpd_difference_total": float(table["elpd_difference"].sum()),
              "dual_by_loo": int((table["elpd_difference"] > 0).sum())}
    exact_file = Path(exact_dir) / "model_comparison.csv"
    if exact_file.is_file():
        exact = pd.read_csv(exact_file).assign(participant=lambda f: f["participant"].astype(str))
        merged = table.merge(exact[["participant", "log_bayes_factor", "elpd_difference"]], on="participant",
                             suffixes=("", "_exact"))
        table = table.merge(exact[["participant", "log_bayes_factor", "elpd_difference"]], on="participant",
                            how="left", suffixes=("", "_exact"))
        totals.update(
            exact_log_bayes_factor_total=float(merged["log_bayes_factor_exact"].sum()),
            exact_elpd_difference_total=float(merged["elpd_difference_exact"].sum()),
            same_verdict_by_evidence=int(((merged["log_bayes_factor"] > 0)
                                          == (merged["log_bayes_factor_exact"] > 0)).sum()),
            same_verdict_by_loo=int(((merged["elpd_difference"] > 0) == (merged["elpd_difference_exact"] > 0)).sum()),
            log_bayes_factor_correlation=float(np.corrcoef(merged["log_bayes_factor"],
                                                           merged["log_bayes_factor_exact"])[0, 1]),
            compared_with_exact=int(merged.shape[0]))
    table.to_csv(out / "model_comparison.csv", index=False)
    return totals


def _markdown(summary, posteriors) -> str:
    settings = ", ".join(f"{k} = {v}" for k, v in summary["settings"].items())
    lines = [f"# Amortized posteriors: {Path(summary['source']).name or 'data'}", "",
             f"{summary['participants']} participants, {summary['trials']} trials; likelihood settings: {settings}; "
             f"excluded from the likelihood: {summary['excluded'] or 'none'}. {summary['draws']} draws per "
             "participant: the network's raw draws, checked by PSIS against the exact posterior, and the corrected "
             "draws (`--refine`: PSIS resampling, adaptive importance sampling, DE-MCz chains; docs/validation.md).",
             ""]
    for model, posterior in posteriors.items():
        entry = summary[model]
        methods = ", ".join(f"{m} {c}" for m, c in entry["methods"].items())
        untrusted = "; ".join(f"{p}: {r}" for p, r in entry["untrusted"].items()) or "none"
        lines += [f"## {model}-rate network (`{posterior.source}`)", "",
                  f"**Trusted {entry['trusted']} of {summary['participants']}** ({methods}); not trusted: "
                  f"{untrusted}. The whole study: {entry['seconds_checked']:.2f} s raw and checked, "
                  f"{entry['seconds_refined']:.2f} s corrected ({entry['seconds_refined_first_call']:.2f} s on a "
                  f"first call, compilation included); median {entry['evaluations_median']:.0f} exact posterior "
                  f"evaluations per participant. The raw draws: median k-hat {entry['khat_median']:.2f}, above the "
                  f"threshold for {entry['above_threshold']} of {summary['participants']}. Flagged by the data "
                  f"checks: {', '.join(entry['flagged']) or 'none'}. Per subject: "
                  f"[`subjects_{model}.csv`](subjects_{model}.csv).",
                  ""]
        if "agreement" in entry:
            lines += [f"Against the exact fits ({entry['exact_subjects']} subjects whose NUTS fits passed the "
                      f"convergence gate, {entry['trusted_exact_subjects']} of them trusted after the correction), "
                      "median over subjects (and the worst trusted subject):", "",
                      "| parameter | raw: abs(mean diff.) / exact sd | raw: sd ratio | corrected, trusted: abs(mean "
                      "diff.) / exact sd | worst | sd ratio |", "|---|---|---|---|---|---|"]
            for name in posterior.parameter_names:
                raw = entry["agreement"][f"raw/{name}"]
                trusted = entry["agreement"].get(f"trusted/{name}")
                trusted = (f"{trusted['std_mean_difference']:.3f} | {trusted['worst_std_mean_difference']:.3f} | "
                           f"{trusted['sd_ratio']:.3f}" if trusted else "- | - | -")
                lines.append(f"| {name} | {raw['std_mean_difference']:.3f} | {raw['sd_ratio']:.3f} | {trusted} |")
            lines.append("")
    if "model_comparison" in summary:
        t = summary["model_comparison"]
        lines += ["## Single vs dual learning rate", "",
                  "Per subject, dual minus single, from the corrected posteriors: the log evidence by importance "
                  "sampling (the network's draws, or the adaptive rounds' where it needed them), and PSIS-LOO. "
                  "[`model_comparison.csv`]"
                  "(model_comparison.csv)", "",
                  "| criterion | study total, amortized | subjects favouring dual | study total, exact fits | "
                  "same verdict as the exact fits |", "|---|---|---|---|---|"]
        exact = "exact_log_bayes_factor_total" in t
        lines.append(f"| log Bayes factor | {t['log_bayes_factor_total']:.1f} | {t['dual_by_evidence']} of "
                     f"{t['participants']} | " + (f"{t['exact_log_bayes_factor_total']:.1f} | "
                                                  f"{t['same_verdict_by_evidence']} of {t['compared_with_exact']} |"
                                                  if exact else "- | - |"))
        lines.append(f"| elpd (PSIS-LOO) | {t['elpd_difference_total']:.1f} | {t['dual_by_loo']} of "
                     f"{t['participants']} | " + (f"{t['exact_elpd_difference_total']:.1f} | "
                                                  f"{t['same_verdict_by_loo']} of {t['compared_with_exact']} |"
                                                  if exact else "- | - |"))
        if exact:
            lines += ["", f"Correlation of the per-subject log Bayes factors with the exact fits': "
                          f"{t['log_bayes_factor_correlation']:.3f}."]
    return "\n".join(lines)

"""Exact fits of real data and their reports (`rlddm fit-exact`): convergence, the per-subject
table, posterior predictive checks, and the comparison with published estimates (HDDM's).

Posterior predictive checks simulate each participant's own experiment (the same trials,
stimulus pairs and blocks, the arms' reward probabilities the data or the user give) from
draws of the posterior, and put two statistics of the data against their predictive
distribution: the share of arm-1 choices per stimulus pair over bins of the pair's trials,
and the RT quantiles of each choice.
"""

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure

from ..data.study import Study
from ..exact import fit as exact_fit
from ..exact.fit import subject_table
from ..exact.model import ESS_BULK_MIN, RHAT_MAX
from ..model.config import MODELS, exact_fit_priors
from ..model.priors import choice_only
from ..model.settings import HDDM_FIXED
from ..model.simulator import simulate_trials
from ..model.task import LikelihoodSettings, TaskDesign
from ..output import save_posterior
from .model_comparison import PROPOSALS, STUDENT_DF, WIDEN, compare_models, comparison_totals, rate_pair

RT_QUANTILES = (0.1, 0.3, 0.5, 0.7, 0.9)
COLOUR_NAMES = ("blue", "orange", "green", "red", "purple", "brown")  # matplotlib's C0..C5
INTERVAL = (0.05, 0.95)  # the predictive interval the data are checked against
# HDDM's published per-subject estimates: our parameter -> (column, whether on the logit scale)
HDDM_COLUMNS = {"single": {"a": ("single_a_mean", False), "v": ("single_v_mean", False),
                           "t0": ("single_t_mean", False), "alpha": ("single_alpha_logit_mean", True)},
                "dual": {"alpha_pos": ("dual_pos_alpha_logit_mean", True),
                         "alpha_neg": ("dual_alpha_neg_logit_mean", True)}}


def _pair_positions(study: Study) -> np.ndarray:
    """(B, T) each trial's index among its participant's trials of the same stimulus pair."""
    onehot = (study.condition[..., None] == np.arange(study.n_conditions)) & study.valid[..., None]
    before = np.cumsum(onehot, axis=1) - onehot
    return np.take_along_axis(before, study.condition[..., None], axis=-1)[..., 0]


def bin_width(study: Study, bins: int = 8) -> int:
    """Trials per bin: about `bins` bins over the median participant's trials of one pair."""
    per_pair = np.median(study.n_trials / study.n_conditions)
    return max(int(round(per_pair / bins)), 2)


def choice_curves(study: Study, width: int) -> np.ndarray:
    """(B, pairs, bins) share of arm-1 choices among the responses in each bin of each pair's
    trials (NaN where a bin has none)."""
    position = _pair_positions(study) // width
    n_bins = int(position[study.valid].max()) + 1
    responded = study.valid & (study.choice >= 0)
    key = (study.condition * n_bins + position)
    upper = np.zeros((study.n_participants, study.n_conditions * n_bins))
    count = np.zeros_like(upper)
    rows = np.repeat(np.arange(study.n_participants), study.max_trials).reshape(key.shape)
    np.add.at(count, (rows[responded], key[responded]), 1.0)
    np.add.at(upper, (rows[responded], key[responded]), (study.choice[responded] == 1).astype(float))
    with np.errstate(invalid="ignore"):
        return (upper / count).reshape(study.n_participants, study.n_conditions, n_bins)


def rt_quantiles(study: Study) -> np.ndarray:
    """(B, 2, quantiles) RT quantiles of arm-0 and arm-1 responses (NaN without responses)."""
    out = np.full((study.n_participants, 2, len(RT_QUANTILES)), np.nan)
    for c in (0, 1):
        rt = np.where(study.valid & (study.choice == c), study.rt, np.nan)
        has = np.isfinite(rt).any(axis=1)
        if has.any():  # choices alone have none
            out[has, c] = np.nanquantile(rt[has], RT_QUANTILES, axis=1).T
    return out


def _posterior_draws(tree, index, names, count, fixed):
    """`count` draws of participant `index`, evenly spaced over chains and draws."""
    post = tree["posterior"].isel(participant=index)
    flat = {n: post[n].values.reshape(-1) for n in post.data_vars}
    take = np.linspace(0, len(next(iter(flat.values()))) - 1, count).round().astype(int)
    return {n: flat[n][take] if n in flat else np.full(count, fixed[n]) for n in names}


def posterior_predictive(study: Study, tree, settings: LikelihoodSettings, fixed: dict | None, draws: int = 200,
                         seed: int = 0) -> dict:
    """Data and predictive statistics per participant: choice curves and RT quantiles.

    Returns {"width": trials per bin, "choice_data" (B, pairs, bins), "choice_predicted"
    (B, draws, pairs, bins), "rt_data" (B, 2, quantiles), "rt_predicted" (B, draws, 2, q)}.
    """
    if study.arm_probs is None:
        raise ValueError("posterior predictive checks need each arm's reward probability per trial: "
                         "give the data's columns (p_reward_0, p_reward_1) or --pair-reward-probs")
    fixed = fixed or {}
    names = [n for n in ("v", "a", "z", "t0", "beta", "alpha", "alpha_pos", "alpha_neg")
             if n in tree["posterior"].data_vars or n in fixed]
    width = bin_width(study)
    data_curves = choice_curves(study, width)
    curves = np.full((study.n_participants, draws) + data_curves.shape[1:], np.nan)
    rts = np.full((study.n_participants, draws, 2, len(RT_QUANTILES)), np.nan)
    q_init = settings.q_init
    rng = np.random.default_rng(seed)
    for i in range(study.n_participants):
        params = _posterior_draws(tree, i, names, draws, fixed)
        rows = np.zeros(draws, np.int64) + i
        start = study.q_init[i] if q_init is None and study.q_init is not None else (0.5 if q_init is None else q_init)
        simulated = simulate_trials(params, study.n_trials[rows], study.block[rows], study.condition[rows],
                                    study.arm_probs[rows], seed=int(rng.integers(2**63)), q_init=start,
                                    deadline=settings.deadline, p_outlier=settings.p_outlier,
                                    rt_max=settings.rt_max, condition_labels=study.condition_labels)
        got = choice_curves(simulated, width)
        curves[i, :, :, :got.shape[2]] = got[:, :, :curves.shape[3]]
        rts[i] = rt_quantiles(simulated)
    return {"width": width, "choice_data": data_curves, "choice_predicted": curves,
            "rt_data": rt_quantiles(study), "rt_predicted": rts}


def ppc_table(study: Study, ppc: dict) -> pd.DataFrame:
    """One row per participant and statistic: the data's value, the predictive mean and
    INTERVAL quantiles, and whether the data lie inside."""
    rows = []
    lo, hi = INTERVAL
    for i, pid in enumerate(study.participant):
        for k, label in enumerate(study.condition_labels):
            for b in range(ppc["choice_data"].shape[2]):
                value = ppc["choice_data"][i, k, b]
                if np.isfinite(value):
                    pred = ppc["choice_predicted"][i, :, k, b]
                    rows.append({"participant": pid, "statistic": "p_arm1", "pair": label,
                                 "trials": f"{b * ppc['width'] + 1}-{(b + 1) * ppc['width']}", "data": value,
                                 "predicted": np.nanmean(pred), "lower": np.nanquantile(pred, lo),
                                 "upper": np.nanquantile(pred, hi)})
        for c in (0, 1):
            for q, level in enumerate(RT_QUANTILES):
                value = ppc["rt_data"][i, c, q]
                pred = ppc["rt_predicted"][i, :, c, q]
                if np.isfinite(value) and np.isfinite(pred).sum() > 10:
                    rows.append({"participant": pid, "statistic": f"rt_q{int(100 * level)}", "pair": "all",
                                 "trials": f"arm {c}", "data": value, "predicted": np.nanmean(pred),
                                 "lower": np.nanquantile(pred, lo), "upper": np.nanquantile(pred, hi)})
    table = pd.DataFrame(rows)
    table["inside"] = (table["data"] >= table["lower"]) & (table["data"] <= table["upper"])
    return table


def plot_ppc(study: Study, ppc: dict, path, title):
    """Per participant, the arm-1 share per pair over trial bins (data dots, predictive mean
    and INTERVAL band), and one panel of RT quantiles, data against predictive."""
    n = study.n_participants
    columns = min(n, 8 if n > 40 else 6)
    rows = -(-n // columns) + 1
    fig = Figure(figsize=(2.1 * columns, 1.7 * rows))
    axes = fig.subplots(rows, columns, squeeze=False)
    colours = [f"C{k}" for k in range(len(COLOUR_NAMES))]
    centres = (np.arange(ppc["choice_data"].shape[2]) + 0.5) * ppc["width"]
    for i in range(n):
        ax = axes[i // columns][i % columns]
        for k in range(study.n_conditions):
            pred = ppc["choice_predicted"][i, :, k]
            keep = np.isfinite(ppc["choice_data"][i, k])
            colour = colours[k % len(colours)]
            ax.fill_between(centres[keep], np.nanquantile(pred[:, keep], INTERVAL[0], axis=0),
                            np.nanquantile(pred[:, keep], INTERVAL[1], axis=0), color=colour, alpha=0.25, lw=0)
            ax.plot(centres[keep], np.nanmean(pred[:, keep], axis=0), color=colour, lw=1)
            ax.plot(centres[keep], ppc["choice_data"][i, k, keep], "o", color=colour, ms=2.5)
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(str(study.participant[i]), fontsize=7)
        ax.tick_params(labelsize=6)
    for j in range(n, (rows - 1) * columns):
        axes[j // columns][j % columns].axis("off")
    bottom = axes[rows - 1]
    for ax in bottom[2:]:
        ax.axis("off")
    for c, ax in enumerate(bottom[:2]):
        data = ppc["rt_data"][:, c].ravel()
        pred = ppc["rt_predicted"][:, :, c]
        mean = np.nanmean(pred, axis=1).ravel()
        low, high = (np.nanquantile(pred, q, axis=1).ravel() for q in INTERVAL)
        keep = np.isfinite(data) & np.isfinite(mean)
        ax.errorbar(data[keep], mean[keep], yerr=[mean[keep] - low[keep], high[keep] - mean[keep]], fmt="o", ms=2,
                    elinewidth=0.5, alpha=0.6)
        top = np.nanmax(data[keep]) if keep.any() else 1.0
        ax.plot([0, top], [0, top], color="grey", lw=0.8, ls="--")
        ax.set_title(f"RT quantiles, arm {c}: predicted vs data", fontsize=7)
        ax.tick_params(labelsize=6)
    pairs = ", ".join(f"{COLOUR_NAMES[k % len(colours)]} {label}" for k, label in enumerate(study.condition_labels))
    fig.suptitle(f"{title}: share of arm-1 choices per pair ({pairs}) over trial bins of {ppc['width']} "
                 "(dots: data; line and band: posterior predictive mean and 90% interval)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def compare_with_hddm(trees: dict, estimates: pd.DataFrame) -> pd.DataFrame:
    """Per subject and parameter: our posterior mean (learning rates as the mean of their
    logit, as HDDM reports them) next to HDDM's published hierarchical estimate."""
    rows = []
    for model, columns in HDDM_COLUMNS.items():
        if model not in trees:
            continue
        tree = trees[model]
        ids = [str(p) for p in tree["posterior"]["participant"].values]
        theirs = estimates.assign(participant=estimates["subj_idx"].astype(str)).set_index("participant")
        for name, (column, logit) in columns.items():
            values = tree["posterior"][name].transpose("participant", ...).values.reshape(len(ids), -1)
            if logit:
                values = np.log(values / (1 - values))
            ours, sd = values.mean(axis=1), values.std(axis=1, ddof=1)
            for k, pid in enumerate(ids):
                if pid in theirs.index:
                    rows.append({"model": model, "parameter": f"logit({name})" if logit else name, "participant": pid,
                                 "ours": ours[k], "ours_sd": sd[k], "hddm": float(theirs.loc[pid, column])})
    return pd.DataFrame(rows)


def comparison_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per model and parameter: the correlation over subjects, the median difference and its
    size in our posterior sds, and the spread of each method's estimates over subjects (a
    hierarchical fit's estimates spread less: they shrink toward the group mean)."""
    rows = []
    for (model, name), part in table.groupby(["model", "parameter"], sort=False):
        diff = part["ours"] - part["hddm"]
        toward_group = part["ours"] - part["ours"].mean()
        rows.append({"model": model, "parameter": name, "subjects": len(part),
                     "r": np.corrcoef(part["ours"], part["hddm"])[0, 1],
                     "median_difference": diff.median(),
                     "median_abs_difference_over_sd": (diff.abs() / part["ours_sd"]).median(),
                     "spread_ours": part["ours"].std(ddof=1), "spread_hddm": part["hddm"].std(ddof=1),
                     "r_difference_with_distance_from_mean": np.corrcoef(diff, toward_group)[0, 1]})
    return pd.DataFrame(rows)


def _markdown(frame, digits=3):
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(f"{row[c]:.{digits}f}" if isinstance(row[c], float) else str(row[c])
                                       for c in cols) + " |")
    return lines


def write_real_data_report(out, study: Study, trees: dict, settings: LikelihoodSettings, fixed: dict | None,
                           excluded: dict,
                           reference=None, ppc_draws: int = 200, seed: int = 0, source: str = "",
                           priors: dict | None = None) -> None:
    """Write report.md, the predictive checks (ppc_<model>.csv and .png), with a reference
    hddm_comparison.csv and, with both models and their `priors` (model -> PriorSet),
    model_comparison.csv into `out`, from the exact fits in `trees` (model -> DataTree)."""
    out = Path(out)
    lines = [f"# Exact fits: {Path(source).name or 'data'}", "",
             f"{study.n_participants} participants, {int(study.n_trials.sum())} trials "
             f"({int(study.n_trials.min())}-{int(study.n_trials.max())} each), {study.n_conditions} stimulus pair(s) "
             f"{list(study.condition_labels)}, up to {int(study.block.max()) + 1} block(s). Trial numbers the data "
             f"skip: {int(study.absent_trials.sum()) if study.absent_trials is not None else 0} (absent trials: no "
             "trial, no learning, no likelihood).", "",
             "Likelihood settings: " + ", ".join(f"{k} = {v}" for k, v in asdict(settings).items()) +
             f"; fixed: {fixed or 'none'}.", ""]
    for rule, counts in excluded.items():
        lines.append(f"Excluded from the likelihood (kept for learning), {rule}: {int(np.sum(counts))} trials "
                     f"(per participant up to {int(np.max(counts))}).")
    lines += ["", f"Convergence gate: r-hat <= {RHAT_MAX}, bulk ESS >= {ESS_BULK_MIN}, no divergences; a fit that "
              "fails it is run once more with twice the tuning.", ""]
    summary = {}
    for model, tree in trees.items():
        checks = tree["fit_diagnostics"].to_dataset()
        seconds = float(tree["posterior"].attrs.get("study_seconds", np.nan))
        failed = [str(p) for p, ok in zip(checks["participant"].values, checks["converged"].values) if not ok]
        summary[model] = {"seconds": seconds, "failed": failed, "rhat_max": float(checks["rhat_max"].max()),
                          "ess_bulk_min": float(checks["ess_bulk_min"].min()),
                          "divergences": int(checks["divergences"].sum()),
                          "retried": int((checks["attempts"] > 1).sum())}
        attrs = tree["posterior"].attrs
        lines += [f"## The {model} model", "",
                  f"NUTS ({attrs.get('chains')} chains x {attrs.get('draws')} draws after {attrs.get('tune')} "
                  f"tuning steps, {attrs.get('adaptation', 'diag')} mass matrix), {seconds / 60:.1f} min for the study "
                  f"({seconds / study.n_participants:.1f} s per participant): max r-hat "
                  f"{summary[model]['rhat_max']:.3f}, min bulk ESS {summary[model]['ess_bulk_min']:.0f}, "
                  f"{summary[model]['divergences']} divergences; {summary[model]['retried']} fit(s) retried; "
                  f"failing the gate after the retry: {', '.join(failed) or 'none'}.", "",
                  f"Per-subject posteriors: [`{model}/subjects.csv`]({model}/subjects.csv); the draws: "
                  f"`{model}/posterior.nc`.", ""]
        table = subject_table(tree)
        means = [c for c in table.columns if c.endswith("_mean")]
        lines += ["Posterior means over subjects (median, and the 10%-90% range of the subjects):", "",
                  "| parameter | median | 10% | 90% |", "|---|---|---|---|"]
        for c in means:
            q = np.quantile(table[c], [0.5, 0.1, 0.9])
            lines.append(f"| {c[:-5]} | {q[0]:.3f} | {q[1]:.3f} | {q[2]:.3f} |")
        lines.append("")
        if study.arm_probs is not None:
            ppc = posterior_predictive(study, tree, settings, fixed, draws=ppc_draws, seed=seed)
            checked = ppc_table(study, ppc)
            checked.to_csv(out / f"ppc_{model}.csv", index=False)
            plot_ppc(study, ppc, out / f"ppc_{model}.png", f"the {model} model")
            inside = checked.groupby(checked["statistic"].str.startswith("rt"))["inside"].mean()
            summary[model]["ppc_inside_choice"] = float(inside.get(False, np.nan))
            summary[model]["ppc_inside_rt"] = float(inside.get(True, np.nan))
            rts = "" if np.isnan(summary[model]["ppc_inside_rt"]) else (
                f" and {100 * summary[model]['ppc_inside_rt']:.0f}% of the RT quantiles "
                f"({', '.join(f'{q:g}' for q in RT_QUANTILES)} per choice)")
            lines += [f"Posterior predictive checks ({ppc_draws} draws per subject; the subject's own trials, pairs "
                      f"and reward probabilities): the data lie inside the predictive 90% interval for "
                      f"{100 * summary[model]['ppc_inside_choice']:.0f}% of the choice shares (bins of "
                      f"{ppc['width']} trials of a pair){rts}; 90% is expected. "
                      f"[`ppc_{model}.csv`](ppc_{model}.csv)", "", f"![predictive checks](ppc_{model}.png)", ""]
    if reference is not None:
        compared = compare_with_hddm(trees, pd.read_csv(reference))
        compared.to_csv(out / "hddm_comparison.csv", index=False)
        agreement = comparison_summary(compared)
        summary["hddm_comparison"] = agreement.to_dict(orient="records")
        lines += ["## Against HDDM's published estimates", "",
                  f"Per-subject posterior means against HDDM's hierarchical estimates ({Path(reference).name}; "
                  "learning rates on the logit scale, as HDDM reports them). HDDM's subjects share group "
                  "distributions, so their estimates shrink toward the group mean: they spread less over subjects "
                  "(spread_hddm below spread_ours), and our estimate exceeds HDDM's where it lies above the mean of "
                  "ours (a positive r_difference_with_distance_from_mean).", ""]
        lines += _markdown(agreement) + ["", "Per subject: [`hddm_comparison.csv`](hddm_comparison.csv).", ""]
    if priors is not None and rate_pair(trees) is not None:
        compared = compare_models(study, trees, priors, settings, seed=seed)
        compared.to_csv(out / "model_comparison.csv", index=False)
        totals = comparison_totals(compared)
        summary["model_comparison"] = totals
        n = totals["participants"]
        lines += ["## Single vs dual learning rate", "",
                  "Per subject, from the exact fits above: the log evidence of each model by importance sampling "
                  f"(a multivariate Student-t with {STUDENT_DF} degrees of freedom fitted to the NUTS draws in the "
                  f"unbounded space, {WIDEN} times their sd, {PROPOSALS} proposals; the log Bayes factor is dual minus "
                  "single) and PSIS-LOO (the expected log "
                  "predictive density of each trial given the others, arviz-stats).", "",
                  "| criterion | study total (dual - single) | subjects favouring dual |", "|---|---|---|",
                  f"| log Bayes factor | {totals['log_bayes_factor_total']:.1f} | "
                  f"{totals['dual_by_evidence']} of {n} |",
                  f"| elpd (PSIS-LOO) | {totals['elpd_difference_total']:.1f} "
                  f"(se {totals['elpd_difference_total_se']:.1f}) | {totals['dual_by_loo']} of {n} |", "",
                  f"Importance-sampling k-hat above 0.7 (the evidence estimate not to be trusted) for "
                  f"{totals['evidence_khat_above_0.7']} subject(s). Per subject: "
                  "[`model_comparison.csv`](model_comparison.csv).", ""]
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "report.md").write_text("\n".join(lines) + "\n")


def fit_exact(study: Study, design: TaskDesign, excluded: dict, out, models=("single", "dual"),
              config: str | None = None, hddm_compatible: bool = False, reuse: str | None = None, chains: int = 4,
              draws_per_chain: int = 1000, tune: int = 1000, adaptation: str = "diag", ppc_draws: int = 200,
              seed: int = 0, reference=None, source: str = "", progress: bool = True) -> None:
    """NUTS with the exact likelihood for every participant of a study, under each model: the
    posteriors (``<model>/posterior.nc`` and ``subjects.csv``) and the report
    (:func:`write_real_data_report`) in `out`.

    Parameters
    ----------
    study, design, excluded
        The study, its likelihood settings and its exclusions
        (:func:`amortized_rlddm.model.settings.prepare_study`).
    models
        Models of :data:`~amortized_rlddm.model.config.MODELS`: ``"single"`` and/or ``"dual"``,
        or the choice-only ``"softmax"`` and/or ``"softmax-dual"``.
    config
        A config whose priors replace the built-in ones (:func:`exact_fit_priors`).
    hddm_compatible
        Fix z at 0.5, as HDDM's RL-DDM does (HDDM_FIXED); the choice-only models have no z.
    reuse
        None fits every model; ``"report"`` reads the posteriors in `out`; ``"refit-failed"``
        reads them and fits again (as a retry) those that fail the convergence gate.
    chains, draws_per_chain, tune, adaptation
        NUTS's settings (:func:`amortized_rlddm.exact.fit.fit_study`).
    ppc_draws, seed, reference, source
        As :func:`write_real_data_report` takes them.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = design.likelihood.for_study(study)
    if hddm_compatible and any(choice_only(MODELS[model]) for model in models):
        raise ValueError("--hddm-compatible fixes z, which the choice-only models do not have; give HDDM's "
                         "exclusions and contaminants as --exclude-first --p-outlier 0.05 --rt-max 5")
    fixed = dict(HDDM_FIXED) if hddm_compatible else None
    priors = exact_fit_priors(config, models)
    trees = {}
    for model in models:
        folder = out / model
        if reuse is not None:
            trees[model] = xr.load_datatree(folder / "posterior.nc")  # in memory: the file may be rewritten
        if reuse == "refit-failed":
            tree = exact_fit.refit_failed(trees[model], study, priors[model], model, settings, fixed=fixed, tune=tune,
                                          seed=seed, adaptation=adaptation, progress=progress)
        elif reuse is None:
            folder.mkdir(exist_ok=True)
            if progress:
                print(f"{model}-rate model: NUTS on {study.n_participants} participants", file=sys.stderr, flush=True)
            start = time.perf_counter()
            tree = exact_fit.fit_study(study, priors[model], model, settings, fixed=fixed, draws=draws_per_chain,
                                       tune=tune, chains=chains, seed=seed, adaptation=adaptation, progress=progress)
            tree["posterior"].attrs["study_seconds"] = time.perf_counter() - start
        else:
            continue
        save_posterior(tree, folder / "posterior.nc")
        subject_table(tree).to_csv(folder / "subjects.csv", index=False)
        trees[model] = tree
    write_real_data_report(out, study, trees, settings, fixed, excluded, reference=reference, ppc_draws=ppc_draws,
                           seed=seed, source=source, priors=priors)

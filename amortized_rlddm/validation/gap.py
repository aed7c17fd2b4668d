"""Where a network's raw answer departs from the exact posterior on a real study
(`rlddm validate gap`).

Per participant: features of its data (RT quantiles, the fastest and slowest responses, the
RT gap between choosing the worse and the better arm, the share of better choices, its change
from the first to the second half, the switch rate), each placed by its percentile among
simulations of the participant's own design under the priors (the prior predictive: what the
network was trained on) and among simulations from its exact posterior (the posterior
predictive: what the model says of it); the raw network's error per parameter against the
corrected (exact, where trusted) posterior; the PSIS k-hat; and the misspecification check.
Which features go with which parameter's error: Spearman correlations over the trusted
participants of the signed error with the prior-predictive percentiles.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.stats import spearmanr

from ..amortized.misspecification import design_replicates, empirical_arm_probs
from ..data.study import Study
from ..model.task import DesignSettings

__all__ = ["RT_FEATURES", "CHOICE_FEATURES", "data_features", "gap_report", "gap_table"]

RT_FEATURES = ("fastest_rt", "rt_q10", "rt_q50", "rt_q90", "slowest_rt", "worse_minus_better_rt")
CHOICE_FEATURES = ("better_share", "learning", "switch_rate")
POSTERIOR_DRAWS = 100  # posterior predictive replicates per participant
OUTSIDE = (0.025, 0.975)  # a feature lies outside a predictive distribution beyond these percentiles


def data_features(study: Study, arm_probs: np.ndarray | None = None) -> pd.DataFrame:
    """Per participant the features of the gap report (log seconds for the RTs); without RTs
    the choice features alone. `arm_probs`: each arm's reward probability per trial (default:
    the study's, else its observed reward rates)."""
    probs = arm_probs if arm_probs is not None else (
        study.arm_probs if study.arm_probs is not None else empirical_arm_probs(study))
    responded = study.valid & (study.choice >= 0)
    better = np.where(probs[..., 1] >= probs[..., 0], 1, 0)
    graded = responded & (probs[..., 1] != probs[..., 0])
    chose_better = study.choice == better
    features = {}
    if study.has_rt:
        rt = np.where(responded, study.rt, np.nan)
        quantiles = np.nanquantile(rt, [0.0, 0.1, 0.5, 0.9, 1.0], axis=1)
        for name, q in zip(RT_FEATURES[:5], quantiles):
            features[name] = np.log(q)
        log_rt = np.log(rt)
        with np.errstate(invalid="ignore"):
            worse_rt = np.nanmedian(np.where(graded & ~chose_better, log_rt, np.nan), axis=1)
            better_rt = np.nanmedian(np.where(graded & chose_better, log_rt, np.nan), axis=1)
        features["worse_minus_better_rt"] = worse_rt - better_rt
    position = np.arange(study.max_trials)[None, :]
    first_half = position < study.n_trials[:, None] / 2

    def share(mask):
        with np.errstate(invalid="ignore"):
            return (chose_better & mask).sum(1) / mask.sum(1)

    features["better_share"] = share(graded)
    features["learning"] = share(graded & ~first_half) - share(graded & first_half)
    consecutive = responded[:, 1:] & responded[:, :-1] & (study.condition[:, 1:] == study.condition[:, :-1]) \
        & (study.block[:, 1:] == study.block[:, :-1])
    with np.errstate(invalid="ignore"):
        features["switch_rate"] = (consecutive & (study.choice[:, 1:] != study.choice[:, :-1])).sum(1) \
            / consecutive.sum(1)
    return pd.DataFrame(features, index=pd.Index([str(p) for p in study.participant], name="participant"))


def _percentiles(observed: pd.DataFrame, simulated: pd.DataFrame, replicates: int) -> pd.DataFrame:
    """Each observed feature's mid-rank percentile among its participant's replicates."""
    grid = simulated.to_numpy().reshape(observed.shape[0], replicates, -1)
    x = observed.to_numpy()[:, None, :]
    valid = np.isfinite(grid)
    below = ((grid < x) & valid).sum(1) + 0.5 * ((grid == x) & valid).sum(1)
    with np.errstate(invalid="ignore"):
        percentile = below / valid.sum(1)
    return pd.DataFrame(np.where(np.isfinite(x[:, 0]), percentile, np.nan), index=observed.index,
                        columns=observed.columns)


def _posterior_params(tree, draws: int) -> dict:
    """`draws` of each participant's posterior, participant-major (as design_replicates wants)."""
    post = tree["posterior"]
    out = {}
    for name in post.data_vars:
        values = post[name].values.reshape(-1, post.sizes["participant"]).T  # (participants, chain * draw)
        take = np.linspace(0, values.shape[1] - 1, draws).round().astype(int)
        out[name] = values[:, take].reshape(-1)
    return out


def gap_report(posterior, study: Study, design, out, draws: int = 1000, replicates: int = 199,
               seed: int = 0, source: str = "") -> dict:
    """The gap report of `study` through `posterior` (an AmortizedPosterior) under `design`:
    writes gap.csv (per participant), correlations.csv, summary.json, report.md,
    percentiles.png and correlations.png to `out`, and returns the summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    raw = posterior.infer(study, draws=draws, seed=seed, design=design, check=True)
    refined = posterior.infer(study, draws=draws, seed=seed, design=design, refine=True)
    study = posterior._readable(study)
    settings = DesignSettings.of(design, study)
    observed = data_features(study)
    prior_study, _ = design_replicates(study, settings, posterior.config.priors, replicates, seed + 1)
    prior = _percentiles(observed, data_features(prior_study), replicates)
    post_study, _ = design_replicates(study, settings, _posterior_params(refined, POSTERIOR_DRAWS),
                                      POSTERIOR_DRAWS, seed + 2)
    post = _percentiles(observed, data_features(post_study), POSTERIOR_DRAWS)
    check = posterior.misspecification(study, design=design, replicates=replicates, seed=seed + 3)
    importance = refined["importance"].to_dataset()
    table = observed.add_prefix("data_").join(prior.add_prefix("prior_pct_")).join(post.add_prefix("post_pct_"))
    table["khat"] = raw["importance"]["khat"].values
    table["above_threshold"] = raw["importance"]["above_threshold"].values
    table["trusted"] = importance["trusted"].values
    table["p_unlike_training"] = check.participants["p_value"].values
    names = list(posterior.parameter_names)
    for name in names:
        before, after = raw["posterior"][name].values[0].T, refined["posterior"][name].values[0].T
        sd = after.std(axis=1, ddof=1)
        table[f"error_{name}"] = (before.mean(axis=1) - after.mean(axis=1)) / sd
        table[f"sd_ratio_{name}"] = before.std(axis=1, ddof=1) / sd
    table.to_csv(out / "gap.csv")
    trusted = table[table["trusted"]]
    rows = []
    for feature in observed.columns:
        for name in names:
            pairs = trusted[[f"prior_pct_{feature}", f"error_{name}"]].dropna()
            r, p = spearmanr(pairs.iloc[:, 0], pairs.iloc[:, 1]) if len(pairs) > 3 else (np.nan, np.nan)
            rows.append({"feature": feature, "parameter": name, "spearman_r": r, "p_value": p, "n": len(pairs)})
    correlations = pd.DataFrame(rows)
    correlations.to_csv(out / "correlations.csv", index=False)
    summary = _summary(table, observed.columns, names, correlations, check, study, source, replicates, draws)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=float) + "\n")
    (out / "report.md").write_text(_markdown(summary, posterior.source) + "\n")
    _plot_percentiles(prior, post, out / "percentiles.png")
    _plot_correlations(correlations, out / "correlations.png")
    return summary


def _summary(table, features, names, correlations, check, study, source, replicates, draws) -> dict:
    lo, hi = OUTSIDE

    def outside(prefix, feature):
        x = table[f"{prefix}{feature}"].dropna()
        return float(((x < lo) | (x > hi)).mean()) if len(x) else float("nan")

    strongest = correlations.loc[correlations["spearman_r"].abs().sort_values(ascending=False).index[:8]]
    return {
        "source": source, "participants": int(study.n_participants), "draws": draws, "replicates": replicates,
        "above_threshold": int(table["above_threshold"].sum()), "trusted": int(table["trusted"].sum()),
        "unlike_training": int(check.participants["unlike_training"].sum()),
        "study_mmd_p_value": check.study_p_value,
        "features": {f: {"outside_prior": outside("prior_pct_", f), "outside_posterior": outside("post_pct_", f),
                         "median_prior_percentile": float(table[f"prior_pct_{f}"].median())} for f in features},
        "raw_error": {n: {"median_abs_error": float(table.loc[table["trusted"], f"error_{n}"].abs().median()),
                          "median_signed_error": float(table.loc[table["trusted"], f"error_{n}"].median()),
                          "median_sd_ratio": float(table.loc[table["trusted"], f"sd_ratio_{n}"].median())}
                      for n in names},
        "strongest": strongest.to_dict(orient="records")}


def _markdown(summary, network) -> str:
    lo, hi = OUTSIDE
    lines = [f"# Where the raw network departs from the exact posterior: {Path(summary['source']).name or 'data'}", "",
             f"`{network}`, {summary['participants']} participants; raw k-hat above the threshold for "
             f"{summary['above_threshold']}, corrected posteriors trusted for {summary['trusted']}; unlike "
             f"simulations of their own design (misspecification check, {summary['replicates']} replicates): "
             f"{summary['unlike_training']}, the study's MMD p-value {summary['study_mmd_p_value']:.3f}. "
             "Per participant: [`gap.csv`](gap.csv).", "",
             "The raw network against the corrected posterior (trusted participants; error = raw mean minus "
             "corrected mean, in corrected sds):", "",
             "| parameter | median abs. error | median signed error | median sd ratio |", "|---|---|---|---|"]
    for name, e in summary["raw_error"].items():
        lines.append(f"| {name} | {e['median_abs_error']:.2f} | {e['median_signed_error']:+.2f} | "
                     f"{e['median_sd_ratio']:.2f} |")
    lines += ["", f"The data's features among simulations of each participant's own design: from the priors "
                  f"(the training data) and from its exact posterior; share of participants outside the central "
                  f"{100 * (hi - lo):.0f}% of each:", "",
              "| feature | outside the prior predictive | median prior percentile | outside the posterior "
              "predictive |", "|---|---|---|---|"]
    for name, f in summary["features"].items():
        lines.append(f"| {name} | {f['outside_prior']:.2f} | {f['median_prior_percentile']:.2f} | "
                     f"{f['outside_posterior']:.2f} |")
    lines += ["", "The strongest associations of a parameter's raw error with a feature's prior-predictive "
                  "percentile (Spearman, trusted participants; all in [`correlations.csv`](correlations.csv)):", "",
              "| feature | parameter | r | p |", "|---|---|---|---|"]
    for row in summary["strongest"]:
        lines.append(f"| {row['feature']} | {row['parameter']} | {row['spearman_r']:+.2f} | {row['p_value']:.3g} |")
    lines += ["", "![percentiles](percentiles.png)", "", "![correlations](correlations.png)"]
    return "\n".join(lines)


def _plot_percentiles(prior, post, path):
    features = list(prior.columns)
    fig = Figure(figsize=(2.4 * len(features), 2.6))
    axes = fig.subplots(1, len(features), squeeze=False)[0]
    bins = np.linspace(0, 1, 11)
    for ax, feature in zip(axes, features):
        ax.hist(prior[feature].dropna(), bins=bins, color="C0", alpha=0.6, label="prior predictive")
        ax.hist(post[feature].dropna(), bins=bins, histtype="step", color="C1", lw=1.5, label="posterior predictive")
        ax.set_title(feature, fontsize=8)
        ax.set_xlabel("percentile of the data")
    axes[0].set_ylabel("participants")
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _plot_correlations(correlations, path):
    grid = correlations.pivot(index="feature", columns="parameter", values="spearman_r")
    fig = Figure(figsize=(1.2 * grid.shape[1] + 2.5, 0.4 * grid.shape[0] + 1.2))
    ax = fig.subplots()
    image = ax.imshow(grid.to_numpy(), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    ax.set_xticks(range(grid.shape[1]), grid.columns)
    ax.set_yticks(range(grid.shape[0]), grid.index)
    for (i, j), r in np.ndenumerate(grid.to_numpy()):
        if np.isfinite(r):
            ax.text(j, i, f"{r:+.2f}", ha="center", va="center", fontsize=7)
    fig.colorbar(image, ax=ax, label="Spearman r: raw error vs prior-predictive percentile")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def gap_table(root: str | Path) -> str:
    """The markdown table of the gap reports under root/<name>/summary.json: per report, the
    raw errors and the share of participants outside the prior and posterior predictive of
    their fastest and slowest responses."""
    lines = ["| data, network | raw k-hat above | unlike the training data | median abs. raw error per parameter | "
             "fastest RT outside: prior / posterior predictive | slowest RT outside: prior / posterior |",
             "|---|---|---|---|---|---|"]
    for path in sorted(Path(root).glob("*/summary.json")):
        s = json.loads(path.read_text())
        errors = ", ".join(f"{n} {e['median_abs_error']:.2f}" for n, e in s["raw_error"].items())
        f = s["features"]

        def both(name):
            return f"{f[name]['outside_prior']:.2f} / {f[name]['outside_posterior']:.2f}" if name in f else "-"

        lines.append(f"| {path.parent.name} | {s['above_threshold']} of {s['participants']} | {s['unlike_training']} "
                     f"| {errors} | {both('fastest_rt')} | {both('slowest_rt')} |")
    return "\n".join(lines)

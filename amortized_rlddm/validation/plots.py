"""Figures of posteriors: per-participant forest plots and recovery against known truth."""

import numpy as np
from matplotlib.figure import Figure


def _interval_columns(summary):
    lower = next(c for c in summary.columns if c.startswith("hdi_") and c.endswith("_lower"))
    return lower, lower.replace("_lower", "_upper"), lower.split("_")[1]


def plot_recovery(summary, truth, path):
    """Posterior mean and HDI against the true value, one panel per parameter."""
    lower, upper, pct = _interval_columns(summary)
    names = list(dict.fromkeys(summary["parameter"]))
    truth = truth.assign(participant=truth["participant"].astype(str)).set_index("participant")
    fig = Figure(figsize=(3.2 * len(names), 3.3))
    axes = fig.subplots(1, len(names), squeeze=False)
    for ax, name in zip(axes[0], names):
        rows = summary[summary["parameter"] == name]
        true = truth.loc[rows["participant"].astype(str), name].to_numpy()
        mean = rows["mean"].to_numpy()
        ax.errorbar(true, mean, yerr=[mean - rows[lower], rows[upper] - mean], fmt="o", ms=3,
                    alpha=0.7, elinewidth=0.8)
        lo, hi = min(true.min(), rows[lower].min()), max(true.max(), rows[upper].max())
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls="--")
        r = np.corrcoef(true, mean)[0, 1] if len(true) > 2 else np.nan
        ax.set_title(f"{name}   r = {r:.2f}")
        ax.set_xlabel("true value")
    axes[0][0].set_ylabel(f"posterior mean and {pct}% HDI")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_posteriors(summary, path):
    """Forest plot: each participant's posterior mean and HDI, one panel per parameter; with a
    ``trusted`` column, the participants whose posterior failed the exact check are drawn in
    red with open markers and named in red."""
    lower, upper, pct = _interval_columns(summary)
    names = list(dict.fromkeys(summary["parameter"]))
    n = summary["participant"].nunique()
    fig = Figure(figsize=(2.6 * len(names), 1.2 + 0.22 * n))
    axes = fig.subplots(1, len(names), squeeze=False, sharey=True)
    for ax, name in zip(axes[0], names):
        rows = summary[summary["parameter"] == name]
        y = np.arange(len(rows))
        trusted = rows["trusted"].to_numpy(bool) if "trusted" in rows else np.ones(len(rows), bool)
        for keep, color, face in ((trusted, "C0", "C0"), (~trusted, "C3", "none")):
            ax.hlines(y[keep], rows[lower][keep], rows[upper][keep], lw=1.2, color=color)
            ax.plot(rows["mean"][keep], y[keep], "o", ms=3, color=color, markerfacecolor=face)
        ax.set_title(name)
    axes[0][0].set_yticks(np.arange(n), summary["participant"].iloc[:n].astype(str))
    if "trusted" in summary:
        for label, ok in zip(axes[0][0].get_yticklabels(), summary["trusted"].iloc[:n].to_numpy(bool)):
            label.set_color("black" if ok else "C3")
    axes[0][0].invert_yaxis()
    untrusted = int((~summary.drop_duplicates("participant")["trusted"].to_numpy(bool)).sum()) \
        if "trusted" in summary else 0
    fig.suptitle(f"posterior means and {pct}% HDIs" + (f"; red: {untrusted} not trusted (exact check failed)"
                                                        if untrusted else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)

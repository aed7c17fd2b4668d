"""The power analysis of a design (`rlddm power`): how well each parameter is recovered at each
trial count, from one network that serves them all."""

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from .diagnostics import compute_metrics, simulate_and_infer


def power_analysis(posterior, trial_counts, n_datasets, seed, out_dir, draws=500, progress=False):
    """Power analysis over trial counts: recovery correlation and contraction per parameter
    at each count (one network serves them all). Writes power.csv and power.png.
    progress: a progress bar over the trial counts."""
    for n in trial_counts:  # refuse a count the network does not serve before simulating any
        posterior.design_with_trials(n)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for k, n in enumerate(tqdm(trial_counts, desc="power: trial counts", disable=not progress)):
        truth, samples, _ = simulate_and_infer(posterior, n_datasets, seed + k, draws, n_trials=n)
        for name, m in compute_metrics(samples, truth).items():
            rows.append({"trials": n, "parameter": name, "correlation": m["correlation"],
                         "contraction": m["contraction"], "calibration_error": m["calibration_error"]})
    table = pd.DataFrame(rows)
    table.to_csv(out / "power.csv", index=False)
    fig = Figure(figsize=(9, 3.4))
    axes = fig.subplots(1, 2)
    for name, part in table.groupby("parameter", sort=False):
        style = dict(lw=2.5) if name.startswith("alpha") else dict(lw=1, alpha=0.7)
        axes[0].plot(part["trials"], part["correlation"], "o-", label=name, **style)
        axes[1].plot(part["trials"], part["contraction"], "o-", label=name, **style)
    axes[0].set_ylabel("r(posterior mean, truth)")
    axes[1].set_ylabel("posterior contraction")
    for ax in axes:
        ax.set_xlabel("trials per participant")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "power.png", dpi=100)
    return table

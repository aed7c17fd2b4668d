"""Recovery and calibration diagnostics of a trained network (`rlddm diagnose`).

Fresh datasets are simulated from the checkpoint's own priors and design and inferred with
the network. BayesFlow's `bf.diagnostics` computes calibration error, posterior contraction,
NRMSE and draws the recovery, SBC-ECDF, z-score/contraction and coverage figures; this module
adds what it lacks: coverage at fixed levels, whether each rank ECDF stays inside its 95%
simultaneous band, and the learning rate's recovery split by |v| and by trial count.
"""

import json
import logging
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from scipy.stats import binom
from tqdm.auto import tqdm

from ..logs import native_logs_withheld
from ..model.designs import named_design
from ..model.simulator import simulate

with native_logs_withheld():  # TensorFlow's import prints native log lines; see amortized_rlddm.logs
    import bayesflow as bf

COVERAGE_LEVELS = (0.5, 0.9, 0.95)
DRIFT_BINS = (0.0, 0.5, 1.0, 2.0, 3.0, np.inf)
BETA_BINS = (0.0, 2.0, 5.0, 10.0, 20.0, np.inf)  # a choice-only model's inverse temperature


def _information_scale(truth):
    """What the learning rates' information grows with: (its name, the datasets' values, the
    bins, a label): the drift scaling |v| of the RL-DDM, or a choice-only model's inverse
    temperature beta."""
    if "v" in truth:
        return "abs_v", np.abs(np.asarray(truth["v"], float)), DRIFT_BINS, "|v|"
    return "beta", np.asarray(truth["beta"], float), BETA_BINS, "beta"


def simulate_and_infer(posterior, n_datasets, seed, draws=1000, n_trials=None, refine=False, design=None):
    """Draw truths from the priors, simulate, infer (refined: corrected with the exact posterior; the same data
    and truths as unrefined for one seed). `design`: a TaskDesign to simulate and infer with
    its settings (default: the network's own, which a general network lacks). Returns
    (truth dict of (n,), draws dict of (n, draws), trial counts)."""
    rng = np.random.default_rng(seed)
    truth = posterior.config.priors.sample(rng, n_datasets)
    if design is None:
        design = posterior.design_with_trials(n_trials) if n_trials is not None or posterior.serves_family \
            else posterior.design
    elif n_trials is not None:
        design = replace(design, n_trials=int(n_trials))
    study = simulate(truth, design, seed=int(rng.integers(2**63)))
    tree = posterior.infer(study, draws=draws, seed=int(rng.integers(2**63)), refine=refine, design=design)
    post = tree["posterior"]
    samples = {name: post[name].isel(chain=0).transpose("participant", "draw").values for name in truth}
    return truth, samples, study.n_trials


@lru_cache(maxsize=16)  # every parameter and replication of a report shares one band
def simultaneous_ecdf_band(n, confidence=0.95, points=1000, simulations=1000, seed=0):
    """The simultaneous band of the ECDF of n uniform ranks (Säilynoja, Bürkner & Vehtari
    2022, section 2.2): (evaluation points, lower, upper). The algorithm, defaults and
    random draws of BayesFlow's `simultaneous_ecdf_bands`, with two differences: the
    simulated ECDFs come from sorted samples, not from comparing every point with every
    draw (n x points x simulations in memory: 20 GB at n = 20,000), and their counts stay
    integers (BayesFlow's n * (count / n) can round below one and move its band by 1/n at
    a few points; at n = 1,000 the two bands are identical)."""
    z = np.linspace(1e-5, 1 - 1e-5, min(n, points))
    # BayesFlow draws its simulations from NumPy's seeded global generator: the same stream,
    # from a generator of this function's own
    u = np.sort(np.random.RandomState(seed).uniform(size=(simulations, n)), axis=1)
    counts = np.stack([np.searchsorted(row, z, side="right") for row in u], axis=1)  # (points, simulations)
    binomial = binom(n, z[:, None])
    coverage = 2 * np.minimum(binomial.cdf(counts), 1 - binomial.cdf(counts - 1)).min(axis=0)
    gamma = np.percentile(coverage, 100 * (1 - confidence))
    return z, binom(n, z).ppf(gamma / 2) / n, binom(n, z).ppf(1 - gamma / 2) / n


def rank_ecdf_band_exits(ranks, confidence=0.95, seed=0):
    """Where the ECDF of fractional ranks leaves the simultaneous uniform band: for each side
    it crosses, [lowest rank, highest rank, "above" | "below"]; empty when it stays inside.

    "above": more true values than expected rank at or below there; "below": fewer. Above
    near rank 1 means too few truths in the posteriors' upper tails (tails too long); below
    near rank 0 the same for the lower tails. The band narrows towards ranks 0 and 1, so
    such a tail misfit fails the check while the plotted ECDF difference still looks small."""
    z, lower, upper = simultaneous_ecdf_band(len(ranks), confidence, seed=seed)
    ecdf = np.searchsorted(np.sort(ranks), z, side="right") / len(ranks)
    exits = []
    for side, outside in (("above", ecdf > upper), ("below", ecdf < lower)):
        if outside.any():
            exits.append([round(float(z[outside].min()), 3), round(float(z[outside].max()), 3), side])
    return sorted(exits)


def fractional_ranks(draws, true, rng):
    """Each truth's rank r in {0..L} among its L posterior draws, jittered to (r + U) / (L + 1):
    exactly uniform on (0, 1) under calibration, so discrete ranks at 0 or 1 cannot fall
    outside the band ends. draws: (datasets, L); true: (datasets,)."""
    jitter = rng.random(len(true))
    return (np.sum(draws < np.asarray(true, float)[:, None], axis=1) + jitter) / (draws.shape[1] + 1)


def tail_counts(ranks):
    """How many truths fall below their posteriors' 1% and 5% quantiles and above the 95%
    and 99% ones, and how many calibration expects."""
    n = len(ranks)
    observed = {"below_1": int(np.sum(ranks < 0.01)), "below_5": int(np.sum(ranks < 0.05)),
                "above_95": int(np.sum(ranks > 0.95)), "above_99": int(np.sum(ranks > 0.99))}
    expected = {"below_1": 0.01 * n, "below_5": 0.05 * n, "above_95": 0.05 * n, "above_99": 0.01 * n}
    return observed, expected


def replication_summary(rank_sets, exits, calibration_errors, confidence=0.95):
    """Calibration of one parameter over independent replications of the diagnostics.

    A simultaneous band is left by chance in 1 - confidence of the replications, so one
    exit in one report says little. This counts the exits against that rate (with the
    binomial probability of at least as many by chance) and tests all ranks pooled, whose
    narrower band shows a systematic misfit too small for one report to resolve.
    rank_sets, exits, calibration_errors: per replication, its fractional ranks, its band
    exits (rank_ecdf_band_exits) and its calibration error."""
    count = sum(bool(e) for e in exits)
    pooled = np.sort(np.concatenate(rank_sets))
    observed, expected = tail_counts(pooled)
    grid = np.linspace(0, 1, 1001)
    difference = np.searchsorted(pooled, grid, side="right") / len(pooled) - grid
    largest = int(np.argmax(np.abs(difference)))
    return {"replications": len(rank_sets), "band_exits": exits, "exit_count": count,
            "exit_rate_by_chance": 1 - confidence,
            "p_at_least_as_many_exits": float(binom.sf(count - 1, len(rank_sets), 1 - confidence)),
            "calibration_errors": [float(c) for c in calibration_errors],
            "pooled_datasets": len(pooled), "pooled_band_exits": rank_ecdf_band_exits(pooled, confidence),
            "pooled_max_ecdf_difference": [float(difference[largest]), float(grid[largest])],
            "pooled_tails": observed, "pooled_tails_expected": expected}


def ecdf_cell(m):
    """The 'ECDF in 95% band' cell of a metrics table: yes, or no and where it leaves."""
    if m["ecdf_inside_95_band"]:
        return "yes"
    exits = m.get("ecdf_band_exits") or []
    spans = [f"{d} at {a:.2f}" + ("" if f"{a:.2f}" == f"{b:.2f}" else f"-{b:.2f}") for a, b, d in exits]
    return "no" + (": " + ", ".join(spans) if spans else "")


def compute_metrics(samples, truth):
    """Per parameter: correlation of posterior mean with truth, NRMSE, calibration error,
    mean posterior contraction, 50/90/95% central-interval coverage, and whether the rank
    ECDF lies inside the 95% simultaneous band.

    samples: name -> (datasets, draws); truth: name -> (datasets,).
    """
    names = list(truth)
    est = {n: samples[n][..., None] for n in names}
    tgt = {n: np.asarray(truth[n], float)[:, None] for n in names}
    cal = bf.diagnostics.metrics.calibration_error(est, tgt)["values"]
    con = bf.diagnostics.metrics.posterior_contraction(est, tgt, aggregation=np.mean)["values"]
    bayesflow_log = logging.getLogger("bayesflow")
    level = bayesflow_log.level
    bayesflow_log.setLevel(logging.ERROR)  # it warns of its new default even when told normalize="range"
    try:
        rmse = bf.diagnostics.metrics.root_mean_squared_error(est, tgt, normalize="range")["values"]
    finally:
        bayesflow_log.setLevel(level)
    metrics = {}
    for k, n in enumerate(names):
        draws, true = samples[n], np.asarray(truth[n], float)
        mean = draws.mean(1)
        coverage = {}
        for level in COVERAGE_LEVELS:
            lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=1)
            coverage[f"{int(round(level * 100))}"] = float(np.mean((true >= lo) & (true <= hi)))
        exits = rank_ecdf_band_exits(fractional_ranks(draws, true, np.random.default_rng(k)))
        metrics[n] = {"correlation": float(np.corrcoef(mean, true)[0, 1]), "nrmse": float(rmse[k]),
                      "calibration_error": float(cal[k]), "contraction": float(con[k]),
                      "coverage": coverage, "ecdf_inside_95_band": not exits, "ecdf_band_exits": exits}
    return metrics


def _recovery_by_scale(samples, truth):
    """{"alpha_by_<scale>": the learning rates' recovery in bins of :func:`_information_scale`}."""
    name, values, bins, _ = _information_scale(truth)
    return {f"alpha_by_{name}": _binned_recovery(samples, truth, values, bins, name)}


def _binned_recovery(samples, truth, key, bins, label):
    """Learning-rate recovery within bins of another quantity: list of dicts."""
    rows = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        sel = (key >= lo) & (key < hi)
        if sel.sum() < 5:
            continue
        m = compute_metrics({n: samples[n][sel] for n in samples}, {n: truth[n][sel] for n in truth})
        rows.append({label: [float(lo), float(hi) if np.isfinite(hi) else None], "datasets": int(sel.sum()),
                     **{n: {"correlation": m[n]["correlation"], "contraction": m[n]["contraction"]}
                        for n in m if n.startswith("alpha")}})
    return rows


def _plot_binned(samples, truth, key, bins, title, path):
    rates = [n for n in truth if n.startswith("alpha")]
    panels = [(lo, hi) for lo, hi in zip(bins[:-1], bins[1:]) if ((key >= lo) & (key < hi)).sum() >= 5]
    fig = Figure(figsize=(2.9 * len(panels), 2.9 * len(rates)))
    axes = fig.subplots(len(rates), len(panels), squeeze=False, sharex=True, sharey=True)
    for r, name in enumerate(rates):
        for c, (lo, hi) in enumerate(panels):
            ax = axes[r][c]
            sel = (key >= lo) & (key < hi)
            med = np.median(samples[name][sel], axis=1)
            q = np.quantile(samples[name][sel], [0.05, 0.95], axis=1)
            ax.errorbar(truth[name][sel], med, yerr=[med - q[0], q[1] - med], fmt="o", ms=2, alpha=0.4,
                        elinewidth=0.5)
            ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=0.8)
            r_val = np.corrcoef(med, truth[name][sel])[0, 1]
            ax.set_title(f"{title} [{lo:g}, {hi:g})\n{name}: r = {r_val:.2f}, n = {sel.sum()}", fontsize=9)
            ax.set_xlabel(f"true {name}")
        axes[r][0].set_ylabel("posterior median, 90% interval")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def write_figures(samples, truth, n_trials, out):
    """Every figure of the diagnostics report, into directory `out`."""
    import matplotlib.pyplot as plt

    names = list(truth)
    est = {n: samples[n][..., None] for n in names}
    tgt = {n: np.asarray(truth[n], float)[:, None] for n in names}
    figures = {
        "recovery.png": bf.diagnostics.plots.recovery(
            est, tgt, point_agg=np.median, uncertainty_agg_kwargs={"prob": 0.9}),
        "calibration_ecdf.png": bf.diagnostics.plots.calibration_ecdf(est, tgt, difference=True),
        "z_score_contraction.png": bf.diagnostics.plots.z_score_contraction(est, tgt),
        "coverage.png": bf.diagnostics.plots.coverage(est, tgt, difference=True),
    }
    for name, fig in figures.items():  # BayesFlow draws with pyplot: close what it opened
        fig.savefig(out / name, dpi=90)
        plt.close(fig)
    _, scale, bins, label = _information_scale(truth)
    _plot_binned(samples, truth, scale, bins, f"{label} in", out / "alpha_by_drift.png")
    trial_bins = _trial_bins(n_trials)
    _plot_binned(samples, truth, n_trials, trial_bins, "trials in", out / "alpha_by_trials.png")


def _trial_bins(n_trials):
    lo, hi = int(n_trials.min()), int(n_trials.max()) + 1
    if hi - lo <= 1:
        return np.array([lo, hi])
    return np.unique(np.linspace(lo, hi, 5).round().astype(int))


def calibration_replications(posterior, n_datasets, seed, replications, draws=1000, first=None, done=None,
                             design=None):
    """Repeat the calibration check on `replications` independent sets of n_datasets fresh
    datasets (seeds seed, seed + 1, ...): per parameter, replication_summary, plus the pooled
    tail counts within bins of the trial count (the one design quantity that varies between
    datasets, so conditioning on it keeps the ranks uniform under calibration). `first`, the
    (truth, samples, trial counts) of seed's set when already inferred, is reused. done: called
    after each set (a progress bar's update). design: as in simulate_and_infer."""
    ranks, exits, errors, trials = {}, {}, {}, []
    for r in range(replications):
        truth, samples, n_trials = first if (r == 0 and first is not None) else \
            simulate_and_infer(posterior, n_datasets, seed + r, draws, design=design)
        trials.append(n_trials)
        metrics = compute_metrics(samples, truth)
        if done is not None and not (r == 0 and first is not None):
            done()
        for k, name in enumerate(truth):
            # the pooled ranks get a jitter of their own per replication, independent across them
            rng = np.random.default_rng([seed + r, k])
            ranks.setdefault(name, []).append(fractional_ranks(samples[name], truth[name], rng))
            exits.setdefault(name, []).append(metrics[name]["ecdf_band_exits"])
            errors.setdefault(name, []).append(metrics[name]["calibration_error"])
    trials = np.concatenate(trials)
    bins = _trial_bins(trials)
    by_trials = {}
    for name in ranks:
        pooled = np.concatenate(ranks[name])
        by_trials[name] = []
        for lo, hi in zip(bins[:-1], bins[1:]):
            in_bin = (trials >= lo) & (trials < hi)
            if not in_bin.any():
                continue
            observed, expected = tail_counts(pooled[in_bin])
            by_trials[name].append({"trials": [int(lo), int(hi) - 1], "observed": observed, "expected": expected})
    return {"datasets_each": n_datasets, "seeds": [seed + r for r in range(replications)],
            "parameters": {n: replication_summary(ranks[n], exits[n], errors[n]) for n in ranks},
            "pooled_tails_by_trials": by_trials}


def diagnose(posterior, n_datasets, seed, out_dir, draws=1000, replications=1, progress=False, refine=False,
             design=None):
    """Simulate, infer, write figures, metrics.json and report.md; returns the metrics.
    design: a name of NAMED_DESIGNS or a TaskDesign to simulate (default: the network's own;
    a general network needs one).
    With replications > 1 the calibration check is repeated on that many independent sets
    of n_datasets (the first is the report's own; see calibration_replications). With
    refine, the first set's corrected posteriors (`infer(refine=True)`) are scored too, beside the raw ones.
    progress: a progress bar over the sets of datasets and the figures."""
    if replications < 1:
        raise ValueError(f"replications: expected at least 1 set of datasets, got {replications}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=replications + 1, desc=f"diagnose: sets of {n_datasets} datasets, then figures",
               disable=not progress)
    design_name = design if isinstance(design, str) else None
    design = named_design(design) if isinstance(design, str) else design
    truth, samples, n_trials = simulate_and_infer(posterior, n_datasets, seed, draws, design=design)
    bar.update()
    metrics = {"checkpoint": posterior.source, "datasets": n_datasets, "draws": draws, "seed": seed,
               "design": design_name or ("the network's" if design is None else design.to_dict()),
               "trial_range": [int(n_trials.min()), int(n_trials.max())],
               "parameters": compute_metrics(samples, truth),
               **_recovery_by_scale(samples, truth),
               "alpha_by_trials": _binned_recovery(samples, truth, n_trials, _trial_bins(n_trials), "trials")}
    if refine:
        _, refined, _ = simulate_and_infer(posterior, n_datasets, seed, draws, refine=True, design=design)
        metrics["refined_parameters"] = compute_metrics(refined, truth)
    if replications > 1:
        metrics["replications"] = calibration_replications(posterior, n_datasets, seed, replications, draws,
                                                           first=(truth, samples, n_trials), done=bar.update,
                                                           design=design)
    write_figures(samples, truth, n_trials, out)
    bar.update()
    bar.close()
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    (out / "report.md").write_text(report_markdown(metrics))
    return metrics


def metrics_table(parameters):
    """Markdown table of the per-parameter metrics."""
    lines = ["| parameter | r(mean, truth) | NRMSE | calibration error | contraction | coverage 50 / 90 / 95% "
             "| ECDF in 95% band |",
             "|---|---|---|---|---|---|---|"]
    for name, m in parameters.items():
        cov = " / ".join(f"{m['coverage'][k]:.2f}" for k in ("50", "90", "95"))
        lines.append(f"| {name} | {m['correlation']:.3f} | {m['nrmse']:.3f} | {m['calibration_error']:.3f} | "
                     f"{m['contraction']:.3f} | {cov} | {ecdf_cell(m)} |")
    return "\n".join(lines)


def _design_words(design):
    """How a report names the design its datasets came from."""
    if design is None or design == "the network's":
        return "design"
    return f"design `{design}`" if isinstance(design, str) else f"design {design}"


def report_markdown(metrics):
    lines = [f"# Diagnostics of `{metrics['checkpoint']}`", "",
             f"{metrics['datasets']} datasets simulated from the network's priors and "
             f"{_design_words(metrics.get('design'))} "
             f"({metrics['trial_range'][0]}-{metrics['trial_range'][1]} trials), {metrics['draws']} posterior "
             f"draws each, seed {metrics['seed']}.", "", metrics_table(metrics["parameters"]), "",
             "NRMSE is normalised by the range of the true values; contraction is 1 - posterior "
             "variance / prior variance (mean over datasets); calibration error is the median absolute "
             "gap between nominal and empirical coverage over 20 central intervals.", ""]
    if "refined_parameters" in metrics:
        lines += ["## Corrected posteriors of the same datasets", "",
                  "Each participant's draws corrected with the exact posterior (`infer(refine=True)`: "
                  "importance resampling, adaptive importance sampling, DE-MCz), beside the raw table above.", "",
                  metrics_table(metrics["refined_parameters"]), ""]
    scale = "abs_v" if "alpha_by_abs_v" in metrics else "beta"
    lines += [f"## Learning-rate recovery by {'|v| (drift scaling)' if scale == 'abs_v' else 'beta'}", "",
              f"| {'abs(v)' if scale == 'abs_v' else 'beta'} | datasets | r(alpha) | contraction(alpha) |",
              "|---|---|---|---|"]
    for key in (f"alpha_by_{scale}", "alpha_by_trials"):
        if key == "alpha_by_trials":
            lines += ["", "## Learning-rate recovery by number of trials", "",
                      "| trials | datasets | r(alpha) | contraction(alpha) |", "|---|---|---|---|"]
        for row in metrics[key]:
            bounds = row[scale] if scale in row else row["trials"]
            label = f"[{bounds[0]:g}, {bounds[1]:g})" if bounds[1] is not None else f">= {bounds[0]:g}"
            rates = [n for n in row if n.startswith("alpha")]
            for name in rates:
                lines.append(f"| {label}{'' if len(rates) == 1 else ' ' + name} | {row['datasets']} | "
                             f"{row[name]['correlation']:.3f} | {row[name]['contraction']:.3f} |")
    if "replications" in metrics:
        lines += ["", *replications_markdown(metrics["replications"])]
    lines += ["", "Figures: recovery.png, calibration_ecdf.png, z_score_contraction.png, coverage.png, "
              "alpha_by_drift.png, alpha_by_trials.png."]
    return "\n".join(lines) + "\n"


def replications_markdown(rep):
    """The report's section on calibration over independent replications."""
    seeds, each = rep["seeds"], rep["datasets_each"]
    k, pooled = len(seeds), each * len(seeds)
    lines = [f"## Calibration over {k} independent replications", "",
             f"{k} sets of {each} fresh datasets (seeds {seeds[0]}-{seeds[-1]}; the first is the one above). "
             "A simultaneous 95% band is left by chance in 5% of the sets, so with five parameters one "
             "report shows an exit somewhere about a quarter of the time. Counted against that rate, and "
             f"pooled over all {pooled} datasets (a band about {np.sqrt(k):.1f} times narrower), a systematic "
             "misfit shows where one report's exit cannot tell it from chance.", "",
             f"| parameter | band exits in {k} sets (expected {0.05 * k:.1f}) | P(at least as many by chance) | "
             "calibration error, mean / max | pooled ECDF in 95% band | pooled ECDF - rank, largest (at rank) | "
             f"truths below the posterior's 1% / 5% quantile (expected {0.01 * pooled:.0f} / {0.05 * pooled:.0f}) "
             "| above its 95% / 99% |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in rep["parameters"].items():
        where = ", ".join(f"{d} at {a:.3f}" + ("" if a == b else f"-{b:.3f}") for a, b, d in r["pooled_band_exits"])
        t = r["pooled_tails"]
        gap, at = r["pooled_max_ecdf_difference"]
        lines.append(f"| {name} | {r['exit_count']} | {r['p_at_least_as_many_exits']:.2f} | "
                     f"{np.mean(r['calibration_errors']):.3f} / {max(r['calibration_errors']):.3f} | "
                     f"{'no: ' + where if where else 'yes'} | {gap:+.4f} ({at:.2f}) | "
                     f"{t['below_1']} / {t['below_5']} | {t['above_95']} / {t['above_99']} |")
    by_trials = rep["pooled_tails_by_trials"]
    first = next(iter(by_trials.values()))
    smallest = min(row["expected"]["below_5"] for row in first)
    lines += ["", "Pooled, by trial count: truths below the posteriors' 5% quantile / above their 95% one, "
              "as a share of the expected (1 when calibrated; below 1 the posteriors are too wide in that "
              "tail, above 1 too narrow; the binomial sd of a share is at most "
              f"{np.sqrt(0.95 / smallest):.2f} here):", "",
              "| parameter | " + " | ".join(f"{row['trials'][0]}-{row['trials'][1]} trials "
                                         f"({row['expected']['below_5'] / 0.05:.0f} datasets)" for row in first) + " |",
              "|---|" + "---|" * len(first)]
    for name, rows in by_trials.items():
        cells = [f"{row['observed']['below_5'] / row['expected']['below_5']:.2f} / "
                 f"{row['observed']['above_95'] / row['expected']['above_95']:.2f}" for row in rows]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines

"""Validation of the group level (`rlddm validate group`): the amortized hierarchical sampler
against the PyMC reference on simulated studies, simulation-based calibration of the group
parameters, and the figures of a group posterior (group means and sds, shrinkage, group
differences)."""

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from ..amortized.posterior import AmortizedPosterior
from ..group.fit import fit_group
from ..group.model import LKJ_ETA, GroupModel, correlation_pairs, sample_correlation_cholesky
from ..model.priors import to_natural
from ..model.simulator import simulate
from ..output import FitStore
from .diagnostics import compute_metrics, ecdf_cell

# The simulated studies' group level, on the natural scale of each parameter (its group
# mean is the transform of this value) and the group sd on the unbounded scale.
STUDY_CENTRES = {"v": 2.5, "a": 1.2, "z": 0.5, "t0": 0.35, "alpha": 0.3}
STUDY_SPREADS = {"v": 0.4, "a": 0.15, "z": 0.3, "t0": 0.2, "alpha": 0.6}
ALPHA_DIFFERENCE = 1.0  # the two-group study: group B's mu_alpha above A's (logit scale)
STUDY_CORRELATIONS = {("a", "t0"): 0.5, ("v", "alpha"): -0.4}  # the correlated study's (others 0)
# (label, participants, trials, two groups, correlated group normals, the amortized sampler's draws per
# chain as a multiple of the reference's): the correlations involving v mix slowly (at 4 x 1,000
# draws their bulk ESS was 16-26 and r-hat up to 1.20 on the correlated study), so it runs 4 times longer
STUDIES = (("20 x 60 trials", 20, 60, False, False, 1), ("50 x 120 trials", 50, 120, False, False, 1),
           ("two groups, 2 x 20 x 60 trials", 40, 60, True, False, 1),
           ("correlated, 30 x 60 trials", 30, 60, False, True, 4))


def simulate_group_study(posterior: AmortizedPosterior, participants: int, n_trials: int, two_groups: bool,
                         seed: int, correlated: bool = False):
    """A study from a known group level (STUDY_CENTRES and STUDY_SPREADS; with two groups,
    the second half's mu_alpha is ALPHA_DIFFERENCE higher; with `correlated`, the group
    normal's correlations STUDY_CORRELATIONS of the parameters the model has). Returns the
    study, the group labels and the true group means (group -> parameter -> unbounded mean)."""
    model = GroupModel(posterior.config.priors)
    space = model.space
    centre = space.forward({k: np.array([STUDY_CENTRES[k]]) for k in model.names})[0]
    spread = np.array([STUDY_SPREADS[k] for k in model.names])
    correlation = np.eye(len(model.names))
    for (a, b), value in STUDY_CORRELATIONS.items() if correlated else ():
        if a in model.names and b in model.names:
            i, j = model.names.index(a), model.names.index(b)
            correlation[i, j] = correlation[j, i] = value
    labels = np.where(np.arange(participants) < participants // 2, "A", "B") if two_groups \
        else np.full(participants, "all")
    means = {g: centre.copy() for g in dict.fromkeys(labels)}
    if two_groups:
        means["B"][model.names.index("alpha")] += ALPHA_DIFFERENCE
    rng = np.random.default_rng(seed)
    y = np.stack([means[g] for g in labels]) + spread * (rng.standard_normal((participants, len(model.names)))
                                                         @ np.linalg.cholesky(correlation).T)
    values = space.inverse(y)
    design = posterior.design_with_trials(n_trials)
    return simulate(values, design, seed=seed + 1), list(labels), means


def agreement(ours, reference, names) -> pd.DataFrame:
    """Per group-level variable: |mean difference| / reference sd and sd ratio."""
    rows = []
    for var in [f"{kind}_{name}" for kind in ("mu", "sigma", "delta_mu") for name in names] + ["rho"]:
        if var not in ours.data_vars:
            continue
        a, b = ours[var], reference[var]
        extra = [d for d in a.dims if d not in ("chain", "draw")]
        labels = a[extra[0]].values if extra else [None]
        for label in labels:
            x = a.sel({extra[0]: label}) if extra else a
            r = b.sel({extra[0]: label}) if extra else b
            x, r = x.values.ravel(), r.values.ravel()
            rows.append({"variable": var if label is None else f"{var}[{label}]",
                         "mean": x.mean(), "reference_mean": r.mean(), "sd": x.std(), "reference_sd": r.std(),
                         "abs_mean_difference_in_sd": abs(x.mean() - r.mean()) / r.std(),
                         "sd_ratio": x.std() / r.std()})
    return pd.DataFrame(rows)


def reference_posterior(study, posterior, labels, seed, draws, design=None, store=None, correlated=False):
    """The PyMC reference's posterior of a study under the study's settings (`design`,
    default: the network's; `correlated`: correlated group normals), with the amortized
    sampler's variable names: its group-level variables and the fit's attributes (seconds,
    divergences).

    `store`: a directory keeping each reference fit (its group-level draws) in a file named by
    the hash of the data and of everything else that decides the fit; a fit found there is
    read instead of run again."""
    design = design or posterior.study_design()
    settings = design.likelihood
    order = list(dict.fromkeys(labels))
    model = GroupModel(posterior.config.priors, tuple(order), correlated)
    path = None
    if store is not None:
        key = {name: getattr(settings, name) for name in ("deadline", "missing", "p_outlier", "rt_max", "q_init")}
        path = _reference_path(FitStore(store), study, model, labels, seed, draws, key)
        stored = FitStore.read(path)
        if stored is not None:
            return stored.to_dataset(), dict(stored.attrs)
    from ..group.reference import fit_reference  # PyMC loads only for the reference

    trace = fit_reference(study, model, np.asarray([order.index(g) for g in labels]), seed=seed, draws=draws,
                          settings=settings)
    post = trace["posterior"].to_dataset()
    grouped = len(order) > 1
    for name in model.names:
        mu = post[f"mu_{name}"]
        if grouped:
            post[f"delta_mu_{name}"] = (mu.isel(group=1) - mu.isel(group=0)).expand_dims(contrast=["B - A"], axis=-1)
        else:
            post[f"mu_{name}"] = mu.isel(group=0, drop=True)
    group_level = post[[v for v in post.data_vars if v.startswith(("mu_", "sigma_", "delta_mu_")) or v == "rho"]]
    attrs = {k: trace["posterior"].attrs[k] for k in ("compile_seconds", "sample_seconds", "divergences")}
    if path is not None:
        FitStore.write(group_level.astype(np.float32).assign_attrs(attrs), path)
    return group_level, attrs


def _reference_path(store, study, model, labels, seed, draws, options):
    """The file of a reference fit in `store` (a FitStore): named by the hash of the study's
    arrays and of the group labels, priors, likelihood settings, seed and draws."""
    names = ("choice", "rt", "reward", "block", "condition", "excluded", "n_trials", "q_init")
    arrays = {name: getattr(study, name) for name in names if getattr(study, name) is not None}
    settings = {"labels": [str(g) for g in labels], "priors": model.priors.to_dict(), "options": options,
                "seed": seed, "draws": draws, **({"correlated": True} if model.correlated else {})}
    return store.path(arrays, settings)


def validate(posterior: AmortizedPosterior, out, seed: int = 0, sbc_studies: int = 200, draws: int = 1000,
             progress: bool = False, reference_store=None, sbc_chains: int = 2, sbc_tune: int = 300,
             sbc_draws: int = 500, steps=("agreement", "sbc")) -> dict:
    """Write agreement.csv, timing.csv, sbc.json, report.md and figures to `out`: the simulated
    STUDIES fitted by the amortized sampler and the PyMC reference (step "agreement"), and SBC
    of the group parameters over `sbc_studies` studies of 20 x 60 trials, each fitted with
    `sbc_chains` chains of `sbc_draws` draws after `sbc_tune` (step "sbc"; step "correlated-sbc":
    the same with correlated group normals, in sbc_correlated.json). The report is made
    from the files in `out`, so one step can be run again alone. `reference_store`: see
    :func:`reference_posterior`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if "agreement" in steps:
        _agreement_studies(posterior, out, seed, draws, progress, reference_store)
    for step, file, correlated in (("sbc", "sbc.json", False), ("correlated-sbc", "sbc_correlated.json", True)):
        if step in steps:
            sbc = calibrate(posterior, sbc_studies, seed=seed + 100, chains=sbc_chains, tune=sbc_tune, draws=sbc_draws,
                            progress=progress, correlated=correlated)
            (out / file).write_text(json.dumps(sbc, indent=1) + "\n")
    return write_report(out)


def _agreement_studies(posterior, out, seed, draws, progress, reference_store):
    """The STUDIES against the PyMC reference: agreement.csv, timing.csv and the figures."""
    tables, timings = [], []
    for k, (label, participants, n_trials, two_groups, correlated, longer) in enumerate(
            tqdm(STUDIES, desc="group studies", disable=not progress)):
        study, groups, truth = simulate_group_study(posterior, participants, n_trials, two_groups, seed + k,
                                                    correlated)
        tree = fit_group(posterior, study, groups=groups if two_groups else None, draws=longer * draws, seed=seed + k,
                         correlated=correlated)
        reference, attrs = reference_posterior(study, posterior, groups, seed + k, draws, store=reference_store,
                                               correlated=correlated)
        table = agreement(tree["posterior"].to_dataset(), reference, posterior.parameter_names)
        table.insert(0, "study", label)
        tables.append(table)
        acceptance = tree["acceptance"]["acceptance_rate"].values
        timings.append({"study": label, "amortized_draws": longer * draws,
                        "amortized_seconds": tree["posterior"].attrs["seconds"],
                        "reference_seconds": attrs["compile_seconds"] + attrs["sample_seconds"],
                        "reference_divergences": attrs["divergences"],
                        "acceptance_median": float(np.median(acceptance)), "acceptance_min": float(acceptance.min()),
                        "rhat_max": float(tree["diagnostics"].to_dataset()[[v for v in tree["diagnostics"].data_vars
                                                                            if v.startswith("rhat")]]
                                          .to_array().max())})
        if k == 0:
            plot_group_posteriors(tree["posterior"].to_dataset(), out / "group_posteriors.png", reference=reference)
            plot_shrinkage(posterior, study, tree, out / "shrinkage.png")
        if two_groups:
            plot_group_difference(tree["posterior"].to_dataset(), out / "group_difference.png",
                                  truth={"alpha": ALPHA_DIFFERENCE}, reference=reference)
    agreement_table = pd.concat(tables, ignore_index=True)
    agreement_table.to_csv(out / "agreement.csv", index=False)
    pd.DataFrame(timings).to_csv(out / "timing.csv", index=False)


# HDDM's Hrl (choices alone) in our terms: its node -> (our parameter, the scale HDDM reports it on).
# Its learning rate is on the logit scale; its v scales the Q-value difference in the Wiener
# upper-boundary probability with a = 1 and z = 0.5 (hddm's wfpt.pyx, wiener_like_rl), which is
# logistic(v dQ): the softmax's beta itself.
HDDM_HRL_NODES = {"alpha": ("alpha", "logit"), "v": ("beta", "natural")}
_SCALES = {"logit": lambda x: np.log(x) - np.log1p(-x), "natural": lambda x: x}
POPULATION_DRAWS = 200  # members of the population per posterior draw, for its mean and sd on HDDM's scale


def published_comparison(tree, priors, stats_file, nodes=HDDM_HRL_NODES, seed=0):
    """The group posterior `tree` beside HDDM's published estimates (its ``print_stats`` table
    as CSV: node, mean, std, ...).

    Returns a per-subject table (each subject's posterior mean on HDDM's scale, ours and
    HDDM's ``<node>_subj.<id>``) and a group table: the population's mean and sd on HDDM's
    scale (ours: the posterior mean and sd of the mean and sd of the group normal mapped to
    that scale, by Monte Carlo; HDDM's: its nodes ``<node>`` and ``<node>_std``)."""
    published = pd.read_csv(stats_file).set_index("node")
    post = tree["posterior"].to_dataset()
    participants = [str(p) for p in post["participant"].values]
    rng = np.random.default_rng(seed)
    subjects, group = [], []
    for node, (name, scale) in nodes.items():
        missing = [p for p in participants if f"{node}_subj.{p}" not in published.index]
        if missing:
            raise ValueError(f"{stats_file}: no node {node}_subj.<id> for participants {missing[:5]}")
        ours = _SCALES[scale](post[name]).mean(("chain", "draw")).values
        subjects.append(pd.DataFrame({"participant": participants, "parameter": name, "hddm_node": node,
                                      "scale": scale, "ours": ours,
                                      "hddm": [published.loc[f"{node}_subj.{p}", "mean"] for p in participants]}))
        mu, sigma = post[f"mu_{name}"].values.ravel(), post[f"sigma_{name}"].values.ravel()
        members = mu[:, None] + sigma[:, None] * rng.standard_normal((mu.size, POPULATION_DRAWS))
        on_scale = _SCALES[scale](to_natural(members, *priors.support(name)))
        for stat, values, hddm_node in (("mean", on_scale.mean(1), node), ("sd", on_scale.std(1), f"{node}_std")):
            group.append({"parameter": name, "scale": scale, "statistic": f"population {stat}",
                          "ours_mean": values.mean(), "ours_sd": values.std(), "hddm_node": hddm_node,
                          "hddm_mean": published.loc[hddm_node, "mean"], "hddm_sd": published.loc[hddm_node, "std"]})
    return pd.concat(subjects, ignore_index=True), pd.DataFrame(group)


def plot_published(subjects, path):
    """Each subject's posterior mean, ours against HDDM's, one panel per parameter."""
    names = list(dict.fromkeys(subjects["parameter"]))
    fig = Figure(figsize=(3.6 * len(names), 3.4))
    for ax, name in zip(np.atleast_1d(fig.subplots(1, len(names))), names):
        rows = subjects[subjects["parameter"] == name]
        ax.scatter(rows["hddm"], rows["ours"], s=12)
        limits = [min(rows["hddm"].min(), rows["ours"].min()), max(rows["hddm"].max(), rows["ours"].max())]
        ax.plot(limits, limits, color="grey", lw=0.8)
        r = np.corrcoef(rows["hddm"], rows["ours"])[0, 1]
        ax.set(xlabel=f"HDDM's {rows['hddm_node'].iloc[0]} ({rows['scale'].iloc[0]})",
               ylabel=f"ours: {name} ({rows['scale'].iloc[0]})", title=f"subject means, r = {r:.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _published_lines(subjects, group):
    correlations = ", ".join(f"{name} {np.corrcoef(rows['hddm'], rows['ours'])[0, 1]:.3f}"
                             for name, rows in subjects.groupby("parameter", sort=False))
    lines = ["", "## Against HDDM's published estimates", "",
             f"Subject means, ours against HDDM's (on HDDM's scales): r = {correlations} "
             "([`published_subjects.csv`](published_subjects.csv)). The population's mean and sd on HDDM's "
             "scales ([`published_group.csv`](published_group.csv)):", "",
             "| parameter | scale | statistic | ours | HDDM |", "|---|---|---|---|---|"]
    lines += [f"| {row.parameter} | {row.scale} | {row.statistic} | {row.ours_mean:.2f} ({row.ours_sd:.2f}) | "
              f"{row.hddm_mean:.2f} ({row.hddm_sd:.2f}) |" for row in group.itertuples()]
    return lines + ["", "![subject means against HDDM's](published_subjects.png)", ""]


def validate_on_data(posterior: AmortizedPosterior, study, design, out, seed: int = 0, draws: int = 1000,
                     source: str = "", reference_store=None, published=None) -> pd.DataFrame:
    """The amortized group sampler against the PyMC reference on one data file's study under
    its settings (`design`): agreement.csv, timing.csv, report.md and group_posteriors.png
    in `out` (`reference_store`: see :func:`reference_posterior`); with `published` (HDDM's
    ``print_stats`` table of its ``Hrl`` fit, as CSV), :func:`published_comparison` too.
    Returns the agreement table."""
    if published is not None and not set(v for v, _ in HDDM_HRL_NODES.values()) <= set(posterior.parameter_names):
        raise ValueError(f"published estimates: HDDM's Hrl nodes map to {sorted(HDDM_HRL_NODES)} -> a choice-only "
                         f"network's parameters; {posterior.source} has {list(posterior.parameter_names)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tree = fit_group(posterior, study, draws=draws, seed=seed, design=design)
    labels = ["all"] * study.n_participants
    reference, attrs = reference_posterior(study, posterior, labels, seed, draws, design, store=reference_store)
    table = agreement(tree["posterior"].to_dataset(), reference, posterior.parameter_names)
    table.to_csv(out / "agreement.csv", index=False)
    diagnostics = tree["diagnostics"].to_dataset()
    timing = {"amortized_seconds": tree["posterior"].attrs["seconds"],
              "reference_seconds": attrs["compile_seconds"] + attrs["sample_seconds"],
              "reference_divergences": attrs["divergences"],
              "acceptance_median": float(np.median(tree["acceptance"]["acceptance_rate"].values)),
              "rhat_max": float(diagnostics[[v for v in diagnostics.data_vars if v.startswith("rhat")]]
                                .to_array().max())}
    pd.DataFrame([timing]).to_csv(out / "timing.csv", index=False)
    plot_group_posteriors(tree["posterior"].to_dataset(), out / "group_posteriors.png", reference=reference)
    worst = table.loc[table["abs_mean_difference_in_sd"].idxmax()]
    settings = ", ".join(f"{k} = {v}" for k, v in asdict(design.likelihood).items())
    lines = [f"# The group level on {Path(source).name or 'data'} against the PyMC reference", "",
             f"{study.n_participants} participants, {int(study.n_trials.sum())} trials; likelihood settings: "
             f"{settings}. Amortized sampler ({posterior.source}, 4 chains x {draws} draws after "
             f"{tree['posterior'].attrs['tune']}) against the PyMC "
             f"reference (nutpie, 4 chains x {draws} draws after 1,000). [`agreement.csv`](agreement.csv)", "",
             f"Median abs(mean difference) / reference sd {table['abs_mean_difference_in_sd'].median():.3f}, at most "
             f"{worst['abs_mean_difference_in_sd']:.3f} ({worst['variable']}); median sd ratio "
             f"{table['sd_ratio'].median():.3f} ({table['sd_ratio'].min():.2f}-{table['sd_ratio'].max():.2f}). "
             f"Time: {timing['amortized_seconds']:.1f} s against {timing['reference_seconds']:.0f} s; max r-hat "
             f"{timing['rhat_max']:.3f}; median acceptance {timing['acceptance_median']:.2f}; reference "
             f"divergences {timing['reference_divergences']}.", "", "![group posteriors](group_posteriors.png)", ""]
    if published is not None:
        subjects, group = published_comparison(tree, posterior.config.priors, published, seed=seed)
        subjects.to_csv(out / "published_subjects.csv", index=False, float_format="%.4f")
        group.to_csv(out / "published_group.csv", index=False, float_format="%.4f")
        plot_published(subjects, out / "published_subjects.png")
        lines += _published_lines(subjects, group)
    (out / "report.md").write_text("\n".join(lines))
    return table


def write_report(out) -> dict:
    """summary.json and report.md from a validation's agreement.csv, timing.csv and sbc.json."""
    out = Path(out)
    for name, step in (("agreement.csv", "agreement"), ("timing.csv", "agreement"), ("sbc.json", "sbc")):
        if not (out / name).exists():
            raise FileNotFoundError(f"{out / name} is missing: run `rlddm validate group --steps {step} --out {out}`")
    table, timing = pd.read_csv(out / "agreement.csv"), pd.read_csv(out / "timing.csv")
    sbc = json.loads((out / "sbc.json").read_text())
    studies = {}
    for study, rows in table.groupby("study", sort=False):
        worst = rows.loc[rows["abs_mean_difference_in_sd"].idxmax()]
        studies[study] = {"median_abs_mean_difference_in_sd": float(rows["abs_mean_difference_in_sd"].median()),
                          "max_abs_mean_difference_in_sd": float(worst["abs_mean_difference_in_sd"]),
                          "worst_variable": worst["variable"], "median_sd_ratio": float(rows["sd_ratio"].median()),
                          "sd_ratio_range": [float(rows["sd_ratio"].min()), float(rows["sd_ratio"].max())]}
    summary = {"agreement": studies, "timing": timing.to_dict(orient="records"), "sbc": _sbc_summary(sbc)}
    correlated_sbc = out / "sbc_correlated.json"
    if correlated_sbc.exists():
        correlated_sbc = json.loads(correlated_sbc.read_text())
        summary["sbc_correlated"] = _sbc_summary(correlated_sbc)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    lines = ["# The group level against the PyMC reference", "",
             "Amortized Metropolis-within-Gibbs (4 chains x the draws given, after 300) against the same "
             "hierarchical model in PyMC with the exact likelihood (nutpie, 4 chains x 1,000 draws after 1,000), "
             "on simulated studies of the network's design (the correlated one fitted with correlated group "
             "normals, an LKJ(2) prior on their correlation matrix, whose entries rho enter the table). Per group "
             "variable: |mean difference| / reference sd and sd ratio ([`agreement.csv`](agreement.csv)); times in "
             "[`timing.csv`](timing.csv).", "",
             "| study | median abs(mean diff.) / ref. sd | max (variable) | median sd ratio | sd ratio range | "
             "amortized draws per chain | amortized s | reference s | max r-hat | median acceptance |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for (study, row), (_, t) in zip(studies.items(), timing.iterrows()):
        lines.append(f"| {study} | {row['median_abs_mean_difference_in_sd']:.3f} | "
                     f"{row['max_abs_mean_difference_in_sd']:.3f} ({row['worst_variable']}) | "
                     f"{row['median_sd_ratio']:.3f} | {row['sd_ratio_range'][0]:.2f}-{row['sd_ratio_range'][1]:.2f} | "
                     f"{t['amortized_draws']:,} | {t['amortized_seconds']:.1f} | {t['reference_seconds']:.0f} | "
                     f"{t['rhat_max']:.3f} | "
                     f"{t['acceptance_median']:.2f} |")
    lines += ["", "## Simulation-based calibration of the group parameters", ""] + _sbc_lines(sbc)
    if "sbc_correlated" in summary:
        lines += ["", "### With correlated group normals", "",
                  "The same, with the participants drawn from correlated group normals (the correlation matrix from "
                  "its LKJ(2) prior) and fitted with them ([`sbc_correlated.json`](sbc_correlated.json)):", ""]
        lines += _sbc_lines(correlated_sbc)
    lines += ["", "Figures: group_posteriors.png, shrinkage.png, group_difference.png.", ""]
    (out / "report.md").write_text("\n".join(lines))
    return summary


def _sbc_summary(sbc: dict) -> dict:
    """The figures of a calibration (sbc.json) that summary.json keeps."""
    return {"studies": sbc["studies"], "participants": sbc["participants"], "trials": sbc["trials"],
            "calibration_error": {k: v["calibration_error"] for k, v in sbc["parameters"].items()},
            "ecdf_in_band": {k: v["ecdf_inside_95_band"] for k, v in sbc["parameters"].items()},
            "ess_bulk_median": {k: v["ess_bulk_median"] for k, v in sbc["parameters"].items()},
            "chains": sbc["chains"], "tune": sbc["tune"], "draws": sbc["draws"],
            "acceptance_median": sbc["acceptance_median"], "seconds_per_study": sbc["seconds_per_study"]}


def _sbc_lines(sbc: dict) -> list:
    """A calibration's sentence and table, in markdown lines."""
    lines = [f"{sbc['studies']} studies of {sbc['participants']} participants x {sbc['trials']} trials from the "
             f"hierarchical prior, each fitted by the amortized sampler ({sbc['chains']} chains x {sbc['draws']} "
             f"draws after {sbc['tune']}; {sbc['seconds_per_study']:.1f} s per study, median acceptance "
             f"{sbc['acceptance_median']:.2f}).", "",
             "| variable | calibration error | coverage 50 / 90 / 95% | ECDF in 95% band | median bulk ESS |",
             "|---|---|---|---|---|"]
    for name, m in sbc["parameters"].items():
        coverage = " / ".join(f"{m['coverage'][k]:.2f}" for k in ("50", "90", "95"))
        lines.append(f"| {name} | {m['calibration_error']:.3f} | {coverage} | {ecdf_cell(m)} | "
                     f"{m['ess_bulk_median']:.0f} |")
    return lines


def calibrate(posterior: AmortizedPosterior, studies: int, participants: int = 20, n_trials: int = 60, seed: int = 0,
              chains: int = 2, tune: int = 300, draws: int = 500, progress: bool = False,
              correlated: bool = False) -> dict:
    """Simulation-based calibration of the group parameters: studies simulated from the
    hierarchical prior (mu ~ Normal(m, s), sigma ~ HalfNormal(s), participants from the group
    normal; with `correlated`, its correlation matrix from LKJ(LKJ_ETA) and its correlations
    among the variables) at the network's design with n_trials trials, each fitted by the
    amortized sampler (`chains` x `draws` after `tune`). Per variable, beside the calibration
    metrics, the median bulk ESS of its draws over the studies: ranks in the last percent
    need many effective draws."""
    model = GroupModel(posterior.config.priors, correlated=correlated)
    m, s = model.hyperpriors()
    pairs = [f"{a}, {b}" for a, b in correlation_pairs(model.names)] if correlated else []
    below = np.tril_indices(len(m), -1)  # the pairs' order
    rng = np.random.default_rng(seed)
    truth, samples, ess, acceptance, seconds = {}, {}, {}, [], []
    for k in tqdm(range(studies), desc="group SBC", disable=not progress):
        mu = rng.normal(m, s)
        sigma = np.abs(rng.normal(0.0, s))
        factor = sample_correlation_cholesky(rng, len(m), LKJ_ETA) if correlated else np.eye(len(m))
        y = mu + sigma * (rng.standard_normal((participants, len(m))) @ factor.T)
        study = simulate(model.space.inverse(y), posterior.design_with_trials(n_trials), seed=int(rng.integers(2**31)))
        tree = fit_group(posterior, study, draws=draws, tune=tune, chains=chains, seed=int(rng.integers(2**31)),
                         correlated=correlated)
        post, diagnostics = tree["posterior"], tree["diagnostics"]
        rho = (factor @ factor.T)[below]
        for variable, value, draws_of, bulk_ess in (
                [(f"{kind}_{name}", value[j], post[f"{kind}_{name}"], diagnostics[f"ess_bulk_{kind}_{name}"])
                 for j, name in enumerate(model.names) for kind, value in (("mu", mu), ("sigma", sigma))]
                + [(f"rho[{pair}]", rho[j], post["rho"].sel(pair=pair), diagnostics["ess_bulk_rho"].sel(pair=pair))
                   for j, pair in enumerate(pairs)]):
            truth.setdefault(variable, []).append(value)
            samples.setdefault(variable, []).append(draws_of.values.ravel())
            ess.setdefault(variable, []).append(float(bulk_ess))
        acceptance.append(float(np.median(tree["acceptance"]["acceptance_rate"])))
        seconds.append(float(post.attrs["seconds"]))
    metrics = compute_metrics({k: np.stack(v) for k, v in samples.items()},
                              {k: np.asarray(v) for k, v in truth.items()})
    for name, values in ess.items():
        metrics[name]["ess_bulk_median"] = float(np.median(values))
    return {"studies": studies, "participants": participants, "trials": n_trials, "chains": chains, "tune": tune,
            "draws": draws, "parameters": metrics, "acceptance_median": float(np.median(acceptance)),
            "seconds_per_study": float(np.mean(seconds))}


def plot_group_posteriors(post, path, reference=None):
    """Each group mean's and sd's posterior (unbounded scale), with the reference's."""
    names = [v[3:] for v in post.data_vars if v.startswith("mu_")]
    fig = Figure(figsize=(2.8 * len(names), 4.8))
    axes = fig.subplots(2, len(names), squeeze=False)
    for col, name in enumerate(names):
        for row, kind in enumerate(("mu", "sigma")):
            ax, var = axes[row][col], f"{kind}_{name}"
            x = post[var].values.ravel()
            bins = np.histogram_bin_edges(x, bins=40)
            ax.hist(x, bins=bins, density=True, color="C0", alpha=0.6, label="amortized group sampler")
            if reference is not None:
                ax.hist(reference[var].values.ravel(), bins=bins, density=True, histtype="step", color="k",
                        label="PyMC reference (NUTS)")
            ax.set_title(var, fontsize=9)
            ax.set_yticks([])
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_shrinkage(posterior: AmortizedPosterior, study, tree, path):
    """Each participant's posterior mean alone (the amortized posterior) and within the
    group (the hierarchical posterior): the shrinkage toward the group."""
    alone = posterior.infer(study, draws=1000, seed=0, check=False)["posterior"]
    grouped = tree["posterior"]
    names = list(posterior.parameter_names)
    fig = Figure(figsize=(2.8 * len(names), 3.0))
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names):
        a = alone[name].mean(("chain", "draw")).values
        g = grouped[name].mean(("chain", "draw")).values
        ax.scatter(a, g, s=10)
        lo, hi = min(a.min(), g.min()), max(a.max(), g.max())
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls="--")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("alone")
    axes[0].set_ylabel("within the group")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_group_difference(post, path, truth=None, reference=None):
    """The posterior of each contrast of group means, with the true difference where known."""
    names = [v[9:] for v in post.data_vars if v.startswith("delta_mu_")]
    fig = Figure(figsize=(2.8 * len(names), 2.8))
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names):
        x = post[f"delta_mu_{name}"].values.ravel()
        bins = np.histogram_bin_edges(x, bins=40)
        ax.hist(x, bins=bins, density=True, color="C0", alpha=0.6)
        if reference is not None:
            ax.hist(reference[f"delta_mu_{name}"].values.ravel(), bins=bins, density=True, histtype="step", color="k")
        if truth and name in truth:
            ax.axvline(truth[name], color="C3", ls="--")
        ax.axvline(0.0, color="grey", lw=0.6)
        ax.set_title(f"mu_{name}: {post['contrast'].values[0]}", fontsize=9)
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)

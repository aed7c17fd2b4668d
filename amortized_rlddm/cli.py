"""The `rlddm` command line."""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from tqdm.auto import tqdm

from .data.io import DataError, write_study
from .data.study import Study
from .model.config import load_config
from .model.designs import NAMED_DESIGNS, named_design
from .model.simulator import simulate

DEFAULT_CONFIG = "default"  # the shipped config and network, found by name (amortized_rlddm.resources)
DEFAULT_CHECKPOINT = "default"
SIMULATION_CHUNK = 10_000  # participants per simulator call: the progress bar's step
LISTED = 10  # untrusted participants named one per line; the rest counted


def _simulate_study(config, participants, seed, progress=False):
    """Draw parameters from the priors and simulate; returns (study, truth DataFrame).

    Participants are simulated in chunks of SIMULATION_CHUNK, each seeded from the same
    generator, so up to one chunk the study is that of a single simulate call."""
    rng = np.random.default_rng(seed)
    params = config.priors.sample(rng, participants)
    starts = range(0, participants, SIMULATION_CHUNK)
    parts = []
    for start in tqdm(starts, desc="simulate", unit="chunk", disable=not progress or len(starts) < 2):
        stop = min(start + SIMULATION_CHUNK, participants)
        parts.append(simulate({k: v[start:stop] for k, v in params.items()}, config.design,
                              seed=int(rng.integers(2**63)), participant_ids=np.arange(start + 1, stop + 1)))
    study = parts[0] if len(parts) == 1 else Study.concatenate(parts)
    truth = pd.DataFrame({"participant": study.participant, **params})
    return study, truth


def cmd_simulate(args):
    config = load_config(args.config)
    study, truth = _simulate_study(config, args.participants, args.seed, progress=not args.quiet)
    write_study(study, args.out)
    if args.truth:
        truth.to_csv(args.truth, index=False)
    print(f"wrote {study.n_trials.sum()} trials of {study.n_participants} participants to {args.out}"
          + (f" and their true parameters to {args.truth}" if args.truth else ""))


def cmd_demo(args):
    from .amortized.posterior import AmortizedPosterior
    from .checks.plots import plot_recovery
    from .output import save_posterior, summarize

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.data:
        _demo_on_data(args, out)
        return
    posterior = AmortizedPosterior.load(args.checkpoint)
    config = load_config(args.config)
    study, truth = _simulate_study(config, args.participants, args.seed)
    write_study(study, out / "data.csv")
    truth.to_csv(out / "truth.csv", index=False)
    posterior.infer(study, draws=args.draws, seed=args.seed)  # warm-up: compiles the sampler
    start = time.perf_counter()
    tree = posterior.infer(study, draws=args.draws, seed=args.seed)
    elapsed = time.perf_counter() - start
    save_posterior(tree, out / "posterior.nc")
    summary = summarize(tree)
    summary.to_csv(out / "summary.csv", index=False)
    plot_recovery(summary, truth, out / "recovery.png")
    table = summary.pivot(index="participant", columns="parameter", values="mean")
    table = table[list(posterior.parameter_names)]
    table.index = table.index.astype(int)
    true = truth.set_index("participant")[list(posterior.parameter_names)]
    with pd.option_context("display.width", 160):
        print("posterior means (true values in brackets)")
        print(table.sort_index().round(2).astype(str).add(" [").add(true.round(2).astype(str)).add("]")
              .to_string())
    flagged = summary.loc[summary["out_of_distribution"], "participant"].unique()
    print(f"\nflagged as unlike the training data: {', '.join(map(str, flagged)) if len(flagged) else 'none'}")
    _print_importance(tree)
    print(f"inferred {study.n_participants} participants x {args.draws} draws in "
          f"{elapsed * 1000:.0f} ms ({elapsed * 1000 / study.n_participants:.1f} ms per participant)")
    print(f"wrote {out / 'data.csv'}, {out / 'truth.csv'}, {out / 'posterior.nc'}, "
          f"{out / 'summary.csv'} and {out / 'recovery.png'}")


def _demo_on_data(args, out):
    """The demo on a data file: infer every participant (checked by PSIS), print the
    posterior means and k-hats, write the posterior, the summary and the figure."""
    from .amortized.posterior import AmortizedPosterior
    from .checks.plots import plot_posteriors
    from .output import save_posterior, summarize

    posterior = AmortizedPosterior.load(args.checkpoint)
    study, design, excluded = _prepared_study(args, posterior.base_design)
    posterior.infer(study.select([0]), draws=args.draws, seed=args.seed, design=design)  # warm-up: compiles
    start = time.perf_counter()
    tree = posterior.infer(study, draws=args.draws, seed=args.seed, design=design)
    elapsed = time.perf_counter() - start
    save_posterior(tree, out / "posterior.nc")
    summary = summarize(tree)
    summary.to_csv(out / "summary.csv", index=False)
    plot_posteriors(summary, out / "posteriors.png")
    table = summary.pivot(index="participant", columns="parameter", values="mean")[list(posterior.parameter_names)]
    table = table.reindex(tree["posterior"]["participant"].values)  # the file's order
    table["k-hat"] = tree["importance"]["khat"].values
    table["trusted"] = tree["importance"]["trusted"].values
    with pd.option_context("display.width", 160, "display.max_rows", 500):
        print(f"posterior means of {study.n_participants} participants of {args.data} "
              f"({', '.join(f'{k}: {int(v.sum())} trials excluded' for k, v in excluded.items()) or 'no exclusions'})")
        print(table.round(3).to_string())
    _print_importance(tree)
    print(f"inferred {study.n_participants} participants x {args.draws} draws in {elapsed:.2f} s "
          f"({elapsed * 1000 / study.n_participants:.1f} ms per participant, checked by PSIS)")
    print(f"wrote {out / 'posterior.nc'}, {out / 'summary.csv'} and {out / 'posteriors.png'}")


def _print_importance(tree):
    """How many participants' posteriors passed the check against the exact posterior, by
    method, and which did not, with the reason."""
    if "importance" not in tree.children:
        return
    checks = tree["importance"]
    trusted, methods = checks["trusted"].values, checks["method"].values
    counts = ", ".join(f"{method} {int((methods == method).sum())}" for method in dict.fromkeys(methods))
    from .correction.importance import khat_threshold

    weighted = checks["proposals"].values if "proposals" in checks else checks.sizes["draw"]  # the network's draws
    above = int((checks["flow_khat"].values > khat_threshold(weighted)).sum())
    print(f"trusted {int(trusted.sum())}/{trusted.size} ({counts}); the network's own draws: median k-hat "
          f"{float(checks['flow_khat'].median()):.2f}, {above} above the threshold")
    untrusted = list(zip(checks["participant"].values[~trusted], checks["reason"].values[~trusted]))
    for participant, reason in untrusted[:LISTED]:
        print(f"  not trusted: {participant}: {reason}")
    if len(untrusted) > LISTED:
        print(f"  ... and {len(untrusted) - LISTED} more (the output's importance group: trusted, reason)")
    if untrusted and (methods == "flow").all():
        print("the network's draws alone are checked (--raw): without it, infer corrects every participant with "
              "the exact posterior")


def cmd_train(args):
    from .amortized.posterior import AmortizedPosterior
    from .amortized.training import train, training_settings

    config = load_config(args.config)
    state = train(config, args.out, resume=args.resume, verbose=0 if args.quiet else 1 if args.progress else 2)
    if state["epochs_done"] >= int(training_settings(config)[1]["epochs"]):
        AmortizedPosterior.load(args.out).write_ood_reference(args.out)
    print(f"{state['epochs_done']} epochs done in {state['train_seconds'] / 60:.1f} min of training; "
          f"checkpoint in {args.out}")


def cmd_export(args):
    from .amortized.checkpoint import export_checkpoint

    out = export_checkpoint(args.checkpoint, args.out)
    size = (out / "model.keras").stat().st_size / 1e6
    print(f"wrote {out}: the networks without the optimizer's state ({size:.1f} MB)")


def cmd_infer(args):
    from .amortized.checkpoint import checkpoint_for_model
    from .amortized.posterior import AmortizedPosterior
    from .checks.plots import plot_posteriors
    from .output import save_posterior, summarize

    posterior = AmortizedPosterior.load(checkpoint_for_model(args.checkpoint, args.model))
    study, design, _ = _prepared_study(args, posterior.base_design)
    start = time.perf_counter()
    if args.check is False and not args.raw:
        raise ValueError("--no-check leaves the draws unchecked and uncorrected: give it with --raw")
    tree = posterior.infer(study, draws=args.draws, seed=args.seed, model=args.model, check=args.check,
                           refine=not args.raw, fallback=args.fallback, log_likelihood=args.log_likelihood,
                           design=design)
    elapsed = time.perf_counter() - start
    save_posterior(tree, args.out)
    summary = summarize(tree)
    if args.summary:
        summary.to_csv(args.summary, index=False)
    if args.plots:
        Path(args.plots).mkdir(parents=True, exist_ok=True)
        plot_posteriors(summary, Path(args.plots) / "posteriors.png")
    n = tree["posterior"].sizes["participant"]
    print(f"inferred {n} participant(s) x {args.draws} draws in {elapsed:.2f} s (first call includes "
          f"compilation); wrote {args.out}" + (f" and {args.summary}" if args.summary else ""))
    _print_importance(tree)


def cmd_check(args):
    from .amortized.posterior import AmortizedPosterior
    from .checks.posterior_check import check_posteriors, fresh_simulations

    posterior = AmortizedPosterior.load(args.checkpoint)
    if args.data:
        study, design, _ = _prepared_study(args, posterior.base_design)
    else:
        from .model.settings import SettingOptions

        if SettingOptions.from_namespace(args) != SettingOptions(design=args.design):
            raise ValueError("the likelihood settings and exclusions apply to --data; simulations take theirs "
                             "from --design (or the network's own design)")
        design = named_design(args.design) if args.design else None
        study = fresh_simulations(posterior, args.participants, args.seed, design)
    summary = check_posteriors(posterior, study, args.out, draws=args.draws, seed=args.seed, design=design)
    source = args.data or (f"{args.participants} fresh simulations of "
                           + (f"design {args.design}" if args.design else "the network's design"))
    print(f"{summary['participants']} participants ({source}), {summary['draws']} draws each: "
          f"{100 * summary['share_above_threshold']:.1f}% above the k-hat threshold "
          f"{summary['khat_threshold']:.2f} (median k-hat {summary['khat_quantiles']['0.5']:.2f}, "
          f"99th percentile {summary['khat_quantiles']['0.99']:.2f})")
    methods = ", ".join(f"{method} {count}" for method, count in summary["methods"].items())
    print(f"corrected: trusted {100 * summary['trusted_share']:.1f}% ({methods}) in "
          f"{summary['seconds_corrected']:.1f} s")
    for participant, reason in summary["untrusted"].items():
        print(f"  not trusted: {participant}: {reason}")
    print("the correction moved the posterior means by (median, in raw sds): " + ", ".join(
        f"{k} {v:.3f}" for k, v in summary["refined_shift_in_raw_sd"].items()))
    print("corrected sd / raw sd (median): "
          + ", ".join(f"{k} {v:.3f}" for k, v in summary["refined_sd_ratio"].items()))
    print(f"wrote check.csv, check.json, khat_histogram.png and refined_overlays.png to {args.out}")


def cmd_group(args):
    from .amortized.posterior import AmortizedPosterior
    from .checks.group import plot_group_difference, plot_group_posteriors, plot_shrinkage
    from .group.fit import fit_group, group_labels
    from .output import save_posterior

    posterior = AmortizedPosterior.load(args.checkpoint)
    study, design, _ = _prepared_study(args, posterior.base_design)
    groups = None
    if args.group_column:
        participant_column = {"rlddm": "participant", "hssm": "participant_id", "hddm": "subj_idx"}[args.convention]
        groups = group_labels(args.data, args.group_column, study.participant, participant_column)
    tree = fit_group(posterior, study, groups=groups, chains=args.chains, tune=args.tune, draws=args.draws,
                     seed=args.seed, moves=args.moves, move_steps=args.move_steps,
                     design=design, correlated=args.correlated)
    save_posterior(tree, args.out)
    post = tree["posterior"]
    diagnostics = tree["diagnostics"].to_dataset()
    rhat = max(float(diagnostics[v].max()) for v in diagnostics.data_vars if v.startswith("rhat"))
    ess = min(float(diagnostics[v].min()) for v in diagnostics.data_vars if v.startswith("ess"))
    rows = []
    for var in post.data_vars:
        if var.startswith(("mu_", "sigma_", "delta_mu_")) or var == "rho":
            extra = [d for d in post[var].dims if d not in ("chain", "draw")]
            for label in (post[var][extra[0]].values if extra else [None]):
                x = post[var].sel({extra[0]: label}) if extra else post[var]
                rows.append({"variable": var if label is None else f"{var}[{label}]",
                             "mean": float(x.mean()), "sd": float(x.std())})
    with pd.option_context("display.width", 200):
        print(pd.DataFrame(rows).round(3).to_string(index=False))
    rates = tree["acceptance"]["acceptance_rate"].values
    correction = tree["correction"].to_dataset()
    trusted = correction["trusted"].values
    surrogate = tree["acceptance"].to_dataset().get("surrogate_acceptance_rate")
    print(f"{study.n_participants} participants, {args.chains} chains x {args.draws} draws in "
          f"{post.attrs['seconds']:.1f} s; max r-hat {rhat:.3f}, min bulk ESS {ess:.0f}; acceptance per participant "
          f"{rates.min():.2f}-{rates.max():.2f} (median {np.median(rates):.2f})"
          + ("" if surrogate is None else f", surrogate moves {float(surrogate):.2f}") + f"; wrote {args.out}")
    print(f"proposals fitted to the corrected posteriors: trusted {int(trusted.sum())}/{trusted.size}"
          + ("" if trusted.all() else " (the others' proposals are less apt: the chains stay exact, their acceptance "
                                      "shows it)"))
    if rhat > 1.01:
        print(f"warning: r-hat {rhat:.3f} > 1.01: the chains have not mixed (see the diagnostics group); run more "
              "--draws, and read the group sds with care (docs/group.md)")
    if args.plots:
        folder = Path(args.plots)
        folder.mkdir(parents=True, exist_ok=True)
        plot_group_posteriors(post.to_dataset(), folder / "group_posteriors.png")
        plot_shrinkage(posterior, study, tree, folder / "shrinkage.png")
        if groups is not None and len(set(groups)) > 1:
            plot_group_difference(post.to_dataset(), folder / "group_difference.png")


def cmd_validate_group(args):
    from .amortized.posterior import AmortizedPosterior
    from .checks.group import validate, validate_on_data

    posterior = AmortizedPosterior.load(args.checkpoint)
    if args.data:
        study, design, _ = _prepared_study(args, posterior.base_design)
        table = validate_on_data(posterior, study, design, args.out, seed=args.seed, source=args.data,
                                 reference_store=args.reference_store)
        print(table.round(3).to_string(index=False))
        print(f"wrote {args.out}")
        return
    summary = validate(posterior, args.out, seed=args.seed, sbc_studies=args.sbc_studies, progress=not args.quiet,
                       reference_store=args.reference_store, sbc_chains=args.sbc_chains, sbc_tune=args.sbc_tune,
                       sbc_draws=args.sbc_draws, steps=args.steps)
    print(json.dumps(summary, indent=1, default=float))
    print(f"wrote {args.out}")


def cmd_diagnose(args):
    from .amortized.posterior import AmortizedPosterior
    from .checks.diagnostics import diagnose, metrics_table, replications_markdown

    metrics = diagnose(AmortizedPosterior.load(args.checkpoint), args.datasets, args.seed, args.out,
                       draws=args.draws, replications=args.replications, progress=not args.quiet,
                       refine=args.refine, design=args.design)
    print(metrics_table(metrics["parameters"]))
    if "refined_parameters" in metrics:
        print("\ncorrected posteriors (--refine) of the same datasets:\n"
              + metrics_table(metrics["refined_parameters"]))
    if "replications" in metrics:
        print("\n" + "\n".join(replications_markdown(metrics["replications"])))
    print(f"\nwrote figures, metrics.json and report.md to {args.out}")


def cmd_design(args):
    from .amortized.posterior import AmortizedPosterior
    from .checks.design import plan_design

    table = plan_design(AmortizedPosterior.load(args.checkpoint), args.trials, args.datasets, args.seed,
                        args.out, draws=args.draws, progress=not args.quiet)
    wide = table.pivot(index="trials", columns="parameter", values=["correlation", "contraction"])
    with pd.option_context("display.width", 200):
        print(wide.round(3).to_string())
    print(f"\nwrote {Path(args.out) / 'design.csv'} and {Path(args.out) / 'design.png'}")


def cmd_ablate(args):
    from .checks.ablation import ablate

    variants = None if args.variants is None else [v.strip() for v in args.variants.split(",") if v.strip()]
    ablate(load_config(args.config), args.out, variants=variants, epochs=args.epochs, datasets=args.datasets,
           seed=args.seed, verbose=0 if args.quiet else 2, progress=not args.quiet)
    print((Path(args.out) / "ablation.md").read_text())


def cmd_validate_designs(args):
    from .amortized.posterior import AmortizedPosterior
    from .checks.by_design import validate_designs

    table = validate_designs(AmortizedPosterior.load(args.checkpoint), args.out, designs=args.designs,
                             datasets=args.datasets, compare_datasets=args.compare_datasets, draws=args.draws,
                             seed=args.seed, tune=args.tune, draws_per_chain=args.draws_per_chain,
                             progress=not args.quiet, nuts_store=args.nuts_store,
                             steps=args.steps)
    print(table)
    print(f"\nwrote the reports and {Path(args.out) / 'table.md'}")


def cmd_real_amortized(args):
    from .amortized.checkpoint import checkpoint_for_model
    from .amortized.posterior import AmortizedPosterior
    from .checks.real_amortized import real_amortized_report

    posteriors = {model: AmortizedPosterior.load(checkpoint_for_model(args.checkpoint, model)) for model in args.model}
    study, design, excluded = _prepared_study(args, next(iter(posteriors.values())).base_design)
    summary = real_amortized_report(posteriors, study, design, args.exact, args.out, draws=args.draws,
                                    seed=args.seed, source=args.data, excluded=excluded)
    for model in posteriors:
        print(f"{model}: {summary[model]['seconds_checked']:.2f} s for the study (checked), "
              f"{summary[model]['above_threshold']} above the k-hat threshold")
    print(f"wrote {Path(args.out) / 'report.md'}")


def cmd_headline(args):
    from .checks.compare import headline_table

    print(headline_table(args.diagnostics, args.compare))


def cmd_compare(args):
    from .amortized.posterior import AmortizedPosterior
    from .checks.compare import compare

    summary, timing = compare(AmortizedPosterior.load(args.checkpoint), args.out, n_datasets=args.datasets,
                              seed=args.seed, data=args.data, convention=args.convention, draws=args.draws,
                              chains=args.chains, draws_per_chain=args.draws_per_chain, tune=args.tune,
                              nuts_backend=args.nuts_backend, n_trials=args.trials, progress=not args.quiet,
                              design=args.design, nuts_store=args.nuts_store)
    with pd.option_context("display.width", 200):
        print(summary.round(3).to_string(index=False))
    print(f"\nper participant: amortized {timing['amortized_s_per_participant'] * 1000:.1f} ms, NUTS "
          f"{timing['nuts_s_per_participant']:.1f} s ({timing['speedup']:.0f}x); wrote {args.out}")


def _read_data(args):
    """The data of a command: --data read with --convention, or with --columns (and
    --choice-codes, --trials-within) for another layout."""
    from .data.io import parse_choice_codes, parse_columns, read_study

    if args.columns is None:
        return read_study(args.data, convention=args.convention)
    codes = None if args.choice_codes is None else parse_choice_codes(args.choice_codes)
    return read_study(args.data, columns=parse_columns(args.columns), choice_codes=codes,
                      trials_within=args.trials_within)


def _add_data_options(p, required=True):
    p.add_argument("--data", required=required, help="a data CSV")
    p.add_argument("--convention", default="rlddm", choices=["rlddm", "hssm", "hddm"])
    p.add_argument("--columns", help="another layout: ours=theirs pairs, e.g. "
                                     "participant=subj_idx,choice=c,rt=rt,reward=r,block=s (docs/data.md)")
    p.add_argument("--choice-codes", help="with --columns: file:ours choice codes, e.g. 1:0,2:1")
    p.add_argument("--trials-within", choices=["participant", "condition"],
                   help="with --columns: what the trial column counts within")


def _add_settings_options(p, hddm=False, design=True):
    """The likelihood settings of a study and its exclusions (read by _prepared_study); with
    `design`, --design too."""
    p.add_argument("--missing", choices=["deadline", "ignorable"], help="what missing responses are")
    p.add_argument("--deadline", type=float, help="the response deadline in seconds (implies --missing deadline)")
    p.add_argument("--q-init", type=float, help="initial Q-values (default: the data's q_init column, else 0.5)")
    p.add_argument("--p-outlier", type=float, help="probability of a contaminant response (default 0"
                                                   + ("; 0.05 with --hddm-compatible)" if hddm else ")"))
    p.add_argument("--rt-max", type=float, help="contaminant RTs are uniform on [0, rt-max] s (default 10"
                                                + ("; 5 with --hddm-compatible)" if hddm else ")"))
    p.add_argument("--min-rt", type=float, help="exclude responses faster than this (s) from the likelihood")
    p.add_argument("--exclude-first", action="store_true",
                   help="exclude each participant's first trial of every pair from the likelihood (HDDM's convention)")
    if design:
        p.add_argument("--design", choices=sorted(NAMED_DESIGNS),
                       help="a named design's settings instead of --deadline, --missing, --q-init, --p-outlier, "
                            "--rt-max (and its exclusions)")


def _prepared_study(args, base):
    """The study of --data, its likelihood settings and exclusions as the options say
    (amortized_rlddm.model.settings.prepare_study: the same for every command); `base`: the
    settings where the options give none."""
    from .model.settings import SettingOptions, prepare_study

    return prepare_study(_read_data(args), SettingOptions.from_namespace(args), base)


def _pair_reward_probs(study, text):
    """--pair-reward-probs 'p0/p1,...' (one pair per condition label, in label order) as the
    study's per-trial arm probabilities."""
    pairs = [tuple(float(x) for x in item.split("/")) for item in text.split(",")]
    if len(pairs) != study.n_conditions or any(len(p) != 2 for p in pairs):
        raise ValueError(f"--pair-reward-probs: expected {study.n_conditions} pairs p0/p1 (conditions "
                         f"{list(study.condition_labels)}), got {text!r}")
    return np.asarray(pairs)[study.condition]


def cmd_fit_exact(args):
    from dataclasses import replace

    from .checks.real_data import write_real_data_report
    from .exact.fit import fit_study, refit_failed, subject_table
    from .model.config import MODELS
    from .model.likelihood import study_likelihood_options
    from .model.priors import PriorSet
    from .model.task import TaskDesign
    from .output import save_posterior

    study, design, excluded = _prepared_study(args, TaskDesign())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.pair_reward_probs:
        study = replace(study, arm_probs=_pair_reward_probs(study, args.pair_reward_probs))
    options = study_likelihood_options(study, design)
    fixed = {"z": 0.5} if args.hddm_compatible else None  # HDDM's RL-DDM fixes the start point
    given = load_config(args.config).priors.to_dict() if args.config else {}
    trees, model_priors = {}, {}
    for model in args.model:
        # the config's priors where they name this model's parameters, the built-in ones elsewhere
        priors = model_priors[model] = PriorSet.from_dict({k: v for k, v in given.items() if k in MODELS[model]},
                                                          MODELS[model])
        folder = out / model
        if args.report_only or args.refit_failed:
            trees[model] = xr.load_datatree(folder / "posterior.nc")  # in memory: the file may be rewritten
        if args.refit_failed:
            tree = refit_failed(trees[model], study, priors, model, options, fixed=fixed, tune=args.tune,
                                seed=args.seed, adaptation=args.adaptation, progress=not args.quiet)
            save_posterior(tree, folder / "posterior.nc")
            subject_table(tree).to_csv(folder / "subjects.csv", index=False)
            trees[model] = tree
        if args.report_only or args.refit_failed:
            continue
        folder.mkdir(exist_ok=True)
        if not args.quiet:
            print(f"{model}-rate model: NUTS on {study.n_participants} participants", file=sys.stderr, flush=True)
        start = time.perf_counter()
        tree = fit_study(study, priors, model, options, fixed=fixed, draws=args.draws_per_chain,
                         tune=args.tune, chains=args.chains, seed=args.seed, adaptation=args.adaptation,
                         progress=not args.quiet)
        tree["posterior"].attrs["study_seconds"] = time.perf_counter() - start
        save_posterior(tree, folder / "posterior.nc")
        subject_table(tree).to_csv(folder / "subjects.csv", index=False)
        trees[model] = tree
    write_real_data_report(out, study, trees, options, fixed, excluded, reference=args.reference,
                           ppc_draws=args.ppc_draws, seed=args.seed, source=args.data, priors=model_priors)
    print(f"wrote {out}/report.md")


def cmd_bench(args):
    from .benchmarks import bench_simulate, print_bench_simulate

    if args.what == "simulate":
        print_bench_simulate(bench_simulate(args.config, participants=args.participants, seed=args.seed))
    elif args.what == "train":
        from .benchmarks import bench_backends, print_bench_backends

        print_bench_backends(bench_backends(args.config))
    elif args.what == "likelihood":
        from .benchmarks import bench_likelihood, print_bench_likelihood

        print_bench_likelihood(bench_likelihood(seed=args.seed))
    elif args.what == "infer" and args.data:
        from .amortized.posterior import AmortizedPosterior
        from .benchmarks import bench_correction, print_bench_correction

        posterior = AmortizedPosterior.load(args.checkpoint)
        study, design, _ = _prepared_study(args, posterior.base_design)
        print_bench_correction(bench_correction(posterior, study, design, seed=args.seed), Path(args.data).name)
    elif args.what == "infer":
        from .benchmarks import bench_infer, print_bench_infer

        print_bench_infer(bench_infer(args.checkpoint, seed=args.seed))
    elif args.what == "group":
        from .amortized.posterior import AmortizedPosterior
        from .benchmarks import bench_group, print_bench_group

        posterior = AmortizedPosterior.load(args.checkpoint)
        if args.data:
            study, design, _ = _prepared_study(args, posterior.base_design)
            print_bench_group(bench_group(posterior, seed=args.seed, study=study, design=design,
                                          source=Path(args.data).name, reference=not args.no_reference))
        else:
            print_bench_group(bench_group(posterior, seed=args.seed, reference=not args.no_reference))


def build_parser():
    parser = argparse.ArgumentParser(prog="rlddm", description="Amortized Bayesian inference for RL-DDMs.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", action="store_true", help="no progress bars or training progress")
    subparsers = parser.add_subparsers(dest="command", required=True)

    def command(name, help):  # every command takes the common options
        return subparsers.add_parser(name, parents=[common], help=help)

    config_help = "a YAML config, or the name of a shipped one (default: %(default)s)"
    nuts_store_help = ("a folder keeping each NUTS fit, reused when the same data are fitted with the same "
                       "settings again (another network's check, an interrupted run)")
    checkpoint_help = "a checkpoint directory, or the name of a shipped network (default: %(default)s)"
    design_help = ("a named design (amortized_rlddm.model.designs) to simulate and infer with its settings; "
                   "a general network needs one (default: the network's own design)")

    p = command("simulate", help="simulate a study from a config's design and priors")
    p.add_argument("--config", default=DEFAULT_CONFIG, help=config_help)
    p.add_argument("--participants", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True, help="data CSV (docs/data.md)")
    p.add_argument("--truth", help="CSV of the true parameters, one row per participant")
    p.set_defaults(func=cmd_simulate)

    p = command("demo", help="simulate 20 participants and infer them with the shipped network (or, with --data, "
                             "infer a data file)")
    p.add_argument("--config", default=DEFAULT_CONFIG, help=config_help)
    p.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help=checkpoint_help)
    p.add_argument("--participants", type=int, default=20)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--out", default="demo_output")
    _add_data_options(p, required=False)
    _add_settings_options(p)
    p.set_defaults(func=cmd_demo)

    p = command("train", help="train a network online from a YAML config")
    p.add_argument("--config", required=True, help="a YAML config, or the name of a shipped one")
    p.add_argument("--out", required=True, help="checkpoint directory")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="one line per epoch instead of a progress bar (for logs)")
    p.set_defaults(func=cmd_train)

    p = command("export", help="an inference-only copy of a finished checkpoint (no optimizer state), to ship "
                               "or share")
    p.add_argument("--checkpoint", required=True, help="a finished checkpoint directory")
    p.add_argument("--out", required=True, help="the new checkpoint directory")
    p.set_defaults(func=cmd_export)

    p = command("infer", help="posteriors for every participant of a data CSV")
    p.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help=checkpoint_help)
    _add_data_options(p)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", required=True, help="posterior NetCDF (xarray DataTree)")
    p.add_argument("--summary", help="CSV of mean, sd and 94%% HDI per participant and parameter")
    p.add_argument("--plots", help="directory for figures")
    p.add_argument("--model", choices=["single", "dual"],
                   help="the model: a shipped network's sibling of this model (general -> general-dual), "
                        "else refused if the network is not this model")
    _add_settings_options(p)
    p.add_argument("--no-check", dest="check", action="store_const", const=False, default=None,
                   help="skip the exact-likelihood importance-sampling check of each participant")
    drawn = p.add_mutually_exclusive_group()
    drawn.add_argument("--refine", dest="raw", action="store_false", default=False,
                       help="(the default) correct every participant's draws with the exact posterior: the "
                            "network's draws resampled by their importance weights where they pass the check, "
                            "adaptive importance sampling and then DE-MCz chains where they do not (importance: "
                            "trusted, method)")
    drawn.add_argument("--raw", action="store_true",
                       help="the network's own draws, checked by PSIS but not corrected (milliseconds per "
                            "participant; trusted where the check passes)")
    p.add_argument("--fallback", choices=["nuts"],
                   help="fit the participants whose posterior is still not trusted with NUTS on the exact "
                        "likelihood, started from their draws (the last resort)")
    p.add_argument("--log-likelihood", action="store_true",
                   help="add the pointwise log-likelihood (a log_likelihood group, for arviz_stats.loo and "
                        "compare) and each participant's PSIS-LOO")
    p.set_defaults(func=cmd_infer)

    p = command("check", help="PSIS check of every participant's amortized posterior against the exact one, "
                              "with refinement")
    p.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help=checkpoint_help)
    _add_data_options(p, required=False)
    p.add_argument("--participants", type=int, default=1000,
                   help="without --data: participants simulated from the network's design, or from --design "
                        "(default %(default)s)")
    _add_settings_options(p)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="rlddm_output/check", help="report directory (default: %(default)s)")
    p.set_defaults(func=cmd_check)

    p = command("group", help="the exact hierarchical posterior of a study, from the per-participant network")
    p.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help=checkpoint_help)
    _add_data_options(p)
    p.add_argument("--group-column", help="a column of the data giving each participant's group")
    _add_settings_options(p)
    p.add_argument("--moves", choices=("surrogate", "exact", "none"), default="surrogate",
                   help="how the group sds and means move with the participants' values each iteration: scale "
                        "and shift moves under a quadratic surrogate of the likelihood with one exact check "
                        "(default), the same moves each checked exactly with a random walk of every "
                        "participant (slower), or none (the independence steps alone)")
    p.add_argument("--move-steps", type=int, default=5,
                   help="with --moves exact: parameters given a scale and a shift move per iteration "
                        "(default %(default)s)")
    p.add_argument("--correlated", action="store_true",
                   help="correlate the parameters' group normals (LKJ(2) prior on their correlation matrix; "
                        "the posterior's rho holds the correlations)")
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--tune", type=int, default=300)
    p.add_argument("--draws", type=int, default=1000, help="draws per chain")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="posterior NetCDF (xarray DataTree)")
    p.add_argument("--plots", help="directory for the group posteriors, shrinkage and group difference figures")
    p.set_defaults(func=cmd_group)

    p = command("validate-group", help="the group sampler against the PyMC reference, and its calibration "
                                       "(with --data: on that data file only)")
    p.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help=checkpoint_help)
    p.add_argument("--steps", nargs="+", choices=["agreement", "sbc", "correlated-sbc"],
                   default=["agreement", "sbc"],
                   help="the simulated studies against the PyMC reference, the calibration, the calibration with "
                        "correlated group normals (default: the first two); the report is made from the files in --out")
    p.add_argument("--sbc-studies", type=int, default=200)
    p.add_argument("--sbc-chains", type=int, default=2, help="chains per calibration study (default: %(default)s)")
    p.add_argument("--sbc-tune", type=int, default=300,
                   help="iterations discarded per chain in the calibration (default: %(default)s)")
    p.add_argument("--sbc-draws", type=int, default=500,
                   help="draws kept per chain in the calibration (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="rlddm_output/group", help="report directory (default: %(default)s)")
    p.add_argument("--reference-store", help="directory keeping the PyMC reference fits (their group-level draws, "
                                             "by a hash of data and settings): a fit found there is read, not run "
                                             "again")
    _add_data_options(p, required=False)
    _add_settings_options(p)
    p.set_defaults(func=cmd_validate_group)

    p = command("diagnose", help="recovery and calibration of a network on fresh simulations")
    p.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help=checkpoint_help)
    p.add_argument("--design", choices=sorted(NAMED_DESIGNS), help=design_help)
    p.add_argument("--datasets", type=int, default=1000)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--replications", type=int, default=1,
                   help="repeat the calibration check on this many independent sets of --datasets "
                        "(seeds --seed, --seed + 1, ...): band exits counted against chance, ranks pooled")
    p.add_argument("--refine", action="store_true",
                   help="score the first set's corrected posteriors (--refine) too, beside the raw ones")
    p.add_argument("--out", required=True, help="report directory")
    p.set_defaults(func=cmd_diagnose)

    p = command("design", help="learning-rate recovery per trial count (power analysis)")
    p.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help=checkpoint_help)
    p.add_argument("--trials", type=int, nargs="+", required=True)
    p.add_argument("--datasets", type=int, default=500)
    p.add_argument("--draws", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="rlddm_output/design", help="report directory (default: %(default)s)")
    p.set_defaults(func=cmd_design)

    p = command("ablate", help="train variants of the network (inputs, architecture, optimisation) "
                                      "with one budget and compare them")
    p.add_argument("--config", default=DEFAULT_CONFIG, help=config_help)
    p.add_argument("--variants", help="comma-separated names from amortized_rlddm.ablation.VARIANTS "
                                      "(default: all); results accumulate in OUT/ablation.json")
    p.add_argument("--epochs", type=int, help="the shared training budget (default: the config's)")
    p.add_argument("--datasets", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="rlddm_output/ablation",
                   help="results directory, where results accumulate (default: %(default)s)")
    p.set_defaults(func=cmd_ablate)

    p = command("compare", help="amortized vs exact-likelihood NUTS posteriors on shared datasets")
    p.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help=checkpoint_help)
    p.add_argument("--design", choices=sorted(NAMED_DESIGNS), help=design_help)
    p.add_argument("--datasets", type=int, default=50, help="simulated datasets (ignored with --data)")
    p.add_argument("--data", help="a data CSV to compare on instead of simulations")
    p.add_argument("--trials", type=int, help="trials per simulated dataset (default: the config's design)")
    p.add_argument("--convention", default="rlddm", choices=["rlddm", "hssm", "hddm"])
    p.add_argument("--draws", type=int, default=1000, help="amortized posterior draws per participant")
    p.add_argument("--chains", type=int, default=4, help="NUTS chains per participant")
    p.add_argument("--draws-per-chain", type=int, default=1000, help="NUTS draws per chain")
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--nuts-backend", default="nutpie", choices=["nutpie", "nutpie-jax", "pymc", "pymc-c"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nuts-store", help=nuts_store_help)
    p.add_argument("--out", default="rlddm_output/compare", help="report directory (default: %(default)s)")
    p.set_defaults(func=cmd_compare)

    p = command("validate-designs", help="a general network design by design: calibration (raw and refined), "
                                         "k-hat, agreement with NUTS; one table")
    p.add_argument("--checkpoint", default="general", help=checkpoint_help)
    p.add_argument("--designs", nargs="+", choices=sorted(NAMED_DESIGNS), help="default: all named designs")
    p.add_argument("--datasets", type=int, default=1000, help="datasets for calibration and the k-hat share")
    p.add_argument("--compare-datasets", type=int, default=50,
                   help="shared datasets fitted by NUTS")
    p.add_argument("--steps", nargs="+", choices=["calibration", "compare"], default=["calibration", "compare"],
                   help="calibration (diagnose and k-hat) and/or compare (NUTS); the table is made from all the "
                        "reports in --out (default: both)")
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--tune", type=int, default=1000, help="NUTS tuning steps")
    p.add_argument("--draws-per-chain", type=int, default=1000, help="NUTS draws per chain")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nuts-store", help=nuts_store_help)
    p.add_argument("--out", default="rlddm_output/designs", help="report directory (default: %(default)s)")
    p.set_defaults(func=cmd_validate_designs)

    p = command("real-amortized", help="a data file through the single- and dual-rate networks, beside the exact "
                                       "fits of rlddm fit-exact (agreement, k-hat, flags, time, model comparison)")
    p.add_argument("--checkpoint", default="general", help="the single-rate network; its dual-rate sibling "
                                                          "(NAME-dual) serves --model dual (default: %(default)s)")
    p.add_argument("--model", nargs="+", default=["single", "dual"], choices=["single", "dual"])
    _add_data_options(p)
    _add_settings_options(p)
    p.add_argument("--exact", required=True, help="the rlddm fit-exact report directory of the same data and settings")
    p.add_argument("--draws", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="report directory")
    p.set_defaults(func=cmd_real_amortized)

    p = command("headline", help="the README's headline table from the diagnose and compare reports")
    p.add_argument("--diagnostics", default="reports/default", help="an `rlddm diagnose` report directory")
    p.add_argument("--compare", default="reports/compare", help="an `rlddm compare` report directory")
    p.set_defaults(func=cmd_headline)

    p = command("fit-exact", help="NUTS with the exact likelihood for every participant of a data file, "
                                  "with posterior predictive checks")
    _add_data_options(p)
    p.add_argument("--config", help="a YAML config or shipped name for the priors (default: the built-in "
                                    "priors for human data, docs/model.md)")
    p.add_argument("--model", nargs="+", default=["single", "dual"], choices=["single", "dual"])
    _add_settings_options(p, hddm=True)
    p.add_argument("--hddm-compatible", action="store_true",
                   help="HDDM's RL-DDM choices: z fixed at 0.5, each pair's first trial left out, "
                        "HDDM's contaminants (p_outlier 0.05, RTs uniform on [0, 5] s)")
    p.add_argument("--pair-reward-probs", help="for the predictive checks: each condition's reward "
                                               "probabilities of arm 0 / arm 1, e.g. 0.2/0.8,0.3/0.7,0.4/0.6")
    p.add_argument("--reference", help="HDDM's published per-subject estimates (CSV) to compare with")
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--draws-per-chain", type=int, default=1000)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--adaptation", default="diag", choices=["diag", "low_rank"],
                   help="nutpie's mass matrix adaptation (low_rank for strongly correlated posteriors)")
    p.add_argument("--ppc-draws", type=int, default=200, help="posterior draws per participant simulated")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--report-only", action="store_true", help="reuse the posteriors in --out")
    p.add_argument("--refit-failed", action="store_true",
                   help="reuse the posteriors in --out, fitting again (as a retry) those that fail the gate")
    p.add_argument("--out", required=True, help="report directory")
    p.set_defaults(func=cmd_fit_exact)

    p = command("bench", help="speed benchmarks")
    p.add_argument("what", choices=["simulate", "likelihood", "train", "infer", "group"])
    p.add_argument("--config", default=DEFAULT_CONFIG, help=config_help)
    p.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help=checkpoint_help)
    p.add_argument("--participants", type=int, default=20000)
    p.add_argument("--seed", type=int, default=0)
    _add_data_options(p, required=False)
    _add_settings_options(p)
    p.add_argument("--no-reference", action="store_true", help="group: time the amortized sampler only")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (DataError, ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"rlddm {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

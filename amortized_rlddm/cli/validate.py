"""The maintainers' validation, report and benchmark commands, under `rlddm validate`: group,
designs, trusted, real-data, gap, adapt, calibration-change, headline, ablate, bench and report."""

import json
from pathlib import Path

import numpy as np

from ..model.config import load_config
from ..model.designs import NAMED_DESIGNS, named_design
from .options import (
    NUTS_STORE_HELP,
    add_checkpoint,
    add_command,
    add_config,
    add_data_options,
    add_settings_options,
    prepared_study,
)

__all__ = ["add_commands"]

BENCHMARKS = ("simulate", "likelihood", "train", "infer", "group")  # docs/benchmarks.md


def run_validate_group(args):
    """`rlddm validate group`: the group sampler against the PyMC reference and its
    calibration, or on one data file."""
    from ..amortized.posterior import AmortizedPosterior
    from ..validation.group import validate, validate_on_data

    posterior = AmortizedPosterior.load(args.checkpoint)
    if args.data:
        study, design, _ = prepared_study(args, posterior.base_design)
        table = validate_on_data(posterior, study, design, args.out, seed=args.seed, source=args.data,
                                 reference_store=args.reference_store, published=args.published)
        print(table.round(3).to_string(index=False))
        print(f"wrote {args.out}")
        return
    summary = validate(posterior, args.out, seed=args.seed, sbc_studies=args.sbc_studies, progress=not args.quiet,
                       reference_store=args.reference_store, sbc_chains=args.sbc_chains, sbc_tune=args.sbc_tune,
                       sbc_draws=args.sbc_draws, steps=args.steps)
    print(json.dumps(summary, indent=1, default=float))
    print(f"wrote {args.out}")


def run_validate_designs(args):
    """`rlddm validate designs`: a general network design by design, in one table."""
    from ..amortized.posterior import AmortizedPosterior
    from ..validation.by_design import validate_designs

    table = validate_designs(AmortizedPosterior.load(args.checkpoint), args.out, designs=args.designs,
                             datasets=args.datasets, compare_datasets=args.compare_datasets, draws=args.draws,
                             seed=args.seed, tune=args.tune, draws_per_chain=args.draws_per_chain,
                             progress=not args.quiet, nuts_store=args.nuts_store,
                             steps=args.steps)
    print(table)
    print(f"\nwrote the reports and {Path(args.out) / 'table.md'}")


def run_validate_trusted(args):
    """`rlddm validate trusted`: the correction on fresh simulations of named designs, per
    network, and their table."""
    from ..amortized.posterior import AmortizedPosterior
    from ..validation.posterior_check import check_posteriors, fresh_simulations, trusted_table

    for checkpoint in args.checkpoints:
        posterior = AmortizedPosterior.load(checkpoint)
        for name in args.designs:
            design = named_design(name)
            study = fresh_simulations(posterior, args.participants, args.seed, design)
            summary = check_posteriors(posterior, study, Path(args.out) / Path(checkpoint).name / name,
                                       draws=args.draws, seed=args.seed, design=design)
            print(f"{checkpoint}, {name}: trusted {100 * summary['trusted_share']:.1f}%")
    table = trusted_table(args.out)
    (Path(args.out) / "table.md").write_text(table + "\n")
    print(table)


def run_validate_report(args):
    """`rlddm validate report`: rebuild a committed report and write its manifest, or list them."""
    from ..validation.reports import REPORTS, command_lines, rebuild, record, stale_inputs
    from . import main

    if args.name is None:
        for name, report in REPORTS.items():
            stale = stale_inputs(name)
            print(f"{name:24} {report.folder:32} " + (f"stale: {', '.join(stale)}" if stale else "current"))
        return
    if args.dry_run:
        print("\n".join(command_lines(REPORTS[args.name])))
    elif args.record:
        print(f"recorded {record(args.name)['commit']} for {REPORTS[args.name].folder}")
    else:
        rebuild(args.name, main)
        print(f"rebuilt {REPORTS[args.name].folder}")


def run_validate_real_data(args):
    """`rlddm validate real-data`: a data file through the networks, beside its exact fits."""
    from ..amortized.checkpoint import checkpoint_for_model
    from ..amortized.posterior import AmortizedPosterior
    from ..validation.real_amortized import real_amortized_report

    posteriors = {model: AmortizedPosterior.load(checkpoint_for_model(args.checkpoint, model)) for model in args.model}
    study, design, excluded = prepared_study(args, next(iter(posteriors.values())).base_design)
    summary = real_amortized_report(posteriors, study, design, args.exact, args.out, draws=args.draws,
                                    seed=args.seed, source=args.data, excluded=excluded)
    for model in posteriors:
        print(f"{model}: {summary[model]['seconds_checked']:.2f} s for the study (checked), "
              f"{summary[model]['above_threshold']} above the k-hat threshold")
    print(f"wrote {Path(args.out) / 'report.md'}")


def run_validate_gap(args):
    """`rlddm validate gap`: where a network's raw answer departs from the exact posterior on a study."""
    from ..amortized.posterior import AmortizedPosterior
    from ..validation.gap import gap_report

    posterior = AmortizedPosterior.load(args.checkpoint)
    study, design, _ = prepared_study(args, posterior.base_design)
    summary = gap_report(posterior, study, design, args.out, draws=args.draws, replicates=args.replicates,
                         seed=args.seed, source=args.data)
    print(f"{summary['participants']} participants: raw k-hat above the threshold for {summary['above_threshold']}, "
          f"unlike the training data {summary['unlike_training']}; median abs. raw error (corrected sds): "
          + ", ".join(f"{n} {e['median_abs_error']:.2f}" for n, e in summary["raw_error"].items()))
    print(f"wrote {Path(args.out) / 'report.md'}")


def run_validate_adapt(args):
    """`rlddm validate adapt`: what adapting a network to a study does to its raw answer and calibration."""
    from ..amortized.posterior import AmortizedPosterior
    from ..validation.adaptation import adaptation_report

    study, design, _ = prepared_study(args, AmortizedPosterior.load(args.checkpoint).base_design)
    settings = {"epochs": args.epochs} if args.epochs else None
    summary = adaptation_report(args.checkpoint, study, design, args.out, settings=settings, draws=args.draws,
                                seed=args.seed, calibration_datasets=args.calibration_datasets, source=args.data,
                                progress=not args.quiet)
    runs = summary["runs"]
    print(f"raw k-hat above the threshold: {summary['before']['above_threshold']} of {summary['participants']} "
          f"before, {runs['whole_study']['adapted']['above_threshold']} after adapting on the whole study; held-out "
          f"half {runs['half_study']['held_out_before']['above_threshold']} -> "
          f"{runs['half_study']['held_out']['above_threshold']}")
    print(f"wrote {Path(args.out) / 'report.md'}")


def run_validate_headline(args):
    """`rlddm validate headline`: the README's headline table."""
    from ..validation.compare import headline_table

    print(headline_table(args.diagnostics, args.compare))


def run_validate_ablate(args):
    """`rlddm validate ablate`: network variants trained with one budget, compared."""
    from ..validation.ablation import ablate

    variants = None if args.variants is None else [v.strip() for v in args.variants.split(",") if v.strip()]
    ablate(load_config(args.config), args.out, variants=variants, epochs=args.epochs, datasets=args.datasets,
           seed=args.seed, verbose=0 if args.quiet else 2, progress=not args.quiet)
    print((Path(args.out) / "ablation.md").read_text())


def run_validate_bench(args):
    """`rlddm validate bench WHAT`: one speed benchmark, printed (docs/benchmarks.md)."""
    from .. import benchmarks

    if args.what == "simulate":
        benchmarks.print_bench_simulate(benchmarks.bench_simulate(args.config, participants=args.participants,
                                                                  seed=args.seed))
    elif args.what == "train":
        benchmarks.print_bench_backends(benchmarks.bench_backends(args.config))
    elif args.what == "likelihood":
        benchmarks.print_bench_likelihood(benchmarks.bench_likelihood(seed=args.seed))
    elif args.what == "infer" and args.data:
        from ..amortized.posterior import AmortizedPosterior

        posterior = AmortizedPosterior.load(args.checkpoint)
        study, design, _ = prepared_study(args, posterior.base_design)
        benchmarks.print_bench_correction(benchmarks.bench_correction(posterior, study, design, seed=args.seed),
                                          Path(args.data).name)
    elif args.what == "infer":
        benchmarks.print_bench_infer(benchmarks.bench_infer(args.checkpoint, seed=args.seed, design=args.design))
    elif args.what == "group":
        from ..amortized.posterior import AmortizedPosterior

        posterior = AmortizedPosterior.load(args.checkpoint)
        if args.data:
            study, design, _ = prepared_study(args, posterior.base_design)
            benchmarks.print_bench_group(benchmarks.bench_group(posterior, seed=args.seed, study=study, design=design,
                                                                source=Path(args.data).name,
                                                                reference=not args.no_reference))
        else:
            benchmarks.print_bench_group(benchmarks.bench_group(posterior, seed=args.seed,
                                                                reference=not args.no_reference))


def add_commands(subparsers, common):
    """`validate` and its commands: group, designs, trusted, real-data, gap, adapt, calibration-change,
    headline, ablate, bench and report."""
    validate = subparsers.add_parser("validate", help="the maintainers' validation, report and benchmark commands "
                                                      "(docs/validation.md, docs/benchmarks.md)",
                                     description="The maintainers' validation, report and benchmark commands.")
    commands = validate.add_subparsers(required=True)
    _add_group(commands, common)
    _add_designs(commands, common)
    _add_trusted(commands, common)
    _add_real_data(commands, common)
    _add_gap(commands, common)
    _add_adapt(commands, common)
    _add_calibration_change(commands, common)
    _add_headline(commands, common)
    _add_ablate(commands, common)
    _add_bench(commands, common)
    _add_report(commands, common)


def _add_group(commands, common):
    p = add_command(commands, common, "group", run_validate_group,
                    help="the group sampler against the PyMC reference, and its calibration (with --data: on that "
                         "data file only)")
    add_checkpoint(p)
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
    add_data_options(p, required=False)
    p.add_argument("--published", help="with --data and a choice-only network: HDDM's print_stats table of its Hrl "
                                       "fit of the same data (CSV: node, mean, std, ...), set beside ours")
    add_settings_options(p)


def _add_designs(commands, common):
    p = add_command(commands, common, "designs", run_validate_designs,
                    help="a general network design by design: calibration (raw and refined), k-hat, agreement "
                         "with NUTS; one table")
    add_checkpoint(p, default="general")
    p.add_argument("--designs", nargs="+", choices=sorted(NAMED_DESIGNS), help="default: all named designs")
    p.add_argument("--datasets", type=int, default=1000, help="datasets for calibration and the k-hat share")
    p.add_argument("--compare-datasets", type=int, default=50, help="shared datasets fitted by NUTS")
    p.add_argument("--steps", nargs="+", choices=["calibration", "compare"], default=["calibration", "compare"],
                   help="calibration (diagnose and k-hat) and/or compare (NUTS); the table is made from all the "
                        "reports in --out (default: both)")
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--tune", type=int, default=1000, help="NUTS tuning steps")
    p.add_argument("--draws-per-chain", type=int, default=1000, help="NUTS draws per chain")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nuts-store", help=NUTS_STORE_HELP)
    p.add_argument("--out", default="rlddm_output/designs", help="report directory (default: %(default)s)")


def _add_trusted(commands, common):
    p = add_command(commands, common, "trusted", run_validate_trusted,
                    help="the correction on fresh simulations of named designs, per network: the share trusted, "
                         "by method, and the time; one table")
    p.add_argument("--checkpoints", nargs="+", default=["general", "general-dual"])
    p.add_argument("--designs", nargs="+", choices=sorted(NAMED_DESIGNS),
                   default=["seed", "hddm_pst", "gershman", "stable300", "deadline"])
    p.add_argument("--participants", type=int, default=1000)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="rlddm_output/trusted", help="report directory (default: %(default)s)")


def _add_report(commands, common):
    from ..validation.reports import REPORTS

    p = add_command(commands, common, "report", run_validate_report,
                    help="rebuild a committed report under reports/ by its commands and write its manifest "
                         "(without a name: every report, and whether its inputs changed since)")
    p.add_argument("name", nargs="?", choices=list(REPORTS), help="the report (default: list them all)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--dry-run", action="store_true", help="print the commands only")
    what.add_argument("--record", action="store_true",
                      help="write the manifest of the report as committed, without running it")


def _add_real_data(commands, common):
    p = add_command(commands, common, "real-data", run_validate_real_data,
                    help="a data file through the single- and dual-rate networks, beside the exact fits of rlddm "
                         "fit-exact (agreement, k-hat, flags, time, model comparison)")
    add_checkpoint(p, default="general", help="the single-rate network; its dual-rate sibling (NAME-dual) serves "
                                              "--model dual (default: %(default)s)")
    p.add_argument("--model", nargs="+", default=["single", "dual"], choices=["single", "dual"])
    add_data_options(p)
    add_settings_options(p)
    p.add_argument("--exact", required=True, help="the rlddm fit-exact report directory of the same data and settings")
    p.add_argument("--draws", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="report directory")


def _add_gap(commands, common):
    p = add_command(commands, common, "gap", run_validate_gap,
                    help="where a network's raw posteriors depart from the exact ones on a data file: the data's "
                         "features against the prior and posterior predictive, and which go with which error")
    add_checkpoint(p, default="general")
    add_data_options(p)
    add_settings_options(p)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--replicates", type=int, default=199, help="prior-predictive simulations per participant")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="report directory")


def run_validate_calibration_change(args):
    """`rlddm validate calibration-change`: two networks' calibration on the same simulations, the
    change and its standard error."""
    from ..amortized.posterior import AmortizedPosterior
    from ..validation.adaptation import VALIDATION_DESIGNS, calibration_change

    result = calibration_change(AmortizedPosterior.load(args.before), AmortizedPosterior.load(args.after),
                                designs=args.designs or VALIDATION_DESIGNS, datasets=args.datasets, seed=args.seed,
                                draws=args.draws, bootstraps=args.bootstraps)
    rows = [(design, name, r) for design, params in result.items() for name, r in params.items()]
    for design, name, r in rows:
        print(f"{design:10s} {name:10s} {r['before']:.3f} -> {r['after']:.3f}  change {r['change']:+.3f} "
              f"(se {r['se']:.3f})")
    changes = np.array([r["change"] for *_, r in rows])
    beyond = sum(r["change"] - 2 * r["se"] > args.tolerance for *_, r in rows)
    print(f"largest rise {max(changes.max(), 0.0):.3f}, mean change {changes.mean():+.4f}; "
          f"{int((np.abs(changes) <= args.tolerance).sum())} of {len(rows)} within {args.tolerance}, "
          f"{beyond} more than two standard errors above it")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"before": args.before, "after": args.after, "datasets": args.datasets,
                                              "seed": args.seed, "changes": result}, indent=1))
        print(f"wrote {args.out}")


def _add_calibration_change(commands, common):
    p = add_command(commands, common, "calibration-change", run_validate_calibration_change,
                    help="two networks (e.g. one and its adapted copy) on the same fresh simulations of named designs:"
                         " each calibration error before and after, the change and its bootstrap standard error")
    p.add_argument("--before", required=True, help="checkpoint directory or shipped name")
    p.add_argument("--after", required=True, help="checkpoint directory or shipped name")
    p.add_argument("--designs", nargs="+", choices=sorted(NAMED_DESIGNS), help="default: the five validation designs")
    p.add_argument("--datasets", type=int, default=4000, help="simulations per design (default: %(default)s)")
    p.add_argument("--draws", type=int, default=500, help="posterior draws per dataset (default: %(default)s)")
    p.add_argument("--bootstraps", type=int, default=500, help="resamples of the datasets (default: %(default)s)")
    p.add_argument("--tolerance", type=float, default=0.01, help="the change allowed (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="a JSON file for the result")


def _add_adapt(commands, common):
    p = add_command(commands, common, "adapt", run_validate_adapt,
                    help="adapt a network on a data file, whole and half (the other half held out): raw errors "
                         "against the exact posteriors before and after, and calibration on the five"
                         " validation designs")
    add_checkpoint(p, default="general")
    add_data_options(p)
    add_settings_options(p)
    p.add_argument("--epochs", type=int, help="adaptation epochs (default: rlddm adapt's)")
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--calibration-datasets", type=int, default=1000,
                   help="fresh simulations per validation design for the calibration before and after")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="report directory (the adapted checkpoints: OUT/checkpoints)")


def _add_headline(commands, common):
    p = add_command(commands, common, "headline", run_validate_headline,
                    help="the README's headline table from the diagnose and compare reports")
    p.add_argument("--diagnostics", default="reports/default", help="an `rlddm diagnose` report directory")
    p.add_argument("--compare", default="reports/compare", help="an `rlddm compare` report directory")


def _add_ablate(commands, common):
    p = add_command(commands, common, "ablate", run_validate_ablate,
                    help="train variants of the network (inputs, architecture, optimisation) with one budget and "
                         "compare them")
    add_config(p)
    p.add_argument("--variants", help="comma-separated names from amortized_rlddm.validation.ablation.VARIANTS "
                                      "(default: all); results accumulate in OUT/ablation.json")
    p.add_argument("--epochs", type=int, help="the shared training budget (default: the config's)")
    p.add_argument("--datasets", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="rlddm_output/ablation",
                   help="results directory, where results accumulate (default: %(default)s)")


def _add_bench(commands, common):
    p = add_command(commands, common, "bench", run_validate_bench, help="speed benchmarks (docs/benchmarks.md)")
    p.add_argument("what", choices=BENCHMARKS,
                   help="the simulator against a Python loop, the exact likelihood's cost per trial, training steps "
                        "per Keras backend, inference (with --data: the correction of that file), or the group "
                        "sampler (with --data: on that file)")
    add_config(p)
    add_checkpoint(p)
    p.add_argument("--participants", type=int, default=20000)
    p.add_argument("--seed", type=int, default=0)
    add_data_options(p, required=False)
    add_settings_options(p)
    p.add_argument("--no-reference", action="store_true", help="group: time the amortized sampler only")

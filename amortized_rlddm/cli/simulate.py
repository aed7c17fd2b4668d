"""Simulating studies: `rlddm simulate` and `rlddm demo` (simulate and infer, or infer a data file)."""

import time
from pathlib import Path

import pandas as pd

from ..data.io import write_study
from ..model.config import load_config
from ..model.simulator import simulate_from_priors
from ..output import save_posterior, summarize
from .options import add_checkpoint, add_command, add_config, add_data_options, add_settings_options, prepared_study
from .printing import print_importance

__all__ = ["add_commands"]

def run_simulate(args):
    """`rlddm simulate`: a study, and its true parameters with --truth."""
    config = load_config(args.config)
    study, truth = simulate_from_priors(config.priors, config.design, args.participants, args.seed,
                                        progress=not args.quiet)
    write_study(study, args.out)
    if args.truth:
        truth.to_csv(args.truth, index=False)
    print(f"wrote {study.n_trials.sum()} trials of {study.n_participants} participants to {args.out}"
          + (f" and their true parameters to {args.truth}" if args.truth else ""))


def run_demo(args):
    """`rlddm demo`: simulated participants inferred and printed beside their true values (with
    --data: the data file's participants)."""
    from ..amortized.posterior import AmortizedPosterior
    from ..validation.plots import plot_recovery

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.data:
        _demo_on_data(args, out)
        return
    posterior = AmortizedPosterior.load(args.checkpoint)
    config = load_config(args.config)
    study, truth = simulate_from_priors(config.priors, config.design, args.participants, args.seed)
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
    _print_recovery(summary, truth, list(posterior.parameter_names))
    print_importance(tree)
    print(f"inferred {study.n_participants} participants x {args.draws} draws in "
          f"{elapsed * 1000:.0f} ms ({elapsed * 1000 / study.n_participants:.1f} ms per participant)")
    print(f"wrote {out / 'data.csv'}, {out / 'truth.csv'}, {out / 'posterior.nc'}, "
          f"{out / 'summary.csv'} and {out / 'recovery.png'}")


def _print_recovery(summary, truth, names):
    """Each participant's posterior means with the true values in brackets, and the
    participants flagged as unlike the training data."""
    table = summary.pivot(index="participant", columns="parameter", values="mean")[names]
    table.index = table.index.astype(int)
    true = truth.set_index("participant")[names]
    with pd.option_context("display.width", 160):
        print("posterior means (true values in brackets)")
        print(table.sort_index().round(2).astype(str).add(" [").add(true.round(2).astype(str)).add("]")
              .to_string())
    flagged = summary.loc[summary["out_of_distribution"], "participant"].unique()
    print(f"\nflagged as unlike the training data: {', '.join(map(str, flagged)) if len(flagged) else 'none'}")


def _demo_on_data(args, out):
    """The demo on a data file: infer every participant (checked by PSIS), print the
    posterior means and k-hats, write the posterior, the summary and the figure."""
    from ..amortized.posterior import AmortizedPosterior
    from ..validation.plots import plot_posteriors

    posterior = AmortizedPosterior.load(args.checkpoint)
    study, design, excluded = prepared_study(args, posterior.base_design)
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
    print_importance(tree)
    print(f"inferred {study.n_participants} participants x {args.draws} draws in {elapsed:.2f} s "
          f"({elapsed * 1000 / study.n_participants:.1f} ms per participant, checked by PSIS)")
    print(f"wrote {out / 'posterior.nc'}, {out / 'summary.csv'} and {out / 'posteriors.png'}")


def add_commands(subparsers, common):
    """simulate and demo."""
    _add_simulate(subparsers, common)
    _add_demo(subparsers, common)


def _add_simulate(subparsers, common):
    p = add_command(subparsers, common, "simulate", run_simulate,
                    help="simulate a study from a config's design and priors")
    add_config(p)
    p.add_argument("--participants", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True, help="data CSV (docs/data.md)")
    p.add_argument("--truth", help="CSV of the true parameters, one row per participant")


def _add_demo(subparsers, common):
    p = add_command(subparsers, common, "demo", run_demo,
                    help="simulate 20 participants and infer them with the shipped network (or, with --data, "
                         "infer a data file)")
    add_config(p)
    add_checkpoint(p)
    p.add_argument("--participants", type=int, default=20)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--out", default="demo_output")
    add_data_options(p, required=False)
    add_settings_options(p)

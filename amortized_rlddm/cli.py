"""The `rlddm` command line."""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .data.io import DataError, write_study
from .data.study import Study
from .model.config import load_config
from .model.simulator import simulate

DEFAULT_CONFIG = "default"  # the shipped config and network, found by name (amortized_rlddm.resources)
DEFAULT_CHECKPOINT = "default"
SIMULATION_CHUNK = 10_000  # participants per simulator call: the progress bar's step


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
    from .amortized.output import save_posterior, summarize
    from .amortized.posterior import AmortizedPosterior
    from .checks.plots import plot_recovery

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
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
    print(f"inferred {study.n_participants} participants x {args.draws} draws in "
          f"{elapsed * 1000:.0f} ms ({elapsed * 1000 / study.n_participants:.1f} ms per participant)")
    print(f"wrote {out / 'data.csv'}, {out / 'truth.csv'}, {out / 'posterior.nc'}, "
          f"{out / 'summary.csv'} and {out / 'recovery.png'}")


def cmd_train(args):
    from .amortized.posterior import AmortizedPosterior
    from .amortized.training import train, training_settings

    config = load_config(args.config)
    state = train(config, args.out, resume=args.resume, verbose=0 if args.quiet else 1 if args.progress else 2)
    if state["epochs_done"] >= int(training_settings(config)[1]["epochs"]):
        AmortizedPosterior.load(args.out).write_ood_reference(args.out)
    print(f"{state['epochs_done']} epochs done in {state['train_seconds'] / 60:.1f} min of training; "
          f"checkpoint in {args.out}")


def cmd_infer(args):
    from .amortized.output import save_posterior, summarize
    from .amortized.posterior import AmortizedPosterior
    from .checks.plots import plot_posteriors

    posterior = AmortizedPosterior.load(args.checkpoint)
    start = time.perf_counter()
    tree = posterior.infer(args.data, draws=args.draws, seed=args.seed, convention=args.convention,
                           model=args.model)
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


def cmd_diagnose(args):
    from .amortized.posterior import AmortizedPosterior
    from .checks.diagnostics import diagnose, metrics_table, replications_markdown

    metrics = diagnose(AmortizedPosterior.load(args.checkpoint), args.datasets, args.seed, args.out,
                       draws=args.draws, replications=args.replications, progress=not args.quiet)
    print(metrics_table(metrics["parameters"]))
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


def cmd_headline(args):
    from .checks.compare import headline_table

    print(headline_table(args.diagnostics, args.compare))


def cmd_compare(args):
    from .amortized.posterior import AmortizedPosterior
    from .checks.compare import compare

    summary, timing = compare(AmortizedPosterior.load(args.checkpoint), args.out, n_datasets=args.datasets,
                              seed=args.seed, data=args.data, convention=args.convention, draws=args.draws,
                              chains=args.chains, draws_per_chain=args.draws_per_chain, tune=args.tune,
                              nuts_backend=args.nuts_backend, n_trials=args.trials, progress=not args.quiet)
    with pd.option_context("display.width", 200):
        print(summary.round(3).to_string(index=False))
    print(f"\nper participant: amortized {timing['amortized_s_per_participant'] * 1000:.1f} ms, NUTS "
          f"{timing['nuts_s_per_participant']:.1f} s ({timing['speedup']:.0f}x); wrote {args.out}")


def cmd_bench(args):
    from .benchmarks import bench_simulate, print_bench_simulate

    if args.what == "simulate":
        print_bench_simulate(bench_simulate(args.config, participants=args.participants, seed=args.seed))
    elif args.what == "train":
        from .benchmarks import bench_backends, print_bench_backends

        print_bench_backends(bench_backends(args.config))
    elif args.what == "infer":
        from .benchmarks import bench_infer, print_bench_infer

        print_bench_infer(bench_infer(args.checkpoint, seed=args.seed))


def build_parser():
    parser = argparse.ArgumentParser(prog="rlddm", description="Amortized Bayesian inference for RL-DDMs.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", action="store_true", help="no progress bars or training progress")
    subparsers = parser.add_subparsers(dest="command", required=True)

    def command(name, help):  # every command takes the common options
        return subparsers.add_parser(name, parents=[common], help=help)

    config_help = "a YAML config, or the name of a shipped one (default: %(default)s)"
    checkpoint_help = "a checkpoint directory, or the name of a shipped network (default: %(default)s)"

    p = command("simulate", help="simulate a study from a config's design and priors")
    p.add_argument("--config", default=DEFAULT_CONFIG, help=config_help)
    p.add_argument("--participants", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True, help="data CSV (docs/data.md)")
    p.add_argument("--truth", help="CSV of the true parameters, one row per participant")
    p.set_defaults(func=cmd_simulate)

    p = command("demo", help="simulate 20 participants and infer them with the shipped network")
    p.add_argument("--config", default=DEFAULT_CONFIG, help=config_help)
    p.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help=checkpoint_help)
    p.add_argument("--participants", type=int, default=20)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--out", default="demo_output")
    p.set_defaults(func=cmd_demo)

    p = command("train", help="train a network online from a YAML config")
    p.add_argument("--config", required=True, help="a YAML config, or the name of a shipped one")
    p.add_argument("--out", required=True, help="checkpoint directory")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="one line per epoch instead of a progress bar (for logs)")
    p.set_defaults(func=cmd_train)

    p = command("infer", help="posteriors for every participant of a data CSV")
    p.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help=checkpoint_help)
    p.add_argument("--data", required=True)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", required=True, help="posterior NetCDF (xarray DataTree)")
    p.add_argument("--summary", help="CSV of mean, sd and 94%% HDI per participant and parameter")
    p.add_argument("--plots", help="directory for figures")
    p.add_argument("--convention", default="rlddm", choices=["rlddm", "hssm", "hddm"])
    p.add_argument("--model", choices=["single", "dual"], help="refuse if the network is not this model")
    p.set_defaults(func=cmd_infer)

    p = command("diagnose", help="recovery and calibration of a network on fresh simulations")
    p.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help=checkpoint_help)
    p.add_argument("--datasets", type=int, default=1000)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--replications", type=int, default=1,
                   help="repeat the calibration check on this many independent sets of --datasets "
                        "(seeds --seed, --seed + 1, ...): band exits counted against chance, ranks pooled")
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
    p.add_argument("--out", default="rlddm_output/compare", help="report directory (default: %(default)s)")
    p.set_defaults(func=cmd_compare)

    p = command("headline", help="the README's headline table from the diagnose and compare reports")
    p.add_argument("--diagnostics", default="reports/default", help="an `rlddm diagnose` report directory")
    p.add_argument("--compare", default="reports/compare", help="an `rlddm compare` report directory")
    p.set_defaults(func=cmd_headline)

    p = command("bench", help="speed benchmarks")
    p.add_argument("what", choices=["simulate", "train", "infer"])
    p.add_argument("--config", default=DEFAULT_CONFIG, help=config_help)
    p.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help=checkpoint_help)
    p.add_argument("--participants", type=int, default=20000)
    p.add_argument("--seed", type=int, default=0)
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

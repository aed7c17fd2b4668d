"""The `rlddm` command line."""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .config import load_config
from .data_io import DataError, write_study
from .likelihood import loglik
from .simulator import simulate

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "training_configs" / "default.yaml"


def _simulate_study(config, participants, seed):
    """Draw parameters from the priors and simulate; returns (study, truth DataFrame)."""
    rng = np.random.default_rng(seed)
    params = config.priors.sample(rng, participants)
    study = simulate(params, config.design, seed=int(rng.integers(2**63)))
    truth = pd.DataFrame({"participant": study.participant, **params})
    return study, params, truth


def cmd_simulate(args):
    config = load_config(args.config)
    study, _, truth = _simulate_study(config, args.participants, args.seed)
    write_study(study, args.out)
    if args.truth:
        truth.to_csv(args.truth, index=False)
    print(f"wrote {study.n_trials.sum()} trials of {study.n_participants} participants to {args.out}"
          + (f" and their true parameters to {args.truth}" if args.truth else ""))


def cmd_demo(args):
    config = load_config(args.config)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    study, params, truth = _simulate_study(config, args.participants, args.seed)
    elapsed = time.perf_counter() - start
    write_study(study, out / "data.csv")
    truth.to_csv(out / "truth.csv", index=False)
    valid = study.valid & ~study.missing
    _, position = config.design.block_layout(study.n_trials, study.max_trials)
    better = config.design.arm_probabilities(position).argmax(-1)
    summary = pd.DataFrame({
        "participant": study.participant,
        "trials": study.n_trials,
        "missing": study.missing.sum(1),
        "p_better_arm": np.where(valid, study.choice == better, 0).sum(1) / valid.sum(1),
        "mean_rt": np.nanmean(np.where(valid, study.rt, np.nan), axis=1),
        "loglik_at_truth": loglik(study, params, q_init=config.design.q_init,
                                  deadline=config.design.deadline),
    })
    summary = pd.concat([summary, truth.drop(columns="participant")], axis=1)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(summary.round(3).to_string(index=False))
    print(f"\nsimulated {study.n_trials.sum()} trials in {elapsed * 1000:.1f} ms; "
          f"wrote {out / 'data.csv'} and {out / 'truth.csv'}")


def cmd_bench(args):
    from .benchmarks import bench_simulate, print_bench_simulate

    if args.what == "simulate":
        print_bench_simulate(bench_simulate(args.config, participants=args.participants, seed=args.seed))


def build_parser():
    parser = argparse.ArgumentParser(prog="rlddm", description="Amortized Bayesian inference for RL-DDMs.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("simulate", help="simulate a study from a config's design and priors")
    p.add_argument("--config", default=str(DEFAULT_CONFIG))
    p.add_argument("--participants", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True, help="data CSV (DESIGN.md §4)")
    p.add_argument("--truth", help="CSV of the true parameters, one row per participant")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("demo", help="simulate a small study and summarise it")
    p.add_argument("--config", default=str(DEFAULT_CONFIG))
    p.add_argument("--participants", type=int, default=20)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--out", default="demo_output")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("bench", help="speed benchmarks")
    p.add_argument("what", choices=["simulate"])
    p.add_argument("--config", default=str(DEFAULT_CONFIG))
    p.add_argument("--participants", type=int, default=20000)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (DataError, ValueError, FileNotFoundError) as err:
        print(f"rlddm {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

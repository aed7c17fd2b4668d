"""Training a network, adapting it to a study and measuring it: `rlddm train`, `adapt`,
`export`, `diagnose`, `compare` and `power`."""

from pathlib import Path

import pandas as pd

from ..data.io import CONVENTIONS
from ..model.config import MODELS, load_config
from ..model.designs import NAMED_DESIGNS
from .options import (
    NAMED_DESIGN_HELP,
    NUTS_STORE_HELP,
    add_checkpoint,
    add_command,
    add_data_options,
    add_settings_options,
    prepared_study,
)

__all__ = ["add_commands"]


def run_train(args):
    """`rlddm train`: train (or resume) a network; its out-of-distribution reference once done."""
    from ..amortized.posterior import AmortizedPosterior
    from ..amortized.training import train, training_settings

    config = load_config(args.config)
    state = train(config, args.out, resume=args.resume, verbose=0 if args.quiet else 1 if args.progress else 2)
    if state["epochs_done"] >= int(training_settings(config)[1]["epochs"]):
        AmortizedPosterior.load(args.out).write_ood_reference(args.out)
    print(f"{state['epochs_done']} epochs done in {state['train_seconds'] / 60:.1f} min of training; "
          f"checkpoint in {args.out}")


def run_adapt(args):
    """`rlddm adapt`: fine-tune a network on a study's own data (self-consistency), a new checkpoint."""
    from ..amortized.adaptation import ADAPTATION_DEFAULTS, adapt
    from ..amortized.checkpoint import checkpoint_for_model
    from ..amortized.posterior import AmortizedPosterior

    checkpoint = checkpoint_for_model(args.checkpoint, args.model)
    base = AmortizedPosterior.load(args.out if args.resume else checkpoint).base_design
    study, design, _ = prepared_study(args, base)
    settings = {key: getattr(args, key) for key in ADAPTATION_DEFAULTS if getattr(args, key) is not None}
    state = adapt(checkpoint, study, design, args.out, settings=settings, resume=args.resume, model=args.model,
                  data_source=args.data, progress=not args.quiet)
    best = state["best_epoch"]
    print(f"{state['epochs_done']} epochs in {state['seconds'] / 60:.1f} min; kept "
          + (f"epoch {best}" if best else "the network before adaptation (no epoch did better on the held-out "
                                         "participants)")
          + f"; checkpoint in {args.out} (rlddm infer --checkpoint {args.out} with the same data options)")


def run_export(args):
    """`rlddm export`: a finished checkpoint without the optimizer's state."""
    from ..amortized.checkpoint import export_checkpoint

    out = export_checkpoint(args.checkpoint, args.out)
    size = (out / "model.keras").stat().st_size / 1e6
    print(f"wrote {out}: the networks without the optimizer's state ({size:.1f} MB)")


def run_diagnose(args):
    """`rlddm diagnose`: recovery and calibration on fresh simulations."""
    from ..amortized.posterior import AmortizedPosterior
    from ..validation.diagnostics import diagnose, metrics_table, replications_markdown

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


def run_compare(args):
    """`rlddm compare`: amortized against NUTS posteriors on shared datasets."""
    from ..amortized.posterior import AmortizedPosterior
    from ..validation.compare import compare

    summary, timing = compare(AmortizedPosterior.load(args.checkpoint), args.out, n_datasets=args.datasets,
                              seed=args.seed, data=args.data, convention=args.convention, draws=args.draws,
                              chains=args.chains, draws_per_chain=args.draws_per_chain, tune=args.tune,
                              nuts_backend=args.nuts_backend, n_trials=args.trials, progress=not args.quiet,
                              design=args.design, nuts_store=args.nuts_store)
    with pd.option_context("display.width", 200):
        print(summary.round(3).to_string(index=False))
    print(f"\nper participant: amortized {timing['amortized_s_per_participant'] * 1000:.1f} ms, NUTS "
          f"{timing['nuts_s_per_participant']:.1f} s ({timing['speedup']:.0f}x); wrote {args.out}")


def run_power(args):
    """`rlddm power`: how well each parameter is recovered at each trial count."""
    from ..amortized.posterior import AmortizedPosterior
    from ..validation.power import power_analysis

    table = power_analysis(AmortizedPosterior.load(args.checkpoint), args.trials, args.datasets, args.seed,
                        args.out, draws=args.draws, progress=not args.quiet)
    wide = table.pivot(index="trials", columns="parameter", values=["correlation", "contraction"])
    with pd.option_context("display.width", 200):
        print(wide.round(3).to_string())
    print(f"\nwrote {Path(args.out) / 'power.csv'} and {Path(args.out) / 'power.png'}")


def add_commands(subparsers, common):
    """train, adapt, export, diagnose, compare and power."""
    _add_train(subparsers, common)
    _add_adapt(subparsers, common)
    _add_export(subparsers, common)
    _add_diagnose(subparsers, common)
    _add_compare(subparsers, common)
    _add_power(subparsers, common)


def _add_train(subparsers, common):
    p = add_command(subparsers, common, "train", run_train, help="train a network online from a YAML config")
    p.add_argument("--config", required=True, help="a YAML config, or the name of a shipped one")
    p.add_argument("--out", required=True, help="checkpoint directory")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="one line per epoch instead of a progress bar (for logs)")


# rlddm adapt's settings (amortized.adaptation.ADAPTATION_DEFAULTS): type and help
ADAPT_OPTIONS = {
    "epochs": (int, "epochs; the checkpoint keeps the one with the lowest checked losses"),
    "steps_per_epoch": (int, "gradient steps per epoch"),
    "participants_per_step": (int, "participants in each step's self-consistency loss"),
    "draws": (int, "network draws per participant and step"),
    "draw_spread": (float, "the sd of the latent normal those draws come from (1: the network's own draws)"),
    "simulations_per_step": (int, "simulated participants of the study's designs per step"),
    "training_simulations_per_step": (int, "simulated participants like the network's training data per step "
                                           "(0: none)"),
    "simulation_weight": (float, "the simulation losses' weight"),
    "learning_rate": (float, "Adam's peak learning rate"),
    "held_out": (float, "share of participants held out to pick the epoch (0: none)"),
    "validation_simulations": (int, "simulations of each kind checking what the network keeps"),
    "seed": (int, "seeds the steps' draws and simulations"),
}


def _add_adapt(subparsers, common):
    from ..amortized.adaptation import ADAPTATION_DEFAULTS

    p = add_command(subparsers, common, "adapt", run_adapt,
                    help="fine-tune a network on a study's own data (self-consistency with the exact likelihood, "
                         "mixed with simulations of the study's designs and of its training data); writes a new "
                         "checkpoint")
    add_checkpoint(p)
    add_data_options(p)
    p.add_argument("--model", choices=list(MODELS), help="as for infer: a shipped network's sibling of this model")
    add_settings_options(p)
    p.add_argument("--out", required=True, help="the adapted checkpoint's directory (new, or with --resume)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted adaptation in --out")
    for key, (kind, text) in ADAPT_OPTIONS.items():
        p.add_argument(f"--{key.replace('_', '-')}", type=kind, help=f"{text} (default {ADAPTATION_DEFAULTS[key]})")


def _add_export(subparsers, common):
    p = add_command(subparsers, common, "export", run_export,
                    help="an inference-only copy of a finished checkpoint (no optimizer state), to ship or share")
    p.add_argument("--checkpoint", required=True, help="a finished checkpoint directory")
    p.add_argument("--out", required=True, help="the new checkpoint directory")


def _add_diagnose(subparsers, common):
    p = add_command(subparsers, common, "diagnose", run_diagnose,
                    help="recovery and calibration of a network on fresh simulations")
    add_checkpoint(p)
    p.add_argument("--design", choices=sorted(NAMED_DESIGNS), help=NAMED_DESIGN_HELP)
    p.add_argument("--datasets", type=int, default=1000)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--replications", type=int, default=1,
                   help="repeat the calibration check on this many independent sets of --datasets "
                        "(seeds --seed, --seed + 1, ...): band exits counted against chance, ranks pooled")
    p.add_argument("--refine", action="store_true",
                   help="score the first set's corrected posteriors (--refine) too, beside the raw ones")
    p.add_argument("--out", required=True, help="report directory")


def _add_compare(subparsers, common):
    p = add_command(subparsers, common, "compare", run_compare,
                    help="amortized vs exact-likelihood NUTS posteriors on shared datasets")
    add_checkpoint(p)
    p.add_argument("--design", choices=sorted(NAMED_DESIGNS), help=NAMED_DESIGN_HELP)
    p.add_argument("--datasets", type=int, default=50, help="simulated datasets (ignored with --data)")
    p.add_argument("--data", help="a data CSV to compare on instead of simulations")
    p.add_argument("--trials", type=int, help="trials per simulated dataset (default: the config's design)")
    p.add_argument("--convention", default="rlddm", choices=list(CONVENTIONS))
    p.add_argument("--draws", type=int, default=1000, help="amortized posterior draws per participant")
    p.add_argument("--chains", type=int, default=4, help="NUTS chains per participant")
    p.add_argument("--draws-per-chain", type=int, default=1000, help="NUTS draws per chain")
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--nuts-backend", default="nutpie", choices=["nutpie", "nutpie-jax", "pymc", "pymc-c"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nuts-store", help=NUTS_STORE_HELP)
    p.add_argument("--out", default="rlddm_output/compare", help="report directory (default: %(default)s)")


def _add_power(subparsers, common):
    p = add_command(subparsers, common, "power", run_power,
                    help="learning-rate recovery per trial count (power analysis)")
    add_checkpoint(p)
    p.add_argument("--trials", type=int, nargs="+", required=True)
    p.add_argument("--datasets", type=int, default=500)
    p.add_argument("--draws", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="rlddm_output/power", help="report directory (default: %(default)s)")

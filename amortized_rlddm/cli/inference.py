"""Posteriors of a study: `rlddm infer`, `check`, `group`, `fit-exact` and `compare-models`."""

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.io import parse_pair_reward_probs, participant_column
from ..model.config import MODELS
from ..model.designs import named_design
from ..model.settings import SettingOptions
from ..model.task import TaskDesign
from ..output import group_convergence, group_summary, save_posterior, summarize
from .options import add_checkpoint, add_command, add_data_options, add_settings_options, prepared_study
from .printing import print_importance

__all__ = ["add_commands"]


def run_infer(args):
    """`rlddm infer`: every participant's posterior, corrected by default."""
    from ..amortized.checkpoint import checkpoint_for_model
    from ..amortized.posterior import AmortizedPosterior
    from ..validation.plots import plot_posteriors

    posterior = AmortizedPosterior.load(checkpoint_for_model(args.checkpoint, args.model))
    study, design, _ = prepared_study(args, posterior.base_design)
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
    print_importance(tree)
    if "note" in tree["posterior"].attrs:
        print(f"note: {tree['posterior'].attrs['note']}")


def run_check(args):
    """`rlddm check`: the PSIS check and the correction of a data file's or of fresh simulations'
    posteriors."""
    from ..amortized.posterior import AmortizedPosterior
    from ..validation.posterior_check import check_posteriors, fresh_simulations

    posterior = AmortizedPosterior.load(args.checkpoint)
    if args.data:
        study, design, _ = prepared_study(args, posterior.base_design)
    else:
        if SettingOptions.from_namespace(args) != SettingOptions(design=args.design):
            raise ValueError("the likelihood settings and exclusions apply to --data; simulations take theirs "
                             "from --design (or the network's own design)")
        design = named_design(args.design) if args.design else None
        study = fresh_simulations(posterior, args.participants, args.seed, design)
    summary = check_posteriors(posterior, study, args.out, draws=args.draws, seed=args.seed, design=design,
                               replicates=args.misspecification)
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
    if "misspecification" in summary:
        m = summary["misspecification"]
        print(f"unlike simulations of their own design under the priors (p <= {m['alpha']:g}, {m['replicates']} "
              f"replicates each): {m['unlike_training']} of {summary['participants']} participants; the study: "
              f"MMD {m['study_mmd']:.4f}, p = {m['study_p_value']:.3f}"
              + (" (unlike its design's simulations)" if m["study_unlike_training"] else ""))
        print(f"of the {m['above_threshold']} above the k-hat threshold: {m['above_threshold_and_unlike_training']} "
              f"unlike the training data (the network extrapolates), {m['above_threshold_like_training']} like it "
              "(the network is inaccurate there)")
    print("the correction moved the posterior means by (median, in raw sds): " + ", ".join(
        f"{k} {v:.3f}" for k, v in summary["refined_shift_in_raw_sd"].items()))
    print("corrected sd / raw sd (median): "
          + ", ".join(f"{k} {v:.3f}" for k, v in summary["refined_sd_ratio"].items()))
    print(f"wrote check.csv, check.json, khat_histogram.png and refined_overlays.png to {args.out}")


def run_group(args):
    """`rlddm group`: the exact hierarchical posterior of a study, with --plots its figures."""
    from ..amortized.posterior import AmortizedPosterior
    from ..group.fit import fit_group, group_labels
    from ..validation.group import plot_group_difference, plot_group_posteriors, plot_shrinkage

    posterior = AmortizedPosterior.load(args.checkpoint)
    study, design, _ = prepared_study(args, posterior.base_design)
    groups = None
    if args.group_column:
        groups = group_labels(args.data, args.group_column, study.participant, participant_column(args.convention))
    tree = fit_group(posterior, study, groups=groups, chains=args.chains, tune=args.tune, draws=args.draws,
                     seed=args.seed, moves=args.moves, move_steps=args.move_steps,
                     design=design, correlated=args.correlated)
    save_posterior(tree, args.out)
    _print_group_fit(tree, study, args)
    if args.plots:
        post = tree["posterior"].to_dataset()
        folder = Path(args.plots)
        folder.mkdir(parents=True, exist_ok=True)
        plot_group_posteriors(post, folder / "group_posteriors.png")
        plot_shrinkage(posterior, study, tree, folder / "shrinkage.png")
        if groups is not None and len(set(groups)) > 1:
            plot_group_difference(post, folder / "group_difference.png")


def _print_group_fit(tree, study, args):
    """The group level's means and sds, the chains' convergence and acceptance, and the
    proposals' trust."""
    with pd.option_context("display.width", 200):
        print(group_summary(tree).round(3).to_string(index=False))
    rhat, ess = group_convergence(tree)
    rates = tree["acceptance"]["acceptance_rate"].values
    trusted = tree["correction"].to_dataset()["trusted"].values
    surrogate = tree["acceptance"].to_dataset().get("surrogate_acceptance_rate")
    print(f"{study.n_participants} participants, {args.chains} chains x {args.draws} draws in "
          f"{tree['posterior'].attrs['seconds']:.1f} s; max r-hat {rhat:.3f}, min bulk ESS {ess:.0f}; acceptance per "
          f"participant {rates.min():.2f}-{rates.max():.2f} (median {np.median(rates):.2f})"
          + ("" if surrogate is None else f", surrogate moves {float(surrogate):.2f}") + f"; wrote {args.out}")
    print(f"proposals fitted to the corrected posteriors: trusted {int(trusted.sum())}/{trusted.size}"
          + ("" if trusted.all() else " (the others' proposals are less apt: the chains stay exact, their acceptance "
                                      "shows it)"))
    if rhat > 1.01:
        print(f"warning: r-hat {rhat:.3f} > 1.01: the chains have not mixed (see the diagnostics group); run more "
              "--draws, and read the group sds with care (docs/group.md)")


def run_fit_exact(args):
    """`rlddm fit-exact`: NUTS on the exact likelihood for every participant, and the report."""
    from ..validation.real_data import fit_exact

    study, design, excluded = prepared_study(args, TaskDesign())
    if args.pair_reward_probs:
        study = replace(study, arm_probs=parse_pair_reward_probs(args.pair_reward_probs, study))
    reuse = "refit-failed" if args.refit_failed else "report" if args.report_only else None
    fit_exact(study, design, excluded, args.out, models=args.model, config=args.config,
              hddm_compatible=args.hddm_compatible, reuse=reuse, chains=args.chains,
              draws_per_chain=args.draws_per_chain, tune=args.tune, adaptation=args.adaptation,
              ppc_draws=args.ppc_draws, seed=args.seed, reference=args.reference, source=args.data,
              progress=not args.quiet)
    print(f"wrote {Path(args.out)}/report.md")


def run_compare_models(args):
    """`rlddm compare-models`: one vs two learning rates per participant and over the study
    (random-effects BMS), from each model's corrected amortized posterior."""
    from ..amortized.checkpoint import checkpoint_for_model
    from ..amortized.posterior import AmortizedPosterior
    from ..validation.model_comparison import RATE_PAIRS, compare_networks, rate_pair, write_comparison

    pair = rate_pair(args.models)
    if pair is None:
        raise ValueError(f"--models {' '.join(args.models)}: expected a family's one- and two-rate models, one of "
                         + ", ".join(" ".join(p) for p in RATE_PAIRS))
    posteriors = {model: AmortizedPosterior.load(checkpoint_for_model(args.checkpoint, model))
                  for model in pair}
    study, design, _ = prepared_study(args, posteriors[pair[0]].base_design)
    start = time.perf_counter()
    table, selection, _ = compare_networks(study, posteriors, design, draws=args.draws, seed=args.seed)
    report = write_comparison(args.out, table, selection, pair, source=args.data,
                              seconds=time.perf_counter() - start)
    print(report)
    print(f"wrote report.md, comparison.csv, bms.csv, bms.nc and bms.png to {args.out}")


def add_commands(subparsers, common):
    """infer, check, group, fit-exact and compare-models."""
    _add_infer(subparsers, common)
    _add_check(subparsers, common)
    _add_group(subparsers, common)
    _add_fit_exact(subparsers, common)
    _add_compare_models(subparsers, common)


def _add_infer(subparsers, common):
    p = add_command(subparsers, common, "infer", run_infer, help="posteriors for every participant of a data CSV")
    add_checkpoint(p)
    add_data_options(p)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", required=True, help="posterior NetCDF (xarray DataTree)")
    p.add_argument("--summary", help="CSV of mean, sd and 94%% HDI per participant and parameter")
    p.add_argument("--plots", help="directory for figures")
    p.add_argument("--model", choices=list(MODELS),
                   help="the model: a shipped network's sibling of this model (general -> general-dual; "
                        "softmax, softmax-dual: the choice-only networks), else refused if the network is not "
                        "this model")
    add_settings_options(p)
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


def _add_check(subparsers, common):
    p = add_command(subparsers, common, "check", run_check,
                    help="PSIS check of every participant's amortized posterior against the exact one, "
                         "with refinement")
    add_checkpoint(p)
    add_data_options(p, required=False)
    p.add_argument("--participants", type=int, default=1000,
                   help="without --data: participants simulated from the network's design, or from --design "
                        "(default %(default)s)")
    add_settings_options(p)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--misspecification", type=int, default=0, metavar="REPLICATES",
                   help="also check each participant and the study against REPLICATES simulations per "
                        "participant of its own design under the priors (e.g. 199; default: no check)")
    p.add_argument("--out", default="rlddm_output/check", help="report directory (default: %(default)s)")


def _add_group(subparsers, common):
    p = add_command(subparsers, common, "group", run_group,
                    help="the exact hierarchical posterior of a study, from the per-participant network")
    add_checkpoint(p)
    add_data_options(p)
    p.add_argument("--group-column", help="a column of the data giving each participant's group")
    add_settings_options(p)
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


def _add_fit_exact(subparsers, common):
    p = add_command(subparsers, common, "fit-exact", run_fit_exact,
                    help="NUTS with the exact likelihood for every participant of a data file, "
                         "with posterior predictive checks")
    add_data_options(p)
    p.add_argument("--config", help="a YAML config or shipped name for the priors (default: the built-in "
                                    "priors for human data, docs/model.md)")
    p.add_argument("--model", nargs="+", default=["single", "dual"], choices=list(MODELS),
                   help="the models fitted (default: %(default)s; choices alone: softmax softmax-dual)")
    add_settings_options(p, hddm=True)
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


def _add_compare_models(subparsers, common):
    p = add_command(subparsers, common, "compare-models", run_compare_models,
                    help="one vs two learning rates, per participant (log Bayes factor, PSIS-LOO) and over the "
                         "study (random-effects Bayesian model selection), from the corrected amortized posteriors")
    p.add_argument("--checkpoint", default="general",
                   help="the shipped family (default: %(default)s, with general-dual) or a checkpoint directory; a "
                        "choice-only model picks its own network")
    add_data_options(p)
    p.add_argument("--models", nargs=2, default=["single", "dual"], metavar=("ONE_RATE", "TWO_RATES"),
                   choices=list(MODELS),
                   help="the pair compared: single dual (the RL-DDM, default) or softmax softmax-dual (choices alone)")
    add_settings_options(p)
    p.add_argument("--draws", type=int, default=1000, help="corrected draws per participant and model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="report directory")

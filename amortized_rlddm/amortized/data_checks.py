"""What a network may be asked: refusals of data it was not trained for, and flags on data
that look unlike its training simulations (out-of-distribution checks)."""

from dataclasses import replace

import numpy as np
import xarray as xr

from ..data.exclusions import exclude_first_trial_of_each_condition
from ..data.study import Study
from ..model.config import Config
from ..model.family import DesignFamily
from ..model.priors import choice_only
from ..model.simulator import simulate, simulate_family
from ..model.task import DesignSettings, TaskDesign
from .checkpoint import InferenceError

# Out-of-distribution check: reference simulations and the quantiles that set its thresholds.
OOD_REFERENCE_DATASETS = 2000
OOD_REFERENCE_SEED = 20261122
OOD_DISTANCE_QUANTILE = 0.99  # designed false-alarm rate of the summary-distance check: 1%
OOD_RT_QUANTILE = 0.9999


def refuse_unserved(study: Study, config: Config, served, design: TaskDesign, model=None):
    """Raise an InferenceError naming the first participant (or request) the network was not
    trained for. `served`: the network's design or family of designs; `design`: the study's
    (its deadline, missing kind, q_init and contaminants, as the caller states them).

    A network for one design refuses another model, another deadline, missing kind, q_init
    or contaminants, a trial count outside its range, missing responses without a deadline,
    another number of blocks, more stimulus pairs and excluded trials. A network for a
    family refuses what lies outside the family's ranges (:func:`refuse_outside_family`).
    """
    if model is not None and model != config.model:
        raise InferenceError(f"the {model} model was requested but this network is the {config.model} model "
                             f"(parameters {list(config.parameter_names)})")
    if not study.has_rt and not choice_only(config.parameter_names):
        raise InferenceError("the data have no response times (choices alone): the RL-DDM networks need them; "
                             "the choice-only models (softmax, softmax-dual) are for such data")
    if isinstance(served, DesignFamily):
        refuse_outside_family(study, served, design)
        return
    for name in ("deadline", "missing", "p_outlier", "rt_max"):
        if getattr(design, name) != getattr(served, name):
            raise InferenceError(f"the data's {name} ({getattr(design, name)}) differs from the one the network "
                                 f"was trained with ({getattr(served, name)}); train a network for this design, "
                                 "or use a general network")
    _refuse_trial_counts(study, served)
    if served.deadline is None and served.missing is None and study.missing.any():
        i = int(np.flatnonzero(study.missing.any(1))[0])
        raise InferenceError(f"participant {study.participant[i]!r} has missing responses, but this "
                             "network was trained on a design without a response deadline and has "
                             "never seen one; train a network whose design sets the deadline")
    blocks = study.block.max(1) + 1
    bad = np.flatnonzero(blocks != served.n_blocks)
    if bad.size:
        i = bad[0]
        raise InferenceError(f"participant {study.participant[i]!r} has {blocks[i]} block(s); this "
                             f"network was trained on designs with {served.n_blocks}")
    _refuse_pairs(study, len(served.stimulus_pairs))
    if (study.excluded & study.valid).any():
        i = int(np.flatnonzero((study.excluded & study.valid).any(1))[0])
        raise InferenceError(f"participant {study.participant[i]!r} has trials excluded from the likelihood; "
                             "this network reads every trial and was not trained on exclusions")
    q_init = DesignSettings.of(design, study).q_init
    if not np.allclose(q_init, served.q_init):
        i = int(np.flatnonzero(~np.isclose(q_init, served.q_init))[0])
        raise InferenceError(f"participant {study.participant[i]!r} starts with Q-values {q_init[i]:g}; "
                             f"this network was trained with q_init = {served.q_init:g}")


def _refuse_trial_counts(study, served):
    lo, hi = served.min_trials, served.max_trials
    bad = np.flatnonzero((study.n_trials < lo) | (study.n_trials > hi))
    if bad.size:
        i = bad[0]
        raise InferenceError(f"participant {study.participant[i]!r} has {study.n_trials[i]} trials; "
                             f"this network serves {lo} to {hi} trials")


def _refuse_pairs(study, most):
    pairs = np.where(study.valid, study.condition, 0).max(1) + 1
    bad = np.flatnonzero(pairs > most)
    if bad.size:
        i = bad[0]
        raise InferenceError(f"participant {study.participant[i]!r} has {pairs[i]} stimulus pairs "
                             f"(conditions); this network was trained on designs with up to {most}")


def refuse_outside_family(study: Study, family: DesignFamily, design: TaskDesign):
    """Raise an InferenceError for data or settings outside a family's ranges: trial counts,
    pairs, blocks (and their shortest length), q_init, the deadline, the missing kind, the
    contaminants, and exclusions beyond the first trial of each pair at the family's highest
    rate. (Reward schedules never enter the likelihood and are not checked.)"""
    def outside(name, value, bounds, unit=""):
        raise InferenceError(f"the data's {name} ({value:g}{unit}) lies outside the {bounds[0]:g}-{bounds[1]:g}"
                             f"{unit} this network was trained on")

    _refuse_trial_counts(study, family)
    _refuse_pairs(study, family.n_pairs[1])
    blocks = study.block.max(1) + 1
    bad = np.flatnonzero(blocks > family.n_blocks[1])
    if bad.size:
        raise InferenceError(f"participant {study.participant[bad[0]]!r} has {blocks[bad[0]]} blocks; this network "
                             f"was trained on up to {family.n_blocks[1]}")
    rows, cols = np.nonzero(study.valid)
    lengths = np.zeros((study.n_participants, int(study.block.max(initial=0)) + 1), np.int64)
    np.add.at(lengths, (rows, study.block[rows, cols]), 1)
    shortest = np.where(lengths > 0, lengths, np.iinfo(np.int64).max).min(1)
    bad = np.flatnonzero((blocks > 1) & (shortest < family.min_block_trials))
    if bad.size:
        raise InferenceError(f"participant {study.participant[bad[0]]!r} has a block of {shortest[bad[0]]} trials; "
                             f"this network was trained on blocks of at least {family.min_block_trials}")
    q_init = DesignSettings.of(design, study).q_init
    bad = np.flatnonzero(~np.isclose(q_init[:, None], np.asarray(family.q_init)[None, :]).any(1))
    if bad.size:
        raise InferenceError(f"participant {study.participant[bad[0]]!r} starts with Q-values {q_init[bad[0]]:g}; "
                             f"this network was trained with q_init in {list(family.q_init)}")
    if design.deadline is not None:
        if "deadline" not in family.missing:
            raise InferenceError("the data have a response deadline; this network was trained without one")
        if not family.deadline[0] <= design.deadline <= family.deadline[1]:
            outside("deadline", design.deadline, family.deadline, " s")
    if design.missing == "ignorable" and "ignorable" not in family.missing:
        raise InferenceError("the data's missing responses are ignorable omissions; this network was trained "
                             "without them")
    if design.missing is None and study.missing.any():
        i = int(np.flatnonzero(study.missing.any(1))[0])
        raise InferenceError(f"participant {study.participant[i]!r} has missing responses: say what they are "
                             "(a deadline, or missing 'ignorable')")
    if design.p_outlier > 0:
        if family.lapses == 0:
            raise InferenceError("contaminant responses were asked for; this network was trained without them")
        if not family.p_outlier[0] <= design.p_outlier <= family.p_outlier[1]:
            outside("contaminant probability p_outlier", design.p_outlier, family.p_outlier)
        if not family.rt_max[0] <= design.rt_max <= family.rt_max[1]:
            outside("contaminant RT range rt_max", design.rt_max, family.rt_max, " s")
    first = np.zeros_like(study.excluded)
    if family.exclude_first > 0:
        unexcluded = replace(study, excluded=np.zeros_like(study.excluded))
        first = exclude_first_trial_of_each_condition(unexcluded)[0].excluded
    responded = study.valid & (study.choice >= 0)
    further = (study.excluded & responded & ~first).sum(1)
    most = family.excluded_rate[1] if family.excluded_share > 0 else 0.0
    # the family excludes responses at up to `most` of the trials; allow its binomial spread
    allowed = np.floor(most * study.n_trials + 3.0 * np.sqrt(most * (1 - most) * study.n_trials))
    bad = np.flatnonzero(further > allowed)
    if bad.size:
        i = bad[0]
        raise InferenceError(f"participant {study.participant[i]!r} has {further[i]} excluded responses (besides "
                             f"the first trial of each pair); this network was trained on up to about "
                             f"{most:.0%} of the trials")


def ood_reference(summary_statistics, config: Config, design: TaskDesign | DesignFamily) -> dict:
    """Reference summaries of data simulated from the network's design or family (fixed
    seed): their mean and precision, and the thresholds of the checks.
    summary_statistics: (Study, design or settings) -> (participants, summary_dim)."""
    rng = np.random.default_rng(OOD_REFERENCE_SEED)
    params = config.priors.sample(rng, OOD_REFERENCE_DATASETS)
    if isinstance(design, DesignFamily):
        study, settings = simulate_family(params, design, seed=int(rng.integers(2**63)))
    else:
        study, settings = simulate(params, design, seed=int(rng.integers(2**63))), design
    s = summary_statistics(study, settings)
    mean = s.mean(0)
    cov = np.cov(s, rowvar=False) + 1e-6 * np.eye(s.shape[1])
    precision = np.linalg.inv(cov)
    d2 = np.einsum("ij,jk,ik->i", s - mean, precision, s - mean)
    return {"mean": mean, "precision": precision,
            "distance_threshold": float(np.quantile(d2, OOD_DISTANCE_QUANTILE)),
            "rt_max": float(np.nanquantile(study.rt, OOD_RT_QUANTILE)) if study.has_rt else np.inf}


def ood_flags(study: Study, summaries, reference: dict, config: Config) -> xr.Dataset:
    """Per participant: squared Mahalanobis distance of its summary statistics to those of
    simulations from the priors (as in BayesFlow's summary-space misspecification check),
    and a flag with the reasons when the data look unlike the training data: the distance
    beyond the 99th percentile of simulated data, RTs faster than any non-decision time the
    prior allows, or RTs slower than 99.99% of simulated RTs. For a choice-only model,
    ``one_arm_only`` marks participants whose every response chose one arm: their learning
    rate and inverse temperature are weakly identified (a flag, not a refusal)."""
    s = summaries - reference["mean"]
    d2 = np.einsum("ij,jk,ik->i", s, reference["precision"], s)
    t0_lower = config.priors.support("t0")[0] if "t0" in config.priors.names else -np.inf  # choices alone: none
    finite = np.isfinite(study.rt)
    fastest = np.where(finite, study.rt, np.inf).min(axis=1)
    slowest = np.where(finite, study.rt, -np.inf).max(axis=1)
    far, fast, slow = d2 > reference["distance_threshold"], fastest <= t0_lower, slowest > reference["rt_max"]
    reasons = np.full(study.n_participants, "", dtype=object)
    for i in np.flatnonzero(far | fast | slow):
        why = []
        if far[i]:
            why.append("summary statistics far from simulated data")
        if fast[i]:
            why.append(f"RT {fastest[i]:.3f} s not above the smallest non-decision time the prior allows")
        if slow[i]:
            why.append(f"RT {slowest[i]:.2f} s slower than 99.99% of simulated RTs")
        reasons[i] = "; ".join(why)
    checks = xr.Dataset({"summary_distance": (("participant",), d2),
                         "out_of_distribution": (("participant",), reasons != ""),
                         "reasons": (("participant",), reasons.astype(str))},
                        attrs={"distance_threshold": reference["distance_threshold"],
                               "distance_quantile": OOD_DISTANCE_QUANTILE})
    if choice_only(config.parameter_names):
        responded = study.valid & (study.choice >= 0)
        arms = [(responded & (study.choice == c)).any(axis=1) for c in (0, 1)]
        checks["one_arm_only"] = (("participant",), responded.any(axis=1) & (arms[0] != arms[1]))
    return checks

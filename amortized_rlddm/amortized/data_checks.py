"""What a network may be asked: refusals of data it was not trained for, and flags on data
that look unlike its training simulations (out-of-distribution checks)."""

import numpy as np
import xarray as xr

from ..data.study import Study
from ..model.config import Config
from ..model.simulator import simulate
from ..model.task import TaskDesign
from .checkpoint import InferenceError

# Out-of-distribution check: reference simulations and the quantiles that set its thresholds.
OOD_REFERENCE_DATASETS = 2000
OOD_REFERENCE_SEED = 20261122
OOD_DISTANCE_QUANTILE = 0.99  # designed false-alarm rate of the summary-distance check: 1%
OOD_RT_QUANTILE = 0.9999


def refuse_unserved(study: Study, config: Config, design: TaskDesign, model=None, deadline="design"):
    """Raise an InferenceError naming the first participant (or request) the network was not
    trained for: another model, another deadline, a trial count outside its range, missing
    responses without a deadline, another number of blocks, more stimulus pairs, excluded
    trials, another initial Q-value."""
    if model is not None and model != config.model:
        raise InferenceError(f"a {model}-rate model was requested but this network is "
                             f"{config.model}-rate (parameters {list(config.parameter_names)})")
    if deadline != "design" and deadline != design.deadline:
        raise InferenceError(f"the data's response deadline ({deadline}) differs from the one the "
                             f"network was trained with ({design.deadline}); train a network for this design")
    lo, hi = design.min_trials, design.max_trials
    bad = np.flatnonzero((study.n_trials < lo) | (study.n_trials > hi))
    if bad.size:
        i = bad[0]
        raise InferenceError(f"participant {study.participant[i]!r} has {study.n_trials[i]} trials; "
                             f"this network serves {lo} to {hi} trials")
    if design.deadline is None and study.missing.any():
        i = int(np.flatnonzero(study.missing.any(1))[0])
        raise InferenceError(f"participant {study.participant[i]!r} has missing responses, but this "
                             "network was trained on a design without a response deadline and has "
                             "never seen one; train a network whose design sets the deadline")
    blocks = study.block.max(1) + 1
    bad = np.flatnonzero(blocks != design.n_blocks)
    if bad.size:
        i = bad[0]
        raise InferenceError(f"participant {study.participant[i]!r} has {blocks[i]} block(s); this "
                             f"network was trained on designs with {design.n_blocks}")
    pairs = np.where(study.valid, study.condition, 0).max(1) + 1
    bad = np.flatnonzero(pairs > len(design.stimulus_pairs))
    if bad.size:
        i = bad[0]
        raise InferenceError(f"participant {study.participant[i]!r} has {pairs[i]} stimulus pairs "
                             f"(conditions); this network was trained on designs with {len(design.stimulus_pairs)}")
    if (study.excluded & study.valid).any():
        i = int(np.flatnonzero((study.excluded & study.valid).any(1))[0])
        raise InferenceError(f"participant {study.participant[i]!r} has trials excluded from the likelihood; "
                             "this network reads every trial and was not trained on exclusions")
    if study.q_init is not None and not np.allclose(study.q_init, design.q_init):
        i = int(np.flatnonzero(~np.isclose(study.q_init, design.q_init))[0])
        raise InferenceError(f"participant {study.participant[i]!r} starts with Q-values {study.q_init[i]:g}; "
                             f"this network was trained with q_init = {design.q_init:g}")


def ood_reference(summary_statistics, config: Config, design: TaskDesign) -> dict:
    """Reference summaries of simulated data (fixed seed): their mean and precision, and the
    thresholds of the checks. summary_statistics: Study -> (participants, summary_dim)."""
    rng = np.random.default_rng(OOD_REFERENCE_SEED)
    params = config.priors.sample(rng, OOD_REFERENCE_DATASETS)
    study = simulate(params, design, seed=int(rng.integers(2**63)))
    s = summary_statistics(study)
    mean = s.mean(0)
    cov = np.cov(s, rowvar=False) + 1e-6 * np.eye(s.shape[1])
    precision = np.linalg.inv(cov)
    d2 = np.einsum("ij,jk,ik->i", s - mean, precision, s - mean)
    return {"mean": mean, "precision": precision,
            "distance_threshold": float(np.quantile(d2, OOD_DISTANCE_QUANTILE)),
            "rt_max": float(np.nanquantile(study.rt, OOD_RT_QUANTILE))}


def ood_flags(study: Study, summaries, reference: dict, config: Config) -> xr.Dataset:
    """Per participant: squared Mahalanobis distance of its summary statistics to those of
    simulations from the priors (as in BayesFlow's summary-space misspecification check),
    and a flag with the reasons when the data look unlike the training data: the distance
    beyond the 99th percentile of simulated data, RTs faster than any non-decision time the
    prior allows, or RTs slower than 99.99% of simulated RTs."""
    s = summaries - reference["mean"]
    d2 = np.einsum("ij,jk,ik->i", s, reference["precision"], s)
    t0_lower = config.priors.support("t0")[0]
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
    return xr.Dataset({"summary_distance": (("participant",), d2),
                       "out_of_distribution": (("participant",), reasons != ""),
                       "reasons": (("participant",), reasons.astype(str))},
                      attrs={"distance_threshold": reference["distance_threshold"],
                             "distance_quantile": OOD_DISTANCE_QUANTILE})

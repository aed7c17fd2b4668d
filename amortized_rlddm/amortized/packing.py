"""Everything between a Study and the networks' inputs: the trial packing.

Per trial the summary network sees what a real data file holds: the choice, the RT, the
reward seen and a missing-response flag, and optionally quantities computed from them: the
Q difference replayed under a grid of learning rates ("qtraces", see
:mod:`amortized_rlddm.model.qlearning`), the exclusion flag and each pair's first trial in
its block (the general networks), and for the input ablation both arms' outcomes or the
trial's reversal phase. Padding beyond a participant's trial count is excluded by the
summary network's mask, so a posterior does not depend on how much padding surrounds it.
Per participant, the inference network is also conditioned directly on
network.conditions: the trial count and optionally the "qprofile", the fit of a logistic
choice rule over the grid of replayed learning rates (see ``qlearning.q_profile``), and
"rtstats", the response-time distribution's quantiles and the choice split (see
:func:`rt_statistics`), and "design", the settings that enter the likelihood (see
:func:`design_condition`). A task design gives these settings for every participant; a
family of designs, each participant's own (:class:`~amortized_rlddm.model.task.DesignSettings`).
The flow models the parameters in ``priors.ParameterSpace``, where by default t0's upper
bound is each participant's fastest response (network.t0_upper), or the prior's for a
participant with contaminant responses.
"""

import numpy as np

from ..data.study import Study
from ..model.priors import ParameterSpace
from ..model.qlearning import TRACE_LEARNING_RATES, q_differences, q_profile
from ..model.task import DesignSettings, TaskDesign

# Per-trial inputs the packing can produce. "qtraces": per replayed learning rate, the Q
# difference before the trial and its product with the choice (+-1, 0 when missing).
# "outcomes" (both arms' potential outcomes) and "phase" (trial position in its block and
# reversal phase) exist for the input ablation.
# "excluded" flags trials left out of the likelihood (they still update the Q-values) and
# "first" each pair's first trial in its block (its Q-values fresh): the general networks'
# per-trial inputs for what of the design enters the likelihood.
FEATURE_WIDTHS = {"choice": 1, "rt": 1, "reward": 1, "missing": 1,
                  "qtraces": 2 * len(TRACE_LEARNING_RATES), "outcomes": 2, "phase": 2, "excluded": 1, "first": 1}
OBSERVED_FEATURES = ("choice", "rt", "reward", "missing")  # what a data file holds
DEFAULT_FEATURES = (*OBSERVED_FEATURES, "qtraces")
TRIAL_COUNT_SCALE = 100.0
# Per-participant direct conditions of the inference network. A config without
# network.conditions (every network before version 0.3) has the trial count only.
RT_QUANTILES = (0.1, 0.3, 0.5, 0.7, 0.9)
# "design": the settings that enter the likelihood (see design_condition).
CONDITION_WIDTHS = {"n_trials": 1, "qprofile": 3 * len(TRACE_LEARNING_RATES), "rtstats": len(RT_QUANTILES) + 4,
                    "design": 6}
DEFAULT_CONDITIONS = ("n_trials",)
# network.t0_upper: where the flow's space puts t0's upper bound. "fastest_response" (the
# default): each participant's fastest RT, which bounds the posterior exactly; "prior": the
# prior's upper bound, as before version 0.2 (kept for the transform ablation).
T0_UPPER_CHOICES = ("fastest_response", "prior")


def settings_of(study: Study, design) -> DesignSettings:
    """Each participant's settings: `design` itself when it gives them per participant (a
    family's draw), else the task design's (the data's own q_init winning)."""
    return design if isinstance(design, DesignSettings) else DesignSettings.of(design, study)


def first_presentations(study: Study) -> np.ndarray:
    """(B, T) True on each pair's first trial within its block (its Q-values fresh)."""
    rows, cols = np.nonzero(study.valid)
    keys = (rows * (study.block.max(initial=0) + 1) + study.block[rows, cols]) * study.n_conditions \
        + study.condition[rows, cols]
    _, first = np.unique(keys, return_index=True)  # row-major order: the earliest trial of each key
    out = np.zeros(study.choice.shape, bool)
    out[rows[first], cols[first]] = True
    return out


def trial_features(study: Study, features, design=None, max_trials=None):
    """Pack a study for the summary network.

    Returns (summary_variables (B, T, F) float32, summary_mask (B, T) float32) with T =
    max_trials (default: the study's). Coding: choice +1 arm 1 / -1 arm 0, reward +1 / -1,
    rt in seconds; all three are 0 on a missing response, which sets the missing flag.
    `design`: a TaskDesign or per-participant DesignSettings (q_init for "qtraces").
    """
    unknown = [f for f in features if f not in FEATURE_WIDTHS]
    if unknown:
        raise ValueError(f"unknown trial feature(s) {unknown}; expected some of {list(FEATURE_WIDTHS)}")
    t = study.max_trials if max_trials is None else max_trials
    if t < study.max_trials:
        raise ValueError(f"the study has up to {study.max_trials} trials, more than the {t} packed")
    valid = study.valid
    responded = valid & (study.choice >= 0)
    columns = []
    for name in features:
        if name == "choice":
            columns.append(np.where(responded, 2.0 * study.choice - 1.0, 0.0)[..., None])
        elif name == "rt":
            columns.append(np.where(responded, study.rt, 0.0)[..., None])
        elif name == "reward":
            columns.append(np.where(responded, 2.0 * study.reward - 1.0, 0.0)[..., None])
        elif name == "missing":
            columns.append((valid & ~responded).astype(float)[..., None])
        elif name == "qtraces":
            if design is None:
                raise ValueError("feature 'qtraces' needs the task design (for q_init)")
            q_init = settings_of(study, design).q_init
            dq = np.where(valid[..., None], q_differences(study, TRACE_LEARNING_RATES, q_init), 0.0)
            signed_choice = np.where(responded, 2.0 * study.choice - 1.0, 0.0)[..., None]
            columns.append(np.concatenate([dq, signed_choice * dq], axis=-1))
        elif name == "outcomes":
            if study.outcomes is None:
                raise ValueError("feature 'outcomes' needs both arms' potential outcomes, which only "
                                 "simulated data has; real data never shows the unchosen arm's outcome")
            columns.append(np.where(valid[..., None], 2.0 * study.outcomes - 1.0, 0.0))
        elif name == "excluded":
            columns.append((valid & study.excluded).astype(float)[..., None])
        elif name == "first":
            columns.append(first_presentations(study).astype(float)[..., None])
        elif name == "phase":
            if not isinstance(design, TaskDesign):
                raise ValueError("feature 'phase' needs the task design")
            _, position = design.block_layout(study.n_trials, study.max_trials)
            every = design.reversal_every or 10**9
            phase = np.where((position // every) % 2 == 0, 1.0, -1.0)
            columns.append(np.stack([np.where(valid, position / TRIAL_COUNT_SCALE, 0.0),
                                     np.where(valid, phase, 0.0)], axis=-1))
    x = np.concatenate(columns, axis=-1)
    pad = t - study.max_trials
    x = np.pad(x, ((0, 0), (0, pad), (0, 0)))
    mask = np.pad(valid, ((0, 0), (0, pad))).astype(np.float32)
    return x.astype(np.float32), mask


def trial_count_condition(n_trials):
    """The trial-count condition of the inference network: trial count / 100, shape (B, 1)."""
    return (np.asarray(n_trials, np.float32) / TRIAL_COUNT_SCALE)[:, None]


def rt_statistics(study: Study):
    """(B, 9) per participant, over the responses that enter the likelihood (not excluded):
    the RT quantiles RT_QUANTILES and the fastest RT (seconds), the share of arm-1 choices,
    the mean RT of arm-1 minus arm-0 choices (0 unless both arms were chosen); and the share
    of trials without a response.

    These are the classic DDM summaries (boundary separation and non-decision time shape the
    quantiles, the start point the choice split and its RT asymmetry). Their precision grows
    with the trial count, which the flow can read directly instead of through the learnt
    summary. A participant without any response has zeros except the missing share (1).
    """
    responded = study.valid & (study.choice >= 0) & ~study.excluded
    n_responses = responded.sum(axis=1)
    upper, lower = responded & (study.choice == 1), responded & (study.choice == 0)
    n_upper, n_lower = upper.sum(axis=1), lower.sum(axis=1)
    rt = np.where(responded, study.rt, 0.0)
    asymmetry = np.where((n_upper > 0) & (n_lower > 0), (rt * upper).sum(axis=1) / np.maximum(n_upper, 1)
                         - (rt * lower).sum(axis=1) / np.maximum(n_lower, 1), 0.0)
    # quantiles by linear interpolation between order statistics (np.quantile's default),
    # for all participants at once: the responses sort first, ascending
    some = n_responses > 0
    ordered = np.sort(np.where(responded, study.rt, np.inf)[some], axis=1)
    last = n_responses[some, None] - 1
    position = np.asarray(RT_QUANTILES)[None, :] * last
    below = np.floor(position).astype(np.int64)
    low = np.take_along_axis(ordered, below, axis=1)
    high = np.take_along_axis(ordered, np.minimum(below + 1, last), axis=1)
    out = np.zeros((study.n_participants, CONDITION_WIDTHS["rtstats"]))
    out[some, :len(RT_QUANTILES)] = low + (position - below) * (high - low)
    out[some, len(RT_QUANTILES)] = ordered[:, 0]
    out[some, len(RT_QUANTILES) + 1] = n_upper[some] / n_responses[some]
    out[:, len(RT_QUANTILES) + 2] = asymmetry
    out[:, -1] = study.missing.sum(axis=1) / study.n_trials
    return out


def design_condition(settings: DesignSettings):
    """(B, 6): q_init; 1 with a deadline, else 0; the deadline in seconds (0 without one); 1
    when missing responses are ignorable omissions; 10 x the contaminant probability; and
    the contaminants' RT density 1 / rt_max (0 without contaminants)."""
    has_deadline = np.isfinite(settings.deadline)
    lapses = settings.p_outlier > 0
    return np.stack([settings.q_init, has_deadline, np.where(has_deadline, settings.deadline, 0.0),
                     settings.ignorable, 10.0 * settings.p_outlier,
                     np.where(lapses, 1.0 / settings.rt_max, 0.0)], axis=-1).astype(float)


def check_conditions(conditions):
    """network.conditions: a list of CONDITION_WIDTHS names that starts with the trial count."""
    if (not isinstance(conditions, (list, tuple)) or not conditions or conditions[0] != "n_trials"
            or len(set(conditions)) != len(conditions) or not set(conditions) <= set(CONDITION_WIDTHS)):
        raise ValueError(f"network.conditions: expected a list starting with 'n_trials' and then some of "
                         f"{list(CONDITION_WIDTHS)[1:]}, each once; got {conditions!r}")


def participant_conditions(study: Study, conditions, design=None):
    """The inference network's direct conditions, (B, C) float32, in the order named.
    `design`: a TaskDesign or per-participant DesignSettings."""
    check_conditions(conditions)
    columns = []
    for name in conditions:
        if name == "n_trials":
            columns.append(trial_count_condition(study.n_trials))
        elif name == "qprofile":
            if design is None:
                raise ValueError("condition 'qprofile' needs the task design (for q_init)")
            columns.append(q_profile(study, TRACE_LEARNING_RATES, settings_of(study, design).q_init))
        elif name == "rtstats":
            columns.append(rt_statistics(study))
        elif name == "design":
            if design is None:
                raise ValueError("condition 'design' needs the task design or the participants' settings")
            columns.append(design_condition(settings_of(study, design)))
    return np.concatenate(columns, axis=-1).astype(np.float32)


def parameter_space(priors, study, t0_upper, design=None):
    """The unbounded space the flow models the study's parameters in (see T0_UPPER_CHOICES).
    With `design` (a TaskDesign or per-participant settings), participants with contaminant
    responses keep the prior's t0 bound: a contaminant may come before t0."""
    if t0_upper != "fastest_response":
        return ParameterSpace(priors)
    contaminated = None if design is None else settings_of(study, design).p_outlier > 0
    return ParameterSpace.given_data(priors, study, contaminated)


def pack(study, network, design, max_trials, params=None, space=None):
    """The dict the estimator consumes for a network spec (its "features" and "conditions"):
    summary variables and mask, the participant conditions and, when parameters are given,
    their values in `space` (the unbounded inference variables)."""
    x, mask = trial_features(study, network["features"], design, max_trials)
    conditions = network.get("conditions", DEFAULT_CONDITIONS)
    data = {"summary_variables": x, "summary_mask": mask,
            "inference_conditions": participant_conditions(study, conditions, design)}
    if params is not None:
        data["inference_variables"] = space.forward(params).astype(np.float32)
    return data

"""Exclusion rules: trials left out of the likelihood but kept for learning (the participant
saw their outcomes), each counted so that a report can say what was cut. Nothing is dropped."""

from dataclasses import replace

import numpy as np

from .study import Study


def exclude_fast_responses(study: Study, min_rt: float) -> tuple[Study, np.ndarray]:
    """Exclude responses faster than `min_rt` seconds (anticipations, key bounces).

    Returns the study with those trials excluded and the count per participant.
    """
    if not min_rt > 0:
        raise ValueError(f"min_rt must be > 0 seconds, got {min_rt!r}")
    fast = study.valid & (study.choice >= 0) & (study.rt < min_rt)
    return replace(study, excluded=study.excluded | fast), fast.sum(axis=1)


def exclude_first_trial_of_each_condition(study: Study) -> tuple[Study, np.ndarray]:
    """Exclude each participant's first trial of every condition (stimulus pair), as HDDM's
    RL-DDM does: before any feedback the Q-values carry no learning.

    Returns the study with those trials excluded and the count per participant.
    """
    first = np.zeros_like(study.excluded)
    for k in range(study.n_conditions):
        of_pair = study.valid & (study.condition == k)
        has = of_pair.any(axis=1)
        first[np.flatnonzero(has), of_pair[has].argmax(axis=1)] = True
    return replace(study, excluded=study.excluded | first), (first & ~study.excluded).sum(axis=1)

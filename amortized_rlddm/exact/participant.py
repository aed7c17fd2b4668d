"""One participant's trials for the exact fits, taken from a Study or from 1-D arrays."""

import numpy as np

from ..data.study import Study

TRIAL_ARRAYS = ("choice", "rt", "reward", "block", "condition", "excluded")


def participant_trials(data, index):
    """The participant's own trials as 1-D arrays (choice, rt, reward, block, condition,
    excluded), its id and its data-given initial Q-value (None when the data give none)."""
    if isinstance(data, Study):
        n = int(data.n_trials[index])
        trials = {name: getattr(data, name)[index, :n] for name in TRIAL_ARRAYS}
        q_init = None if data.q_init is None else float(data.q_init[index])
        return trials, data.participant[index], q_init
    trials = {k: np.asarray(data[k]) for k in ("choice", "rt", "reward")}
    n = trials["choice"].shape[0]
    trials["block"] = np.asarray(data.get("block", np.zeros(n, np.int32)))
    trials["condition"] = np.asarray(data.get("condition", np.zeros(n, np.int32)))
    trials["excluded"] = np.asarray(data.get("excluded", np.zeros(n, bool)), bool)
    return trials, data.get("participant", index), data.get("q_init")


def check_trials(trials, needs_rt=True):
    """Refuse arrays of unequal lengths, unknown choice, reward or condition codes, and (when
    the model reads them, `needs_rt`) bad RTs."""
    choice, rt, reward = trials["choice"], trials["rt"], trials["reward"]
    shapes = {k: np.shape(x) for k, x in trials.items()}
    if len(set(shapes.values())) != 1 or len(shapes["choice"]) != 1:
        raise ValueError(f"{', '.join(trials)} must be 1-D arrays of one length, got {shapes}")
    responded = choice >= 0
    if not np.isin(choice, (-1, 0, 1)).all() or not np.isin(reward[responded], (0, 1)).all():
        raise ValueError("choice must be 0, 1 or -1 (missing) and rewards of responses 0 or 1")
    if needs_rt and not (np.isfinite(rt[responded]) & (rt[responded] > 0)).all():
        raise ValueError("every response needs a finite rt > 0")
    if (trials["condition"] < 0).any():
        raise ValueError("condition indices must be >= 0")

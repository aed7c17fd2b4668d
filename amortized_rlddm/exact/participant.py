"""One participant's trials for the exact fits, taken from a Study or from 1-D arrays."""

import numpy as np

from ..data.study import Study


def participant_trials(data, index):
    """choice, rt, reward, block (1-D, the participant's own trials) and its id."""
    if isinstance(data, Study):
        n = int(data.n_trials[index])
        return ({"choice": data.choice[index, :n], "rt": data.rt[index, :n], "reward": data.reward[index, :n],
                 "block": data.block[index, :n]}, data.participant[index])
    trials = {k: np.asarray(data[k]) for k in ("choice", "rt", "reward")}
    trials["block"] = np.asarray(data.get("block", np.zeros(trials["choice"].shape[0], np.int32)))
    return trials, data.get("participant", index)


def check_trials(trials):
    """Refuse arrays of unequal lengths, unknown choice or reward codes, and bad RTs."""
    choice, rt, reward = trials["choice"], trials["rt"], trials["reward"]
    shapes = {k: np.shape(x) for k, x in trials.items()}
    if len(set(shapes.values())) != 1 or len(shapes["choice"]) != 1:
        raise ValueError(f"choice, rt, reward and block must be 1-D arrays of one length, got {shapes}")
    responded = choice >= 0
    if not np.isin(choice, (-1, 0, 1)).all() or not np.isin(reward[responded], (0, 1)).all():
        raise ValueError("choice must be 0, 1 or -1 (missing) and rewards of responses 0 or 1")
    if not (np.isfinite(rt[responded]) & (rt[responded] > 0)).all():
        raise ValueError("every response needs a finite rt > 0")

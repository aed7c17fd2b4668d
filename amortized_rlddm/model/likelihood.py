"""The exact RL-DDM log-likelihood of observed studies.

The Q-values are replayed from the observed choices and rewards; each response adds the
log WFPT density of its boundary and decision time under the drift v * (Q[1] - Q[0]).
A missing response adds nothing by default (missing at random); when the design's response
deadline is given, it adds log P(rt > deadline), the exact probability of missing it.
"""

import math
from collections.abc import Mapping
from pathlib import Path

import numba as nb
import numpy as np
import pandas as pd

from ..data.io import read_study
from ..data.study import Study
from .simulator import participant_arrays
from .wiener import log_density, log_survival


@nb.njit(cache=True)
def _loglik_kernel(choice, rt, reward, block, n_trials, v, a, z, t0, alpha_pos, alpha_neg,
                   q_init, deadline):
    out = np.zeros(v.shape[0])
    for i in range(v.shape[0]):
        q0 = q_init
        q1 = q_init
        total = 0.0
        for t in range(n_trials[i]):
            if t > 0 and block[i, t] != block[i, t - 1]:
                q0 = q_init
                q1 = q_init
            drift = v[i] * (q1 - q0)
            c = choice[i, t]
            if c < 0:
                if deadline < math.inf:
                    total += log_survival(deadline - t0[i], drift, a[i], z[i])
                continue
            total += log_density(rt[i, t] - t0[i], c == 1, drift, a[i], z[i])
            q = q1 if c == 1 else q0
            delta = reward[i, t] - q
            q += (alpha_pos[i] if delta > 0 else alpha_neg[i]) * delta
            if c == 1:
                q1 = q
            else:
                q0 = q
        out[i] = total
    return out


def loglik(data: Study | pd.DataFrame | str | Path, params: Mapping[str, np.ndarray], q_init: float = 0.5,
           deadline: float | None = None, convention: str = "rlddm") -> np.ndarray:
    """Exact log-likelihood of each participant.

    Parameters
    ----------
    data
        A :class:`~amortized_rlddm.data.study.Study`, or a DataFrame / CSV path in the format
        of docs/data.md (read with :func:`amortized_rlddm.data.io.read_study` and `convention`).
    params
        Parameter name -> one value per participant, in the study's participant order
        (v, a, z, t0 and alpha, or alpha_pos and alpha_neg).
    q_init
        Initial Q-value of both arms.
    deadline
        The design's response deadline in seconds: a missing response adds the log
        probability of no boundary crossing before it. None: missing responses add nothing.
    convention
        Column convention of a DataFrame or CSV.

    Returns
    -------
    numpy.ndarray
        One log-likelihood per participant (-inf where an rt <= t0).
    """
    study = data if isinstance(data, Study) else read_study(data, convention=convention)
    p = participant_arrays(params)
    if p["v"].shape[0] != study.n_participants:
        raise ValueError(f"params have {p['v'].shape[0]} value(s) per parameter but the data has "
                         f"{study.n_participants} participant(s)")
    rt = np.where(np.isnan(study.rt), 0.0, study.rt)
    return _loglik_kernel(study.choice, rt, study.reward, study.block, study.n_trials,
                          p["v"], p["a"], p["z"], p["t0"], p["alpha_pos"], p["alpha_neg"],
                          float(q_init), math.inf if deadline is None else float(deadline))

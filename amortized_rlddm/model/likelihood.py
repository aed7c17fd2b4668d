"""The exact RL-DDM log-likelihood of observed studies.

The Q-values of each stimulus pair are replayed from the observed choices and rewards; each
response adds the log WFPT density of its boundary and decision time under the drift
v * (Q[1] - Q[0]) of its pair (mixed with the uniform contaminant density when p_outlier > 0).
A missing response is what the caller says it is: censored by a response deadline (it adds
log P(no response before the deadline)) or an ignorable omission (it adds nothing); data with
missing responses and neither are refused. Excluded trials update the Q-values and add
nothing. The cost per trial does not depend on the number of pairs.

The choice-only models (softmax, softmax-dual: parameters alpha or alpha_pos and alpha_neg,
and beta) replay the same Q-values, and each response adds log P(choice) with P(choice = 1)
= (1 - p_outlier) logistic(beta (Q[1] - Q[0])) + p_outlier / 2 (p_outlier: a lapse rate);
their missing responses can only be ignorable omissions.
"""

import math
from collections.abc import Mapping
from pathlib import Path

import numba as nb
import numpy as np
import pandas as pd

from ..data.io import read_study
from ..data.study import Study
from .qlearning import learn, start_trial
from .simulator import participant_arrays
from .task import LikelihoodSettings, refuse_unexplained_missing
from .wiener import log_density_at, log_survival

MISSING_CODES = {"deadline": 1, "ignorable": 2}


@nb.njit(cache=True)
def _replay(i, d, q, choice, rt, reward, block, condition, excluded, n_trials, v, a, z, t0, alpha_pos, alpha_neg,
            q_init, missing, deadline, p_outlier, rt_max, log_keep, log_contaminant, contaminant_missed, terms):
    """Participant i's log-likelihood under draw d, replaying the Q-values `q` (n_conditions,
    2); each trial's term is written to terms[t] when `terms` is not empty."""
    pointwise = terms.size > 0
    total = 0.0
    log_a, log_z, log_1mz = math.log(a[i, d]), math.log(z[i, d]), math.log(1.0 - z[i, d])  # once per draw
    for t in range(n_trials[i]):
        start_trial(q, t, block[i], q_init[i])  # a new block resets every pair
        k = condition[i, t]
        drift = v[i, d] * (q[k, 1] - q[k, 0])
        c = choice[i, t]
        if c < 0:
            if missing == 1 and not excluded[i, t]:
                survival = log_survival(deadline - t0[i, d], drift, a[i, d], z[i, d])
                if p_outlier > 0.0:
                    survival = math.log((1.0 - p_outlier) * math.exp(survival) + contaminant_missed)
                total += survival
                if pointwise:
                    terms[t] = survival
            continue  # missing: nothing seen, nothing learned
        if not excluded[i, t]:
            density = log_density_at(rt[i, t] - t0[i, d], c == 1, drift, a[i, d], z[i, d], log_a, log_z, log_1mz)
            if p_outlier > 0.0:
                uniform = log_contaminant if rt[i, t] <= rt_max else -math.inf
                kept = density + log_keep
                high, low = max(kept, uniform), min(kept, uniform)
                if low > -math.inf:  # log(exp(high) + exp(low))
                    density = high + math.log1p(math.exp(low - high))
                else:
                    density = high
            total += density
            if pointwise:
                terms[t] = density
        learn(q, k, c, reward[i, t], alpha_pos[i, d], alpha_neg[i, d])
    return total


@nb.njit(cache=True, parallel=True)
def _loglik_kernel(choice, rt, reward, block, condition, excluded, n_trials, n_conditions, v, a, z, t0,
                   alpha_pos, alpha_neg, q_init, missing, deadline, p_outlier, rt_max, pointwise):
    """Log-likelihood (participants, draws) of parameter arrays (participants, draws) and, with
    `pointwise`, each trial's term (participants, draws, trials; NaN where a trial adds
    nothing: excluded, an ignorable omission, or past the participant's last trial)."""
    out = np.zeros(v.shape)
    terms = np.full((v.shape[0], v.shape[1], choice.shape[1] if pointwise else 0), np.nan)
    log_keep = math.log1p(-p_outlier) if p_outlier > 0.0 else 0.0
    log_contaminant = math.log(0.5 * p_outlier / rt_max) if p_outlier > 0.0 else -math.inf
    contaminant_missed = p_outlier * max(0.0, 1.0 - deadline / rt_max)
    n = v.shape[0]
    # one job per (participant, draw), participants cycling fastest: each thread's contiguous share
    # of the jobs then holds every participant alike, whatever their trial counts
    for job in nb.prange(n * v.shape[1]):
        i, d = job % n, job // n
        q = np.empty((n_conditions, 2))
        out[i, d] = _replay(i, d, q, choice, rt, reward, block, condition, excluded, n_trials, v, a, z, t0,
                            alpha_pos, alpha_neg, q_init, missing, deadline, p_outlier, rt_max, log_keep,
                            log_contaminant, contaminant_missed, terms[i, d])
    return out, terms


@nb.njit(cache=True)
def _softmax_replay(i, d, q, choice, reward, block, condition, excluded, n_trials, beta, alpha_pos, alpha_neg, q_init,
                    lapse, terms):
    """Participant i's log-likelihood under draw d of a choice-only model: each response's log
    probability, (1 - lapse) logistic(+-beta (Q1 - Q0)) + lapse / 2, with the Q-values replayed
    as for the RL-DDM; each trial's term is written to terms[t] when `terms` is not empty."""
    pointwise = terms.size > 0
    total = 0.0
    for t in range(n_trials[i]):
        start_trial(q, t, block[i], q_init[i])  # a new block resets every pair
        k = condition[i, t]
        c = choice[i, t]
        if c < 0:
            continue  # an ignorable omission: nothing seen, nothing learned
        if not excluded[i, t]:
            x = beta[i, d] * (q[k, 1] - q[k, 0])
            x = x if c == 1 else -x
            log_p = -math.log1p(math.exp(-x)) if x > 0.0 else x - math.log1p(math.exp(x))  # log logistic(x)
            if lapse > 0.0:
                log_p = math.log((1.0 - lapse) * math.exp(log_p) + 0.5 * lapse)
            total += log_p
            if pointwise:
                terms[t] = log_p
        learn(q, k, c, reward[i, t], alpha_pos[i, d], alpha_neg[i, d])
    return total


@nb.njit(cache=True, parallel=True)
def _softmax_kernel(choice, reward, block, condition, excluded, n_trials, n_conditions, beta, alpha_pos, alpha_neg,
                    q_init, lapse, pointwise):
    """:func:`_loglik_kernel` for the choice-only models: a kernel of its own, as one parallel
    loop choosing between the two replays made the RL-DDM's cost per trial about a third higher
    (`rlddm validate bench likelihood`)."""
    out = np.zeros(beta.shape)
    terms = np.full((beta.shape[0], beta.shape[1], choice.shape[1] if pointwise else 0), np.nan)
    n = beta.shape[0]
    for job in nb.prange(n * beta.shape[1]):
        i, d = job % n, job // n
        q = np.empty((n_conditions, 2))
        out[i, d] = _softmax_replay(i, d, q, choice, reward, block, condition, excluded, n_trials, beta, alpha_pos,
                                    alpha_neg, q_init, lapse, terms[i, d])
    return out, terms


def check_missing(study: Study, settings: LikelihoodSettings) -> None:
    """Refuse a study with missing responses when the settings do not say what they are,
    naming the first participant and trial. Never guessed."""
    for i in np.flatnonzero(study.missing.any(1)):
        refuse_unexplained_missing(study.participant[i], study.missing[i], settings.missing)


def initial_q_values(study: Study, q_init: float | None) -> np.ndarray:
    """Per participant, the initial Q-value: `q_init` when given, else the data's, else 0.5."""
    if q_init is None:
        q_init = study.q_init if study.q_init is not None else 0.5
    values = np.broadcast_to(np.asarray(q_init, float), (study.n_participants,)).copy()
    if not ((values >= 0) & (values <= 1)).all():
        raise ValueError(f"q_init must lie in [0, 1], got {values[(values < 0) | (values > 1)][0]}")
    return values


def loglik(data: Study | pd.DataFrame | str | Path, params: Mapping[str, np.ndarray],
           q_init: float | None = None, deadline: float | None = None, missing: str | None = None,
           p_outlier: float = 0.0, rt_max: float = 10.0, convention: str = "rlddm") -> np.ndarray:
    """Exact log-likelihood of each participant.

    Parameters
    ----------
    data
        A :class:`~amortized_rlddm.data.study.Study`, or a DataFrame / CSV path in the format
        of docs/data.md (read with :func:`amortized_rlddm.data.io.read_study` and `convention`).
        Each condition (stimulus pair) has Q-values of its own; excluded trials update the
        Q-values but add nothing.
    params
        Parameter name -> one value per participant, in the study's participant order
        (v, a, z, t0 and alpha, or alpha_pos and alpha_neg).
    q_init
        Initial Q-value of both arms of every pair (default: the data's, else 0.5).
    deadline
        The response deadline in seconds; implies ``missing="deadline"``.
    missing
        What the missing responses are: ``"deadline"`` (each adds the log probability of no
        response before the deadline) or ``"ignorable"`` (omissions unrelated to the
        parameters, left out). Data with missing responses and neither are refused.
    p_outlier
        Probability that a response is a contaminant: RT uniform on [0, rt_max], choice random.
    rt_max
        Upper end of the contaminants' RTs (seconds).
    convention
        Column convention of a DataFrame or CSV.

    Returns
    -------
    numpy.ndarray
        One log-likelihood per participant (-inf where, without contaminants, an rt <= t0).
    """
    study = data if isinstance(data, Study) else read_study(data, convention=convention)
    p = participant_arrays(params)
    if p["alpha_pos"].shape[0] != study.n_participants:
        raise ValueError(f"params have {p['alpha_pos'].shape[0]} value(s) per parameter but the data has "
                         f"{study.n_participants} participant(s)")
    single_draw = {k: x[:, None] for k, x in p.items()}
    return likelihood_function(study, LikelihoodSettings(q_init, deadline, missing, p_outlier, rt_max))(
        single_draw)[:, 0]


def _draw_arrays(study, draws):
    """The parameters of (participants, draws) draws, checked, with alpha_pos / alpha_neg."""
    shapes = {k: np.shape(x) for k, x in draws.items()}
    if len(set(shapes.values())) != 1 or len(next(iter(shapes.values()))) != 2 \
            or next(iter(shapes.values()))[0] != study.n_participants:
        raise ValueError(f"draws must be (participants, draws) arrays for {study.n_participants} participants, "
                         f"got shapes {shapes}")
    flat = participant_arrays({k: np.asarray(x, float).ravel() for k, x in draws.items()})
    shape = next(iter(shapes.values()))
    return {k: x.reshape(shape) for k, x in flat.items()}


def loglik_draws(study: Study, draws: Mapping[str, np.ndarray], q_init: float | None = None,
                 deadline: float | None = None, missing: str | None = None, p_outlier: float = 0.0,
                 rt_max: float = 10.0) -> np.ndarray:
    """Exact log-likelihood of many parameter draws per participant in one compiled call.

    Parameters
    ----------
    study
        The data.
    draws
        Parameter name -> (participants, draws) values.
    q_init, deadline, missing, p_outlier, rt_max
        As in :func:`loglik`.

    Returns
    -------
    numpy.ndarray
        (participants, draws) log-likelihoods.
    """
    return likelihood_function(study, LikelihoodSettings(q_init, deadline, missing, p_outlier, rt_max))(draws)


def pointwise_loglik(study: Study, draws: Mapping[str, np.ndarray], q_init: float | None = None,
                     deadline: float | None = None, missing: str | None = None, p_outlier: float = 0.0,
                     rt_max: float = 10.0) -> np.ndarray:
    """Each trial's log-likelihood given the participant's history, for many draws at once.

    Parameters
    ----------
    study
        The data.
    draws
        Parameter name -> (participants, draws) values.
    q_init, deadline, missing, p_outlier, rt_max
        As in :func:`loglik`.

    Returns
    -------
    numpy.ndarray
        (participants, draws, trials): log p(choice_t, rt_t | trials before t, parameters)
        of every trial that enters the likelihood (a response, or a response missed at the
        deadline); NaN for trials that add nothing (excluded trials, ignorable omissions and
        the padding after a participant's last trial). Summed over the trials it is
        :func:`loglik_draws`.
    """
    return likelihood_function(study, LikelihoodSettings(q_init, deadline, missing, p_outlier, rt_max))(
        draws, pointwise=True)


def likelihood_function(study: Study, settings: LikelihoodSettings | None = None):
    """:func:`loglik_draws` with the study and its settings bound: the data's arrays and the
    settings are checked and prepared once, so repeated calls (a sampler's) cost the compiled
    evaluation and the parameters' check only.

    Parameters
    ----------
    study
        The data.
    settings
        The likelihood settings (default: none of a deadline, omissions or contaminants; the
        data's q_init, else 0.5).

    Returns
    -------
    callable
        ``f(draws, pointwise=False)``: parameter name -> (participants, draws) values ->
        (participants, draws) log-likelihoods (with `pointwise`, the terms of
        :func:`pointwise_loglik`).
    """
    settings = settings or LikelihoodSettings()
    check_missing(study, settings)
    rt = np.where(np.isnan(study.rt), 0.0, study.rt)
    data = (study.choice, rt, study.reward, study.block, study.condition, study.excluded, study.n_trials,
            study.n_conditions)
    constants = (initial_q_values(study, settings.q_init), MISSING_CODES.get(settings.missing, 0),
                 math.inf if settings.deadline is None else float(settings.deadline), float(settings.p_outlier),
                 float(settings.rt_max))

    without_rt = study.valid & (study.choice >= 0) & np.isnan(study.rt)

    def evaluate(draws, pointwise=False):
        p = _draw_arrays(study, draws)
        if "beta" in p:  # a choice-only model
            if settings.missing == "deadline":
                raise ValueError("a choice-only model has no response times, so no deadline: say missing="
                                 "'ignorable' (rlddm: --missing ignorable)")
            out, terms = _softmax_kernel(study.choice, study.reward, study.block, study.condition, study.excluded,
                                         study.n_trials, study.n_conditions, p["beta"], p["alpha_pos"],
                                         p["alpha_neg"], constants[0], float(settings.p_outlier), pointwise)
            return terms if pointwise else out
        if without_rt.any():
            i, t = (int(x[0]) for x in np.nonzero(without_rt))
            raise ValueError(f"participant {study.participant[i]!r}, trial {t + 1}: a response without an RT; the "
                             "RL-DDM needs response times (choices alone: a choice-only model, softmax or "
                             "softmax-dual)")
        out, terms = _loglik_kernel(*data, p["v"], p["a"], p["z"], p["t0"], p["alpha_pos"], p["alpha_neg"],
                                    *constants, pointwise)
        return terms if pointwise else out

    return evaluate

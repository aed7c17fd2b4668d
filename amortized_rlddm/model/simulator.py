"""Exact simulation of the coupled Q-learning drift-diffusion process, and of the
choice-only softmax Q-learning models (docs/model.md).

One compiled kernel runs every participant and trial: draw both arms' potential outcomes,
set the drift from the current Q difference of the trial's stimulus pair, draw an exact
Wiener first passage (or, with probability p_outlier, a contaminant: uniform RT, random
choice), apply an ignorable omission or the deadline, reveal the chosen arm's outcome and
update its Q-value. The choice-only models draw the choice from the softmax of the same Q
difference instead (a lapse in place of the contaminant) and leave the RT empty.
"""

import math
from collections.abc import Mapping

import numba as nb
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..data.exclusions import exclude_first_trial_of_each_condition
from ..data.study import Study
from .family import DesignFamily
from .fast_random import new_state, uniform
from .priors import choice_only
from .qlearning import learn, start_trial
from .task import DesignSettings, TaskDesign
from .wiener import sample_first_passage


@nb.njit(cache=True)
def _simulate_kernel(v, a, z, t0, beta, softmax, alpha_pos, alpha_neg, q_init, deadline, omission_rate, p_outlier,
                     rt_max, n_trials, block, condition, n_conditions, arm_probs, state, choice, rt, reward, outcomes,
                     omitted):
    """Each participant's trials in turn. The observation model: the diffusion (v, a, z, t0), or
    with `softmax` a choice alone, arm 1 with probability logistic(beta (Q1 - Q0)) and no RT.
    A contaminant (p_outlier) is a random choice (with the diffusion, at an RT uniform on
    [0, rt_max]); for the choice-only models, a lapse."""
    q = np.empty((n_conditions, 2))
    for i in range(alpha_pos.shape[0]):
        for t in range(n_trials[i]):
            start_trial(q, t, block[i], q_init[i])  # a new block resets every pair
            k = condition[i, t]
            for arm in range(2):
                outcomes[i, t, arm] = 1 if uniform(state) < arm_probs[i, t, arm] else 0
            # random draws only where a rate asks for them: designs without omissions or
            # contaminants keep the random stream (and the studies) of earlier versions
            if omission_rate[i] > 0.0 and uniform(state) < omission_rate[i]:
                omitted[i, t] = True
                continue  # an ignorable omission: nothing seen, nothing learned
            if p_outlier[i] > 0.0 and uniform(state) < p_outlier[i]:
                upper = uniform(state) < 0.5
                response_time = math.nan if softmax else rt_max[i] * uniform(state)
            elif softmax:
                upper = uniform(state) * (1.0 + math.exp(-beta[i] * (q[k, 1] - q[k, 0]))) < 1.0
                response_time = math.nan
            else:
                upper, decision_time = sample_first_passage(v[i] * (q[k, 1] - q[k, 0]), a[i], z[i], state)
                response_time = t0[i] + decision_time
            if response_time > deadline[i]:
                continue  # missing response: nothing seen, nothing learned
            c = 1 if upper else 0
            r = outcomes[i, t, c]
            choice[i, t] = c
            rt[i, t] = response_time
            reward[i, t] = r
            learn(q, k, c, r, alpha_pos[i], alpha_neg[i])


def learning_rates(params):
    """(alpha_pos, alpha_neg) arrays from a single-rate or dual-rate parameter mapping."""
    if "alpha" in params:
        if "alpha_pos" in params or "alpha_neg" in params:
            raise ValueError("give either 'alpha' or both 'alpha_pos' and 'alpha_neg', not both")
        alpha = np.asarray(params["alpha"], float)
        return alpha, alpha
    if "alpha_pos" in params and "alpha_neg" in params:
        return np.asarray(params["alpha_pos"], float), np.asarray(params["alpha_neg"], float)
    raise ValueError("parameters need a learning rate: 'alpha', or 'alpha_pos' and 'alpha_neg'")


def participant_arrays(params, names=None):
    """Validate a parameter mapping: equal-length 1-D float arrays inside the model's support
    (`names`: the observation model's parameters; default: beta for a choice-only model's
    mapping, else the diffusion's v, a, z and t0), with alpha_pos and alpha_neg."""
    if names is None:
        names = ("beta",) if choice_only(params) else ("v", "a", "z", "t0")
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError(f"missing parameter(s) {missing}")
    arrays = {n: np.atleast_1d(np.asarray(params[n], float)) for n in names}
    arrays["alpha_pos"], arrays["alpha_neg"] = (np.atleast_1d(x) for x in learning_rates(params))
    sizes = {n: x.shape for n, x in arrays.items()}
    if len(set(sizes.values())) != 1 or len(next(iter(sizes.values()))) != 1:
        raise ValueError(f"parameters must be 1-D arrays of one length (one value per participant), got shapes {sizes}")
    checks = {"a": (0.0, math.inf, False), "z": (0.0, 1.0, False), "t0": (0.0, math.inf, True),
              "alpha_pos": (0.0, 1.0, True), "alpha_neg": (0.0, 1.0, True), "v": (-math.inf, math.inf, True),
              "beta": (0.0, math.inf, True)}
    for n, (lo, hi, closed) in ((n, c) for n, c in checks.items() if n in arrays):
        x = arrays[n]
        ok = np.isfinite(x) & ((x >= lo) & (x <= hi) if closed else (x > lo) & (x < hi))
        if not ok.all():
            i = int(np.argmin(ok))
            raise ValueError(f"parameter '{n}' of participant {i} is {x[i]}, outside its support "
                             f"{'[' if closed else '('}{lo}, {hi}{']' if closed else ')'}")
    return arrays


def simulate(params: Mapping[str, np.ndarray], design: TaskDesign, seed: int,
             n_trials: int | np.ndarray | None = None, participant_ids: np.ndarray | None = None) -> Study:
    """Simulate a study exactly (no discretisation of the diffusion).

    Parameters
    ----------
    params
        Parameter name -> one value per participant (v, a, z, t0 and alpha, or alpha_pos
        and alpha_neg).
    design
        The task design (trials, reward schedule, blocks, deadline, q_init).
    seed
        The same seed gives the same study.
    n_trials
        Per-participant trial counts (default: drawn from the design).
    participant_ids
        Participant ids (default: 1, 2, ...).

    Returns
    -------
    Study
        Choices, RTs and rewards, plus both arms' potential outcomes (``outcomes``) and reward
        probabilities (``arm_probs``).
    """
    if isinstance(design, DesignFamily):
        raise TypeError("simulate takes one design; a family of designs draws one per participant: "
                        "use simulate_family")
    p = participant_arrays(params)
    n = p["alpha_pos"].shape[0]
    rng = np.random.default_rng(seed)
    if n_trials is None:
        n_trials = design.sample_trial_counts(rng, n)
    n_trials = np.broadcast_to(np.asarray(n_trials, dtype=np.int64), (n,)).copy()
    if (n_trials < 1).any():
        raise ValueError("every participant needs at least one trial")
    max_trials = int(n_trials.max())
    block, condition, arm_probs = design.trial_layout(n_trials, max_trials, rng)
    return simulate_trials(params, n_trials, block, condition, arm_probs, seed=int(rng.integers(2**63)),
                           q_init=design.q_init, deadline=design.deadline, omission_rate=design.omission_rate,
                           p_outlier=design.p_outlier, rt_max=design.rt_max, participant_ids=participant_ids,
                           condition_labels=tuple(range(len(design.stimulus_pairs))),
                           exclude_omissions=design.deadline is not None, exclude_first=design.exclude_first)


def simulate_trials(params: Mapping[str, np.ndarray], n_trials: np.ndarray, block: np.ndarray, condition: np.ndarray,
                    arm_probs: np.ndarray, seed: int, q_init: float | np.ndarray = 0.5,
                    deadline: float | np.ndarray | None = None, omission_rate: float | np.ndarray = 0.0,
                    p_outlier: float | np.ndarray = 0.0, rt_max: float | np.ndarray = 10.0,
                    participant_ids: np.ndarray | None = None, condition_labels: tuple | None = None,
                    exclude_omissions: bool | np.ndarray = False, exclude_first: bool | np.ndarray = False) -> Study:
    """Simulate given trial structures: each participant's blocks, stimulus pairs and arms'
    reward probabilities per trial ((participants, max_trials) arrays, (..., 2) for the
    probabilities), as a design lays them out or as a real study had them (posterior
    predictive checks). q_init, deadline (inf or None: none), omission_rate, p_outlier and
    rt_max: a number, or one per participant; the rest as in the design.
    exclude_omissions: the participants whose omissions the data mark (excluded trials);
    exclude_first: the participants whose first trial of each pair is excluded (HDDM).
    """
    p = participant_arrays(params)
    n = p["alpha_pos"].shape[0]
    softmax = "beta" in p
    if softmax and deadline is not None and np.isfinite(deadline).any():
        raise ValueError("a choice-only model has no response times, so no deadline: its omissions are ignorable")
    n_trials = np.asarray(n_trials, np.int64)
    max_trials = block.shape[1]
    if n_trials.shape != (n,) or block.shape != (n, max_trials) or condition.shape != block.shape \
            or arm_probs.shape != (n, max_trials, 2) or n_trials.max() > max_trials:
        raise ValueError(f"trial structure shapes {n_trials.shape}, {block.shape}, {condition.shape}, "
                         f"{arm_probs.shape} do not fit {n} participants")
    labels = tuple(range(int(condition.max(initial=0)) + 1)) if condition_labels is None else condition_labels
    choice = np.full((n, max_trials), -1, np.int8)
    reward = np.full((n, max_trials), -1, np.int8)
    rt = np.full((n, max_trials), np.nan)
    outcomes = np.full((n, max_trials, 2), -1, np.int8)
    omitted = np.zeros((n, max_trials), bool)

    def per_participant(value, dtype=np.float64):
        return np.broadcast_to(np.asarray(math.inf if value is None else value, dtype), (n,)).copy()

    unused = np.zeros(n)  # the other observation model's parameters
    _simulate_kernel(*(p.get(name, unused) for name in ("v", "a", "z", "t0", "beta")), softmax, p["alpha_pos"],
                     p["alpha_neg"], per_participant(q_init),
                     per_participant(deadline), per_participant(omission_rate), per_participant(p_outlier),
                     per_participant(rt_max), n_trials, block.astype(np.int32), condition.astype(np.int32), len(labels),
                     np.asarray(arm_probs, np.float64), new_state(int(seed)), choice, rt, reward, outcomes, omitted)
    if participant_ids is None:
        participant_ids = np.arange(1, n + 1)
    study = Study(participant=np.asarray(participant_ids), n_trials=n_trials, choice=choice, rt=rt,
                  reward=reward, block=block.astype(np.int32), outcomes=outcomes, condition=condition.astype(np.int32),
                  excluded=omitted & per_participant(exclude_omissions, bool)[:, None], condition_labels=labels,
                  arm_probs=np.asarray(arm_probs, np.float64).copy())
    first = per_participant(exclude_first, bool)
    if first.any():
        marked, _ = exclude_first_trial_of_each_condition(study)
        study.excluded |= marked.excluded & first[:, None]
    return study


def simulate_family(params: Mapping[str, np.ndarray], family: DesignFamily, seed: int,
                    n_trials: int | np.ndarray | None = None) -> tuple[Study, DesignSettings]:
    """Simulate a study whose participants each have a design drawn from `family`.

    Returns the study (its q_init: each participant's) and each participant's settings
    (q_init, deadline, missing kind, contaminants), which the network reads with the trials.
    """
    n = participant_arrays(params)["alpha_pos"].shape[0]
    rng = np.random.default_rng(seed)
    draw = family.sample(rng, n, n_trials)
    settings = draw.settings
    study = simulate_trials(params, draw.n_trials, draw.block, draw.condition, draw.arm_probs,
                            seed=int(rng.integers(2**63)), q_init=settings.q_init, deadline=settings.deadline,
                            omission_rate=draw.omission_rate, p_outlier=settings.p_outlier, rt_max=settings.rt_max,
                            condition_labels=tuple(range(family.n_pairs[1])),
                            exclude_omissions=np.isfinite(settings.deadline), exclude_first=draw.exclude_first)
    responded = study.valid & (study.choice >= 0)
    study.excluded |= responded & (rng.random(study.choice.shape) < draw.excluded_rate[:, None])
    study.q_init = settings.q_init.copy()
    return study, settings


SIMULATION_CHUNK = 10_000  # participants per simulator call in simulate_from_priors: the progress bar's step


def simulate_from_priors(priors, design: TaskDesign, participants: int, seed: int | None = None,
                         progress: bool = False) -> tuple[Study, pd.DataFrame]:
    """Participants' parameters drawn from the priors and their data simulated under `design`.

    Returns
    -------
    tuple
        The study (participants numbered from 1) and a DataFrame of each participant's true
        parameters. Participants are simulated in chunks of SIMULATION_CHUNK, each seeded from
        the same generator, so up to one chunk the study is that of a single :func:`simulate`
        call.
    """
    rng = np.random.default_rng(seed)
    params = priors.sample(rng, participants)
    starts = range(0, participants, SIMULATION_CHUNK)
    parts = []
    for start in tqdm(starts, desc="simulate", unit="chunk", disable=not progress or len(starts) < 2):
        stop = min(start + SIMULATION_CHUNK, participants)
        parts.append(simulate({k: v[start:stop] for k, v in params.items()}, design, seed=int(rng.integers(2**63)),
                              participant_ids=np.arange(start + 1, stop + 1)))
    study = parts[0] if len(parts) == 1 else Study.concatenate(parts)
    return study, pd.DataFrame({"participant": study.participant, **params})

"""Are a study's data like those the network was trained on? A misspecification check in the
space the network conditions on, with its null calibrated by simulating the study's own design.

Each participant's trial structure (its trials, blocks, stimulus pairs, the arms' reward
probabilities, its q_init, deadline and contaminant settings) is replicated with parameters
drawn from the network's priors and simulated: data the network was trained for, on exactly
that design. Everything the coupling flow is conditioned on (the summary network's output and
the direct per-participant conditions) is computed for the data and for the replicates.

- Per participant: the squared Mahalanobis distance to the replicates (their pooled mean and
  covariance), ranked among the participant's own replicates' distances: a p-value that is
  uniform when the data come from the priors on that design, so flagging p <= ALPHA has a
  false-alarm rate of ALPHA whatever the design.
- Per study: the maximum mean discrepancy (BayesFlow's kernel) between the participants and a
  reference pool of half the replicates, against the discrepancies of NULL_STUDIES simulated
  studies of the same design, each made of one of the other replicates per participant
  (Schmitt, Buerkner, Koethe and Radev 2023, as BayesFlow 2's ``summary_space_comparison``,
  with a design-matched null in place of the bootstrap).

A flag says the data lie outside what the network was trained on (its answer is an
extrapolation); a high PSIS k-hat without a flag says the network is inaccurate on data like
its training data. The correction (``infer --refine``) repairs both.
"""

from dataclasses import dataclass

import keras
import numpy as np
import xarray as xr
from bayesflow.metrics.functional.kernels import inverse_multiquadratic

from ..data.study import Study
from ..model.priors import PriorSet
from ..model.simulator import simulate_trials
from ..model.task import DesignSettings

__all__ = ["ALPHA", "REPLICATES", "MisspecificationCheck", "design_replicates", "empirical_arm_probs",
           "misspecification_check"]

REPLICATES = 199  # simulated participants per participant: p-values in steps of 1/200
ALPHA = 0.01  # a participant (or study) is flagged at p <= ALPHA: 1% false alarms by construction
NULL_STUDIES = 199  # simulated studies in the study-level test's null
KERNEL_CHUNK = 64  # rows per kernel evaluation
POOL_SIZE = 4000  # at most this many replicates in the study-level MMD's reference pool


def empirical_arm_probs(study: Study) -> np.ndarray:
    """Each arm's reward probability per trial as the participant's observed reward rate of that
    arm in that stimulus pair (0.5 where the arm was never chosen), for data that do not give
    the schedule: (participants, max_trials, 2). Reversals within a pair are not recovered."""
    responded = study.valid & (study.choice >= 0) & (study.reward >= 0)
    probs = np.full(study.choice.shape + (2,), 0.5)
    for condition in range(study.n_conditions):
        in_pair = responded & (study.condition == condition)
        for arm in (0, 1):
            chosen = in_pair & (study.choice == arm)
            count = chosen.sum(1)
            rate = np.where(count > 0, (study.reward * chosen).sum(1) / np.maximum(count, 1), 0.5)
            probs[..., arm] = np.where(study.condition == condition, rate[:, None], probs[..., arm])
    return probs


def design_replicates(study: Study, settings: DesignSettings, params, replicates: int,
                      seed: int) -> tuple[Study, DesignSettings]:
    """`replicates` participants per participant of `study`, simulated on its own trial structure
    and settings: participant i's replicates are rows i * replicates to (i + 1) * replicates - 1,
    with the parameters of those rows in `params` (name -> array; a PriorSet: drawn from it, the
    prior predictive). The data's exclusions are kept; ignorable omissions recur at the
    participant's own rate. Returns the simulated study and its settings."""
    rows = np.repeat(np.arange(study.n_participants), replicates)
    rng = np.random.default_rng(seed)
    params = params.sample(rng, rows.size) if isinstance(params, PriorSet) else params
    arm_probs = study.arm_probs if study.arm_probs is not None else empirical_arm_probs(study)
    omission_rate = np.where(settings.ignorable, study.missing.sum(1) / study.n_trials, 0.0)
    replicated = settings.select(rows)
    simulated = simulate_trials(params, study.n_trials[rows], study.block[rows], study.condition[rows],
                                np.nan_to_num(arm_probs[rows], nan=0.5), seed=int(rng.integers(2**63)),
                                q_init=replicated.q_init, deadline=replicated.deadline,
                                omission_rate=omission_rate[rows], p_outlier=replicated.p_outlier,
                                rt_max=replicated.rt_max, condition_labels=study.condition_labels,
                                exclude_omissions=np.isfinite(replicated.deadline))
    simulated.excluded |= study.excluded[rows] & ~study.missing[rows] & (simulated.choice >= 0)
    simulated.q_init = replicated.q_init.copy()
    return simulated, replicated


@dataclass(frozen=True)
class MisspecificationCheck:
    """The check's result: per participant (an xarray Dataset) and for the study."""

    participants: xr.Dataset
    study_mmd: float
    study_p_value: float
    replicates: int

    @property
    def study_flagged(self) -> bool:
        """Whether the study as a whole is unlike simulations of its design (p <= ALPHA)."""
        return self.study_p_value <= ALPHA


def _whitened(values, reference):
    """`values` and `reference` in the reference's whitened coordinates (constant columns dropped)."""
    mean, sd = reference.mean(0), reference.std(0)
    keep = sd > 1e-8 * max(1.0, float(np.abs(reference).max()))
    cov = np.cov((reference[:, keep] - mean[keep]) / sd[keep], rowvar=False)
    eigenvalues, eigenvectors = np.linalg.eigh(np.atleast_2d(cov))
    scale = eigenvectors / np.sqrt(np.maximum(eigenvalues, 1e-6 * eigenvalues.max()))

    def whiten(x):
        return ((x[:, keep] - mean[keep]) / sd[keep]) @ scale

    return whiten(values), whiten(reference)


def _mean_kernel(x, y) -> float:
    """The mean of BayesFlow's MMD kernel (a mixture of inverse multiquadratics) over the pairs of
    x and y, in row chunks (the kernel materialises rows x features x columns)."""
    return float(sum(keras.ops.convert_to_numpy(keras.ops.sum(inverse_multiquadratic(
        keras.ops.convert_to_tensor(x[i:i + KERNEL_CHUNK].astype(np.float32)),
        keras.ops.convert_to_tensor(y.astype(np.float32)))))
        for i in range(0, x.shape[0], KERNEL_CHUNK)) / (x.shape[0] * y.shape[0]))


def misspecification_check(conditions, study: Study, settings: DesignSettings, priors,
                           replicates: int = REPLICATES, seed: int = 0) -> MisspecificationCheck:
    """Check `study` against simulations of its own design under `priors`.

    Parameters
    ----------
    conditions
        (Study, DesignSettings) -> (participants, dim): what the network conditions on.
    study, settings
        The data and each participant's settings.
    priors
        The network's priors.
    replicates
        Simulated participants per participant.
    seed
        Seeds the simulations.

    Returns
    -------
    MisspecificationCheck
        Per participant: ``distance`` (squared Mahalanobis distance to the replicates),
        ``p_value`` (its rank among the participant's own replicates) and ``unlike_training``
        (p <= ALPHA); for the study, the MMD to the replicates and its p-value.
    """
    if replicates < 4:
        raise ValueError(f"replicates: at least 4 (half of them the study-level test's reference), got {replicates}")
    simulated, replicated = design_replicates(study, settings, priors, replicates, seed)
    observed, reference = _whitened(conditions(study, settings), conditions(simulated, replicated))
    distance = (observed ** 2).sum(1)
    null = (reference ** 2).sum(1).reshape(study.n_participants, replicates)
    p_value = (1 + (null >= distance[:, None]).sum(1)) / (replicates + 1)
    # the study: the participants against half of the replicates, beside NULL_STUDIES simulated
    # studies, each made of one of the other replicates per participant
    grid = reference.reshape(study.n_participants, replicates, -1)
    pooled = replicates // 2
    pool = grid[:, :pooled].reshape(-1, grid.shape[-1])
    rng = np.random.default_rng(seed)
    members = rng.integers(pooled, replicates, size=(NULL_STUDIES, study.n_participants))
    if pool.shape[0] > POOL_SIZE:  # a large study: a random subset of the pool suffices
        pool = pool[rng.choice(pool.shape[0], POOL_SIZE, replace=False)]
    pool_term = _mean_kernel(pool, pool)  # the same in every discrepancy below: computed once

    def mmd(x):  # BayesFlow's maximum_mean_discrepancy (biased), with the pool's term reused
        return _mean_kernel(x, x) + pool_term - 2 * _mean_kernel(x, pool)

    study_mmd = mmd(observed)
    everyone = np.arange(study.n_participants)
    null_mmd = np.array([mmd(grid[everyone, chosen]) for chosen in members])
    study_p = (1 + (null_mmd >= study_mmd).sum()) / (null_mmd.size + 1)
    participants = xr.Dataset(
        {"distance": ("participant", distance), "p_value": ("participant", p_value),
         "unlike_training": ("participant", p_value <= ALPHA)},
        coords={"participant": [str(p) for p in study.participant]})
    return MisspecificationCheck(participants, study_mmd, float(study_p), replicates)

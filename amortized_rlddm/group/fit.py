"""The group level of a study in one call (`rlddm group`): each participant's corrected
posterior (the network's draws made exact), a proposal fitted to it, the Metropolis-within-Gibbs
chains, and a DataTree that loads in ArviZ like a PyMC trace."""

import time
from pathlib import Path
from typing import TYPE_CHECKING

import arviz_stats
import numpy as np
import pandas as pd
import xarray as xr

from ..data.io import read_study
from ..data.study import Study
from ..model.target import ExactTarget
from ..model.task import TaskDesign
from .model import LKJ_ETA, GroupModel, correlation_pairs
from .proposals import ParticipantMixtures
from .sampler import PARTICIPANT_STEPS, contrast_labels, gaussian_surrogate, metropolis_within_gibbs

if TYPE_CHECKING:  # the network comes in as an argument: importing the group level starts no TensorFlow
    from ..amortized.posterior import AmortizedPosterior

__all__ = ["fit_group", "group_labels"]

# With the exact moves, parameters given the scale and shift moves per iteration: all five (the
# group sd of v mixes slowest: its log has a long left tail that only the scale move crosses).
MOVE_STEPS = 5
CORRECTED_DRAWS = 1000  # draws of each participant's corrected posterior that the proposals are fitted to


def group_labels(data: pd.DataFrame | str | Path, column: str, participants, participant_column: str = "participant"):
    """Each participant's group, from a column of the data (constant within a participant).

    Returns the labels in the order of `participants`; a participant with two labels or
    none is refused, naming the file, row and column."""
    frame = pd.read_csv(data) if not isinstance(data, pd.DataFrame) else data
    source = data if not isinstance(data, pd.DataFrame) else "the DataFrame"
    for name in (column, participant_column):
        if name not in frame.columns:
            raise ValueError(f"{source}: no column {name!r} (columns: {list(frame.columns)})")
    labels = {}
    for row, (participant, label) in enumerate(zip(frame[participant_column].astype(str), frame[column])):
        if pd.isna(label):
            raise ValueError(f"{source}, row {row + 2}, column {column!r}: no group label")
        if labels.setdefault(participant, label) != label:
            raise ValueError(f"{source}, row {row + 2}, column {column!r}: participant {participant!r} is in group "
                             f"{labels[participant]!r} and {label!r}; a participant belongs to one group")
    return [labels[str(p)] for p in participants]


def fit_group(posterior: "AmortizedPosterior", data: Study | pd.DataFrame | str | Path, groups=None, chains: int = 4,
              tune: int = 300, draws: int = 1000, seed: int = 0, convention: str = "rlddm",
              participant_steps: int = PARTICIPANT_STEPS, moves: str = "surrogate", move_steps: int = MOVE_STEPS,
              design: TaskDesign | None = None, correlated: bool = False) -> xr.DataTree:
    """The exact hierarchical posterior of a study (see :mod:`amortized_rlddm.group.model`).

    Parameters
    ----------
    posterior
        The per-participant network. Its draws, corrected to each participant's exact
        posterior (:meth:`AmortizedPosterior.infer` with ``refine=True``, CORRECTED_DRAWS draws),
        are summarised by a Student-t mixture per participant
        (:class:`~amortized_rlddm.group.proposals.ParticipantMixtures`) whose draws are the
        independence steps' proposals.
    data
        A Study, DataFrame or CSV path (read with `convention`).
    groups
        One label per participant (in the study's order), or None: one group.
    chains, tune, draws
        Chains, and iterations per chain discarded and kept.
    seed
        Seed of the correction, the proposals and the chains.
    convention
        Column convention of a DataFrame or CSV.
    participant_steps
        Independence steps per participant per iteration, each with a fresh proposal.
    moves
        How the group level moves with the participants' values at the end of every iteration
        (see :mod:`amortized_rlddm.group.sampler`): ``"surrogate"`` (the default): with a
        quadratic surrogate of each participant's likelihood (fitted to the corrected draws),
        an independence step of each participant from their conditional within the group
        under the surrogate, checked exactly, then scale moves of a group sd with the
        participants' distances to their group mean and shift moves of a group mean with its
        participants' values, SURROGATE_STEPS of them under the surrogate, with one exact
        check of where they ended (two exact likelihoods per participant and chain);
        ``"exact"``: a random-walk step of each participant and `move_steps` parameters' scale
        and shift moves, each checked exactly (1 + 2 x move_steps exact likelihoods);
        ``"none"``: the independence steps and the group updates alone, which mix a small
        group sd slowly where the participants' data say little (a funnel).
    move_steps
        With ``moves="exact"``: parameters moved so per iteration, cycling through them (each
        costs two exact likelihoods).
    design
        The study's settings (deadline, missing kind, q_init, contaminants) as a TaskDesign;
        default: the network's (see :meth:`AmortizedPosterior.study_design`).
    correlated
        Correlate the parameters' group normals, with an LKJ(2) prior on their correlation
        matrix (see :mod:`amortized_rlddm.group.model`); False: independent group normals.

    Returns
    -------
    xarray.DataTree
        ``posterior``: ``mu_<parameter>`` (chain, draw[, group]) and ``sigma_<parameter>``
        (chain, draw) on the unbounded scale, ``delta_mu_<parameter>`` (chain, draw, contrast)
        with groups, ``rho`` (chain, draw, pair) with `correlated`: the group normals'
        correlations, pairs labelled "v, a", and the participants' parameters on their natural
        scale (chain, draw, participant); ``acceptance``: each participant's acceptance rate, over all chains and
        by chain, with ``moves="surrogate"`` the conditional steps' acceptance rate per
        participant, the share of iterations whose surrogate moves passed the exact check and
        the moves' tuned sizes per parameter, with ``moves="exact"`` the
        random-walk steps' acceptance rates and tuned sizes per participant and the scale and
        shift moves' per parameter; ``diagnostics``: r-hat and
        bulk ESS of every variable; ``correction``: the per-participant correction the
        proposals were fitted to (``trusted``, ``method``, ... as in
        :meth:`AmortizedPosterior.infer`'s ``importance``). Attributes give the hyperpriors and
        the time taken (``proposals_seconds``: the correction, the fits and the proposals'
        likelihoods).
    """
    if moves not in ("surrogate", "exact", "none"):
        raise ValueError(f"moves: expected 'surrogate', 'exact' or 'none', got {moves!r}")
    start = time.perf_counter()
    study = data if isinstance(data, Study) else read_study(data, convention=convention)
    design = design or posterior.study_design()
    posterior.check(study, design=design)
    labels = ["all"] * study.n_participants if groups is None else [str(g) for g in groups]
    if len(labels) != study.n_participants:
        raise ValueError(f"groups: {len(labels)} labels for {study.n_participants} participants")
    order = tuple(dict.fromkeys(labels))
    model = GroupModel(posterior.config.priors, order, correlated)
    m, s = model.hyperpriors()
    count = chains * ((tune + draws) * participant_steps + 1)
    correction = posterior.infer(study, draws=CORRECTED_DRAWS, seed=seed, design=design, refine=True)
    corrected = correction["posterior"].to_dataset()
    corrected_y = model.space.forward({name: corrected[name].values[0].T for name in model.names})
    mixtures = ParticipantMixtures.fit(corrected_y)
    y = mixtures.sample(count, np.random.default_rng(seed))
    target = ExactTarget(study, posterior.config.priors, design)
    log_likelihood = target.log_likelihood(model.space.inverse(y))
    with np.errstate(invalid="ignore"):  # a proposal outside the likelihood's support weighs 0
        weight = log_likelihood - mixtures.logpdf(np.swapaxes(y, 0, 1)).T
    weight = np.where(np.isfinite(weight), weight, -np.inf)
    functions = {}  # the moves' exact log-likelihood and proposal density, of the chains' current values
    if moves != "none":
        functions = {"log_likelihood": _chain_likelihood(target, model), "log_proposal": mixtures.logpdf,
                     "proposal_log_likelihood": log_likelihood}
    if moves == "surrogate":  # fitted where the mixtures were
        functions["surrogate"] = gaussian_surrogate(corrected_y, m, s)
    prepared = time.perf_counter() - start
    chain = metropolis_within_gibbs(y, weight, np.asarray([order.index(g) for g in labels]), len(order), m, s,
                                    chains=chains, tune=tune, draws=draws, seed=seed + 1,
                                    participant_steps=participant_steps, move_steps=move_steps,
                                    correlation_eta=LKJ_ETA if correlated else None, **functions)
    tree = _tree(study, model, chain, m, s, participant_steps)
    tree["correction"] = correction["importance"].to_dataset()
    tree["posterior"].attrs.update({"proposals_seconds": prepared, "seconds": time.perf_counter() - start,
                                    "checkpoint": posterior.source, "tune": tune})
    return tree


def _chain_likelihood(target: ExactTarget, model: GroupModel):
    """``log_likelihood(y, participants=None)`` of the chains' values y (chains, participants,
    parameters) on the group's unbounded scale: (chains, participants), of the participants
    at `participants` alone when given (each subset's target built once)."""
    targets = {None: target}

    def log_likelihood(y, participants=None):
        key = None if participants is None else tuple(int(i) for i in participants)
        if key not in targets:
            targets[key] = target.select(participants)
        return targets[key].log_likelihood(model.space.inverse(np.swapaxes(y, 0, 1))).T

    return log_likelihood


def _tree(study, model, chain, m, s, participant_steps):
    participants = np.asarray([str(p) for p in study.participant])
    chains, draws, n_groups, _ = chain["mu"].shape
    grouped = n_groups > 1
    data = {}
    for k, name in enumerate(model.names):
        mu = chain["mu"][..., k]
        data[f"mu_{name}"] = (("chain", "draw", "group"), mu) if grouped else (("chain", "draw"), mu[..., 0])
        data[f"sigma_{name}"] = (("chain", "draw"), chain["sigma"][..., k])
        if grouped:
            pairs = [(i, j) for i in range(n_groups) for j in range(i + 1, n_groups)]
            data[f"delta_mu_{name}"] = (("chain", "draw", "contrast"),
                                        np.stack([mu[..., j] - mu[..., i] for i, j in pairs], axis=-1))
    coords = {"chain": np.arange(chains), "draw": np.arange(draws), "participant": participants}
    if "rho" in chain:
        data["rho"] = (("chain", "draw", "pair"), chain["rho"])
        coords["pair"] = [f"{a}, {b}" for a, b in correlation_pairs(model.names)]
    for name, x in model.space.inverse(chain["y"]).items():
        data[name] = (("chain", "draw", "participant"), x)
    if grouped:
        coords.update(group=list(model.groups), contrast=contrast_labels(model.groups))
    post = xr.Dataset(data, coords=coords)
    post.attrs.update({"inference_library": "amortized_rlddm group (Metropolis-within-Gibbs, proposals "
                                            "fitted to the corrected posteriors)",
                       "unbounded_scale": "each parameter's transform of its prior's support (logit / log)",
                       "hyperpriors": "mu ~ Normal(m, s), sigma ~ HalfNormal(s)"
                                      + (f", correlation matrix ~ LKJ({LKJ_ETA:g})" if model.correlated else ""),
                       **{f"m_{n}": float(m[k]) for k, n in enumerate(model.names)},
                       **{f"s_{n}": float(s[k]) for k, n in enumerate(model.names)}})
    rate = chain["accepted"] / (draws * participant_steps)
    acceptance = xr.Dataset({"acceptance_rate": (("participant",), rate.mean(axis=0)),
                             "acceptance_rate_by_chain": (("chain", "participant"), rate)},
                            coords={"participant": participants, "chain": np.arange(chains)})
    if "scale_acceptance" in chain:  # the moves: random walk per participant, scale and shift per parameter
        walk = chain["walk_accepted"] / (draws * chain["walk_steps"])
        acceptance = acceptance.assign(
            walk_acceptance_rate=(("participant",), walk.mean(axis=0)),
            walk_acceptance_rate_by_chain=(("chain", "participant"), walk),
            walk_step=(("participant",), chain["walk_step"]),
            walk_steps=(("participant",), chain["walk_steps"]),
            scale_move_acceptance_rate=(("parameter",), chain["scale_acceptance"].mean(axis=0)),
            scale_move_acceptance_rate_by_chain=(("chain", "parameter"), chain["scale_acceptance"]),
            shift_move_acceptance_rate=(("parameter",), chain["shift_acceptance"].mean(axis=(0, 1))),
            shift_move_acceptance_rate_by_chain=(("chain", "parameter"), chain["shift_acceptance"].mean(axis=1)),
            scale_move_step=(("parameter",), chain["scale_step"]),
            shift_move_step=(("parameter",), chain["shift_step"])).assign_coords(parameter=list(model.names))
    if "surrogate_acceptance" in chain:  # the surrogate moves: the exact check per chain, steps per parameter
        acceptance = acceptance.assign(
            conditional_acceptance_rate=(("participant",), chain["conditional_acceptance"].mean(axis=0)),
            conditional_acceptance_rate_by_chain=(("chain", "participant"), chain["conditional_acceptance"]),
            surrogate_acceptance_rate=((), float(chain["surrogate_acceptance"].mean())),
            surrogate_acceptance_rate_by_chain=(("chain",), chain["surrogate_acceptance"]),
            scale_move_step=(("parameter",), chain["scale_step"]),
            shift_move_step=(("parameter",), chain["shift_step"])).assign_coords(parameter=list(model.names))
    if "rho" in chain:
        acceptance = acceptance.assign(
            correlation_acceptance_rate=((), float(chain["correlation_acceptance"].mean())),
            correlation_acceptance_rate_by_chain=(("chain",), chain["correlation_acceptance"]),
            correlation_step=((), float(chain["correlation_step"])))
    group_vars = [v for v in post.data_vars if v.startswith(("mu_", "sigma_", "delta_mu_")) or v == "rho"]
    rhat = arviz_stats.rhat(post[group_vars])
    ess = arviz_stats.ess(post[group_vars], method="bulk")
    diagnostics = xr.Dataset({f"rhat_{v}": rhat[v] for v in group_vars} | {f"ess_bulk_{v}": ess[v] for v in group_vars})
    return xr.DataTree.from_dict({"posterior": post, "acceptance": acceptance, "diagnostics": diagnostics})

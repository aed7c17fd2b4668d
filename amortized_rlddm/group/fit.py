"""The group level of a study in one call (`rlddm group`): proposals from the amortized
posterior, the Metropolis-within-Gibbs chains, and a DataTree that loads in ArviZ like a
PyMC trace."""

import time
from pathlib import Path

import arviz_stats
import numpy as np
import pandas as pd
import xarray as xr

from ..amortized.posterior import AmortizedPosterior
from ..data.io import read_study
from ..data.study import Study
from .model import GroupModel
from .sampler import PARTICIPANT_STEPS, contrast_labels, group_weights, metropolis_within_gibbs, proposals


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


def fit_group(posterior: AmortizedPosterior, data: Study | pd.DataFrame | str | Path, groups=None, chains: int = 4,
              tune: int = 500, draws: int = 1000, seed: int = 0, convention: str = "rlddm",
              participant_steps: int = PARTICIPANT_STEPS) -> xr.DataTree:
    """The exact hierarchical posterior of a study (see :mod:`amortized_rlddm.group.model`).

    Parameters
    ----------
    posterior
        The per-participant network, whose draws are the proposals.
    data
        A Study, DataFrame or CSV path (read with `convention`).
    groups
        One label per participant (in the study's order), or None: one group.
    chains, tune, draws
        Chains, and iterations per chain discarded and kept.
    seed
        Seed of the proposals and of the chains.
    convention
        Column convention of a DataFrame or CSV.
    participant_steps
        Independence steps per participant per iteration, each with a fresh amortized draw.

    Returns
    -------
    xarray.DataTree
        ``posterior``: ``mu_<parameter>`` (chain, draw[, group]) and ``sigma_<parameter>``
        (chain, draw) on the unbounded scale, ``delta_mu_<parameter>`` (chain, draw, contrast)
        with groups, and the participants' parameters on their natural scale (chain, draw,
        participant); ``acceptance``: each participant's acceptance rate, over all chains and
        by chain; ``diagnostics``: r-hat and bulk ESS of every variable. Attributes give the
        hyperpriors and the time taken.
    """
    start = time.perf_counter()
    study = data if isinstance(data, Study) else read_study(data, convention=convention)
    posterior.check(study)
    labels = ["all"] * study.n_participants if groups is None else [str(g) for g in groups]
    if len(labels) != study.n_participants:
        raise ValueError(f"groups: {len(labels)} labels for {study.n_participants} participants")
    order = tuple(dict.fromkeys(labels))
    model = GroupModel(posterior.config.priors, order)
    m, s = model.hyperpriors()
    count = chains * ((tune + draws) * participant_steps + 1)
    values, log_q, log_likelihood = proposals(posterior, study, count, seed)
    y, weight = group_weights(model, values, log_q, log_likelihood)
    prepared = time.perf_counter() - start
    chain = metropolis_within_gibbs(y, weight, np.asarray([order.index(g) for g in labels]), len(order), m, s,
                                    chains=chains, tune=tune, draws=draws, seed=seed + 1,
                                    participant_steps=participant_steps)
    tree = _tree(study, model, values, chain, m, s, participant_steps)
    tree["posterior"].attrs.update({"proposals_seconds": prepared, "seconds": time.perf_counter() - start,
                                    "checkpoint": posterior.source, "tune": tune})
    return tree


def _tree(study, model, values, chain, m, s, participant_steps):
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
    rows = np.arange(study.n_participants)
    for name, x in values.items():
        data[name] = (("chain", "draw", "participant"), x[rows[None, None, :], chain["index"]])
    coords = {"chain": np.arange(chains), "draw": np.arange(draws), "participant": participants}
    if grouped:
        coords.update(group=list(model.groups), contrast=contrast_labels(model.groups))
    post = xr.Dataset(data, coords=coords)
    post.attrs.update({"inference_library": "amortized_rlddm group (Metropolis-within-Gibbs on amortized "
                                            "proposals)",
                       "unbounded_scale": "each parameter's transform of its prior's support (logit / log)",
                       "hyperpriors": "mu ~ Normal(m, s), sigma ~ HalfNormal(s)",
                       **{f"m_{n}": float(m[k]) for k, n in enumerate(model.names)},
                       **{f"s_{n}": float(s[k]) for k, n in enumerate(model.names)}})
    rate = chain["accepted"] / (draws * participant_steps)
    acceptance = xr.Dataset({"acceptance_rate": (("participant",), rate.mean(axis=0)),
                             "acceptance_rate_by_chain": (("chain", "participant"), rate)},
                            coords={"participant": participants, "chain": np.arange(chains)})
    group_vars = [v for v in post.data_vars if v.startswith(("mu_", "sigma_", "delta_mu_"))]
    rhat = arviz_stats.rhat(post[group_vars])
    ess = arviz_stats.ess(post[group_vars], method="bulk")
    diagnostics = xr.Dataset({f"rhat_{v}": rhat[v] for v in group_vars} | {f"ess_bulk_{v}": ess[v] for v in group_vars})
    return xr.DataTree.from_dict({"posterior": post, "acceptance": acceptance, "diagnostics": diagnostics})

"""Exact fits of a whole study: NUTS per participant on the exact likelihood, gated on
convergence, gathered in one DataTree and one table (`rlddm fit-exact`)."""

from dataclasses import asdict

import numpy as np
import pandas as pd
import xarray as xr
from tqdm.auto import tqdm

from ..data.study import Study
from ..model.likelihood import check_missing
from ..model.priors import PriorSet
from ..model.task import LikelihoodSettings
from ..output import participant_table
from .model import RETRY_SEED_OFFSET, RETRY_THIN, ExactPosterior, posterior_tree

HDI_PROB = 0.94


def fit_study(study: Study, priors: PriorSet, model: str = "single", settings: LikelihoodSettings | None = None,
              fixed: dict | None = None, draws: int = 1000, tune: int = 1000, chains: int = 4, seed: int = 0,
              backend: str = "nutpie", adaptation: str = "diag", progress: bool = False) -> xr.DataTree:
    """NUTS posterior of every participant, with a retry for fits that fail the gate.

    Parameters
    ----------
    study
        The data (stimulus pairs, blocks, excluded trials, data-given q_init).
    priors
        Priors of the model's parameters.
    model
        "single" or "dual".
    settings
        The likelihood's settings (q_init, deadline, missing, p_outlier, rt_max).
    fixed
        Parameters held at a value (e.g. ``{"z": 0.5}``).
    draws, tune, chains
        NUTS draws and tuning steps per chain, and chains.
    seed
        Participant i is fitted with seed + i.
    backend, adaptation
        The NUTS backend and nutpie's mass matrix adaptation (see ``ExactPosterior``).
    progress
        A progress bar over the participants.

    Returns
    -------
    xarray.DataTree
        ``posterior`` (chain, draw, participant) and ``fit_diagnostics`` (per participant:
        rhat_max, ess_bulk_min, divergences, converged, attempts, wall_time_s).
    """
    settings = settings or LikelihoodSettings()
    check_missing(study, settings)  # refused before compiling
    exact = ExactPosterior(priors, model, settings, max_trials=study.max_trials, n_conditions=study.n_conditions,
                           fixed=fixed, backend=backend, adaptation=adaptation)
    exact.compile()
    fits = exact.fit(study, draws=draws, tune=tune, chains=chains, seed=seed, progress=progress, retry=True)
    tree = posterior_tree(fits)
    diagnostics = pd.DataFrame([f.diagnostics for f in fits])
    checks = xr.Dataset({name: (("participant",), diagnostics[name].to_numpy()) for name in diagnostics},
                        coords={"participant": tree["posterior"]["participant"].values})
    tree["fit_diagnostics"] = xr.DataTree(checks)
    tree["posterior"].attrs.update({"inference_library": "amortized_rlddm exact (PyMC + nutpie)", "model": model,
                                    "fixed": str(fixed or {}), "draws": draws, "tune": tune, "chains": chains,
                                    "adaptation": adaptation,
                                    **{k: str(v) for k, v in asdict(settings).items() if v is not None}})
    return tree


def subject_table(tree: xr.DataTree, prob: float = HDI_PROB) -> pd.DataFrame:
    """One row per participant: each parameter's posterior mean, sd and `prob` HDI, and the
    fit's convergence figures."""
    table = participant_table(tree, prob)
    if "fit_diagnostics" in tree.children:
        checks = tree["fit_diagnostics"].to_dataset()
        for name in checks.data_vars:
            table[name] = checks[name].values
    return table


def refit_failed(tree: xr.DataTree, study: Study, priors: PriorSet, model: str = "single",
                 settings: LikelihoodSettings | None = None, fixed: dict | None = None, tune: int = 1000, seed: int = 0,
                 backend: str = "nutpie", adaptation: str = "diag", progress: bool = False) -> xr.DataTree:
    """The study's fits with every participant that failed the convergence gate fitted again
    as a retry is (twice `tune`, RETRY_THIN times the draws thinned back to the tree's chains
    and draws), the rest kept."""
    checks = tree["fit_diagnostics"].to_dataset()
    failed = np.flatnonzero(~checks["converged"].values.astype(bool))
    if not failed.size:
        return tree
    exact = ExactPosterior(priors, model, settings, max_trials=study.max_trials, n_conditions=study.n_conditions,
                           fixed=fixed, backend=backend, adaptation=adaptation)
    exact.compile()
    posterior = tree["posterior"].to_dataset().copy(deep=True)
    chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
    checks = checks.copy(deep=True)
    for i in tqdm(failed, desc="NUTS refits", unit="participant", disable=not progress):
        fit = exact.fit_one(study, int(i), draws, 2 * tune, chains, seed + int(i) + RETRY_SEED_OFFSET, thin=RETRY_THIN)
        new = fit.trace["posterior"].to_dataset()
        for name in posterior.data_vars:
            posterior[name][dict(participant=int(i))] = new[name].transpose("chain", "draw").values
        before = {name: checks[name].values[i] for name in ("attempts", "wall_time_s")}
        for name, value in fit.diagnostics.items():
            checks[name][dict(participant=int(i))] = value
        checks["attempts"][dict(participant=int(i))] = int(before["attempts"]) + 1
        checks["wall_time_s"][dict(participant=int(i))] = float(before["wall_time_s"]) + fit.diagnostics["wall_time_s"]
    refitted = xr.DataTree.from_dict({"posterior": posterior, "fit_diagnostics": checks})
    refitted["posterior"].attrs.update(tree["posterior"].attrs)
    refitted["posterior"].attrs["study_seconds"] = float(checks["wall_time_s"].sum())
    refitted["posterior"].attrs["refitted"] = f"{failed.size} failing fit(s) again, {RETRY_THIN}x draws thinned"
    return refitted

"""Single vs dual learning rate, participant by participant, from exact posterior draws.

Two exact criteria per participant and model:

- the log evidence log p(data | model), by importance sampling from a multivariate Student-t
  fitted to the posterior draws in the unbounded space (PSIS-checked: its k-hat says whether
  the estimate can be trusted), whose difference is the log Bayes factor;
- PSIS-LOO, the expected log predictive density of each trial given the others, from the
  pointwise log-likelihood of the draws (arviz-stats).

The draws may be NUTS's (`rlddm fit-exact`) or the corrected amortized ones
(:func:`compare_networks`, `rlddm compare-models`): both are posterior draws. Over the study,
random-effects Bayesian model selection (:mod:`~amortized_rlddm.validation.bms`) weighs the
participants' log evidences.
"""

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from ..correction.importance import participant_loo, pointwise_elpd, pointwise_group, psis
from ..data.study import Study
from ..model.priors import PriorSet
from ..model.target import ExactTarget
from ..model.task import LikelihoodSettings, TaskDesign
from .bms import plot_bms, random_effects_bms

PROPOSALS = 4000  # importance-sampling draws per participant
STUDENT_DF = 5  # the proposal's degrees of freedom: tails heavier than the posterior's
WIDEN = 1.2  # the proposal's scale over the draws' sd
UNBOUNDED_LIMIT = 30.0  # proposals clipped here: logistic(30) is 1 - 1e-13, still inside (0, 1)


def posterior_values(tree: xr.DataTree) -> dict:
    """Each sampled parameter's draws as (participants, chains x draws)."""
    post = tree["posterior"].to_dataset()
    return {name: post[name].transpose("participant", "chain", "draw").values.reshape(post.sizes["participant"], -1)
            for name in post.data_vars}


def fixed_values(tree: xr.DataTree) -> dict:
    """The parameters the fit held fixed (its ``fixed`` attribute)."""
    return ast.literal_eval(tree["posterior"].attrs.get("fixed", "{}"))


def _with_fixed(values, fixed):
    shape = next(iter(values.values())).shape
    return {**values, **{name: np.full(shape, float(value)) for name, value in fixed.items()}}


def log_evidence(study: Study, tree: xr.DataTree, priors: PriorSet, settings: LikelihoodSettings,
                 proposals: int = PROPOSALS,
                 seed: int = 0) -> xr.Dataset:
    """Each participant's log evidence by importance sampling from a Student-t fitted to the
    posterior draws of `tree` (its mean, and WIDEN times its sd; see the module's notes).

    Parameters
    ----------
    study
        The data the posterior was fitted to.
    tree
        Its posterior (chain, draw, participant); fixed parameters in its ``fixed`` attribute.
    priors
        The model's priors (of every parameter; the fixed ones are left out).
    settings
        The likelihood's settings.
    proposals
        Importance-sampling draws per participant.
    seed
        Seed of the proposals.

    Returns
    -------
    xarray.Dataset
        Per participant ``log_evidence``, ``log_evidence_se``, ``khat`` and ``ess`` (see
        :func:`~amortized_rlddm.correction.importance.psis`).
    """
    fixed = fixed_values(tree)
    free = PriorSet(priors.priors, [n for n in priors.names if n not in fixed])
    # t0 below each fastest response, as in the exact model; with contaminants on its prior's support
    target = ExactTarget(study, free, settings, fixed=fixed)
    y = target.to_unbounded(posterior_values(tree))  # (participants, draws, parameters)
    rng = np.random.default_rng(seed)
    draws, log_q = np.empty((study.n_participants, proposals, y.shape[-1])), np.empty((study.n_participants, proposals))
    for i, yi in enumerate(y):
        proposal = stats.multivariate_t(yi.mean(0), WIDEN ** 2 * np.atleast_2d(np.cov(yi, rowvar=False)),
                                        df=STUDENT_DF)
        draws[i] = np.clip(proposal.rvs(proposals, random_state=rng).reshape(proposals, -1),
                           -UNBOUNDED_LIMIT, UNBOUNDED_LIMIT)
        log_q[i] = proposal.logpdf(draws[i])
    result = psis(target.log_density(draws) - log_q)
    return result[["log_evidence", "log_evidence_se", "khat", "ess"]]


# The models with one and with two learning rates, in each family (the RL-DDM; choices alone)
RATE_PAIRS = (("single", "dual"), ("softmax", "softmax-dual"))


def rate_pair(models) -> tuple[str, str] | None:
    """The (one-rate, two-rate) pair of models among `models`, or None."""
    return next((pair for pair in RATE_PAIRS if set(pair) <= set(models)), None)


def compare_models(study: Study, trees: dict, priors: dict, settings: LikelihoodSettings,
                   seed: int = 0) -> pd.DataFrame:
    """One vs two learning rates per participant: log evidence and PSIS-LOO of each model,
    their differences. The columns name the models by their rates, ``single`` and ``dual``
    (single and dual, or softmax and softmax-dual: :data:`RATE_PAIRS`).

    Parameters
    ----------
    study
        The data.
    trees
        Model -> posterior draws, for the two models of a pair of :data:`RATE_PAIRS`.
    priors
        Model -> its PriorSet.
    settings
        The likelihood's settings.
    seed
        Seed of the importance-sampling proposals.

    Returns
    -------
    pandas.DataFrame
        One row per participant: per model ``log_evidence_<model>`` (with ``_se``, ``khat_``),
        ``elpd_loo_<model>`` (with ``_se``, ``loo_khat_max_``); ``log_bayes_factor`` (dual over
        single), ``elpd_difference`` (dual - single) and its standard error (sqrt(n) x the sd
        of the trials' differences), and ``favours`` by each criterion.
    """
    pair = rate_pair(trees)
    if pair is None:
        raise ValueError(f"models {sorted(trees)}: expected the one- and two-rate models of a family, one of "
                         f"{RATE_PAIRS}")
    participants = np.asarray([str(p) for p in study.participant])
    table = pd.DataFrame({"participant": participants})
    elpd_i = {}  # each trial's elpd, per model (the same trials: the data decide which enter)
    for model, fitted in zip(("single", "dual"), pair):
        tree = trees[fitted]
        evidence = log_evidence(study, tree, priors[fitted], settings, seed=seed)
        table[f"log_evidence_{model}"] = evidence["log_evidence"].values
        table[f"log_evidence_se_{model}"] = evidence["log_evidence_se"].values
        table[f"khat_{model}"] = evidence["khat"].values
        values = _with_fixed(posterior_values(tree), fixed_values(tree))
        group = pointwise_group(study, values, settings)
        corrections = np.zeros(next(iter(values.values())).shape)
        trials = pointwise_elpd(group, corrections, participants)  # (elpd, Pareto k) of each trial
        loo = participant_loo(group, trials, participants)
        table[f"elpd_loo_{model}"] = loo["elpd_loo"].values
        table[f"elpd_loo_se_{model}"] = loo["elpd_loo_se"].values
        table[f"loo_khat_max_{model}"] = loo["loo_khat_max"].values
        elpd_i[model] = trials[0]
    table["log_bayes_factor"] = table["log_evidence_dual"] - table["log_evidence_single"]
    table["log_bayes_factor_se"] = np.hypot(table["log_evidence_se_dual"], table["log_evidence_se_single"])
    difference = pd.Series(elpd_i["dual"] - elpd_i["single"]).groupby(group["participant"].values)
    n = difference.count()
    se = np.sqrt(n * difference.var(ddof=0))
    table["elpd_difference"] = table["elpd_loo_dual"] - table["elpd_loo_single"]
    table["elpd_difference_se"] = table["participant"].map(se).to_numpy()
    table["favours_by_evidence"] = np.where(table["log_bayes_factor"] > 0, "dual", "single")
    table["favours_by_loo"] = np.where(table["elpd_difference"] > 0, "dual", "single")
    return table


def comparison_totals(table: pd.DataFrame) -> dict:
    """The study's verdicts: summed log Bayes factor and elpd difference, and how many
    participants each criterion gives to the dual-rate model."""
    n = len(table)
    total_se = np.sqrt(np.sum(table["elpd_difference_se"] ** 2))  # participants independent
    return {"participants": n,
            "log_bayes_factor_total": float(table["log_bayes_factor"].sum()),
            "dual_by_evidence": int((table["favours_by_evidence"] == "dual").sum()),
            "elpd_difference_total": float(table["elpd_difference"].sum()),
            "elpd_difference_total_se": float(total_se),
            "dual_by_loo": int((table["favours_by_loo"] == "dual").sum()),
            "evidence_khat_above_0.7": int(((table["khat_single"] > 0.7) | (table["khat_dual"] > 0.7)).sum())}


def compare_networks(study: Study, posteriors: dict, design: TaskDesign, draws: int = 1000,
                     seed: int = 0) -> tuple[pd.DataFrame, xr.Dataset, dict]:
    """One vs two learning rates on a study from the amortized posteriors: each model's
    corrected draws (:meth:`~amortized_rlddm.amortized.posterior.AmortizedPosterior.infer` with
    ``refine=True``), :func:`compare_models` on them, and random-effects Bayesian model selection
    over the participants' log evidences.

    Parameters
    ----------
    study
        The data (its exclusions applied).
    posteriors
        Model -> its AmortizedPosterior, for the two models of a pair of :data:`RATE_PAIRS`.
    design
        The study's design: its likelihood settings.
    draws
        Corrected draws per participant and model.
    seed
        Seed of the draws and of the importance-sampling proposals.

    Returns
    -------
    tuple
        The :func:`compare_models` table, with per model ``trusted_<single|dual>`` and
        ``method_<single|dual>`` (the correction's verdict and method) and the assignment
        probability of each model (``p_<model>``); the
        :func:`~amortized_rlddm.validation.bms.random_effects_bms` Dataset (its models named as
        in `posteriors`); and model -> the corrected posterior's DataTree.
    """
    pair = rate_pair(posteriors)
    if pair is None:
        raise ValueError(f"models {sorted(posteriors)}: expected the one- and two-rate models of a family, one of "
                         f"{RATE_PAIRS}")
    trees = {model: posteriors[model].infer(study, draws=draws, seed=seed, model=model, design=design, refine=True)
             for model in pair}
    table = compare_models(study, trees, {model: posteriors[model].config.priors for model in pair},
                           design.likelihood, seed=seed)
    for name, model in zip(("single", "dual"), pair):
        importance = trees[model]["importance"].to_dataset()
        table[f"trusted_{name}"] = importance["trusted"].values.astype(bool)
        table[f"method_{name}"] = importance["method"].values
    evidence = pd.DataFrame(table[["log_evidence_single", "log_evidence_dual"]].to_numpy(), columns=list(pair),
                            index=table["participant"])
    selection = random_effects_bms(evidence, seed=seed)
    for model in pair:
        table[f"p_{model}"] = selection["assignment_probability"].sel(model=model).values
    return table, selection, trees


def write_comparison(out, table: pd.DataFrame, selection: xr.Dataset, pair, source: str = "",
                     seconds: float | None = None) -> str:
    """Write :func:`compare_networks`' results to folder `out`: ``comparison.csv`` (per
    participant), ``bms.csv`` (per model), ``bms.nc`` (the whole selection), ``bms.png`` and
    ``report.md``, whose text it returns."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "comparison.csv", index=False)
    per_model = selection.drop_vars("assignment_probability").drop_dims("participant").to_dataframe()
    per_model.drop(columns=["bor", "free_energy", "null_free_energy"]).to_csv(out / "bms.csv")
    selection.to_netcdf(out / "bms.nc")
    plot_bms(selection, out / "bms.png")
    single, dual = pair
    totals = comparison_totals(table)
    n = totals["participants"]
    lines = [f"# {single} against {dual}" + (f" on {Path(source).name}" if source else ""), "",
             f"{n} participants" + ("" if seconds is None else f", both models' corrected posteriors and the "
                                                              f"comparison in {seconds:.1f} s") + ".", "",
             f"Per participant ([`comparison.csv`](comparison.csv)): {totals['dual_by_evidence']} of {n} favour "
             f"{dual} by their log Bayes factor (summed over participants {totals['log_bayes_factor_total']:.1f}), "
             f"{totals['dual_by_loo']} of {n} by PSIS-LOO (elpd difference {totals['elpd_difference_total']:.1f}, "
             f"se {totals['elpd_difference_total_se']:.1f}).", "",
             "Over the study, random-effects Bayesian model selection ([`bms.csv`](bms.csv)):", "",
             "| model | expected frequency | 95% interval | exceedance probability | protected exceedance |",
             "|---|---|---|---|---|"]
    lines += [f"| {model} | {row.expected_frequency:.3f} | {row.frequency_lower:.3f}-{row.frequency_upper:.3f} | "
              f"{row.exceedance_probability:.3f} | {row.protected_exceedance_probability:.3f} |"
              for model, row in per_model.iterrows()]
    lines += ["", f"Bayesian omnibus risk {float(selection['bor']):.3g}: the probability that the models are "
                  "equally frequent in the population.", ""]
    untrusted = [f"{p} ({model})" for name, model in (("single", single), ("dual", dual))
                 for p, ok in zip(table["participant"], table[f"trusted_{name}"]) if not ok]
    if untrusted:
        lines += [f"Warning: posteriors not trusted: {', '.join(untrusted)}.", ""]
    if totals["evidence_khat_above_0.7"]:
        lines += [f"Warning: {totals['evidence_khat_above_0.7']} participant(s) with a log evidence whose k-hat "
                  "exceeds 0.7 (`khat_single`, `khat_dual`).", ""]
    lines += ["![model frequencies and exceedance probabilities](bms.png)", ""]
    report = "\n".join(lines)
    (out / "report.md").write_text(report)
    return report


def comparison_table(reports: dict) -> str:
    """Markdown rows, one per :func:`write_comparison` folder (label -> folder): the share of
    participants favouring the two-rate model by log Bayes factor and by PSIS-LOO, the summed
    log Bayes factor, the two-rate model's expected frequency with its interval, its protected
    exceedance probability and the Bayesian omnibus risk."""
    header = ["| data | models | favour two rates: by log BF / by LOO | summed log BF | frequency of two rates "
              "(95% interval) | protected exceedance | BOR |", "|---|---|---|---|---|---|---|"]
    rows = []
    for label, folder in reports.items():
        table = pd.read_csv(Path(folder) / "comparison.csv")
        selection = xr.open_dataset(Path(folder) / "bms.nc")
        single, dual = (str(m) for m in selection["model"].values)
        totals = comparison_totals(table)
        n, two = totals["participants"], selection.sel(model=dual)
        rows.append(f"| {label} | {single} / {dual} | {totals['dual_by_evidence']} / {totals['dual_by_loo']} of {n} | "
                    f"{totals['log_bayes_factor_total']:.1f} | {float(two['expected_frequency']):.2f} "
                    f"({float(two['frequency_lower']):.2f}-{float(two['frequency_upper']):.2f}) | "
                    f"{float(two['protected_exceedance_probability']):.3f} | {float(selection['bor']):.2g} |")
        selection.close()
    return "\n".join(header + rows)

"""Model comparison from posterior draws: the importance-sampling log evidence against
quadrature, and PSIS-LOO against ArviZ's on the same draws."""

import arviz_stats
import numpy as np
import pytest
import xarray as xr
from scipy.special import logsumexp

from amortized_rlddm.correction.importance import pointwise_group
from amortized_rlddm.model.config import MODELS
from amortized_rlddm.model.likelihood import loglik_draws
from amortized_rlddm.model.priors import PriorSet
from amortized_rlddm.model.simulator import simulate
from amortized_rlddm.model.task import LikelihoodSettings, TaskDesign
from amortized_rlddm.validation.model_comparison import compare_models, log_evidence

FIXED = {"a": 1.4, "z": 0.5, "t0": 0.3}  # free: v and the learning rate(s)


def _grid_posterior(study, model, priors, rng, draws=4000):
    """The exact posterior of the free learning rate(s) on a fine grid: its log evidence by
    quadrature and draws from it, as a fit's DataTree."""
    free = [n for n in MODELS[model] if n not in FIXED]
    size = 200 if model == "single" else 80
    rates = (np.arange(size) + 0.5) / size  # cell midpoints: the draws' jitter stays inside (0, 1)
    axes = [np.linspace(-3.0, 12.0, 200 if model == "single" else 100) if n == "v" else rates for n in free]
    mesh = [m.ravel() for m in np.meshgrid(*axes, indexing="ij")]
    values = {**{n: m[None] for n, m in zip(free, mesh)},
              **{n: np.full((1, mesh[0].size), v) for n, v in FIXED.items()}}
    log_post = PriorSet(priors.priors, free).logpdf({n: values[n] for n in free}) + loglik_draws(study, values)
    step = np.prod([ax[1] - ax[0] for ax in axes])
    evidence = float(logsumexp(log_post) + np.log(step))
    weights = np.exp(log_post[0] - logsumexp(log_post[0]))
    chosen = rng.choice(weights.size, size=draws, p=weights)
    jitter = {n: rng.uniform(-0.49, 0.49, draws) * (ax[1] - ax[0]) for n, ax in zip(free, axes)}
    posterior = xr.Dataset({n: (("chain", "draw", "participant"), (values[n][0, chosen] + jitter[n])[None, :, None])
                            for n in free}, coords={"participant": [str(study.participant[0])]},
                           attrs={"fixed": str(FIXED)})
    return evidence, xr.DataTree.from_dict({"posterior": posterior})


def test_importance_sampled_evidence_matches_quadrature_and_loo_matches_arviz():
    params = {"v": [3.0], "a": [1.4], "z": [0.5], "t0": [0.3], "alpha_pos": [0.6], "alpha_neg": [0.1]}
    study = simulate({k: np.asarray(v) for k, v in params.items()}, TaskDesign(n_trials=120), seed=3)
    rng = np.random.default_rng(4)
    priors = {m: PriorSet.from_dict({}, MODELS[m]) for m in MODELS}
    evidence, trees = {}, {}
    for model in ("single", "dual"):
        evidence[model], trees[model] = _grid_posterior(study, model, priors[model], rng)
        got = log_evidence(study, trees[model], priors[model], LikelihoodSettings(), seed=5)
        assert float(got["log_evidence"][0]) == pytest.approx(evidence[model], abs=0.05)
        assert float(got["khat"][0]) < 0.7
    table = compare_models(study, trees, priors, LikelihoodSettings(), seed=6)
    assert table["log_bayes_factor"][0] == pytest.approx(evidence["dual"] - evidence["single"], abs=0.08)
    for model in ("single", "dual"):
        tree = trees[model]
        values = {n: tree["posterior"][n].values[0].T for n in tree["posterior"].data_vars}
        values.update({n: np.full_like(next(iter(values.values())), v) for n, v in FIXED.items()})
        group = pointwise_group(study, values, {})
        # the first trial's likelihood does not depend on v or the learning rates (both Q-values
        # start equal): a constant, whose elpd is itself; ArviZ takes the others
        ll = group["choice_rt"].values
        varying = ll.min(axis=(0, 1)) < ll.max(axis=(0, 1))
        reference = arviz_stats.loo(xr.DataTree.from_dict({"posterior": tree["posterior"].to_dataset(),
                                                           "log_likelihood": group.isel(obs=varying)}),
                                    pointwise=True)
        elpd_i = np.concatenate([reference.elpd_i.values, ll[0, 0, ~varying]])
        assert (~varying).sum() == 1
        assert table[f"elpd_loo_{model}"][0] == pytest.approx(elpd_i.sum(), rel=1e-9)
        assert table[f"elpd_loo_se_{model}"][0] == pytest.approx(np.sqrt(elpd_i.size * elpd_i.var()), rel=1e-6)

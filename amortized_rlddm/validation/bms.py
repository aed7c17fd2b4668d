"""Random-effects Bayesian model selection over a study, from each participant's log evidences.

The generative model (Stephan et al., 2009, NeuroImage 46:1004, "Bayesian model selection for
group studies"): the models' frequencies in the population are r ~ Dirichlet(alpha0); each
participant's model is m_n ~ Categorical(r); the participant's data, given its model, have the
evidence exp(L[n, m_n]). Variational Bayes with q(r, m) = Dirichlet(r; alpha) x prod_n
Categorical(m_n; g_n) gives the posterior over the frequencies, each participant's assignment
probabilities and the free energy F1, a lower bound on log p(L | random effects).

Exceedance probabilities xp_k = P(r_k > r_j for all j != k | data) answer "which model is the
most frequent?". They do not allow for the chance that the frequencies are all equal (that the
data cannot tell the models apart at the group level): the protected exceedance probabilities of
Rigoux et al. (2014, NeuroImage 84:971, "Bayesian model selection for group studies — revisited")
shrink them towards 1/K by the Bayesian omnibus risk, BOR = P(null | data) under equal prior odds
of the null model (all frequencies 1/K) and the random-effects model:

    BOR = 1 / (1 + exp(F1 - F0)),    pxp = (1 - BOR) xp + BOR / K,

with F0 = sum_n logsumexp_k(L[n, k] - log K), the null model's exact log evidence.

The free energy follows the VBA toolbox's / SPM12's ``spm_BMS_bor`` (Rigoux et al., eq. A.20);
the tests check it against the exact log evidence by enumerating every assignment of models to
participants.
"""

__all__ = ["random_effects_bms", "exceedance_probability", "plot_bms", "EXCEEDANCE_DRAWS"]

import warnings

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure
from scipy import stats
from scipy.special import betainc, digamma, expit, gammaln, logsumexp

EXCEEDANCE_DRAWS = 1_000_000  # Monte Carlo draws for the exceedance probabilities of K > 2 models
_CHUNK = 100_000  # draws per chunk: bounds the memory at _CHUNK x K doubles


def _as_matrix(log_evidence, models, participants):
    """The evidences as a (participants, models) float array, with the names of rows and columns."""
    row_names = col_names = None
    if isinstance(log_evidence, pd.DataFrame):
        row_names, col_names = list(log_evidence.index), list(log_evidence.columns)
        values = log_evidence.to_numpy()
    elif isinstance(log_evidence, xr.DataArray):
        array = log_evidence
        if {"participant", "model"} <= set(array.dims) and array.ndim == 2:
            array = array.transpose("participant", "model")
        if array.ndim == 2:
            row_names = list(array[array.dims[0]].values) if array.dims[0] in array.coords else None
            col_names = list(array[array.dims[1]].values) if array.dims[1] in array.coords else None
        values = array.values
    else:
        values = log_evidence
    try:
        values = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as error:
        raise TypeError(f"log_evidence must be numeric (participants x models); {error}") from None
    if values.ndim != 2:
        raise ValueError(f"log_evidence must be a 2-D array (participants x models); got {values.ndim}-D "
                         f"of shape {values.shape}" + (": one participant's evidences? pass them as one row, "
                                                       "log_evidence[None, :]" if values.ndim == 1 else ""))
    n, k = values.shape
    if k < 2:
        raise ValueError(f"model selection needs at least 2 models (columns); got {k}")
    if n < 1:
        raise ValueError("log_evidence has no participants (rows)")
    models = [str(m) for m in (models if models is not None else col_names if col_names is not None else range(k))]
    participants = [str(p) for p in (participants if participants is not None
                                     else row_names if row_names is not None else range(n))]
    if len(models) != k:
        raise ValueError(f"{len(models)} model names for {k} models (columns)")
    if len(set(models)) != k:
        raise ValueError(f"model names are not unique: {models}")
    if len(participants) != n:
        raise ValueError(f"{len(participants)} participant names for {n} participants (rows)")
    bad = np.argwhere(~np.isfinite(values))
    if len(bad):
        where = "; ".join(f"participant row {i} ({participants[i]!r}), model column {j} ({models[j]!r}): "
                          f"{values[i, j]}" for i, j in bad[:10])
        more = f"; and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise ValueError(f"non-finite log evidence at {where}{more}")
    return values, models, participants


def _as_prior(prior, k):
    if prior is None:
        return np.ones(k)
    prior = np.asarray(prior, dtype=float)
    if prior.ndim == 0:
        prior = np.full(k, float(prior))
    if prior.shape != (k,):
        raise ValueError(f"prior must hold one Dirichlet count per model ({k}); got shape {prior.shape}")
    if not np.all(np.isfinite(prior) & (prior > 0)):
        raise ValueError(f"prior Dirichlet counts must be finite and positive; got {prior}")
    return prior


def _assignments(log_evidence, alpha):
    """q(m_n = k) = softmax_k(L_nk + E[log r_k]) for all participants at once: (g, log g)."""
    u = log_evidence + (digamma(alpha) - digamma(alpha.sum()))
    log_g = u - logsumexp(u, axis=1, keepdims=True)
    return np.exp(log_g), log_g


def _variational_bayes(log_evidence, prior, tol, max_iter):
    """Stephan et al.'s fixed point alpha = alpha0 + sum_n g_n(alpha): (alpha, g, log g, iterations, converged)."""
    alpha = prior.copy()
    converged = False
    for iteration in range(1, max_iter + 1):
        g, _ = _assignments(log_evidence, alpha)
        new = prior + g.sum(axis=0)
        change = float(np.max(np.abs(new - alpha)))
        alpha = new
        if change < tol:
            converged = True
            break
    if not converged:
        warnings.warn(f"variational Bayes did not converge in {max_iter} iterations (last change in alpha "
                      f"{change:.3g} > tol {tol:g})", RuntimeWarning, stacklevel=3)
    g, log_g = _assignments(log_evidence, alpha)  # the assignments that belong to the final alpha
    return alpha, g, log_g, iteration, converged


def _free_energy(log_evidence, alpha, prior, g, log_g):
    """The variational free energy F1 <= log p(L | random effects) of q(r) = Dir(alpha), q(m_n) = Cat(g_n).

    F1 = E_q[log p(L, m, r)] + H[q(r)] + H[q(m)], with E_q[log r_k] = psi(alpha_k) - psi(sum alpha):

    - expected log joint: log Dir(r; alpha0) in expectation, log Gamma(sum alpha0) - sum log Gamma(alpha0_k)
      + sum_k (alpha0_k - 1) E[log r_k], plus sum_n sum_k g_nk (L_nk + E[log r_k]) for the assignments and data;
    - entropy of the Dirichlet q(r): sum_k log Gamma(alpha_k) - log Gamma(sum alpha) - sum_k (alpha_k - 1) E[log r_k];
    - entropy of the assignments: -sum_n sum_k g_nk log g_nk.

    The same terms as SPM12's spm_BMS_bor / the VBA toolbox's VBA_groupBMC (Rigoux et al. 2014, eq. A.20).
    """
    e_log_r = digamma(alpha) - digamma(alpha.sum())
    expected_log_joint = (gammaln(prior.sum()) - gammaln(prior).sum() + ((prior - 1) * e_log_r).sum()
                          + (g * (log_evidence + e_log_r)).sum())
    entropy_frequencies = gammaln(alpha).sum() - gammaln(alpha.sum()) - ((alpha - 1) * e_log_r).sum()
    entropy_assignments = -(g * log_g).sum()  # log g is finite (a log-softmax): g = 0 terms give 0
    return float(expected_log_joint + entropy_frequencies + entropy_assignments)


def _null_free_energy(log_evidence):
    """log p(L | all frequencies 1/K) = sum_n log sum_k exp(L_nk) / K: exact, no approximation."""
    return float(logsumexp(log_evidence - np.log(log_evidence.shape[1]), axis=1).sum())


def exceedance_probability(alpha, method="auto", draws=EXCEEDANCE_DRAWS, seed=0):
    """P(r_k > r_j for all j != k) under r ~ Dirichlet(alpha).

    Parameters
    ----------
    alpha
        The Dirichlet's parameters, one per model (K >= 2, all positive).
    method
        ``"exact"`` (K = 2 only: xp_1 = P(r_1 > 1/2) = 1 - I_{1/2}(alpha_1, alpha_2), the regularised
        incomplete Beta function, computed as I_{1/2}(alpha_2, alpha_1) to avoid cancellation),
        ``"monte_carlo"``, or ``"auto"``: exact for two models, Monte Carlo for more.
    draws
        Monte Carlo draws from the Dirichlet, made in chunks of 100,000.
    seed
        Seed of the Monte Carlo generator (``numpy.random.default_rng``): the same seed gives the same answer.

    Returns
    -------
    xp, se : numpy.ndarray
        The exceedance probabilities (summing to 1) and their Monte Carlo standard errors,
        sqrt(xp (1 - xp) / draws) -- at most 0.5 / sqrt(draws), 5e-4 for the default 10^6 draws;
        zeros for the exact method.

    Notes
    -----
    The Monte Carlo draws r as normalised Gamma(alpha_k) variates, in logs (log Gamma(a) =
    log Gamma(a + 1) + log(U) / a, U uniform), so that small alphas do not underflow to ties;
    the winner of each draw is its largest component.
    """
    alpha = np.asarray(alpha, dtype=float)
    if alpha.ndim != 1 or alpha.size < 2 or not np.all(np.isfinite(alpha) & (alpha > 0)):
        raise ValueError(f"alpha must be a vector of at least 2 finite positive values; got {alpha}")
    k = alpha.size
    if method == "auto":
        method = "exact" if k == 2 else "monte_carlo"
    if method == "exact":
        if k != 2:
            raise ValueError(f"the exact exceedance probability is for 2 models; got {k} (use method='monte_carlo')")
        first = float(betainc(alpha[1], alpha[0], 0.5))  # P(r_1 > 1/2), r_1 ~ Beta(alpha_1, alpha_2)
        return np.array([first, 1.0 - first]), np.zeros(2)
    if method != "monte_carlo":
        raise ValueError(f"method must be 'auto', 'exact' or 'monte_carlo'; got {method!r}")
    draws = int(draws)
    if draws < 1:
        raise ValueError(f"draws must be positive; got {draws}")
    rng = np.random.default_rng(seed)
    wins = np.zeros(k, dtype=np.int64)
    for start in range(0, draws, _CHUNK):
        size = (min(_CHUNK, draws - start), k)
        log_gamma = np.log(rng.standard_gamma(alpha + 1.0, size=size)) + np.log1p(-rng.uniform(size=size)) / alpha
        wins += np.bincount(log_gamma.argmax(axis=1), minlength=k)
    xp = wins / draws
    return xp, np.sqrt(xp * (1.0 - xp) / draws)


def random_effects_bms(log_evidence, prior=None, models=None, seed=0, *, participants=None,
                       draws=EXCEEDANCE_DRAWS, tol=1e-10, max_iter=10_000, interval_mass=0.95) -> xr.Dataset:
    """Random-effects Bayesian model selection (Stephan et al. 2009; Rigoux et al. 2014).

    Parameters
    ----------
    log_evidence
        Log model evidences, participants x models: a 2-D array, a pandas DataFrame (its index
        names the participants, its columns the models) or a 2-D xarray DataArray (dims
        ``participant`` and ``model``, or rows and columns in that order). All values finite.
    prior
        The Dirichlet prior's counts alpha0 over the models' frequencies (one per model, or a
        scalar for all); default all ones (uniform over the simplex).
    models
        Model names (default: the DataFrame's columns / DataArray's coordinate, else 0..K-1).
    seed
        Seed of the Monte Carlo exceedance probabilities (K > 2).
    participants
        Participant names (default: the index / coordinate, else 0..N-1).
    draws
        Monte Carlo draws for the exceedance probabilities of K > 2 models.
    tol, max_iter
        The variational iteration stops when no alpha changes by more than `tol`; it warns
        (RuntimeWarning) and stops after `max_iter` iterations.
    interval_mass
        Mass of the equal-tailed marginal intervals of the frequencies.

    Returns
    -------
    xarray.Dataset
        Per model: ``alpha`` (the Dirichlet posterior's counts), ``expected_frequency``
        (alpha / sum alpha), ``frequency_lower`` / ``frequency_upper`` (the marginal
        Beta(alpha_k, sum alpha - alpha_k) interval), ``exceedance_probability`` (with its
        Monte Carlo standard error ``exceedance_probability_se``, 0 when exact) and
        ``protected_exceedance_probability``; per participant and model:
        ``assignment_probability`` (q(m_n = k), rows sum to 1); scalars ``bor`` (the Bayesian
        omnibus risk), ``free_energy`` (F1, the variational lower bound on the random-effects
        log evidence) and ``null_free_energy`` (F0, the log evidence of equal frequencies).
        Attributes record the prior, iterations, convergence, and how the exceedance
        probabilities were computed.

    Raises
    ------
    ValueError
        For an array that is not 2-D, fewer than 2 models, non-finite evidences (naming the
        participant row and model column), or a bad prior or names.

    Notes
    -----
    The variational iteration, vectorised over participants: u_nk = L_nk + psi(alpha_k) -
    psi(sum alpha), g_n = softmax(u_n), alpha = alpha0 + sum_n g_n. For K = 2 the exceedance
    probabilities are exact (Beta CDF); for K > 2 they are Monte Carlo estimates with standard
    error at most 0.5 / sqrt(draws) (5e-4 for 10^6 draws); the protected ones inherit (1 - BOR)
    times that error.
    """
    values, models, participants = _as_matrix(log_evidence, models, participants)
    k = values.shape[1]
    alpha0 = _as_prior(prior, k)
    if int(max_iter) < 1 or not tol > 0:
        raise ValueError(f"max_iter must be at least 1 and tol positive; got {max_iter}, {tol}")
    if not 0 < interval_mass < 1:
        raise ValueError(f"interval_mass must lie in (0, 1); got {interval_mass}")
    alpha, g, log_g, iterations, converged = _variational_bayes(values, alpha0, tol, max_iter)
    free_energy = _free_energy(values, alpha, alpha0, g, log_g)
    null_free_energy = _null_free_energy(values)
    bor = float(expit(null_free_energy - free_energy))  # 1 / (1 + exp(F1 - F0)), without overflow
    method = "exact" if k == 2 else "monte_carlo"
    xp, xp_se = exceedance_probability(alpha, method=method, draws=draws, seed=seed)
    pxp = (1.0 - bor) * xp + bor / k
    total = alpha.sum()
    tail = (1.0 - interval_mass) / 2
    lower = stats.beta.ppf(tail, alpha, total - alpha)
    upper = stats.beta.ppf(1.0 - tail, alpha, total - alpha)
    return xr.Dataset(
        {"alpha": ("model", alpha),
         "expected_frequency": ("model", alpha / total),
         "frequency_lower": ("model", lower),
         "frequency_upper": ("model", upper),
         "exceedance_probability": ("model", xp),
         "exceedance_probability_se": ("model", xp_se),
         "protected_exceedance_probability": ("model", pxp),
         "assignment_probability": (("participant", "model"), g),
         "bor": bor, "free_energy": free_energy, "null_free_energy": null_free_energy},
        coords={"model": models, "participant": participants},
        attrs={"prior": alpha0.tolist(), "iterations": int(iterations), "converged": int(converged),
               "tolerance": float(tol), "exceedance_method": method,
               "exceedance_draws": int(draws) if method == "monte_carlo" else 0, "seed": int(seed),
               "interval_mass": float(interval_mass),
               "reference": "Stephan et al. 2009 NeuroImage 46:1004; Rigoux et al. 2014 NeuroImage 84:971"})


def plot_bms(result: xr.Dataset, path, title=None):
    """Two panels: the expected frequencies with their marginal Beta intervals (a dashed line at
    1/K, the null's frequencies), and the exceedance and protected exceedance probabilities.

    Parameters
    ----------
    result
        The Dataset of :func:`random_effects_bms`.
    path
        Where to save the figure (its suffix picks the format).
    title
        The figure's title (default: the number of participants and the BOR).
    """
    models = [str(m) for m in result["model"].values]
    k = len(models)
    x = np.arange(k)
    mean = result["expected_frequency"].values
    mass = result.attrs.get("interval_mass", 0.95)
    fig = Figure(figsize=(3.0 + 1.6 * k, 3.4))
    left, right = fig.subplots(1, 2)
    left.bar(x, mean, color="C0", alpha=0.8)
    left.errorbar(x, mean, yerr=[mean - result["frequency_lower"].values, result["frequency_upper"].values - mean],
                  fmt="none", ecolor="black", capsize=4, lw=1)
    left.axhline(1 / k, color="grey", ls="--", lw=0.8)
    left.set_xticks(x, models)
    left.set_ylim(0, 1)
    left.set_ylabel(f"model frequency\n(posterior mean, {100 * mass:.0f}% interval)")
    width = 0.38
    right.bar(x - width / 2, result["exceedance_probability"].values, width, color="C1", label="exceedance")
    right.bar(x + width / 2, result["protected_exceedance_probability"].values, width, color="C2",
              label="protected exceedance")
    right.axhline(1 / k, color="grey", ls="--", lw=0.8)
    right.set_xticks(x, models)
    right.set_ylim(0, 1)
    right.set_ylabel("probability")
    right.legend(fontsize=8, loc="upper right")
    n = result.sizes["participant"]
    fig.suptitle(title if title is not None else f"random-effects BMS: {n} participants, "
                                                 f"BOR = {float(result['bor']):.3g}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)

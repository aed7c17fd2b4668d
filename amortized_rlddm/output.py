"""What users keep of a posterior, amortized or exact: the per-participant summary table, the
group level's summary and the NetCDF file."""

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

HDI_PROB = 0.94


def hdi(draws: np.ndarray, prob: float = HDI_PROB) -> tuple[np.ndarray, np.ndarray]:
    """Shortest interval holding `prob` of the draws along the last axis.

    Parameters
    ----------
    draws
        Draws along the last axis, any leading shape.
    prob
        Probability mass of the interval.

    Returns
    -------
    lower, upper
        Arrays of the leading shape.
    """
    x = np.sort(draws, axis=-1)
    n = x.shape[-1]
    k = int(math.ceil(prob * n))
    widths = x[..., k - 1:] - x[..., : n - k + 1]
    start = np.argmin(widths, axis=-1)[..., None]
    return np.take_along_axis(x, start, -1)[..., 0], np.take_along_axis(x, start + k - 1, -1)[..., 0]


def participant_table(tree: xr.DataTree, prob: float = HDI_PROB) -> pd.DataFrame:
    """One row per participant: each parameter's posterior mean, sd and `prob` HDI (columns
    <name>_mean, <name>_sd, <name>_hdi<pct>_lower and _upper)."""
    post = tree["posterior"].to_dataset()
    table = pd.DataFrame({"participant": post["participant"].values})
    pct = int(round(100 * prob))
    for name in post.data_vars:
        values = post[name].transpose("participant", "chain", "draw").values.reshape(post.sizes["participant"], -1)
        lo, hi = hdi(values, prob)
        table[f"{name}_mean"], table[f"{name}_sd"] = values.mean(1), values.std(1, ddof=1)
        table[f"{name}_hdi{pct}_lower"], table[f"{name}_hdi{pct}_upper"] = lo, hi
    return table


def summarize(tree: xr.DataTree, prob: float = HDI_PROB) -> pd.DataFrame:
    """One row per participant and parameter: mean, sd and the `prob` HDI.

    Parameters
    ----------
    tree
        A posterior DataTree as :meth:`AmortizedPosterior.infer` returns it (``posterior``
        group with dimensions chain, draw, participant; optional ``data_checks`` group).
    prob
        Probability mass of the highest-density interval.

    Returns
    -------
    pandas.DataFrame
        Columns participant, parameter, mean, sd, ``hdi_<pct>_lower``, ``hdi_<pct>_upper``
        and, when the tree has them, the data checks (out_of_distribution, ood_reasons) and
        the check against the exact posterior (trusted, method, untrusted_reason, khat,
        importance_ess, khat_above_threshold, rounds, likelihood_evaluations, log_evidence,
        log_evidence_se, elpd_loo, elpd_loo_se, as present).
    """
    post = tree["posterior"].to_dataset()
    rows = []
    pct = int(round(100 * prob))
    for name in post.data_vars:
        values = post[name].transpose("participant", "chain", "draw").values
        values = values.reshape(values.shape[0], -1)
        lo, hi = hdi(values, prob)
        rows.append(pd.DataFrame({"participant": post["participant"].values, "parameter": name,
                                  "mean": values.mean(1), "sd": values.std(1, ddof=1),
                                  f"hdi_{pct}_lower": lo, f"hdi_{pct}_upper": hi}))
    table = pd.concat(rows, ignore_index=True)
    if "data_checks" in tree.children:
        checks = tree["data_checks"].to_dataset()
        flags = pd.DataFrame({"participant": checks["participant"].values,
                              "out_of_distribution": checks["out_of_distribution"].values,
                              "ood_reasons": checks["reasons"].values})
        table = table.merge(flags, on="participant", how="left")
    if "importance" in tree.children:
        checks = tree["importance"].to_dataset()
        columns = {"trusted": "trusted", "method": "method", "reason": "untrusted_reason", "khat": "khat",
                   "ess": "importance_ess", "above_threshold": "khat_above_threshold", "rounds": "rounds",
                   "evaluations": "likelihood_evaluations", "log_evidence": "log_evidence",
                   "log_evidence_se": "log_evidence_se", "elpd_loo": "elpd_loo", "elpd_loo_se": "elpd_loo_se"}
        table = table.merge(pd.DataFrame({"participant": checks["participant"].values,
                                          **{column: checks[name].values for name, column in columns.items()
                                             if name in checks}}),
                            on="participant", how="left")
    return table


def group_summary(tree: xr.DataTree) -> pd.DataFrame:
    """The group level of a group posterior (:func:`amortized_rlddm.group.fit.fit_group`): one
    row per variable, and per label of its group or parameter dimension (``name[label]``),
    with its posterior mean and sd."""
    post = tree["posterior"]
    rows = []
    for var in post.data_vars:
        if var.startswith(("mu_", "sigma_", "delta_mu_")) or var == "rho":
            extra = [d for d in post[var].dims if d not in ("chain", "draw")]
            for label in (post[var][extra[0]].values if extra else [None]):
                x = post[var].sel({extra[0]: label}) if extra else post[var]
                rows.append({"variable": var if label is None else f"{var}[{label}]",
                             "mean": float(x.mean()), "sd": float(x.std())})
    return pd.DataFrame(rows)


def group_convergence(tree: xr.DataTree) -> tuple[float, float]:
    """The largest r-hat and the smallest bulk ESS over the group level of a group posterior
    (its diagnostics group)."""
    diagnostics = tree["diagnostics"].to_dataset()
    rhat = max(float(diagnostics[v].max()) for v in diagnostics.data_vars if v.startswith("rhat"))
    ess = min(float(diagnostics[v].min()) for v in diagnostics.data_vars if v.startswith("ess"))
    return rhat, ess


def save_posterior(tree: xr.DataTree, path: str | Path) -> None:
    """Write the DataTree as NetCDF (readable by ``xarray.open_datatree`` and ArviZ >= 1).

    Parameters
    ----------
    tree
        The posterior DataTree.
    path
        The NetCDF file to write.
    """
    tree.to_netcdf(path, engine="h5netcdf")


STORE_DECIMALS = 10  # floating-point data enter a store's hash rounded to this many decimals


def stored_fit_path(store: str | Path, arrays: dict, settings: dict) -> Path:
    """Where a store of fits keeps one: a NetCDF file named by the hash of `arrays` (name ->
    array, hashed in the order given, with their dtypes; floating-point values rounded to
    STORE_DECIMALS decimals, so that data simulated on another machine, equal but for the
    last bits of its floating-point arithmetic, find the same fit) and of the JSON of `settings`."""
    digest = hashlib.sha256()
    for name, value in arrays.items():
        value = np.ascontiguousarray(value)
        if np.issubdtype(value.dtype, np.floating):
            value = np.round(value, STORE_DECIMALS)
        digest.update(name.encode() + str(value.dtype).encode() + value.tobytes())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return Path(store) / f"{digest.hexdigest()[:32]}.nc"


class FitStore:
    """A folder of cached fits (NUTS fits, PyMC reference fits), each a NetCDF file named by
    the hash of its data and of everything else that decides it (:func:`stored_fit_path`): a fit
    found there is read instead of made again, so an interrupted run continues.

    Parameters
    ----------
    folder
        The store's folder (created at the first write).
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def path(self, arrays: dict, settings: dict) -> Path:
        """The file of the fit of `arrays` under `settings` (see :func:`stored_fit_path`)."""
        return stored_fit_path(self.folder, arrays, settings)

    @staticmethod
    def read(path: Path) -> xr.DataTree | None:
        """The fit kept at `path`, read into memory; None when there is none."""
        return xr.load_datatree(path) if Path(path).is_file() else None

    @staticmethod
    def write(fit: xr.DataTree | xr.Dataset, path: Path) -> None:
        """Keep `fit` at `path`, through a partial file: a run killed while writing leaves no
        half file under the final name."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        fit.to_netcdf(partial, engine="h5netcdf")
        partial.replace(path)

"""Everything between a Study and BayesFlow: the trial packing (the configurator), the
unbounded parameter space and the summary / inference networks.

Per trial the summary network sees only what a real data file holds: the choice, the RT,
the reward seen and a missing-response flag (optional extra features exist for the input
ablation). Padding beyond a participant's trial count is excluded by a key-padding mask,
so a posterior does not depend on how much padding surrounds it. The trial count enters
as a direct condition of the inference network.
"""

import bayesflow as bf
import keras
import numpy as np

from .study import Study

# Per-trial inputs the packing can produce; "outcomes" (both arms' potential outcomes) and
# "phase" (trial position in its block and reversal phase) exist for the input ablation.
FEATURE_WIDTHS = {"choice": 1, "rt": 1, "reward": 1, "missing": 1, "outcomes": 2, "phase": 2}
DEFAULT_FEATURES = ("choice", "rt", "reward", "missing")
TRIAL_COUNT_SCALE = 100.0


def backend():
    return keras.backend.backend()


def trial_features(study: Study, features, design=None, max_trials=None):
    """Pack a study for the summary network.

    Returns (summary_variables (B, T, F) float32, summary_mask (B, T) float32) with T =
    max_trials (default: the study's). Coding: choice +1 arm 1 / -1 arm 0, reward +1 / -1,
    rt in seconds; all three are 0 on a missing response, which sets the missing flag.
    """
    unknown = [f for f in features if f not in FEATURE_WIDTHS]
    if unknown:
        raise ValueError(f"unknown trial feature(s) {unknown}; expected some of {list(FEATURE_WIDTHS)}")
    t = study.max_trials if max_trials is None else max_trials
    if t < study.max_trials:
        raise ValueError(f"the study has up to {study.max_trials} trials, more than the {t} packed")
    valid = study.valid
    responded = valid & (study.choice >= 0)
    columns = []
    for name in features:
        if name == "choice":
            columns.append(np.where(responded, 2.0 * study.choice - 1.0, 0.0)[..., None])
        elif name == "rt":
            columns.append(np.where(responded, study.rt, 0.0)[..., None])
        elif name == "reward":
            columns.append(np.where(responded, 2.0 * study.reward - 1.0, 0.0)[..., None])
        elif name == "missing":
            columns.append((valid & ~responded).astype(float)[..., None])
        elif name == "outcomes":
            if study.outcomes is None:
                raise ValueError("feature 'outcomes' needs both arms' potential outcomes, which only "
                                 "simulated data has; real data never shows the unchosen arm's outcome")
            columns.append(np.where(valid[..., None], 2.0 * study.outcomes - 1.0, 0.0))
        elif name == "phase":
            if design is None:
                raise ValueError("feature 'phase' needs the task design")
            _, position = design.block_layout(study.n_trials, study.max_trials)
            every = design.reversal_every or 10**9
            phase = np.where((position // every) % 2 == 0, 1.0, -1.0)
            columns.append(np.stack([np.where(valid, position / TRIAL_COUNT_SCALE, 0.0),
                                     np.where(valid, phase, 0.0)], axis=-1))
    x = np.concatenate(columns, axis=-1)
    pad = t - study.max_trials
    x = np.pad(x, ((0, 0), (0, pad), (0, 0)))
    mask = np.pad(valid, ((0, 0), (0, pad))).astype(np.float32)
    return x.astype(np.float32), mask


def trial_count_condition(n_trials):
    """The direct condition of the inference network: trial count / 100, shape (B, 1)."""
    return (np.asarray(n_trials, np.float32) / TRIAL_COUNT_SCALE)[:, None]


class ParameterSpace:
    """Bijection between parameters and the unbounded space the flow models.

    Each parameter's map follows its prior's support: logit of the rescaled value for a
    bounded interval, log of the distance to a lower bound, identity when unbounded. The
    inverse runs in float64, so every posterior draw lies inside the support.
    """

    def __init__(self, priors):
        self.names = priors.names
        self.bounds = [priors.support(n) for n in self.names]

    def forward(self, params):
        columns = []
        for name, (lo, hi) in zip(self.names, self.bounds):
            x = np.asarray(params[name], np.float64)
            if np.isfinite(lo) and np.isfinite(hi):
                u = (x - lo) / (hi - lo)
                columns.append(np.log(u) - np.log1p(-u))
            elif np.isfinite(lo):
                columns.append(np.log(x - lo))
            elif np.isfinite(hi):
                columns.append(np.log(hi - x))
            else:
                columns.append(x)
        return np.stack(columns, axis=-1).astype(np.float32)

    def inverse(self, y):
        y = np.asarray(y, np.float64)
        out = {}
        for k, (name, (lo, hi)) in enumerate(zip(self.names, self.bounds)):
            u = y[..., k]
            if np.isfinite(lo) and np.isfinite(hi):
                out[name] = lo + (hi - lo) / (1.0 + np.exp(-u))
            elif np.isfinite(lo):
                out[name] = lo + np.exp(u)
            elif np.isfinite(hi):
                out[name] = hi - np.exp(u)
            else:
                out[name] = u
        return out


def pack(study, features, design, max_trials, params=None, space=None):
    """The dict the estimator consumes: summary variables and mask, the trial-count
    condition and, when parameters are given, the unbounded inference variables."""
    x, mask = trial_features(study, features, design, max_trials)
    data = {"summary_variables": x, "summary_mask": mask,
            "inference_conditions": trial_count_condition(study.n_trials)}
    if params is not None:
        data["inference_variables"] = space.forward(params)
    return data


def build_estimator(network_spec):
    """A BasicEstimator with a TimeSeriesTransformer summary and a CouplingFlow posterior."""
    summary_kwargs = dict(network_spec.get("summary", {}))
    for key in ("embed_dims", "num_heads"):
        if key in summary_kwargs:
            summary_kwargs[key] = tuple(summary_kwargs[key])
    inference_kwargs = dict(network_spec.get("inference", {}))
    adapter = bf.Adapter().convert_dtype("float64", "float32")
    return bf.BasicEstimator(
        inference_network=bf.networks.CouplingFlow(**inference_kwargs),
        summary_network=bf.networks.TimeSeriesTransformer(**summary_kwargs),
        adapter=adapter,
        standardize="inference_variables",
    )

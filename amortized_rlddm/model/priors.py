"""Prior distributions of the RL-DDM parameters (docs/model.md).

Each prior knows how to sample, evaluate its log density and report its support; the PyMC
model and the network's parameter transforms reuse the same objects, so a prior changed in
a training config changes everything downstream consistently.
"""

from dataclasses import dataclass

import numpy as np
from scipy import special, stats

SINGLE_RATE = ("v", "a", "z", "t0", "alpha")
DUAL_RATE = ("v", "a", "z", "t0", "alpha_pos", "alpha_neg")
SOFTMAX = ("alpha", "beta")  # choice only: P(choice = 1) = logistic(beta (Q1 - Q0))
SOFTMAX_DUAL = ("alpha_pos", "alpha_neg", "beta")


def choice_only(names) -> bool:
    """Whether parameters `names` are a choice-only (softmax) model's: an inverse temperature
    beta in place of the diffusion's v, a, z and t0."""
    return "beta" in names


def _normal_log_density(x, mu, sigma):
    return -0.5 * ((x - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2.0 * np.pi)


def _log_normal_mass(a, b):
    """log(Phi(b) - Phi(a)) for standardised bounds a < b, accurate in either tail."""
    if a > 0:  # both in the right tail: by symmetry
        a, b = -b, -a
    return special.log_ndtr(b) + np.log1p(-np.exp(special.log_ndtr(a) - special.log_ndtr(b)))


class _Prior:
    """Shared behaviour; subclasses define `support` and the scipy distribution `_dist`."""

    def sample(self, rng, size):
        """Draw `size` values with the numpy Generator `rng`."""
        return self._dist().rvs(size=size, random_state=rng)

    def logpdf(self, x):
        """Log density at x (-inf outside the support), in closed form: the samplers call it
        once per step, where building a scipy distribution would cost more than the
        likelihood."""
        x = np.asarray(x, float)
        lo, hi = self.support
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where((x >= lo) & (x <= hi), self._log_density(x), -np.inf)[()]

    def cdf(self, x):
        """Prior probability of values <= x."""
        return self._dist().cdf(x)


@dataclass(frozen=True)
class Normal(_Prior):
    mu: float
    sigma: float

    @property
    def support(self):
        return (-np.inf, np.inf)

    def _dist(self):
        return stats.norm(self.mu, self.sigma)

    def _log_density(self, x):
        return _normal_log_density(x, self.mu, self.sigma)


@dataclass(frozen=True)
class TruncatedNormal(_Prior):
    mu: float
    sigma: float
    lower: float
    upper: float

    @property
    def support(self):
        return (self.lower, self.upper)

    def _dist(self):
        return stats.truncnorm((self.lower - self.mu) / self.sigma,
                               (self.upper - self.mu) / self.sigma, self.mu, self.sigma)

    def _log_density(self, x):
        return _normal_log_density(x, self.mu, self.sigma) - _log_normal_mass(
            (self.lower - self.mu) / self.sigma, (self.upper - self.mu) / self.sigma)


@dataclass(frozen=True)
class Beta(_Prior):
    a: float
    b: float

    @property
    def support(self):
        return (0.0, 1.0)

    def _dist(self):
        return stats.beta(self.a, self.b)

    def _log_density(self, x):
        return special.xlogy(self.a - 1.0, x) + special.xlog1py(self.b - 1.0, -x) - special.betaln(self.a, self.b)


@dataclass(frozen=True)
class Uniform(_Prior):
    lower: float
    upper: float

    @property
    def support(self):
        return (self.lower, self.upper)

    def _dist(self):
        return stats.uniform(self.lower, self.upper - self.lower)

    def _log_density(self, x):
        return np.full_like(x, -np.log(self.upper - self.lower))


_KINDS = {"normal": Normal, "truncnormal": TruncatedNormal, "beta": Beta, "uniform": Uniform}


def prior_from_dict(name, spec):
    """Build a prior from a config mapping such as ``{dist: beta, a: 2, b: 2}``."""
    if not isinstance(spec, dict) or "dist" not in spec:
        raise ValueError(f"prior for '{name}' must be a mapping with a 'dist' key, got {spec!r}")
    kind = spec["dist"]
    if kind not in _KINDS:
        raise ValueError(f"prior for '{name}': unknown dist '{kind}', expected one of {sorted(_KINDS)}")
    args = {k: float(v) for k, v in spec.items() if k != "dist"}
    try:
        prior = _KINDS[kind](**args)
    except TypeError as err:
        raise ValueError(f"prior for '{name}' ({kind}): {err}") from None
    lo, hi = prior.support
    if not lo < hi:
        raise ValueError(f"prior for '{name}': empty support [{lo}, {hi}]")
    return prior


def prior_to_dict(prior):
    """Inverse of :func:`prior_from_dict`."""
    kind = next(k for k, cls in _KINDS.items() if isinstance(prior, cls))
    return {"dist": kind, **{k: float(v) for k, v in prior.__dict__.items()}}


# The priors of a config that names none: wide enough for human data (docs/model.md, "Priors
# for real data": HDDM's published per-subject estimates on its RL-DDM data have v up to 12,
# a 1.2-2.5, t0 0.2-1.1 s and learning rates from about 0.005 to 0.7). The seed design's
# config (training_configs/default.yaml) states its own, narrower priors.
DEFAULT_PRIORS = {
    "v": Normal(2.0, 5.0),
    "a": TruncatedNormal(1.5, 1.0, 0.3, 5.0),
    "z": Beta(2.0, 2.0),
    "t0": TruncatedNormal(0.4, 0.3, 0.0, 2.0),
    "alpha": Beta(1.0, 3.0),
    "alpha_pos": Beta(1.0, 3.0),
    "alpha_neg": Beta(1.0, 3.0),
}

# The choice-only models' priors where a config names none: the PyMC example gallery's
# ("Fitting a reinforcement learning model to behavioral data with PyMC": alpha ~ Beta(1, 1),
# beta ~ HalfNormal(10)), each of the dual rates Beta(1, 1).
CHOICE_PRIORS = {
    "alpha": Beta(1.0, 1.0),
    "alpha_pos": Beta(1.0, 1.0),
    "alpha_neg": Beta(1.0, 1.0),
    "beta": TruncatedNormal(0.0, 10.0, 0.0, np.inf),
}

# Support limits the model itself imposes, whatever the prior says.
_MODEL_SUPPORT = {"a": (0.0, np.inf), "z": (0.0, 1.0), "t0": (0.0, np.inf), "beta": (0.0, np.inf),
                  "alpha": (0.0, 1.0), "alpha_pos": (0.0, 1.0), "alpha_neg": (0.0, 1.0)}


class PriorSet:
    """The priors of one model: an ordered mapping parameter name -> prior."""

    def __init__(self, priors, names):
        missing = [n for n in names if n not in priors]
        if missing:
            raise ValueError(f"no prior given for parameter(s) {missing}")
        self.names = tuple(names)
        self.priors = {n: priors[n] for n in names}
        for n, prior in self.priors.items():
            lo, hi = prior.support
            mlo, mhi = _MODEL_SUPPORT.get(n, (-np.inf, np.inf))
            if lo < mlo or hi > mhi:
                raise ValueError(f"prior for '{n}' has support [{lo}, {hi}] but the model needs "
                                 f"values in [{mlo}, {mhi}]")

    def sample(self, rng, size):
        """Dict of parameter arrays of length `size`."""
        return {n: np.asarray(p.sample(rng, size), float) for n, p in self.priors.items()}

    def logpdf(self, params):
        """Joint log prior density of a dict of equally shaped arrays."""
        return sum(p.logpdf(np.asarray(params[n], float)) for n, p in self.priors.items())

    def support(self, name):
        return self.priors[name].support

    def to_dict(self):
        return {n: prior_to_dict(p) for n, p in self.priors.items()}

    @classmethod
    def from_dict(cls, spec, names):
        """The defaults of docs/model.md (the RL-DDM's, or the choice-only models'), overridden
        by the entries of `spec`."""
        spec = spec or {}
        unknown = sorted(set(spec) - set(names))
        if unknown:
            raise ValueError(f"priors given for unknown parameter(s) {unknown}; "
                             f"this model has {list(names)}")
        defaults = CHOICE_PRIORS if choice_only(names) else DEFAULT_PRIORS
        priors = {n: prior_from_dict(n, spec[n]) if n in spec else defaults[n] for n in names}
        return cls(priors, names)


def _expand(bound, ndim):
    """A bound over participants broadcast against values (participants, ...)."""
    bound = np.asarray(bound, np.float64)
    return bound.reshape(bound.shape + (1,) * (ndim - bound.ndim)) if bound.ndim else bound


def _by_support(lo, hi, both, lower, upper, neither):
    """The branch of each support kind, evaluated as the bounds say: directly when both bounds
    are numbers, else (NumPy only) every branch everywhere, each used where it applies."""
    if np.ndim(lo) == 0 and np.ndim(hi) == 0:
        finite_lo, finite_hi = bool(np.isfinite(lo)), bool(np.isfinite(hi))
        branch = both if finite_lo and finite_hi else lower if finite_lo else upper if finite_hi else neither
        return branch()
    return np.select([np.isfinite(lo) & np.isfinite(hi), np.isfinite(lo), np.isfinite(hi)],
                     [both(), lower(), upper()], default=neither())


def to_unbounded(x, lo, hi, xp=np):
    """A value on the support [lo, hi] mapped to the real line: the logit of the rescaled value,
    the log of the distance to the one finite bound, or the value itself. `xp`: the array
    module, NumPy or ``pytensor.tensor`` (the PyMC models use the same maps)."""
    return _by_support(lo, hi, lambda: xp.log(x - lo) - xp.log(hi - x), lambda: xp.log(x - lo),
                       lambda: xp.log(hi - x), lambda: x)


def to_natural(y, lo, hi, xp=np):
    """The inverse of :func:`to_unbounded`."""
    return _by_support(lo, hi, lambda: lo + (hi - lo) / (1.0 + xp.exp(-y)), lambda: lo + xp.exp(y),
                       lambda: hi - xp.exp(y), lambda: y)


def log_jacobian(x, lo, hi, xp=np):
    """log |d to_unbounded(x) / dx|."""
    return _by_support(lo, hi, lambda: xp.log(hi - lo) - xp.log(x - lo) - xp.log(hi - x),
                       lambda: -xp.log(x - lo), lambda: -xp.log(hi - x), lambda: xp.zeros_like(x))


class ParameterSpace:
    """Bijection between parameters and the unbounded space the flow models.

    Each parameter's map follows its support: logit of the rescaled value for a bounded
    interval, log of the distance to a lower bound, identity when unbounded. A support may
    differ per participant (arrays of shape (participants,)): `given_data` puts t0's upper
    bound at each participant's fastest response, which the model's t0 can never reach. The
    maps run in float64, so every posterior draw lies inside the support. The network and
    the maximum-likelihood fit share it.
    """

    def __init__(self, priors, supports=None):
        """supports: optional name -> (lo, hi) replacing a prior's support; lo and hi are
        numbers or arrays over participants."""
        self.names = priors.names
        self.bounds = [(supports or {}).get(n, priors.support(n)) for n in self.names]

    @classmethod
    def given_data(cls, priors, study, contaminated=None):
        """The space whose t0 lies below each participant's fastest response that enters the
        likelihood (and inside the prior's support). The posterior has all its mass there,
        piled against that edge; mapping the edge to infinity spares the flow modelling a
        cliff, and no draw can exceed a response time. A participant without responses keeps
        the prior's bound, and so do the participants `contaminated` marks (a (participants,)
        bool array): with contaminant responses, t0 is not bounded by the data. A model
        without t0 (the choice-only models) keeps every prior's support."""
        if "t0" not in priors.names:
            return cls(priors)
        lo, hi = priors.support("t0")
        responded = study.valid & (study.choice >= 0) & ~study.excluded
        fastest = np.where(responded, study.rt, np.inf).min(axis=1)
        if contaminated is not None:
            fastest = np.where(contaminated, np.inf, fastest)
        return cls(priors, supports={"t0": (np.full(fastest.shape, lo, np.float64), np.minimum(fastest, hi))})

    def forward(self, params):
        columns = []
        for name, (lo, hi) in zip(self.names, self.bounds):
            x = np.asarray(params[name], np.float64)
            with np.errstate(all="ignore"):
                columns.append(to_unbounded(x, _expand(lo, x.ndim), _expand(hi, x.ndim)))
        return np.stack(columns, axis=-1)

    def log_abs_det_jacobian(self, params):
        """log |d forward / d params| summed over the parameters, the shape of the values: the
        term that turns a density over the unbounded space into one over the parameters."""
        total = 0.0
        for name, (lo, hi) in zip(self.names, self.bounds):
            x = np.asarray(params[name], np.float64)
            with np.errstate(all="ignore"):
                total = total + log_jacobian(x, _expand(lo, x.ndim), _expand(hi, x.ndim))
        return total

    def inverse(self, y):
        y = np.asarray(y, np.float64)
        out = {}
        for k, (name, (lo, hi)) in enumerate(zip(self.names, self.bounds)):
            u = y[..., k]
            lo, hi = _expand(lo, u.ndim), _expand(hi, u.ndim)
            with np.errstate(all="ignore"):
                x = to_natural(u, lo, hi)
            # beyond |y| of about 36 (logistic) or 745 (exponential) the value would round onto
            # a bound, outside the open support: the nearest representable value inside it
            out[name] = np.clip(x, np.nextafter(lo, np.inf), np.nextafter(hi, -np.inf))
        return out

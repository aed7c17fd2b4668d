"""A family of task designs: the training distribution of a network that serves many
experiments (docs/training.md, "The general networks").

The reward schedule never enters the likelihood: given a participant's own choices and
rewards, p(choice, rt | history, parameters) is the same whatever probabilities or reversals
produced the rewards. So one network trained over many schedules learns the one posterior
function over a wider range of data. What does enter the likelihood, the pairs, the block
resets, q_init, the deadline, the kind of missing response, exclusions and contaminants,
the network reads as inputs; the family draws all of them per participant.
"""

from dataclasses import asdict, dataclass

import numba as nb
import numpy as np

from .task import DesignSettings, TaskDesign, known_keys

MISSING_MECHANISMS = ("none", "ignorable", "deadline")
REVERSALS = ("none", "fixed", "random")
MAX_PAIRS = 8  # the layout kernel's fixed per-participant pair capacity


def _range(name, value, kind=float, lower=None, upper=None):
    """A [min, max] range from the YAML, checked."""
    if not (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) for x in value)):
        raise ValueError(f"family.{name}: expected [min, max], got {value!r}")
    lo, hi = kind(value[0]), kind(value[1])
    if kind is int and (lo != value[0] or hi != value[1]):
        raise ValueError(f"family.{name}: expected whole numbers, got {value!r}")
    if not lo <= hi or (lower is not None and lo < lower) or (upper is not None and hi > upper):
        raise ValueError(f"family.{name}: expected min <= max within [{lower}, {upper}], got {value!r}")
    return lo, hi


def _share(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"family.{name}: expected a share in [0, 1], got {value!r}")
    return float(value)


def _choices(name, value, allowed):
    if not isinstance(value, (list, tuple)) or not value or len(set(value)) != len(value) \
            or not set(value) <= set(allowed):
        raise ValueError(f"family.{name}: expected a list of some of {list(allowed)}, got {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class DesignFamily:
    """Designs drawn per participant. Every range is [min, max], drawn uniformly.

    n_trials: trials per participant.
    n_pairs: stimulus pairs per participant.
    presentations: drawn with equal probability: "interleaved" (every block presents every
        pair in random order) or "blocked" (block b presents pair b mod n_pairs; the pairs
        are then at most the blocks).
    better_arm: reward probability of a pair's better arm (the other's is 1 minus it; which
        arm is better is random) ...
    independent_arms: ... except this share of pairs, whose two arms' probabilities are
        drawn independently, uniform on [0, 1].
    reversals: per participant, one of these, with equal probability: "none", "fixed" (the
        arms swap every reversal_every trials of a pair) or "random" (they swap after each
        trial of a pair with probability 1 / reversal_every).
    reversal_every: the period (or mean interval) of reversals, in trials of the pair.
    n_blocks: blocks per participant (each resets every pair's Q-values), at most
        n_trials / min_block_trials.
    min_block_trials: the fewest trials a block has; interleaved pairs have at least
        min_pair_trials trials each per block.
    missing: per participant, one of these, with equal probability: "none", "ignorable"
        (omissions at a rate drawn from omission_rate) or "deadline" (a deadline drawn from
        `deadline`; with probability deadline_omissions also omissions, which the data mark
        as excluded trials).
    q_init: the initial Q-values, one of these with equal probability.
    lapses: the share of participants with contaminant responses, at a rate drawn from
        p_outlier, their RTs uniform on [0, rt_max] with rt_max drawn from `rt_max`.
    exclude_first: the share of participants whose first trial of each pair is excluded
        from the likelihood (HDDM's convention).
    excluded_rate, excluded_share: this share of participants has further responses
        excluded at random, at a rate drawn from excluded_rate (e.g. fast-guess cut-offs).
    """

    n_trials: tuple[int, int] = (20, 400)
    n_pairs: tuple[int, int] = (1, 4)
    presentations: tuple[str, ...] = ("interleaved", "blocked")
    better_arm: tuple[float, float] = (0.55, 0.95)
    independent_arms: float = 0.25
    reversals: tuple[str, ...] = REVERSALS
    reversal_every: tuple[int, int] = (8, 40)
    n_blocks: tuple[int, int] = (1, 6)
    min_block_trials: int = 10
    min_pair_trials: int = 5
    missing: tuple[str, ...] = MISSING_MECHANISMS
    omission_rate: tuple[float, float] = (0.0, 0.1)
    deadline: tuple[float, float] = (0.75, 3.0)
    deadline_omissions: float = 0.5
    q_init: tuple[float, ...] = (0.0, 0.5)
    lapses: float = 0.5
    p_outlier: tuple[float, float] = (0.0, 0.1)
    rt_max: tuple[float, float] = (3.0, 15.0)
    exclude_first: float = 0.25
    excluded_share: float = 0.25
    excluded_rate: tuple[float, float] = (0.0, 0.05)

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)

        put("n_trials", _range("n_trials", self.n_trials, int, 1))
        put("n_pairs", _range("n_pairs", self.n_pairs, int, 1, MAX_PAIRS))
        put("presentations", _choices("presentations", self.presentations, ("interleaved", "blocked")))
        put("better_arm", _range("better_arm", self.better_arm, float, 0.5, 1.0))
        put("reversals", _choices("reversals", self.reversals, REVERSALS))
        put("reversal_every", _range("reversal_every", self.reversal_every, int, 1))
        put("n_blocks", _range("n_blocks", self.n_blocks, int, 1))
        put("missing", _choices("missing", self.missing, MISSING_MECHANISMS))
        put("omission_rate", _range("omission_rate", self.omission_rate, float, 0.0, 0.5))
        put("deadline", _range("deadline", self.deadline, float, 1e-3))
        put("p_outlier", _range("p_outlier", self.p_outlier, float, 0.0, 0.5))
        put("rt_max", _range("rt_max", self.rt_max, float, 1e-3))
        put("excluded_rate", _range("excluded_rate", self.excluded_rate, float, 0.0, 0.5))
        for name in ("independent_arms", "deadline_omissions", "lapses", "exclude_first", "excluded_share"):
            put(name, _share(name, getattr(self, name)))
        q = self.q_init
        if not isinstance(q, (list, tuple)) or not q or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and 0.0 <= x <= 1.0 for x in q):
            raise ValueError(f"family.q_init: expected a list of values in [0, 1], got {q!r}")
        put("q_init", tuple(float(x) for x in q))
        for name in ("min_block_trials", "min_pair_trials"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"family.{name}: expected a positive int, got {value!r}")
        if self.n_trials[0] < self.min_block_trials:
            raise ValueError(f"family.n_trials: the fewest trials ({self.n_trials[0]}) must fill a block "
                             f"(min_block_trials = {self.min_block_trials})")

    @property
    def min_trials(self):
        return self.n_trials[0]

    @property
    def max_trials(self):
        return self.n_trials[1]

    def sample_trial_counts(self, rng, size):
        """Trial count of each of `size` participants."""
        return rng.integers(self.min_trials, self.max_trials + 1, size=size)

    def sample(self, rng, size, n_trials=None) -> "FamilyDraw":
        """One design per participant: trial structures and settings, as a :class:`FamilyDraw`."""
        n_trials = self.sample_trial_counts(rng, size) if n_trials is None else \
            np.broadcast_to(np.asarray(n_trials, np.int64), (size,)).copy()
        if ((n_trials < self.min_trials) | (n_trials > self.max_trials)).any():
            raise ValueError(f"trial counts outside the family's {self.min_trials}-{self.max_trials}")
        max_trials = int(n_trials.max())
        most_blocks = np.clip(n_trials // self.min_block_trials, 1, self.n_blocks[1])
        fewest_blocks = np.minimum(self.n_blocks[0], most_blocks)
        n_blocks = rng.integers(fewest_blocks, most_blocks + 1)
        blocked = rng.choice(np.array([p == "blocked" for p in self.presentations]), size=size)
        block_length = n_trials // n_blocks
        most_pairs = np.where(blocked, n_blocks, np.maximum(block_length // self.min_pair_trials, 1))
        most_pairs = np.clip(most_pairs, 1, self.n_pairs[1])
        n_pairs = rng.integers(np.minimum(self.n_pairs[0], most_pairs), most_pairs + 1)
        better = rng.uniform(*self.better_arm, size=(size, MAX_PAIRS))
        probs = np.stack([better, 1.0 - better], axis=-1)
        swap = rng.random((size, MAX_PAIRS)) < 0.5
        probs = np.where(swap[..., None], probs[..., ::-1], probs)
        independent = rng.random((size, MAX_PAIRS)) < self.independent_arms
        probs = np.where(independent[..., None], rng.random((size, MAX_PAIRS, 2)), probs)
        reversal = rng.choice(np.array([REVERSALS.index(r) for r in self.reversals]), size=size)
        every = rng.integers(self.reversal_every[0], self.reversal_every[1] + 1, size=size)
        block = np.zeros((size, max_trials), np.int32)
        condition = np.zeros((size, max_trials), np.int32)
        arm_probs = np.zeros((size, max_trials, 2))
        _layout_kernel(n_trials, n_blocks, n_pairs, blocked, reversal, every, probs, rng.random((size, max_trials)),
                       rng.random((size, max_trials)), block, condition, arm_probs)
        mechanism = rng.choice(np.array([MISSING_MECHANISMS.index(m) for m in self.missing]), size=size)
        deadline = np.where(mechanism == 2, rng.uniform(*self.deadline, size=size), np.inf)
        rate = rng.uniform(*self.omission_rate, size=size)
        with_omissions = (mechanism == 1) | ((mechanism == 2) & (rng.random(size) < self.deadline_omissions))
        lapsing = rng.random(size) < self.lapses
        settings = DesignSettings(
            q_init=rng.choice(np.asarray(self.q_init), size=size), deadline=deadline, ignorable=mechanism == 1,
            p_outlier=np.where(lapsing, rng.uniform(*self.p_outlier, size=size), 0.0),
            rt_max=np.where(lapsing, rng.uniform(*self.rt_max, size=size), TaskDesign.rt_max))
        excluding = rng.random(size) < self.excluded_share
        return FamilyDraw(n_trials=n_trials, block=block, condition=condition, arm_probs=arm_probs,
                          n_pairs=n_pairs, settings=settings, omission_rate=np.where(with_omissions, rate, 0.0),
                          exclude_first=rng.random(size) < self.exclude_first,
                          excluded_rate=np.where(excluding, rng.uniform(*self.excluded_rate, size=size), 0.0))

    def to_dict(self):
        """The family as a YAML-ready mapping (lists for ranges and choices)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, spec):
        spec = known_keys(cls, spec, "family")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()})


@dataclass(frozen=True)
class FamilyDraw:
    """Per participant, one design of a family: trial structures ((participants,
    max_trials) block and pair indices, (..., 2) arm probabilities), the settings that
    enter the likelihood, the omission rate and the exclusions."""

    n_trials: np.ndarray
    block: np.ndarray
    condition: np.ndarray
    arm_probs: np.ndarray
    n_pairs: np.ndarray
    settings: DesignSettings
    omission_rate: np.ndarray
    exclude_first: np.ndarray
    excluded_rate: np.ndarray


@nb.njit(cache=True)
def _layout_kernel(n_trials, n_blocks, n_pairs, blocked, reversal, every, probs, order_keys, reversal_draws,
                   block, condition, arm_probs):
    """Each participant's blocks (contiguous, the first n % blocks one trial longer), pair per
    trial (blocked: b mod pairs; interleaved: each block holds every pair's trials as evenly
    as possible, shuffled by `order_keys`) and arm probabilities (reversal 0 none, 1 every
    `every` trials of the pair, 2 after each trial of the pair with probability 1 / every);
    a block restarts every pair's schedule. Padding continues the last block, pair 0."""
    max_pairs = probs.shape[1]
    for i in range(n_trials.shape[0]):
        n, m, k = n_trials[i], n_blocks[i], n_pairs[i]
        base, extra = n // m, n % m
        start = 0
        for b in range(m):
            length = base + (1 if b < extra else 0)
            pairs = np.empty(length, np.int64)
            for j in range(length):
                pairs[j] = b % k if blocked[i] else j % k
            if not blocked[i]:
                for j in range(length - 1, 0, -1):  # Fisher-Yates
                    s = int(order_keys[i, start + j] * (j + 1))
                    pairs[j], pairs[s] = pairs[s], pairs[j]
            seen = np.zeros(max_pairs, np.int64)
            phase = np.zeros(max_pairs, np.int64)
            for j in range(length):
                t = start + j
                pair = pairs[j]
                if reversal[i] == 1:
                    phase[pair] = (seen[pair] // every[i]) % 2
                elif reversal[i] == 2 and seen[pair] > 0 and reversal_draws[i, t] < 1.0 / every[i]:
                    phase[pair] = 1 - phase[pair]
                block[i, t] = b
                condition[i, t] = pair
                arm_probs[i, t, 0] = probs[i, pair, phase[pair]]
                arm_probs[i, t, 1] = probs[i, pair, 1 - phase[pair]]
                seen[pair] += 1
            start += length
        for t in range(n, block.shape[1]):
            block[i, t] = m - 1
            arm_probs[i, t, 0] = probs[i, 0, 0]
            arm_probs[i, t, 1] = probs[i, 0, 1]

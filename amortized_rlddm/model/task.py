"""The two-armed bandit task design (docs/model.md): trials, stimulus pairs and their reward
schedules, blocks, missing responses and contaminant responses."""

from dataclasses import asdict, dataclass, replace

import numpy as np

PRESENTATIONS = ("interleaved", "blocked")
MISSING_KINDS = ("deadline", "ignorable")


def known_keys(cls, spec, section):
    """A YAML mapping for the dataclass `cls` as a dict, refused if it names a key `cls` lacks."""
    spec = dict(spec or {})
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ValueError(f"{section}: unknown key(s) {unknown}; expected some of {sorted(known)}")
    return spec


def stated_missing(missing: str | None, deadline: float | None) -> str | None:
    """What missing responses are, as stated: "deadline" (implied by a deadline), "ignorable",
    or None (then the data must have none). Refuses a kind without its deadline or with
    another's."""
    if deadline is not None and not deadline > 0:
        raise ValueError(f"deadline: expected seconds > 0 or None, got {deadline!r}")
    if missing is None and deadline is not None:
        missing = "deadline"
    if missing is not None and missing not in MISSING_KINDS:
        raise ValueError(f"missing: expected 'deadline' or 'ignorable', got {missing!r}")
    if missing == "deadline" and deadline is None:
        raise ValueError("missing: 'deadline' (responses censored by a deadline) needs the deadline in seconds")
    if missing == "ignorable" and deadline is not None:
        raise ValueError(f"missing: a deadline ({deadline} s) makes missing responses 'deadline', not 'ignorable'; "
                         "give one of them")
    return missing


def refuse_unexplained_missing(participant, missing_trials: np.ndarray, missing: str | None) -> None:
    """Refuse a participant's missing responses (a bool mask over trials) when no kind is stated."""
    if missing is None and missing_trials.any():
        t = int(np.flatnonzero(missing_trials)[0]) + 1
        raise ValueError(f"participant {participant!r} has missing responses (first at trial {t}); "
                         "say what they are: missing='deadline' with the deadline in seconds (slower than a "
                         "response deadline: they enter through the probability of missing it), or "
                         "missing='ignorable' (omissions unrelated to the parameters: left out) "
                         "(rlddm: --missing deadline --deadline SECONDS, or --missing ignorable)")



@dataclass(frozen=True)
class LikelihoodSettings:
    """What enters the exact likelihood besides the data and the parameters, checked once here.

    A :class:`TaskDesign` carries one (:attr:`TaskDesign.likelihood`); the likelihood, the exact
    target and the PyMC models take it; :class:`DesignSettings` is its per-participant form.

    q_init: initial Q-value of both arms of every pair, in [0, 1]; None: the data's own
        ``q_init`` column, else 0.5.
    deadline, missing: what missing responses are (:func:`stated_missing`).
    p_outlier, rt_max: the contaminant mixture: with probability p_outlier a response's RT is
        uniform on [0, rt_max] seconds and its choice random.
    """

    q_init: float | None = None
    deadline: float | None = None
    missing: str | None = None
    p_outlier: float = 0.0
    rt_max: float = 10.0

    def __post_init__(self):
        object.__setattr__(self, "missing", stated_missing(self.missing, self.deadline))
        if self.q_init is not None and not 0.0 <= self.q_init <= 1.0:
            raise ValueError(f"q_init: expected a value in [0, 1], got {self.q_init!r}")
        if not 0.0 <= self.p_outlier < 1.0:
            raise ValueError(f"p_outlier: expected a probability in [0, 1), got {self.p_outlier!r}")
        if not self.rt_max > 0:
            raise ValueError(f"rt_max: expected seconds > 0, got {self.rt_max!r}")

    def for_study(self, study) -> "LikelihoodSettings":
        """These settings for `study`: the data's own q_init column, when it has one, wins."""
        return self if study.q_init is None else replace(self, q_init=None)

@dataclass(frozen=True)
class Pair:
    """One stimulus pair: a two-armed bandit with its own reward schedule and Q-values.

    reward_probs: Bernoulli reward probability of arm 0 and arm 1 in the first phase.
    reversal_every: the two probabilities swap every this many trials of this pair within a
        block (None: never).
    """

    reward_probs: tuple[float, float] = (0.8, 0.2)
    reversal_every: int | None = 12

    def __post_init__(self):
        probs = tuple(float(p) for p in self.reward_probs)
        if len(probs) != 2 or not all(0.0 <= p <= 1.0 for p in probs):
            raise ValueError(f"reward_probs: expected two probabilities, got {self.reward_probs!r}")
        object.__setattr__(self, "reward_probs", probs)
        if self.reversal_every is not None and (not isinstance(self.reversal_every, (int, np.integer))
                                                or self.reversal_every < 1):
            raise ValueError(f"reversal_every: expected a positive int or null, got {self.reversal_every!r}")

    def arm_probabilities(self, position):
        """Reward probability of each arm at each position among this pair's trials, (..., 2)."""
        p = np.asarray(self.reward_probs)
        phase = np.zeros_like(position) if self.reversal_every is None else (position // self.reversal_every) % 2
        return np.where(phase[..., None] == 0, p, p[::-1])


# Keys added in version 0.4; a design at their defaults writes none of them, so the designs
# (and checkpoints) of earlier versions read and compare exactly as before.
_OPTIONAL_DEFAULTS = {"pairs": None, "presentation": "interleaved", "missing": None, "omission_rate": 0.0,
                      "p_outlier": 0.0, "rt_max": 10.0, "exclude_first": False}


@dataclass(frozen=True)
class TaskDesign:
    """One experiment's design.

    n_trials: a fixed count, or an inclusive (min, max) range drawn uniformly per participant.
    reward_probs, reversal_every: the schedule of the one stimulus pair when `pairs` is not
        given (see :class:`Pair`).
    deadline: responses slower than this many seconds are missing (None: no deadline).
    n_blocks: trials are split into this many contiguous blocks of (nearly) equal length;
        each block starts with fresh Q-values and restarts the reward schedules.
    q_init: initial Q-value of both arms of every pair.
    pairs: several stimulus pairs (conditions), each a :class:`Pair`; the parameters are shared.
    presentation: "interleaved" (every block presents every pair, its trials spread as evenly
        as possible over the pairs, in random order) or "blocked" (block b presents pair
        b mod len(pairs) only).
    missing: what a missing response means: "deadline" (slower than `deadline`, the default
        when a deadline is set) or "ignorable" (an omission unrelated to the parameters).
    omission_rate: the probability that a trial's response is omitted, unrelated to the
        parameters (simulation). With a deadline, the data mark these omissions: they are
        excluded trials, which add nothing to the likelihood (the other missing responses
        are censored by the deadline).
    p_outlier: the probability that a response is a contaminant: its RT uniform on
        [0, rt_max] seconds and its choice random. A contaminant still updates the Q-values.
    rt_max: the upper end of the contaminants' RTs (seconds).
    exclude_first: each participant's first trial of every pair is excluded from the
        likelihood (HDDM's convention; it still updates the Q-values).
    """

    n_trials: int | tuple[int, int] = 60
    reward_probs: tuple[float, float] = (0.8, 0.2)
    reversal_every: int | None = 12
    deadline: float | None = None
    n_blocks: int = 1
    q_init: float = 0.5
    pairs: tuple[Pair, ...] | None = None
    presentation: str = "interleaved"
    missing: str | None = None
    omission_rate: float = 0.0
    p_outlier: float = 0.0
    rt_max: float = 10.0
    exclude_first: bool = False

    def __post_init__(self):
        n = self.n_trials
        if isinstance(n, (list, tuple)):
            if len(n) != 2 or not all(isinstance(x, (int, np.integer)) for x in n) or not 1 <= n[0] <= n[1]:
                raise ValueError(f"design.n_trials: expected an int or [min, max] with 1 <= min <= max, got {n!r}")
            object.__setattr__(self, "n_trials", (int(n[0]), int(n[1])))
        elif not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"design.n_trials: expected a positive int or [min, max], got {n!r}")
        try:
            Pair(self.reward_probs, self.reversal_every)
        except ValueError as err:
            raise ValueError(f"design.{err}") from None
        object.__setattr__(self, "reward_probs", tuple(float(p) for p in self.reward_probs))
        pairs = None
        if self.pairs is not None:
            try:
                pairs = tuple(p if isinstance(p, Pair) else Pair(**p) for p in self.pairs)
            except (TypeError, ValueError) as err:
                raise ValueError(f"design.pairs: {err}") from None
            if not pairs:
                raise ValueError("design.pairs: expected at least one pair")
        object.__setattr__(self, "pairs", pairs)
        if self.presentation not in PRESENTATIONS:
            raise ValueError(f"design.presentation: expected one of {PRESENTATIONS}, got {self.presentation!r}")
        try:
            object.__setattr__(self, "missing", self.likelihood.missing)
        except ValueError as err:
            raise ValueError(f"design.{err}") from None
        if not 0.0 <= self.omission_rate < 1.0 or (self.omission_rate > 0 and self.missing is None):
            raise ValueError(f"design.omission_rate: expected a probability in [0, 1), above 0 only with "
                             f"missing 'ignorable' or a deadline; got {self.omission_rate!r} with missing "
                             f"{self.missing!r}")
        if not isinstance(self.exclude_first, bool):
            raise ValueError(f"design.exclude_first: expected true or false, got {self.exclude_first!r}")
        if not isinstance(self.n_blocks, (int, np.integer)) or not 1 <= self.n_blocks <= self.min_trials:
            raise ValueError(f"design.n_blocks: expected an int in [1, {self.min_trials}], got {self.n_blocks!r}")
        if self.q_init is None:
            raise ValueError("design.q_init: expected a value in [0, 1], got None")

    @property
    def likelihood(self) -> LikelihoodSettings:
        """The design's likelihood settings."""
        return LikelihoodSettings(self.q_init, self.deadline, self.missing, self.p_outlier, self.rt_max)

    @property
    def stimulus_pairs(self) -> tuple[Pair, ...]:
        """The pairs: `pairs`, or the one pair of reward_probs and reversal_every."""
        return self.pairs if self.pairs is not None else (Pair(self.reward_probs, self.reversal_every),)

    @property
    def min_trials(self):
        return self.n_trials[0] if isinstance(self.n_trials, tuple) else self.n_trials

    @property
    def max_trials(self):
        return self.n_trials[1] if isinstance(self.n_trials, tuple) else self.n_trials

    def sample_trial_counts(self, rng, size):
        """Trial count of each of `size` participants."""
        return rng.integers(self.min_trials, self.max_trials + 1, size=size)

    def block_layout(self, n_trials, max_trials):
        """Block index and position within the block, each (participants, max_trials).

        Participant i's n_trials[i] trials are cut into n_blocks contiguous blocks, the first
        n_trials % n_blocks blocks one trial longer. Padding positions continue the last block.
        """
        n_trials = np.asarray(n_trials)[:, None]
        t = np.arange(max_trials)[None, :]
        base, extra = n_trials // self.n_blocks, n_trials % self.n_blocks
        long_part = extra * (base + 1)
        block = np.where(t < long_part, t // (base + 1), extra + (t - long_part) // np.maximum(base, 1))
        block = np.minimum(block, self.n_blocks - 1)
        start = np.where(block < extra, block * (base + 1), long_part + (block - extra) * base)
        return block.astype(np.int32), (t - start).astype(np.int32)

    def arm_probabilities(self, position_in_block):
        """Reward probability of each arm at each trial of a one-pair design, shape (..., 2)."""
        return Pair(self.reward_probs, self.reversal_every).arm_probabilities(position_in_block)

    def trial_layout(self, n_trials, max_trials, rng=None):
        """Block, condition (pair index) and each arm's reward probability of every trial.

        Returns (block (B, T) int32, condition (B, T) int32, arm probabilities (B, T, 2)).
        Interleaved pairs are shuffled within each block with `rng` (needed only then): each
        block holds every pair's trials as evenly as possible in random order. A pair's
        reversal schedule counts its own trials within the block. Padding has condition 0.
        """
        block, position = self.block_layout(n_trials, max_trials)
        pairs = self.stimulus_pairs
        k = len(pairs)
        if k == 1:
            return block, np.zeros_like(block), pairs[0].arm_probabilities(position)
        b, t = block.shape
        valid = np.arange(t)[None, :] < np.asarray(n_trials)[:, None]
        if self.presentation == "blocked":
            condition = block % k
        else:
            if rng is None:
                raise ValueError("interleaved pairs are shuffled: trial_layout needs a random generator")
            # each trial's rank among its block's trials under random keys (padding sorts last);
            # the ranks, a random permutation, cycle through the pairs
            keys = np.where(valid, rng.random((b, t)), 2.0)
            rows = np.repeat(np.arange(b), t)
            order = np.lexsort((keys.ravel(), block.ravel(), rows))
            rank = np.empty(b * t, np.int64)
            rank[order] = np.arange(b * t)
            block_start = np.arange(t)[None, :] - position
            condition = (rank.reshape(b, t) - np.arange(b)[:, None] * t - block_start) % k
        condition = np.where(valid, condition, 0).astype(np.int32)
        # position of each trial among its pair's trials in its block
        onehot = condition[..., None] == np.arange(k)
        before = np.cumsum(onehot, axis=1) - onehot
        block_start = np.arange(t)[None, :] - position
        at_start = np.take_along_axis(before, block_start[..., None].repeat(k, -1), axis=1)
        own = np.take_along_axis(before - at_start, condition[..., None], axis=-1)[..., 0]
        probs = np.empty((b, t, 2))
        for index, pair in enumerate(pairs):
            probs[condition == index] = pair.arm_probabilities(own[condition == index])
        return block, condition, probs

    def to_dict(self):
        """The design as a YAML-ready mapping; keys at their defaults since 0.4 are left out."""
        d = asdict(self)
        d["n_trials"] = list(self.n_trials) if isinstance(self.n_trials, tuple) else self.n_trials
        d["reward_probs"] = list(self.reward_probs)
        if self.pairs is not None:
            d["pairs"] = [{"reward_probs": list(p.reward_probs), "reversal_every": p.reversal_every}
                          for p in self.pairs]
        if self.missing == "deadline":
            d["missing"] = None  # implied by the deadline
        return {k: v for k, v in d.items() if k not in _OPTIONAL_DEFAULTS or v != _OPTIONAL_DEFAULTS[k]}

    @classmethod
    def from_dict(cls, spec):
        spec = known_keys(cls, spec, "design")
        if isinstance(spec.get("n_trials"), list):
            spec["n_trials"] = tuple(spec["n_trials"])
        return cls(**spec)


@dataclass(frozen=True)
class DesignSettings:
    """Per participant, what of the design besides the trials enters the likelihood: the
    initial Q-values, the response deadline (inf: none), whether missing responses are
    ignorable omissions, and the contaminants' probability and RT range.

    A design fixes one value for everyone (:meth:`of`); a family of designs draws one per
    participant (:class:`~amortized_rlddm.model.family.DesignFamily`).
    """

    q_init: np.ndarray
    deadline: np.ndarray
    ignorable: np.ndarray
    p_outlier: np.ndarray
    rt_max: np.ndarray

    @classmethod
    def of(cls, design: "TaskDesign | LikelihoodSettings", study) -> "DesignSettings":
        """A design's (or likelihood settings') values for each participant of `study`; the
        data's own q_init wins."""
        settings = design.likelihood if isinstance(design, TaskDesign) else design
        n = study.n_participants
        q_init = study.q_init if study.q_init is not None else (0.5 if settings.q_init is None else settings.q_init)

        def full(value, dtype=float):
            return np.broadcast_to(np.asarray(value, dtype), (n,)).copy()

        return cls(q_init=full(q_init), deadline=full(np.inf if settings.deadline is None else settings.deadline),
                   ignorable=full(settings.missing == "ignorable", bool), p_outlier=full(settings.p_outlier),
                   rt_max=full(settings.rt_max))

    def select(self, indices) -> "DesignSettings":
        """The settings of the participants at `indices`."""
        return DesignSettings(**{name: getattr(self, name)[indices] for name in self.__dataclass_fields__})

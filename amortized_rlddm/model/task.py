"""The two-armed bandit task design (docs/model.md): trials, reward schedule, blocks, deadline."""

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class TaskDesign:
    """One experiment's design.

    n_trials: a fixed count, or an inclusive (min, max) range drawn uniformly per participant.
    reward_probs: Bernoulli reward probability of arm 0 and arm 1 in the first phase.
    reversal_every: the two probabilities swap every this many trials (None: never).
    deadline: responses slower than this many seconds are missing (None: no deadline).
    n_blocks: trials are split into this many contiguous blocks of (nearly) equal length;
        each block starts with fresh Q-values and restarts the reversal schedule.
    q_init: initial Q-value of both arms.
    """

    n_trials: int | tuple[int, int] = 60
    reward_probs: tuple[float, float] = (0.8, 0.2)
    reversal_every: int | None = 12
    deadline: float | None = None
    n_blocks: int = 1
    q_init: float = 0.5

    def __post_init__(self):
        n = self.n_trials
        if isinstance(n, (list, tuple)):
            if len(n) != 2 or not all(isinstance(x, (int, np.integer)) for x in n) or not 1 <= n[0] <= n[1]:
                raise ValueError(f"design.n_trials: expected an int or [min, max] with 1 <= min <= max, got {n!r}")
            object.__setattr__(self, "n_trials", (int(n[0]), int(n[1])))
        elif not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"design.n_trials: expected a positive int or [min, max], got {n!r}")
        probs = tuple(float(p) for p in self.reward_probs)
        if len(probs) != 2 or not all(0.0 <= p <= 1.0 for p in probs):
            raise ValueError(f"design.reward_probs: expected two probabilities, got {self.reward_probs!r}")
        object.__setattr__(self, "reward_probs", probs)
        if self.reversal_every is not None and (not isinstance(self.reversal_every, (int, np.integer))
                                                or self.reversal_every < 1):
            raise ValueError(f"design.reversal_every: expected a positive int or null, got {self.reversal_every!r}")
        if self.deadline is not None and not self.deadline > 0:
            raise ValueError(f"design.deadline: expected seconds > 0 or null, got {self.deadline!r}")
        if not isinstance(self.n_blocks, (int, np.integer)) or not 1 <= self.n_blocks <= self.min_trials:
            raise ValueError(f"design.n_blocks: expected an int in [1, {self.min_trials}], got {self.n_blocks!r}")
        if not 0.0 <= self.q_init <= 1.0:
            raise ValueError(f"design.q_init: expected a value in [0, 1], got {self.q_init!r}")

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
        """Reward probability of each arm at each trial, shape (..., 2)."""
        p = np.asarray(self.reward_probs)
        if self.reversal_every is None:
            phase = np.zeros_like(position_in_block)
        else:
            phase = (position_in_block // self.reversal_every) % 2
        return np.where(phase[..., None] == 0, p, p[::-1])

    def to_dict(self):
        d = asdict(self)
        d["n_trials"] = list(self.n_trials) if isinstance(self.n_trials, tuple) else self.n_trials
        d["reward_probs"] = list(self.reward_probs)
        return d

    @classmethod
    def from_dict(cls, spec):
        spec = dict(spec or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(spec) - known)
        if unknown:
            raise ValueError(f"design: unknown key(s) {unknown}; expected some of {sorted(known)}")
        if isinstance(spec.get("n_trials"), list):
            spec["n_trials"] = tuple(spec["n_trials"])
        return cls(**spec)

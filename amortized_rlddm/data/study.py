"""The one data structure every stage shares (docs/data.md): a study of many participants.

Arrays are (participants, max_trials). Positions at or beyond a participant's trial count
are padding. Within the trials, a missing response has choice = reward = -1 and rt = NaN.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class Study:
    """Trials of many participants as (participants, max_trials) arrays.

    The simulator returns it, :func:`~amortized_rlddm.data.io.read_study` builds it from a
    CSV or DataFrame, and the likelihood, the networks and the exact model all take it.
    """

    participant: np.ndarray  # (B,) participant ids, as given
    n_trials: np.ndarray  # (B,) int
    choice: np.ndarray  # (B, T) int8: 0 or 1; -1 missing or padding
    rt: np.ndarray  # (B, T) float64 seconds; NaN missing or padding
    reward: np.ndarray  # (B, T) int8: 0 or 1; -1 missing or padding
    block: np.ndarray  # (B, T) int32 block index starting at 0; Q-values reset when it changes
    outcomes: np.ndarray | None = None  # (B, T, 2) int8 both arms' potential outcomes (simulated only)

    def __post_init__(self):
        b, t = self.choice.shape
        for name in ("rt", "reward", "block"):
            if getattr(self, name).shape != (b, t):
                raise ValueError(f"Study.{name} has shape {getattr(self, name).shape}, expected {(b, t)}")
        if self.participant.shape != (b,) or self.n_trials.shape != (b,):
            raise ValueError("Study.participant and Study.n_trials must have one entry per participant")

    @classmethod
    def concatenate(cls, studies: list["Study"]) -> "Study":
        """The participants of several studies in one, padded to the longest (padding
        continues each participant's last block)."""
        t = max(s.max_trials for s in studies)

        def padded(name, fill):
            arrays = [getattr(s, name) for s in studies]
            widths = [[(0, 0), (0, t - x.shape[1])] + [(0, 0)] * (x.ndim - 2) for x in arrays]
            if fill == "edge":
                return np.concatenate([np.pad(x, w, mode="edge") for x, w in zip(arrays, widths)])
            return np.concatenate([np.pad(x, w, constant_values=fill) for x, w in zip(arrays, widths)])

        return cls(participant=np.concatenate([s.participant for s in studies]),
                   n_trials=np.concatenate([s.n_trials for s in studies]),
                   choice=padded("choice", -1), rt=padded("rt", np.nan), reward=padded("reward", -1),
                   block=padded("block", "edge"),
                   outcomes=None if any(s.outcomes is None for s in studies) else padded("outcomes", -1))

    @property
    def n_participants(self) -> int:
        """Number of participants."""
        return self.choice.shape[0]

    @property
    def max_trials(self) -> int:
        """Length of the trial axis (the longest participant's trial count or more)."""
        return self.choice.shape[1]

    @property
    def valid(self):
        """(B, T) True on real trials, False on padding."""
        return np.arange(self.max_trials)[None, :] < self.n_trials[:, None]

    @property
    def missing(self):
        """(B, T) True on real trials without a response."""
        return self.valid & (self.choice < 0)

    def to_dataframe(self) -> pd.DataFrame:
        """The long format of docs/data.md; missing responses are empty cells."""
        valid = self.valid
        rows, cols = np.nonzero(valid)
        choice = self.choice[rows, cols]
        reward = self.reward[rows, cols]
        frame = pd.DataFrame({
            "participant": self.participant[rows],
            "trial": cols + 1,
            "choice": pd.array(np.where(choice < 0, None, choice), dtype="Int64"),
            "rt": self.rt[rows, cols],
            "reward": pd.array(np.where(reward < 0, None, reward), dtype="Int64"),
        })
        if (self.block[valid] != 0).any():
            frame["block"] = self.block[rows, cols] + 1
        return frame

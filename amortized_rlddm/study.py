"""The one data structure every stage shares (DESIGN.md §1): a study of many participants.

Arrays are (participants, max_trials). Positions at or beyond a participant's trial count
are padding. Within the trials, a missing response has choice = reward = -1 and rt = NaN.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class Study:
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

    @property
    def n_participants(self):
        return self.choice.shape[0]

    @property
    def max_trials(self):
        return self.choice.shape[1]

    @property
    def valid(self):
        """(B, T) True on real trials, False on padding."""
        return np.arange(self.max_trials)[None, :] < self.n_trials[:, None]

    @property
    def missing(self):
        """(B, T) True on real trials without a response."""
        return self.valid & (self.choice < 0)

    def to_dataframe(self):
        """Long format of DESIGN.md §4; missing responses are empty cells."""
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

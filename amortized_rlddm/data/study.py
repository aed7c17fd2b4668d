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
    Conditions (stimulus pairs) are separate two-armed bandits with Q-values of their own; a
    new block resets the Q-values of every condition. An excluded trial still updates the
    Q-values (the participant saw its outcome) but adds nothing to the likelihood.
    """

    participant: np.ndarray  # (B,) participant ids, as given
    n_trials: np.ndarray  # (B,) int
    choice: np.ndarray  # (B, T) int8: 0 or 1; -1 missing or padding
    rt: np.ndarray  # (B, T) float64 seconds; NaN missing or padding
    reward: np.ndarray  # (B, T) int8: 0 or 1; -1 missing or padding
    block: np.ndarray  # (B, T) int32 block index starting at 0; Q-values reset when it changes
    outcomes: np.ndarray | None = None  # (B, T, 2) int8 both arms' potential outcomes (simulated only)
    condition: np.ndarray | None = None  # (B, T) int32 index into condition_labels; default all 0
    excluded: np.ndarray | None = None  # (B, T) bool: left out of the likelihood; default none
    q_init: np.ndarray | None = None  # (B,) initial Q-values given by the data; default: the design's
    condition_labels: tuple = (0,)  # the label of each condition index, as the data name it
    absent_trials: np.ndarray | None = None  # (B,) trial numbers the data skip (absent rows), when read
    arm_probs: np.ndarray | None = None  # (B, T, 2) each arm's reward probability, when the data give it

    def __post_init__(self):
        b, t = self.choice.shape
        if self.condition is None:
            self.condition = np.zeros((b, t), np.int32)
        if self.excluded is None:
            self.excluded = np.zeros((b, t), bool)
        for name in ("rt", "reward", "block", "condition", "excluded"):
            if getattr(self, name).shape != (b, t):
                raise ValueError(f"Study.{name} has shape {getattr(self, name).shape}, expected {(b, t)}")
        if self.participant.shape != (b,) or self.n_trials.shape != (b,):
            raise ValueError("Study.participant and Study.n_trials must have one entry per participant")
        if self.arm_probs is not None and np.shape(self.arm_probs) != (b, t, 2):
            raise ValueError(f"Study.arm_probs has shape {np.shape(self.arm_probs)}, expected {(b, t, 2)}")
        if self.q_init is not None and np.shape(self.q_init) != (b,):
            raise ValueError("Study.q_init must have one entry per participant")
        self.condition_labels = tuple(self.condition_labels)
        if self.condition[self.valid].size and not 0 <= self.condition[self.valid].max() < len(self.condition_labels):
            raise ValueError(f"Study.condition indexes {len(self.condition_labels)} condition label(s) "
                             f"but reaches {self.condition[self.valid].max()}")

    @classmethod
    def concatenate(cls, studies: list["Study"]) -> "Study":
        """The participants of several studies in one, padded to the longest (padding
        continues each participant's last block). The studies must share their condition
        labels and either all or none give q_init."""
        t = max(s.max_trials for s in studies)
        labels = {s.condition_labels for s in studies}
        if len(labels) > 1:
            raise ValueError(f"the studies name their conditions differently: {sorted(map(str, labels))}")
        if len({s.q_init is None for s in studies}) > 1:
            raise ValueError("some studies give q_init and others do not")

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
                   outcomes=None if any(s.outcomes is None for s in studies) else padded("outcomes", -1),
                   condition=padded("condition", 0), excluded=padded("excluded", False),
                   q_init=None if studies[0].q_init is None else np.concatenate([s.q_init for s in studies]),
                   condition_labels=studies[0].condition_labels,
                   absent_trials=None if any(s.absent_trials is None for s in studies)
                   else np.concatenate([s.absent_trials for s in studies]),
                   arm_probs=None if any(s.arm_probs is None for s in studies) else padded("arm_probs", np.nan))

    def select(self, indices) -> "Study":
        """The study of the participants at `indices` (in that order)."""
        rows = np.asarray(indices)

        def take(x):
            return None if x is None else x[rows]

        return Study(participant=self.participant[rows], n_trials=self.n_trials[rows], choice=self.choice[rows],
                     rt=self.rt[rows], reward=self.reward[rows], block=self.block[rows], outcomes=take(self.outcomes),
                     condition=self.condition[rows], excluded=self.excluded[rows], q_init=take(self.q_init),
                     condition_labels=self.condition_labels, absent_trials=take(self.absent_trials),
                     arm_probs=take(self.arm_probs))

    @property
    def n_participants(self) -> int:
        """Number of participants."""
        return self.choice.shape[0]

    @property
    def max_trials(self) -> int:
        """Length of the trial axis (the longest participant's trial count or more)."""
        return self.choice.shape[1]

    @property
    def n_conditions(self) -> int:
        """Number of conditions (stimulus pairs) the condition index may take."""
        return len(self.condition_labels)

    @property
    def valid(self):
        """(B, T) True on real trials, False on padding."""
        return np.arange(self.max_trials)[None, :] < self.n_trials[:, None]

    @property
    def has_rt(self) -> bool:
        """Whether the responses have response times (False: choices alone, e.g. a file without
        an rt column, for the choice-only models)."""
        responded = self.valid & (self.choice >= 0)
        return not responded.any() or bool(np.isfinite(self.rt[responded]).any())

    @property
    def missing(self):
        """(B, T) True on real trials without a response."""
        return self.valid & (self.choice < 0)

    def to_dataframe(self) -> pd.DataFrame:
        """The long format of docs/data.md; missing responses are empty cells. Block, condition
        and excluded columns appear when they vary; the rt column when there are RTs."""
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
        if not self.has_rt:
            frame = frame.drop(columns="rt")  # choices alone
        if (self.block[valid] != 0).any():
            frame["block"] = self.block[rows, cols] + 1
        if self.n_conditions > 1:
            frame["condition"] = np.asarray(self.condition_labels, dtype=object)[self.condition[rows, cols]]
        if self.excluded[valid].any():
            frame["excluded"] = self.excluded[rows, cols].astype(int)
        if self.q_init is not None:
            frame["q_init"] = self.q_init[rows]
        return frame

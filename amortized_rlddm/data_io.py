"""Reading and writing trial data (DESIGN.md §4) with validation that names what is wrong.

Every problem raises :class:`DataError` naming the file (when there is one), the row, the
column and what was expected. Nothing is dropped or coerced silently. Foreign column
conventions (HSSM, HDDM) are accepted only when asked for explicitly.
"""

import csv
import os

import numpy as np
import pandas as pd

from .study import Study

# Column names of each convention, mapped onto ours; "choice_values" maps their choice coding.
CONVENTIONS = {
    "rlddm": {"columns": {"participant": "participant", "trial": "trial", "choice": "choice",
                          "rt": "rt", "reward": "reward", "block": "block"},
              "choice_values": {0: 0, 1: 1}},
    "hssm": {"columns": {"participant_id": "participant", "trial_id": "trial", "response": "choice",
                         "rt": "rt", "feedback": "reward", "block": "block"},
             "choice_values": {-1: 0, 1: 1}},
    "hddm": {"columns": {"subj_idx": "participant", "trial": "trial", "response": "choice",
                         "rt": "rt", "feedback": "reward", "split_by": "block"},
             "choice_values": {0: 0, 1: 1}},
}
_OPTIONAL = {"block"}
_EMPTY = {"", "na", "nan", "n/a", "none", "null"}
# Slower than this is almost surely a unit error (milliseconds) or a logging fault.
MAX_RT = 60.0


class DataError(ValueError):
    """A data file or DataFrame that does not follow DESIGN.md §4."""


def read_study(source, convention="rlddm"):
    """Read a CSV path or a DataFrame into a validated :class:`Study`.

    convention: "rlddm" (DESIGN.md §4), "hssm" (participant_id, trial_id, response in
    {-1, 1}, feedback) or "hddm" (subj_idx, trial, response in {0, 1}, feedback, split_by).
    """
    if convention not in CONVENTIONS:
        raise DataError(f"unknown convention '{convention}'; expected one of {sorted(CONVENTIONS)}")
    if isinstance(source, pd.DataFrame):
        rows = [f"row {label!r}" for label in source.index]
        return _to_study(source.reset_index(drop=True), convention, _Locator("DataFrame", rows))
    frame, lines = _read_csv_text(source)
    return _to_study(frame, convention, _Locator(f"file '{os.fspath(source)}'", lines))


def write_study(study, path):
    """Write a study as a DESIGN.md §4 CSV."""
    study.to_dataframe().to_csv(path, index=False)


class _Locator:
    """Names a row the way the user sees it: a line of the file or an index label."""

    def __init__(self, label, row_names):
        self.label, self.row_names = label, row_names

    def __call__(self, i, column=None):
        return f"{self.label}, {self.row_names[i]}" + (f", column '{column}'" if column else "")


def _read_csv_text(path):
    """All cells as strings, and each data row's line number in the file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"file '{path}' does not exist")
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if not head.strip():
        raise DataError(f"file '{path}' is empty")
    if b"\0" in head:
        raise DataError(f"file '{path}' is not a CSV text file (it contains binary data)")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [c.strip() for c in next(reader)]
            rows, lines = [], []
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue  # blank line
                if len(row) != len(header):
                    raise DataError(f"file '{path}', line {reader.line_num}: {len(row)} fields "
                                    f"but the header has {len(header)} ({', '.join(header)})")
                rows.append(row)
                lines.append(f"line {reader.line_num}")
    except (UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"file '{path}' could not be read as CSV text: {err}") from None
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise DataError(f"file '{path}': duplicated column(s) {duplicated} in the header")
    if not rows:
        raise DataError(f"file '{path}' has a header but no data rows")
    return pd.DataFrame(rows, columns=header, dtype=object), lines


def _is_empty(value):
    if value is None or value is pd.NA:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in _EMPTY


def _parse_numbers(values, column, where, allow_empty):
    """Floats (NaN for empty cells) from a column, naming the first bad cell."""
    out = np.empty(len(values))
    for i, value in enumerate(values):
        if _is_empty(value):
            if not allow_empty:
                raise DataError(f"{where(i, column)}: empty value, expected a number")
            out[i] = np.nan
            continue
        try:
            out[i] = float(value)
        except (TypeError, ValueError):
            raise DataError(f"{where(i, column)}: '{value}' is not a number") from None
        if not np.isfinite(out[i]):
            raise DataError(f"{where(i, column)}: '{value}' is not a finite number")
    return out


def _parse_codes(values, column, where, allowed, allow_empty):
    """Integer codes from a column restricted to the keys of `allowed`, mapped through it."""
    numbers = _parse_numbers(values, column, where, allow_empty)
    out = np.full(len(values), -1, np.int8)
    for i, x in enumerate(numbers):
        if np.isnan(x):
            continue
        if x not in allowed:
            raise DataError(f"{where(i, column)}: '{values[i]}' is not allowed, expected one of "
                            f"{sorted(allowed)}" + (" or empty" if allow_empty else ""))
        out[i] = allowed[int(x)]
    return out


def _parse_integers(values, column, where):
    numbers = _parse_numbers(values, column, where, allow_empty=False)
    bad = numbers != np.round(numbers)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{where(i, column)}: '{values[i]}' is not an integer")
    return numbers.astype(np.int64)


def _to_study(frame, convention, where):
    spec = CONVENTIONS[convention]
    frame = frame.copy()
    frame.columns = [str(c).strip() for c in frame.columns]
    needed = [c for c, ours in spec["columns"].items() if ours not in _OPTIONAL]
    absent = [c for c in needed if c not in frame.columns]
    if absent:
        raise DataError(f"{where.label}: missing column(s) {absent} (convention '{convention}' "
                        f"needs {needed}); found columns {list(frame.columns)}")
    duplicated = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if duplicated:
        raise DataError(f"{where.label}: duplicated column(s) {duplicated}")
    cols = {ours: frame[theirs].tolist() for theirs, ours in spec["columns"].items() if theirs in frame}
    name = {ours: theirs for theirs, ours in spec["columns"].items()}
    if not cols["participant"]:
        raise DataError(f"{where.label}: no data rows")

    for i, pid in enumerate(cols["participant"]):
        if _is_empty(pid):
            raise DataError(f"{where(i, name['participant'])}: empty participant id")
    trial = _parse_integers(cols["trial"], name["trial"], where)
    choice = _parse_codes(cols["choice"], name["choice"], where, spec["choice_values"], True)
    reward = _parse_codes(cols["reward"], name["reward"], where, {0: 0, 1: 1}, True)
    rt = _parse_numbers(cols["rt"], name["rt"], where, allow_empty=True)
    block = (_parse_integers(cols["block"], name["block"], where) if "block" in cols
             else np.zeros(len(trial), np.int64))

    for i in range(len(trial)):
        if not np.isnan(rt[i]) and not rt[i] > 0:
            raise DataError(f"{where(i, name['rt'])}: rt {cols['rt'][i]} is not > 0 seconds")
        if rt[i] > MAX_RT:
            raise DataError(f"{where(i, name['rt'])}: rt {cols['rt'][i]} s is over {MAX_RT:g} s; "
                            "rt must be in seconds (milliseconds?)")
        if (choice[i] < 0) != np.isnan(rt[i]):
            has, lacks = ("choice", "rt") if choice[i] >= 0 else ("rt", "choice")
            raise DataError(f"{where(i)}: a {has} without a {lacks}; a missing response leaves "
                            f"'{name['choice']}' and '{name['rt']}' both empty")
        if (choice[i] < 0) != (reward[i] < 0):
            problem = ("a response without a reward" if choice[i] >= 0
                       else "a reward for a missing response")
            raise DataError(f"{where(i, name['reward'])}: {problem}; the reward is that of the "
                            "chosen arm and is empty only when the response is missing")

    participants = list(dict.fromkeys(cols["participant"]))
    rows_of = {pid: [] for pid in participants}
    for i, pid in enumerate(cols["participant"]):
        rows_of[pid].append(i)
    n_trials = np.array([len(rows_of[pid]) for pid in participants])
    max_trials = int(n_trials.max())
    n = len(participants)
    out_choice = np.full((n, max_trials), -1, np.int8)
    out_reward = np.full((n, max_trials), -1, np.int8)
    out_rt = np.full((n, max_trials), np.nan)
    out_block = np.zeros((n, max_trials), np.int32)
    for p, pid in enumerate(participants):
        rows = np.array(rows_of[pid])
        expected = np.arange(1, len(rows) + 1)
        wrong = trial[rows] != expected
        if wrong.any():
            k = int(np.argmax(wrong))
            raise DataError(f"{where(rows[k], name['trial'])}: participant {pid!r} has trial "
                            f"{trial[rows[k]]} where {expected[k]} was expected; trials must be "
                            "numbered 1, 2, 3, ... in row order (duplicated, unsorted or skipped)")
        b = block[rows]
        changes = np.flatnonzero(b[1:] != b[:-1]) + 1
        seen = {b[0]}
        for k in changes:
            if b[k] in seen:
                raise DataError(f"{where(rows[k], name['block'])}: participant {pid!r} returns to "
                                f"block {b[k]} after leaving it; each block must be one "
                                "contiguous run of trials")
            seen.add(b[k])
        index = np.zeros(len(rows), np.int32)
        index[changes] = 1
        index = np.cumsum(index)
        m = len(rows)
        out_choice[p, :m], out_reward[p, :m], out_rt[p, :m] = choice[rows], reward[rows], rt[rows]
        out_block[p, :m] = index
        out_block[p, m:] = index[-1]
    return Study(participant=np.array(participants, dtype=object), n_trials=n_trials,
                 choice=out_choice, rt=out_rt, reward=out_reward, block=out_block)

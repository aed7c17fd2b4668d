"""Reading and writing trial data (docs/data.md) with validation that names what is wrong.

Every problem raises :class:`DataError` naming the file (when there is one), the row, the
column and what was expected. Nothing is dropped or coerced silently. Foreign column
conventions (HSSM, HDDM) are accepted only when asked for explicitly.

Cells are read as text. Numbers are plain decimals with the ASCII digits 0-9 (``12``,
``-0.5``, ``.5``, ``1e-3``); spaces around a cell (numbers and participant ids alike) are
ignored, as they are around column names. Blank lines, and lines whose cells are all
empty, carry no trial and are skipped.
"""

import csv
import io
import os
import re

import numpy as np
import pandas as pd

from .study import Study

# Column names of each convention, mapped onto ours; "choice_values" maps their choice coding;
# "trials": the trial column counts within each "participant" or within each "condition"
# (HDDM's split_by); "gaps": whether trial numbers may skip (absent trials, as in HDDM's data).
CONVENTIONS = {
    "rlddm": {"columns": {"participant": "participant", "trial": "trial", "choice": "choice",
                          "rt": "rt", "reward": "reward", "block": "block", "condition": "condition",
                          "excluded": "excluded", "q_init": "q_init"},
              "choice_values": {0: 0, 1: 1}, "trials": "participant", "gaps": False},
    "hssm": {"columns": {"participant_id": "participant", "trial_id": "trial", "response": "choice",
                         "rt": "rt", "feedback": "reward", "block": "block", "condition": "condition"},
             "choice_values": {-1: 0, 1: 1}, "trials": "participant", "gaps": False},
    "hddm": {"columns": {"subj_idx": "participant", "trial": "trial", "response": "choice",
                         "rt": "rt", "feedback": "reward", "split_by": "condition", "q_init": "q_init"},
             "choice_values": {0: 0, 1: 1}, "trials": "condition", "gaps": True},
}
OURS = ("participant", "trial", "choice", "rt", "reward", "block", "condition", "excluded", "q_init",
        "p_reward_0", "p_reward_1")
_EMPTY = {"", "na", "nan", "n/a", "none", "null"}
# Slower than this is almost surely a unit error (milliseconds) or a logging fault.
MAX_RT = 60.0
# Integers (trial numbers, block labels) beyond this are not exact as floats; refused.
MAX_INT = 2 ** 53
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_INTEGER = re.compile(r"[+-]?\d+", re.ASCII)
# Text encodings that are not UTF-8, recognised by their byte order mark.
_FOREIGN_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32",
                 b"\xff\xfe": "UTF-16", b"\xfe\xff": "UTF-16"}


class DataError(ValueError):
    """A data file or DataFrame that does not follow the formats of docs/data.md."""


def read_study(source: str | os.PathLike | pd.DataFrame, convention: str = "rlddm",
               columns: dict[str, str] | None = None, choice_codes: dict[int, int] | None = None,
               trials_within: str | None = None, reward_codes: dict[int, int] | None = None,
               missing_rewards: str = "refuse") -> Study:
    """Read a CSV path or a DataFrame into a validated :class:`Study`.

    Parameters
    ----------
    source
        A CSV file or a DataFrame, one row per trial, rows in trial order within participant.
    convention
        ``"rlddm"`` (participant, trial, choice, rt, reward; optional block, condition,
        excluded, q_init; docs/data.md), ``"hssm"`` (participant_id, trial_id, response in
        {-1, 1}, rt, feedback) or ``"hddm"`` (subj_idx, response in {0, 1}, rt, feedback,
        split_by as the condition, trial counted within it, q_init).
    columns
        Another layout instead of a convention: our name -> the file's column, for
        participant, choice, rt and reward, and optionally trial, block, condition, excluded
        and q_init, and p_reward_0 and p_reward_1 (each arm's reward probability on the trial,
        for posterior predictive checks), e.g. ``{"participant": "subj_idx", "choice": "c",
        "reward": "r", "rt": "rt", "block": "s"}``. Without a trial column the rows' order is
        the trial order. A file without an rt column (and a mapping without "rt") reads as
        choices alone, for the choice-only models (the RL-DDM refuses it).
    choice_codes
        With `columns`: the file's choice code -> ours (0 = arm 0 / lower boundary, 1 = arm 1
        / upper), e.g. ``{1: 0, 2: 1}``; default ``{0: 0, 1: 1}``.
    trials_within
        With `columns`: the trial column counts within each ``"participant"`` (default) or
        within each ``"condition"``. With `columns` trial numbers may skip (absent trials).
    reward_codes
        With `columns`: the file's reward code -> ours (0 or 1), e.g. ``{100: 1, 0: 0}`` for
        outcomes recorded in points; default ``{0: 0, 1: 1}``. Several codes may map to one.
    missing_rewards
        With `columns`: what a reward recorded on a missing response (no choice) is:
        ``"refuse"`` (the default: an error naming the cell) or ``"ignore"`` (not an outcome,
        e.g. the 0 points a file records for a timeout: read as no reward, as our format
        writes it).

    Returns
    -------
    Study

    Raises
    ------
    DataError
        Naming the file, the row, the column and what was expected.
    """
    if columns is None:
        if convention not in CONVENTIONS:
            raise DataError(f"unknown convention '{convention}'; expected one of {sorted(CONVENTIONS)}")
        if (choice_codes is not None or trials_within is not None or reward_codes is not None
                or missing_rewards != "refuse"):
            raise DataError("choice_codes, reward_codes, missing_rewards and trials_within go with a column mapping "
                            f"(columns=...); the '{convention}' convention fixes its own")
        spec = CONVENTIONS[convention]
        label = f"convention '{convention}'"
    else:
        spec = _mapping_spec(columns, choice_codes, trials_within, reward_codes, missing_rewards)
        label = "the column mapping"
    if isinstance(source, pd.DataFrame):
        rows = [f"row {label!r}" for label in source.index]
        return _to_study(source.reset_index(drop=True), spec, label, _Locator("DataFrame", rows))
    frame, lines = _read_csv_text(source)
    return _to_study(frame, spec, label, _Locator(f"file '{os.fspath(source)}'", lines))


def _mapping_spec(columns, choice_codes, trials_within, reward_codes=None, missing_rewards="refuse"):
    """The reading spec of a user's column mapping (ours -> theirs), checked."""
    if not isinstance(columns, dict):
        raise DataError(f"columns: expected a mapping of our column names to the file's, got {columns!r}")
    unknown = sorted(set(columns) - set(OURS))
    if unknown:
        raise DataError(f"columns: unknown name(s) {unknown}; ours are {list(OURS)}")
    absent = [c for c in ("participant", "choice", "reward") if c not in columns]
    if absent:
        raise DataError(f"columns: the mapping must name the file's column for {absent}")
    theirs = list(columns.values())
    if len(set(theirs)) != len(theirs):
        raise DataError(f"columns: a file column is mapped twice in {columns}")
    codes = {0: 0, 1: 1} if choice_codes is None else dict(choice_codes)
    if sorted(codes.values()) != [0, 1] or len(codes) != 2:
        raise DataError(f"choice_codes: expected two file codes mapped to 0 and 1, got {choice_codes!r}")
    rewards = {0: 0, 1: 1} if reward_codes is None else dict(reward_codes)
    if not rewards or not set(rewards.values()) <= {0, 1}:
        raise DataError(f"reward_codes: expected file codes each mapped to 0 or 1, got {reward_codes!r}")
    if missing_rewards not in ("refuse", "ignore"):
        raise DataError(f"missing_rewards: expected 'refuse' or 'ignore', got {missing_rewards!r}")
    within = trials_within or "participant"
    if within not in ("participant", "condition") or (within == "condition" and "condition" not in columns):
        raise DataError(f"trials_within: expected 'participant' or 'condition' (with a condition column), "
                        f"got {trials_within!r}")
    return {"columns": {their: ours for ours, their in columns.items()}, "choice_values": codes,
            "reward_values": rewards, "missing_rewards": missing_rewards,
            "trials": within if "trial" in columns else None, "gaps": True}


def parse_columns(text: str) -> dict[str, str]:
    """A column mapping written ``ours=theirs,ours=theirs`` (the CLI's --columns)."""
    pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
    if not pairs or any(len(p) != 2 or not p[0].strip() or not p[1].strip() for p in pairs):
        raise DataError(f"--columns: expected ours=theirs pairs separated by commas, got {text!r}")
    return {ours.strip(): theirs.strip() for ours, theirs in pairs}


def parse_choice_codes(text: str, option: str = "--choice-codes", example: str = "1:0,2:1") -> dict[int, int]:
    """Codes written ``theirs:ours,theirs:ours`` (the CLI's --choice-codes, e.g. 1:0,2:1, and
    --reward-codes, e.g. 100:1,0:0)."""
    try:
        return {int(a): int(b) for a, b in (item.split(":") for item in text.split(","))}
    except ValueError:
        raise DataError(f"{option}: expected file:ours integer pairs such as {example}, got {text!r}") from None


def parse_pair_reward_probs(text: str, study: Study) -> np.ndarray:
    """Each trial's reward probabilities of arm 0 and arm 1 (B, T, 2), from pairs written
    ``p0/p1,p0/p1`` (the CLI's --pair-reward-probs): one pair per condition label of `study`,
    in label order."""
    pairs = [tuple(float(x) for x in item.split("/")) for item in text.split(",")]
    if len(pairs) != study.n_conditions or any(len(p) != 2 for p in pairs):
        raise DataError(f"--pair-reward-probs: expected {study.n_conditions} pairs p0/p1 (conditions "
                        f"{list(study.condition_labels)}), got {text!r}")
    return np.asarray(pairs)[study.condition]


def participant_column(convention: str) -> str:
    """The name of the participant column in files of a convention (CONVENTIONS)."""
    return next(theirs for theirs, ours in CONVENTIONS[convention]["columns"].items() if ours == "participant")


def write_study(study: Study, path: str | os.PathLike) -> None:
    """Write a study as a CSV in the package's format (docs/data.md); missing responses are
    empty cells.

    Parameters
    ----------
    study
        The study.
    path
        The CSV file to write.
    """
    study.to_dataframe().to_csv(path, index=False)


class _Locator:
    """Names a row the way the user sees it: a line of the file or an index label."""

    def __init__(self, label, row_names):
        self.label, self.row_names = label, row_names

    def __call__(self, i, column=None):
        return f"{self.label}, {self.row_names[i]}" + (f", column '{column}'" if column else "")


def _show(value, limit=40):
    """A cell as it appears in a message: quoted, control characters escaped, long text cut."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        return repr(text[:limit]) + f"... ({len(text)} characters)"
    return repr(text)


def _name(column):
    """A column name in a message: as is when plain, else quoted and escaped."""
    return column if column.isprintable() and len(column) <= 40 else _show(column)


def _line_of(data, position):
    """1-based line number of a byte position, counting \\n, \\r\\n and lone \\r as line ends."""
    head = data[:position]
    return head.count(b"\n") + head.count(b"\r") - head.count(b"\r\n") + 1


def _read_csv_text(path):
    """All cells as strings, and each data row's line number in the file."""
    path = os.fspath(path)
    label = f"file '{path}'"
    if not os.path.exists(path):
        raise DataError(f"{label} does not exist")
    if os.path.isdir(path):
        raise DataError(f"{label} is a directory, not a CSV file")
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as err:
        raise DataError(f"{label} could not be opened: {err.strerror or err}") from None
    for bom, encoding in _FOREIGN_BOMS.items():
        if data.startswith(bom):
            raise DataError(f"{label} is {encoding} text; save it as UTF-8 (or ASCII) CSV")
    if b"\0" in data:
        line = _line_of(data, data.index(b"\0"))
        raise DataError(f"{label}, line {line}: not a CSV text file (it contains binary data, "
                        "a NUL byte)")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # the UTF-8 byte order mark; no line of its own
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = _line_of(data, err.start)
        raise DataError(f"{label}, line {line}: not UTF-8 text (byte "
                        f"0x{data[err.start]:02x} cannot be decoded); save the file as UTF-8 "
                        "CSV, or check that it is a CSV file at all") from None
    if not text.strip():
        raise DataError(f"{label} is empty")

    reader = csv.reader(io.StringIO(text, newline=""))
    header, rows, lines = None, [], []
    start = 1  # line on which the next record begins
    try:
        for row in reader:
            first, last, start = start, reader.line_num, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue  # blank line, or a line of empty cells
            where = f"line {first}" if first == last else f"line {first} (to line {last})"
            if header is None:
                # A stray byte order mark (files concatenated) is not part of a name.
                header = [c.replace("\ufeff", "").strip() for c in row]
                _check_header(header, label, where)
                continue
            if len(row) != len(header):
                hint = ("; a quoted field runs over several lines: is a quote (\") unbalanced?"
                        if last > first else "")
                raise DataError(f"{label}, {where}: {len(row)} fields but the header has "
                                f"{len(header)} ({', '.join(map(_name, header))}){hint}")
            rows.append(row)
            lines.append(where)
    except csv.Error as err:
        raise DataError(f"{label}, line {start}: could not be read as CSV text: {err}") from None
    if header is None:
        raise DataError(f"{label} has no header: its lines are blank or hold only empty cells")
    if not rows:
        raise DataError(f"{label} has a header but no data rows")
    return pd.DataFrame(rows, columns=header, dtype=object), lines


def _check_header(header, label, where):
    if len(header) == 1:
        for delimiter, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "'|'")):
            if delimiter in header[0]:
                raise DataError(f"{label}, {where}: the header {_show(header[0], 80)} has no "
                                f"commas; the file seems to be separated by {name}, but "
                                "files in the package's format (docs/data.md) are comma-separated")
    unnamed = [k + 1 for k, c in enumerate(header) if not c]
    if len(unnamed) > 1:
        raise DataError(f"{label}, {where}: header fields {unnamed} have no column name "
                        "(trailing or doubled commas?)")
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise DataError(f"{label}, {where}: duplicated column(s) {duplicated} in the header")


def _is_empty(value):
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, (float, np.floating)) and np.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in _EMPTY


def _number(value, column, where, i):
    """A non-empty cell as a float or (for integer text and integer objects) an int."""
    if isinstance(value, str):
        text = value.strip()
        if _INTEGER.fullmatch(text):
            if len(text.lstrip("+-")) > 30:
                raise DataError(f"{where(i, column)}: {_show(value)} is out of range (too "
                                "many digits)")
            return int(text)
        if _NUMBER.fullmatch(text):
            x = float(text)
            if not np.isfinite(x):
                raise DataError(f"{where(i, column)}: {_show(value)} is not a finite number")
            return x
        try:
            x = float(text)  # accepts e.g. 'inf', '1_0' and non-ASCII digits
        except ValueError:
            raise DataError(f"{where(i, column)}: {_show(value)} is not a number") from None
        if not np.isfinite(x):
            raise DataError(f"{where(i, column)}: {_show(value)} is not a finite number")
        raise DataError(f"{where(i, column)}: {_show(value)} is not a number written with the "
                        "ASCII digits 0-9, '.', and an optional exponent (as in 1.5e-3)")
    if isinstance(value, (int, np.integer)):
        return int(value)
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"{where(i, column)}: {_show(value)} is not a number") from None
    if not np.isfinite(x):
        raise DataError(f"{where(i, column)}: {_show(value)} is not a finite number")
    return x


def _empty_cell(value, column, where, i):
    shown = f" ({_show(value)})" if isinstance(value, str) and value.strip() else ""
    return DataError(f"{where(i, column)}: empty value{shown}, expected a number")


def _parse_numbers(values, column, where, allow_empty):
    """Floats (NaN for empty cells) from a column, naming the first bad cell."""
    out = np.empty(len(values))
    for i, value in enumerate(values):
        if _is_empty(value):
            if not allow_empty:
                raise _empty_cell(value, column, where, i)
            out[i] = np.nan
            continue
        x = _number(value, column, where, i)
        out[i] = float(x) if abs(x) <= 1e300 else np.inf
        if not np.isfinite(out[i]):
            raise DataError(f"{where(i, column)}: {_show(value)} is not a finite number")
    return out


def _parse_codes(values, column, where, allowed, allow_empty):
    """Integer codes from a column restricted to the keys of `allowed`, mapped through it."""
    out = np.full(len(values), -1, np.int8)
    for i, value in enumerate(values):
        if _is_empty(value):
            if not allow_empty:
                raise _empty_cell(value, column, where, i)
            continue
        x = _number(value, column, where, i)
        if x not in allowed:
            raise DataError(f"{where(i, column)}: {_show(value)} is not allowed, expected one of "
                            f"{sorted(allowed)}" + (" or empty" if allow_empty else ""))
        out[i] = allowed[int(x)]
    return out


def _parse_integers(values, column, where):
    """Exact integers from a column (within +-MAX_INT), naming the first bad cell."""
    out = np.empty(len(values), np.int64)
    for i, value in enumerate(values):
        if _is_empty(value):
            raise _empty_cell(value, column, where, i)
        x = _number(value, column, where, i)
        if isinstance(x, float):
            if x != round(x):
                raise DataError(f"{where(i, column)}: {_show(value)} is not an integer")
            x = int(x)
        if abs(x) > MAX_INT:
            raise DataError(f"{where(i, column)}: {_show(value)} is out of range (integers "
                            f"must be within +-2**53)")
        out[i] = x
    return out


def _participant_ids(values, column, where):
    """Participant ids as given, with spaces around text ids removed; each id printed once."""
    ids = []
    for i, pid in enumerate(values):
        if _is_empty(pid):
            raise DataError(f"{where(i, column)}: empty participant id")
        if isinstance(pid, str):
            pid = pid.strip()
        try:
            hash(pid)
        except TypeError:
            raise DataError(f"{where(i, column)}: participant id {_show(pid)} is a "
                            f"{type(pid).__name__}, expected text or a number") from None
        ids.append(pid)
    first_row = {}
    for i, pid in enumerate(ids):
        first_row.setdefault(pid, i)
    by_text = {}
    for pid, i in first_row.items():
        other = by_text.setdefault(str(pid), (pid, i))
        if other[1] != i:
            raise DataError(f"{where(i, column)}: participant id {pid!r} prints the same as id "
                            f"{other[0]!r} ({where.row_names[other[1]]}) but is a different value; "
                            "use one type for the ids")
    return ids


def _condition_labels(values, column, where):
    """Condition index per row and the labels: integer labels sorted when every value is an
    integer, otherwise the text values sorted."""
    texts = []
    for i, value in enumerate(values):
        if _is_empty(value):
            raise DataError(f"{where(i, column)}: empty condition, expected a label (text or a number)")
        texts.append(value.strip() if isinstance(value, str) else value)
    try:
        keys = [int(x) if not isinstance(x, float) or x == int(x) else None for x in
                (float(t) if isinstance(t, str) and _NUMBER.fullmatch(t) else t for t in texts)]
        integer = all(isinstance(k, int) and not isinstance(k, bool) for k in keys)
    except (TypeError, ValueError):
        integer = False
    if not integer:
        keys = [str(t) for t in texts]
    labels = tuple(sorted(set(keys)))
    index = {label: k for k, label in enumerate(labels)}
    return np.array([index[k] for k in keys], np.int32), labels


def _per_participant_constant(values, rows, column, where, pid):
    """The one value a column holds for a participant's rows (q_init), refused when it varies."""
    first = values[rows[0]]
    different = np.flatnonzero(values[rows] != first)
    if different.size:
        raise DataError(f"{where(rows[different[0]], column)}: participant {pid!r} has q_init "
                        f"{values[rows[different[0]]]:g} where earlier rows have {first:g}; q_init is one "
                        "value per participant")
    return first


def _check_trial_numbers(trial, rows, scope, gaps, pid, column, where):
    """Trial numbers of a participant's rows (or of one condition's rows): 1, 2, 3, ... in row
    order, or strictly increasing where trial numbers may skip. Returns how many are skipped."""
    numbers = trial[rows]
    within = "" if scope is None else f" in condition {scope!r}"
    if gaps:
        wrong = np.flatnonzero(np.diff(numbers) <= 0)
        if wrong.size or numbers[0] < 1:
            k = 0 if numbers[0] < 1 else int(wrong[0]) + 1
            raise DataError(f"{where(rows[k], column)}: participant {pid!r} has trial {numbers[k]}{within} "
                            f"after trial {numbers[k - 1] if k else 'none'}; trial numbers must increase "
                            "from 1 in row order (duplicated or unsorted)")
        return int(numbers[-1] - len(numbers))
    expected = np.arange(1, len(rows) + 1)
    wrong = numbers != expected
    if wrong.any():
        k = int(np.argmax(wrong))
        raise DataError(f"{where(rows[k], column)}: participant {pid!r} has trial {numbers[k]}{within} where "
                        f"{expected[k]} was expected; trials must be numbered 1, 2, 3, ... in row order "
                        "(duplicated, unsorted or skipped)")
    return 0


def _to_study(frame, spec, label, where):
    frame = frame.copy()
    frame.columns = [str(c).strip() for c in frame.columns]
    name = {ours: theirs for theirs, ours in spec["columns"].items()}
    needed = [name[c] for c in ("participant", "trial", "choice", "reward")
              if c in name and (c != "trial" or spec["trials"] is not None)]
    absent = [c for c in needed if c not in frame.columns]
    if absent:
        raise DataError(f"{where.label}: missing column(s) {absent} ({label} needs {needed}); found "
                        f"columns {list(frame.columns)}")
    duplicated = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if duplicated:
        raise DataError(f"{where.label}: duplicated column(s) {duplicated}")
    cols = {ours: frame[theirs].tolist() for theirs, ours in spec["columns"].items() if theirs in frame}
    if not cols["participant"]:
        raise DataError(f"{where.label}: no data rows")

    rows_total = len(cols["participant"])
    pids = _participant_ids(cols["participant"], name["participant"], where)
    trial = _parse_integers(cols["trial"], name["trial"], where) if spec["trials"] else None
    choice = _parse_codes(cols["choice"], name["choice"], where, spec["choice_values"], True)
    reward = _parse_codes(cols["reward"], name["reward"], where, spec.get("reward_values", {0: 0, 1: 1}), True)
    # without an rt column the study is choices alone: for the choice-only models
    has_rt = "rt" in cols
    rt = _parse_numbers(cols["rt"], name["rt"], where, allow_empty=True) if has_rt else np.full(rows_total, np.nan)
    block = (_parse_integers(cols["block"], name["block"], where) if "block" in cols
             else np.zeros(rows_total, np.int64))
    condition, labels = (_condition_labels(cols["condition"], name["condition"], where) if "condition" in cols
                         else (np.zeros(rows_total, np.int32), (0,)))
    excluded = (_parse_codes(cols["excluded"], name["excluded"], where, {0: 0, 1: 1}, False) == 1
                if "excluded" in cols else np.zeros(rows_total, bool))
    q_init = _parse_numbers(cols["q_init"], name["q_init"], where, allow_empty=False) if "q_init" in cols else None
    probs = None
    if "p_reward_0" in cols or "p_reward_1" in cols:
        if not ("p_reward_0" in cols and "p_reward_1" in cols):
            raise DataError(f"{where.label}: give both arms' reward probabilities (p_reward_0 and p_reward_1)")
        probs = np.stack([_parse_numbers(cols[c], name[c], where, allow_empty=False)
                          for c in ("p_reward_0", "p_reward_1")], axis=-1)
        bad = np.flatnonzero(((probs < 0) | (probs > 1)).any(axis=1))
        if bad.size:
            k = int(bad[0])
            column = name["p_reward_0"] if not 0 <= probs[k, 0] <= 1 else name["p_reward_1"]
            raise DataError(f"{where(k, column)}: reward probability {probs[k].max():g} is not in [0, 1]")
    if q_init is not None:
        bad = np.flatnonzero((q_init < 0) | (q_init > 1))
        if bad.size:
            raise DataError(f"{where(int(bad[0]), name['q_init'])}: q_init {_show(cols['q_init'][bad[0]])} is "
                            "not in [0, 1]")

    for i in range(rows_total):
        if has_rt and not np.isnan(rt[i]) and not rt[i] > 0:
            raise DataError(f"{where(i, name['rt'])}: rt {_show(cols['rt'][i])} is not > 0 "
                            "seconds")
        if has_rt and rt[i] > MAX_RT:
            raise DataError(f"{where(i, name['rt'])}: rt {_show(cols['rt'][i])} s is over "
                            f"{MAX_RT:g} s; rt must be in seconds (milliseconds?)")
        if has_rt and (choice[i] < 0) != np.isnan(rt[i]):
            has, lacks = ("choice", "rt") if choice[i] >= 0 else ("rt", "choice")
            raise DataError(f"{where(i, name[lacks])}: a {has} without a {lacks}; a missing "
                            f"response leaves '{name['choice']}' and '{name['rt']}' both empty")
        if choice[i] < 0 <= reward[i] and spec.get("missing_rewards") == "ignore":
            reward[i] = -1  # not an outcome: the reader was told so
        if (choice[i] < 0) != (reward[i] < 0):
            problem = ("a response without a reward" if choice[i] >= 0
                       else "a reward for a missing response")
            hint = ("" if choice[i] >= 0 else "; if the file records an outcome on missing responses that is not "
                    "a reward, read it with a column mapping and missing_rewards='ignore' (--missing-rewards ignore)")
            raise DataError(f"{where(i, name['reward'])}: {problem}; the reward is that of the "
                            f"chosen arm and is empty only when the response is missing{hint}")

    participants = list(dict.fromkeys(pids))
    rows_of = {pid: [] for pid in participants}
    for i, pid in enumerate(pids):
        rows_of[pid].append(i)
    n_trials = np.array([len(rows_of[pid]) for pid in participants])
    max_trials = int(n_trials.max())
    n = len(participants)
    out_choice = np.full((n, max_trials), -1, np.int8)
    out_reward = np.full((n, max_trials), -1, np.int8)
    out_rt = np.full((n, max_trials), np.nan)
    out_block = np.zeros((n, max_trials), np.int32)
    out_condition = np.zeros((n, max_trials), np.int32)
    out_excluded = np.zeros((n, max_trials), bool)
    out_q_init = None if q_init is None else np.empty(n)
    out_probs = None if probs is None else np.full((n, max_trials, 2), np.nan)
    absent = np.zeros(n, np.int64)
    for p, pid in enumerate(participants):
        rows = np.array(rows_of[pid])
        if spec["trials"] == "participant":
            absent[p] = _check_trial_numbers(trial, rows, None, spec["gaps"], pid, name["trial"], where)
        elif spec["trials"] == "condition":
            for k in np.unique(condition[rows]):
                absent[p] += _check_trial_numbers(trial, rows[condition[rows] == k], labels[k], spec["gaps"],
                                                  pid, name["trial"], where)
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
        out_condition[p, :m], out_excluded[p, :m] = condition[rows], excluded[rows]
        out_block[p, :m] = index
        out_block[p, m:] = index[-1]
        if q_init is not None:
            out_q_init[p] = _per_participant_constant(q_init, rows, name["q_init"], where, pid)
        if probs is not None:
            out_probs[p, :m] = probs[rows]
    participant = np.empty(n, dtype=object)  # one entry per id, even for tuple ids
    for p, pid in enumerate(participants):
        participant[p] = pid
    return Study(participant=participant, n_trials=n_trials, choice=out_choice, rt=out_rt, reward=out_reward,
                 block=out_block, condition=out_condition, excluded=out_excluded, q_init=out_q_init,
                 condition_labels=labels, absent_trials=absent, arm_probs=out_probs)

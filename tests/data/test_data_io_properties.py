"""Property-based tests of :func:`read_study` over generated, then corrupted, CSV files.

Each example starts from a valid generated study (several participants, 1 to 8 trials each,
rows of participants interleaved or not, an optional block column, missing responses, the
rlddm or HSSM convention, extra columns) written with harmless formatting
variations (column order, BOM, CRLF / CR / mixed line ends, blank and whitespace lines,
quoting, spaces around cells, trailing commas, spellings of empty cells and of equal
numbers). One corruption is then applied. Depending on the corruption the expected outcome is

* ``Ok``: the study reads back exactly as generated (and round-trips through
  ``Study.to_dataframe`` and ``write_study``);
* ``Err``: a :class:`DataError` naming the file, the line of the faulty row ("line N") and the
  faulty column where a row is at fault;
* ``Either``: the corruption may or may not leave a valid file (random text, truncation,
  random bytes): a study that passes all invariants, or a ``DataError`` naming the file.

HDDM's layout (split_by a condition, trials counted within it and allowed to skip) and the
column mappings are tested in test_data_io.py. No input may ever raise anything but
``DataError``. Messages are checked to be printable (control characters escaped) and bounded
in length, and every line they name exists. The generated files are also read through
``pandas.read_csv`` and passed in as DataFrames, with the same rule on exceptions.
"""

import csv
import io
import os
import re
import string
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from amortized_rlddm.data.io import MAX_RT, DataError, read_study, write_study

SETTINGS = dict(derandomize=True, database=None, deadline=None, print_blob=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much,
                                       HealthCheck.function_scoped_fixture])

# Column names per convention (ours -> theirs) and the choice coding written to the file.
NAMES = {
    "rlddm": {"participant": "participant", "trial": "trial", "choice": "choice", "rt": "rt",
              "reward": "reward", "block": "block"},
    "hssm": {"participant": "participant_id", "trial": "trial_id", "choice": "response",
             "rt": "rt", "reward": "feedback", "block": "block"},
}
CHOICE_CODE = {"rlddm": {0: 0, 1: 1}, "hssm": {0: -1, 1: 1}}
REQUIRED = ["participant", "trial", "choice", "rt", "reward"]
EXTRA_COLUMNS = ["cond", "notes", "stim", "Unnamed: 0"]
EMPTY_WORDS = ["", "", "", "NA", "nan", "NaN", "null", "None", "n/a", "N/A", "NULL"]
# The number syntax the reader documents: ASCII decimals with optional sign and exponent.
NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
LINE_BREAK = re.compile(r"\r\n|\r|\n")


def is_number_text(text):
    return NUMBER.fullmatch(text.strip()) is not None


def is_empty_text(text):
    return text.strip().lower() in {w.lower() for w in EMPTY_WORDS}


# ---------------------------------------------------------------------------------------------
# Valid studies
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Trial:
    pid: str
    trial: int
    choice: int | None  # 0 / 1 (our coding) or None for a missing response
    rt: str | None  # as written; its float value is what must be read
    reward: int | None
    block: int | None  # block label, None without a block column


@dataclass
class Doc:
    """A CSV file in the making: a header, rows of cells, and how to write them."""
    convention: str
    header: list  # column names as written
    rows: list  # list of lists of cell text
    origin: list  # per row: the Trial it came from (None for rows that are not trials)
    trials: list  # the valid study, in file order
    with_block: bool
    endings: str = "\n"  # "\n", "\r\n", "\r" or "mixed" (\n and \r\n)
    bom: bool = False
    final_newline: bool = True
    quote_all: bool = False
    pad: bool = False
    trailing_comma: bool = False
    delimiter: str = ","
    blank: dict = field(default_factory=dict)  # record index (-1: before header) -> lines
    mixed_seed: int = 0

    def col(self, ours):
        return self.header.index(NAMES[self.convention][ours])


ID_TEXT = st.text(alphabet=string.ascii_letters + string.digits + "_-. é漢,\"'",
                  min_size=1, max_size=6)
PARTICIPANT_IDS = st.one_of(st.integers(0, 10 ** 6).map(str), ID_TEXT).filter(
    lambda s: s.strip() == s and s and not is_empty_text(s))
RT_VALUES = st.floats(min_value=0.001, max_value=MAX_RT, allow_nan=False)


def rt_text(x, style):
    return {"repr": repr(x), "f3": f"{x:.3f}", "e4": f"{x:.4e}", "g": f"{x:g}"}[style]


@st.composite
def valid_trials(draw, min_trials=1, with_block=None, two_runs=False, max_participants=4):
    """Trials of a valid study in file order."""
    pids = draw(st.lists(PARTICIPANT_IDS, min_size=1, max_size=max_participants, unique=True))
    if with_block is None:
        with_block = draw(st.booleans())
    per_participant = []
    for p, pid in enumerate(pids):
        lo = 3 if (two_runs and p == 0) else min_trials
        n = draw(st.integers(lo, max(lo, 8)))
        if with_block:
            if two_runs and p == 0:
                cuts = [draw(st.integers(1, n - 2))]  # second run has >= 2 trials
            else:
                cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=2))) if n > 1 else []
            labels = draw(st.lists(st.integers(-5, 10 ** 6), min_size=len(cuts) + 1,
                                   max_size=len(cuts) + 1, unique=True))
            block = np.repeat(labels, np.diff([0, *cuts, n])).tolist()
        else:
            block = [None] * n
        trials = []
        for t in range(n):
            if draw(st.integers(0, 4)) == 0:
                trials.append(Trial(pid, t + 1, None, None, None, block[t]))
            else:
                rt = rt_text(draw(RT_VALUES), draw(st.sampled_from(["repr", "f3", "e4", "g"])))
                trials.append(Trial(pid, t + 1, draw(st.integers(0, 1)), rt,
                                    draw(st.integers(0, 1)), block[t]))
        per_participant.append(trials)
    order = draw(st.permutations([p for p, ts in enumerate(per_participant) for _ in ts]))
    if draw(st.booleans()):
        order = sorted(order)  # participant after participant
    position = [0] * len(pids)
    out = []
    for p in order:
        out.append(per_participant[p][position[p]])
        position[p] += 1
    return out, with_block


@st.composite
def docs(draw, min_trials=1, with_block=None, two_runs=False, convention=None,
         max_participants=4):
    trials, with_block = draw(valid_trials(min_trials, with_block, two_runs, max_participants))
    convention = convention or draw(st.sampled_from(sorted(NAMES)))
    names = NAMES[convention]
    ours = REQUIRED + (["block"] if with_block else [])
    extras = draw(st.lists(st.sampled_from(EXTRA_COLUMNS), unique=True, max_size=2))
    columns = draw(st.permutations(ours + extras))
    header = [names.get(c, c) for c in columns]
    rows = []
    for t in trials:
        cells = []
        for c in columns:
            if c == "participant":
                cells.append(t.pid)
            elif c == "trial":
                cells.append(str(t.trial))
            elif c == "choice":
                cells.append(draw(st.sampled_from(EMPTY_WORDS)) if t.choice is None
                             else str(CHOICE_CODE[convention][t.choice]))
            elif c == "rt":
                cells.append(draw(st.sampled_from(EMPTY_WORDS)) if t.rt is None else t.rt)
            elif c == "reward":
                cells.append(draw(st.sampled_from(EMPTY_WORDS)) if t.reward is None
                             else str(t.reward))
            elif c == "block":
                cells.append(str(t.block))
            else:
                cells.append(draw(st.text(st.characters(codec="utf-8", exclude_characters="\0"),
                                          max_size=8)))
        rows.append(cells)
    doc = Doc(convention, header, rows, list(trials), list(trials), with_block)
    doc.endings = draw(st.sampled_from(["\n", "\r\n", "\r", "mixed"]))
    doc.bom, doc.final_newline, doc.quote_all, doc.pad, doc.trailing_comma = (
        draw(st.booleans()) for _ in range(5))
    doc.mixed_seed = draw(st.integers(0, 2 ** 16))
    blanks = draw(st.dictionaries(st.integers(-1, len(rows)),
                                  st.lists(st.sampled_from(["", "  ", "\t", ",,,", ","]),
                                           min_size=1, max_size=2), max_size=3))
    doc.blank = blanks
    return doc


def render(doc):
    """The file's bytes and, per record (0: header, then rows), its first line."""
    def record(cells):
        if doc.pad:
            cells = [f" {c} " for c in cells]
        buf = io.StringIO()
        csv.writer(buf, delimiter=doc.delimiter, lineterminator="\r\n",
                   quoting=csv.QUOTE_ALL if doc.quote_all else csv.QUOTE_MINIMAL).writerow(cells)
        text = buf.getvalue()[:-2]
        return text + doc.delimiter if doc.trailing_comma else text

    rnd = np.random.default_rng(doc.mixed_seed)
    pieces, starts = [], []  # text pieces; character offset of each record
    records = [record(doc.header)] + [record(r) if isinstance(r, list) else r for r in doc.rows]
    items = [("blank", b) for b in doc.blank.get(-1, [])]
    for k, rec in enumerate(records):
        items.append(("record", rec))
        items += [("blank", b) for b in doc.blank.get(k, [])]
    offset = 0
    for n, (kind, text) in enumerate(items):
        if kind == "record":
            starts.append(offset)
        ending = doc.endings if doc.endings != "mixed" else ("\n", "\r\n")[rnd.integers(2)]
        if n == len(items) - 1 and not doc.final_newline:
            ending = ""
        pieces.append(text + ending)
        offset += len(text) + len(ending)
    text = "".join(pieces)
    lines = [len(LINE_BREAK.findall(text[:s])) + 1 for s in starts]
    bom = "\ufeff" if doc.bom else ""
    return (bom + text).encode("utf-8"), lines, [len(bom) + s for s in starts], bom + text


# ---------------------------------------------------------------------------------------------
# Expected outcomes and their checks
# ---------------------------------------------------------------------------------------------

@dataclass
class Ok:
    trials: list  # the study that must be read


@dataclass
class Err:
    row: int | None = None  # record index (0: header, k: k-th data row) whose line is named
    column: str | None = None  # locator column: ", column 'X'"
    names: tuple = ()  # names that must appear quoted (repr) in the message
    needles: tuple = ()  # substrings of the message


@dataclass
class Either:
    min_row: int | None = None  # any line named is at or after this record's line
    ok_except_last: bool = False  # a study read must match, except maybe the last row
    trials: list | None = None  # the study before the corruption (for ok_except_last)


def expected_arrays(trials):
    pids = list(dict.fromkeys(t.pid for t in trials))
    rows = {p: [t for t in trials if t.pid == p] for p in pids}
    n = np.array([len(rows[p]) for p in pids])
    shape = (len(pids), n.max())
    choice, reward = np.full(shape, -1, np.int8), np.full(shape, -1, np.int8)
    rt, block = np.full(shape, np.nan), np.zeros(shape, np.int32)
    for i, p in enumerate(pids):
        run, previous = 0, None
        for k, t in enumerate(rows[p]):
            if k and t.block != previous:
                run += 1
            previous = t.block
            block[i, k:] = run
            if t.choice is not None:
                choice[i, k], reward[i, k] = t.choice, t.reward
                rt[i, k] = np.nan if t.rt is None else float(t.rt)  # None: choices alone
    return pids, n, choice, reward, rt, block


def assert_same_study(got, expected):
    assert [str(p) for p in got.participant] == [str(p) for p in expected.participant]
    np.testing.assert_array_equal(got.n_trials, expected.n_trials)
    np.testing.assert_array_equal(got.choice, expected.choice)
    np.testing.assert_array_equal(got.reward, expected.reward)
    np.testing.assert_array_equal(got.block, expected.block)
    np.testing.assert_array_equal(got.rt, expected.rt)  # NaN positions equal too


def check_invariants(study, tmp_dir):
    """What every study read must satisfy, and that it round-trips through a DataFrame/CSV."""
    valid, missing = study.valid, study.choice < 0
    assert study.n_participants >= 1 and (study.n_trials >= 1).all()
    assert study.max_trials == study.n_trials.max()
    ids = [str(p) for p in study.participant]
    assert len(set(ids)) == len(ids) and all(i == i.strip() and i for i in ids)
    assert set(np.unique(study.choice)) <= {-1, 0, 1}
    assert set(np.unique(study.reward)) <= {-1, 0, 1}
    assert (study.choice[~valid] == -1).all() and (study.reward[~valid] == -1).all()
    assert np.isnan(study.rt[~valid]).all()
    np.testing.assert_array_equal(study.reward < 0, missing)
    if study.has_rt:
        np.testing.assert_array_equal(np.isnan(study.rt), missing)
        rt = study.rt[~missing]
        assert (rt > 0).all() and (rt <= MAX_RT).all()
    else:  # choices alone: no response has an RT
        assert np.isnan(study.rt).all()
    assert (study.block[:, 0] == 0).all()
    assert set(np.unique(np.diff(study.block, axis=1))) <= {0, 1}
    assert_same_study(read_study(study.to_dataframe()), study)
    path = tmp_dir / "round trip.csv"
    write_study(study, path)
    assert_same_study(read_study(path), study)


def check_ok(study, trials, tmp_dir):
    pids, n, choice, reward, rt, block = expected_arrays(trials)
    assert [str(p) for p in study.participant] == pids
    np.testing.assert_array_equal(study.n_trials, n)
    np.testing.assert_array_equal(study.choice, choice)
    np.testing.assert_array_equal(study.reward, reward)
    np.testing.assert_array_equal(study.rt, rt)  # exact, NaN where missing or padding
    np.testing.assert_array_equal(study.block, block)
    # Study.to_dataframe gives the generated trials, participant after participant.
    frame = study.to_dataframe()
    want = sorted(trials, key=lambda t: (pids.index(t.pid), t.trial))
    assert frame["participant"].tolist() == [t.pid for t in want]
    assert frame["trial"].tolist() == [t.trial for t in want]
    assert [None if pd.isna(c) else int(c) for c in frame["choice"]] == [t.choice for t in want]
    assert [None if pd.isna(c) else int(c) for c in frame["reward"]] == [t.reward for t in want]
    rts = frame["rt"] if "rt" in frame else np.full(len(frame), np.nan)  # no rt column: choices alone
    assert [None if np.isnan(x) else x for x in rts] == [None if t.rt is None else float(t.rt) for t in want]
    check_invariants(study, tmp_dir)


def check_message(msg, path, data):
    assert f"file '{path}'" in msg, msg
    assert msg.isprintable(), msg
    assert len(msg) < 2000, msg
    n_lines = len(LINE_BREAK.findall(data.decode("utf-8", "replace"))) + 1
    for line in re.findall(r"\bline (\d+)", msg):
        assert 1 <= int(line) <= n_lines, msg


def first_line(msg):
    found = re.search(r"\bline (\d+)", msg)
    return int(found.group(1)) if found else None


def run_case(data, outcome, convention, path, lines=None, tmp_dir=None):
    """Write `data`, read it, and check the outcome; then the same through pandas."""
    path.write_bytes(data)
    note(f"file bytes: {data!r}")
    note(f"expected: {outcome!r}")
    try:
        study = read_study(path, convention=convention)
    except DataError as err:
        msg = str(err)
        note(f"DataError: {msg}")
        check_message(msg, path, data)
        assert not isinstance(outcome, Ok), msg
        if isinstance(outcome, Err):
            if outcome.row is not None:
                assert first_line(msg) == lines[outcome.row], (lines[outcome.row], msg)
            if outcome.column is not None:
                assert f", column '{outcome.column}'" in msg, msg
            for name in outcome.names:
                assert repr(name) in msg, (name, msg)
            for needle in outcome.needles:
                assert needle in msg, (needle, msg)
        elif outcome.min_row is not None and first_line(msg) is not None:
            assert first_line(msg) >= lines[outcome.min_row], msg
    else:
        assert not isinstance(outcome, Err), f"no DataError, read {study}"
        if isinstance(outcome, Ok):
            check_ok(study, outcome.trials, tmp_dir)
        else:
            check_invariants(study, tmp_dir)
            if outcome.ok_except_last:
                check_all_but_last(study, outcome)
    through_pandas(data, convention)


def check_all_but_last(study, outcome):
    trials = outcome.trials
    pids, n, choice, reward, rt, block = expected_arrays(trials[:-1]) if len(trials) > 1 else (
        [], [], None, None, None, None)
    got = [str(p) for p in study.participant]
    for i, pid in enumerate(pids):
        j = got.index(pid)
        m = n[i]
        assert study.n_trials[j] >= m
        np.testing.assert_array_equal(study.choice[j, :m], choice[i, :m])
        np.testing.assert_array_equal(study.rt[j, :m], rt[i, :m])


def through_pandas(data, convention):
    """The same bytes read by pandas, then given to read_study as a DataFrame."""
    try:
        frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False,
                            encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError):
        return
    try:
        read_study(frame, convention=convention)
    except DataError as err:
        msg = str(err)
        assert msg.startswith("DataFrame"), msg
        assert msg.isprintable() and len(msg) < 2000, msg


@pytest.fixture(scope="module")
def tmp_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("props")


@pytest.fixture(scope="module")
def path(tmp_dir):
    return tmp_dir / "study data é 1.csv"  # a name with a space and a non-ASCII letter


# ---------------------------------------------------------------------------------------------
# Corruptions: each draws a Doc, changes it, and says what reading it must give
# ---------------------------------------------------------------------------------------------

def numeric_columns(doc):
    return ["trial", "choice", "rt", "reward"] + (["block"] if doc.with_block else [])


def pick_row(draw, doc):
    return draw(st.integers(0, len(doc.rows) - 1))


def set_cell(doc, row, ours, value):
    doc.rows[row] = list(doc.rows[row])
    doc.rows[row][doc.col(ours)] = value


def harmless(draw):
    doc = draw(docs())
    return doc, Ok(doc.trials)


def equal_numbers(draw):
    """Cells rewritten as other spellings of the same number: harmless."""
    doc = draw(docs())
    for _ in range(draw(st.integers(1, 4))):
        k = pick_row(draw, doc)
        ours = draw(st.sampled_from(numeric_columns(doc)))
        cell = doc.rows[k][doc.col(ours)]
        if is_empty_text(cell):
            continue
        d = Decimal(cell)
        spelled = draw(st.sampled_from([f"{d:e}", f"+{d}" if d >= 0 else f"{d}",
                                        f"{d}.0" if "." not in cell and "e" not in cell.lower()
                                        else f"{d}0", f"0{d}" if d >= 0 else cell]))
        try:
            same = Decimal(spelled) == d
        except InvalidOperation:
            same = False
        if same:
            set_cell(doc, k, ours, spelled)
    return doc, Ok(doc.trials)


def delete_column(draw):
    doc = draw(docs())
    ours = draw(st.sampled_from(REQUIRED))
    name = NAMES[doc.convention][ours]
    drop_column(doc, doc.header.index(name))
    if ours == "rt":  # choices alone, for the choice-only models
        return doc, Ok([replace(t, rt=None) for t in doc.trials])
    return doc, Err(names=(name,), needles=("missing column",))


def drop_column(doc, j):
    doc.header = doc.header[:j] + doc.header[j + 1:]
    doc.rows = [r[:j] + r[j + 1:] for r in doc.rows]


def delete_block(draw):
    doc = draw(docs(with_block=True))
    drop_column(doc, doc.col("block"))
    return doc, Ok([replace(t, block=None) for t in doc.trials])


def rename_column(draw):
    doc = draw(docs())
    ours = draw(st.sampled_from(REQUIRED))
    name = NAMES[doc.convention][ours]
    new = draw(st.one_of(
        st.sampled_from([name.upper(), name.capitalize(), f" {name} ", f"{name}_", "\ufeff" + name,
                         *(n[ours] for n in NAMES.values()), "block", "split_by"]),
        st.text(st.characters(codec="utf-8", exclude_characters="\r\n\0"), min_size=1,
                max_size=10)))
    seen = new.replace("\ufeff", "").strip()
    if not seen:
        new, seen = name + "?", name + "?"
    others = [c.strip() for c in doc.header if c != name]
    doc.header = [new if c == name else c for c in doc.header]
    if seen == name:
        return doc, Ok(doc.trials)
    if seen in others:
        return doc, Err(row=0, names=(seen,), needles=("duplicated column",))
    if ours == "rt":  # the rt column gone: choices alone, unless the new name is another column's
        known = {n for names in NAMES.values() for n in names.values()} | {"block", "split_by", "condition",
                                                                          "excluded", "q_init"}
        return doc, Either() if seen in known else Ok([replace(t, rt=None) for t in doc.trials])
    return doc, Err(names=(name,), needles=("missing column",))


def duplicate_column(draw):
    doc = draw(docs())
    j = draw(st.integers(0, len(doc.header) - 1))
    at = draw(st.integers(0, len(doc.header)))
    name = doc.header[j]
    doc.header = doc.header[:at] + [name] + doc.header[at:]
    doc.rows = [r[:at] + [r[j]] + r[at:] for r in doc.rows]
    return doc, Err(row=0, names=(name,), needles=("duplicated column",))


NOT_NUMBERS = st.text(max_size=12).filter(
    lambda s: not is_number_text(s) and not is_empty_text(s) and "\0" not in s)
SPECIAL = ["inf", "-inf", "Infinity", "+inf", "1e400", "-1e400", "9" * 400, "1_0", "١", "１",
           "½", "²", "0x1", "1.5.2", "--1", "1e", "e3", ".", "1,5", "0,5", "١٫٥", "1 0", "TRUE",
           "yes", "٣", "𝟙", "0.5\u200b", "\ufeff1", "1\xa0000", "0b1", "1e+", "+-1", "∞"]


def cell_not_a_number(draw):
    doc = draw(docs())
    k = pick_row(draw, doc)
    ours = draw(st.sampled_from(numeric_columns(doc)))
    value = draw(st.one_of(st.sampled_from(SPECIAL), NOT_NUMBERS))
    set_cell(doc, k, ours, value)
    return doc, Err(row=k + 1, column=NAMES[doc.convention][ours])


OUT_OF_DOMAIN = {
    "rt": ["0", "-0.5", "-0", "0.0", "0e0", "1e-400", "60.0001", "61", "523", "1e3", "-1e-3",
           "6e1000", "1e300"],
    "choice": ["2", "-1", "0.5", "1.5", "10", "-2", "1e1", "0.999", "1e300"],
    "choice_hssm": ["0", "2", "-2", "0.5", "0.0", "-0", "1e300"],
    "reward": ["2", "-1", "0.5", "5", "1.01", "-0.5", "1e300"],
    "block": ["1e20", "100000000000000000000", "-1e300", "9007199254740993", "1.5", "2.5e0",
              "1e-300"],
}


def cell_out_of_domain(draw):
    doc = draw(docs())
    k = pick_row(draw, doc)
    ours = draw(st.sampled_from(numeric_columns(doc)))
    if ours == "trial":
        t = doc.origin[k].trial
        value = draw(st.one_of(st.integers(-3, 12).filter(lambda x: x != t).map(str),
                               st.just(f"{t}.5"), st.just(f"{t + 1e-9!r}"),
                               st.just(str(2 ** 64 + t)), st.just(f"{t}e300")))
    else:
        key = "choice_hssm" if ours == "choice" and doc.convention == "hssm" else ours
        value = draw(st.sampled_from(OUT_OF_DOMAIN[key]))
    set_cell(doc, k, ours, value)
    return doc, Err(row=k + 1, column=NAMES[doc.convention][ours])


def one_of_three_empty(draw):
    """Only one of choice / rt / reward empty, or only one filled on a missing response."""
    doc = draw(docs())
    k = pick_row(draw, doc)
    ours = draw(st.sampled_from(["choice", "rt", "reward"]))
    names = NAMES[doc.convention]
    if doc.origin[k].choice is not None:
        set_cell(doc, k, ours, draw(st.sampled_from(EMPTY_WORDS)))
        faulty = ours
    else:
        value = {"choice": str(CHOICE_CODE[doc.convention][1]), "rt": "0.5", "reward": "0"}[ours]
        set_cell(doc, k, ours, value)
        faulty = {"choice": "rt", "rt": "choice", "reward": "reward"}[ours]
    return doc, Err(row=k + 1, column=names[faulty])


def rows_of(doc, pid):
    return [k for k, t in enumerate(doc.origin) if t is not None and t.pid == pid]


def shuffle_trials(draw):
    doc = draw(docs(min_trials=2))
    pid = doc.trials[0].pid
    ks = rows_of(doc, pid)
    order = draw(st.permutations(ks).filter(lambda o: list(o) != ks))
    rows, origin = list(doc.rows), list(doc.origin)
    for k, src in zip(ks, order):
        rows[k], origin[k] = doc.rows[src], doc.origin[src]
    doc.rows, doc.origin = rows, origin
    bad = next(k for j, k in enumerate(ks) if origin[k].trial != j + 1)
    return doc, Err(row=bad + 1, column=NAMES[doc.convention]["trial"], needles=("trial",))


def duplicate_row(draw):
    doc = draw(docs())
    k = pick_row(draw, doc)
    at = draw(st.integers(k + 1, len(doc.rows)))
    doc.rows.insert(at, doc.rows[k])
    doc.origin.insert(at, doc.origin[k])
    return doc, Err(row=at + 1, column=NAMES[doc.convention]["trial"])


def skip_row(draw):
    doc = draw(docs())
    k = pick_row(draw, doc)
    gone = doc.origin[k]
    del doc.rows[k], doc.origin[k]
    later = [j for j in rows_of(doc, gone.pid) if j >= k]
    if later:
        return doc, Err(row=later[0] + 1, column=NAMES[doc.convention]["trial"])
    if not doc.rows:
        return doc, Err(needles=("no data rows",))
    return doc, Ok([t for t in doc.trials if t is not gone])


def interleave_blocks(draw):
    doc = draw(docs(with_block=True, two_runs=True))
    eligible = []  # (row, label of the participant's first block): rows inside a later block
    for pid in dict.fromkeys(t.pid for t in doc.trials):
        ks = rows_of(doc, pid)
        labels = [doc.origin[k].block for k in ks]
        runs = np.cumsum([0] + [a != b for a, b in zip(labels, labels[1:])])
        eligible += [(ks[j], labels[0]) for j in range(1, len(ks))
                     if runs[j] >= 1 and runs[j - 1] == runs[j]]
    k, label = draw(st.sampled_from(eligible))
    set_cell(doc, k, "block", str(label))
    return doc, Err(row=k + 1, column=NAMES[doc.convention]["block"],
                    needles=("returns to block",))


def extra_or_missing_field(draw):
    doc = draw(docs())
    k = pick_row(draw, doc)
    how = draw(st.sampled_from(["extra", "missing", "trailing_on_row", "trailing_on_header"]))
    if how == "extra":
        doc.rows[k] = doc.rows[k] + [draw(st.text(max_size=5))]
    elif how == "missing":
        doc.rows[k] = doc.rows[k][:-1]
    elif how == "trailing_on_row":
        doc.rows[k] = doc.rows[k] + [""]
    else:
        doc.trailing_comma = False
        doc.header = doc.header + [""]
        return doc, Err(row=1, needles=("fields",))
    return doc, Err(row=k + 1, needles=("fields",))


def other_delimiter(draw):
    doc = draw(docs())
    doc.delimiter = draw(st.sampled_from([";", "\t"]))
    return doc, Err(row=0, needles=("separated by",))


def repeated_header(draw):
    """Two files concatenated: the header appears again among the rows."""
    doc = draw(docs())
    at = draw(st.integers(0, len(doc.rows) - 1))
    copy = list(doc.header)
    if draw(st.booleans()):
        copy[0] = "\ufeff" + copy[0]
    doc.rows.insert(at, copy)
    doc.origin.insert(at, None)
    return doc, Err(row=at + 1, column=NAMES[doc.convention]["trial"])


def empty_participant(draw):
    doc = draw(docs())
    k = pick_row(draw, doc)
    set_cell(doc, k, "participant", draw(st.sampled_from(EMPTY_WORDS + ["  ", "\t"])))
    return doc, Err(row=k + 1, column=NAMES[doc.convention]["participant"],
                    needles=("empty participant id",))


def random_participant(draw):
    doc = draw(docs())
    k = pick_row(draw, doc)
    set_cell(doc, k, "participant", draw(st.text(max_size=6).filter(lambda s: "\0" not in s)))
    return doc, Either(min_row=k + 1)


def random_cell(draw):
    """Any cell, any text: valid or not, the outcome is a study or a DataError."""
    doc = draw(docs())
    for _ in range(draw(st.integers(1, 3))):
        k = pick_row(draw, doc)
        j = draw(st.integers(0, len(doc.header) - 1))
        value = draw(st.one_of(st.text(max_size=10), st.sampled_from(SPECIAL + EMPTY_WORDS),
                               st.integers(-2, 70).map(str),
                               st.floats(allow_nan=True).map(repr)).filter(
            lambda s: "\0" not in s))
        doc.rows[k] = list(doc.rows[k])
        doc.rows[k][j] = value
    return doc, Either()


def wrong_convention(draw):
    doc = draw(docs())
    other = draw(st.sampled_from(sorted(set(NAMES) - {doc.convention})))
    doc.read_as = other
    return doc, Err(needles=("missing column",))


def huge_cell(draw):
    doc = draw(docs(max_participants=2))
    k = pick_row(draw, doc)
    ours = draw(st.sampled_from(REQUIRED))
    set_cell(doc, k, ours, draw(st.sampled_from(["5", "x", "1e"])) * 200_000)
    return doc, Err(row=k + 1)


# Corruptions applied to the rendered bytes: (doc, outcome, function(data, lines, starts, text))
def truncate(draw):
    doc = draw(docs())
    return doc, Either(min_row=len(doc.rows), ok_except_last=True), "truncate"


def bad_byte(draw):
    doc = draw(docs())
    k = draw(st.integers(1, len(doc.rows)))
    byte = draw(st.sampled_from([b"\0", b"\xff", b"\xc3", b"\x80", b"\xfe"]))
    return doc, Err(row=k, needles=("binary",) if byte == b"\0" else ("UTF-8",)), ("byte", k, byte)


def unbalanced_quote(draw):
    doc = draw(docs())
    doc.quote_all = False
    k = draw(st.integers(1, len(doc.rows)))
    return doc, Either(min_row=k), ("quote", k)


def garbage_line(draw):
    doc = draw(docs())
    k = draw(st.integers(1, len(doc.rows)))
    junk = draw(st.text(st.characters(codec="utf-8", exclude_characters="\r\n\0"), max_size=20))
    return doc, Either(min_row=k), ("garbage", k, junk)


def apply_bytes(draw, how, data, starts, text):
    if how == "truncate":
        start = starts[-1]
        end = start + len(text[start:].split("\n")[0].split("\r")[0])
        if end - start < 2:
            return data
        cut = draw(st.integers(start + 1, end - 1))
        return text[:cut].encode("utf-8")
    kind, k = how[0], how[1]
    char = starts[k] + (draw(st.integers(0, 3)) if kind == "byte" else 0)
    at = len(text[:char].encode("utf-8"))
    if kind == "byte":
        return data[:at] + how[2] + data[at:]
    if kind == "quote":
        return data[:at] + b'"' + data[at:]
    junk = how[2].encode("utf-8") + ("\r" if "\n" not in text else "\n").encode()
    return data[:at] + junk + data[at:]


CORRUPTIONS = {f.__name__: f for f in [
    harmless, equal_numbers, delete_column, delete_block, rename_column, duplicate_column,
    cell_not_a_number, cell_out_of_domain, one_of_three_empty, shuffle_trials, duplicate_row,
    skip_row, interleave_blocks, extra_or_missing_field, other_delimiter, repeated_header,
    empty_participant, random_participant, random_cell, wrong_convention, huge_cell,
    truncate, bad_byte, unbalanced_quote, garbage_line]}
# Examples per corruption; the whole file runs in well under a minute. For a deeper search
# run with DATA_IO_PROPERTY_SCALE=10 (still deterministic).
SCALE = float(os.environ.get("DATA_IO_PROPERTY_SCALE", "1"))
EXAMPLES = {"harmless": 100, "equal_numbers": 40, "random_cell": 60, "huge_cell": 5,
            "random_participant": 40}


def examples(n):
    return max(1, round(n * SCALE))


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_corrupted_files(kind, path, tmp_dir):
    @settings(max_examples=examples(EXAMPLES.get(kind, 25)), **SETTINGS)
    @given(st.data())
    def check(data):
        made = CORRUPTIONS[kind](data.draw)
        doc, outcome = made[0], made[1]
        raw, lines, starts, text = render(doc)
        if len(made) > 2:
            raw = apply_bytes(data.draw, made[2], raw, starts, text)
            if isinstance(outcome, Either):
                outcome.trials = doc.trials
        run_case(raw, outcome, getattr(doc, "read_as", doc.convention), path, lines, tmp_dir)

    check()


# ---------------------------------------------------------------------------------------------
# Whole-file oddities
# ---------------------------------------------------------------------------------------------

WHITESPACE = st.text(alphabet=" \t\r\n\u3000\xa0\x0b\x0c", max_size=20)


@settings(max_examples=examples(30), **SETTINGS)
@given(st.data())
def test_empty_files(path, data):
    body = data.draw(WHITESPACE)
    raw = data.draw(st.sampled_from([b"", b"\xef\xbb\xbf"])) + body.encode("utf-8")
    run_case(raw, Err(needles=("empty",)), "rlddm", path)


@settings(max_examples=examples(40), **SETTINGS)
@given(st.data())
def test_header_only_files(path, data):
    doc = data.draw(docs())
    doc.rows, doc.origin = [], []
    blank = data.draw(st.lists(st.sampled_from(["", " ", ",,,,", "\t"]), max_size=3))
    doc.blank = {0: blank} if blank else {}
    raw, *_ = render(doc)
    run_case(raw, Err(needles=("no data rows",)), doc.convention, path)


@settings(max_examples=examples(60), **SETTINGS)
@given(st.binary(max_size=300), st.sampled_from(sorted(NAMES)))
def test_random_bytes(path, tmp_dir, raw, convention):
    run_case(raw, Either(), convention, path, tmp_dir=tmp_dir)


CSVISH = st.text(alphabet=",;\"\r\n \t01.-e5NAnaparticiptrlohcedwbk_", max_size=120)


@settings(max_examples=examples(60), **SETTINGS)
@given(st.sampled_from(sorted(NAMES)), st.booleans(), CSVISH)
def test_random_csv_like_text(path, tmp_dir, convention, with_header, body):
    names = NAMES[convention]
    head = ",".join(names[c] for c in REQUIRED) + "\n" if with_header else ""
    run_case((head + body).encode("utf-8"), Either(), convention, path, tmp_dir=tmp_dir)


@settings(max_examples=examples(20), **SETTINGS)
@given(st.sampled_from([b"\xff\xfe", b"\xfe\xff", b"\xff\xfe\x00\x00"]), st.data())
def test_utf16_and_utf32_files(path, bom, data):
    doc = data.draw(docs())
    raw, *_ = render(doc)
    text = raw.decode("utf-8-sig")
    encoding = {b"\xff\xfe": "utf-16-le", b"\xfe\xff": "utf-16-be",
                b"\xff\xfe\x00\x00": "utf-32-le"}[bom]
    run_case(bom + text.encode(encoding), Err(needles=("UTF-",)), doc.convention, path)


# ---------------------------------------------------------------------------------------------
# DataFrames holding cells of any Python type
# ---------------------------------------------------------------------------------------------

ODD_VALUES = st.one_of(
    st.none(), st.just(np.nan), st.just(pd.NA), st.booleans(), st.integers(),
    st.integers(min_value=2 ** 63, max_value=10 ** 400), st.floats(), st.text(max_size=8),
    st.binary(max_size=4), st.decimals(), st.sampled_from(
        [[1], (1,), (0, 1), {"a": 1}, {1}, np.int64(1), np.uint64(2 ** 64 - 1), np.float32(0.5),
         np.bool_(True), np.datetime64("2020-01-01"), pd.Timestamp(0), pd.NaT, complex(1, 0),
         np.array([1.0]), object()]))


@settings(max_examples=examples(60), **SETTINGS)
@given(valid_trials(), st.data())
def test_dataframe_cells_of_any_type(tmp_dir, made, data):
    trials, with_block = made
    frame = pd.DataFrame({
        "participant": [t.pid for t in trials], "trial": [t.trial for t in trials],
        "choice": [t.choice for t in trials], "rt": [None if t.rt is None else float(t.rt)
                                                     for t in trials],
        "reward": [t.reward for t in trials],
        **({"block": [t.block for t in trials]} if with_block else {})}, dtype=object)
    frame.index = [f"r{k}" for k in range(len(frame))]  # labels the messages must use
    for _ in range(data.draw(st.integers(1, 2))):
        k = data.draw(st.integers(0, len(frame) - 1))
        column = data.draw(st.sampled_from(list(frame.columns)))
        frame.iat[k, frame.columns.get_loc(column)] = data.draw(ODD_VALUES)
    try:
        study = read_study(frame)
    except DataError as err:
        msg = str(err)
        note(f"DataError: {msg}")
        assert msg.startswith("DataFrame"), msg
        assert msg.isprintable() and len(msg) < 2000, msg
        for label in re.findall(r"\brow '([^']*)'", msg):
            assert label in frame.index, msg
    else:
        check_invariants(study, tmp_dir)


def test_directory_instead_of_file(tmp_dir):
    with pytest.raises(DataError, match="is a directory"):
        read_study(tmp_dir)

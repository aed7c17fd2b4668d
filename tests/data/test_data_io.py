"""Reading and writing trial data (docs/data.md): round trips, conventions and validation."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from amortized_rlddm.data.io import DataError, parse_choice_codes, parse_columns, read_study, write_study
from amortized_rlddm.model.simulator import simulate
from amortized_rlddm.model.task import Pair, TaskDesign

REAL = Path(__file__).resolve().parents[3] / "shared" / "real"

PARAMS = {
    "v": np.array([1.0, -0.5, 2.5]),
    "a": np.array([1.5, 2.0, 1.2]),
    "z": np.array([0.5, 0.6, 0.4]),
    "t0": np.array([0.3, 0.4, 0.25]),
    "alpha": np.array([0.3, 0.6, 0.1]),
}

DESIGNS = {
    "deadline": TaskDesign(n_trials=(15, 25), deadline=1.0),
    "two_blocks": TaskDesign(n_trials=(15, 25), n_blocks=2),
    "default": TaskDesign(n_trials=(15, 25)),
    "pairs": TaskDesign(n_trials=(15, 25), pairs=[Pair((0.8, 0.2), None), Pair((0.7, 0.3), None),
                                                  Pair((0.6, 0.4), 4)]),
}


def simulated(kind, seed=7):
    return simulate(PARAMS, DESIGNS[kind], seed=seed)


def assert_same_study(got, expected):
    """Same participants (compared as text), trial counts, and responses on the real trials."""
    assert [str(p) for p in got.participant] == [str(p) for p in expected.participant]
    np.testing.assert_array_equal(got.n_trials, expected.n_trials)
    assert got.max_trials == expected.max_trials
    valid = expected.valid
    np.testing.assert_array_equal(got.valid, valid)
    np.testing.assert_array_equal(got.choice[valid], expected.choice[valid])
    np.testing.assert_array_equal(got.reward[valid], expected.reward[valid])
    np.testing.assert_array_equal(got.block[valid], expected.block[valid])
    np.testing.assert_array_equal(got.condition[valid], expected.condition[valid])
    np.testing.assert_array_equal(got.excluded[valid], expected.excluded[valid])
    np.testing.assert_array_equal(got.missing, expected.missing)
    assert np.array_equal(np.isnan(got.rt[valid]), np.isnan(expected.rt[valid]))
    assert np.allclose(got.rt[valid], expected.rt[valid], equal_nan=True, rtol=1e-12, atol=0)


# ---------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(DESIGNS))
def test_csv_round_trip(tmp_path, kind):
    study = simulated(kind)
    if kind == "deadline":
        n_missing = int(study.missing.sum())
        assert 0 < n_missing < int(study.valid.sum()), "the deadline should remove some responses"
    if kind == "two_blocks":
        assert set(np.unique(study.block[study.valid])) == {0, 1}
    path = tmp_path / "study.csv"
    write_study(study, path)
    back = read_study(path)
    assert_same_study(back, study)
    # Padding of the read study follows the Study conventions.
    pad = ~back.valid
    assert (back.choice[pad] == -1).all() and (back.reward[pad] == -1).all()
    assert np.isnan(back.rt[pad]).all()
    # Padding positions continue the last block, as in the simulator.
    np.testing.assert_array_equal(back.block, study.block)


def test_round_trip_with_string_path(tmp_path):
    study = simulated("default")
    path = str(tmp_path / "study.csv")
    write_study(study, path)
    assert_same_study(read_study(path), study)


def test_written_csv_has_design_columns_and_empty_cells_for_missing(tmp_path):
    study = simulated("deadline")
    path = tmp_path / "study.csv"
    write_study(study, path)
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(raw.columns)[:5] == ["participant", "trial", "choice", "rt", "reward"]
    missing_rows = raw[raw["choice"] == ""]
    assert len(missing_rows) == int(study.missing.sum())
    assert (missing_rows["rt"] == "").all() and (missing_rows["reward"] == "").all()
    # Trials are 1-based and consecutive within participant.
    for _, rows in raw.groupby("participant", sort=False):
        assert rows["trial"].astype(int).tolist() == list(range(1, len(rows) + 1))


def test_block_column_only_when_blocks_exist(tmp_path):
    one = simulated("default").to_dataframe()
    two = simulated("two_blocks").to_dataframe()
    assert "block" not in one.columns
    assert "block" in two.columns


@pytest.mark.parametrize("kind", sorted(DESIGNS))
def test_dataframe_input_same_as_csv(tmp_path, kind):
    study = simulated(kind)
    path = tmp_path / "study.csv"
    write_study(study, path)
    from_csv = read_study(path)
    from_frame = read_study(study.to_dataframe())
    assert_same_study(from_frame, study)
    assert_same_study(from_frame, from_csv)
    # A frame read by pandas with its default NaN handling works the same.
    from_pandas = read_study(pd.read_csv(path))
    assert_same_study(from_pandas, from_csv)


def test_dataframe_with_non_default_index(tmp_path):
    study = simulated("deadline")
    frame = study.to_dataframe()
    frame.index = frame.index + 100
    assert_same_study(read_study(frame), study)


def test_missing_responses_written_as_empty_cells_read_back_as_missing(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("participant,trial,choice,rt,reward\n"
                    "s1,1,0,0.5,1\n"
                    "s1,2,,,\n"
                    "s1,3,1,0.7,0\n"
                    "s2,1,,,\n"
                    "s2,2,1,1.25,1\n")
    study = read_study(path)
    assert list(study.participant) == ["s1", "s2"]
    np.testing.assert_array_equal(study.n_trials, [3, 2])
    np.testing.assert_array_equal(study.choice, [[0, -1, 1], [-1, 1, -1]])
    np.testing.assert_array_equal(study.reward, [[1, -1, 0], [-1, 1, -1]])
    assert np.isnan(study.rt[0, 1]) and np.isnan(study.rt[1, 0]) and np.isnan(study.rt[1, 2])
    assert study.rt[0, 0] == 0.5 and study.rt[0, 2] == 0.7 and study.rt[1, 1] == 1.25
    np.testing.assert_array_equal(study.missing, [[False, True, False], [True, False, False]])
    np.testing.assert_array_equal(study.block, np.zeros((2, 3)))


def test_missing_responses_in_dataframe_as_nan_and_none():
    frame = pd.DataFrame({"participant": [1, 1, 1], "trial": [1, 2, 3],
                          "choice": [1, None, np.nan], "rt": [0.4, np.nan, None],
                          "reward": [0, pd.NA, None]})
    study = read_study(frame)
    np.testing.assert_array_equal(study.choice, [[1, -1, -1]])
    np.testing.assert_array_equal(study.reward, [[0, -1, -1]])
    assert np.isnan(study.rt[0, 1:]).all()


def test_block_ids_relabelled_to_zero_based_runs(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("participant,trial,choice,rt,reward,block\n"
                    "1,1,0,0.5,1,7\n"
                    "1,2,1,0.6,0,7\n"
                    "1,3,1,0.7,0,3\n"
                    "2,1,0,0.5,1,5\n")
    study = read_study(path)
    np.testing.assert_array_equal(study.block, [[0, 0, 1], [0, 0, 0]])


# ---------------------------------------------------------------------------------------------
# HSSM and HDDM conventions
# ---------------------------------------------------------------------------------------------

def _as_hssm(frame):
    out = frame.rename(columns={"participant": "participant_id", "trial": "trial_id",
                                "choice": "response", "reward": "feedback"})
    out["response"] = out["response"].map({0: -1, 1: 1}).astype("Int64")
    return out


def _as_hddm(frame):
    """HDDM's layout: split_by is the condition and the trial counts within it."""
    out = frame.rename(columns={"participant": "subj_idx", "choice": "response", "reward": "feedback",
                                "condition": "split_by"})
    if "split_by" not in out:
        out["split_by"] = 0
    out["trial"] = out.groupby(["subj_idx", "split_by"]).cumcount() + 1
    return out


@pytest.mark.parametrize("kind", sorted(DESIGNS))
def test_hssm_convention_gives_same_study(tmp_path, kind):
    study = simulated(kind)
    ours = tmp_path / "ours.csv"
    theirs = tmp_path / "hssm.csv"
    write_study(study, ours)
    hssm = _as_hssm(study.to_dataframe())
    assert set(hssm["response"].dropna().unique()) <= {-1, 1}
    hssm.to_csv(theirs, index=False)
    expected = read_study(ours)
    assert_same_study(read_study(theirs, convention="hssm"), expected)
    assert_same_study(read_study(hssm, convention="hssm"), expected)


@pytest.mark.parametrize("kind", ["default", "deadline", "pairs"])  # HDDM's layout has no blocks
def test_hddm_convention_gives_same_study(tmp_path, kind):
    study = simulated(kind)
    ours = tmp_path / "ours.csv"
    theirs = tmp_path / "hddm.csv"
    write_study(study, ours)
    hddm = _as_hddm(study.to_dataframe())
    if kind == "pairs":
        assert (hddm.groupby(["subj_idx", "split_by"])["trial"].max() < study.n_trials.min()).all()
    hddm.to_csv(theirs, index=False)
    expected = read_study(ours)
    assert_same_study(read_study(theirs, convention="hddm"), expected)
    assert_same_study(read_study(hddm, convention="hddm"), expected)


def test_hssm_minus_one_is_choice_zero(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("participant_id,trial_id,response,rt,feedback\n"
                    "1,1,-1,0.5,1\n"
                    "1,2,1,0.6,0\n"
                    "1,3,,,\n")
    study = read_study(path, convention="hssm")
    np.testing.assert_array_equal(study.choice, [[0, 1, -1]])
    np.testing.assert_array_equal(study.reward, [[1, 0, -1]])


def test_hssm_response_zero_rejected(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("participant_id,trial_id,response,rt,feedback\n"
                    "1,1,-1,0.5,1\n"
                    "1,2,0,0.6,0\n")
    with pytest.raises(DataError) as err:
        read_study(path, convention="hssm")
    msg = str(err.value)
    assert "line 3" in msg and "response" in msg


def test_hddm_response_minus_one_rejected(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("subj_idx,trial,response,rt,feedback\n"
                    "1,1,1,0.5,1\n"
                    "1,2,-1,0.6,0\n")
    with pytest.raises(DataError) as err:
        read_study(path, convention="hddm")
    msg = str(err.value)
    assert "line 3" in msg and "response" in msg


def test_hssm_file_with_default_convention_names_missing_columns(tmp_path):
    study = simulated("default")
    path = tmp_path / "hssm.csv"
    _as_hssm(study.to_dataframe()).to_csv(path, index=False)
    with pytest.raises(DataError) as err:
        read_study(path)
    msg = str(err.value)
    assert "missing column" in msg
    for column in ("participant", "trial", "choice", "reward"):
        assert f"'{column}'" in msg
    assert str(path) in msg


def test_hddm_file_with_default_convention_raises(tmp_path):
    study = simulated("default")
    path = tmp_path / "hddm.csv"
    _as_hddm(study.to_dataframe()).to_csv(path, index=False)
    with pytest.raises(DataError) as err:
        read_study(path)
    msg = str(err.value)
    assert "missing column" in msg and "'participant'" in msg and "'choice'" in msg


def test_rlddm_file_with_hssm_convention_raises(tmp_path):
    path = tmp_path / "ours.csv"
    write_study(simulated("default"), path)
    with pytest.raises(DataError) as err:
        read_study(path, convention="hssm")
    msg = str(err.value)
    assert "missing column" in msg and "'participant_id'" in msg and "'response'" in msg


def test_unknown_convention(tmp_path):
    path = tmp_path / "ours.csv"
    write_study(simulated("default"), path)
    with pytest.raises(DataError) as err:
        read_study(path, convention="pyddm")
    assert "pyddm" in str(err.value) and "convention" in str(err.value)
    with pytest.raises(DataError):
        read_study(simulated("default").to_dataframe(), convention="HSSM-ish")


# ---------------------------------------------------------------------------------------------
# Bad inputs: every problem raises DataError naming where it is
# ---------------------------------------------------------------------------------------------

HEADER = "participant,trial,choice,rt,reward"
GOOD_ROWS = ["1,1,0,0.5,1", "1,2,1,0.6,0", "1,3,,,", "2,1,1,0.7,1"]


def _write(tmp_path, rows, header=HEADER, name="data.csv"):
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _error(source, **kwargs):
    with pytest.raises(DataError) as err:
        read_study(source, **kwargs)
    return str(err.value)


def test_good_rows_are_good(tmp_path):
    study = read_study(_write(tmp_path, GOOD_ROWS))
    np.testing.assert_array_equal(study.n_trials, [3, 1])


# (second data row replaced by this; expected substrings of the message besides "line 3")
SECOND_ROW_ERRORS = {
    "non_numeric_rt": ("1,2,1,fast,0", ["'rt'", "fast", "not a number"]),
    "rt_zero": ("1,2,1,0,0", ["'rt'", "> 0"]),
    "rt_negative": ("1,2,1,-0.2,0", ["'rt'", "> 0"]),
    "rt_over_60": ("1,2,1,61,0", ["'rt'", "60"]),
    "rt_milliseconds": ("1,2,1,523,0", ["'rt'", "milliseconds"]),
    "rt_infinite": ("1,2,1,inf,0", ["'rt'"]),
    "choice_two": ("1,2,2,0.6,0", ["'choice'", "'2'"]),
    "choice_text": ("1,2,left,0.6,0", ["'choice'", "left"]),
    "choice_half": ("1,2,0.5,0.6,0", ["'choice'"]),
    "reward_five": ("1,2,1,0.6,5", ["'reward'", "'5'"]),
    "choice_without_rt": ("1,2,1,,0", ["choice without a rt"]),
    "rt_without_choice": ("1,2,,0.6,0", ["rt without a choice"]),
    "response_without_reward": ("1,2,1,0.6,", ["'reward'", "response without a reward"]),
    "reward_for_missing_response": ("1,2,,,1", ["'reward'", "reward for a missing response"]),
    "duplicated_trial": ("1,1,1,0.6,0", ["'trial'", "duplicated"]),
    "non_integer_trial": ("1,2.5,1,0.6,0", ["'trial'", "not an integer"]),
    "empty_trial": ("1,,1,0.6,0", ["'trial'", "empty"]),
    "empty_participant": (",2,1,0.6,0", ["'participant'", "empty participant id"]),
}


@pytest.mark.parametrize("case", sorted(SECOND_ROW_ERRORS))
def test_bad_second_row_names_line_3(tmp_path, case):
    row, needles = SECOND_ROW_ERRORS[case]
    path = _write(tmp_path, [GOOD_ROWS[0], row, *GOOD_ROWS[2:]])
    msg = _error(path)
    assert "line 3" in msg, msg
    assert str(path) in msg, msg
    for needle in needles:
        assert needle in msg, (needle, msg)


@pytest.mark.parametrize("column", ["participant", "trial", "choice", "reward"])  # no rt: choices alone
def test_missing_column(tmp_path, column):
    frame = pd.read_csv(_write(tmp_path, GOOD_ROWS), dtype=str, keep_default_na=False)
    path = tmp_path / "no_col.csv"
    frame.drop(columns=column).to_csv(path, index=False)
    msg = _error(path)
    assert "missing column" in msg and f"'{column}'" in msg and str(path) in msg, msg


def test_unsorted_trials(tmp_path):
    path = _write(tmp_path, ["1,2,1,0.6,0", "1,1,0,0.5,1", "1,3,,,"])
    msg = _error(path)
    assert "line 2" in msg and "'trial'" in msg and "unsorted" in msg, msg


def test_unsorted_trials_later_in_file(tmp_path):
    path = _write(tmp_path, ["1,1,0,0.5,1", "1,3,1,0.6,0", "1,2,,,"])
    msg = _error(path)
    assert "line 3" in msg and "'trial'" in msg, msg


def test_trials_not_starting_at_one(tmp_path):
    path = _write(tmp_path, ["1,1,0,0.5,1", "2,2,1,0.6,0", "2,3,1,0.6,0"])
    msg = _error(path)
    assert "line 3" in msg and "'trial'" in msg and "2" in msg and "1 was expected" in msg, msg


def test_trials_starting_at_zero(tmp_path):
    path = _write(tmp_path, ["1,0,0,0.5,1", "1,1,1,0.6,0"])
    msg = _error(path)
    assert "line 2" in msg and "'trial'" in msg, msg


def test_skipped_trial(tmp_path):
    path = _write(tmp_path, ["1,1,0,0.5,1", "1,2,1,0.6,0", "1,4,1,0.6,0"])
    msg = _error(path)
    assert "line 4" in msg and "'trial'" in msg, msg


def test_interleaved_blocks(tmp_path):
    path = _write(tmp_path, ["1,1,0,0.5,1,1", "1,2,1,0.6,0,2", "1,3,1,0.7,0,1"],
                  header=HEADER + ",block")
    msg = _error(path)
    assert "line 4" in msg and "'block'" in msg and "returns to block 1" in msg, msg


def test_hddm_trials_count_within_each_pair_and_may_skip(tmp_path):
    header = "subj_idx,trial,response,rt,feedback,split_by"
    path = _write(tmp_path, ["1,1,0,0.5,1,0", "1,1,1,0.6,0,1", "1,3,1,0.7,0,0"], header=header)
    study = read_study(path, convention="hddm")  # trial 2 of pair 0 is absent: no trial at all
    np.testing.assert_array_equal(study.condition, [[0, 1, 0]])
    assert study.absent_trials.tolist() == [1] and study.n_trials.tolist() == [3]
    path = _write(tmp_path, ["1,1,0,0.5,1,0", "1,1,1,0.6,0,1", "1,1,1,0.7,0,0"], header=header)
    msg = _error(path, convention="hddm")
    assert "line 4" in msg and "'trial'" in msg and "condition 0" in msg, msg


def test_bad_values_in_the_new_columns_name_row_and_column(tmp_path):
    header = HEADER + ",condition,excluded,q_init"
    cases = {"1,2,1,0.6,0,,0,0.5": ("condition", "empty condition"),
             "1,2,1,0.6,0,AB,2,0.5": ("excluded", "not allowed"),
             "1,2,1,0.6,0,AB,0,1.5": ("q_init", "not in [0, 1]"),
             "1,2,1,0.6,0,AB,0,0.4": ("q_init", "one value per participant")}
    for row, (column, words) in cases.items():
        msg = _error(_write(tmp_path, ["1,1,0,0.5,1,AB,0,0.5", row], header=header))
        assert "line 3" in msg and f"'{column}'" in msg and words in msg, (row, msg)


def test_a_column_mapping_reads_other_layouts(tmp_path):
    path = _write(tmp_path, ["7,2,1.1,1,3", "7,1,0.9,0,3", "7,2,0.8,1,4"], header="subj,c,time,r,s")
    mapping = parse_columns("participant=subj,choice=c,rt=time,reward=r,block=s")
    study = read_study(path, columns=mapping, choice_codes=parse_choice_codes("1:0,2:1"))
    np.testing.assert_array_equal(study.choice, [[1, 0, 1]])  # row order is the trial order
    np.testing.assert_array_equal(study.block, [[0, 0, 1]])
    with pytest.raises(DataError, match="line 2.*'c'.*not allowed"):
        read_study(path, columns=mapping)  # codes 1/2 are not the default 0/1
    for bad, words in (({**mapping, "colour": "x"}, "unknown name"), ({"participant": "subj"}, "must name"),
                       ({**mapping, "trial": "c"}, "mapped twice")):
        with pytest.raises(DataError, match=words):
            read_study(path, columns=bad)
    with pytest.raises(DataError, match="choice_codes"):
        read_study(path, columns=mapping, choice_codes={1: 0, 2: 0})
    with pytest.raises(DataError, match="column mapping"):
        read_study(path, choice_codes={1: 0, 2: 1})


def test_reward_codes_map_outcomes_in_points(tmp_path):
    path = _write(tmp_path, ["7,1,0.9,100", "7,0,0.8,0", "7,1,0.7,100"], header="subj,c,time,points")
    mapping = parse_columns("participant=subj,choice=c,rt=time,reward=points")
    study = read_study(path, columns=mapping, reward_codes=parse_choice_codes("100:1,0:0"))
    np.testing.assert_array_equal(study.reward, [[1, 0, 1]])
    with pytest.raises(DataError, match="line 2.*'points'.*not allowed"):
        read_study(path, columns=mapping)  # 100 is not a default reward code
    with pytest.raises(DataError, match="reward_codes"):
        read_study(path, columns=mapping, reward_codes={100: 2})
    with pytest.raises(DataError, match="column mapping"):
        read_study(path, reward_codes={100: 1, 0: 0})
    with pytest.raises(DataError, match="--reward-codes"):
        parse_choice_codes("100=1", "--reward-codes", "100:1,0:0")


def test_rewards_recorded_on_missing_responses_are_refused_unless_ignored(tmp_path):
    path = _write(tmp_path, ["7,1,0.9,100", "7,,,0", "7,1,0.7,100"], header="subj,c,time,points")
    mapping = parse_columns("participant=subj,choice=c,rt=time,reward=points")
    codes = {100: 1, 0: 0}
    with pytest.raises(DataError, match="line 3.*'points'.*reward for a missing response.*missing-rewards ignore"):
        read_study(path, columns=mapping, reward_codes=codes)
    study = read_study(path, columns=mapping, reward_codes=codes, missing_rewards="ignore")
    np.testing.assert_array_equal(study.reward, [[1, -1, 1]])
    np.testing.assert_array_equal(study.choice, [[1, -1, 1]])
    with pytest.raises(DataError, match="missing_rewards"):
        read_study(path, columns=mapping, missing_rewards="drop")
    with pytest.raises(DataError, match="column mapping"):
        read_study(path, missing_rewards="ignore")


@pytest.mark.skipif(not REAL.is_dir(), reason="needs ../shared/real")
def test_hddm_rlddm_example_reads_as_it_is():
    study = read_study(REAL / "hddm_rlddm_data.csv", convention="hddm")
    frame = pd.read_csv(REAL / "hddm_rlddm_data.csv")
    assert study.n_participants == 28 and study.condition_labels == (0, 1, 2)
    assert (study.n_trials.min(), study.n_trials.max()) == (113, 360)
    np.testing.assert_array_equal(study.n_trials, frame.groupby("subj_idx", sort=False).size().to_numpy())
    assert study.absent_trials.sum() == sum(int(g["trial"].max()) - len(g)
                                            for _, g in frame.groupby(["subj_idx", "split_by"]))
    assert (study.q_init == 0.5).all() and not study.missing.any()
    first = frame[frame["subj_idx"] == study.participant[0]]
    np.testing.assert_array_equal(study.condition[0, :len(first)], first["split_by"].to_numpy())
    np.testing.assert_array_equal(study.choice[0, :len(first)], first["response"].to_numpy())


@pytest.mark.skipif(not REAL.is_dir(), reason="needs ../shared/real")
def test_gershman_bandit_data_read_through_a_column_mapping():
    study = read_study(REAL / "gershman_RL_DDM_data_bandit.csv",
                       columns={"participant": "subj_idx", "choice": "c", "rt": "rt", "reward": "r", "block": "s"},
                       choice_codes={1: 0, 2: 1})
    assert study.n_participants == 94 and (study.n_trials.min(), study.n_trials.max()) == (97, 100)
    assert (study.block.max(axis=1) == 3).all()  # four blocks, a new pair in each
    assert np.nanmin(study.rt) == pytest.approx(0.003)


def test_interleaved_participants_rows_are_fine_when_each_is_in_order(tmp_path):
    # Rows of two participants interleaved; each participant's own trials are in order.
    path = _write(tmp_path, ["1,1,0,0.5,1", "2,1,1,0.6,0", "1,2,1,0.7,0", "2,2,,,"])
    study = read_study(path)
    np.testing.assert_array_equal(study.n_trials, [2, 2])
    np.testing.assert_array_equal(study.choice, [[0, 1], [1, -1]])


def test_non_integer_block(tmp_path):
    path = _write(tmp_path, ["1,1,0,0.5,1,1", "1,2,1,0.6,0,x"], header=HEADER + ",block")
    msg = _error(path)
    assert "line 3" in msg and "'block'" in msg, msg


def test_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    msg = _error(path)
    assert "empty" in msg and str(path) in msg


def test_whitespace_only_file(tmp_path):
    path = tmp_path / "blank.csv"
    path.write_text("\n  \n\n")
    msg = _error(path)
    assert "empty" in msg and str(path) in msg


def test_header_only_file(tmp_path):
    path = _write(tmp_path, [])
    msg = _error(path)
    assert "no data rows" in msg and str(path) in msg


def test_binary_file_with_nul_bytes(tmp_path):
    path = tmp_path / "image.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    msg = _error(path)
    assert str(path) in msg and "binary" in msg


def test_binary_file_without_nul_bytes(tmp_path):
    path = tmp_path / "noise.csv"
    path.write_bytes(bytes(np.random.default_rng(0).integers(128, 256, 2000, dtype=np.uint8)))
    msg = _error(path)
    assert str(path) in msg


def test_nonexistent_path(tmp_path):
    path = tmp_path / "nope" / "data.csv"
    msg = _error(path)
    assert "does not exist" in msg and str(path) in msg


def test_empty_participant_id(tmp_path):
    path = _write(tmp_path, ["1,1,0,0.5,1", "  ,2,1,0.6,0"])
    msg = _error(path)
    assert "line 3" in msg and "empty participant id" in msg, msg


def test_dataframe_errors_name_the_row_label_and_column():
    frame = pd.DataFrame({"participant": [1, 1, 1], "trial": [1, 2, 3],
                          "choice": [0, 1, 1], "rt": [0.5, -1.0, 0.7], "reward": [1, 0, 0]},
                         index=[10, 11, 12])
    msg = _error(frame)
    assert "DataFrame" in msg and "row 11" in msg and "'rt'" in msg, msg


def test_dataframe_missing_column():
    frame = pd.DataFrame({"participant": [1], "trial": [1], "choice": [0], "rt": [0.5]})
    msg = _error(frame)
    assert "DataFrame" in msg and "missing column" in msg and "'reward'" in msg, msg


def test_empty_dataframe():
    frame = pd.DataFrame({c: [] for c in HEADER.split(",")})
    msg = _error(frame)
    assert "no data rows" in msg, msg


def test_errors_are_value_errors():
    assert issubclass(DataError, ValueError)


def test_repeated_header_column_is_refused(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("participant,trial,choice,rt,rt,reward\n1,1,0,0.5,0.5,1\n")
    with pytest.raises(DataError, match=r"duplicated column\(s\) \['rt'\]"):
        read_study(path)


def test_row_with_extra_field_is_refused_with_its_line(tmp_path):
    path = tmp_path / "trailing.csv"
    path.write_text("participant,trial,choice,rt,reward\n1,1,0,0.5,1\n1,2,1,0.6,0,\n")
    with pytest.raises(DataError, match="line 3: 6 fields but the header has 5"):
        read_study(path)

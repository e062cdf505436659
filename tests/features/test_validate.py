"""The table validator (every broken rule of every row, typed clean rows) and CSV/Parquet table I/O."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.errors import ContractError, FileFormatError
from features.schema import COMORBIDITY_COLUMNS, RECORD_NAMES
from features.tableio import read_table, write_table
from features.validate import EMPTY, check_table_columns, validate_table


def _row(i: int = 0, **changes: str) -> dict[str, str]:
    """One valid record as a CSV reader delivers it: every cell a string."""
    row = {
        "patient_id": f"P{i}",
        "age": "74",
        "sex": "male",
        "regimen": "RVd",
        "setting": "relapsed_refractory",
        "start_dose_mg": "25",
        "crcl_ml_min": "62.5",
        "dialysis": "0",
        "ecog": "1",
        "prior_lines": "2",
        **{c: "0" for c in COMORBIDITY_COLUMNS},
    }
    return {**row, **changes}


def _table(n: int = 3, **changes_by_position: dict[str, str]) -> pd.DataFrame:
    """``n`` valid string rows; ``changes_by_position={"r1": {...}}`` edits row 1."""
    return pd.DataFrame([_row(i, **changes_by_position.get(f"r{i}", {})) for i in range(n)])


def test_clean_table_comes_back_typed():
    padded = {"age": " 80.5 ", "sex": " female ", "patient_id": " P0 "}
    df = _table(3, r0=padded, r2={"ecog": "", "crcl_ml_min": ""})
    df.index = [10, 20, 30]
    v = validate_table(df)
    assert v.ok and v.errors == [] and v.n_rows == 3
    assert v.rejected.tolist() == []
    clean = v.clean
    assert list(clean.columns) == list(RECORD_NAMES)
    assert clean.index.tolist() == [10, 20, 30]
    assert clean["patient_id"].tolist() == ["P0", "P1", "P2"]
    assert clean["age"].tolist() == [80.5, 74.0, 74.0]
    assert clean["sex"].tolist() == ["female", "male", "male"]
    assert clean["ecog"].iloc[:2].tolist() == [1.0, 1.0] and np.isnan(clean["ecog"].iloc[2])
    assert np.isnan(clean["crcl_ml_min"].iloc[2])
    dtypes = {name: str(dtype) for name, dtype in clean.dtypes.items()}
    assert {dtypes[c] for c in ("patient_id", "sex", "regimen", "setting")} == {"str"}
    assert {dtypes[c] for c in ("age", "start_dose_mg", "crcl_ml_min", "ecog")} == {"float64"}
    assert {dtypes[c] for c in ("dialysis", "prior_lines", *COMORBIDITY_COLUMNS)} == {"int64"}


BAD_CELLS = [
    ("age", "abc", "not a number; expected a number from 18 to 100"),
    ("age", "inf", "not a number"),
    ("age", "nan", "not a number"),
    ("age", "1e400", "not a number"),
    ("age", "150", "out of range; expected a number from 18 to 100"),
    ("start_dose_mg", "-5", "out of range; expected a number from 2.5 to 25"),
    ("crcl_ml_min", "3", "out of range; expected a number from 5 to 250, or empty (unknown)"),
    ("ecog", "2.5", "not a whole number; expected an integer from 0 to 4, or empty (unknown)"),
    ("ecog", "two", "not a whole number"),
    ("ecog", "5", "out of range"),
    ("prior_lines", "1.5", "not a whole number; expected an integer from 0 to 20"),
    ("sex", "Male", "unknown value; expected one of female, male"),
    ("regimen", "RVD", "unknown value; expected one of R, Rd, RCd, RVd, KRd, DRd, IRd, ERd, MPR"),
    ("setting", "relapsed", "unknown value"),
    ("sex", "", EMPTY),
    ("age", "   ", EMPTY),
    ("dialysis", "yes", "invalid value; expected 0 or 1"),
    ("cm_vte", "2", "invalid value; expected 0 or 1"),
    ("cm_vte", "0.5", "invalid value; expected 0 or 1"),
    ("patient_id", "", EMPTY),
    ("patient_id", "P" * 65, "too long; expected 1–64 printable characters"),
    ("patient_id", "P\x001", "contains non-printable characters; expected 1–64 printable characters"),
    ("patient_id", "P\n1", "contains non-printable characters"),
]


@pytest.mark.parametrize(("column", "value", "reason"), BAD_CELLS)
def test_each_kind_of_bad_cell_is_reported(column, value, reason):
    v = validate_table(_table(3, r1={column: value}))
    assert [(e.row_number, e.column) for e in v.errors] == [(2, column)]
    assert v.errors[0].reason.startswith(reason)
    assert v.rejected.tolist() == [1]
    assert v.clean["patient_id"].tolist() == ["P0", "P2"]
    assert v.errors[0].patient_id == (None if column == "patient_id" else "P1")
    assert not v.ok


def test_reasons_never_contain_the_bad_value():
    bad = {"age": "abc", "sex": "Male", "regimen": "Lenalidomide", "setting": "xyz-setting", "ecog": "7.25"}
    v = validate_table(_table(2, r0=bad))
    assert {e.column for e in v.errors} == set(bad)
    text = " ".join(f"{e} {e!r}" for e in v.errors)
    for value in bad.values():
        assert value not in text


def test_every_broken_rule_in_a_row_is_reported_in_contract_order():
    v = validate_table(_table(2, r1={"dialysis": "yes", "age": "abc", "sex": "", "ecog": "9"}))
    assert [(e.row_number, e.column, e.reason.split(";")[0]) for e in v.errors] == [
        (2, "age", "not a number"),
        (2, "sex", EMPTY),
        (2, "dialysis", "invalid value"),
        (2, "ecog", "out of range"),
    ]
    assert v.rejected.tolist() == [1]


def test_errors_in_many_rows_are_all_reported_not_just_the_first():
    df = _table(1000)
    bad = np.arange(3, 1000, 7)
    df.loc[bad, "regimen"] = "RVD"
    df.loc[bad[::2], "age"] = "old"
    v = validate_table(df)
    assert v.rejected.tolist() == bad.tolist()
    assert len(v.errors) == len(bad) + len(bad[::2])
    assert [e.row_number for e in v.errors if e.column == "regimen"] == (bad + 1).tolist()
    assert len(v.clean) == 1000 - len(bad)
    assert not v.clean.index.isin(bad).any()


def test_row_numbers_are_one_based_and_honour_row_offset():
    v = validate_table(_table(5, r0={"sex": "x"}, r4={"sex": "x", "patient_id": "\x07"}), row_offset=1000)
    assert [(e.row_number, e.patient_id) for e in v.errors] == [(1001, "P0"), (1005, None), (1005, None)]
    assert v.rejected.tolist() == [0, 4]


def test_nullable_columns_accept_empty_as_unknown():
    df = _table(4, r0={"crcl_ml_min": "", "ecog": " "}, r1={"crcl_ml_min": "  "})
    df["crcl_ml_min"] = df["crcl_ml_min"].astype(object)
    df.loc[2, "crcl_ml_min"] = None
    df.loc[3, "ecog"] = np.nan
    v = validate_table(df)
    assert v.ok
    assert np.isnan(v.clean["crcl_ml_min"].to_numpy()[:3]).all()
    assert v.clean["crcl_ml_min"].iloc[3] == 62.5
    assert np.isnan(v.clean["ecog"].to_numpy()[[0, 3]]).all()
    assert v.clean["ecog"].to_numpy()[[1, 2]].tolist() == [1.0, 1.0]


def test_typed_and_mixed_cells_are_accepted_in_every_spelling():
    n = 5
    df = pd.DataFrame([_row(i) for i in range(n)])
    df["age"] = pd.Series([74, 74.5, "80", " 18 ", 100], dtype=object)
    df["prior_lines"] = pd.Series(["2", 2, 2.0, "2.0", np.int64(2)], dtype=object)
    df["dialysis"] = pd.Series(["1", 1, 1.0, True, False], dtype=object)
    df["cm_vte"] = [True, False, True, False, True]
    df["ecog"] = pd.array([1, None, 2, 3, 4], dtype="Int64")
    df["sex"] = pd.Categorical(["male", "female", "male", "female", "male"])
    v = validate_table(df)
    assert v.ok, v.errors
    assert v.clean["age"].tolist() == [74.0, 74.5, 80.0, 18.0, 100.0]
    assert v.clean["prior_lines"].tolist() == [2] * n
    assert v.clean["dialysis"].tolist() == [1, 1, 1, 1, 0]
    assert v.clean["cm_vte"].tolist() == [1, 0, 1, 0, 1]
    assert v.clean["ecog"].dtype == np.float64 and np.isnan(v.clean["ecog"].iloc[1])
    assert str(v.clean["sex"].dtype) == "str"


def test_typed_cells_of_the_wrong_kind_are_rejected():
    df = _table(4)
    df["age"] = pd.Series([True, 74, float("inf"), [74]], dtype=object)
    df["sex"] = pd.Series(["male", 1, "male", "female"], dtype=object)
    df["ecog"] = pd.Series([1, 1, 2.5, 1], dtype=object)
    v = validate_table(df)
    assert [(e.row_number, e.column) for e in v.errors] == [
        (1, "age"),
        (2, "sex"),
        (3, "age"),
        (3, "ecog"),
        (4, "age"),
    ]


def test_extra_columns_are_carried_through_untouched():
    df = _table(3, r1={"sex": "Male"})
    df.insert(0, "site", ["a", "b", " c "])
    df.insert(5, "weight_kg", [70.5, np.nan, 80.0])
    df["visit"] = np.array([1, 2, 3], dtype=np.int32)
    v = validate_table(df)
    assert list(v.clean.columns) == list(df.columns)
    assert v.clean["site"].tolist() == ["a", " c "]
    assert v.clean["weight_kg"].tolist() == [70.5, 80.0]
    for name in ("site", "weight_kg", "visit"):
        assert v.clean[name].dtype == df[name].dtype


@pytest.mark.parametrize("rejected", [False, True])
def test_clean_rows_share_no_memory_with_the_input(rejected):
    df = _table(3, r1={"sex": "Male"} if rejected else {})
    df["weight_kg"] = [70.5, 60.0, 80.0]
    clean = validate_table(df).clean
    df.loc[df.index[-1], "weight_kg"] = -1.0
    df.loc[df.index[-1], "age"] = "99"
    assert clean["weight_kg"].iloc[-1] == 80.0 and clean["age"].iloc[-1] != 99.0
    clean.loc[clean.index[0], "weight_kg"] = -2.0
    assert df["weight_kg"].iloc[0] == 70.5


def test_outcomes_are_checked_when_present_and_required_on_demand():
    df = _table(3)
    df["discontinued_toxicity"] = ["0", "1", "yes"]
    df["dose_reduced"] = ["1", "", "0"]
    v = validate_table(df)
    assert [(e.row_number, e.column, e.reason) for e in v.errors] == [
        (2, "dose_reduced", EMPTY),
        (3, "discontinued_toxicity", "invalid value; expected 0 or 1"),
    ]
    assert v.clean["discontinued_toxicity"].tolist() == [0] and v.clean["dose_reduced"].dtype == np.int64
    with pytest.raises(
        FileFormatError, match=r"missing required columns: discontinued_toxicity, dose_reduced$"
    ):
        validate_table(_table(3), require_outcomes=True)
    assert validate_table(_table(3)).ok  # outcomes are optional by default


def test_missing_columns_are_all_named():
    with pytest.raises(FileFormatError, match=r"missing required columns: patient_id, sex, ecog$"):
        validate_table(_table(2).drop(columns=["ecog", "sex", "patient_id"]))
    with pytest.raises(FileFormatError, match="no record contract columns found"):
        validate_table(pd.DataFrame({"a": ["1"], "b": ["2"]}))


def test_duplicated_columns_are_rejected_also_as_pandas_mangles_them():
    df = _table(2)
    twice = pd.concat([df, df[["age"]]], axis=1)
    with pytest.raises(FileFormatError, match="duplicated column names: age"):
        validate_table(twice)
    with pytest.raises(FileFormatError, match="duplicated column names: sex"):
        validate_table(df.assign(**{"sex.1": "male"}))
    check_table_columns([*RECORD_NAMES, "note", "note.1"])  # mangled names of extra columns are left alone


def test_empty_table_is_valid_and_typed():
    v = validate_table(_table(0).reindex(columns=list(RECORD_NAMES)))
    assert v.ok and v.n_rows == 0 and len(v.clean) == 0
    assert v.clean["age"].dtype == np.float64 and v.clean["dialysis"].dtype == np.int64


def test_raise_on_errors():
    assert validate_table(_table(2)).raise_on_errors()["patient_id"].tolist() == ["P0", "P1"]
    with pytest.raises(ContractError, match="1 of 2 rows break the record contract") as info:
        validate_table(_table(2, r0={"age": "abc", "sex": ""})).raise_on_errors()
    assert [e.column for e in info.value.errors] == ["age", "sex"]


def _typed_table() -> pd.DataFrame:
    """The same three records as :func:`_string_table`, as Parquet or the API types them."""
    return pd.DataFrame(
        {
            "patient_id": ["P0", "P1", "P2"],
            "age": [74.0, 80.5, 18.0],
            "sex": ["male", "female", "male"],
            "regimen": ["RVd", "Rd", "MPR"],
            "setting": ["relapsed_refractory", "maintenance", "newly_diagnosed"],
            "start_dose_mg": [25.0, 10.0, 2.5],
            "crcl_ml_min": [62.5, np.nan, 250.0],
            "dialysis": [0, 0, 1],
            "ecog": pd.array([1, None, 4], dtype="Int64"),
            "prior_lines": [2, 0, 20],
            **{c: [0, 1, 0] for c in COMORBIDITY_COLUMNS},
            "discontinued_toxicity": [0, 1, 1],
            "dose_reduced": [1, 0, 0],
            "site": ["x", "y", "z"],
        }
    )


def _string_table() -> pd.DataFrame:
    changes = [
        {},
        {"age": "80.5", "sex": "female", "regimen": "Rd", "setting": "maintenance", "start_dose_mg": "10"},
        {"age": "18", "regimen": "MPR", "setting": "newly_diagnosed", "start_dose_mg": "2.5"},
    ]
    changes[1] |= {"crcl_ml_min": "", "ecog": "", "prior_lines": "0", **{c: "1" for c in COMORBIDITY_COLUMNS}}
    changes[2] |= {"crcl_ml_min": "250", "dialysis": "1", "ecog": "4", "prior_lines": "20"}
    df = pd.DataFrame([_row(i, **c) for i, c in enumerate(changes)])
    outcomes = {"discontinued_toxicity": ["0", "1", "1"], "dose_reduced": [" 1", "0 ", "0"]}
    return df.assign(**outcomes, site=["x", "y", "z"])


def test_parquet_typed_input_validates_like_csv_string_input(tmp_path):
    write_table(_typed_table(), tmp_path / "t.parquet")
    write_table(_string_table(), tmp_path / "t.csv")
    from_parquet = validate_table(read_table(tmp_path / "t.parquet"), require_outcomes=True)
    from_csv = validate_table(read_table(tmp_path / "t.csv"), require_outcomes=True)
    assert from_parquet.ok and from_csv.ok
    pd.testing.assert_frame_equal(from_parquet.clean, from_csv.clean)
    assert from_csv.clean["ecog"].iloc[[0, 2]].tolist() == [1.0, 4.0]
    assert from_csv.clean["dose_reduced"].tolist() == [1, 0, 0]


@pytest.mark.parametrize("name", ["t.csv", "t.parquet"])
def test_write_then_read_round_trip(tmp_path, name):
    df = _typed_table().drop(columns="ecog")
    path = tmp_path / name
    path.write_text("old content")
    write_table(df, path)
    back = read_table(path)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left behind
    if name.endswith(".csv"):
        assert back["age"].tolist() == ["74.0", "80.5", "18.0"]
        assert back["crcl_ml_min"].tolist() == ["62.5", "", "250.0"]
    else:
        pd.testing.assert_frame_equal(back, df)


def test_csv_with_byte_order_mark(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + _string_table().to_csv(index=False).encode())
    df = read_table(path)
    assert df.columns[0] == "patient_id"
    assert validate_table(df).clean["patient_id"].tolist() == ["P0", "P1", "P2"]


def test_csv_cells_stay_strings_and_empty_cells_stay_empty(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("patient_id,ecog,note\nNA,,null\n")
    df = read_table(path)
    assert df.to_dict("list") == {"patient_id": ["NA"], "ecog": [""], "note": ["null"]}


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("t.xlsx", b"a,b\n", "unsupported file type; expected one of .csv, .parquet"),
        ("t.parquet", b"PAR1 not really parquet", "cannot be read as parquet"),
        ("t.csv", b"age,sex,age\n1,2,3\n", "duplicated column names: age"),
        ("t.csv", b"", "no header row"),
        ("t.csv", b"age,sex\n\xff\xfe,1\n", "not UTF-8 text"),
        ("t.csv", b"age,sex\n1,2,3\n", "cannot be read as csv"),
    ],
)
def test_unreadable_files_raise_file_format_error(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(FileFormatError, match=message):
        read_table(path)


def test_missing_file_and_unknown_output_format(tmp_path):
    with pytest.raises(FileFormatError, match="no such file"):
        read_table(tmp_path / "absent.csv")
    with pytest.raises(FileFormatError, match="unsupported file type"):
        write_table(_typed_table(), tmp_path / "t.json")
    assert list(tmp_path.iterdir()) == []

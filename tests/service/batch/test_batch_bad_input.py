"""Batch scoring of bad input: per-row problems go to the rejects file with reasons and every row is
accounted for; whole-file problems stop with exit code 2 before any output file appears."""

from __future__ import annotations

import csv
import io
import json

import pandas as pd
import pyarrow.csv as pv
import pytest

from features.errors import FileFormatError
from features.schema import PREDICTOR_NAMES, RECORD_NAMES
from service.batch.local import prepare_run, score_file
from training.cohort.generate import generate_cohort

N = 40
EXPECTED_FIELDS = len(RECORD_NAMES) + 1  # the contract columns and "note"
AGE = "not a number; expected a number from 18 to 100"
REGIMEN = "unknown value; expected one of R, Rd, RCd, RVd, KRd, DRd, IRd, ERd, MPR"

pytestmark = pytest.mark.slow  # every test uses the session's trained models (`trained`: ~10 s once)


@pytest.fixture(scope="module")
def rows() -> list[list[str]]:
    """Header and N valid data rows as CSV cells; the extra column ``note`` holds commas and quotes."""
    frame = generate_cohort(N, seed=8)[list(RECORD_NAMES)]
    frame["note"] = [f'seen, "{i}"' for i in range(N)]
    return list(csv.reader(io.StringIO(frame.to_csv(index=False))))


def to_lines(rows: list[list[str]]) -> list[str]:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().splitlines()


def set_cell(row: list[str], header: list[str], **cells: str) -> list[str]:
    row = list(row)
    for name, value in cells.items():
        row[header.index(name)] = value
    return row


@pytest.fixture(scope="module")
def bad_csv(rows) -> bytes:
    """Every kind of malformed row; data row k of the file is line k + 1."""
    header, data = rows[0], [list(r) for r in rows[1:]]
    data[1] = set_cell(data[1], header, age="seventy")
    data[3] = set_cell(data[3], header, start_dose_mg="-5")
    data[5] = set_cell(data[5], header, regimen="XYZ")
    data[7] = set_cell(data[7], header, sex="")
    data[9] = set_cell(data[9], header, sex="Male")
    data[11] = set_cell(data[11], header, patient_id="SECRET-42", age="abc", ecog="9", setting="relapsed")
    lines = to_lines([header, *data])
    lines[14] = lines[0]  # row 14: the header repeated
    lines[16] += ",surplus"  # row 16: one field too many
    lines[18] = ""  # row 18: an empty line
    lines[-1] = ",".join(data[-1][:4])  # the last row, truncated (and no final newline)
    return b"\xef\xbb\xbf" + "\n".join(lines).encode()  # with a byte-order mark


def read_rejects(path) -> list[tuple]:
    """Reject lines as (row_number, patient_id or None, column, reason)."""
    options = pv.ConvertOptions(strings_can_be_null=True, quoted_strings_can_be_null=False)
    table = pv.read_csv(path, convert_options=options)
    return list(zip(*(table[name].to_pylist() for name in table.column_names), strict=True))


def expected_rejects(rows: list[list[str]]) -> list[tuple[int, str | None, str]]:
    """(row, patient_id, column) of each expected reject line, in order."""
    pid = {k: rows[k][0] for k in range(1, N + 1)}
    header_row = [(14, "patient_id", c) for c in PREDICTOR_NAMES]
    empty_row = [(18, None, c) for c in RECORD_NAMES if c not in ("crcl_ml_min", "ecog")]
    return [
        (2, pid[2], "age"),
        (4, pid[4], "start_dose_mg"),
        (6, pid[6], "regimen"),
        (8, pid[8], "sex"),
        (10, pid[10], "sex"),
        (12, "SECRET-42", "age"),
        (12, "SECRET-42", "setting"),
        (12, "SECRET-42", "ecog"),
        *header_row,
        (16, pid[16], ""),
        *empty_row,
        (N, pid[N], ""),
    ]


@pytest.mark.parametrize("batch_rows", [65_536, 3])
def test_every_kind_of_bad_row_is_rejected_with_its_reasons(predictor, rows, bad_csv, tmp_path, batch_rows):
    (tmp_path / "bad.csv").write_bytes(bad_csv)
    paths, source = prepare_run(tmp_path / "bad.csv", tmp_path / "out.csv", batch_rows=batch_rows)
    summary = score_file(predictor, paths, source)

    rejects = read_rejects(tmp_path / "out.rejects.csv")
    assert [line[:3] for line in rejects] == expected_rejects(rows)
    reasons = {(row, column): reason for row, _, column, reason in rejects}
    assert reasons[2, "age"] == AGE
    assert reasons[4, "start_dose_mg"] == "out of range; expected a number from 2.5 to 25"
    assert reasons[6, "regimen"] == REGIMEN
    assert reasons[8, "sex"] == "required value is empty"
    assert reasons[10, "sex"] == "unknown value; expected one of female, male"
    assert reasons[12, "ecog"] == "out of range; expected an integer from 0 to 4, or empty (unknown)"
    assert reasons[14, "age"] == AGE
    assert reasons[16, ""] == f"row has {EXPECTED_FIELDS + 1} fields, expected {EXPECTED_FIELDS}"
    assert reasons[18, "patient_id"] == "required value is empty"
    assert reasons[N, ""] == f"row has 4 fields, expected {EXPECTED_FIELDS}"
    rejected = {2, 4, 6, 8, 10, 12, 14, 16, 18, N}
    assert summary.counts == {"read": N, "scored": N - 10, "rejected": 10, "reject_lines": len(rejects)}

    scored = pv.read_csv(tmp_path / "out.csv").to_pandas()
    valid = [k for k in range(1, N + 1) if k not in rejected]
    assert scored.patient_id.tolist() == [rows[k][0] for k in valid]
    assert scored.note.tolist() == [rows[k][-1] for k in valid]  # quoted commas and quotes carried through


def test_valid_rows_score_as_they_would_alone(predictor, rows, bad_csv, tmp_path):
    (tmp_path / "bad.csv").write_bytes(bad_csv)
    rejected = {2, 4, 6, 8, 10, 12, 14, 16, 18, N}
    clean_rows = [rows[0]] + [rows[k] for k in range(1, N + 1) if k not in rejected]
    (tmp_path / "clean.csv").write_text("\n".join(to_lines(clean_rows)) + "\n")
    for name in ("bad", "clean"):
        paths, source = prepare_run(tmp_path / f"{name}.csv", tmp_path / f"{name}-out.csv")
        score_file(predictor, paths, source)
    from_bad = pv.read_csv(tmp_path / "bad-out.csv").to_pandas()
    from_clean = pv.read_csv(tmp_path / "clean-out.csv").to_pandas()
    pd.testing.assert_frame_equal(from_bad, from_clean, check_exact=False, rtol=1e-12)
    assert pv.read_csv(tmp_path / "clean-out.rejects.csv").num_rows == 0


def test_cli_accounts_for_every_row_without_echoing_patient_data(lenrisk, bad_csv, tmp_path):
    (tmp_path / "bad.csv").write_bytes(bad_csv)
    result = lenrisk(
        "--input", tmp_path / "bad.csv", "--output", tmp_path / "out.parquet", "--explain", "top3"
    )
    assert result.exit_code == 0, result.output
    assert f"{N} rows read = {N - 10} scored + 10 rejected (" in result.output
    assert "SECRET" not in result.output
    manifest = json.loads((tmp_path / "out.parquet.manifest.json").read_text())
    assert manifest["counts"]["read"] == manifest["counts"]["scored"] + manifest["counts"]["rejected"]


def _semicolons(rows):
    return "\n".join(";".join(r) for r in rows).encode()


def _without_ecog(rows):
    j = rows[0].index("ecog")
    return "\n".join(to_lines([r[:j] + r[j + 1 :] for r in rows])).encode()


def _duplicated_column(rows):
    return "\n".join(to_lines([[*r, r[1]] for r in rows])).encode()


def _scored_already(rows):
    return "\n".join(
        to_lines([[*rows[0], "risk_discontinuation"], *([*r, "0.1"] for r in rows[1:])])
    ).encode()


WHOLE_FILE_PROBLEMS = {
    "semicolon-separated": ("in.csv", _semicolons, "no record contract columns found"),
    "missing column": ("in.csv", _without_ecog, "missing required columns: ecog"),
    "duplicated column": ("in.csv", _duplicated_column, "duplicated column names: age"),
    "already scored": (
        "in.csv",
        _scored_already,
        "already has columns that scoring writes: risk_discontinuation",
    ),
    "empty file": ("in.csv", lambda rows: b"", "no header row"),
    "not UTF-8": ("in.csv", lambda rows: "\n".join(to_lines(rows)).encode("utf-16"), "not UTF-8 text"),
    "not Parquet": ("in.parquet", lambda rows: b"PAR1 not really", "cannot be read as Parquet"),
    "unknown extension": ("in.txt", lambda rows: b"", "in.txt: unsupported file type"),
}


@pytest.mark.parametrize("problem", WHOLE_FILE_PROBLEMS)
def test_whole_file_problems_exit_2_before_any_output(lenrisk, rows, tmp_path, problem):
    name, content, message = WHOLE_FILE_PROBLEMS[problem]
    (tmp_path / name).write_bytes(content(rows))
    result = lenrisk("--input", tmp_path / name, "--output", tmp_path / "out.csv")
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_missing_input_and_output_over_the_input_are_refused(lenrisk, rows, tmp_path):
    result = lenrisk("--input", tmp_path / "absent.csv", "--output", tmp_path / "out.csv")
    assert result.exit_code == 2 and "absent.csv: no such file" in result.output
    source = tmp_path / "in.csv"
    source.write_text("\n".join(to_lines(rows)))
    for option in ("--output", "--rejects"):
        other = tmp_path / "out.csv"
        args = ["--output", source] if option == "--output" else ["--output", other, "--rejects", source]
        result = lenrisk("--input", source, *args)
        assert result.exit_code == 2 and "must not overwrite the input" in result.output
    assert source.read_text() == "\n".join(to_lines(rows))
    result = lenrisk("--input", source, "--output", tmp_path / "absent" / "out.csv")
    assert result.exit_code == 2 and "does not exist" in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["in.csv"]


def test_a_file_unreadable_midway_publishes_nothing(predictor, rows, tmp_path):
    text = "\n".join(to_lines(rows)).encode()
    cut = len(text) * 3 // 4
    (tmp_path / "in.csv").write_bytes(text[:cut] + b"\xe9" + text[cut:])  # Latin-1 byte in a late row
    paths, source = prepare_run(tmp_path / "in.csv", tmp_path / "out.csv", batch_rows=3)
    with pytest.raises(FileFormatError, match=r"^in.csv: cannot be read as CSV \(not UTF-8 text\)$"):
        score_file(predictor, paths, source)
    assert [p.name for p in tmp_path.iterdir()] == ["in.csv"]


def test_a_header_only_file_gives_empty_outputs(predictor, rows, tmp_path):
    (tmp_path / "in.csv").write_text(",".join(rows[0]) + "\n")
    paths, source = prepare_run(tmp_path / "in.csv", tmp_path / "out.parquet")
    summary = score_file(predictor, paths, source)
    assert summary.counts == {"read": 0, "scored": 0, "rejected": 0, "reject_lines": 0}
    assert (tmp_path / "out.parquet").exists() and (tmp_path / "out.rejects.csv").exists()

"""Reading a CSV file with long runs of rows the parser cannot split: the rejects stream out chunk by chunk,
so the reader's memory does not grow with their number, and every row is still numbered and counted."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from features.schema import RECORD_NAMES
from service.batch.read import open_input
from training.cohort.generate import generate_cohort

VALID = 200  # valid rows before the junk, and as many after it


@pytest.fixture(scope="module")
def rows() -> list[str]:
    """Header and 2 * VALID valid data lines."""
    return generate_cohort(2 * VALID, seed=9)[list(RECORD_NAMES)].to_csv(index=False).splitlines(True)


def junk_file(folder: Path, rows: list[str], junk: int) -> Path:
    """VALID rows, ``junk`` truncated rows (a patient id and an age: 2 fields), then VALID rows."""
    path = folder / f"junk-{junk}.csv"
    with path.open("w") as f:
        f.writelines(rows[: VALID + 1])
        f.write("P0000001,70\n" * junk)
        f.writelines(rows[VALID + 1 :])
    return path


def read_all(path: Path, junk: int) -> tuple[int, int]:
    """Read every chunk, checking its row numbers on the way; the rows in the file and the traced peak.

    Each chunk's parsed and unsplit rows are the next consecutive row numbers, the unsplit ones exactly the
    junk; nothing is kept across chunks (the check must not grow with the file either).
    """
    tracemalloc.start()
    try:
        table = open_input(path, batch_rows=256)  # 32 KiB blocks: hundreds of chunks of junk
        next_row = 1
        for chunk in table.chunks():
            unsplit = chunk.unsplit.column("row_number").to_numpy()
            numbers = np.sort(np.r_[chunk.row_numbers, unsplit])
            np.testing.assert_array_equal(numbers, np.arange(next_row, next_row + len(numbers)))
            next_row += len(numbers)
            assert np.all((unsplit > VALID) & (unsplit <= VALID + junk))
            valid = chunk.row_numbers
            assert np.all((valid <= VALID) | (valid > VALID + junk))
            assert len(unsplit) < 20_000  # a 32 KiB block holds ~2,700 such lines (plus one read ahead)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert next_row - 1 == table.rows_in_file
    return table.rows_in_file, peak


def test_peak_memory_of_reading_does_not_grow_with_the_number_of_unsplit_rows(rows, tmp_path):
    peaks = {}
    for junk in (20_000, 200_000):
        in_file, peaks[junk] = read_all(junk_file(tmp_path, rows, junk), junk)
        assert in_file == 2 * VALID + junk
    assert peaks[200_000] < 1.5 * peaks[20_000], peaks

"""Checks shared by the Spark engine's tests: the local engine's reference for a dataset, a published
dataset read back in row-identity order, and a manifest checked against the files it describes."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from service.batch.local import prepare_run, score_file
from service.batch.publish import sha256_file


def local_reference(predictor, root: Path, parts: list[Path], folder: Path, explain, **options):
    """The local engine's output and rejects of each part, with the dataset's identity columns added (the
    scored rows' numbers are those not rejected), concatenated in part order; and the summed counts."""
    folder.mkdir()
    outputs, rejects, counts = [], [], {}
    for k, part in enumerate(parts):
        name = part.relative_to(root).as_posix()
        paths, table = prepare_run(part, folder / f"{k}.parquet", folder / f"{k}.rejects.parquet")
        summary = score_file(predictor, paths, table, explain=explain, **options)
        output, rejected = pq.read_table(paths.output), pq.read_table(paths.rejects)
        dropped = set(rejected["row_number"].to_pylist())
        numbers = [r for r in range(1, summary.counts["read"] + 1) if r not in dropped]
        files = pa.array([name] * output.num_rows, pa.string())
        outputs.append(
            output.append_column("input_file", files).append_column(
                "row_number", pa.array(numbers, pa.int64())
            )
        )
        rejects.append(
            rejected.add_column(0, "input_file", pa.array([name] * rejected.num_rows, pa.string()))
        )
        counts = {key: counts.get(key, 0) + value for key, value in summary.counts.items()}
    return pa.concat_tables(outputs), pa.concat_tables(rejects), counts


def read_dataset(folder: Path, order=("input_file", "row_number")) -> pa.Table:
    """A published dataset's parts as one table, sorted by row identity (stable: a row's reject lines keep
    their order; partition columns last)."""
    table = pq.read_table(folder)
    return table.sort_by([(name, "ascending") for name in order]) if table.num_rows else table


def with_local_types(on_spark: pa.Table, local: pa.Table) -> pa.Table:
    """The Spark output in the local output's types, which may differ only in string width: Spark writes
    pandas' ``large_string`` columns as Parquet strings, which read back as ``string``."""
    wide = {pa.large_string(): pa.string()}
    assert on_spark.column_names == local.column_names
    for here, there in zip(local.schema, on_spark.schema, strict=True):
        assert wide.get(here.type, here.type) == wide.get(there.type, there.type), here.name
    return on_spark.cast(local.schema)


def assert_manifest_describes_the_files(output: Path, manifest: dict) -> None:
    """Every part on disk is listed once, with its rows and SHA-256; the counts reconcile."""
    for name in ("output", "rejects"):
        listed = {part["path"]: part for part in manifest[name]["parts"]}
        folder = output / manifest[name]["path"]
        on_disk = {p.relative_to(output).as_posix() for p in folder.rglob("*.parquet")}
        assert set(listed) == on_disk
        for path, part in listed.items():
            assert part["sha256"] == sha256_file(output / path)
            assert part["rows"] == pq.read_metadata(output / path).num_rows
    counts = manifest["counts"]
    assert counts["read"] == counts["scored"] + counts["rejected"]
    assert counts["scored"] == sum(p["rows"] for p in manifest["output"]["parts"])
    assert counts["reject_lines"] == sum(p["rows"] for p in manifest["rejects"]["parts"])
    assert counts["read"] == sum(p["rows"] for p in manifest["input"]["parts"])
    assert (output / "_SUCCESS").read_text().strip() == sha256_file(output / "manifest.json")

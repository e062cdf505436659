"""The output of a Spark run: a folder holding the scored dataset, the rejects dataset and the manifest,
with a ``_SUCCESS`` marker published last.

    <output>/scored/[setting=<value>/]part-*.parquet   one part per task (and partition value)
    <output>/rejects/part-*.parquet                    one line per broken rule
    <output>/manifest.json                             every part with its rows and SHA-256; the counts
    <output>/_SUCCESS                                  the manifest's SHA-256; written last

Executors write both datasets into a hidden staging folder ``<output>/.lenrisk-run-<32 hex digits>/`` through
Spark's file commit protocol (a retried or speculative task's attempt never lands twice). The driver then
publishes: removes the previous run's marker, manifest and datasets, renames the new datasets into place,
writes the manifest, and writes ``_SUCCESS`` last. Readers trust the folder only when ``_SUCCESS`` is there. A
run that fails or is killed before it publishes leaves the previous publication as it was; once publishing
has begun (the old marker removed), a failure leaves no marker, and the folder holds no valid run until the
next one. The next run on the folder removes the leftovers (staging folders, and unmarked datasets and
manifest) before it starts. A folder is taken for a previous run's only when it holds a staging folder or
a Spark run's manifest, never by its names alone. On a local file system the run holds the output's lock
(:func:`service.batch.publish.run_lock`), so two runs cannot publish into one folder at once; elsewhere, give
each concurrent run its own folder.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from features.errors import FileFormatError
from service.batch.dataset_input import InputDataset
from service.batch.hadoop_fs import HadoopFS, spark_file_key
from service.batch.publish import BatchPathError, run_lock

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SCORED, REJECTS, MANIFEST, SUCCESS = "scored", "rejects", "manifest.json", "_SUCCESS"
PARTITION_COLUMNS = ("setting",)  # columns the scored dataset may be partitioned by
_STAGING = ".lenrisk-run-"
_PUBLISHED = (SCORED, REJECTS, MANIFEST, SUCCESS)
_PART_ARROW = pa.schema([("path", pa.string()), ("rows", pa.int64()), ("sha256", pa.string())])


@dataclass(frozen=True)
class OutputDataset:
    """Where a Spark run writes: the output folder (qualified) and this run's staging folder in it."""

    root: str
    partition_by: tuple[str, ...]
    staging: str

    def staged(self, name: str) -> str:
        return f"{self.staging}/{name}"

    def published(self, name: str) -> str:
        return f"{self.root}/{name}"


def plan_output(
    fs: HadoopFS, location: str, source: InputDataset, partition_by: tuple[str, ...] = ()
) -> OutputDataset:
    """Check the output folder: not inside an input folder nor holding (or being) a part, holding nothing
    but a previous run's files, and its parent existing. Raises :class:`BatchPathError`."""
    root = fs.qualify(location).rstrip("/")
    name = posixpath.basename(root)
    inside = [source.root] if source.folder else [p.file.path for p in source.parts]
    if any(_within(root, path) for path in inside) or any(_within(p.file.path, root) for p in source.parts):
        raise BatchPathError(f"{name}: the output folder must be outside the input, and not hold any of it")
    unknown = [c for c in partition_by if c not in PARTITION_COLUMNS]
    if unknown:
        raise BatchPathError(
            f"cannot partition by {', '.join(unknown)}: only by {', '.join(PARTITION_COLUMNS)}"
        )
    if fs.exists(root):
        if not fs.is_dir(root):
            raise BatchPathError(f"{name}: exists and is not a folder")
        names = fs.names(root)
        others = [n for n in names if not _is_own(n)]
        if others or (names and not _holds_a_run(fs, root, names)):
            listed = f" ({', '.join(others[:3])})" if others else ""
            raise BatchPathError(
                f"{name}: the folder holds other files than a lenrisk run's{listed}; "
                "give an empty or new folder"
            )
    elif not fs.is_dir(posixpath.dirname(root)):
        raise BatchPathError(f"{name}: the folder {posixpath.dirname(root)} does not exist")
    return OutputDataset(root, tuple(partition_by), f"{root}/{_STAGING}{uuid.uuid4().hex}")


def _within(path: str, folder: str) -> bool:
    return f"{path}/".startswith(f"{folder}/")


def _holds_a_run(fs: HadoopFS, root: str, names: list[str]) -> bool:
    """Whether the names in ``root`` are a lenrisk run's, not merely named alike: a staging folder (a run
    killed before it published), or a Spark run's manifest."""
    if any(n.startswith(_STAGING) for n in names):
        return True
    if MANIFEST not in names:
        return False
    path = f"{root}/{MANIFEST}"
    try:
        manifest = json.loads(fs.read(path, 0, fs.info(path).size))
    except ValueError:
        return False
    return isinstance(manifest, dict) and manifest.get("engine") == "spark"


def _is_own(name: str) -> bool:
    """A published name, a staging folder, or the checksum file Hadoop's local file system writes beside one
    (``.manifest.json.crc``)."""
    return name in _PUBLISHED or name.startswith(_STAGING) or name in {f".{n}.crc" for n in _PUBLISHED}


@contextmanager
def claim_output(fs: HadoopFS, output: OutputDataset) -> Iterator[None]:
    """Hold the output's lock (local file systems), remove what killed runs left, and create the staging
    folder; the staging folder is removed when the block ends, whatever happened."""
    local = output.root.startswith("file:")
    with run_lock(Path(output.root.removeprefix("file:"))) if local else nullcontext():
        if fs.exists(output.root):
            for name in fs.names(output.root):
                if name.startswith(_STAGING):
                    fs.delete(output.published(name))
            if not fs.exists(output.published(SUCCESS)):
                for name in _PUBLISHED:
                    fs.delete(output.published(name))
        fs.mkdirs(output.staging)
        try:
            yield
        finally:
            fs.delete(output.staging)


def describe_parts(spark: SparkSession, output: OutputDataset, name: str) -> list[dict[str, Any]]:
    """Every Parquet part of the staged dataset ``name``: its path relative to the output folder once
    published, its rows (from its footer) and SHA-256, computed by the executors (the driver gets one row per
    part)."""
    from pyspark.sql import functions as sf

    folder = output.staged(name)
    fs = HadoopFS(spark)
    if not fs.exists(folder) or not any(True for _ in fs.files_under(folder)):
        return []
    files = (
        spark.read.format("binaryFile")
        .option("recursiveFileLookup", "true")
        .option("pathGlobFilter", "*.parquet")
        .load(folder)
        .select(sf.col("path"), sf.col("content"))
    )
    described = files.mapInArrow(_describe, "path string, rows long, sha256 string").collect()
    parts = [
        {"path": f"{name}/{spark_file_key(p.path)[len(folder) + 1 :]}", "rows": p.rows, "sha256": p.sha256}
        for p in described
    ]
    return sorted(parts, key=lambda part: part["path"])


def _describe(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        rows = []
        paths, contents = batch.column("path").to_pylist(), batch.column("content").to_pylist()
        for path, content in zip(paths, contents, strict=True):
            try:
                count = pq.read_metadata(pa.BufferReader(content)).num_rows
            except (pa.ArrowException, OSError):
                raise FileFormatError(f"{path}: a written part is not readable Parquet") from None
            rows.append({"path": path, "rows": count, "sha256": hashlib.sha256(content).hexdigest()})
        yield pa.RecordBatch.from_pylist(rows, schema=_PART_ARROW)


def publish(fs: HadoopFS, output: OutputDataset, manifest: dict[str, Any]) -> None:
    """Replace the previous run's files by the staged datasets, then write the manifest, then ``_SUCCESS``."""
    text = json.dumps(manifest, indent=2).encode() + b"\n"
    for name in (SUCCESS, MANIFEST, SCORED, REJECTS):  # the marker first: nothing vouches for a half state
        fs.delete(output.published(name))
    for name in (SCORED, REJECTS):
        if fs.exists(output.staged(name)):
            fs.rename(output.staged(name), output.published(name))
        else:  # no row at all: an empty folder
            fs.mkdirs(output.published(name))
    fs.write(output.staged(MANIFEST), text)
    fs.rename(output.staged(MANIFEST), output.published(MANIFEST))
    fs.write(output.published(SUCCESS), hashlib.sha256(text).hexdigest().encode() + b"\n")

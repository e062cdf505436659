"""Staging and publishing a scoring run: output and rejects written beside their destinations, counts
reconciled, then renamed into place with the manifest last.

Output, rejects and the manifest are written to hidden temporary files beside their destinations
(:class:`features.tableio.StagedFile`) and renamed into place, manifest last, only when
``rows in the file == rows scored + rows rejected``; any failure leaves nothing under the final names.
A run holds a lock on its output and rejects (:func:`claim_outputs`), which makes the temporaries a killed
run left behind recognisable, and removes them.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pv
import pyarrow.parquet as pq

from features.errors import FileFormatError, LenriskError
from features.model.riskmodel import INTERVAL_LEVEL
from features.tableio import StagedFile, atomic_write, table_format
from service.batch.read import InputTable
from service.batch.score import REJECT_SCHEMA, Explain, Scored, output_schema
from service.predictor import Predictor

MANIFEST_SUFFIX = ".manifest.json"


class BatchPathError(LenriskError):
    """Output paths that cannot be used: over the input, output equal to rejects, or in a missing folder."""


class ReconciliationError(LenriskError):
    """Rows read differ from rows scored plus rows rejected; nothing is published."""


@dataclass(frozen=True)
class RunPaths:
    """Where a run reads and writes; rejects default to ``<output stem>.rejects.csv`` beside the output."""

    input: Path
    output: Path
    rejects: Path
    manifest: Path


def plan_paths(input_path: Path, output_path: Path, rejects_path: Path | None = None) -> RunPaths:
    """Resolve and check the paths of a run; raises :class:`BatchPathError` or :class:`FileFormatError`."""
    source = Path(input_path).resolve()
    output = Path(output_path).resolve()
    rejects = Path(rejects_path).resolve() if rejects_path else output.with_name(f"{output.stem}.rejects.csv")
    manifest = output.with_name(output.name + MANIFEST_SUFFIX)
    for path in (source, output, rejects):
        table_format(path)
    if not source.is_file():
        raise FileFormatError(f"{source.name}: no such file")
    for path in (output, rejects):
        if not path.parent.is_dir():
            raise BatchPathError(f"{path.name}: the folder {path.parent} does not exist")
    written = (output, rejects, manifest)
    if source in written or any(p.exists() and p.samefile(source) for p in written):
        raise BatchPathError(f"{source.name}: the output, rejects and manifest must not overwrite the input")
    if len(set(written)) < len(written):
        raise BatchPathError(f"{output.name}: output and rejects must be different files")
    return RunPaths(source, output, rejects, manifest)


@contextmanager
def claim_outputs(paths: RunPaths) -> Iterator[None]:
    """Hold the run's locks on its output and rejects, after removing what killed runs left of them.

    Each lock is an ``flock`` on a hidden ``.{name}.lock`` beside the file, held for the whole run and
    released by the kernel when the process ends, killed or not; a run that finds either lock held raises
    :class:`BatchPathError` (two runs publishing the same files would mix their manifests). Under the locks no
    other run is writing these files, so every temporary named after them is a killed run's and is removed:
    ``.{name}.{32 hex digits}.tmp`` of the output, rejects and manifest
    (:class:`features.tableio.StagedFile`); nothing else is touched. The lock files are removed when the
    run ends.
    """
    with ExitStack() as stack:
        for path in (paths.output, paths.rejects):
            stack.enter_context(run_lock(path))
        for path in (paths.output, paths.rejects, paths.manifest):
            for stale in StagedFile.temporaries(path):
                stale.unlink(missing_ok=True)
        yield


@contextmanager
def run_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``.{name}.lock`` beside ``path``, whose file is removed (still locked) at
    the end. A lock taken on a file its holder removed meanwhile is not the lock: it is taken on the new one.
    """
    lock = path.with_name(f".{path.name}.lock")
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = os.fstat(fd)
            current = os.stat(lock)
        except BlockingIOError:
            os.close(fd)
            raise BatchPathError(f"{path.name}: another run is writing it") from None
        except FileNotFoundError:
            current = None
        if current is not None and (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino):
            break
        os.close(fd)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


@dataclass(frozen=True)
class RunSummary:
    """Counts and manifest of a published run."""

    paths: RunPaths
    manifest: dict[str, Any]

    @property
    def counts(self) -> dict[str, int]:
        """``read``, ``scored``, ``rejected`` (rows) and ``reject_lines``."""
        return self.manifest["counts"]


class _StagedTable:
    """A table written batch by batch to a staged file beside ``path``."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.file = StagedFile(path)
        self.rows = 0
        self._open = True
        if table_format(path) == ".parquet":
            self._writer = pq.ParquetWriter(self.file.tmp, schema, use_dictionary=_dictionary_columns(schema))
        else:
            self._writer = pv.CSVWriter(self.file.tmp, schema)

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            self._writer.write_batch(batch)
            self.rows += batch.num_rows

    def close(self) -> str:
        """Finish the file and return its SHA-256."""
        self._close()
        return sha256_file(self.file.tmp)

    def discard(self) -> None:
        """Close and delete the staged file."""
        try:
            self._close()
        finally:
            self.file.discard()

    def _close(self) -> None:
        if self._open:
            self._open = False
            self._writer.close()


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """Columns worth Parquet dictionary encoding: not floats and not ``patient_id``, whose values rarely
    repeat (trying a dictionary and falling back costs a large share of the write time; docs/batch.md)."""
    return [f.name for f in schema if not pa.types.is_floating(f.type) and f.name != "patient_id"]


def write_run(
    paths: RunPaths,
    source: InputTable,
    results: Iterable[Scored],
    *,
    predictor: Predictor,
    explain: Explain,
    engine: str,
    interval: bool = False,
    progress: Callable[[int], None] | None = None,
) -> RunSummary:
    """Write scored chunks and rejects, reconcile the counts, then publish output, rejects and manifest.

    ``results`` must exhaust ``source`` (which then knows its ``rows_in_file``). Writing runs in a background
    thread, one chunk behind scoring. Nothing appears under the final names unless
    ``rows in the file == rows read == rows scored + rows rejected``; otherwise :class:`ReconciliationError`.
    Any error removes the staged files.
    """
    staged: list[_StagedTable] = []
    writing: Future[None] | None = None
    with ThreadPoolExecutor(2) as pool:  # the input's SHA-256, and writing
        input_sha256 = pool.submit(sha256_file, paths.input)
        try:
            staged.append(
                _StagedTable(paths.output, output_schema(source.schema, explain, interval=interval))
            )
            staged.append(_StagedTable(paths.rejects, REJECT_SCHEMA))
            output, rejects = staged
            read = rejected = 0
            for scored in results:
                if writing is not None:
                    writing.result()
                writing = pool.submit(_write, output, rejects, scored)
                read += scored.rows
                rejected += scored.rejected
                if progress:
                    progress(scored.rows)
            if writing is not None:
                writing.result()
            hashes = output.close(), rejects.close()
            expected = {source.rows_in_file, read} | ({source.rows} if source.rows is not None else set())
            if len(expected) != 1 or read != output.rows + rejected:
                raise ReconciliationError(
                    f"rows in the file {source.rows_in_file}, read {read}, scored {output.rows}, rejected "
                    f"{rejected}: the counts do not reconcile, so nothing was published"
                )
            counts = {"read": read, "scored": output.rows, "rejected": rejected, "reject_lines": rejects.rows}
            manifest = _manifest(
                paths, source, input_sha256.result(), hashes, counts, predictor, explain, interval, engine
            )
            _publish(paths, staged, manifest)
        except BaseException:
            if writing is not None:
                wait([writing])
            for table in staged:
                table.discard()
            raise
    return RunSummary(paths, manifest)


def _write(output: _StagedTable, rejects: _StagedTable, scored: Scored) -> None:
    output.write(scored.output)
    rejects.write(scored.rejects)


def _manifest(
    paths: RunPaths,
    source: InputTable,
    input_sha256: str,
    hashes: tuple[str, str],
    counts: dict[str, int],
    predictor: Predictor,
    explain: Explain,
    interval: bool,
    engine: str,
) -> dict[str, Any]:
    """The manifest. Every path in it is relative to the manifest's folder (``../in/lines.csv``, from the
    resolved paths), so it stays right when the folders move together."""
    beside = paths.manifest.parent
    return {
        "lenrisk_version": importlib.metadata.version("lenrisk"),
        "engine": engine,
        "explain": explain.value,
        "interval": INTERVAL_LEVEL if interval else None,  # level of the interval columns; None: not written
        "input": {
            "path": os.path.relpath(paths.input, beside),
            "format": source.format[1:],
            "sha256": input_sha256,
        },
        "output": {"path": os.path.relpath(paths.output, beside), "sha256": hashes[0]},
        "rejects": {"path": os.path.relpath(paths.rejects, beside), "sha256": hashes[1]},
        "counts": counts,
        "models": models_manifest(predictor),
    }


def models_manifest(predictor: Predictor) -> dict[str, dict[str, Any]]:
    """The manifest's account of the models that scored a run, per outcome."""
    return {
        outcome: {
            "name": m.name,
            "version": m.version,
            "sha256": m.digest,
            "family": m.model.family,
            "small_development_sample": m.small_sample,
            "has_interval": m.model.has_interval,
        }
        for outcome, m in predictor.models.items()
    }


def _publish(paths: RunPaths, staged: list[_StagedTable], manifest: dict[str, Any]) -> None:
    """Rename the staged tables into place, then write the manifest the same way (last)."""
    paths.manifest.unlink(missing_ok=True)  # a stale manifest must never vouch for the new files
    for table in staged:
        table.file.publish()
    with atomic_write(paths.manifest, "x") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")


def sha256_file(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()

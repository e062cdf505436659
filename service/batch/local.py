"""The local engine of ``lenrisk score``: the whole run in this process, streaming, bounded memory.

A background thread reads ahead; ``workers`` threads score consecutive chunks at once; a writer thread stages
the results in input order (:mod:`service.batch.parallel`, :func:`service.batch.publish.write_run`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from service.batch.parallel import in_order, one_thread_per_kernel, prefetched
from service.batch.publish import RunPaths, RunSummary, claim_outputs, plan_paths, write_run
from service.batch.read import BATCH_ROWS, InputTable, open_input
from service.batch.score import Explain, output_schema, score_chunk
from service.predictor import Predictor

WORKERS = 2  # chunks scored at once


def prepare_run(
    input_path: Path, output_path: Path, rejects_path: Path | None = None, *, batch_rows: int = BATCH_ROWS
) -> tuple[RunPaths, InputTable]:
    """Check paths and the input's header before any model is loaded or any file is written."""
    paths = plan_paths(input_path, output_path, rejects_path)
    return paths, open_input(paths.input, batch_rows=batch_rows)


def score_file(
    predictor: Predictor,
    paths: RunPaths,
    source: InputTable,
    *,
    explain: Explain = Explain.NONE,
    interval: bool = False,
    progress: Callable[[int], None] | None = None,
    workers: int = WORKERS,
) -> RunSummary:
    """Score ``source`` in this process and publish the run under its locks (see
    :func:`service.batch.publish.claim_outputs` and :func:`service.batch.publish.write_run`)."""
    schema = output_schema(source.schema, explain, interval=interval)
    with claim_outputs(paths), one_thread_per_kernel():
        results = in_order(
            lambda chunk: score_chunk(predictor, chunk, explain, schema, interval=interval),
            prefetched(source.chunks()),
            workers,
        )
        return write_run(
            paths,
            source,
            results,
            predictor=predictor,
            explain=explain,
            interval=interval,
            engine="local",
            progress=progress,
        )

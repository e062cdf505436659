"""What every ``lenrisk`` command shares: the ``--quiet`` switch, rich output and progress.

Progress display never touches the logic: library functions take a ``progress`` callable (or None), and
the commands pass one of the callables made here. On a terminal progress is a rich bar; elsewhere (CI logs,
``nohup``, pipes), where a bar would appear only once finished, it is plain lines (:class:`ProgressLines`).
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, redirect_stderr
from dataclasses import dataclass
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

Quiet = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print only errors and the final result: no progress, no notes.")
]


def console(quiet: bool = False) -> Console:
    """A console on stdout that prints nothing when ``quiet``."""
    return Console(quiet=quiet)


@dataclass
class _Line:
    description: str
    total: int | None
    done: int = 0
    tenths: int = -1  # tenths of the total done when the last line was printed
    printed: float = 0.0  # time.monotonic() of the last line


class ProgressLines:
    """Progress as plain lines, each time-stamped and flushed: a task's start, every tenth of its total, its
    end; for a task of unknown total, at most one line per :attr:`EVERY` seconds and one at the end.

    Takes the calls the commands make on a rich :class:`~rich.progress.Progress`, a context manager too.
    """

    EVERY = 10.0

    def __init__(self, out: Console, unit: str = "") -> None:
        self._out, self._unit = out, f" {unit}" if unit else ""
        self._tasks: list[_Line] = []

    def __enter__(self) -> ProgressLines:
        return self

    def __exit__(self, *exc: object) -> None:
        for task, line in enumerate(self._tasks):  # the end of each task of unknown total
            if line.total is None:
                self._report(task, force=True)

    def add_task(self, description: str, total: int | None = None) -> int:
        self._tasks.append(_Line(description, total))
        self._report(len(self._tasks) - 1)
        return len(self._tasks) - 1

    def update(self, task: int, *, advance: int = 0, description: str | None = None) -> None:
        line = self._tasks[task]
        line.done += advance
        line.description = description or line.description
        self._report(task)

    def advance(self, task: int, advance: int = 1) -> None:
        self.update(task, advance=advance)

    def _report(self, task: int, force: bool = False) -> None:
        line, now = self._tasks[task], time.monotonic()
        if line.total:
            tenths = 10 * line.done // line.total
            if tenths == line.tenths:
                return
            line.tenths = tenths
            count = f"{line.done:,}/{line.total:,}{self._unit} ({100 * line.done // line.total}%)"
        else:
            if line.printed and now - line.printed < self.EVERY and not force:
                return
            count = f"{line.done:,}{self._unit}"
        line.printed = now
        stamp = time.strftime("%H:%M:%S")
        self._out.print(f"{stamp} {line.description}: {count}", markup=False, highlight=False, soft_wrap=True)


def _to_terminal(quiet: bool) -> bool:
    """Whether progress goes to a terminal, where a rich bar redraws (or nowhere, when ``quiet``)."""
    return quiet or console().is_interactive


@contextmanager
def progress(quiet: bool) -> Iterator[Progress | ProgressLines]:
    """Progress (nothing when ``quiet``): a rich bar on a terminal, else :class:`ProgressLines`; add tasks
    with ``add_task`` and move them on with ``advance``."""
    if not _to_terminal(quiet):
        with ProgressLines(console()) as lines:
            yield lines
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=quiet,
        transient=False,
    ) as bar:
        yield bar


class _RowsPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} rows/s" if speed else "", style="progress.data.speed")


@contextmanager
def row_progress(quiet: bool, total: int | None) -> Iterator[Callable[[int], None]]:
    """A rich progress bar with rows and rows/s, or :class:`ProgressLines` when the output is not a terminal
    (nothing when ``quiet``); yields ``advance(rows)``."""
    if not _to_terminal(quiet):
        with ProgressLines(console(), unit="rows") as lines:
            task = lines.add_task("scoring", total=total)
            yield lambda rows: lines.advance(task, rows)
        return
    with Progress(
        TextColumn("scoring"),
        BarColumn(),
        TextColumn("{task.completed:,} rows"),
        _RowsPerSecond(),
        TimeElapsedColumn(),
        disable=quiet,
    ) as bar:
        task = bar.add_task("scoring", total=total)
        yield lambda rows: bar.advance(task, rows)


@contextmanager
def mlflow_output(quiet: bool) -> Iterator[None]:
    """MLflow's own chatter: warnings only (all of it hidden when ``quiet``), no download progress bars."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # mlflow.utils.environment warns that pip (absent from uv environments) goes unpinned into conda.yaml.
    levels = {
        "mlflow": logging.ERROR if quiet else logging.WARNING,
        "mlflow.utils.environment": logging.ERROR,
    }
    loggers = {logging.getLogger(name): level for name, level in levels.items()}
    before = {logger: logger.level for logger in loggers}
    for logger, level in loggers.items():
        logger.setLevel(level)
    try:
        with redirect_stderr(io.StringIO()) if quiet else nullcontext():  # "Successfully registered ..."
            yield
    finally:
        for logger, level in before.items():
            logger.setLevel(level)

"""What every ``lenrisk`` command shares: the ``--quiet`` switch, rich output and progress.

Progress display never touches the logic: library functions take a ``progress`` callable (or None), and
the commands pass one of the callables made here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
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

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors and the final result.")]


def console(quiet: bool = False) -> Console:
    """A console on stdout that prints nothing when ``quiet``."""
    return Console(quiet=quiet)


@contextmanager
def progress(quiet: bool) -> Iterator[Progress]:
    """A rich progress display (disabled when ``quiet``); add tasks with ``add_task`` and ``advance``."""
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
    """A rich progress bar with rows and rows/s (disabled when ``quiet``); yields ``advance(rows)``."""
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

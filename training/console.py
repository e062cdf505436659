"""Shared pieces of the ``lenrisk`` command line: the ``--quiet`` switch and rich progress.

Progress display never touches the logic: library functions take a ``progress`` callable (or None).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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

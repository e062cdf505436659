"""The ``lenrisk`` command line: one Typer app, one sub-command module per area.

Domain errors (:class:`features.errors.LenriskError`) are mapped here, once, to a message on stderr and
exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import click
import typer
from typer.core import TyperGroup

from features.errors import ContractError, LenriskError
from training.cohort.cli import cohort


class DomainFailure(click.ClickException):
    """A refused input or an impossible request: message on stderr, exit code 2."""

    exit_code = 2


class _Group(TyperGroup):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ContractError as err:
            raise DomainFailure(err.summary()) from err
        except LenriskError as err:
            raise DomainFailure(str(err)) from err


app = typer.Typer(
    name="lenrisk",
    cls=_Group,
    no_args_is_help=True,
    add_completion=False,
    help="Risk of early lenalidomide discontinuation for toxicity and of dose reduction.",
)
app.command("cohort")(cohort)

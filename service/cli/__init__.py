"""The ``lenrisk`` command line: one Typer app, one module per command group, over library functions.

Domain errors (:class:`features.errors.LenriskError`) are mapped here, once, to a message on stderr and
exit code 2; anything else is a bug and keeps its traceback. Only this package imports Typer and rich.
pandas, pyarrow, MLflow, the models, uvicorn and Spark are imported inside the commands that need them, so
``lenrisk --help`` starts in well under a second.
"""

from __future__ import annotations

from typing import NoReturn

import typer
from typer.core import TyperGroup

from features.errors import ContractError, LenriskError
from service.cli.cohort import cohort
from service.cli.monitor import monitor
from service.cli.score import score
from service.cli.serve import apikey, serve
from service.cli.train import promote, train
from service.cli.update import update
from service.cli.validate import validate


class _Group(TyperGroup):
    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except ContractError as err:
            _fail(err.summary())
        except LenriskError as err:
            _fail(str(err))


def _fail(message: str) -> NoReturn:
    """A refused input or an impossible request: the message on stderr, exit code 2."""
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code=2)


app = typer.Typer(
    name="lenrisk",
    cls=_Group,
    # Click's plain help: flags show no value type (typer's rich help types each of them <bool>), and
    # --help needs no rich.
    rich_markup_mode=None,
    no_args_is_help=True,
    add_completion=False,
    help="Before a lenalidomide treatment line starts: the risk of stopping it early for toxicity and of "
    "needing a dose reduction. Generate synthetic data, train and promote the models, score files, and "
    "serve the API and calculator.",
)
app.command("cohort")(cohort)
app.command("train")(train)
app.command("promote")(promote)
app.command("score")(score)
app.command("serve")(serve)
app.command("apikey")(apikey)
app.command("validate")(validate)
app.command("update")(update)
app.command("monitor")(monitor)

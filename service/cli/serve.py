"""``lenrisk serve`` and ``lenrisk apikey``: the service's command-line entry points."""

from __future__ import annotations

from typing import Annotated

import typer

from service.cli.console import Quiet, console
from service.errors import UnsafeBindError
from service.security import new_key


def serve(
    host: Annotated[
        str,
        typer.Option(
            metavar="ADDRESS",
            help="Address to listen on; any other than this computer's own (loopback) needs API keys.",
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, metavar="N", help="Number of server processes.")] = 1,
    quiet: Quiet = False,
) -> None:
    """Serve the API and the calculator page over HTTP.

    The champion models load in the background: /readyz answers 200 once they have.
    """
    import uvicorn

    from service.api.loopback import is_loopback
    from service.settings import get_settings

    settings = get_settings()
    if not settings.auth_enabled and not is_loopback(host):
        raise UnsafeBindError(
            f"refusing to listen on {host} without API keys; set LENRISK_API_KEYS (see `lenrisk apikey`) "
            "or listen on 127.0.0.1"
        )
    console(quiet).print(
        f"lenrisk on http://{host}:{port}  (docs: /docs, ready: /readyz; models "
        f"{settings.discontinuation_model} and {settings.dose_reduction_model} @{settings.model_alias})"
    )
    uvicorn.run(
        "service.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning" if quiet else "info",
        timeout_graceful_shutdown=30,
    )


def apikey(name: Annotated[str, typer.Argument(metavar="NAME", help="Client name, e.g. clinic-a.")]) -> None:
    """Make a new API key for a client.

    Give the key to the client; put only its digest in LENRISK_API_KEYS, as printed.
    """
    key, digest = new_key()
    typer.echo(f"key (give to {name}, shown once): {key}")
    typer.echo(f'LENRISK_API_KEYS=\'{{"{name}": "{digest}"}}\'')

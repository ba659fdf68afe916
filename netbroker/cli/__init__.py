"""The ``netbroker`` command line: Typer commands over the same core the API calls.

Tables and progress for people, ``--json`` for scripts. Domain errors are
printed as one clear message and exit with status 1 (2 for configuration);
nothing is half-done. Commands live by topic: ``registry`` (db, grid,
config, serve, demo), ``network`` (ingest, collect, matrix, links, NWS),
``clouds`` (membership) and ``tasks`` (submit, tasks, jobs, kill, explain,
broker, rebroker, priority).
"""

from __future__ import annotations

import sys

from rich.markup import escape
from sqlalchemy.exc import DBAPIError

from netbroker.cli import (  # noqa: F401  (each registers its commands)
    auth,
    clouds,
    dispatch,
    network,
    pd2p,
    registry,
    sim,
    tasks,
)
from netbroker.cli._app import app, err
from netbroker.errors import ConfigError, NetbrokerError

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point: run the app, print domain errors plainly."""
    try:
        app()
    except ConfigError as exc:
        err.print("[red]error:[/red]", escape(str(exc)), highlight=False)
        sys.exit(2)
    except NetbrokerError as exc:
        err.print("[red]error:[/red]", escape(str(exc)), highlight=False)
        sys.exit(1)
    except DBAPIError as exc:  # the database refused or is unreachable: say so, no traceback
        err.print("[red]database error:[/red]", escape(str(exc.orig)), highlight=False)
        sys.exit(1)

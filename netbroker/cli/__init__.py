"""The ``netbroker`` command line: Typer commands over the same core the API calls.

Tables and progress for people, ``--json`` for scripts. Every error is
printed as one clear message (no traceback unless ``--debug``) and exits
with status 1 (2 for a usage mistake or the configuration); nothing is
half-done. Commands live by topic: ``registry`` (db, grid,
config, serve, demo), ``network`` (ingest, collect, matrix, links, NWS),
``clouds`` (membership) and ``tasks`` (submit, tasks, jobs, kill, explain,
broker, rebroker, priority).

An edge: may import anything of ours except ``pilot``.
"""

from __future__ import annotations

import os
import sys

import typer
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
from netbroker.cli._app import app, err, out
from netbroker.common.errors import ConfigError, NetbrokerError

__all__ = ["app", "main"]

# The click typer runs on (its own copy in newer typers): its exceptions, found through
# the one typer exports.
_click = sys.modules[typer.BadParameter.__module__]
_NO_ARGS = getattr(_click, "NoArgsIsHelpError", ())


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app; every error is one line on stderr and a
    non-zero exit (2 for usage and configuration, 1 otherwise); ``--debug`` (or
    ``NETBROKER_DEBUG=1``) shows the traceback of an unexpected one instead."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("NETBROKER_DEBUG") == "1"
    try:
        code = app(args=args, prog_name="netbroker", standalone_mode=False)
    except _NO_ARGS as exc:
        out.print(exc.ctx.get_help() if exc.ctx else str(exc), highlight=False)
        code = 2
    except _click.UsageError as exc:
        command = f"netbroker {exc.ctx.command_path.partition(' ')[2]}".rstrip() \
            if exc.ctx else "netbroker"
        _fail(f"{exc.format_message()} (see `{command} --help`)", 2)
    except _click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except typer.Abort:
        _fail("aborted", 1)
    except ConfigError as exc:
        _fail(str(exc), 2)
    except NetbrokerError as exc:
        _fail(str(exc), 1)
    except DBAPIError as exc:  # the database refused or is unreachable: say so, no traceback
        _fail(f"database error: {_one_line(str(exc.orig))}", 1)
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        _fail(f"cannot use{where}: {exc.strerror or exc}", 1)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as exc:
        if debug:
            raise
        _fail(f"internal error: {type(exc).__name__}: {_one_line(str(exc))} "
              "(run with --debug for the traceback)", 1)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> None:
    err.print("[red]error:[/red]", escape(message), highlight=False, soft_wrap=True)
    sys.exit(code)


def _one_line(text: str) -> str:
    return " ".join(text.split())

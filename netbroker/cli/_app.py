"""The ``netbroker`` Typer app, its sub-apps and what every command shares."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import Engine

import netbroker
from netbroker.common.config import Settings, load_settings
from netbroker.common.errors import NetbrokerError
from netbroker.db import create_db_engine, current_revision, describe_url, head_revision

__all__ = [
    "JsonOpt",
    "app",
    "config_app",
    "db_app",
    "engine_of",
    "err",
    "grid_app",
    "out",
    "print_json",
    "print_rows",
    "print_table",
    "settings_of",
]

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="netbroker: network-aware brokerage and data placement for grids.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema: upgrade, current, check.")
grid_app = typer.Typer(no_args_is_help=True, help="The grid registry: import and show.")
config_app = typer.Typer(no_args_is_help=True, help="Settings: show and check.")
app.add_typer(db_app, name="db")
app.add_typer(grid_app, name="grid")
app.add_typer(config_app, name="config")

out = Console()
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _version(value: bool) -> None:
    if value:
        out.print(f"netbroker {netbroker.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option(
        "--config", envvar="NETBROKER_CONFIG", help="TOML settings file.")] = None,
    _: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                    help="Print the version and exit.")] = False,
    __: Annotated[bool, typer.Option("--debug", help="Show the traceback of an unexpected "
                                     "error (also NETBROKER_DEBUG=1).")] = False,
) -> None:
    ctx.obj = {"config": config}


def settings_of(ctx: typer.Context, **overrides: Any) -> Settings:
    path = ctx.find_root().obj["config"]
    return load_settings(path, overrides={k: v for k, v in overrides.items() if v is not None})


def engine_of(ctx: typer.Context, *, require_head: bool = True) -> Engine:
    settings = settings_of(ctx)
    engine = create_db_engine(settings.database)
    if require_head:
        current, head = current_revision(engine), head_revision()
        if current != head:
            raise NetbrokerError(
                f"database {describe_url(settings.database.url)} is at schema {current}, "
                f"not {head}: run `netbroker db upgrade` first")
    return engine


def print_json(data: Any) -> None:
    """``data`` as JSON, times as ISO 8601 with ``Z`` (as the API writes them)."""
    sys.stdout.write(json.dumps(data, indent=2, default=_json_value) + "\n")


_T = TypeVar("_T")


def print_table(items: Iterable[_T], row: Callable[[_T], Sequence[str]], title: str,
                columns: Sequence[str], *, right: Collection[str] = ()) -> None:
    """A table titled ``title``: ``columns`` (those in ``right`` right-justified), one
    row per item, its cells ``row(item)``."""
    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="right" if col in right else "left")
    for item in items:
        table.add_row(*row(item))
    out.print(table)


def print_rows(rows: Sequence[_T], row: Callable[[_T], Sequence[str]], title: str,
               columns: Sequence[str], *, as_json: bool, right: Collection[str] = ()) -> None:
    """``rows`` as JSON (``--json``), or as :func:`print_table` prints them."""
    if as_json:
        print_json(rows)
    else:
        print_table(rows, row, title, columns, right=right)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return str(value)

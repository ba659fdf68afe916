"""Commands of bearer tokens: create (shown once), list, revoke."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from netbroker.accounts import auth
from netbroker.cli._app import JsonOpt, app, engine_of, err, out, print_rows
from netbroker.common.units import iso_utc

__all__: list[str] = []

token_app = typer.Typer(no_args_is_help=True, help="Bearer tokens: create, list, revoke.")
app.add_typer(token_app, name="token")


@token_app.command("create")
def create(ctx: typer.Context,
           role: Annotated[str, typer.Option(help=f"One of {', '.join(auth.ROLES)}.")],
           name: Annotated[str, typer.Option(help="Who holds it (a pilot's token name owns "
                                                  "the jobs it takes; a user's is its user).")],
           file: Annotated[Path | None, typer.Option(
               "--file", help="Write the token to this file (mode 0600, no newline: PanDA "
                              "Pilot 3 sends the file's bytes as they are, from "
                              "$PANDA_AUTH_TOKEN) instead of printing it.")] = None,
           ) -> None:
    """Create a token and print it: it is shown this once, only its hash is stored."""
    token = auth.create_token(engine_of(ctx), name, role)
    if file is not None:
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out_file:
            out_file.write(token)
        err.print(f"token {name!r} with role {role} written to {file} (keep it safe)")
        return
    err.print(f"token {name!r} with role {role} (shown once, keep it safe):")
    out.print(token, highlight=False, soft_wrap=True)


@token_app.command("list")
def list_tokens(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Every token's name, role and dates (never the token)."""
    rows = auth.list_tokens(engine_of(ctx))
    print_rows(rows, lambda r: (r["name"], r["role"], iso_utc(r["created_at"]),
                                iso_utc(r["revoked_at"])),
               f"tokens ({len(rows)})", ("name", "role", "created (UTC)", "revoked (UTC)"),
               as_json=as_json)


@token_app.command("revoke")
def revoke(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Token name.")]
           ) -> None:
    """Revoke a token (it stops working within seconds everywhere)."""
    auth.revoke_token(engine_of(ctx), name)
    out.print(f"token {name!r} revoked")

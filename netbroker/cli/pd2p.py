"""Commands of PD2P: run a cycle, popularity, the decision feed, its Rucio form, clean-up."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from netbroker.cli._app import (
    JsonOpt,
    app,
    engine_of,
    out,
    print_json,
    print_rows,
    print_table,
    settings_of,
)
from netbroker.placement import pd2p

__all__: list[str] = []

pd2p_app = typer.Typer(no_args_is_help=True, help="PD2P: popularity-driven data placement.")
app.add_typer(pd2p_app, name="pd2p")

Id = Annotated[int, typer.Argument(metavar="ID", help="Decision id.")]


@pd2p_app.command("run")
def run(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Run one PD2P cycle now (the service runs it every pd2p.cycle_minutes)."""
    result = pd2p.run_cycle(engine_of(ctx), settings_of(ctx))
    if as_json:
        print_json(result)
        return
    out.print(f"{len(result['decisions'])} new decisions, {len(result['expired'])} expired")
    for d in result["decisions"]:
        out.print(f"  {d['id']}: {escape(d['dataset'])} -> {d['target']}: "
                  f"{escape(d['reason'])}", highlight=False)


@pd2p_app.command("popularity")
def show_popularity(ctx: typer.Context, dataset: str | None = None, top: int = 20,
                    as_json: JsonOpt = False) -> None:
    """Jobs brokered per dataset over 1 and 7 days, distinct users, waiting jobs."""
    rows = pd2p.popularity(engine_of(ctx), dataset, top)
    columns = ("dataset", "GB", "jobs 1d", "jobs 7d", "users 7d", "waiting")
    print_rows(rows, lambda r: (escape(r["dataset"]), f"{r['bytes'] / 1e9:.1f}",
                                str(r["accesses_1d"]), str(r["accesses_1w"]), str(r["users_1w"]),
                                str(r["waiting_jobs"])),
               "dataset popularity", columns, right=columns[1:], as_json=as_json)


@pd2p_app.command("decisions")
def decisions(ctx: typer.Context, after: int = 0, limit: int = 50,
              as_json: JsonOpt = False) -> None:
    """The replication decisions after a cursor, oldest first."""
    page = pd2p.feed(engine_of(ctx), after, limit)
    if as_json:
        print_json(page)
        return
    print_table(page["decisions"], lambda d: (str(d["id"]), d["state"], escape(d["dataset"]),
                                              f"{d['bytes'] / 1e9:.1f}", d["target"],
                                              escape(d["reason"])),
                f"replication decisions (next cursor {page['next']})",
                ("id", "state", "dataset", "GB", "target", "reason"))


@pd2p_app.command("export")
def export(ctx: typer.Context,
           fmt: Annotated[str, typer.Option("--format", help="rucio")] = "rucio",
           after: int = 0, limit: int = 1000) -> None:
    """The decisions as Rucio add_replication_rule arguments (JSON), for DDM tools."""
    if fmt != "rucio":
        raise typer.BadParameter(f"--format {fmt!r}: only rucio is known")
    settings = settings_of(ctx)
    print_json(pd2p.feed(engine_of(ctx), after, limit, "rucio", settings.pd2p))


@pd2p_app.command("ack")
def ack(ctx: typer.Context, decision_id: Id) -> None:
    """Acknowledge a decision (DDM took it)."""
    out.print(f"decision {pd2p.mark_acknowledged(engine_of(ctx), decision_id)['id']} "
              "acknowledged")


@pd2p_app.command("done")
def done(ctx: typer.Context, decision_id: Id, as_json: JsonOpt = False) -> None:
    """Report a decision's replica made: it enters the catalogue, waiting jobs move."""
    result = pd2p.mark_done(engine_of(ctx), decision_id, settings_of(ctx))
    if as_json:
        print_json(result)
        return
    moved = result["rebrokered"]
    out.print(f"decision {decision_id} done: replica of {escape(result['dataset'])} at "
              f"{result['target']}; {moved['activated']} jobs activated, "
              f"{len(moved['moved'])} moved")


@pd2p_app.command("fail")
def fail(ctx: typer.Context, decision_id: Id,
         reason: Annotated[str, typer.Option(help="Why the replica failed.")]) -> None:
    """Report a decision failed."""
    pd2p.mark_failed(engine_of(ctx), decision_id, reason)
    out.print(f"decision {decision_id} failed")


@pd2p_app.command("cleanup")
def cleanup(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """PD2P replicas proposed for deletion (lifetime over, or no longer popular)."""
    rows = pd2p.cleanup_proposals(engine_of(ctx), settings_of(ctx).pd2p)
    if as_json:
        print_json(rows)
        return
    for r in rows:
        out.print(f"{escape(r['dataset'])} at {r['endpoint']}: {escape(r['reason'])}",
                  highlight=False)
    if not rows:
        out.print("no replica to clean up")

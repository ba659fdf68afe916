"""Commands of the dispatcher's side: pilot demand per queue, the watchdog once."""

from __future__ import annotations

import typer
from rich.table import Table

from dispatcher.core import pilot_demand, watchdog
from dispatcher.events import release_silent_ranges
from netbroker.cli._app import JsonOpt, app, engine_of, out, print_json, settings_of
from netbroker.db.grid import GridDB

__all__: list[str] = []

queues_app = typer.Typer(no_args_is_help=True, help="Compute queues: pilot demand.")
app.add_typer(queues_app, name="queues")


@queues_app.command("demand")
def demand(ctx: typer.Context,
           queue: list[str] | None = typer.Option(None, help="Only these queues."),
           pending: int = typer.Option(0, help="Pilots submitted that have not asked yet."),
           all_queues: bool = typer.Option(False, "--all", help="Show queues wanting none."),
           as_json: JsonOpt = False) -> None:
    """How many pilots each online queue wants now (what a pilot factory asks)."""
    engine = engine_of(ctx)
    if not queue:
        with engine.connect() as conn:
            queue = [q["name"] for q in GridDB(conn).list_queues(status="online")]
    rows = [pilot_demand(engine, name, pending) for name in queue]
    if not all_queues:
        rows = [r for r in rows if r["demand"] or r["activated"]]
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"pilot demand ({len(rows)} queues)")
    for col in ("queue", "activated", "sent", "running", "slots", "pending", "demand"):
        table.add_column(col, justify="right" if col != "queue" else "left")
    for r in rows:
        table.add_row(r["queue"], str(r["activated"]), str(r["sent"]), str(r["running"]),
                      str(r["pilot_slots"]), str(r["pending"]), str(r["demand"]))
    out.print(table)


@app.command("watchdog")
def run_watchdog(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Recover silent jobs and event ranges once (the service does it every cycle)."""
    settings = settings_of(ctx)
    engine = engine_of(ctx)
    result = watchdog(engine, settings.dispatcher)
    result["ranges_released"] = release_silent_ranges(engine, settings.dispatcher)
    if as_json:
        print_json(result)
        return
    out.print(f"{len(result['requeued'])} never-started jobs requeued, "
              f"{len(result['lost'])} silent jobs failed (lost heartbeat), "
              f"{result['ranges_released']} event ranges released")

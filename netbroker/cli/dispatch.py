"""Commands of the dispatcher's side: pilot demand per queue, the watchdog once."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from dispatcher.core import pilot_demand, watchdog
from dispatcher.events import release_silent_ranges
from netbroker.cli._app import JsonOpt, app, engine_of, err, out, print_json, settings_of
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
    result: dict[str, Any] = dict(watchdog(engine, settings.dispatcher))
    result["ranges_released"] = release_silent_ranges(engine, settings.dispatcher)
    if as_json:
        print_json(result)
        return
    out.print(f"{len(result['requeued'])} never-started jobs requeued, "
              f"{len(result['lost'])} silent jobs failed (lost heartbeat), "
              f"{result['ranges_released']} event ranges released")


@app.command("drill")
def drill(jobs: int = typer.Option(1500, help="Jobs dispatched under load."),
          pilots: int = typer.Option(8, help="Pilot threads."),
          backend: str = typer.Option("auto", help="auto (PostgreSQL if found), postgresql, "
                                                   "sqlite."),
          as_json: JsonOpt = False) -> None:
    """The reliability drill: kill and restart the service, restart PostgreSQL, send
    malformed metrics, all under load; then account for every job and record."""
    from netbroker.ops.drill import run_drill

    with err.status("drilling: pilots and collectors under load, the service killed and "
                    "restarted, PostgreSQL restarted, a malformed burst..."):
        report = run_drill(jobs, pilots, backend)
    if as_json:
        print_json({**report.__dict__, "ok": report.ok})
    else:
        table = Table(title=f"reliability drill on {report.backend}")
        table.add_column("count")
        table.add_column("value", justify="right")
        for key, value in report.__dict__.items():
            if key not in ("backend", "problems"):
                table.add_row(key.replace("_", " "), str(value))
        out.print(table)
        for problem in report.problems:
            out.print(f"[red]unaccounted:[/red] {problem}")
        out.print("every job and record accounted for" if report.ok else "drill FAILED")
    if not report.ok:
        raise typer.Exit(1)

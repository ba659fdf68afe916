"""Commands of tasks and jobs: submit, tasks, jobs, kill, explain, rebroker, priority."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from netbroker.cli._app import JsonOpt, app, engine_of, out, print_json, print_rows, settings_of
from netbroker.common.enums import JobStatus, TaskStatus
from netbroker.common.units import iso_utc
from netbroker.workload import priority, rebrokerage, tasks

__all__: list[str] = []

priority_app = typer.Typer(no_args_is_help=True, help="Job priorities: recompute, boosts.")
boost_app = typer.Typer(no_args_is_help=True, help="Operator boost rules.")
app.add_typer(priority_app, name="priority")
priority_app.add_typer(boost_app, name="boost")


class What(StrEnum):
    task = "task"
    job = "job"


@app.command("submit")
def submit(ctx: typer.Context,
           file: Annotated[Path, typer.Argument(help="Task description, .toml or .json.")],
           as_json: JsonOpt = False) -> None:
    """Submit a task: it is brokered at once into jobs (or left pending, with why)."""
    spec = tasks.load_task_file(file)
    task = tasks.submit(engine_of(ctx), spec, settings_of(ctx))
    if as_json:
        print_json(task)
        return
    where = task["cloud"] or task["nucleus"] or "-"
    jobs = sum(task["jobs"].values())
    out.print(f"task {task['id']} [bold]{escape(task['name'])}[/bold]: {task['status']}, "
              f"{jobs} jobs, cloud {where}")
    out.print(f"  {escape(task['reason'])}", highlight=False)


@app.command("tasks")
def list_tasks(ctx: typer.Context, status: TaskStatus | None = None,
               user: str | None = None, limit: int = 50, as_json: JsonOpt = False) -> None:
    """Tasks, newest first, with their jobs per state."""
    rows = tasks.list_tasks(engine_of(ctx), status, user, limit)
    print_rows(rows, lambda t: (
        str(t["id"]), t["name"], t["user_name"], str(t["processing_type"]), str(t["status"]),
        t["cloud"] or t["nucleus"] or "-",
        ", ".join(f"{k} {v}" for k, v in sorted(t["jobs"].items())) or "-",
        escape(t["reason"][:80])), f"tasks ({len(rows)})",
        ("id", "name", "user", "type", "status", "cloud", "jobs", "reason"), as_json=as_json)


@app.command("jobs")
def list_jobs(ctx: typer.Context, task: int | None = None, status: JobStatus | None = None,
              site: str | None = None, user: str | None = None, limit: int = 50,
              as_json: JsonOpt = False) -> None:
    """Jobs, newest first, filterable by task, state, site and user."""
    rows = tasks.list_jobs(engine_of(ctx), task, status, site, user, limit)
    print_rows(rows, lambda j: (str(j["id"]), str(j["task_id"] or "-"), j["name"],
                                str(j["status"]), j["queue"] or "-", str(j["priority"]),
                                str(j["attempt_nr"]), str(j["rebrokerages"])),
               f"jobs ({len(rows)})",
               ("id", "task", "name", "status", "queue", "priority", "attempt", "moves"),
               as_json=as_json)


@app.command("kill")
def kill(ctx: typer.Context, what: What, ident: Annotated[int, typer.Argument(metavar="ID")],
         as_json: JsonOpt = False) -> None:
    """Cancel a task (and its jobs) or one job."""
    engine = engine_of(ctx)
    result = tasks.kill_task(engine, ident) if what == What.task else tasks.kill_job(engine,
                                                                                     ident)
    if as_json:
        print_json(result)
    elif what == What.task:
        out.print(f"task {ident} cancelled; {result['jobs_cancelled']} jobs cancelled")
    else:
        out.print(f"job {ident} cancelled")


@app.command("explain")
def explain(ctx: typer.Context, what: What, ident: Annotated[int, typer.Argument(metavar="ID")],
            top: Annotated[int, typer.Option(help="Candidates shown per decision.")] = 15,
            as_json: JsonOpt = False) -> None:
    """Why a task went to its cloud and a job to its queue: every candidate, the filter
    that removed it or its weights, and any rebrokerage."""
    engine = engine_of(ctx)
    data = tasks.explain_task(engine, ident) if what == What.task else tasks.explain_job(
        engine, ident)
    if as_json:
        print_json(data)
        return
    if what == What.job:
        job = data["job"]
        out.print(f"job {job['id']} {escape(job['name'])}: {job['status']} at "
                  f"{job['queue'] or '-'} ({job['site'] or '-'}), priority {job['priority']} "
                  f"(base {job['base_priority']}), attempt {job['attempt_nr']}, "
                  f"moved {job['rebrokerages']} time(s)")
    else:
        task = data["task"]
        out.print(f"task {task['id']} {escape(task['name'])}: {task['status']}, "
                  f"{escape(task['reason'])}", highlight=False)
    for d in data["decisions"]:
        out.print(_decision_table(d, top))
    for m in data.get("rebrokerages", []):
        out.print(f"moved {iso_utc(m['at'])}: {m['from_queue']} -> {m['to_queue']} "
                  f"(decision {m['decision_id']}): {escape(m['reason'])}", highlight=False)


def _decision_table(d: dict[str, Any], top: int) -> Table:
    """A decision's candidates best first (the core orders them), its marked one in
    bold (the chosen cloud, the queue the job went to), the columns saying what
    they mean."""
    table = Table(title=f"{d['kind']} decision {d['id']} ({iso_utc(d['at'])}): "
                        f"{escape(d['summary'])}")
    columns = d["columns"]
    table.add_column("candidate")
    for _, header in columns:
        table.add_column(header, justify="right")
    table.add_column("filtered out by")
    rows = d["candidates"]
    mark = d["highlight"]
    shown = rows[:top] + [r for r in rows[top:] if r["name"] == mark]
    for r in shown:
        name = escape(r["name"]) + (" (foreign member)" if r.get("foreign") else "")
        if r["name"] == mark:
            name = f"[bold]{name}[/bold] <"
        table.add_row(name, *(_fmt(r.get(key)) for key, _ in columns),
                      escape(r.get("filter", "")))
    if len(rows) > len(shown):
        table.caption = f"{len(rows) - len(shown)} more candidates (--top or --json)"
    return table


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "1" if x else "0"
    return f"{x:.3g}" if isinstance(x, float) else str(x)


@app.command("rebroker")
def rebroker(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Run one rebrokerage pass now (the service runs it every rebrokerage.cycle_minutes)."""
    result = rebrokerage.rebroker(engine_of(ctx), settings_of(ctx))
    if as_json:
        print_json(result)
        return
    out.print(f"{result['activated']} assigned jobs activated (their input arrived); "
              f"{len(result['moved'])} jobs moved")
    for m in result["moved"][:50]:
        out.print(f"  job {m['job_id']}: {m['from']} -> {m['to']}: {escape(m['reason'])}",
                  highlight=False)


@app.command("broker")
def broker(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Broker the registered and pending tasks now (the service retries them every
    brokerage.cycle_minutes)."""
    rows = tasks.broker_tasks(engine_of(ctx), settings_of(ctx))
    if as_json:
        print_json(rows)
        return
    for r in rows:
        out.print(f"task {r['task_id']}: {r['status']}, {r['jobs']} jobs: "
                  f"{escape(r['reason'])}", highlight=False)
    if not rows:
        out.print("no task waits for brokerage")


@priority_app.command("recompute")
def recompute(ctx: typer.Context) -> None:
    """Recompute every waiting job's priority now."""
    changed = priority.recompute(engine_of(ctx), settings_of(ctx).priority)
    out.print(f"{changed} job priorities changed")


@boost_app.command("add")
def boost_add(ctx: typer.Context,
              value: Annotated[int, typer.Option(help="Priority points added.")],
              hours: Annotated[float, typer.Option(help="How long it lasts, hours.")],
              user: str | None = None, group: str | None = None,
              site: str | None = None, cloud: str | None = None, comment: str = "",
              as_json: JsonOpt = False) -> None:
    """Boost a user's or a working group's jobs, at a site, in a cloud, or everywhere."""
    rule = priority.add_boost(engine_of(ctx), value, hours, user, group, site, cloud,
                              comment=comment)
    if as_json:
        print_json(rule)
    else:
        out.print(f"boost {rule['id']} added: {value:+d} until {iso_utc(rule['expires_at'])}")


@boost_app.command("list")
def boost_list(ctx: typer.Context, active: bool = False, as_json: JsonOpt = False) -> None:
    """Boost rules, newest first."""
    rows = priority.list_boosts(engine_of(ctx), active_only=active)
    print_rows(rows, lambda b: (str(b["id"]), b["user_name"] or "-", b["working_group"] or "-",
                                b["site"] or "-", b["cloud"] or "-", f"{b['value']:+d}",
                                iso_utc(b["expires_at"]), escape(b["comment"])),
               f"boosts ({len(rows)})",
               ("id", "user", "group", "site", "cloud", "value", "expires", "comment"),
               as_json=as_json)


@boost_app.command("remove")
def boost_remove(ctx: typer.Context, boost_id: Annotated[int, typer.Argument(metavar="ID")]
                 ) -> None:
    """Remove a boost rule."""
    priority.remove_boost(engine_of(ctx), boost_id)
    out.print(f"boost {boost_id} removed")

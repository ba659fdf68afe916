"""The monitor's workload pages at ``/monitor`` (Jinja2, no build step, no JavaScript).

The overview (jobs per state and per site over a time range, recent tasks,
clouds, decisions, cycle health), tasks and a task's page (progress by job
state, its datasets, the task brokerage with every cloud and why, jobs,
retries, errors), jobs (filter by state, site, user, error, task) and a
job's page (its timeline with its moves, the brokerage explanation, files,
log), a user's page (fair-share usage, boosts, tasks), replication
decisions, and the error scatter (failed jobs by site x task). The grid's
pages (sites, clouds, datasets, the network) are in ``monitor_grid``.

Everything is read through the same core functions the API and CLI use.
An unknown id is a 404 page; a filter that cannot match is a 400 page
naming it (``InvalidFilter``, mapped in ``netbroker.api.errors``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from netbroker.api.pages import render
from netbroker.clouds import membership as clouds
from netbroker.common.enums import JobStatus, TaskStatus, utcnow
from netbroker.common.errors import InvalidFilter
from netbroker.db.cycles import CycleDB, cycle_health
from netbroker.db.jobs import JobDB
from netbroker.placement import pd2p
from netbroker.web.deps import EngineDep, IdPath, SettingsDep, SmallIdPath
from netbroker.workload import tasks, users

__all__ = ["RANGES_H", "filter_choice", "filter_int", "router"]

router = APIRouter(prefix="/monitor", tags=["monitor"], include_in_schema=False)
Page = HTMLResponse
JOB_STATES = [s.value for s in JobStatus]
TASK_STATES = [s.value for s in TaskStatus]
# The time ranges the overview and the error page offer, hours.
RANGES_H = {1: "1 hour", 6: "6 hours", 24: "24 hours", 168: "7 days", 720: "30 days"}
Hours = Annotated[int, Query(ge=1, le=24 * 366, description="Time range, hours.")]


def _blank(value: str) -> str | None:
    return value.strip() or None


def filter_choice(name: str, value: str, allowed: list[str]) -> str | None:
    """A filter that is empty or one of ``allowed``. Raises ``InvalidFilter`` naming it."""
    text = value.strip()
    if text and text not in allowed:
        raise InvalidFilter(name, value, allowed)
    return text or None


def filter_int(name: str, value: str, high: int = 2**31 - 1) -> int | None:
    """A filter that must be a whole number from 1 (0 and negatives too for error
    codes) to ``high``, or empty. Raises ``InvalidFilter`` naming it."""
    text = value.strip()
    if not text:
        return None
    try:
        number = int(text)
    except ValueError:
        raise InvalidFilter(name, value, why="is not a whole number") from None
    if not -high <= number <= high:
        raise InvalidFilter(name, value, why=f"is outside -{high}..{high}")
    return number


@router.get("", response_class=Page)
def overview(request: Request, engine: EngineDep, hours: Hours = 24) -> HTMLResponse:
    """Jobs per state and per site over the last ``hours``, recent tasks, clouds,
    decisions and the cycles' health."""
    since = utcnow() - timedelta(hours=hours)
    with engine.connect() as conn:
        cycles = CycleDB(conn).list_cycles()
    now = utcnow()
    for cycle in cycles:
        cycle["health"] = cycle_health(cycle, now)
    per_site = tasks.state_counts(engine, "site", since)
    states = {s: sum(c.get(s, 0) for c in per_site.values()) for s in JOB_STATES}
    states = {s: n for s, n in states.items() if n}
    busiest = sorted(per_site.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))[:40]
    return render(request, "overview.html", states=states, hours=hours, ranges=RANGES_H,
                  per_site=busiest, sites_total=len(per_site),
                  tasks=tasks.list_tasks(engine, limit=10), clouds=clouds.show_membership(engine),
                  decisions=pd2p.latest(engine, 5), cycles=cycles)


@router.get("/tasks", response_class=Page)
def task_list(request: Request, engine: EngineDep, status: str = "",
              user: str = "") -> HTMLResponse:
    rows = tasks.list_tasks(engine, filter_choice("status", status, TASK_STATES),
                            _blank(user), limit=500)
    return render(request, "tasks.html", tasks=rows, status=status, user=user,
                  states=TASK_STATES)


@router.get("/tasks/{task_id}", response_class=Page)
def task_page(request: Request, task_id: SmallIdPath, engine: EngineDep) -> HTMLResponse:
    """A task: state, progress by job state, datasets, the task brokerage with every
    cloud and why, its jobs, retries and errors."""
    explained = tasks.explain_task(engine, task_id)
    jobs = tasks.list_jobs(engine, task_id, limit=2000)
    total = sum(explained["task"]["jobs"].values())
    return render(request, "task.html", task=explained["task"], total=total,
                  decisions=explained["decisions"], outputs=explained["outputs"],
                  jobs=jobs[:500], shown=min(len(jobs), 500),
                  retries=[j for j in jobs if j["attempt_nr"] > 1],
                  failures=tasks.failures(engine, task_id=task_id), states=JOB_STATES)


@router.get("/jobs", response_class=Page)
def job_list(request: Request, engine: EngineDep, state: str = "", site: str = "",
             user: str = "", error: str = "", task: str = "") -> HTMLResponse:
    code = filter_int("error", error)
    task_id = filter_int("task", task)
    rows = tasks.list_jobs(engine, task_id, filter_choice("state", state, JOB_STATES),
                           _blank(site), _blank(user), 500, code)
    return render(request, "jobs.html", jobs=rows, state=state, site=site, user=user,
                  error=error, task=task, states=JOB_STATES)


@router.get("/jobs/{job_id}", response_class=Page)
def job_page(request: Request, job_id: IdPath, engine: EngineDep) -> HTMLResponse:
    """A job: its timeline (states and moves), why it runs where it does, its log, files."""
    explained = tasks.explain_job(engine, job_id)
    with engine.connect() as conn:
        db = JobDB(conn)
        row, log = db.get(job_id), db.log(job_id)
    text = None
    if log is not None and log["media_type"].startswith("text/"):
        text = log["content"][-20_000:].decode(errors="replace")
    return render(request, "job.html", job=explained["job"], row=row,
                  timeline=explained["timeline"], decisions=explained["decisions"],
                  moves=explained["rebrokerages"], files=explained["files"], log=log,
                  log_text=text)


@router.get("/users/{name}", response_class=Page)
def user_page(request: Request, name: str, engine: EngineDep,
              settings: SettingsDep) -> HTMLResponse:
    """A user: CPU-hours over 24 h against the fair share, boosts, tasks, jobs."""
    return render(request, "user.html", u=users.user_summary(engine, name, settings.priority),
                  states=JOB_STATES)


@router.get("/replication", response_class=Page)
def replication(request: Request, engine: EngineDep, settings: SettingsDep) -> HTMLResponse:
    return render(request, "replication.html", decisions=pd2p.latest(engine, 500),
                  cleanup=pd2p.cleanup_proposals(engine, settings.pd2p))


@router.get("/errors", response_class=Page)
def errors(request: Request, engine: EngineDep, hours: Hours = 24 * 7) -> HTMLResponse:
    """BigPanDAmon's error scattering: failed jobs by site (rows) and task (columns)
    over the last ``hours``, the commonest pilot error of each cell; then by code."""
    rows = tasks.failures(engine, utcnow() - timedelta(hours=hours))
    return render(request, "errors.html", hours=hours, ranges=RANGES_H, rows=rows,
                  **scatter(rows))


def scatter(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The site x task grid of failures: ``sites``, ``columns`` (task id, name),
    ``cells[site][task_id]`` = {jobs, code (the commonest), codes}, ``top`` (most in a
    cell), ``codes`` (code -> failed jobs, by count)."""
    cells: dict[str, dict[Any, dict[str, Any]]] = {}
    names: dict[Any, str] = {}
    by_code: dict[Any, int] = {}
    for r in rows:
        site = r["site"] or "-"
        names[r["task_id"]] = r["task"] or "(no task)"
        cell = cells.setdefault(site, {}).setdefault(r["task_id"], {"jobs": 0, "codes": {}})
        cell["jobs"] += r["jobs"]
        cell["codes"][r["pilot_error_code"]] = cell["codes"].get(r["pilot_error_code"], 0) \
            + r["jobs"]
        by_code[r["pilot_error_code"]] = by_code.get(r["pilot_error_code"], 0) + r["jobs"]
    for per_task in cells.values():
        for cell in per_task.values():
            cell["code"] = max(cell["codes"].items(), key=lambda kv: kv[1])[0]
    top = max((c["jobs"] for t in cells.values() for c in t.values()), default=0)
    order = sorted(cells, key=lambda s: -sum(c["jobs"] for c in cells[s].values()))
    columns = sorted(names.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))
    return {"sites": order, "columns": columns, "cells": cells, "top": top,
            "codes": sorted(by_code.items(), key=lambda kv: -kv[1])}

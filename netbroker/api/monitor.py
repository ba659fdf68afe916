"""The monitor: server-rendered pages at ``/monitor`` (Jinja2, no build step, no JS).

Overview, tasks, jobs (filter by state, site, user, error) and a job's page
(its timeline, brokerage explanation, moves and files), sites and queues,
clouds with their membership history, the network matrix as a heatmap
whose cells link to each link's history plot, replication decisions and an
error summary. Everything is read through the same core functions the API
and CLI use; the only asset is one local stylesheet.
"""

from __future__ import annotations

import io
import math
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from matplotlib.figure import Figure

from netbroker import clouds, metrics, pd2p, registry, tasks
from netbroker.api.deps import EngineDep, IdPath
from netbroker.api.pages import render
from netbroker.db.cycles import CycleDB, cycle_health
from netbroker.db.jobs import JobDB
from netbroker.db.schema import utcnow
from netbroker.metrics import MetricKind

__all__ = ["router"]

router = APIRouter(prefix="/monitor", tags=["monitor"], include_in_schema=False)
Page = HTMLResponse


def _page(request: Request, name: str, **context: Any) -> HTMLResponse:
    return render(request, name, **context)


def _blank(value: str | None) -> str | None:
    return value or None


@router.get("", response_class=Page)
def overview(request: Request, engine: EngineDep) -> HTMLResponse:
    """Jobs per state, recent tasks, clouds, decisions and the cycles."""
    with engine.connect() as conn:
        states = JobDB(conn).count_by_status()
        cycles = CycleDB(conn).list_cycles()
    now = utcnow()
    for cycle in cycles:
        cycle["health"] = cycle_health(cycle, now)
    membership = clouds.show_membership(engine)
    return _page(request, "overview.html", states=dict(sorted(states.items())),
                 tasks=tasks.list_tasks(engine, limit=10), clouds=membership,
                 decisions=pd2p.latest(engine, 5),
                 cycles=cycles)


@router.get("/tasks", response_class=Page)
def task_list(request: Request, engine: EngineDep, status: str = "",
              user: str = "") -> HTMLResponse:
    rows = tasks.list_tasks(engine, _blank(status), _blank(user), limit=500)
    return _page(request, "tasks.html", tasks=rows, status=status, user=user)


@router.get("/jobs", response_class=Page)
def job_list(request: Request, engine: EngineDep, state: str = "", site: str = "",
             user: str = "", error: str = "", task: str = "") -> HTMLResponse:
    code = int(error) if error.strip().lstrip("-").isdigit() else None
    task_id = int(task) if task.strip().isdigit() and int(task) < 2**31 else None
    rows = tasks.list_jobs(engine, task_id, _blank(state), _blank(site), _blank(user),
                           500, code)
    return _page(request, "jobs.html", jobs=rows, state=state, site=site, user=user,
                 error=error, task=task,
                 states=["defined", "assigned", "activated", "sent", "starting", "running",
                         "transferring", "holding", "finished", "failed", "cancelled"])


@router.get("/jobs/{job_id}", response_class=Page)
def job_page(request: Request, job_id: IdPath, engine: EngineDep) -> HTMLResponse:
    explained = tasks.explain_job(engine, job_id)
    with engine.connect() as conn:
        db = JobDB(conn)
        timeline, row, log = db.timeline(job_id), db.get(job_id), db.log(job_id)
    text = None
    if log is not None and log["media_type"].startswith("text/"):
        text = log["content"][-20_000:].decode(errors="replace")
    return _page(request, "job.html", job=explained["job"], row=row, timeline=timeline,
                 decisions=explained["decisions"], moves=explained["rebrokerages"],
                 files=explained["files"], log=log, log_text=text)


@router.get("/sites", response_class=Page)
def site_list(request: Request, engine: EngineDep, cloud: str = "") -> HTMLResponse:
    sites = registry.list_sites(engine, cloud=_blank(cloud))
    queues: dict[str, list[dict[str, Any]]] = {}
    for q in registry.list_queues(engine, cloud=_blank(cloud)):
        queues.setdefault(q["site"], []).append(q)
    return _page(request, "sites.html", sites=sites, queues=queues, cloud=cloud,
                 clouds=[c["name"] for c in registry.list_clouds(engine)])


@router.get("/clouds", response_class=Page)
def cloud_list(request: Request, engine: EngineDep) -> HTMLResponse:
    return _page(request, "clouds.html", clouds=clouds.show_membership(engine),
                 history=clouds.history(engine, limit=200))


@router.get("/network", response_class=Page)
def network(request: Request, engine: EngineDep, cloud: str = "",
            kind: str = "throughput", window: str = "1d") -> HTMLResponse:
    """The consolidated matrix from one cloud's sites (rows) to every site measured."""
    kind = kind if kind in ("throughput", "packet_loss", "owd", "rtt", "success") else \
        "throughput"
    window = window if window in ("1h", "1d", "1w") else "1d"
    cloud_names = [c["name"] for c in registry.list_clouds(engine)]
    cloud = cloud if cloud in cloud_names else (cloud_names[0] if cloud_names else "")
    matrix = metrics.network_matrix(engine, kind, window)
    members = {s["name"] for s in registry.list_sites(engine, cloud=cloud)} if cloud else set()
    rows = [s for s in matrix.index if s in members]
    sub = matrix.loc[rows] if rows else matrix.iloc[0:0]
    sub = sub.loc[:, sub.notna().any(axis=0)] if len(sub) else sub
    values = sub.to_numpy(dtype=float) if len(sub) else np.zeros((0, 0))
    finite = values[np.isfinite(values)]
    top = float(finite.max()) if finite.size else 1.0
    cells = [[_cell(v, top, kind) for v in row] for row in values]
    return _page(request, "network.html", rows=list(sub.index), cols=list(sub.columns),
                 cells=cells, cloud=cloud, clouds=cloud_names, kind=kind, window=window,
                 unit=UNITS[kind])


UNITS = {"throughput": "MB/s", "packet_loss": "fraction", "owd": "ms", "rtt": "ms",
         "success": "fraction"}


def _cell(value: float, top: float, kind: str) -> dict[str, Any]:
    if not math.isfinite(value):
        return {"text": "", "color": "#eee"}
    share = min(1.0, value / top) if top > 0 else 0.0
    if kind in ("packet_loss", "owd", "rtt"):
        share = 1.0 - share  # lower is better
    hue = int(120 * share)  # red (bad) to green (good)
    return {"text": f"{value:.3g}", "color": f"hsl({hue}, 70%, 75%)"}


@router.get("/network/link", response_class=Page)
def link(request: Request, engine: EngineDep, src: str, dst: str,
         kind: str = "throughput", days: Annotated[float, Query(gt=0, le=30)] = 7.0
         ) -> HTMLResponse:
    return _page(request, "link.html", src=src, dst=dst, kind=kind, days=days)


@router.get("/network/link.png")
def link_plot(engine: EngineDep, src: str, dst: str, kind: str = "throughput",
              days: Annotated[float, Query(gt=0, le=30)] = 7.0) -> Response:
    """One link's history per source, as a PNG."""
    kind = kind if kind in {k.value for k in MetricKind} else "throughput"
    history = metrics.link_history(engine, src, dst, kind, time.time() - days * 86400)
    fig = Figure(figsize=(8, 3))
    ax = fig.subplots()
    for source, group in history.groupby("source"):
        ax.plot(group["bucket_start_s"].astype(float).map(_datetime), group["value"],
                marker=".", label=str(source))
    ax.set_title(f"{src} -> {dst}: {kind}, last {days:g} days")
    if len(history):
        ax.legend(fontsize=7)
    fig.autofmt_xdate()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return Response(buffer.getvalue(), media_type="image/png")


def _datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


@router.get("/replication", response_class=Page)
def replication(request: Request, engine: EngineDep) -> HTMLResponse:
    return _page(request, "replication.html", decisions=pd2p.latest(engine, 500),
                 cleanup=pd2p.cleanup_proposals(engine, request.app.state.settings.pd2p))


@router.get("/errors", response_class=Page)
def errors(request: Request, engine: EngineDep) -> HTMLResponse:
    return _page(request, "errors.html", rows=tasks.error_summary(engine))

"""The demo's report: the facts it proves, as a terminal summary and an HTML page.

The page holds four plots (the consolidated throughput heatmap, cloud
membership over time, jobs by state over time, replication decisions) as
embedded PNGs, so it opens anywhere with no network and no assets.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from matplotlib.figure import Figure
from sqlalchemy.engine import Engine

from netbroker.common.units import iso_utc
from netbroker.db.jobs import JobDB
from netbroker.db.schema import (
    cloud_membership_history,
    clouds,
    jobs,
    queues,
    rebrokerages,
    replication_decisions,
    sites,
    tasks,
)
from netbroker.network.metrics import MetricKind, network_matrix
from netbroker.plots.heatmap import plot_matrix

__all__ = ["fact_rows", "facts", "write_report"]


def facts(engine: Engine) -> dict[str, Any]:
    """What the demo shows, counted from the database.

    ``finished_home`` and ``finished_foreign`` count finished jobs at sites
    registered in their task's cloud and at foreign calculated members of it.
    """
    with engine.connect() as conn:
        states = Counter({str(s): n for s, n in conn.execute(
            sa.select(jobs.c.status, sa.func.count()).group_by(jobs.c.status))})
        placed = conn.execute(
            sa.select(jobs.c.status, sites.c.cloud_id, tasks.c.cloud_id)
            .join(queues, jobs.c.queue_id == queues.c.id)
            .join(sites, queues.c.site_id == sites.c.id)
            .join(tasks, jobs.c.task_id == tasks.c.id)
            .where(jobs.c.status == "finished")).all()
        history = Counter(c for (c,) in conn.execute(sa.select(cloud_membership_history.c.change)))
        decisions = Counter(s for (s,) in conn.execute(sa.select(replication_decisions.c.state)))
        moved = conn.execute(sa.select(sa.func.count(sa.distinct(rebrokerages.c.job_id)))
                             ).scalar_one()
    home = sum(1 for _, site_cloud, task_cloud in placed if site_cloud == task_cloud)
    return {"jobs": dict(states), "finished_home": home,
            "finished_foreign": len(placed) - home, "joined": history.get("joined", 0),
            "left": history.get("left", 0), "decisions": dict(decisions),
            "decisions_done": decisions.get("done", 0), "rebrokered_jobs": int(moved)}


def fact_rows(counted: dict[str, Any]) -> list[tuple[str, str]]:
    """The facts of :func:`facts` as (label, value) lines for people: the terminal's
    table and the report's."""
    def states(counts: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"

    return [("jobs by state", states(counted["jobs"])),
            ("finished at home sites of the task's cloud", str(counted["finished_home"])),
            ("finished at foreign calculated members", str(counted["finished_foreign"])),
            ("cloud joins / leaves", f"{counted['joined']} / {counted['left']}"),
            ("replication decisions by state", states(counted["decisions"])),
            ("replication decisions done", str(counted["decisions_done"])),
            ("jobs rebrokered", str(counted["rebrokered_jobs"]))]


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def _membership_plot(engine: Engine) -> str:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(cloud_membership_history.c.at, clouds.c.name,
                      cloud_membership_history.c.change)
            .join(clouds, cloud_membership_history.c.cloud_id == clouds.c.id)
            .order_by(cloud_membership_history.c.id)).all()
    fig = Figure(figsize=(7, 3))
    ax = fig.subplots()
    frame = pd.DataFrame(rows, columns=["at", "cloud", "change"])
    for cloud, group in frame.groupby("cloud"):
        step = group["change"].map({"joined": 1, "left": -1}).cumsum()
        ax.step(group["at"], step, where="post", label=str(cloud), marker="o")
    ax.set_title("foreign calculated members per cloud")
    ax.set_ylabel("members")
    if len(frame):
        ax.legend(fontsize=7)
    return _png(fig)


def _jobs_plot(engine: Engine) -> str:
    with engine.connect() as conn:
        rows = JobDB(conn).state_changes()
    frame = pd.DataFrame(rows, columns=["job", "status", "at"])
    fig = Figure(figsize=(7, 3))
    ax = fig.subplots()
    if len(frame):
        frame["status"] = frame["status"].astype(str)
        current: dict[int, str] = {}
        counts: Counter[str] = Counter()
        series = []
        for job, status, at in frame.itertuples(index=False):
            if job in current:
                counts[current[job]] -= 1
            current[job] = status
            counts[status] += 1
            series.append({"at": at, **counts})
        table = pd.DataFrame(series).set_index("at").fillna(0)
        for status in ("assigned", "activated", "running", "finished", "failed"):
            if status in table:
                ax.step(table.index, table[status], where="post", label=status)
        ax.legend(fontsize=7)
    ax.set_title("jobs by state")
    return _png(fig)


def _heatmap(engine: Engine, directory: Path) -> str:
    matrix = network_matrix(engine, MetricKind.THROUGHPUT, "1d")
    with engine.connect() as conn:
        cloud_of = dict(conn.execute(sa.select(sites.c.name, clouds.c.name)
                                     .join(clouds, sites.c.cloud_id == clouds.c.id)).all())
    path = plot_matrix(matrix, cloud_of, "MB/s", "consolidated throughput, last day",
                       directory / "heatmap.png")
    return base64.b64encode(path.read_bytes()).decode()


def write_report(engine: Engine, directory: Path, counted: dict[str, Any], service: str,
                 when: datetime) -> Path:
    """Write ``index.html`` with the plots, the facts (:func:`fact_rows`) and the
    service's address; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    with engine.connect() as conn:
        decided = conn.execute(sa.select(replication_decisions.c.id,
                                         replication_decisions.c.state,
                                         replication_decisions.c.reason)
                               .order_by(replication_decisions.c.id)).all()
    plots = {"Network: consolidated throughput": _heatmap(engine, directory),
             "Dynamic clouds": _membership_plot(engine), "Jobs": _jobs_plot(engine)}
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>"
                   for k, v in [*fact_rows(counted), ("service", service)])
    decisions = "".join(f"<tr><td>{i}</td><td>{html.escape(s)}</td><td>{html.escape(r)}</td>"
                        "</tr>" for i, s, r in decided)
    figures = "".join(f"<h2>{html.escape(t)}</h2><img alt='{html.escape(t)}' "
                      f"src='data:image/png;base64,{p}'>" for t, p in plots.items())
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>netbroker demo report</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}
td{{padding:.2em .8em;border-bottom:1px solid #ddd}}img{{max-width:100%}}</style></head>
<body><h1>netbroker demo, {iso_utc(when)}</h1>
<table>{rows}</table>{figures}
<h2>Replication decisions</h2><table><tr><th>id</th><th>state</th><th>reason</th></tr>
{decisions}</table></body></html>"""
    path = directory / "index.html"
    path.write_text(page)
    return path

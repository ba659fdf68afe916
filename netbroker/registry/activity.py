"""What a site is doing: its queues' jobs, its success rate, its links, its clouds.

:func:`site_activity` gathers, for one site, what an operator opens a site's
page for: the registry's record (queues, storage endpoints with their
space), jobs per state of each queue, the share of its jobs that finished
over the last day and week, its consolidated network links in and out over
each window (1h, 1d, 1w), and its cloud memberships: home, foreign
calculated ones now, and every join and leave.
"""

from __future__ import annotations

import math
import time
from datetime import timedelta
from typing import Any

import pandas as pd
from sqlalchemy.engine import Engine

from netbroker.clouds import membership as clouds
from netbroker.common.config import MetricsSettings
from netbroker.common.enums import utcnow
from netbroker.db.clouds import CloudDB
from netbroker.db.grid import GridDB
from netbroker.db.jobs import JobDB
from netbroker.network import metrics
from netbroker.network.metrics import MetricKind
from netbroker.registry import registry

__all__ = ["WINDOWS", "site_activity", "site_links"]

WINDOWS = ("1h", "1d", "1w")


def site_activity(engine: Engine, name: str, settings: MetricsSettings | None = None,
                  now_s: float | None = None) -> dict[str, Any]:
    """One site's page: ``site`` (as ``registry.get_site``), ``queue_jobs`` (queue ->
    state -> jobs), ``success`` (per period, finished / (finished + failed), None when
    no job ended), ``links`` (:func:`site_links`), ``foreign_in`` (clouds it is a
    foreign calculated member of, since when) and ``history`` (its joins and leaves).

    Raises ``UnknownSite``.
    """
    site = registry.get_site(engine, name)
    now = utcnow()
    with engine.connect() as conn:
        site_id = GridDB(conn).site_ids()[name]
        jobs = JobDB(conn)
        queue_jobs: dict[str, dict[str, int]] = {}
        for queue, state, n in jobs.state_counts("queue", site=name):
            queue_jobs.setdefault(queue, {})[state] = n
        success = {}
        for label, days in (("24 h", 1), ("7 days", 7)):
            finished, failed = jobs.final_counts_by_site(now - timedelta(days=days)).get(
                site_id, (0, 0))
            success[label] = {"finished": finished, "failed": failed,
                              "fraction": finished / (finished + failed)
                              if finished + failed else None}
        foreign_in = [{"cloud": c, "joined_at": at}
                      for c, s, at in CloudDB(conn).foreign_member_names() if s == name]
    return {"site": site, "queue_jobs": queue_jobs, "success": success,
            "links": site_links(engine, name, settings, now_s), "foreign_in": foreign_in,
            "history": clouds.history(engine, site=name, limit=200)}


def site_links(engine: Engine, name: str, settings: MetricsSettings | None = None,
               now_s: float | None = None) -> list[dict[str, Any]]:
    """The site's measured links, one row per peer site: the consolidated throughput
    (MB/s) out to it and in from it over each window, and the packet loss (fraction)
    both ways over a day; None where not measured. Peers by cloud, then name.

    O(w * n**2) for w windows and n measured sites (the matrices are read whole).
    """
    now_s = time.time() if now_s is None else now_s
    frames = {w: metrics.network_matrix(engine, MetricKind.THROUGHPUT, w, settings=settings,
                                        now_s=now_s) for w in WINDOWS}
    loss = metrics.network_matrix(engine, MetricKind.PACKET_LOSS, "1d", settings=settings,
                                  now_s=now_s)
    peers: dict[str, dict[str, Any]] = {}
    for label, frame in [*frames.items(), ("loss_1d", loss)]:
        if name not in frame.index:
            continue
        for direction, series in (("out", frame.loc[name]), ("in", frame[name])):
            for peer, value in series.items():
                if peer != name and _known(value):
                    row = peers.setdefault(str(peer), {"peer": str(peer)})
                    row[f"{direction}_{label}"] = float(value)
    cloud_of = registry.site_clouds(engine)
    out = []
    for peer in sorted(peers, key=lambda p: (cloud_of.get(p, ""), p)):
        row = {"cloud": cloud_of.get(peer), **peers[peer]}
        for w in [*WINDOWS, "loss_1d"]:
            row.setdefault(f"out_{w}", None)
            row.setdefault(f"in_{w}", None)
        out.append(row)
    return out


def _known(value: Any) -> bool:
    return value is not None and not pd.isna(value) and math.isfinite(float(value))

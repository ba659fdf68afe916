"""Reading the :class:`~netbroker.workload.brokerage.GridView` that brokerage decides on.

One snapshot per brokerage pass: the registry (sites, clouds and their
foreign members, queues, free disk), the queues' load (jobs waiting and
holding a pilot), where the datasets in question have replicas, and the
consolidated throughput of the links leaving the sites that matter (replica
holders, Tier-1s, nuclei), in the window the clouds are judged on.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine

from netbroker.common.config import Settings
from netbroker.common.enums import JobStatus
from netbroker.common.lifecycle import LIVE
from netbroker.db.clouds import CloudDB
from netbroker.db.grid import GridDB
from netbroker.db.jobs import WAITING, JobDB
from netbroker.db.tasks import TaskDB
from netbroker.network.metrics import MetricKind, tier1_links
from netbroker.workload.brokerage import GridView

__all__ = ["load_grid_view"]


def load_grid_view(engine: Engine, settings: Settings, dataset_ids: Collection[int],
                   now_s: float | None = None) -> tuple[GridView, dict[str, list[int]]]:
    """The view for brokering tasks that read ``dataset_ids``.

    Returns the view and the database ids behind its indices
    (``{"sites": [...], "clouds": [...], "queues": [...]}``).
    """
    now_s = time.time() if now_s is None else now_s
    with engine.connect() as conn:
        grid = GridDB(conn)
        site_rows, cloud_rows = grid.list_sites(), grid.list_clouds()
        site_ids, cloud_ids, queue_ids = grid.site_ids(), grid.cloud_ids(), grid.queue_ids()
        queue_rows = grid.list_queues()
        foreign = CloudDB(conn).foreign_members()
        # A site with a disk of unknown space (none reported yet) is not short of
        # space: it counts as unlimited rather than as empty.
        free_disk = {sid: (np.inf if unknown else float(free or 0)) for sid, free, unknown
                     in grid.disk_free_by_site()}
        load = JobDB(conn).queue_load(WAITING | LIVE)
        replicas = TaskDB(conn).replica_sites(dataset_ids) if dataset_ids else []
    n = len(site_rows)
    s_index = {s["name"]: i for i, s in enumerate(site_rows)}
    sid = [site_ids[s["name"]] for s in site_rows]
    by_sid = {x: i for i, x in enumerate(sid)}
    cloud_names = [c["name"] for c in cloud_rows]
    c_index = {name: k for k, name in enumerate(cloud_names)}
    cid = [cloud_ids[name] for name in cloud_names]
    by_cid = {x: k for k, x in enumerate(cid)}
    foreign_arr = np.zeros((len(cloud_names), n), bool)
    for (c, s) in foreign:
        if c in by_cid and s in by_sid:
            foreign_arr[by_cid[c], by_sid[s]] = True
    qid = [queue_ids[q["name"]] for q in queue_rows]
    waiting, running = _queue_load(load, qid)
    present, sources = _replica_masks(replicas, by_sid, n)
    tier1 = np.array([s_index.get(c["tier1"], -1) if c["tier1"] else -1 for c in cloud_rows],
                     dtype=np.int64)
    nucleus = np.array([bool(s["is_nucleus"]) for s in site_rows], dtype=bool)
    wanted = set(np.flatnonzero(nucleus).tolist()) | {int(t) for t in tier1 if t >= 0}
    for mask in sources.values():
        wanted |= set(np.flatnonzero(mask).tolist())
    throughput = _throughput(engine, settings, sid, by_sid, wanted, now_s)

    def col(key: str, dtype: type = np.int64) -> np.ndarray:
        return np.array([q[key] for q in queue_rows], dtype=dtype)

    view = GridView(
        sites=[s["name"] for s in site_rows],
        site_cloud=np.array([c_index.get(s["cloud"], -1) for s in site_rows], dtype=np.int64),
        site_online=np.array([s["status"] == "online" for s in site_rows], dtype=bool),
        site_nucleus=nucleus,
        site_disk_free=np.array([free_disk.get(x, 0.0) for x in sid], dtype=float),
        clouds=cloud_names, cloud_tier1=tier1, foreign=foreign_arr,
        queues=[q["name"] for q in queue_rows],
        queue_site=np.array([s_index[q["site"]] for q in queue_rows], dtype=np.int64),
        queue_status=np.array([str(q["status"]) for q in queue_rows], dtype=object),
        queue_type=np.array([str(q["queue_type"]) for q in queue_rows], dtype=object),
        queue_cores=col("cores"), queue_memory_mb=col("max_memory_mb"),
        # No wall-time limit (CRIC's maxtime 0, stored NULL): any job fits.
        queue_walltime_s=np.array([np.inf if q["max_walltime_s"] is None
                                   else q["max_walltime_s"] for q in queue_rows], dtype=float),
        queue_disk_mb=col("max_disk_mb"),
        queue_slots=col("pilot_slots"), queue_waiting=waiting, queue_running=running,
        throughput=throughput, present=present, sources=sources)
    return view, {"sites": sid, "clouds": cid, "queues": qid}


def _queue_load(load: list[tuple[int, str, int]], qid: list[int]
                ) -> tuple[np.ndarray, np.ndarray]:
    """Per queue (in ``qid``'s order): its jobs waiting for a pilot (a sent job counts
    as waiting) and its jobs holding one."""
    by_qid = {x: k for k, x in enumerate(qid)}
    waiting, running = np.zeros(len(qid), np.int64), np.zeros(len(qid), np.int64)
    for queue_id, status, count in load:
        if queue_id in by_qid:
            target = waiting if JobStatus(status) in WAITING or status == JobStatus.SENT \
                else running
            target[by_qid[queue_id]] += count
    return waiting, running


def _replica_masks(replicas: list[Any], by_sid: dict[int, int], n: int
                   ) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Per dataset: the sites where it is present (whole, on disk) and the sites to
    bring it from (any replica, pieces included), as masks over the ``n`` sites."""
    present: dict[int, np.ndarray] = {}
    sources: dict[int, np.ndarray] = {}
    for dataset_id, site_id, kind, whole in replicas:
        i = by_sid.get(site_id)
        if i is None:
            continue
        # A site holding pieces of a dataset (files jobs wrote there) is a source to
        # bring it from, not a site where it is present.
        sources.setdefault(dataset_id, np.zeros(n, bool))[i] = True
        if kind == "disk" and whole:
            present.setdefault(dataset_id, np.zeros(n, bool))[i] = True
    return present, sources


def _throughput(engine: Engine, settings: Settings, sid: list[int], by_sid: dict[int, int],
                wanted: set[int], now_s: float) -> np.ndarray:
    """(n, n) consolidated MB/s of the links leaving the ``wanted`` sites (indices), in
    the clouds' window; NaN where unknown."""
    n = len(sid)
    throughput = np.full((n, n), np.nan)
    if wanted:
        for src, dst, _, value in tier1_links(engine, MetricKind.THROUGHPUT,
                                              settings.clouds.window,
                                              [sid[i] for i in sorted(wanted)],
                                              settings.metrics, now_s):
            if src in by_sid and dst in by_sid:
                throughput[by_sid[src], by_sid[dst]] = value
    return throughput

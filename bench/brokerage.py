"""brokerage.jobs: job brokerage of 100,000 jobs from 1,000 tasks over 1,000 sites.

A synthetic grid (1,000 sites in 10 clouds, 1,500 queues, a partial mesh of
measured links) and 1,000 tasks of 100 one-file jobs, each reading its own
dataset held on disk at two random sites.

- ``brokerage.jobs``: every task brokered to a cloud and its jobs placed
  and sized (``broker_task`` + ``broker_jobs``, candidates explained), in
  memory on a :class:`GridView`; jobs per second. The in-run baseline is
  the bare vectorised arithmetic of the same decisions: one numpy pass
  scoring every task against every queue and one weighted draw per job,
  with no filters, explanations or per-task bookkeeping.
- ``brokerage.jobs_stored`` (SQLite) and ``brokerage.jobs_stored.postgresql``:
  the same through the database — the tasks registered, then one
  ``broker_tasks`` pass reading the view, deciding, and writing the
  decisions (explanations included), jobs and job files; jobs per second,
  against the in-memory rate; goal >= 20,000 jobs/s.

``clouds.2000`` is measured by ``bench/clouds.py``.

    python bench/brokerage.py [--sites N] [--tasks T] [--jobs-per-task J] [--no-db]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
from _common import emit, scratch_path

from netbroker.common.config import BrokerageSettings, Settings
from netbroker.common.enums import ProcessingType, TaskStatus, utcnow
from netbroker.db import create_db_engine, upgrade
from netbroker.db.pgcluster import PostgresCluster, find_postgres_bin
from netbroker.db.tasks import TaskDB
from netbroker.registry import registry
from netbroker.workload.brokerage import GridView, TaskNeeds, broker_jobs, broker_task
from netbroker.workload.tasks import broker_tasks

GB = 1_000_000_000


def synthetic_view(n_sites: int, n_datasets: int, rng: np.random.Generator) -> GridView:
    """1.5 queues per site, 10 clouds, links measured from every replica holder."""
    n_clouds = 10
    q = n_sites * 3 // 2
    queue_site = np.concatenate([np.arange(n_sites), rng.integers(0, n_sites, q - n_sites)])
    throughput = np.full((n_sites, n_sites), np.nan)
    holders = rng.integers(0, n_sites, (n_datasets, 2))
    present = {}
    for d in range(n_datasets):
        mask = np.zeros(n_sites, bool)
        mask[holders[d]] = True
        present[d] = mask
    for s in np.unique(holders):  # each holder measured to 200 random sites
        throughput[s, rng.integers(0, n_sites, 200)] = rng.gamma(2, 20, 200)
    return GridView(
        sites=[f"SITE-{i:04d}" for i in range(n_sites)],
        site_cloud=np.arange(n_sites) % n_clouds, site_online=rng.random(n_sites) > 0.03,
        site_nucleus=np.arange(n_sites) < n_clouds, site_disk_free=np.full(n_sites, 1e15),
        clouds=[f"C{k}" for k in range(n_clouds)], cloud_tier1=np.arange(n_clouds),
        foreign=rng.random((n_clouds, n_sites)) < 0.02,
        queues=[f"Q-{k:05d}" for k in range(q)], queue_site=queue_site,
        queue_status=np.where(rng.random(q) > 0.05, "online", "brokeroff").astype(object),
        queue_type=rng.choice(np.array(["unified", "production", "analysis"], dtype=object), q),
        queue_cores=rng.choice([1, 8], q), queue_memory_mb=rng.choice([2000, 16000, 64000], q),
        queue_walltime_s=rng.choice([86400, 172800], q), queue_disk_mb=np.full(q, 100_000),
        queue_slots=rng.integers(50, 2000, q), queue_waiting=np.zeros(q, np.int64),
        queue_running=np.zeros(q, np.int64), throughput=throughput, present=present,
        sources={d: m.copy() for d, m in present.items()})


def task_needs(t: int, jobs_per_task: int) -> TaskNeeds:
    return TaskNeeds(task_id=t, processing_type="production", dataset_id=t,
                     file_bytes=np.full(jobs_per_task, 2.0 * GB), cores=8, memory_mb=8000,
                     walltime_s=7200, files_per_job=1)


def broker_all(view: GridView, n_tasks: int, jobs_per_task: int) -> int:
    settings = BrokerageSettings()
    placed = 0
    for t in range(n_tasks):
        needs = task_needs(t, jobs_per_task)
        rng = np.random.default_rng(t)
        choice = broker_task(view, needs, settings, 5.0, rng)
        if choice.chosen is not None:
            placed += len(broker_jobs(view, needs, choice.members, settings, rng))
    return placed


def vectorised_baseline(view: GridView, n_tasks: int, jobs_per_task: int) -> int:
    """The bare arithmetic: every task x queue scored at once, one draw per job."""
    s = BrokerageSettings()
    site = view.queue_site
    free = np.clip((view.queue_slots - view.queue_waiting) / view.queue_slots, 0, 1)
    data = np.stack([view.present[t][site] for t in range(n_tasks)]).astype(float)
    holders = np.stack([np.flatnonzero(view.sources[t])[[0, -1]] for t in range(n_tasks)])
    rate = np.nan_to_num(view.throughput[holders][:, :, site], nan=1.0).max(axis=1)
    seconds = np.where(data > 0, 0.0, 2.0 * GB / (rate * 1e6))
    score = (s.weight_data * data + s.weight_capacity * free
             + s.weight_network / (1 + seconds / s.network_scale_s))
    ok = score >= score.max(axis=1, keepdims=True) * (1 - s.near_equal_fraction)
    p = np.where(ok, score, 0.0)
    cdf = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
    draws = np.random.default_rng(0).random((n_tasks, jobs_per_task))
    picks = np.stack([np.searchsorted(cdf[t], draws[t]) for t in range(n_tasks)])
    return int(picks.size)


def grid_document(view: GridView, n_tasks: int, jobs_per_task: int) -> str:
    """The synthetic view as a CRIC-shaped document, datasets included."""
    doc: dict[str, object] = {
        "cloud": {c: {"tier1": view.sites[int(view.cloud_tier1[k])]}
                  for k, c in enumerate(view.clouds)},
        "site": {s: {"cloud": view.clouds[int(view.site_cloud[i])],
                     "tier_level": 1 if i < len(view.clouds) else 2,
                     "status": "online" if view.site_online[i] else "offline"}
                 for i, s in enumerate(view.sites)},
        "ddmendpoint": {f"{s}_DATADISK": {"site": s, "type": "DATADISK", "is_tape": False,
                                          "space_total_bytes": 10**16,
                                          "space_free_bytes": 10**15} for s in view.sites},
        "pandaqueue": {q: {"atlas_site": view.sites[int(view.queue_site[k])],
                           "status": str(view.queue_status[k]),
                           "type": str(view.queue_type[k]),
                           "corecount": int(view.queue_cores[k]),
                           "maxrss": int(view.queue_memory_mb[k]),
                           "maxtime": int(view.queue_walltime_s[k]), "maxwdir": 100_000,
                           "pilot_slots": int(view.queue_slots[k])}
                       for k, q in enumerate(view.queues)},
        "dataset": [{"scope": "bench", "name": f"bench.ds{t:04d}",
                     "files": [{"name": f"bench.ds{t:04d}._{i:06d}.root", "bytes": 2 * GB,
                                "guid": f"00000000-0000-4000-8000-{t:04d}{i:08d}",
                                "adler32": "01020304"} for i in range(jobs_per_task)],
                     "replicas": [{"rse": f"{view.sites[i]}_DATADISK", "state": "AVAILABLE"}
                                  for i in np.flatnonzero(view.present[t])]}
                    for t in range(n_tasks)]}
    return json.dumps(doc)


def stored_rate(view: GridView, n_tasks: int, jobs_per_task: int, url: str | None = None
                ) -> float:
    """Jobs per second of one ``broker_tasks`` pass on ``url`` (default: a SQLite file)."""
    engine = create_db_engine(url or f"sqlite:///{scratch_path('brokerage.db')}")
    upgrade(engine)
    registry.import_grid_document(engine, grid_document(view, n_tasks, jobs_per_task))
    now = utcnow()
    with engine.begin() as conn:
        db = TaskDB(conn)
        for t in range(n_tasks):
            db.add_task({"name": f"bench.task{t:04d}", "user_name": f"user{t % 50}",
                         "processing_type": ProcessingType.PRODUCTION,
                         "dataset_id": db.dataset_id("bench", f"bench.ds{t:04d}"),
                         "transformation": "run.sh", "job_pars": "--in $IN --out $OUT",
                         "cores": 8, "memory_mb": 8000, "walltime_s": 7200,
                         "files_per_job": 1, "priority": 1000, "max_attempts": 3,
                         "status": TaskStatus.REGISTERED, "created_at": now,
                         "modified_at": now})
    started = time.perf_counter()
    rows = broker_tasks(engine, Settings())
    took = time.perf_counter() - started
    engine.dispose()
    return sum(r["jobs"] for r in rows) / took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sites", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--jobs-per-task", type=int, default=100)
    parser.add_argument("--no-db", action="store_true", help="Skip brokerage.jobs_stored.")
    args = parser.parse_args()
    view = synthetic_view(args.sites, args.tasks, np.random.default_rng(7))
    waiting = view.queue_waiting.copy()
    started = time.perf_counter()
    jobs = broker_all(view, args.tasks, args.jobs_per_task)
    rate = jobs / (time.perf_counter() - started)
    view.queue_waiting[:] = waiting
    started = time.perf_counter()
    base_jobs = vectorised_baseline(view, args.tasks, args.jobs_per_task)
    baseline = base_jobs / (time.perf_counter() - started)
    emit("brokerage.jobs", rate, "jobs/s", baseline, ">= 20000 jobs/s")
    if args.no_db:
        return
    goal = ">= 20000 jobs/s (decided and stored)"
    view.queue_waiting[:] = waiting
    emit("brokerage.jobs_stored", stored_rate(view, args.tasks, args.jobs_per_task),
         "jobs/s", rate, goal)
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        print("no PostgreSQL binaries: brokerage.jobs_stored.postgresql skipped",
              file=sys.stderr)
        return
    view.queue_waiting[:] = waiting
    with PostgresCluster(bin_dir) as pg:
        emit("brokerage.jobs_stored.postgresql",
             stored_rate(view, args.tasks, args.jobs_per_task, pg.url()), "jobs/s", rate, goal)


if __name__ == "__main__":
    main()

"""pd2p.cycle: one PD2P cycle over 100,000 datasets and 1,000 endpoints.

A SQLite database with 1,000 sites (one disk endpoint and one queue each,
10 clouds), 100,000 datasets of 1 to 50 GB with two disk replicas each, a
partial mesh of measured links (every replica holder to 200 random sites),
popularity for 5% of the datasets (1 to 400 jobs brokered this week) and
40,000 waiting jobs over 2,000 of them. The rate limit is lifted so the
cycle places every triggered dataset. ``pd2p.cycle`` is the cycle's
seconds; its in-run baseline is the cycle's own trigger queries (popularity
and waiting jobs), so the ratio says how much the placement adds to reading
what triggers it.

    python bench/pd2p.py [--datasets N] [--sites S]
"""

from __future__ import annotations

import argparse
import time
from datetime import timedelta

import numpy as np
import sqlalchemy as sa
from _common import emit, scratch_path

from netbroker.common.config import Settings
from netbroker.common.enums import utcnow
from netbroker.db import create_db_engine, upgrade
from netbroker.db.metrics import MetricsDB
from netbroker.db.pd2p import Pd2pDB
from netbroker.db.schema import (
    clouds,
    dataset_accesses,
    datasets,
    endpoints,
    files,
    jobs,
    queues,
    replicas,
    sites,
    tasks,
)
from netbroker.placement import pd2p

GB = 1_000_000_000


def build(n_datasets: int, n_sites: int, rng: np.random.Generator) -> sa.engine.Engine:
    engine = create_db_engine(f"sqlite:///{scratch_path('pd2p.db')}")
    upgrade(engine)
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(sa.insert(clouds), [{"id": c + 1, "name": f"C{c}", "updated_at": now}
                                         for c in range(10)])
        conn.execute(sa.insert(sites), [
            {"id": i + 1, "name": f"SITE-{i:04d}", "cloud_id": i % 10 + 1,
             "tier": 1 if i < 10 else 2, "status": "online" if rng.random() > 0.03
             else "offline", "updated_at": now} for i in range(n_sites)])
        conn.execute(sa.insert(endpoints), [
            {"id": i + 1, "name": f"SITE-{i:04d}_DATADISK", "site_id": i + 1,
             "endpoint_type": "DATADISK", "kind": "disk", "total_bytes": 10**16,
             "free_bytes": int(rng.uniform(0, 5e15)), "updated_at": now}
            for i in range(n_sites)])
        conn.execute(sa.insert(queues), [
            {"id": i + 1, "name": f"SITE-{i:04d}_UCORE", "site_id": i + 1,
             "panda_resource": f"SITE-{i:04d}_UCORE", "queue_type": "unified",
             "status": "online", "cores": 8, "max_memory_mb": 16000, "max_walltime_s": 86400,
             "max_disk_mb": 100000, "pilot_slots": int(rng.integers(50, 2000)),
             "updated_at": now} for i in range(n_sites)])
        conn.execute(sa.insert(datasets), [
            {"id": d + 1, "scope": "bench", "name": f"bench.ds{d:06d}", "created_at": now}
            for d in range(n_datasets)])
        conn.execute(sa.insert(files), [
            {"dataset_id": d + 1, "name": f"bench.ds{d:06d}._000001.root",
             "guid": f"00000000-0000-4000-8000-{d:012d}", "bytes": int(rng.uniform(1, 50) * GB)}
            for d in range(n_datasets)])
        holders = rng.integers(1, n_sites + 1, (n_datasets, 2))
        holders[:, 1] = np.where(holders[:, 1] == holders[:, 0], holders[:, 0] % n_sites + 1,
                                 holders[:, 1])
        conn.execute(sa.insert(replicas), [
            {"dataset_id": d + 1, "endpoint_id": int(e), "state": "available",
             "updated_at": now} for d in range(n_datasets) for e in holders[d]])
        popular = rng.choice(n_datasets, n_datasets // 20, replace=False) + 1
        conn.execute(sa.insert(dataset_accesses), [
            {"dataset_id": int(d), "user_name": f"user{int(d) % 300}",
             "jobs": int(rng.integers(1, 400)), "at": now - timedelta(hours=float(h))}
            for d, h in zip(popular, rng.uniform(0, 160, len(popular)), strict=True)])
        waiting_sets = rng.choice(popular, min(2000, len(popular)), replace=False)
        conn.execute(sa.insert(tasks), [
            {"id": k + 1, "name": f"bench.task{k}", "user_name": f"user{k % 300}",
             "processing_type": "analysis", "dataset_id": int(d), "transformation": "run.sh",
             "cores": 1, "memory_mb": 2000, "walltime_s": 3600, "files_per_job": 1,
             "priority": 1000, "max_attempts": 3, "status": "running", "created_at": now,
             "modified_at": now} for k, d in enumerate(waiting_sets)])
        conn.execute(sa.insert(jobs), [
            {"task_id": k % len(waiting_sets) + 1, "name": f"j{k}", "status": "activated",
             "queue_id": int(rng.integers(1, n_sites + 1)), "prod_source_label": "user",
             "priority": 1000, "base_priority": 1000, "cores": 1, "min_ram_mb": 2000,
             "max_disk_mb": 5000, "max_walltime_s": 3600, "transformation": "run.sh",
             "created_at": now, "modified_at": now, "waiting_since": now}
            for k in range(40_000)])
        start = int(time.time() // 600 * 600) - 1200
        pairs = {(int(s), int(d)) for s in np.unique(holders)
                 for d in rng.integers(1, n_sites + 1, 200) if d != s}
        MetricsDB(conn).add_buckets([
            ("throughput", "fts", start, s, d, 4, 0.0, 4e9, float(rng.gamma(2, 40)) * 4e9,
             time.time() - 60) for s, d in sorted(pairs)])
    return engine


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", type=int, default=100_000)
    parser.add_argument("--sites", type=int, default=1000)
    args = parser.parse_args()
    engine = build(args.datasets, args.sites, np.random.default_rng(11))
    settings = Settings.model_validate({"pd2p": {"max_decisions_per_hour": 1_000_000}})
    now = utcnow()
    started = time.perf_counter()
    with engine.connect() as conn:
        db = Pd2pDB(conn)
        db.popularity(now - timedelta(days=1), now - timedelta(days=7))
        db.waiting_jobs()
    baseline = time.perf_counter() - started
    started = time.perf_counter()
    result = pd2p.run_cycle(engine, settings)
    took = time.perf_counter() - started
    print(f"# {len(result['decisions'])} decisions from {args.datasets} datasets",
          flush=True)
    emit("pd2p.cycle", took, "s", baseline, "none set; state the time")


if __name__ == "__main__":
    main()

"""The service as the simulation runs it: its database, its ingestion and its cycles.

:class:`SimService` holds a SQLite database of the service's own schema,
with the scenario's grid imported as a CRIC document. The simulation feeds
it what the real service would get (FTS messages and perfSONAR results,
through ``collectors.ingest``; the jobs brokerage made and the states the
pilots report; the accesses of analysis tasks) and runs the service's own
cycles on it at the simulated time: the membership recomputation
(``clouds.recompute``, which judges the links on their consolidated window
and the sites on their jobs' success), PD2P (``pd2p.run_cycle``, then
``pd2p.mark_done`` once the simulated DDM has copied a decision's data) and
rebrokerage (``rebrokerage.rebroker``). What they decide comes back as plain
rows for the simulation to carry out.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from collectors.ingest import ingest
from netbroker.clouds import membership as clouds
from netbroker.common.config import Settings
from netbroker.common.enums import TaskStatus
from netbroker.common.errors import DecisionConflict
from netbroker.db import begin_immediate, create_db_engine, upgrade
from netbroker.db.clouds import CloudDB
from netbroker.db.grid import GridDB
from netbroker.db.jobs import JobDB
from netbroker.db.pd2p import Pd2pDB
from netbroker.db.schema import datasets as datasets_table
from netbroker.db.tasks import TaskDB
from netbroker.network.metrics import MetricKind, block_closed_buckets, tier1_links
from netbroker.placement import pd2p
from netbroker.registry import registry
from netbroker.sim.scenario import Grid, grid_document
from netbroker.workload.rebrokerage import rebroker

__all__ = ["T0_S", "SimService", "prepare_database"]

T0_S = datetime(2026, 1, 1, tzinfo=UTC).timestamp()  # simulated time 0, as Unix time


def at(t: float) -> datetime:
    """Simulated seconds as the service's clock."""
    return datetime.fromtimestamp(T0_S + t, UTC)


def prepare_database(grid: Grid, directory: Path) -> Path:
    """A database at the newest schema holding the grid (each run starts from a copy)."""
    path = directory / "template.db"
    engine = create_db_engine(f"sqlite:///{path}")
    try:
        upgrade(engine)
        registry.import_grid_document(engine, grid_document(grid))
        with engine.connect() as conn:  # fold the WAL into the file so a copy is whole
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()
    return path


class SimService:
    """One policy's service: a copy of the template database and the settings."""

    def __init__(self, grid: Grid, template: Path, settings: Settings) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="netbroker-sim-"))
        path = self.dir / "service.db"
        shutil.copyfile(template, path)
        self.engine = create_db_engine(f"sqlite:///{path}")
        self.settings = settings
        self.grid = grid
        with self.engine.connect() as conn:
            db = GridDB(conn)
            site_ids, queue_ids = db.site_ids(), db.queue_ids()
            cloud_ids = db.cloud_ids()
            dataset_ids = {name: i for i, name in conn.execute(
                sa.select(datasets_table.c.id, datasets_table.c.name))}
        self.site_id = [site_ids[name] for name in grid.names]
        self.site_of_id = {sid: i for i, sid in enumerate(self.site_id)}
        assert grid.queue_names is not None
        self.queue_id = [queue_ids[q] for q in grid.queue_names]
        self.queue_of_name = {q: k for k, q in enumerate(grid.queue_names)}
        self.cloud_id = [cloud_ids[f"C{k:02d}"] for k in range(len(grid.tier1))]
        self.cloud_of_id = {cid: k for k, cid in enumerate(self.cloud_id)}
        self.dataset_id = [dataset_ids[f"ds.{d:04d}"] for d in range(len(grid.replicas))]
        self.dataset_of_name = {f"sim:ds.{d:04d}": d for d in range(len(grid.replicas))}

    def close(self) -> None:
        self.engine.dispose()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- what the sources publish ------------------------------------------------------
    def ingest(self, fts: list[str], perfsonar: list[str], t: float) -> int:
        """Ingest the period's records at simulated time ``t``; returns the samples stored."""
        stored = 0
        for source, lines in (("fts", fts), ("perfsonar", perfsonar)):
            if lines:
                stored += ingest(self.engine, source, "\n".join(lines), self.settings.metrics,
                                 now_s=T0_S + t).stored
        return stored

    def aggregate(self, t: float) -> None:
        """The aggregate cycle (``block_closed_buckets``) at simulated time ``t``: the
        closed bucket starts copied into blocks, which the windows' readers take whole.

        A read through blocks is the read through rows, to the bit, so how
        often this runs changes what a read costs, never what it gives.
        """
        block_closed_buckets(self.engine, self.settings.metrics, T0_S + t)

    def throughput(self, t: float) -> np.ndarray:
        """(n, n) consolidated throughput in the clouds' window, MB/s, NaN: unknown."""
        n = len(self.site_id)
        out = np.full((n, n), np.nan)
        for src, dst, _, value in tier1_links(self.engine, MetricKind.THROUGHPUT,
                                              self.settings.clouds.window, self.site_id,
                                              self.settings.metrics, T0_S + t):
            out[self.site_of_id[src], self.site_of_id[dst]] = value
        return out

    # --- the registry ------------------------------------------------------------------
    def set_site_status(self, site: int, status: str) -> None:
        name = self.grid.names[site]
        record: dict[str, object] = {
            "cloud": f"C{int(self.grid.cloud[site]):02d}", "tier_level": int(self.grid.tier[site]),
            "country": "Simland", "status": status, "domains": [f"{name.lower()}.sim"],
            "datapolicies": ["Nucleus"] if self.grid.tier[site] == 1 else []}
        doc = json.dumps({"site": {name: record}})
        registry.import_grid_document(self.engine, doc)

    # --- the jobs the simulation runs ----------------------------------------------------
    def add_tasks(self, rows: Sequence[dict[str, Any]], accesses: Sequence[dict[str, Any]]
                  ) -> list[int]:
        """Insert brokered tasks (``cloud`` or ``nucleus`` as simulation indices) and the
        analysis tasks' accesses; returns the task ids."""
        ids = []
        with begin_immediate(self.engine) as conn:
            db = TaskDB(conn)
            for row in rows:
                row = dict(row)
                cloud, nucleus = row.pop("cloud"), row.pop("nucleus")
                row["dataset_id"] = self.dataset_id[row["dataset_id"]]
                task_id = db.add_task({**row, "status": TaskStatus.RUNNING})
                db.set_task(task_id, cloud_id=None if cloud is None else self.cloud_id[cloud],
                            nucleus_site_id=None if nucleus is None else self.site_id[nucleus])
                ids.append(task_id)
            Pd2pDB(conn).record_accesses([{**a, "dataset_id": self.dataset_id[a["dataset_id"]],
                                           "task_id": ids[a["task_id"]]} for a in accesses])
        return ids

    def sync_jobs(self, new: Sequence[dict[str, Any]], changed: Sequence[dict[str, Any]],
                  t: float) -> list[int]:
        """Insert new jobs (queue as a simulation index) and set the changed ones' states;
        returns the new jobs' ids."""
        now = at(t)
        with begin_immediate(self.engine) as conn:
            db = JobDB(conn)
            db.set_states(changed)
            return db.add_jobs([{**r, "queue_id": self.queue_id[r["queue_id"]]} for r in new],
                               now) if new else []

    # --- the service's cycles ------------------------------------------------------------
    def recompute_clouds(self, t: float) -> tuple[np.ndarray, list[clouds.MembershipChange]]:
        """The membership cycle; returns the (c, n) foreign members it leaves and the
        joins and leaves it decided."""
        changes = clouds.recompute(self.engine, self.settings.clouds, self.settings.metrics,
                                   T0_S + t)
        with self.engine.connect() as conn:
            current = CloudDB(conn).foreign_members()
        out = np.zeros((len(self.cloud_id), len(self.site_id)), bool)
        for cloud_id, site_id in current:
            out[self.cloud_of_id[cloud_id], self.site_of_id[site_id]] = True
        return out, changes

    def run_pd2p(self, t: float) -> list[dict[str, Any]]:
        """The PD2P cycle; each new decision as (id, dataset index, target site, sources
        as site indices best first, bytes), acknowledged as DDM would."""
        out = []
        for d in pd2p.run_cycle(self.engine, self.settings, now=at(t), now_s=T0_S + t
                                )["decisions"]:
            full = pd2p.get_decision(self.engine, d["id"])
            pd2p.mark_acknowledged(self.engine, d["id"])
            out.append({"id": d["id"], "dataset": self.dataset_of_name[full["dataset"]],
                        "target": self.grid.names.index(full["target"].removesuffix(
                            "_DATADISK")),
                        "sources": [self.grid.names.index(s["endpoint"].removesuffix(
                            "_DATADISK")) for s in full["sources"]], "bytes": full["bytes"]})
        return out

    def replica_done(self, decision_id: int, t: float) -> list[dict[str, Any]]:
        """DDM reports a decision's replica made; returns the jobs PD2P then rebrokered."""
        try:
            done = pd2p.mark_done(self.engine, decision_id, self.settings, now=at(t),
                                  now_s=T0_S + t)
        except DecisionConflict:  # expired meanwhile: the copy is there, no longer PD2P's
            return []
        return self._moves(done["rebrokered"]["moved"])

    def rebroker(self, t: float) -> list[dict[str, Any]]:
        """The rebrokerage cycle; returns its moves (job id, to queue index, reason)."""
        return self._moves(rebroker(self.engine, self.settings, now=at(t),
                                    now_s=T0_S + t)["moved"])

    def _moves(self, moved: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"job_id": m["job_id"], "to": self.queue_of_name[m["to"]],
                 "reason": m["reason"]} for m in moved]

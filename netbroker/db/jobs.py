"""JobDB: jobs and their state changes, on one open connection.

Acquisition is one UPDATE of the best matching activated job, chosen by a
subquery: on PostgreSQL the subquery locks its row ``FOR UPDATE SKIP
LOCKED`` (concurrent pilots take different jobs, none waits); on SQLite the
caller's ``BEGIN IMMEDIATE`` serialises writers. Either way a job is sent to
exactly one pilot. A state change is one conditional UPDATE (``WHERE status
IN (the allowed sources)``), so a refused move changes nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from netbroker.db.schema import JobStatus, job_state_changes, jobs

__all__ = ["JobDB"]


class JobDB:
    """Reads and writes ``jobs`` and ``job_state_changes``."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add_jobs(self, rows: Sequence[dict[str, Any]], now: datetime) -> list[int]:
        """Insert jobs (their status included) and log their first state; returns the ids."""
        ids = [r[0] for r in self.conn.execute(
            sa.insert(jobs).returning(jobs.c.id, sort_by_parameter_order=True),
            [{**r, "created_at": now, "modified_at": now} for r in rows])]
        self.conn.execute(sa.insert(job_state_changes), [
            {"job_id": i, "status": r["status"], "at": now}
            for i, r in zip(ids, rows, strict=True)])
        return ids

    def acquire(self, queue_id: int, label: str, cores: int, memory_mb: int, disk_mb: int,
                pilot_id: str, node: str, now: datetime) -> dict[str, Any] | None:
        """Send the best activated job of a queue that fits to this pilot, or None.

        Best: highest priority, then the newest id (the index's order, read
        backwards; waiting jobs climb by aging, so the old are not starved).
        Fits: cores, memory and disk within what the pilot offers, and the
        pilot's prodSourceLabel.
        """
        pick = (sa.select(jobs.c.id)
                .where(jobs.c.queue_id == queue_id, jobs.c.status == JobStatus.ACTIVATED,
                       jobs.c.prod_source_label == label, jobs.c.cores <= cores,
                       jobs.c.min_ram_mb <= memory_mb, jobs.c.max_disk_mb <= disk_mb)
                # Both keys descending: a backward scan of ix_jobs_acquire, no sort.
                .order_by(jobs.c.priority.desc(), jobs.c.id.desc()).limit(1)
                .with_for_update(skip_locked=True)
                .scalar_subquery())
        stmt = (sa.update(jobs).where(jobs.c.id == pick)
                .values(status=JobStatus.SENT, pilot_id=pilot_id, node=node, modified_at=now,
                        heartbeat_at=now)
                .returning(*jobs.c))
        row = self.conn.execute(stmt).mappings().first()
        if row is None:
            return None
        self._log(row["id"], JobStatus.SENT, now)
        return dict(row)

    def set_status(self, job_id: int, status: JobStatus, sources: Collection[JobStatus],
                   now: datetime, **fields: Any) -> bool:
        """Move a job to ``status`` if it is in one of ``sources``; False if it is not."""
        result = self.conn.execute(
            sa.update(jobs).where(jobs.c.id == job_id, jobs.c.status.in_(list(sources)))
            .values(status=status, modified_at=now, heartbeat_at=now, **fields))
        if result.rowcount != 1:
            return False
        self._log(job_id, status, now)
        return True

    def retry(self, job_id: int, now: datetime) -> int | None:
        """A new activated attempt of a failed job, if it has attempts left; its id or None."""
        job = self.get(job_id)
        if job is None or job["attempt_nr"] >= job["max_attempts"]:
            return None
        keep = ("task_id", "name", "queue_id", "prod_source_label", "priority", "max_attempts",
                "cores", "min_ram_mb", "max_disk_mb", "max_walltime_s", "transformation",
                "job_pars")
        (new_id,) = self.add_jobs([{**{k: job[k] for k in keep},
                                    "status": JobStatus.ACTIVATED, "retry_of": job_id,
                                    "attempt_nr": job["attempt_nr"] + 1}], now)
        return new_id

    def _log(self, job_id: int, status: JobStatus, now: datetime) -> None:
        self.conn.execute(sa.insert(job_state_changes).values(job_id=job_id, status=status,
                                                              at=now))

    def get(self, job_id: int) -> dict[str, Any] | None:
        row = self.conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().first()
        return dict(row) if row is not None else None

    def timeline(self, job_id: int) -> list[dict[str, Any]]:
        """The job's states, oldest first."""
        t = job_state_changes
        stmt = sa.select(t.c.status, t.c.at).where(t.c.job_id == job_id).order_by(t.c.id)
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

    def silent(self, statuses: Collection[JobStatus], before: datetime) -> list[int]:
        """Ids of jobs in ``statuses`` whose last sign of life is older than ``before``."""
        stmt = sa.select(jobs.c.id).where(jobs.c.status.in_(list(statuses)),
                                          jobs.c.heartbeat_at < before).order_by(jobs.c.id)
        return list(self.conn.execute(stmt).scalars())

    def count_by_status(self, queue_id: int | None = None) -> dict[str, int]:
        """Jobs per state, of one queue or of all."""
        stmt = sa.select(jobs.c.status, sa.func.count()).group_by(jobs.c.status)
        if queue_id is not None:
            stmt = stmt.where(jobs.c.queue_id == queue_id)
        return {str(s): n for s, n in self.conn.execute(stmt)}

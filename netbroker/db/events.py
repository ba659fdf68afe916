"""EventDB: the event ranges of event-service jobs, on one open connection.

Handing ranges to a pilot is one UPDATE of up to N ready ranges of a job,
chosen by a subquery that skips rows other transactions hold (``FOR UPDATE
SKIP LOCKED`` on PostgreSQL; the caller's ``BEGIN IMMEDIATE`` on SQLite),
so no range is ever given to two pilots.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from netbroker.common.enums import EventRangeStatus
from netbroker.db.bulk import insert_rows
from netbroker.db.schema import event_ranges, jobs

__all__ = ["EventDB"]

R = EventRangeStatus


class EventDB:
    """Reads and writes ``event_ranges``."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add_ranges(self, job_id: int, bounds: Sequence[tuple[int, int]], now: datetime) -> int:
        """Create ready ranges (first, last event) for a job; returns how many."""
        self.conn.execute(sa.insert(event_ranges), [
            {"job_id": job_id, "first_event": a, "last_event": b, "status": R.READY,
             "updated_at": now} for a, b in bounds])
        return len(bounds)

    def add_ranges_of(self, rows: Sequence[tuple[int, int, int]], now: datetime) -> int:
        """Create ready ranges ``(job id, first, last event)`` for many jobs at once."""
        insert_rows(self.conn, event_ranges, [  # in bulk: netbroker.db.bulk
            {"job_id": j, "first_event": a, "last_event": b, "status": R.READY,
             "updated_at": now} for j, a, b in rows])
        return len(rows)

    def take(self, job_id: int, n: int, pilot_id: str, now: datetime) -> list[dict[str, Any]]:
        """Mark up to ``n`` ready ranges of the job running for this pilot; return them."""
        t = event_ranges
        pick = (sa.select(t.c.id).where(t.c.job_id == job_id, t.c.status == R.READY)
                .order_by(t.c.id).limit(n).with_for_update(skip_locked=True))
        stmt = (sa.update(t).where(t.c.id.in_(pick))
                .values(status=R.RUNNING, pilot_id=pilot_id, updated_at=now)
                .returning(t.c.id, t.c.job_id, t.c.first_event, t.c.last_event, t.c.attempt))
        return sorted((dict(r) for r in self.conn.execute(stmt).mappings()),
                      key=lambda r: r["id"])

    def report(self, range_id: int, status: EventRangeStatus, max_attempts: int,
               now: datetime) -> str | None:
        """Apply a pilot's report on a running range; returns the new status, or None
        when the range is unknown or not running (nothing changes then).

        A failed range goes back to ready for another attempt until it has had
        ``max_attempts``.
        """
        t = event_ranges
        row = self.conn.execute(sa.select(t.c.status, t.c.attempt).where(t.c.id == range_id)
                                ).first()
        if row is None or row.status != R.RUNNING:
            return None
        new, attempt = status, row.attempt
        if status == R.FAILED and row.attempt < max_attempts:
            new, attempt = R.READY, row.attempt + 1
        self.conn.execute(sa.update(t).where(t.c.id == range_id, t.c.status == R.RUNNING)
                          .values(status=new, attempt=attempt, updated_at=now,
                                  pilot_id=None if new == R.READY else t.c.pilot_id))
        return new.value

    def release_silent(self, before: datetime) -> int:
        """Running ranges not reported since ``before`` go back to ready; returns how many."""
        t = event_ranges
        result = self.conn.execute(
            sa.update(t).where(t.c.status == R.RUNNING, t.c.updated_at < before)
            .values(status=R.READY, pilot_id=None, attempt=t.c.attempt + 1))
        return result.rowcount or 0

    def job_owners(self, range_ids: Sequence[int]) -> dict[int, str | None]:
        """The owner of the job of each of these ranges (by range id)."""
        stmt = (sa.select(event_ranges.c.id, jobs.c.owner)
                .join(jobs, event_ranges.c.job_id == jobs.c.id)
                .where(event_ranges.c.id.in_(list(range_ids))))
        return dict(self.conn.execute(stmt).all())  # type: ignore[arg-type]

    def counts(self, job_id: int) -> dict[str, int]:
        t = event_ranges
        stmt = sa.select(t.c.status, sa.func.count()).where(t.c.job_id == job_id).group_by(
            t.c.status)
        return {str(s): n for s, n in self.conn.execute(stmt)}

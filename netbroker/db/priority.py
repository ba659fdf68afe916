"""PriorityDB: boost rules, users' recent CPU use, and the bulk priority update."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from netbroker.db.jobs import WAITING
from netbroker.db.schema import clouds, jobs, priority_boosts, queues, sites

__all__ = ["PriorityDB"]


class PriorityDB:
    """Reads and writes ``priority_boosts`` and the priorities of waiting jobs."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add_boost(self, row: dict[str, Any]) -> int:
        return int(self.conn.execute(
            sa.insert(priority_boosts).returning(priority_boosts.c.id), [row]).scalar_one())

    def remove_boost(self, boost_id: int) -> bool:
        result = self.conn.execute(sa.delete(priority_boosts)
                                   .where(priority_boosts.c.id == boost_id))
        return result.rowcount == 1

    def boosts(self, active_at: datetime | None = None) -> list[dict[str, Any]]:
        """Boost rules with site and cloud names, newest first; only active ones if asked."""
        b = priority_boosts
        stmt = (sa.select(b, sites.c.name.label("site"), clouds.c.name.label("cloud"))
                .outerjoin(sites, b.c.site_id == sites.c.id)
                .outerjoin(clouds, b.c.cloud_id == clouds.c.id).order_by(b.c.id.desc()))
        if active_at is not None:
            stmt = stmt.where(b.c.expires_at > active_at)
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

    def cpu_hours_by_user(self, since: datetime) -> dict[str, float]:
        """CPU-hours each user's jobs reported, for jobs changed since ``since``."""
        stmt = (sa.select(jobs.c.user_name, sa.func.sum(jobs.c.cpu_time_s))
                .where(jobs.c.modified_at >= since, jobs.c.cpu_time_s.is_not(None))
                .group_by(jobs.c.user_name))
        return {user: float(total) / 3600 for user, total in self.conn.execute(stmt)}

    def waiting_jobs(self) -> pd.DataFrame:
        """Every waiting job with what its priority depends on, one row per job.

        Columns ``id, priority, base_priority, user_name, working_group,
        attempt_nr, waiting_since, site_id, cloud_id``.
        """
        stmt = (sa.select(jobs.c.id, jobs.c.priority, jobs.c.base_priority, jobs.c.user_name,
                          jobs.c.working_group, jobs.c.attempt_nr, jobs.c.waiting_since,
                          queues.c.site_id, sites.c.cloud_id)
                .outerjoin(queues, jobs.c.queue_id == queues.c.id)
                .outerjoin(sites, queues.c.site_id == sites.c.id)
                .where(jobs.c.status.in_(list(WAITING))))
        result = self.conn.execute(stmt)
        return pd.DataFrame(result.fetchall(), columns=list(result.keys()))

    def set_priorities(self, changes: Sequence[tuple[int, int]]) -> int:
        """Set ``priority`` of waiting jobs: one executemany of (id, priority) pairs.

        A job that left the waiting states meanwhile is left alone.
        """
        if not changes:
            return 0
        # executemany takes no expanding IN: the states are spelled out.
        waiting = sa.or_(*(jobs.c.status == s for s in sorted(WAITING)))
        stmt = (sa.update(jobs).where(jobs.c.id == sa.bindparam("job_id"), waiting)
                .values(priority=sa.bindparam("new_priority")))
        self.conn.execute(stmt, [{"job_id": i, "new_priority": p} for i, p in changes])
        return len(changes)

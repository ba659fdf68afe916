"""The event service: jobs split into event ranges that pilots take a few at a time.

A pilot asks for N ranges of its job and reports each one finished or
failed; a failed range is retried up to ``event_range_max_attempts``. A
pilot that vanishes loses only the ranges it held: the watchdog gives them
back (``ready``) after ``event_range_timeout_minutes`` without a report.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Engine

from netbroker.common.config import DispatcherSettings
from netbroker.common.enums import EventRangeStatus, utcnow
from netbroker.common.errors import Forbidden, UnknownJob
from netbroker.db import begin_immediate
from netbroker.db.events import EventDB
from netbroker.db.jobs import JobDB

__all__ = [
    "RangeReport",
    "define_event_ranges",
    "get_event_ranges",
    "release_silent_ranges",
    "report_event_ranges",
]


class RangeReport(BaseModel):
    """One range's outcome, as a pilot reports it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    range_id: int = Field(ge=1, le=2**63 - 1)
    status: EventRangeStatus = Field(description="finished, failed or cancelled")


def define_event_ranges(engine: Engine, job_id: int, n_events: int,
                        events_per_range: int) -> int:
    """Split a job's ``n_events`` into ranges of ``events_per_range``; returns how many.

    >>> [(a, min(a + 3, 10) - 1) for a in range(0, 10, 3)]  # the bounds for 10 events by 3
    [(0, 2), (3, 5), (6, 8), (9, 9)]
    """
    bounds = [(a, min(a + events_per_range, n_events) - 1)
              for a in range(0, n_events, events_per_range)]
    with begin_immediate(engine) as conn:
        if JobDB(conn).get(job_id) is None:
            raise UnknownJob(str(job_id))
        return EventDB(conn).add_ranges(job_id, bounds, utcnow())


def get_event_ranges(engine: Engine, job_id: int, n: int, pilot_id: str = "",
                     owner: str | None = None) -> list[dict[str, Any]]:
    """Up to ``n`` ready ranges of the job, now held by this pilot (empty: none left).

    With ``owner`` only the pilot that took the job may take its ranges.
    """
    with begin_immediate(engine) as conn:
        job = JobDB(conn).get(job_id)
        if job is None:
            raise UnknownJob(str(job_id))
        if owner is not None and job["owner"] != owner:
            raise Forbidden(f"job {job_id} was taken by another pilot")
        return EventDB(conn).take(job_id, n, pilot_id, utcnow())


def report_event_ranges(engine: Engine, reports: list[RangeReport],
                        settings: DispatcherSettings, owner: str | None = None
                        ) -> list[str | None]:
    """Apply each report; per report the range's new status, or None if refused
    (unknown range, or not running). With ``owner``, every range must belong
    to a job that pilot took (else ``Forbidden``, and nothing changes)."""
    with begin_immediate(engine) as conn:
        db, now = EventDB(conn), utcnow()
        if owner is not None and reports:
            owners = db.job_owners([r.range_id for r in reports])
            if any(o != owner for o in owners.values()):
                raise Forbidden("an event range belongs to another pilot's job")
        return [db.report(r.range_id, r.status, settings.event_range_max_attempts, now)
                for r in reports]


def release_silent_ranges(engine: Engine, settings: DispatcherSettings) -> int:
    """Give back the ranges of vanished pilots; returns how many went back to ready."""
    before = utcnow() - timedelta(minutes=settings.event_range_timeout_minutes)
    with begin_immediate(engine) as conn:
        return EventDB(conn).release_silent(before)

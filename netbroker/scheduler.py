"""Periodic cycles under APScheduler, run by exactly one service process.

A :class:`Cycle` names a job and its period; :func:`run_cycle` runs it only
while this process holds the cycle's lease in the database
(``netbroker.db.cycles``), and records each run's outcome there. Every
service process schedules every cycle; the lease makes all but one skip.
The jobs themselves are plain callables taking the engine: the edge that
starts the service (``netbroker.service``) decides which cycles exist.
"""

from __future__ import annotations

import logging
import os
import socket
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.engine import Engine

from netbroker.db.cycles import CycleDB
from netbroker.db.schema import utcnow

__all__ = ["Cycle", "build_scheduler", "process_holder", "run_cycle"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cycle:
    """A periodic job: its name, its period in seconds, what it does."""

    name: str
    period_s: float
    job: Callable[[Engine], object]

    @property
    def lease_s(self) -> float:
        """Long enough to cover a run and the wait for the next: two periods."""
        return 2 * self.period_s


def process_holder() -> str:
    """A name for this process that no other process shares: host, pid, random tag."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def run_cycle(engine: Engine, cycle: Cycle, holder: str) -> bool:
    """Run ``cycle`` once if ``holder`` gets its lease; returns whether it ran.

    A failing job is logged and recorded (``cycles.last_error``), never raised:
    the scheduler keeps the next run.
    """
    with engine.begin() as conn:
        if not CycleDB(conn).try_lease(cycle.name, holder, utcnow(), cycle.lease_s):
            log.debug("cycle %s is held by another process", cycle.name)
            return False
    started, error = utcnow(), None
    try:
        cycle.job(engine)
    except Exception as exc:  # a cycle must not kill the scheduler
        error = "".join(traceback.format_exception_only(exc)).strip()
        log.exception("cycle %s failed", cycle.name, extra={"cycle": cycle.name})
    with engine.begin() as conn:
        CycleDB(conn).record_run(cycle.name, started, utcnow(), error)
    return True


def build_scheduler(engine: Engine, cycles: list[Cycle], holder: str) -> BackgroundScheduler:
    """A background scheduler running each cycle every ``period_s`` (first run at once)."""
    scheduler = BackgroundScheduler(timezone="UTC")
    for cycle in cycles:
        scheduler.add_job(run_cycle, "interval", seconds=cycle.period_s, args=(engine, cycle,
                          holder), id=cycle.name, name=cycle.name, next_run_time=utcnow(),
                          max_instances=1, coalesce=True, misfire_grace_time=None)
    return scheduler

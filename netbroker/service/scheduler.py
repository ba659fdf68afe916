"""Periodic cycles under APScheduler, run by exactly one service process.

A :class:`Cycle` names a job and its period; :func:`run_cycle` runs it only
while this process holds the cycle's lease in the database
(``netbroker.db.cycles``), renewing the lease while the run lasts, and
records each run's outcome there. Every
service process schedules every cycle; the lease makes all but one skip.
The jobs themselves are plain callables taking the engine: the edge that
starts the service (``netbroker.service.serve``) decides which cycles exist.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.engine import Engine

from netbroker.common.enums import utcnow
from netbroker.db.cycles import CycleDB
from netbroker.db.engine import begin_immediate, retry_when_busy

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

    The lease and the outcome are each one short write transaction,
    retried while SQLite is busy (:func:`retry_when_busy`). A failing job is
    logged and recorded (``cycles.last_failure``), never raised: the
    scheduler keeps the next run. A lease that cannot be had because the
    database keeps failing is logged and recorded as a failure where the
    database lets it be.
    """
    started = utcnow()
    try:
        held = retry_when_busy(engine, lambda: _lease(engine, cycle, holder, started))
    except Exception as exc:
        log.exception("cycle %s could not take its lease", cycle.name,
                      extra={"cycle": cycle.name})
        _record(engine, cycle, started, f"lease: {_one_line(exc)}")
        return False
    if not held:
        log.debug("cycle %s is held by another process", cycle.name)
        return False
    error = None
    renewing = _LeaseRenewal(engine, cycle, holder)
    renewing.start()
    try:
        cycle.job(engine)
    except Exception as exc:  # a cycle must not kill the scheduler
        error = _one_line(exc)
        log.exception("cycle %s failed", cycle.name, extra={"cycle": cycle.name})
    finally:
        renewing.stop()
    finished = utcnow()
    _record(engine, cycle, started, error)
    # One line a run, with its holder and times: who ran what when, across servers.
    log.info("cycle %s ran", cycle.name, extra={
        "cycle": cycle.name, "holder": holder, "started": started.isoformat(),
        "finished": finished.isoformat(), "failed": error is not None})
    return True


class _LeaseRenewal(threading.Thread):
    """Renews a running cycle's lease every third of it until :meth:`stop`.

    A run may outlast its lease (two periods: a slow database, a big
    backlog); without renewal another server would then take the lease and
    run the same cycle beside it. The holder renews while it runs, so the
    lease runs out only when the holder is gone (its process killed), and
    another server takes over within one lease time of that.
    """

    def __init__(self, engine: Engine, cycle: Cycle, holder: str) -> None:
        super().__init__(name=f"lease-{cycle.name}", daemon=True)
        self.engine, self.cycle, self.holder = engine, cycle, holder
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.cycle.lease_s / 3):
            try:
                held = retry_when_busy(self.engine, lambda: _lease(
                    self.engine, self.cycle, self.holder, utcnow()))
            except Exception:
                log.exception("cycle %s: its lease could not be renewed", self.cycle.name,
                              extra={"cycle": self.cycle.name})
                continue
            if not held:  # only after a renewal failed for a whole lease time
                log.error("cycle %s: its lease was taken by another process during the run",
                          self.cycle.name, extra={"cycle": self.cycle.name})

    def stop(self) -> None:
        self.done.set()
        self.join()


def _lease(engine: Engine, cycle: Cycle, holder: str, now: datetime) -> bool:
    with begin_immediate(engine) as conn:
        return CycleDB(conn).try_lease(cycle.name, holder, now, cycle.lease_s, cycle.period_s)


def _record(engine: Engine, cycle: Cycle, started: datetime, error: str | None) -> None:
    """Store the run's outcome; a database that refuses even that is logged."""

    def write() -> None:
        with begin_immediate(engine) as conn:
            CycleDB(conn).record_run(cycle.name, started, utcnow(), error)

    try:
        retry_when_busy(engine, write)
    except Exception:
        log.exception("cycle %s: its outcome could not be stored (error: %s)", cycle.name,
                      error, extra={"cycle": cycle.name})


def _one_line(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(exc)).strip()


# Cycles that run at once, at most: all of them due together (at the start, and
# whenever their periods meet) would take both cores of a small host from the
# pilots' calls for as long as they run; two in turn spread the same work.
CONCURRENT_CYCLES = 2
# The cycles' threads run at this nice value (Linux sets it per thread): their
# work can wait a moment, a pilot's call should not.
CYCLE_NICENESS = 10


def build_scheduler(engine: Engine, cycles: list[Cycle], holder: str) -> BackgroundScheduler:
    """A background scheduler running each cycle every ``period_s`` (first run at once),
    :data:`CONCURRENT_CYCLES` at a time, on threads niced to :data:`CYCLE_NICENESS`."""
    scheduler = BackgroundScheduler(timezone="UTC", executors={"default": ThreadPoolExecutor(
        CONCURRENT_CYCLES, pool_kwargs={"initializer": _lower_priority})})
    for cycle in cycles:
        scheduler.add_job(run_cycle, "interval", seconds=cycle.period_s, args=(engine, cycle,
                          holder), id=cycle.name, name=cycle.name, next_run_time=utcnow(),
                          max_instances=1, coalesce=True, misfire_grace_time=None)
    return scheduler


def _lower_priority() -> None:
    """Nice the calling thread (a cycle thread) by :data:`CYCLE_NICENESS`, where the
    platform has per-thread priorities; elsewhere leave it."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(),
                       os.getpriority(os.PRIO_PROCESS, 0) + CYCLE_NICENESS)
    except (AttributeError, OSError):  # not Linux, or not allowed
        log.debug("cycle threads keep their priority")

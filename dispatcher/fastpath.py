"""The dispatcher's short calls on the event loop, where that is safe.

A pilot's getJob or updateJob is a little HTTP around one database
statement. Sending that statement to the thread pool costs about as much
CPU as the statement itself: on this 2-core machine kind a hop measured
~200 us of a ~1 ms request, mostly the GIL changing hands between the
loop and the pool's threads. So on PostgreSQL the two calls every job
makes, its acquisition and a report that is one statement (see
``dispatcher.core.report_is_one_statement``), run on the loop itself,
through an engine of their own (:func:`create_dispatch_engine`): a small
pool per service process, with a lock timeout and a statement timeout so
that such a call can hold the loop for milliseconds at most. A call that
hits either is rolled back by PostgreSQL and run again in the thread pool
on the service's engine, where waiting is harmless. SQLite writers wait
for a file lock (up to the busy timeout), so there every call goes to the
thread pool, one call at a time per process (:func:`create_writer_limiter`):
SQLite takes one writer at a time anyway, and more threads only queue on its
lock while they fight over the GIL (one thread: ~670 job cycles/s against
~460 with the pool's 40, under ``bench/dispatch.py``'s load).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import sqlalchemy as sa
from fastapi import Request
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from netbroker.db.engine import create_autocommit_engine

__all__ = ["LOCK_TIMEOUT_MS", "STATEMENT_TIMEOUT_MS", "call", "create_dispatch_engine",
           "create_writer_limiter"]

log = logging.getLogger(__name__)

T = TypeVar("T")

LOCK_TIMEOUT_MS = 20  # a row a cycle holds: give up quickly, the thread pool can wait
STATEMENT_TIMEOUT_MS = 500
_CONNECT_TIMEOUT_S = 2
_TIMED_OUT = {"55P03", "57014"}  # lock_not_available, query_canceled


def create_dispatch_engine(engine: Engine) -> Engine | None:
    """The engine for calls run on the event loop: same database as ``engine``, a
    pool of 2, lock and statement timeouts; None on SQLite.

    One loop runs one call at a time, so one connection per process is the
    need; the second is for a call that overlaps a disposal or a test's loop.
    No pre-ping (a round trip per call): after a database restart the first
    call fails (503, the pilot retries) and the pool reconnects.
    """
    if engine.dialect.name != "postgresql":
        return None
    return create_autocommit_engine(
        # Autocommit for good: only single statements run here (see ``call``), and
        # switching a connection in and out of it costs each call.
        engine.url, pool_size=1, max_overflow=1, pool_timeout=_CONNECT_TIMEOUT_S,
        connect_args={"connect_timeout": _CONNECT_TIMEOUT_S,
                      "options": f"-c lock_timeout={LOCK_TIMEOUT_MS}ms "
                                 f"-c statement_timeout={STATEMENT_TIMEOUT_MS}ms"})


def create_writer_limiter(engine: Engine) -> anyio.CapacityLimiter | None:
    """One thread at a time for the dispatcher's calls on SQLite; None elsewhere
    (the thread pool's own limit). Made inside the event loop that uses it."""
    return anyio.CapacityLimiter(1) if engine.dialect.name == "sqlite" else None


async def call(request: Request, fn: Callable[..., T], *args: Any, inline: bool = True) -> T:
    """``fn(engine, *args)``: on the loop with the app's dispatch engine when there
    is one and ``inline``, else (or when that timed out) in the thread pool with
    the app's engine.

    With ``inline``, ``fn`` must write with one statement at most (through
    ``netbroker.db.atomic_write``): the dispatch engine is in autocommit mode,
    so a transaction of several would not be one. And it must be safe to run
    twice when its first run timed out: a statement a timeout cancelled
    changed nothing.
    """
    fast: Engine | None = getattr(request.app.state, "dispatch_engine", None)
    if inline and fast is not None:
        try:
            return fn(fast, *args)
        except sa.exc.OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) not in _TIMED_OUT:
                raise
            log.info("%s timed out on the event loop (%s); retrying in the thread pool",
                     getattr(fn, "__name__", fn), exc.orig)
    limiter = getattr(request.app.state, "dispatch_writers", None)
    if limiter is None:
        return await run_in_threadpool(fn, request.app.state.engine, *args)
    return await anyio.to_thread.run_sync(functools.partial(fn, request.app.state.engine, *args),
                                          limiter=limiter)

"""The dispatcher's short calls on the event loop, where that is safe.

A pilot's getJob or updateJob is a little HTTP around one database
statement. Sending that statement to the thread pool costs about as much
CPU as the statement itself, mostly the GIL changing hands between the
loop and the pool's threads (``bench/dispatch.py`` measures it;
``docs/performance.md`` has the figures). So on PostgreSQL the two calls every job
makes, its acquisition and a report that is one statement (see
``dispatcher.core.report_is_one_statement``), run on the loop itself,
through an engine of their own (:func:`create_dispatch_engine`): a small
pool per service process, with a lock timeout and a statement timeout so
that such a call can hold the loop for milliseconds at most. A call that
hits either is rolled back by PostgreSQL and run again in the thread pool
on the service's engine, where waiting is harmless.

SQLite takes one writer at a time, so there the calls of a service process
queue for one thread (:class:`WriteBatcher`), which runs all the calls
waiting in one write transaction (``netbroker.db.engine.write_batch``),
each under a savepoint of its own, and answers them after its commit: a
transaction costs its locks, ``BEGIN IMMEDIATE`` and the commit, about as
much as the short write in it, and one thread does not fight the pool's
threads over the GIL.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import anyio
import anyio.to_thread
import sqlalchemy as sa
from fastapi import Request
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from dispatcher.core import (
    acquire_job,
    acquire_jobs,
    report_is_one_statement,
    update_job,
    update_jobs,
)
from netbroker.common.observability import DISPATCH_BATCH_CALLS
from netbroker.db.engine import (
    WriteBatchLost,
    create_autocommit_engine,
    release_held,
    write_batch,
)

__all__ = ["LOCK_TIMEOUT_MS", "STATEMENT_TIMEOUT_MS", "Batchers", "CallBatcher", "WriteBatcher",
           "acquire", "call", "close_dispatch_engine", "create_batchers", "create_dispatch_engine",
           "create_write_batcher", "report"]

log = logging.getLogger(__name__)

T = TypeVar("T")

LOCK_TIMEOUT_MS = 20  # a row a cycle holds: give up quickly, the thread pool can wait
STATEMENT_TIMEOUT_MS = 500
_CONNECT_TIMEOUT_S = 2
_TIMED_OUT = {"55P03", "57014"}  # lock_not_available, query_canceled


def create_dispatch_engine(engine: Engine) -> Engine | None:
    """The engine for calls run on the event loop: same database as ``engine``, a
    pool of 2, lock and statement timeouts, generic plans; None on SQLite.

    One loop runs one call at a time, so one connection per process is the
    need; the second is for a call that overlaps a disposal or a test's loop.
    No pre-ping (a round trip per call): after a database restart the first
    call fails (503, the pilot retries) and the pool reconnects.
    """
    if engine.dialect.name != "postgresql":
        return None
    return create_autocommit_engine(
        # Autocommit for good: only single statements run here (see ``call``), and
        # switching a connection in and out of it costs each call. The loop holds
        # its connection from call to call (``hold``); no reset on return either.
        engine.url, hold=True, pool_size=1, max_overflow=1, pool_timeout=_CONNECT_TIMEOUT_S,
        pool_reset_on_return=None,
        # Generic plans: a prepared statement is planned once, not at every call.
        # Left to itself (plan_cache_mode auto) PostgreSQL kept re-planning the
        # acquisition for its parameters, as much work as running it; its
        # generic plan is the same index read (tests/test_acquire_plan.py).
        connect_args={"connect_timeout": _CONNECT_TIMEOUT_S,
                      "options": f"-c lock_timeout={LOCK_TIMEOUT_MS}ms "
                                 f"-c statement_timeout={STATEMENT_TIMEOUT_MS}ms "
                                 "-c plan_cache_mode=force_generic_plan"})


class _Batches:
    """Calls queued on the event loop and run a batch at a time by one task.

    :meth:`_submit` queues an item and awaits its outcome; one drain task
    takes every item queued when it starts (up to :attr:`MAX_BATCH`) to
    :meth:`_run_batch`, which settles each item's future. Made inside the
    event loop that uses it; O(1) per item besides the batch's work.
    """

    MAX_BATCH = 64

    def __init__(self) -> None:
        self._queued: list[tuple[Any, asyncio.Future[Any]]] = []
        self._draining = False

    async def _submit(self, item: Any) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queued.append((item, future))
        if not self._draining:
            self._draining = True
            # Referenced, so that the loop's weak hold on the task is not its only one.
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        try:
            while self._queued:
                # One turn of the loop first: the requests it has ready (the
                # answers of the last batch bring the pilots' next calls all at
                # once) join this batch instead of waiting out a batch of one.
                await asyncio.sleep(0)
                batch = self._queued[:self.MAX_BATCH]
                del self._queued[:self.MAX_BATCH]
                try:
                    await self._run_batch(batch)
                except BaseException:  # cancelled (the loop is closing)
                    for _, future in batch:
                        future.cancel()
                    raise
        finally:
            self._draining = False

    async def _run_batch(self, batch: list[tuple[Any, asyncio.Future[Any]]]) -> None:
        raise NotImplementedError


class WriteBatcher(_Batches):
    """The dispatcher's SQLite writes of one service process, run in batches.

    :meth:`submit` queues ``fn(engine, *args)``; one batch at a time runs
    on a worker thread, every call queued when it starts (up to
    :attr:`MAX_BATCH`) in one write transaction, in the order they came.
    Each call's outcome, its value or its exception, is handed back only
    after the transaction commits; if the commit fails, every call of the
    batch gets that error and none of their writes happened. A caller that
    goes away (its request cancelled) does not stop its call: like a call
    already in the thread pool, it runs, and the watchdog deals with a job
    sent to a pilot that never heard of it. Made inside the event loop
    that uses it; O(1) per call besides the call.
    """

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine

    async def submit(self, fn: Callable[..., T], *args: Any) -> T:
        result: T = await self._submit((fn, args))
        return result

    async def _run_batch(self, batch: list[tuple[Any, asyncio.Future[Any]]]) -> None:
        try:
            outcomes = await anyio.to_thread.run_sync(self._run, [call for call, _ in batch])
        except Exception as exc:  # the transaction failed: no call happened
            outcomes = [exc] * len(batch)
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            _settle(future, outcome)

    def _run(self, calls: list[tuple[Callable[..., Any], tuple[Any, ...]]]) -> list[Any]:
        outcomes: list[Any] = []
        with write_batch(self.engine) as writes:
            for fn, args in calls:
                try:
                    outcomes.append(writes.run(fn, *args))
                except WriteBatchLost:
                    raise  # fails the whole batch
                except Exception as exc:
                    outcomes.append(exc)
        return outcomes


class CallBatcher(_Batches):
    """One kind of the dispatcher's calls on PostgreSQL, from one service process, run
    in batches: ``many(engine, calls)`` in one statement a batch.

    :meth:`submit` queues a call's arguments; one batch at a time runs on
    the event loop, through the dispatch engine: every call queued when it
    starts (up to :attr:`MAX_BATCH`), as ``many`` runs them (getJob's
    acquisitions: ``dispatcher.core.acquire_jobs``; the one-statement
    reports: ``update_jobs``), a lone call as ``one`` runs it. Under load
    the answers of one batch bring the pilots' next calls all at once, so
    a batch is as many calls as came in meanwhile, and each costs a share
    of one statement's round trip, start and wait on the database instead
    of all of them. A batch (or a call of it) that hit the lock or
    statement timeout is run again call by call in the thread pool on the
    service's engine, as :func:`call` does; any other error of the
    statement is every call's. Made inside the event loop that uses it;
    O(1) per call besides the statement.
    """

    def __init__(self, engine: Engine, fallback: Engine, one: Callable[..., Any],
                 many: Callable[[Engine, list[tuple[Any, ...]]], list[Any]]) -> None:
        super().__init__()
        self.engine, self.fallback, self.one, self.many = engine, fallback, one, many
        self._sizes = DISPATCH_BATCH_CALLS.labels(one.__name__)
        self._retries: set[asyncio.Task[None]] = set()  # held: the loop's hold is weak

    async def submit(self, *args: Any) -> Any:
        """What ``one(engine, *args)`` returns; raises what it raises."""
        return await self._submit(args)

    async def _run_batch(self, batch: list[tuple[Any, asyncio.Future[Any]]]) -> None:
        self._sizes.observe(len(batch))
        try:
            outcomes = self._run([args for args, _ in batch])
        except Exception as exc:
            outcomes = [exc] * len(batch)  # the statement failed: every call's error
        for (args, future), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Exception) and _timed_out(outcome):
                log.info("%s timed out on the event loop (%s); retrying in the thread "
                         "pool", self.one.__name__, getattr(outcome, "orig", outcome))
                self._retry(args, future)
            else:
                _settle(future, outcome)

    def _run(self, calls: list[tuple[Any, ...]]) -> list[Any]:
        if len(calls) > 1:
            return self.many(self.engine, calls)
        try:
            return [self.one(self.engine, *calls[0])]
        except Exception as exc:
            return [exc]

    def _retry(self, args: tuple[Any, ...], future: asyncio.Future[Any]) -> None:
        async def run() -> None:
            try:
                result = await run_in_threadpool(self.one, self.fallback, *args)
            except Exception as exc:
                _settle(future, exc)
                return
            _settle(future, result)

        task = asyncio.get_running_loop().create_task(run())
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)


def _timed_out(exc: BaseException) -> bool:
    """Whether ``exc`` is PostgreSQL's lock or statement timeout (nothing happened)."""
    return (isinstance(exc, sa.exc.OperationalError)
            and getattr(exc.orig, "sqlstate", None) in _TIMED_OUT)


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    """Give ``future`` its outcome: an exception is raised by it, anything else returned."""
    if future.done():  # cancelled meanwhile
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class Batchers(NamedTuple):
    """The batchers of one service process on PostgreSQL (:func:`create_batchers`)."""

    acquisitions: CallBatcher
    reports: CallBatcher


def create_batchers(engine: Engine, dispatch_engine: Engine | None) -> Batchers | None:
    """The batchers of getJob's acquisitions and of the one-statement reports on
    PostgreSQL, through its dispatch engine; None elsewhere. Made inside the event
    loop that uses them."""
    if dispatch_engine is None:
        return None
    return Batchers(CallBatcher(dispatch_engine, engine, acquire_job, acquire_jobs),
                    CallBatcher(dispatch_engine, engine, update_job, update_jobs))


async def acquire(request: Request, ask: Any, owner: str | None) -> dict[str, Any] | None:
    """``dispatcher.core.acquire_job`` for this ask: batched with the others of this
    process on PostgreSQL (:class:`CallBatcher`), else as :func:`call` runs it."""
    batchers: Batchers | None = getattr(request.app.state, "dispatch_batchers", None)
    if batchers is not None:
        job: dict[str, Any] | None = await batchers.acquisitions.submit(ask, owner)
        return job
    return await call(request, acquire_job, ask, owner)


async def report(request: Request, job_id: int, update: Any, owner: str | None
                 ) -> dict[str, Any]:
    """``dispatcher.core.update_job`` for this report: a one-statement report
    (``report_is_one_statement``) batched with the others of this process on
    PostgreSQL, else as :func:`call` runs it (inline when it is one statement)."""
    one_statement = report_is_one_statement(update)
    batchers: Batchers | None = getattr(request.app.state, "dispatch_batchers", None)
    if batchers is not None and one_statement:
        result: dict[str, Any] = await batchers.reports.submit(job_id, update, owner)
        return result
    return await call(request, update_job, job_id, update, owner, inline=one_statement)


def close_dispatch_engine(engine: Engine | None) -> None:
    """Give back the connection the loop holds and dispose of ``engine``; called on
    the loop that used it (the app's shutdown)."""
    if engine is not None:
        release_held(engine)
        engine.dispose()


def create_write_batcher(engine: Engine) -> WriteBatcher | None:
    """The batcher of the dispatcher's calls on SQLite; None elsewhere (the
    thread pool, as it is). Made inside the event loop that uses it."""
    return WriteBatcher(engine) if engine.dialect.name == "sqlite" else None


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
            if not _timed_out(exc):
                raise
            log.info("%s timed out on the event loop (%s); retrying in the thread pool",
                     getattr(fn, "__name__", fn), exc.orig)
    batcher: WriteBatcher | None = getattr(request.app.state, "dispatch_writers", None)
    if batcher is None:
        return await run_in_threadpool(fn, request.app.state.engine, *args)
    return await batcher.submit(fn, *args)

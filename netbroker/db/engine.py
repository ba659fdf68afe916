"""Engines: the one place that knows SQLite from PostgreSQL.

SQLite is the embedded default: a file in WAL mode, foreign keys on, a busy
timeout, ``synchronous=NORMAL``. Its Python driver opens transactions lazily
and on its own terms, so we take that over (the recipe from SQLAlchemy's
SQLite notes): the driver runs in autocommit mode and we emit ``BEGIN``
ourselves, which makes ``BEGIN IMMEDIATE`` possible where a writer must hold
the lock from its first statement (:func:`begin_immediate`).

PostgreSQL goes through psycopg 3 with a connection pool; its equivalent of
an immediate transaction is a row lock (``FOR UPDATE SKIP LOCKED``), chosen
by the statements themselves, not here.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url

try:
    import fcntl
except ImportError:  # not POSIX: writers meet the busy timeout instead
    fcntl = None  # type: ignore[assignment]

from netbroker.common.config import DatabaseSettings
from netbroker.db.prepared import NO_BEGIN, run_driver_sql

__all__ = ["WriteBatch", "WriteBatchLost", "atomic_write", "begin_immediate",
           "create_autocommit_engine", "create_db_engine", "database_key", "describe_url",
           "insert_for", "is_busy", "is_sqlite", "release_held", "retry_when_busy",
           "write_batch"]

log = logging.getLogger(__name__)

_IMMEDIATE = "netbroker_begin_immediate"
T = TypeVar("T")


def create_db_engine(settings: DatabaseSettings | str) -> Engine:
    """Create the engine for a database URL or a :class:`DatabaseSettings`.

    Parameters
    ----------
    settings : DatabaseSettings or str
        The settings, or a bare URL with default settings.

    Returns
    -------
    Engine
        For SQLite, every connection has WAL, foreign keys and the busy
        timeout set; for PostgreSQL, a pre-pinged pool of ``pool_size``.
    """
    if isinstance(settings, str):
        settings = DatabaseSettings(url=settings)
    url = make_url(settings.url)
    if url.get_backend_name() == "sqlite":
        engine = sa.create_engine(url, echo=settings.echo_sql)
        _configure_sqlite(engine, settings.sqlite_busy_timeout_ms)
        return engine
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return sa.create_engine(
        url,
        echo=settings.echo_sql,
        pool_size=settings.pool_size,
        max_overflow=settings.pool_size,
        pool_pre_ping=True,
    )


def is_sqlite(bind: Engine | Connection) -> bool:
    """True when ``bind`` talks to SQLite."""
    return bind.dialect.name == "sqlite"


def insert_for(bind: Engine | Connection, table: sa.Table) -> Any:
    """The dialect's INSERT into ``table``, the one with ``ON CONFLICT`` (SQLite >=
    3.24 and PostgreSQL spell it alike; SQLAlchemy has a construct for each)."""
    from sqlalchemy.dialects import postgresql, sqlite

    return (sqlite.insert(table) if is_sqlite(bind) else postgresql.insert(table))


# SQLite's primary result codes for "another connection holds the lock".
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6


def is_busy(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's "database is locked" (or busy): a writer that met
    another's lock past the busy timeout, or a read transaction that may not
    become a write one because the database changed since it began."""
    orig = getattr(exc, "orig", exc)
    code = getattr(orig, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)


def retry_when_busy(engine: Engine, fn: Callable[[], T], within_s: float | None = None) -> T:
    """``fn()``, called again while it fails with :func:`is_busy`, for up to ``within_s``
    seconds after the first failure (default: the engine's busy timeout);
    then its error.

    For short writes that must not fail on a busy SQLite file (a cycle's
    lease and its outcome): ``fn`` must be a whole transaction, safe to run
    again. Some busy errors come at once, without the busy handler's wait (a
    read transaction that may not become a write one); others after it.
    PostgreSQL errors are never retried here.
    """
    if within_s is None:
        within_s = _BUSY_TIMEOUTS_MS.get(engine, 0) / 1000
    deadline, pause = None, 0.01
    while True:
        try:
            return fn()
        except sa.exc.OperationalError as exc:
            if not is_sqlite(engine) or not is_busy(exc):
                raise
            deadline = deadline or time.monotonic() + within_s
            if time.monotonic() >= deadline:
                raise
            log.debug("database busy, trying again in %.2f s", pause)
            time.sleep(pause)
            pause = min(2 * pause, 0.5)


@contextmanager
def begin_immediate(engine: Engine) -> Iterator[Connection]:
    """Open a write transaction that holds the database's write lock at once.

    On SQLite this is ``BEGIN IMMEDIATE``: two such transactions never both
    read and then write, so a read-then-claim is atomic; the threads of one
    process take turns first on a lock of their own. On PostgreSQL it is an
    ordinary transaction; row locks do the same job there.
    """
    if not is_sqlite(engine):
        if _autocommit(engine):
            raise RuntimeError("begin_immediate on an engine in autocommit mode: "
                               "its statements would not make one transaction")
        with engine.begin() as conn:
            yield conn
        return
    batch: WriteBatch | None = getattr(_BATCHES, "current", None)
    if batch is not None and batch.engine is engine:
        # Inside this thread's shared transaction (write_batch), under the
        # savepoint WriteBatch.run set for this write.
        yield batch.conn
        return
    # Writers queue instead of meeting SQLite's busy handler, which sleeps in
    # growing steps (1, 2, 5, 10 ms...) and leaves the lock idle meanwhile: the
    # threads of one process on a Python lock, then the processes of one
    # database file (service workers, the CLI, cycles) on an flock beside it,
    # which the kernel hands over the moment it is released.
    with _writer_lock(engine), _file_lock(engine), engine.connect() as conn:
        conn = conn.execution_options(**{_IMMEDIATE: True})
        with conn.begin():
            yield conn


class WriteBatch:
    """Writes run in turn in one SQLite write transaction: each a savepoint of it.

    Made by :func:`write_batch`. :meth:`run` calls ``fn(engine, *args)``;
    the :func:`begin_immediate` (and :func:`atomic_write`) that ``fn`` opens
    on this engine, in this thread, is the batch's connection, under a
    savepoint of its own: a write that raises is undone alone, the others
    stand. Nothing is durable, nor seen by other connections, until the
    batch commits; so a caller may learn of its write only after that.
    """

    def __init__(self, engine: Engine, conn: Connection) -> None:
        self.engine, self.conn = engine, conn
        self._raw = conn.connection.dbapi_connection  # the batch's, for its whole life

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(engine, *args)`` under a savepoint; its value, or its exception
        after its writes are undone. Raises :class:`WriteBatchLost` when the
        batch's transaction is gone (SQLite rolls it all back on some errors:
        a full disk, an I/O error), which must end the batch."""
        # Plain SQL on the driver's cursor (netbroker.db.prepared), not
        # begin_nested(): SQLAlchemy's savepoint objects cost as much as the write.
        self._check()
        run_driver_sql(self.conn, "SAVEPOINT netbroker_write")
        try:
            result = fn(self.engine, *args)
        except BaseException as exc:
            self._check(exc)
            run_driver_sql(self.conn, "ROLLBACK TO netbroker_write")
            run_driver_sql(self.conn, "RELEASE netbroker_write")
            raise
        self._check()
        run_driver_sql(self.conn, "RELEASE netbroker_write")
        return result

    def _check(self, cause: BaseException | None = None) -> None:
        # Without its transaction the next statements would each commit alone.
        if not self._raw.in_transaction:  # type: ignore[union-attr]
            raise WriteBatchLost("the write batch's transaction was rolled back") from cause


class WriteBatchLost(RuntimeError):
    """A write batch's transaction ended under it: none of its writes happened."""


@contextmanager
def write_batch(engine: Engine) -> Iterator[WriteBatch]:
    """One SQLite write transaction for several writes in turn (group commit).

    The locks, ``BEGIN IMMEDIATE`` and the commit of :func:`begin_immediate`,
    paid once for all the writes :meth:`WriteBatch.run` runs in it: on the
    dispatcher's load that is most of a short write's cost. The writes of a
    batch are committed together when the block ends, or, if it raises,
    none of them is. SQLite only: PostgreSQL's writers need no turns.
    """
    if not is_sqlite(engine):
        raise RuntimeError("write_batch is for SQLite, whose writers take turns")
    if getattr(_BATCHES, "current", None) is not None:
        raise RuntimeError("write_batch inside a write_batch of this thread")
    with begin_immediate(engine) as conn:
        _BATCHES.current = WriteBatch(engine, conn)
        try:
            yield _BATCHES.current
        finally:
            _BATCHES.current = None


# The WriteBatch each thread is running, if any.
_BATCHES = threading.local()


@contextmanager
def atomic_write(engine: Engine) -> Iterator[Connection]:
    """A connection for one write that must be atomic, in the fewest round trips.

    On PostgreSQL the write must be ONE statement: it runs in autocommit mode,
    where a statement is its own transaction, so there is no BEGIN and no
    COMMIT to wait for (the dispatcher's hot path: ``JobDB.acquire`` and
    ``JobDB.set_status`` are one statement there). On SQLite it is
    :func:`begin_immediate`, where the same write may take two statements.
    """
    if is_sqlite(engine):
        with begin_immediate(engine) as conn:
            yield conn
        return
    if engine in _HOLDING_ENGINES:
        conn = _held_connection(engine)
        try:
            yield conn
        finally:
            conn.rollback()  # ends SQLAlchemy's bookkeeping; autocommit left nothing open
        return
    with engine.connect() as conn:
        if _autocommit(engine):
            yield conn
        else:
            yield conn.execution_options(isolation_level="AUTOCOMMIT")


def create_autocommit_engine(url: str | sa.URL, hold: bool = False, **options: Any) -> Engine:
    """A PostgreSQL engine whose connections are in autocommit mode for good: for
    single statements only (:func:`atomic_write` uses them as they are;
    :func:`begin_immediate` refuses it). ``options`` go to ``create_engine``.

    With ``hold``, the connection a thread's :func:`atomic_write` takes stays
    checked out for that thread's next one, until :func:`release_held`: for
    the dispatcher's calls on the event loop, one thread making one short
    call after another, where checking a connection out of the pool and in
    again cost as much as the rest of the call's Python. A connection the
    database dropped is replaced at the next call, as the pool would.
    """
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", **options)
    _AUTOCOMMIT_ENGINES.add(engine)
    if hold:
        _HOLDING_ENGINES.add(engine)
    return engine


def release_held(engine: Engine) -> None:
    """Close the connection this thread holds on ``engine`` (``hold``), if any."""
    held = _HELD.__dict__.get("connections", {})
    entry = held.pop(id(engine), None)
    if entry is not None:
        entry[1].close()


def _held_connection(engine: Engine) -> Connection:
    held: dict[int, tuple[Engine, Connection]] = _HELD.__dict__.setdefault("connections", {})
    entry = held.get(id(engine))
    if entry is None or entry[0] is not engine or entry[1].closed:
        entry = held[id(engine)] = (engine, engine.connect().execution_options(
            **{NO_BEGIN: True}))
    return entry[1]


def _autocommit(engine: Engine) -> bool:
    return engine in _AUTOCOMMIT_ENGINES


_WRITER_LOCKS: dict[int, threading.Lock] = {}
_DATABASE_KEYS: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()
_AUTOCOMMIT_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()
_HOLDING_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()
# Per thread: id(engine) -> (engine, the connection held on it).
_HELD = threading.local()
_BUSY_TIMEOUTS_MS: weakref.WeakKeyDictionary[Engine, int] = weakref.WeakKeyDictionary()


def database_key(engine: Engine) -> str:
    """The engine's full URL as text: the key of the per-database caches (tokens,
    settings overrides, queues), remembered per engine because rendering a URL
    costs more than the cache look-up it serves."""
    key = _DATABASE_KEYS.get(engine)
    if key is None:
        key = _DATABASE_KEYS[engine] = engine.url.render_as_string(hide_password=False)
    return key


def _database_file(engine: Engine) -> str | None:
    """The SQLite database's file, absolute; None for an in-memory database."""
    path = engine.url.database
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return os.path.abspath(path)


def _writer_lock(engine: Engine) -> threading.Lock:
    # Per engine, not per file: a thread that writes through two engines at once
    # must meet the busy timeout's error, not wait on itself. (Two engines of
    # one process share the flock below, so between them the busy handler
    # still decides, as it did before there was an flock.)
    return _WRITER_LOCKS.setdefault(id(engine), threading.Lock())


# The lock file of each database file, opened once per process: flock belongs
# to an open file, so a descriptor inherited over fork would be shared, not ours.
_LOCK_FILES: dict[tuple[int, str], int] = {}


@contextmanager
def _file_lock(engine: Engine) -> Iterator[None]:
    """Hold ``<database>-writer.lock`` exclusively (flock) for a SQLite file database.

    Only the writers of :func:`begin_immediate` take it (other writers still
    meet the busy timeout); the caller holds the process's Python lock, so
    one thread per process asks. Nothing for an in-memory database.
    """
    path = _database_file(engine)
    if path is None or fcntl is None:
        yield
        return
    key = (os.getpid(), path)
    fd = _LOCK_FILES.get(key)
    if fd is None:
        fd = _LOCK_FILES[key] = os.open(f"{key[1]}-writer.lock", os.O_RDWR | os.O_CREAT,
                                        0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)  # blocks in the kernel, without the GIL
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def describe_url(url: str) -> str:
    """The URL with any password hidden, for logs and messages."""
    return make_url(url).render_as_string(hide_password=True)


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    _BUSY_TIMEOUTS_MS[engine] = busy_timeout_ms
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cur.execute("PRAGMA foreign_keys = ON")
        if engine.url.database not in (None, "", ":memory:"):
            cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        # 64 MiB of page cache (the default is 2 MiB): metric ingestion updates
        # B-trees far larger than that, and each miss is a read.
        cur.execute("PRAGMA cache_size = -65536")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

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
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url

from netbroker.config import DatabaseSettings

__all__ = ["begin_immediate", "create_db_engine", "describe_url", "is_sqlite"]

log = logging.getLogger(__name__)

_IMMEDIATE = "netbroker_begin_immediate"


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


@contextmanager
def begin_immediate(engine: Engine) -> Iterator[Connection]:
    """Open a write transaction that holds the database's write lock at once.

    On SQLite this is ``BEGIN IMMEDIATE``: two such transactions never both
    read and then write, so a read-then-claim is atomic; the threads of one
    process take turns first on a lock of their own. On PostgreSQL it is an
    ordinary transaction; row locks do the same job there.
    """
    if not is_sqlite(engine):
        with engine.begin() as conn:
            yield conn
        return
    # Threads of one process queue on a Python lock instead of SQLite's busy
    # handler, which sleeps in growing steps and wastes the lock under load.
    with _writer_lock(engine), engine.connect() as conn:
        conn = conn.execution_options(**{_IMMEDIATE: True})
        with conn.begin():
            yield conn


_WRITER_LOCKS: dict[int, threading.Lock] = {}


def _writer_lock(engine: Engine) -> threading.Lock:
    return _WRITER_LOCKS.setdefault(id(engine), threading.Lock())


def describe_url(url: str) -> str:
    """The URL with any password hidden, for logs and messages."""
    return make_url(url).render_as_string(hide_password=True)


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
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

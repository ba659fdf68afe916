"""Statements compiled once and run on the driver's own cursor: the dispatcher's few per job.

SQLAlchemy's execution around a statement (the cache key, the compiled
cache, the execution context, the result object) costs ~20 us, as much as
SQLite takes to run one of the dispatcher's statements, and a job cycle runs
about eight. :class:`PreparedStatement` compiles a Core statement once for a
dialect, with the dialect's own bind and result processors for its
parameters and columns, so the rows and the stored values are those
``Connection.execute`` gives and stores (``tests/test_prepared.py`` checks
it on both backends); running it is the driver's ``execute`` and a loop.

What it keeps of SQLAlchemy's conduct: the connection's transaction is
begun first if it was not (as ``execute`` autobegins), a driver error is
raised as the same ``sqlalchemy.exc.DBAPIError`` subclass, and an error that
means the connection is gone invalidates it, so the pool does not hand it
out again (after a PostgreSQL restart, say). What it gives up: engine
events around each statement (netbroker has none there) and statement
logging with ``echo``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

__all__ = ["NO_BEGIN", "PreparedStatement", "prepared", "run_driver_sql", "run_many_raw"]

Processor = Callable[[Any], Any] | None


class PreparedStatement:
    """A Core statement compiled for ``dialect``, run with :meth:`rows` / :meth:`run_many`.

    Parameters are given by their bind names (``sa.bindparam("p_job")``);
    binds with values in the statement (``sa.literal``) keep them. Statements
    whose SQL depends on the values (expanding ``IN``, literal execution)
    are refused: their text is not fixed.
    """

    def __init__(self, stmt: sa.Executable, dialect: Dialect) -> None:
        compiled = stmt.compile(dialect=dialect)  # type: ignore[attr-defined]  # a ClauseElement
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError("a statement with expanding or literal-execute parameters "
                             "has no fixed SQL to prepare")
        self.sql = str(compiled)
        self.dialect = dialect
        self._defaults = dict(compiled.params)
        self._required = [name for name in self._defaults if compiled.binds[name].required]
        # Positional (SQLite's qmark): the binds in their order, a name maybe
        # twice; named (psycopg's pyformat): each name once.
        self._order: list[str] | None = (list(compiled.positiontup or ())
                                          if compiled.positional else None)
        self._binds: dict[str, Processor] = {
            name: compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in self._defaults}
        self._columns = list(getattr(stmt, "exported_columns", ()) or ())
        self._keys = [c.key for c in self._columns]
        # Made at the first run: a dialect's processor may depend on the type
        # the driver reports for the column (PostgreSQL's numerics do).
        self._results: list[Processor] | None = None

    def _arguments(self, params: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        # As Connection.execute: names the statement does not use are ignored.
        missing = [name for name in self._required if name not in params]
        if missing:
            raise sa.exc.InvalidRequestError(
                f"a value is required for bind parameter(s) {missing}")
        values = {}
        for name, process in self._binds.items():
            value = params[name] if name in params else self._defaults[name]
            values[name] = process(value) if process is not None else value
        if self._order is None:
            return values
        return tuple(values[name] for name in self._order)

    def rows(self, conn: Connection, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Run the statement once on ``conn``; its rows (RETURNING, SELECT) as dicts."""
        args = self._arguments(params)
        with _driver_cursor(conn, self.sql, args) as cursor:
            cursor.execute(self.sql, args)
            fetched = cursor.fetchall() if self._keys else []
            if self._results is None and cursor.description is not None:
                self._results = [
                    c.type.dialect_impl(self.dialect).result_processor(self.dialect, d[1])
                    for c, d in zip(self._columns, cursor.description, strict=True)]
        keys, results = self._keys, self._results or [None] * len(self._keys)
        return [{key: (value if process is None else process(value))
                 for key, process, value in zip(keys, results, row, strict=True)}
                for row in fetched]

    def run_many(self, conn: Connection, params: Sequence[Mapping[str, Any]]) -> None:
        """Run the statement once per parameter set (the driver's ``executemany``)."""
        if not params:
            return
        args = [self._arguments(p) for p in params]
        with _driver_cursor(conn, self.sql, args) as cursor:
            cursor.executemany(self.sql, args)


def run_many_raw(conn: Connection, sql: str, args: Iterable[Sequence[Any]]) -> None:
    """Run ``sql`` once per tuple of ``args``, values as the driver takes them (the
    driver's ``executemany``; ``netbroker.db.bulk`` processes them first). ``args``
    may be an iterator, consumed as the driver runs."""
    if not isinstance(args, Sequence) or args:
        with _driver_cursor(conn, sql, args) as cursor:
            cursor.executemany(sql, args)


@lru_cache(maxsize=512)
def prepared(stmt: sa.Executable, dialect: Dialect) -> PreparedStatement:
    """The :class:`PreparedStatement` of a statement object built once (cached)."""
    return PreparedStatement(stmt, dialect)


def run_driver_sql(conn: Connection, sql: str) -> None:
    """Run a statement without parameters or rows (``SAVEPOINT x``) on the driver's cursor."""
    with _driver_cursor(conn, sql, ()) as cursor:
        cursor.execute(sql)


# An execution option: the connection's statements each commit alone (the driver's
# autocommit), so there is no transaction to begin (SQLAlchemy's bookkeeping of one
# costs a short call as much as the rest of its Python).
NO_BEGIN = "netbroker_no_begin"


@contextmanager
def _driver_cursor(conn: Connection, sql: str, args: Any) -> Iterator[Any]:
    """A cursor of ``conn``'s driver connection, its transaction begun first (as
    ``Connection.execute`` autobegins; not with :data:`NO_BEGIN`), closed after; a
    driver error in the block is raised as SQLAlchemy's (:func:`_translated`), ``sql``
    and ``args`` in it."""
    if not conn.in_transaction() and not conn.get_execution_options().get(NO_BEGIN):
        conn.begin()
    raw: Any = conn.connection.dbapi_connection  # a live connection: not None here
    reused = conn.dialect.name == "postgresql"
    cursor = _cursor_of(raw) if reused else raw.cursor()
    try:
        yield cursor
    except conn.dialect.loaded_dbapi.Error as exc:
        raise _translated(conn, raw, cursor, exc, sql, args) from exc
    finally:
        if not reused:
            with suppress(Exception):  # the connection may be gone (invalidated just now)
                cursor.close()


# psycopg: one cursor per connection, reused, with results in the binary format.
# A new cursor copies the connection's adapters, and text results are parsed
# value by value: together about a third of the driver's work for a statement
# of the dispatcher's. The values are the same Python objects either way.
_CURSORS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _cursor_of(raw: Any) -> Any:
    cursor = _CURSORS.get(raw)
    if cursor is None or cursor.closed:
        cursor = _CURSORS[raw] = raw.cursor(binary=True)
    return cursor


def _translated(conn: Connection, raw: Any, cursor: Any, exc: Any, sql: str,
                args: Any) -> sa.exc.StatementError:
    """The driver's error as SQLAlchemy raises it; a lost connection is invalidated."""
    gone = conn.dialect.is_disconnect(exc, raw, cursor)
    if gone:
        conn.invalidate(exc)
    return sa.exc.DBAPIError.instance(sql, args, exc, conn.dialect.loaded_dbapi.Error,
                                      connection_invalidated=gone, dialect=conn.dialect)

"""Rows written in bulk: ids taken before the insert, then one statement per chunk.

Brokerage stores thousands of jobs a pass, with a state-log row and three
file rows each. Through ``Connection.execute(insert, rows)`` SQLAlchemy
builds every row's parameters one by one (most of the pass's time, more
than the database's), and ``RETURNING`` the new ids costs insert-many
batches of their own. Here the values are processed per column, by the
column type's own bind processor (so the stored values are those
``Connection.execute`` stores, ``tests/test_bulk.py`` checks it on both
backends), and sent as:

- PostgreSQL: ``COPY ... FROM STDIN``, the rows written by the driver
  (psycopg's C row formatting), one command whatever their number;
- SQLite: the driver's ``executemany`` of one prepared ``INSERT``.

Ids a caller needs before the insert (jobs are referenced by their files)
come from :func:`allocate_ids`: the table's sequence on PostgreSQL, the
next integers past the largest on SQLite, whose caller holds the write
lock (``begin_immediate``), so no other writer takes them meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from netbroker.db.prepared import _driver_cursor, run_many_raw

__all__ = ["allocate_ids", "insert_rows"]

def allocate_ids(conn: Connection, table: sa.Table, n: int) -> list[int]:
    """``n`` new ids for ``table``'s integer primary key ``id``, in increasing order.

    On SQLite the caller must hold the write lock until it has inserted them.
    """
    if n <= 0:
        return []
    if conn.dialect.name == "postgresql":
        sequence = sa.func.pg_get_serial_sequence(table.name, "id")
        stmt = sa.select(sa.func.nextval(sequence)).select_from(
            sa.func.generate_series(1, n))
        return sorted(conn.execute(stmt).scalars())
    first = conn.execute(sa.select(sa.func.coalesce(sa.func.max(table.c.id), 0))).scalar_one()
    return list(range(first + 1, first + 1 + n))


def insert_rows(conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (dicts of the same keys, column names of ``table``) in bulk.

    A column the rows leave out gets its server default. O(r * c) in Python for
    r rows of c columns, then one COPY (PostgreSQL) or one executemany (SQLite) per
    set of columns.
    """
    if not rows:
        return
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in rows:  # rows that leave out different columns: one insert each
        groups.setdefault(tuple(row), []).append(row)
    for names, group in groups.items():
        if conn.dialect.name == "postgresql":
            _copy(conn, table, list(names), group)
            continue
        compiled = sa.insert(table).values(
            {name: sa.bindparam(name) for name in names}).compile(dialect=conn.dialect)
        order = list(compiled.positiontup or names)
        columns = [_processed(conn, table.c[name], [r[name] for r in group])
                   for name in order]
        run_many_raw(conn, str(compiled), list(zip(*columns, strict=True)))


def _copy(conn: Connection, table: sa.Table, names: list[str],
          rows: Sequence[Mapping[str, Any]]) -> None:
    """PostgreSQL's ``COPY ... FROM STDIN`` of ``rows``, through the driver (psycopg
    writes the rows in C), in the connection's transaction."""
    quote = conn.dialect.identifier_preparer
    sql = (f"COPY {quote.format_table(table)} "  # names from the schema, quoted
           f"({', '.join(quote.quote(name) for name in names)}) FROM STDIN")
    columns = [_processed(conn, table.c[name], [r[name] for r in rows]) for name in names]
    with _driver_cursor(conn, sql, ()) as cursor, cursor.copy(sql) as copy:
        for row in zip(*columns, strict=True):
            copy.write_row(row)


def _processed(conn: Connection, column: sa.Column[Any], values: list[Any]) -> list[Any]:
    """``values`` as ``column``'s type binds them on this dialect; a value repeated
    from the row before (a pass's one timestamp, a task's dataset) processed once."""
    process: Callable[[Any], Any] | None = column.type.dialect_impl(
        conn.dialect).bind_processor(conn.dialect)
    if process is None:
        return values
    out, last, done = [], object(), None
    for value in values:
        if value is not last:
            last, done = value, process(value)
        out.append(done)
    return out

"""Rows written in bulk: ids taken before the insert, then one statement per table.

Brokerage stores thousands of jobs a pass, with a state-log row and three
file rows each. Through ``Connection.execute(insert, rows)`` SQLAlchemy
builds every row's parameters one by one (most of the pass's time, more
than the database's), and ``RETURNING`` the new ids costs insert-many
batches of their own. Here the rows come as columns (:func:`insert_columns`;
:func:`insert_rows` turns dicts into them), in chunks a caller may build
while the statement runs, and the values are processed per column, by the
column type's own bind processor (so the stored values are those
``Connection.execute`` stores, ``tests/test_bulk.py`` checks it on both
backends), and sent as:

- PostgreSQL: ``COPY ... FROM STDIN``, the rows written by the driver
  (psycopg's C row formatting) as they come, one command whatever their
  number, so PostgreSQL stores a chunk while the caller builds the next;
- SQLite: the driver's ``executemany`` of one prepared ``INSERT``.

Ids a caller needs before the insert (jobs are referenced by their files)
come from :func:`allocate_ids`: the table's sequence on PostgreSQL, the
next integers past the largest on SQLite, whose caller holds the write
lock (``begin_immediate``), so no other writer takes them meanwhile.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from netbroker.db.prepared import _driver_cursor, run_many_raw

__all__ = ["allocate_ids", "insert_columns", "insert_rows"]


def allocate_ids(conn: Connection, table: sa.Table, n: int) -> list[int]:
    """``n`` new ids for ``table``'s integer primary key ``id``, in increasing order.

    On SQLite the caller must hold the write lock until it has inserted them.
    """
    if n <= 0:
        return []
    if conn.dialect.name == "postgresql":
        sequence = sa.func.pg_get_serial_sequence(table.name, "id")
        # One row back (an array), not n: the values are in the order taken.
        stmt = sa.select(sa.func.array_agg(sa.func.nextval(sequence))).select_from(
            sa.func.generate_series(1, n))
        return sorted(conn.execute(stmt).scalar_one())
    first = conn.execute(sa.select(sa.func.coalesce(sa.func.max(table.c.id), 0))).scalar_one()
    return list(range(first + 1, first + 1 + n))


def insert_rows(conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (dicts of the same keys, column names of ``table``) in bulk.

    A column the rows leave out gets its server default. O(r * c) in Python for
    r rows of c columns, then one COPY (PostgreSQL) or one executemany (SQLite) per
    set of columns.
    """
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in rows:  # rows that leave out different columns: one insert each
        groups.setdefault(tuple(row), []).append(row)
    for names, group in groups.items():
        insert_columns(conn, table, [{name: [r[name] for r in group] for name in names}])


def insert_columns(conn: Connection, table: sa.Table,
                   chunks: Iterable[Mapping[str, Sequence[Any]]]) -> int:
    """Insert rows given as chunks of columns (column name -> one value per row, every
    chunk the same names, those of its first); returns the number of rows.

    The chunks are consumed as the rows are sent: one COPY (PostgreSQL) or one
    executemany (SQLite) for all of them, so a caller that builds each chunk when
    it is asked for (a generator) builds the next while PostgreSQL stores the
    last (the COPY streams). A column left out gets its server default. O(r * c)
    in Python for r rows of c columns.

    Raises ``ValueError`` if a chunk names other columns than the first, or its
    columns differ in length.
    """
    it = iter(chunks)
    first = next(it, None)
    if first is None:
        return 0
    names = list(first)
    count = 0

    def rows(order: list[str]) -> Iterator[tuple[Any, ...]]:
        nonlocal count
        for chunk in itertools.chain([first], it):
            if list(chunk) != names:
                raise ValueError(f"{table.name}: a chunk of columns {sorted(chunk)} "
                                 f"after one of {sorted(names)}")
            columns = [_processed(conn, table.c[name], _listed(chunk[name])) for name in order]
            if len({len(c) for c in columns}) > 1:
                raise ValueError(f"{table.name}: the columns of a chunk differ in length")
            count += len(columns[0])
            yield from zip(*columns, strict=True)

    if conn.dialect.name == "postgresql":
        quote = conn.dialect.identifier_preparer
        sql = (f"COPY {quote.format_table(table)} "  # names from the schema, quoted
               f"({', '.join(quote.quote(name) for name in names)}) FROM STDIN")
        with _driver_cursor(conn, sql, ()) as cursor, cursor.copy(sql) as copy:
            for row in rows(names):  # psycopg formats each row in C
                copy.write_row(row)
        return count
    compiled = sa.insert(table).values(
        {name: sa.bindparam(name) for name in names}).compile(dialect=conn.dialect)
    run_many_raw(conn, str(compiled), rows(list(compiled.positiontup or names)))
    return count


def _listed(values: Sequence[Any]) -> list[Any]:
    return values if isinstance(values, list) else list(values)


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

"""SQL functions that each backend spells its own way, as SQLAlchemy function elements.

The bulk statements of the cycles compute in the database what would
otherwise travel row by row to Python; where SQLite and PostgreSQL differ,
the difference lives here, once:

- :class:`seconds_since`: the seconds from a
  :class:`netbroker.db.schema.UTCDateTime` column to a given time, exact to
  the microsecond (PostgreSQL subtracts the times; SQLite, which stores
  naive UTC text, subtracts their whole seconds and their microsecond
  digits, where julian days would be off by tens of microseconds);
- :class:`clamp`: a number held between two bounds, NULL as the lower
  (PostgreSQL's ``GREATEST`` and ``LEAST``, SQLite's two-argument ``max``
  and ``min``), its argument evaluated once;
- :class:`floor_nonnegative`: the floor of a number known not to be
  negative, as an integer (PostgreSQL's ``FLOOR``; SQLite's integer cast,
  which truncates, the same there, without its optional math functions).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles

__all__ = ["clamp", "floor_nonnegative", "seconds_since"]


class seconds_since(sa.sql.functions.GenericFunction[float]):
    """``seconds_since(column, now)``: seconds from ``column`` to ``now`` (both UTC
    times; ``now`` a bind of :class:`netbroker.db.schema.UTCDateTime`), NULL for NULL."""

    type = sa.Float()
    inherit_cache = True


class clamp(sa.sql.functions.GenericFunction[float]):
    """``clamp(x, low, high)``: ``x`` within ``[low, high]``; ``low`` when ``x`` is NULL."""

    type = sa.Float()
    inherit_cache = True


class floor_nonnegative(sa.sql.functions.GenericFunction[int]):
    """``floor_nonnegative(x)``: the floor of ``x >= 0`` as an integer."""

    type = sa.Integer()
    inherit_cache = True


@compiles(seconds_since, "postgresql")
def _seconds_since_postgresql(element: seconds_since, compiler: Any, **kw: Any) -> str:
    then, now = (compiler.process(c, **kw) for c in element.clauses)
    return f"date_part('epoch', {now} - {then})"


@compiles(seconds_since, "sqlite")
def _seconds_since_sqlite(element: seconds_since, compiler: Any, **kw: Any) -> str:
    # Stored as 'YYYY-MM-DD HH:MM:SS.ffffff': whole seconds, then the six digits.
    then, now = (compiler.process(c, **kw) for c in element.clauses)
    return (f"(((CAST(strftime('%s', {now}) AS INTEGER) - CAST(strftime('%s', {then}) "
            f"AS INTEGER)) * 1000000 + CAST(substr({now}, 21, 6) AS INTEGER) "
            f"- CAST(substr({then}, 21, 6) AS INTEGER)) / 1000000.0)")


@compiles(floor_nonnegative, "postgresql")
def _floor_postgresql(element: floor_nonnegative, compiler: Any, **kw: Any) -> str:
    return f"CAST(FLOOR({compiler.process(element.clauses, **kw)}) AS INTEGER)"


@compiles(floor_nonnegative, "sqlite")
def _floor_sqlite(element: floor_nonnegative, compiler: Any, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS INTEGER)"


@compiles(clamp, "postgresql")
def _clamp_postgresql(element: clamp, compiler: Any, **kw: Any) -> str:
    x, low, high = (compiler.process(c, **kw) for c in element.clauses)
    return f"LEAST(GREATEST({x}, {low}), {high})"  # GREATEST skips a NULL


@compiles(clamp, "sqlite")
def _clamp_sqlite(element: clamp, compiler: Any, **kw: Any) -> str:
    x, low, high = (compiler.process(c, **kw) for c in element.clauses)
    return f"min(max(coalesce({x}, {low}), {low}), {high})"

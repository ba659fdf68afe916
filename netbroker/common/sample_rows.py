"""Sample rows and their bucket rows: plain tuples, no database.

What an ingestion does to its rows before they are written (the idempotency
key, the sort, the fold into time buckets), kept free of SQLAlchemy and
numpy so the parsing process of a large batch (``collectors.parsing``)
starts in a fraction of the time: it imports this, not ``netbroker.db``.
``netbroker.db.metrics`` writes the rows.

For a SQLite database the rows travel as a :class:`StagedChunk`: a small
in-memory SQLite database (stdlib ``sqlite3``) holding them and their
buckets, which the writer attaches and copies with two ``INSERT ... SELECT``
(``MetricsDB.add_chunk``), where binding every value of every row through
``executemany`` cost it twice as much.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from hashlib import blake2b as _blake2b
from operator import itemgetter
from typing import Any, NamedTuple

__all__ = ["BUCKET_COLUMNS", "BUCKET_KEY", "SAMPLE_COLUMNS", "STAGING_LAYOUT", "STAGING_TABLES",
           "SampleChunk", "StagedChunk", "fold_into_buckets", "origin_key", "prepare_chunk",
           "stage_chunk"]

# The order of a sample row tuple.
SAMPLE_COLUMNS = ("origin_key", "source", "origin_id", "src_site_id", "dst_site_id", "kind",
                  "value", "ts_s", "weight", "source_unit")
# A bucket row tuple: its key (the primary key's columns, in the key's order, so
# plain tuple order is key order), then its sums.
BUCKET_KEY = ("kind", "source", "bucket_start_s", "src_site_id", "dst_site_id")
BUCKET_COLUMNS = (*BUCKET_KEY, "count", "value_sum", "weight_sum", "weighted_value_sum",
                  "last_ts_s")

_ORIGIN_KEY = itemgetter(0)

# The SQLite types of the columns, as the tables of netbroker.db.schema have
# them (INTEGER, REAL or TEXT affinity), so a staged value is stored as the
# table would store it.
_COLUMN_TYPES = {
    "origin_key": "INTEGER", "source": "TEXT", "origin_id": "TEXT", "src_site_id": "INTEGER",
    "dst_site_id": "INTEGER", "kind": "TEXT", "value": "REAL", "ts_s": "REAL", "weight": "REAL",
    "source_unit": "TEXT", "bucket_start_s": "INTEGER", "count": "INTEGER", "value_sum": "REAL",
    "weight_sum": "REAL", "weighted_value_sum": "REAL", "last_ts_s": "REAL",
}
# The staged database's tables and their columns: ``samples`` in
# SAMPLE_COLUMNS order, ``buckets`` in BUCKET_COLUMNS order.
STAGING_TABLES = {"samples": SAMPLE_COLUMNS, "buckets": BUCKET_COLUMNS}


def origin_key(source: str, origin_id: str) -> int:
    """The 64-bit idempotency key of a sample: a hash of its source and origin id.

    >>> origin_key("fts", "t1:throughput") == origin_key("fts", "t1:throughput")
    True
    >>> origin_key("fts", "t1") == origin_key("xrootd", "t1")
    False
    """
    # The hash of the source's prefix, copied: a third cheaper than hashing
    # both parts per sample, with the same digest.
    state = _PREFIX_STATES.get(source)
    if state is None:
        state = _PREFIX_STATES[source] = _blake2b(f"{source}\x00".encode(), digest_size=8)
    state = state.copy()
    state.update(origin_id.encode())
    return int.from_bytes(state.digest(), "big", signed=True)


_PREFIX_STATES: dict[str, Any] = {}



def fold_into_buckets(rows: Sequence[tuple[Any, ...]], bucket_s: int) -> list[tuple[Any, ...]]:
    """Sum sample rows into bucket rows keyed by (src, dst, source, kind, bucket start).

    Parameters
    ----------
    rows : sequence of tuples
        Sample rows in :data:`SAMPLE_COLUMNS` order.
    bucket_s : int
        Bucket width in seconds; a sample at ``ts_s`` falls in the bucket
        starting at ``floor(ts_s / bucket_s) * bucket_s``.

    Returns
    -------
    list of tuple
        One row per bucket touched: kind, source, bucket start, src, dst
        (the table's key, in its order), count, value_sum, weight_sum,
        weighted_value_sum, last_ts_s.

    Notes
    -----
    O(n) in the rows, one dict update each.

    Examples
    --------
    >>> rows = [(11, "fts", "a", 1, 2, "throughput", 10.0, 5.0, 1.0, "MB/s"),
    ...         (12, "fts", "b", 1, 2, "throughput", 20.0, 599.0, 3.0, "MB/s")]
    >>> fold_into_buckets(rows, 600)
    [('throughput', 'fts', 0, 1, 2, 2, 30.0, 4.0, 70.0, 599.0)]
    """
    # Sums live in one list per column, not one list per bucket: a batch
    # touches millions of buckets, and a million small lists alive at once
    # keep the garbage collector busy for a third of the ingestion time.
    index: dict[tuple[Any, ...], int] = {}
    counts: list[int] = []
    value_sums: list[float] = []
    weight_sums: list[float] = []
    weighted_sums: list[float] = []
    last_ts: list[float] = []
    for _, source, _, src, dst, kind, value, ts_s, weight, _ in rows:
        key = (kind, source, int(ts_s // bucket_s) * bucket_s, src, dst)
        i = index.get(key)
        if i is None:
            index[key] = len(counts)
            counts.append(1)
            value_sums.append(value)
            weight_sums.append(weight)
            weighted_sums.append(value * weight)
            last_ts.append(ts_s)
        else:
            counts[i] += 1
            value_sums[i] += value
            weight_sums[i] += weight
            weighted_sums[i] += value * weight
            if ts_s > last_ts[i]:
                last_ts[i] = ts_s
    sums = zip(counts, value_sums, weight_sums, weighted_sums, last_ts, strict=True)
    return [key + bucket for key, bucket in zip(index, sums, strict=True)]


class SampleChunk(NamedTuple):
    """Sample rows made ready to write by :func:`prepare_chunk`."""

    rows: list[tuple[Any, ...]]
    """In the order given (the order their sums add up in)."""
    by_key: list[tuple[Any, ...]]
    """The same rows in ``origin_key`` order (the order they go in)."""
    buckets: list[tuple[Any, ...]]
    """:func:`fold_into_buckets` of all ``rows``, in the buckets' primary-key order."""

    @property
    def size(self) -> int:
        """How many sample rows it holds (as :attr:`StagedChunk.size`)."""
        return len(self.rows)


def prepare_chunk(rows: Sequence[tuple[Any, ...]], bucket_s: int) -> SampleChunk:
    """Sort and fold sample rows for :meth:`MetricsDB.add_chunk`; no database needed.

    Pure, so it can run away from the writer (``collectors.ingest`` runs it
    in its parsing process for large batches). O(r log r) in the rows.

    >>> rows = [(12, "fts", "b", 1, 2, "success", 1.0, 5.0, 1.0, "transfer"),
    ...         (11, "fts", "a", 1, 2, "success", 0.0, 7.0, 1.0, "transfer")]
    >>> c = prepare_chunk(rows, 600)
    >>> [r[0] for r in c.by_key], c.buckets
    ([11, 12], [('success', 'fts', 0, 1, 2, 2, 1.0, 2.0, 1.0, 7.0)])
    """
    rows = list(rows)
    # Stable: of two rows with one key the first given goes in, as in input order.
    by_key = sorted(rows, key=_ORIGIN_KEY)
    # A bucket row leads with its key, in the key's order, and the keys are
    # distinct: plain tuple order is key order (no key function, no tuple
    # made per row), and it changes no sum.
    buckets = sorted(fold_into_buckets(rows, bucket_s))
    return SampleChunk(rows, by_key, buckets)


class StagedChunk(NamedTuple):
    """Sample rows made ready to write by :func:`stage_chunk`: a serialized SQLite database."""

    image: bytes
    """``sqlite3.Connection.serialize()`` of a database with the tables of
    :data:`STAGING_TABLES` and nothing else, created in that order on an
    empty database (so their root pages, :data:`STAGING_LAYOUT`, are those
    of every image): ``samples``, the rows in the order given, and
    ``buckets``, their sums in the buckets' primary-key order, both in rowid
    order."""
    size: int
    """How many sample rows it holds."""


def stage_chunk(rows: Sequence[tuple[Any, ...]], bucket_s: int) -> StagedChunk:
    """Sample rows and their buckets, as a :class:`StagedChunk` for a SQLite writer.

    Parameters
    ----------
    rows : sequence of tuples
        Sample rows in :data:`SAMPLE_COLUMNS` order.
    bucket_s : int
        Bucket width in seconds.

    Returns
    -------
    StagedChunk
        The rows, and their buckets as :func:`fold_into_buckets` sums them,
        summed by SQLite (``GROUP BY`` the bucket key). SQLite's sorter keeps
        the rows of one group in the order they were inserted, so the sums
        add up in the rows' order, as the fold adds them
        (``tests/test_collector_fts.py`` holds it to the bit).

    Notes
    -----
    O(r log r) in the rows: one insert each into an in-memory database,
    then one grouped insert of the buckets, sorted by SQLite. The bucket
    start is ``floor(ts_s / bucket_s) * bucket_s`` as the fold takes it:
    SQLite's ``CAST`` truncates the quotient, and a start past ``ts_s`` (a
    negative time, or a quotient rounded up to the next integer) steps back
    one bucket.

    Examples
    --------
    >>> rows = [(12, "fts", "b", 1, 2, "success", 1.0, 1205.0, 1.0, "transfer"),
    ...         (11, "fts", "a", 1, 2, "success", 0.0, 1199.5, 1.0, "transfer")]
    >>> db = sqlite3.connect(":memory:")
    >>> db.deserialize(stage_chunk(rows, 600).image)
    >>> db.execute("SELECT origin_key FROM samples").fetchall()
    [(12,), (11,)]
    >>> db.execute("SELECT * FROM buckets").fetchall()
    [('success', 'fts', 600, 1, 2, 1, 0.0, 1.0, 0.0, 1199.5), \
('success', 'fts', 1200, 1, 2, 1, 1.0, 1.0, 1.0, 1205.0)]
    """
    db = sqlite3.connect(":memory:", isolation_level=None)
    try:
        for table, columns in STAGING_TABLES.items():
            db.execute(f"CREATE TABLE {table} "
                       f"({', '.join(f'{c} {_COLUMN_TYPES[c]}' for c in columns)})")
        db.execute("BEGIN")
        db.executemany(_INSERT_SAMPLE, rows)
        db.execute(_FOLD_SAMPLES, {"b": int(bucket_s)})
        db.execute("COMMIT")
        return StagedChunk(db.serialize(), len(rows))
    finally:
        db.close()


# What the writer checks an image for before it trusts statements prepared
# on an earlier one: each table's name and root page. (A connection keeps
# its statements across a deserialize when the schema cookie matches, and
# a statement reads the pages it was prepared with.)
STAGING_LAYOUT = (("samples", 2), ("buckets", 3))
_INSERT_SAMPLE = f"INSERT INTO samples VALUES ({', '.join('?' * len(SAMPLE_COLUMNS))})"
_START = "CAST(ts_s / :b AS INTEGER) * :b"  # truncated: stepped back below where past ts_s
_FOLD_SAMPLES = f"""
INSERT INTO buckets
SELECT kind, source, {_START} - CASE WHEN {_START} > ts_s THEN :b ELSE 0 END AS start_s,
       src_site_id, dst_site_id,
       count(*), sum(value), sum(weight), sum(value * weight), max(ts_s)
FROM samples
GROUP BY kind, source, start_s, src_site_id, dst_site_id
ORDER BY kind, source, start_s, src_site_id, dst_site_id"""

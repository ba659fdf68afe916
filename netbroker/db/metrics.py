"""MetricsDB: network metric samples and their time buckets, on one open connection.

Ingestion is the hot path (a million FTS records is an ordinary day), so
it runs as few statements as it can: per chunk of samples, one
``executemany`` insert that skips rows already stored (``ON CONFLICT DO
NOTHING``) and one additive upsert (``ON CONFLICT DO UPDATE``) of the
buckets the new rows touch. The statements are SQLAlchemy Core, compiled once per chunk and
handed to the driver's ``executemany`` with plain tuples, because building
a parameter dict per row costs more than the insert itself.

Only rows actually inserted are folded into buckets, so re-ingesting a
record changes nothing. That needs one writer at a time per database:
:meth:`MetricsDB.lock_for_ingest` (an advisory lock on PostgreSQL; on SQLite
the caller's ``BEGIN IMMEDIATE`` already is one).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from hashlib import blake2b as _blake2b
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from netbroker.db.schema import metric_buckets, metric_samples

__all__ = ["SAMPLE_COLUMNS", "MetricsDB", "fold_into_buckets", "origin_key"]

# The order of a sample row tuple.
SAMPLE_COLUMNS = ("origin_key", "source", "origin_id", "src_site_id", "dst_site_id", "kind",
                  "value", "ts_s", "weight", "source_unit")
# A bucket row tuple: its key (the table's primary key, in order), then its sums.
_BUCKET_KEY = ("kind", "bucket_start_s", "src_site_id", "dst_site_id", "source")
_BUCKET_COLUMNS = (*_BUCKET_KEY, "count", "value_sum", "weight_sum", "weighted_value_sum",
                   "last_ts_s")
_INGEST_LOCK = 0x6E62_6D65  # "nbme": the advisory lock key of metric ingestion


def origin_key(source: str, origin_id: str) -> int:
    """The 64-bit idempotency key of a sample: a hash of its source and origin id.

    >>> origin_key("fts", "t1:throughput") == origin_key("fts", "t1:throughput")
    True
    >>> origin_key("fts", "t1") == origin_key("xrootd", "t1")
    False
    """
    digest = _blake2b(f"{source}\x00{origin_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _insert_for(conn: Connection, table: sa.Table) -> Any:
    """The dialect's INSERT that supports ``ON CONFLICT`` (SQLite >= 3.24, PostgreSQL)."""
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    return postgresql.insert(table)


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
        One row per bucket touched: kind, bucket start, src, dst, source,
        count, value_sum, weight_sum, weighted_value_sum, last_ts_s.

    Notes
    -----
    O(n) in the rows, one dict update each.

    Examples
    --------
    >>> rows = [(11, "fts", "a", 1, 2, "throughput", 10.0, 5.0, 1.0, "MB/s"),
    ...         (12, "fts", "b", 1, 2, "throughput", 20.0, 599.0, 3.0, "MB/s")]
    >>> fold_into_buckets(rows, 600)
    [('throughput', 0, 1, 2, 'fts', 2, 30.0, 4.0, 70.0, 599.0)]
    """
    out: dict[tuple[Any, ...], list[Any]] = {}
    for _, source, _, src, dst, kind, value, ts_s, weight, _ in rows:
        key = (kind, int(ts_s // bucket_s) * bucket_s, src, dst, source)
        b = out.get(key)
        if b is None:
            out[key] = [1, value, weight, value * weight, ts_s]
        else:
            b[0] += 1
            b[1] += value
            b[2] += weight
            b[3] += value * weight
            if ts_s > b[4]:
                b[4] = ts_s
    return [(*key, *sums) for key, sums in out.items()]


class MetricsDB:
    """Writes and reads ``metric_samples`` and ``metric_buckets``."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def lock_for_ingest(self) -> None:
        """Hold the metric-ingestion lock until the transaction ends.

        On PostgreSQL an advisory transaction lock; on SQLite nothing to do,
        as the caller opened the transaction with ``BEGIN IMMEDIATE``
        (``netbroker.db.begin_immediate``), which already excludes writers.
        """
        if self.conn.dialect.name == "postgresql":
            self.conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_INGEST_LOCK)))

    def add_samples(self, rows: Sequence[tuple[Any, ...]], bucket_s: int) -> int:
        """Insert the sample rows not stored yet and fold those into the buckets.

        ``rows`` are tuples in :data:`SAMPLE_COLUMNS` order. The caller holds
        :meth:`lock_for_ingest`. Returns how many rows were new.

        Notes
        -----
        Rows go in with ``ON CONFLICT DO NOTHING``. When every row went in
        (the usual case) all are folded; otherwise the rows inserted are read
        back by id: under the ingestion lock new ids are all above the
        highest id before the insert.
        """
        if not rows:
            return 0
        t = metric_samples
        before = self.conn.execute(sa.select(sa.func.coalesce(sa.func.max(t.c.id), 0))).scalar()
        stmt = _insert_for(self.conn, t).on_conflict_do_nothing(index_elements=["origin_key"])
        if self._executemany(stmt, SAMPLE_COLUMNS, rows) != len(rows):
            new_keys = set(self.conn.execute(
                sa.select(t.c.origin_key).where(t.c.id > before)).scalars())
            kept = []
            for r in rows:  # a row repeated in ``rows`` went in once: fold it once
                if r[0] in new_keys:
                    new_keys.discard(r[0])
                    kept.append(r)
            rows = kept
        self._add_to_buckets(fold_into_buckets(rows, bucket_s))
        return len(rows)

    def _executemany(self, stmt: Any, columns: Sequence[str],
                     rows: Sequence[tuple[Any, ...]]) -> int:
        """Run ``stmt`` per row via the driver's executemany; returns the rows changed.

        ``rows`` are tuples in ``columns`` order.
        """
        if not rows:
            return 0  # an empty list would run the statement once, without parameters
        compiled = stmt.compile(dialect=self.conn.dialect, column_keys=list(columns))
        params: Sequence[Any]
        if not compiled.positional:
            params = [dict(zip(columns, r, strict=True)) for r in rows]
        elif list(compiled.positiontup) == list(columns):
            params = rows
        else:
            order = [columns.index(name) for name in compiled.positiontup]
            params = [tuple(r[i] for i in order) for r in rows]
        result = self.conn.exec_driver_sql(str(compiled), params)  # type: ignore[arg-type]
        return int(result.rowcount)

    def _add_to_buckets(self, buckets: list[tuple[Any, ...]]) -> None:
        t = metric_buckets
        ins = _insert_for(self.conn, t)
        stmt = ins.on_conflict_do_update(
            index_elements=list(_BUCKET_KEY),
            set_={
                "count": t.c.count + ins.excluded.count,
                "value_sum": t.c.value_sum + ins.excluded.value_sum,
                "weight_sum": t.c.weight_sum + ins.excluded.weight_sum,
                "weighted_value_sum": t.c.weighted_value_sum + ins.excluded.weighted_value_sum,
                "last_ts_s": sa.case((ins.excluded.last_ts_s > t.c.last_ts_s,
                                      ins.excluded.last_ts_s), else_=t.c.last_ts_s),
            })
        self._executemany(stmt, _BUCKET_COLUMNS, buckets)

    def window(self, kind: str, source: str, since_s: float, until_s: float,
               src_site_ids: Sequence[int] | None = None) -> np.ndarray:
        """The buckets of one kind and source starting in [since_s, until_s].

        Returns a float array with one row per bucket: src_site_id,
        dst_site_id, count, value_sum, weight_sum, weighted_value_sum,
        last_ts_s; the caller sums it per link. A range scan of the primary
        key, O(b) in the buckets read; rows come straight from the driver's
        cursor as tuples (a million in about a second). ``src_site_ids``
        keeps only links from those sites.
        """
        t = metric_buckets
        stmt = (sa.select(t.c.src_site_id, t.c.dst_site_id, t.c.count, t.c.value_sum,
                          t.c.weight_sum, t.c.weighted_value_sum, t.c.last_ts_s)
                .where(t.c.kind == kind, t.c.source == source, t.c.bucket_start_s >= since_s,
                       t.c.bucket_start_s <= until_s))
        if src_site_ids is not None:
            stmt = stmt.where(t.c.src_site_id.in_(list(src_site_ids)))
        result = self.conn.execute(stmt)
        try:
            rows = result.cursor.fetchall() if result.cursor is not None else []
        finally:
            result.close()
        flat = itertools.chain.from_iterable(rows)  # fromiter: no tuple of objects per row
        return np.fromiter(flat, np.float64, count=7 * len(rows)).reshape(-1, 7)

    def link_history(self, src_site_id: int, dst_site_id: int, kind: str, since_s: float,
                     until_s: float | None = None) -> list[dict[str, Any]]:
        """The buckets of one link and kind in [since_s, until_s], oldest first, per source."""
        t = metric_buckets
        stmt = (sa.select(t.c.source, t.c.bucket_start_s, t.c.count, t.c.value_sum,
                          t.c.weight_sum, t.c.weighted_value_sum, t.c.last_ts_s)
                .where(t.c.src_site_id == src_site_id, t.c.dst_site_id == dst_site_id,
                       t.c.kind == kind, t.c.bucket_start_s >= since_s)
                .order_by(t.c.bucket_start_s, t.c.source))
        if until_s is not None:
            stmt = stmt.where(t.c.bucket_start_s <= until_s)
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

    def prune_samples(self, before_s: float) -> int:
        """Delete raw samples older than ``before_s``; the buckets keep their sums."""
        result = self.conn.execute(sa.delete(metric_samples)
                                   .where(metric_samples.c.ts_s < before_s))
        return result.rowcount or 0

    def count_samples(self, source: str | None = None) -> int:
        stmt = sa.select(sa.func.count()).select_from(metric_samples)
        if source is not None:
            stmt = stmt.where(metric_samples.c.source == source)
        return int(self.conn.execute(stmt).scalar_one())

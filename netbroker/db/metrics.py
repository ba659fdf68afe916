"""MetricsDB: network metric samples and their time buckets, on one open connection.

Samples are inserted with ``ON CONFLICT DO NOTHING`` on (source, origin id)
and only the rows actually inserted come back (``RETURNING``); only those
are folded into the buckets, with an additive ``ON CONFLICT DO UPDATE``.
So re-ingesting a record changes nothing, and two ingesters racing on the
same records still count each once. The dialect difference (both SQLite and
PostgreSQL speak this SQL, through different SQLAlchemy constructs) lives in
:func:`_insert_for`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from netbroker.db.schema import metric_buckets, metric_samples

__all__ = ["MetricsDB", "fold_into_buckets"]

_BATCH = 5000


def _insert_for(conn: Connection, table: sa.Table) -> Any:
    """The dialect's INSERT that supports ``ON CONFLICT`` (SQLite >= 3.24, PostgreSQL)."""
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    return postgresql.insert(table)


def fold_into_buckets(rows: Iterable[Mapping[str, Any]], bucket_s: int
                      ) -> list[dict[str, Any]]:
    """Sum sample rows into bucket rows keyed by (src, dst, source, kind, bucket start).

    Parameters
    ----------
    rows : iterable of mappings
        With ``src_site_id, dst_site_id, source, kind, value, weight, ts_s``.
    bucket_s : int
        Bucket width in seconds; a sample at ``ts_s`` falls in the bucket
        starting at ``floor(ts_s / bucket_s) * bucket_s``.

    Returns
    -------
    list of dict
        One row per bucket touched: count, value_sum, weight_sum,
        weighted_value_sum, last_ts_s.

    Notes
    -----
    O(n) in the rows, one dict update each.

    Examples
    --------
    >>> rows = [dict(src_site_id=1, dst_site_id=2, source="fts", kind="throughput",
    ...              value=v, weight=w, ts_s=t) for v, w, t in [(10, 1, 5), (20, 3, 599)]]
    >>> [(b["bucket_start_s"], b["count"], b["weighted_value_sum"])
    ...  for b in fold_into_buckets(rows, 600)]
    [(0, 2, 70.0)]
    """
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in rows:
        start = int(r["ts_s"] // bucket_s) * bucket_s
        key = (r["src_site_id"], r["dst_site_id"], r["source"], r["kind"], start)
        b = out.get(key)
        if b is None:
            b = out[key] = {"src_site_id": key[0], "dst_site_id": key[1], "source": key[2],
                            "kind": key[3], "bucket_start_s": start, "count": 0,
                            "value_sum": 0.0, "weight_sum": 0.0, "weighted_value_sum": 0.0,
                            "last_ts_s": r["ts_s"]}
        b["count"] += 1
        b["value_sum"] += r["value"]
        b["weight_sum"] += r["weight"]
        b["weighted_value_sum"] += r["value"] * r["weight"]
        b["last_ts_s"] = max(b["last_ts_s"], r["ts_s"])
    return list(out.values())


class MetricsDB:
    """Writes and reads ``metric_samples`` and ``metric_buckets``."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add_samples(self, rows: Sequence[Mapping[str, Any]], bucket_s: int) -> int:
        """Insert sample rows not stored yet and fold those into the buckets.

        Returns the number of rows inserted (the rest were duplicates).
        """
        inserted = 0
        for i in range(0, len(rows), _BATCH):
            new = self._insert_new(rows[i:i + _BATCH])
            self._add_to_buckets(fold_into_buckets(new, bucket_s))
            inserted += len(new)
        return inserted

    def _insert_new(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        t = metric_samples
        stmt = (_insert_for(self.conn, t).on_conflict_do_nothing(
                    index_elements=["source", "origin_id"])
                .returning(t.c.src_site_id, t.c.dst_site_id, t.c.source, t.c.kind, t.c.value,
                           t.c.weight, t.c.ts_s))
        return [dict(r) for r in self.conn.execute(stmt, list(rows)).mappings()]

    def _add_to_buckets(self, buckets: list[dict[str, Any]]) -> None:
        if not buckets:
            return
        t = metric_buckets
        ins = _insert_for(self.conn, t)
        stmt = ins.on_conflict_do_update(
            index_elements=["src_site_id", "dst_site_id", "source", "kind", "bucket_start_s"],
            set_={
                "count": t.c.count + ins.excluded.count,
                "value_sum": t.c.value_sum + ins.excluded.value_sum,
                "weight_sum": t.c.weight_sum + ins.excluded.weight_sum,
                "weighted_value_sum": t.c.weighted_value_sum + ins.excluded.weighted_value_sum,
                "last_ts_s": sa.case((ins.excluded.last_ts_s > t.c.last_ts_s,
                                      ins.excluded.last_ts_s), else_=t.c.last_ts_s),
            })
        self.conn.execute(stmt, buckets)

    def window(self, kind: str, since_s: float, until_s: float, source: str | None = None
               ) -> list[dict[str, Any]]:
        """Sum the buckets starting in [since_s, until_s] per (src, dst, source).

        Returns rows with count, value_sum, weight_sum, weighted_value_sum and
        last_ts_s; the caller turns them into means.
        """
        t = metric_buckets
        stmt = (sa.select(t.c.src_site_id, t.c.dst_site_id, t.c.source,
                          sa.func.sum(t.c.count).label("count"),
                          sa.func.sum(t.c.value_sum).label("value_sum"),
                          sa.func.sum(t.c.weight_sum).label("weight_sum"),
                          sa.func.sum(t.c.weighted_value_sum).label("weighted_value_sum"),
                          sa.func.max(t.c.last_ts_s).label("last_ts_s"))
                .where(t.c.kind == kind, t.c.bucket_start_s >= since_s,
                       t.c.bucket_start_s <= until_s)
                .group_by(t.c.src_site_id, t.c.dst_site_id, t.c.source))
        if source is not None:
            stmt = stmt.where(t.c.source == source)
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

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

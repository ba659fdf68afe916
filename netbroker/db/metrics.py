"""MetricsDB: network metric samples and their time buckets, on one open connection.

Ingestion is the hot path (a million FTS records is an ordinary day), so
it runs as few statements as it can: per chunk of samples, one insert that
skips rows already stored (``ON CONFLICT DO NOTHING``) and one additive
upsert (``ON CONFLICT DO UPDATE``) of the buckets the new rows touch. On
SQLite a chunk comes staged (``netbroker.sample_rows.StagedChunk``: an
in-memory database the parsing process built), is attached as the schema
``nb_staging`` and copied with ``INSERT ... SELECT``, no value passing
through Python. On PostgreSQL the statements are SQLAlchemy Core, compiled
once per chunk and handed to the driver's ``executemany`` with plain
tuples, because building a parameter dict per row costs more than the
insert itself. Rows go in sorted by their table's key, so each chunk walks
the B-trees in order, and on SQLite a batch writes under a larger page
cache (:meth:`MetricsDB.large_batch`).

Only rows actually inserted are folded into buckets, so re-ingesting a
record changes nothing. That needs one writer at a time per database:
:meth:`MetricsDB.lock_for_ingest` (an advisory lock on PostgreSQL; on SQLite
the caller's ``BEGIN IMMEDIATE`` already is one).
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import lru_cache
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from netbroker.db.schema import (
    BLOCK_ARRAYS,
    metric_block_marks,
    metric_bucket_blocks,
    metric_buckets,
    metric_samples,
)
from netbroker.sample_rows import (
    BUCKET_COLUMNS,
    BUCKET_KEY,
    SAMPLE_COLUMNS,
    STAGING_LAYOUT,
    STAGING_TABLES,
    SampleChunk,
    StagedChunk,
    fold_into_buckets,
    origin_key,
    prepare_chunk,
    stage_chunk,
)

# The pure row functions live in netbroker.sample_rows; named here too, where
# the writer that takes their rows is.
__all__ = ["SAMPLE_COLUMNS", "MetricsDB", "SampleChunk", "StagedChunk", "fold_into_buckets",
           "origin_key", "prepare_chunk"]

assert tuple(c.name for c in metric_buckets.primary_key) == BUCKET_KEY, "fold's key order"
_INGEST_LOCK = 0x6E62_6D65  # "nbme": the advisory lock key of metric ingestion
# SQLite page cache while a batch is written, in KiB (PRAGMA cache_size takes
# -KiB): a million FTS records update ~0.5 GB of B-tree pages, in no order a
# 64 MiB cache can follow, and each miss is a read. Memory only, given back
# when the batch is written; durability settings are not touched. 1 GiB
# rather than 256 MiB: the million-record batch ~7% faster (three runs each,
# in turn, 2026-12-02).
_BATCH_CACHE_KIB = 1024 * 1024
_STAGING = "nb_staging"  # the schema a staged chunk is attached as, on SQLite


def _insert_for(conn: Connection, table: sa.Table) -> Any:
    """The dialect's INSERT that supports ``ON CONFLICT`` (SQLite >= 3.24, PostgreSQL)."""
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    return postgresql.insert(table)


class MetricsDB:
    """Writes and reads ``metric_samples`` and ``metric_buckets``, and keeps the
    blocks of closed bucket starts (``metric_bucket_blocks``) equal to their rows."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        # Inside large_batch: the (kind, source, start) written, whose blocks
        # are rebuilt at its end; None: rebuilt as written.
        self._deferred: set[tuple[str, str, int]] | None = None

    def lock_for_ingest(self) -> None:
        """Hold the metric-ingestion lock until the transaction ends.

        On PostgreSQL an advisory transaction lock; on SQLite nothing to do,
        as the caller opened the transaction with ``BEGIN IMMEDIATE``
        (``netbroker.db.begin_immediate``), which already excludes writers.
        """
        if self.conn.dialect.name == "postgresql":
            self.conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_INGEST_LOCK)))

    @contextmanager
    def large_batch(self) -> Iterator[None]:
        """For the writes of one large batch: the blocks of blocked starts it writes
        to rebuilt once, at its end, not after every chunk; and on SQLite a
        larger page cache (:meth:`_batch_cache`).

        A backfill of a week writes to most blocked starts in every chunk;
        rebuilding them per chunk would read each start again and again. The
        rebuild runs when the block ends without an error, inside the
        caller's transaction, so the blocks commit with the rows.
        """
        outer = self._deferred is None
        if outer:
            self._deferred = set()
        try:
            with self._batch_cache():
                yield
            if outer and self._deferred:
                self._rebuild_blocks(self._deferred, self.block_marks())
        finally:
            if outer:
                self._deferred = None

    @contextmanager
    def _batch_cache(self) -> Iterator[None]:
        """On SQLite, a page cache of at least 1 GiB while the block runs, and the
        staged chunks' schema detached at its end; no-op elsewhere.

        For the writes of one large batch (see ``_BATCH_CACHE_KIB``): a
        million FTS records go in about an eighth faster (30 s -> 27 s on
        the 2-core hosts, ``bench/ingest.py``). The connection's own size
        comes back at the end, before the commit, so a pooled connection does
        not keep the memory; pages still dirty then are written by the commit
        as usual (SQLite never drops a dirty page to fit its cache). The last
        staged chunk's memory goes with the schema.
        """
        if self.conn.dialect.name != "sqlite":
            yield
            return
        # An int SQLite just gave: formatting it back into the pragma (which
        # takes no bound parameters) is as safe as engine.py's own pragmas.
        previous = int(self.conn.exec_driver_sql("PRAGMA cache_size").scalar_one())
        kib = -previous if previous < 0 else None  # a positive size counts pages
        grow = kib is None or kib < _BATCH_CACHE_KIB
        if grow:
            self.conn.exec_driver_sql(f"PRAGMA cache_size = {-_BATCH_CACHE_KIB:d}")
        try:
            yield
        finally:
            # After an error too; a connection too broken for a pragma is one
            # the pool throws away, and the error that broke it goes on up.
            with suppress(sa.exc.DBAPIError, sqlite3.Error):
                if grow:
                    self.conn.exec_driver_sql(f"PRAGMA cache_size = {previous:d}")
                if self._staging_attached():
                    # Read in this transaction, the staged database is locked
                    # until it ends; loading an empty image releases it (and
                    # the last chunk's memory), and then it can be detached.
                    self.conn.connection.driver_connection.deserialize(
                        stage_chunk([], 1).image, name=_STAGING)
                    self.conn.exec_driver_sql(f"DETACH DATABASE {_STAGING}")

    def stages(self) -> bool:
        """Whether :meth:`add_chunk` takes :class:`StagedChunk` here: on SQLite, whose
        driver can load a serialized database (``sqlite3`` built with it)."""
        return (self.conn.dialect.name == "sqlite"
                and hasattr(self.conn.connection.driver_connection, "deserialize"))

    def _staging_attached(self) -> bool:
        return self.conn.exec_driver_sql(
            "SELECT 1 FROM pragma_database_list WHERE name = ?", (_STAGING,)).first() is not None

    def add_chunk(self, chunk: SampleChunk | StagedChunk, bucket_s: int) -> int:
        """Insert a prepared chunk's rows not stored yet, and fold those into the buckets.

        The caller holds :meth:`lock_for_ingest`; ``bucket_s`` is the width
        ``chunk`` was prepared with; a :class:`StagedChunk` only where
        :meth:`stages`. Returns how many rows were new.

        Notes
        -----
        Rows go in with ``ON CONFLICT DO NOTHING``, in ``origin_key`` order:
        the inserts then walk the key's unique index from one end to the
        other instead of jumping about it (with the buckets also in key
        order, a million FTS records go in ~5% faster under
        :meth:`batch_cache`, ~15% without it). When every row went in (the
        usual case) the chunk's buckets are added as prepared; otherwise the
        rows inserted are read back by id (under the ingestion lock new ids
        are all above the highest id before the insert) and only those are
        folded, again in their given order, so bucket sums add up in input
        order either way. One insert per row and one upsert per bucket.
        A staged chunk goes the same way through :meth:`_add_staged`.
        """
        if isinstance(chunk, StagedChunk):
            return self._add_staged(chunk, bucket_s)
        rows = chunk.rows
        if not rows:
            return 0
        t = metric_samples
        before = self._max_sample_id()
        stmt = _insert_for(self.conn, t).on_conflict_do_nothing(index_elements=["origin_key"])
        if self._executemany(stmt, SAMPLE_COLUMNS, chunk.by_key) == len(rows):
            self._add_to_buckets(chunk.buckets)
            return len(rows)
        return self._fold_new(rows, before, bucket_s)

    def _add_staged(self, chunk: StagedChunk, bucket_s: int) -> int:
        """:meth:`add_chunk` of a staged chunk: its database attached, two INSERT ... SELECT.

        Loading the image (``deserialize``) copies it once. The samples go in
        sorted by ``origin_key`` then rowid (SQLite's sort, in C: of two rows
        with one key the first given wins, as for a tuple chunk); the
        buckets in rowid order, already key order. In the rare batch with
        rows stored before, the new rows are found by id as for a tuple
        chunk and folded here, in the order given.
        """
        if not chunk.size:
            return 0
        if not self._staging_attached():
            # The name is ours, a constant; an in-memory database, no file.
            self.conn.exec_driver_sql(f"ATTACH DATABASE ':memory:' AS {_STAGING}")
        self.conn.connection.driver_connection.deserialize(chunk.image, name=_STAGING)
        layout = tuple(tuple(r) for r in self.conn.exec_driver_sql(
            f"SELECT name, rootpage FROM {_STAGING}.sqlite_schema ORDER BY rootpage"))
        if layout != STAGING_LAYOUT:
            raise ValueError(f"a staged chunk holds tables {layout}, not {STAGING_LAYOUT}")
        before = self._max_sample_id()
        if self.conn.exec_driver_sql(_staged_sql("samples")).rowcount == chunk.size:
            self.conn.exec_driver_sql(_staged_sql("buckets"))
            marks = self.block_marks()
            if marks:  # the blocked starts the chunk wrote to (rare: late samples)
                lo, hi = _marked_range(marks)
                self._blocks_written(self.conn.exec_driver_sql(
                    f"SELECT DISTINCT kind, source, bucket_start_s FROM {_STAGING}.buckets "
                    "WHERE bucket_start_s BETWEEN ? AND ?", (lo, hi)), marks)
            return chunk.size
        staged = self.conn.exec_driver_sql(
            f"SELECT {', '.join(SAMPLE_COLUMNS)} FROM {_STAGING}.samples ORDER BY rowid")
        return self._fold_new([tuple(r) for r in staged], before, bucket_s)

    def _fold_new(self, rows: Sequence[tuple[Any, ...]], before: int, bucket_s: int) -> int:
        """Fold into the buckets the ``rows`` just inserted (ids above ``before``); their count.

        Under the ingestion lock the new ids are all above the highest id
        before the insert; a row repeated in ``rows`` went in once, and is
        folded once, in the order given.
        """
        t = metric_samples
        new_keys = set(self.conn.execute(
            sa.select(t.c.origin_key).where(t.c.id > before)).scalars())
        kept = []
        for r in rows:
            if r[0] in new_keys:
                new_keys.discard(r[0])
                kept.append(r)
        self.add_buckets(fold_into_buckets(kept, bucket_s))
        return len(kept)

    def _max_sample_id(self) -> int:
        t = metric_samples
        return int(self.conn.execute(sa.select(sa.func.coalesce(sa.func.max(t.c.id), 0)))
                   .scalar_one())

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

    def add_buckets(self, buckets: Sequence[tuple[Any, ...]]) -> None:
        """Add bucket rows (in :func:`fold_into_buckets`' shape) to the buckets.

        For loading aggregates made elsewhere (benchmarks, imports): each row
        adds its count and sums to its bucket, creating it when new. Keys
        must be distinct within one call. O(b log b) for the sort, then one
        upsert per row.
        """
        self._add_to_buckets(sorted(buckets))

    def _add_to_buckets(self, buckets: list[tuple[Any, ...]]) -> None:
        # Given in primary-key order, for the reason the samples go in key
        # order (see add_chunk).
        self._executemany(_add_to_buckets(_insert_for(self.conn, metric_buckets)),
                          BUCKET_COLUMNS, buckets)
        marks = self.block_marks()
        if marks:
            lo, hi = _marked_range(marks)
            self._blocks_written({(r[0], r[1], int(r[2])) for r in buckets if lo <= r[2] <= hi},
                                 marks)

    # -- Blocks of closed buckets ------------------------------------------
    #
    # The rows of a closed bucket start of one kind and source, copied into
    # one metric_bucket_blocks row of arrays, so a matrix reads one row per
    # start where it would read one per link. The invariant, per kind and
    # source with a mark (from_s, through_s): every start in [from_s,
    # through_s] with bucket rows has a block equal to them, and no later
    # start has one. The aggregate cycle extends it (block_buckets); every
    # write of bucket rows above rebuilds the blocks of the starts it wrote
    # to, in the same transaction (at the end of a large_batch), so the rows
    # stay the one truth.

    def block_marks(self) -> dict[tuple[str, str], tuple[int, int]]:
        """Per (kind, source) that has been blocked, the starts its blocks
        cover: ``(from_s, through_s)``. One read of a table of a few rows."""
        m = metric_block_marks
        return {(kind, source): (int(first), int(last)) for kind, source, first, last
                in self.conn.execute(sa.select(m.c.kind, m.c.source, m.c.from_s, m.c.through_s))}

    def block_buckets(self, kind: str, source: str, through_s: int, keep_from_s: int) -> int:
        """Block the bucket starts of ``kind`` and ``source`` up to ``through_s``.

        Writes the block of each start in (the mark's ``through_s``,
        ``through_s``], or from ``keep_from_s`` where there is no mark yet;
        drops the blocks before ``keep_from_s``; moves the mark. Returns the
        blocks written. The caller holds :meth:`lock_for_ingest`, so no
        ingestion writes the rows between their read and their block's
        write. O(b) in the bucket rows of the new starts, one start in
        memory at a time.
        """
        mark = self.block_marks().get((kind, source))
        first = keep_from_s if mark is None else max(mark[1] + 1, keep_from_s)
        written = 0
        if first <= through_s:
            for start in self.conn.execute(
                    self._bucket_starts(kind, source, first, through_s)).scalars().all():
                written += self._write_block(kind, source, int(start))
        through = through_s if mark is None else max(mark[1], through_s)
        keep = keep_from_s if mark is None else max(mark[0], keep_from_s)
        b, m = metric_bucket_blocks, metric_block_marks
        self.conn.execute(sa.delete(b).where(b.c.kind == kind, b.c.source == source,
                                             b.c.bucket_start_s < keep))
        ins = _insert_for(self.conn, m).values(kind=kind, source=source, from_s=keep,
                                               through_s=through)
        self.conn.execute(ins.on_conflict_do_update(
            index_elements=["kind", "source"],
            set_={"from_s": ins.excluded.from_s, "through_s": ins.excluded.through_s}))
        return written

    def _blocks_written(self, starts: Any, marks: dict[tuple[str, str], tuple[int, int]]
                        ) -> None:
        """Bucket rows of these (kind, source, start) were written: rebuild their
        blocks now, or at the end of the :meth:`large_batch` this write is in."""
        if self._deferred is not None:
            self._deferred.update((k, s, int(t)) for k, s, t in starts)
        else:
            self._rebuild_blocks(starts, marks)

    def _rebuild_blocks(self, starts: Any, marks: dict[tuple[str, str], tuple[int, int]]
                        ) -> None:
        """Rewrite the blocks of those (kind, source, start) that their mark covers."""
        for kind, source, start in sorted({(k, s, int(t)) for k, s, t in starts}):
            mark = marks.get((kind, source))
            if mark is not None and mark[0] <= start <= mark[1]:
                self._write_block(kind, source, start)

    def _write_block(self, kind: str, source: str, start: int) -> int:
        """(Re)write the block of one start from its bucket rows; 1 if it has rows, else 0.

        The rows come in key order, (src_site_id, dst_site_id), as a reader
        of the rows gets a start's links; O(l) in the start's links.
        """
        t, b = metric_buckets, metric_bucket_blocks
        names = [name for name, _ in BLOCK_ARRAYS]
        rows = self._driver_rows(
            sa.select(*(t.c[name] for name in names))
            .where(t.c.kind == kind, t.c.source == source, t.c.bucket_start_s == start)
            .order_by(t.c.src_site_id, t.c.dst_site_id))
        key = (b.c.kind == kind, b.c.source == source, b.c.bucket_start_s == start)
        self.conn.execute(sa.delete(b).where(*key))
        if not rows:
            return 0
        records = np.fromiter(rows, np.dtype(list(BLOCK_ARRAYS)), count=len(rows))
        self.conn.execute(sa.insert(b).values(
            kind=kind, source=source, bucket_start_s=start, links=len(rows),
            **{f"{name}_array": records[name].tobytes() for name in names}))
        return 1

    def _blocked_through(self, kind: str, sources: Sequence[str], since_s: float,
                         until_s: float) -> dict[str, float]:
        """The sources whose window [since_s, until_s] starts inside their blocks:
        per source, the last start to read from blocks (the rest from rows)."""
        marks = self.block_marks()
        out = {}
        for source in sources:
            mark = marks.get((kind, source))
            if mark is not None and mark[0] <= since_s <= mark[1]:
                out[source] = min(mark[1], until_s)
        return out

    def _block_shares(self, kind: str, source: str, since_s: float, through_s: float,
                      cuts: Sequence[int], site_span: int) -> list[dict[str, np.ndarray]]:
        """The blocks of starts in [since_s, through_s] as :meth:`window_links`
        chunks, one per share ``[cuts[j], cuts[j + 1])`` of the source sites.

        A block's links are in source-site order, so a share is one slice of
        each array (found by binary search); O(l) in the links copied.
        """
        b = metric_bucket_blocks
        dtypes = dict(BLOCK_ARRAYS)
        names = ("src_site_id", "dst_site_id", "count", "value_sum", "weight_sum",
                 "weighted_value_sum")
        result = self.conn.execute(
            sa.select(*(b.c[f"{name}_array"] for name in names))
            .where(b.c.kind == kind, b.c.source == source, b.c.bucket_start_s >= since_s,
                   b.c.bucket_start_s <= through_s)
            .order_by(b.c.bucket_start_s))
        pieces: list[list[list[np.ndarray]]] = [[] for _ in range(len(cuts) - 1)]
        for row in result:  # one block at a time: the oldest first
            arrays = [np.frombuffer(blob, dtypes[name]) for name, blob in zip(names, row,
                                                                              strict=True)]
            bounds = np.searchsorted(arrays[0], cuts).tolist()
            for j, (lo, hi) in enumerate(itertools.pairwise(bounds)):
                if hi > lo:
                    pieces[j].append([a[lo:hi] for a in arrays])
        out = []
        for share in pieces:
            columns = ([c[0] if len(c) == 1 else np.concatenate(c) for c in zip(*share,
                                                                               strict=True)]
                       if share else [np.empty(0, dtypes[name]) for name in names])
            src, dst, count, value_sum, weight_sum, weighted_value_sum = columns
            out.append({"link": src.astype(np.int64) * site_span + dst,
                        "count": count.astype(np.int64, copy=False),
                        "value_sum": value_sum.astype(np.float64, copy=False),
                        "weight_sum": weight_sum.astype(np.float64, copy=False),
                        "weighted_value_sum": weighted_value_sum.astype(np.float64,
                                                                        copy=False)})
        return out

    def window(self, kind: str, source: str, since_s: float, until_s: float,
               src_site_ids: Sequence[int] | None = None) -> np.ndarray:
        """The buckets of one kind and source starting in [since_s, until_s].

        Returns a float array with one row per bucket: src_site_id,
        dst_site_id, count, value_sum, weight_sum, weighted_value_sum,
        last_ts_s; oldest bucket first (the order the caller sums a link's
        buckets in, so every reader of a window adds them up alike). A range
        scan of the primary key, O(b) in the buckets read; rows come straight
        from the driver's cursor as tuples (a million in about a second).
        ``src_site_ids`` keeps only links from those sites.
        """
        t = metric_buckets
        stmt = (sa.select(t.c.src_site_id, t.c.dst_site_id, t.c.count, t.c.value_sum,
                          t.c.weight_sum, t.c.weighted_value_sum, t.c.last_ts_s)
                .where(t.c.kind == kind, t.c.source == source, t.c.bucket_start_s >= since_s,
                       t.c.bucket_start_s <= until_s)
                .order_by(t.c.bucket_start_s))
        if src_site_ids is not None:
            stmt = stmt.where(t.c.src_site_id.in_(list(src_site_ids)))
        rows = self._driver_rows(stmt)
        flat = itertools.chain.from_iterable(rows)  # fromiter: no tuple of objects per row
        return np.fromiter(flat, np.float64, count=7 * len(rows)).reshape(-1, 7)

    def link_history(self, src_site_id: int, dst_site_id: int, kind: str, since_s: float,
                     until_s: float | None = None, sources: Sequence[str] | None = None
                     ) -> list[dict[str, Any]]:
        """The buckets of one link and kind in [since_s, until_s], oldest first, per source.

        ``sources`` (default: all) are the sources to read; naming them lets
        the read seek each source's range of bucket starts (the key leads
        with kind and source) instead of stepping over the kind's whole history.
        """
        t = metric_buckets
        stmt = (sa.select(t.c.source, t.c.bucket_start_s, t.c.count, t.c.value_sum,
                          t.c.weight_sum, t.c.weighted_value_sum, t.c.last_ts_s)
                .where(t.c.src_site_id == src_site_id, t.c.dst_site_id == dst_site_id,
                       t.c.kind == kind, t.c.bucket_start_s >= since_s)
                .order_by(t.c.bucket_start_s, t.c.source))
        if sources is not None:
            stmt = stmt.where(t.c.source.in_(list(sources)))
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

    # The columns of window_links and their types, in the order selected.
    _LINK_COLUMNS = (("link", np.int64), ("count", np.int64), ("value_sum", np.float64),
                     ("weight_sum", np.float64), ("weighted_value_sum", np.float64))
    # Threads reading one columnar window, each the links from its share of
    # the sites: stepping SQLite is CPU-bound, and on the 2-core hosts two
    # readers take a million buckets in ~0.2 s instead of ~0.35 s (when the
    # other core is busy, in about the same time as one).
    _ARROW_READERS = 2

    def window_links(self, kind: str, sources: Sequence[str], since_s: float, until_s: float,
                     site_span: int) -> list[list[dict[str, np.ndarray]]]:
        """Per source, the buckets of one kind starting in [since_s, until_s], as columns.

        Parameters
        ----------
        kind : str
            The metric kind.
        sources : sequence of str
            The sources to read; the result has one entry per source, in order.
        since_s, until_s : float
            First and last bucket start, epoch seconds.
        site_span : int
            More than the largest site id: each bucket's link is given as
            ``src_site_id * site_span + dst_site_id``.

        Returns
        -------
        list of list of dict of ndarray
            Per source, its buckets in chunks (one per reader), each a dict
            with one element per bucket in each of ``link`` and ``count``
            (int64), ``value_sum``, ``weight_sum`` and ``weighted_value_sum``
            (float64). All the buckets of a link are in one chunk, oldest
            first, as :meth:`window` gives them; every source has as many
            chunks, the j-th of each holding the links of one share of the
            source sites. ``value_sum`` may be None
            where no link of the chunk can need it (:func:`_needs_value_sum`).

        Notes
        -----
        Per source one range scan of the primary key, or one seek per
        bucket start and share (:meth:`_window_select`): O(b) in the buckets
        read, only the columns a matrix needs. On a SQLite file with ADBC
        installed (:meth:`_arrow_uri`) the rows come as Arrow columns, no
        Python object per value, read by :attr:`_ARROW_READERS` threads on
        read-only connections of their own: they see committed data only,
        not this connection's uncommitted writes. There each value read
        costs ~50 ns, so a reader takes three values a bucket where it can
        (:func:`_share_sql`'s ``packed``: link and count in one integer, the
        two weighted sums) and ``value_sum``, which only the plain mean of a
        link without weights needs, only when its chunk may have such a link.
        Elsewhere the rows come through this connection's cursor.

        Where the window starts inside a source's blocks (the aggregate
        cycle's copies of closed starts, :meth:`block_buckets`), the starts
        up to its mark come from blocks instead, one row per start read on
        this connection and sliced per share (:meth:`_block_shares`), and
        only the later starts from rows, in the full layout. A start is
        read whole from one or the other, so each start's buckets are
        those of one moment. Then O(s + l) for s starts and l links in
        them, the rows of the open starts besides.
        """
        names = [name for name, _ in self._LINK_COLUMNS]
        blocked = self._blocked_through(kind, sources, since_s, until_s)
        # Where blocks serve a source, its rows are those of the starts after them.
        rows_since = {s: blocked[s] + 1 if s in blocked else since_s for s in sources}
        uri = self._arrow_uri()
        if uri is None:
            cuts = [0, site_span]
            part = self._read_cursor([self._window_select(kind, s, rows_since[s], until_s,
                                                          site_span) for s in sources])
            chunks = [[dict(zip(names, columns, strict=True))] for columns in part]
        else:
            cuts = np.linspace(0, site_span, self._ARROW_READERS + 1).round().astype(int).tolist()
            packs = site_span <= _PACKED_SPAN

            def layouts(source: str) -> tuple[str, ...]:
                # Rows joined to blocks come whole: the pair decides value_sum's need.
                if source in blocked:
                    return ("full",)
                return ("full", "value_sum") + (("packed",) if packs else ())

            shares = [[{layout: _bound(_share_sql(kind, s, site_span, (a, b), layout),
                                       {"since_s": rows_since[s], "until_s": until_s})
                        for layout in layouts(s)} for s in sources]
                      for a, b in itertools.pairwise(cuts)]
            parts = self._read_arrow(uri, shares)
            # Chunks, not one array per column: joining them would copy every column.
            chunks = [[part[i] for part in parts] for i in range(len(sources))]
        for i, source in enumerate(sources):
            if source in blocked:
                blocks = self._block_shares(kind, source, since_s, blocked[source], cuts,
                                            site_span)
                chunks[i] = [_joined(block, rows, names)
                             for block, rows in zip(blocks, chunks[i], strict=True)]
        return chunks

    @classmethod
    def _window_select(cls, kind: str, source: str, since_s: float | sa.BindParameter[Any],
                       until_s: float | sa.BindParameter[Any],
                       site_span: int, sites: tuple[int, int] | None = None,
                       layout: str = "full") -> sa.Select[Any]:
        """The statement of one source's window: all its links, or those from ``sites``.

        A share ``[a, b)`` of the source sites seeks to them under each bucket
        start of the window (:meth:`_bucket_starts`) instead of range-scanning
        all the starts and dropping the other shares' rows; the rows still come
        in key order, so ``ORDER BY`` costs no sort. ``layout`` is the columns
        selected: ``full`` (:attr:`_LINK_COLUMNS`), ``packed`` (``link *
        2**31 + count``, NULL where the count is outside ``[0, 2**31)``; then
        ``weight_sum`` and ``weighted_value_sum``) or ``value_sum``; the rows
        come in the same order in each, from one snapshot.
        """
        t = metric_buckets
        link = sa.literal(site_span, sa.BigInteger) * t.c.src_site_id + t.c.dst_site_id
        columns: tuple[Any, ...]
        if layout == "full":
            columns = (link, t.c.count, t.c.value_sum, t.c.weight_sum, t.c.weighted_value_sum)
        elif layout == "packed":
            packed = sa.case((sa.and_(t.c.count >= 0, t.c.count < _COUNT_RANGE),
                              link * sa.literal(_COUNT_RANGE, sa.BigInteger) + t.c.count),
                             else_=sa.null())
            columns = (packed, t.c.weight_sum, t.c.weighted_value_sum)
        else:
            columns = (t.c.value_sum,)
        stmt = (sa.select(*columns)
                .where(t.c.kind == kind, t.c.source == source)
                .order_by(t.c.bucket_start_s))
        if sites is None:
            return stmt.where(t.c.bucket_start_s >= since_s, t.c.bucket_start_s <= until_s)
        return stmt.where(t.c.bucket_start_s.in_(cls._bucket_starts(kind, source, since_s,
                                                                    until_s)),
                          t.c.src_site_id >= sites[0], t.c.src_site_id < sites[1])

    @staticmethod
    def _bucket_starts(kind: str, source: str, since_s: float | sa.BindParameter[Any],
                       until_s: float | sa.BindParameter[Any]
                       ) -> sa.Select[Any]:
        """The distinct bucket starts of one kind and source in [since_s, until_s].

        A loose index scan, as a recursive query: each step seeks the next
        larger start in the primary key, O(d log b) for d distinct starts
        among b buckets, where ``SELECT DISTINCT`` would read all b. Taking
        the starts stored rather than those today's bucket width implies
        also finds buckets written under another width.
        """
        t = metric_buckets
        in_window = (t.c.kind == kind, t.c.source == source, t.c.bucket_start_s <= until_s)
        starts = (sa.select(sa.func.min(t.c.bucket_start_s).label("start_s"))
                  .where(*in_window, t.c.bucket_start_s >= since_s)
                  .cte("bucket_starts", recursive=True))
        after = (sa.select(sa.func.min(t.c.bucket_start_s))
                 .where(*in_window, t.c.bucket_start_s > starts.c.start_s).scalar_subquery())
        starts = starts.union_all(sa.select(after).where(starts.c.start_s.is_not(None)))
        return sa.select(starts.c.start_s).where(starts.c.start_s.is_not(None))

    def _arrow_uri(self) -> str | None:
        """The URI ADBC reads this connection's database by, or None for the cursor.

        The one place the window readers differ by database: ADBC's SQLite
        driver (an optional dependency, ``adbc-driver-sqlite``) opens a file
        of its own, so it serves SQLite files only, read-only; PostgreSQL,
        an in-memory SQLite and a missing ADBC use the connection's cursor.
        """
        from pathlib import Path

        path = self.conn.engine.url.database
        if (self.conn.dialect.name != "sqlite" or not path or path == ":memory:"
                or path.startswith("file:") or not Path(path).is_file()):
            return None
        try:
            import adbc_driver_sqlite.dbapi  # noqa: F401
        except ImportError:
            return None
        return f"{Path(path).resolve().as_uri()}?mode=ro"

    def _read_arrow(self, uri: str, shares: list[list[dict[str, tuple[str, list[Any]]]]]
                    ) -> list[list[dict[str, np.ndarray | None]]]:
        """Run each share's statements on a thread and ADBC connection of its own.

        A share holds, per source, its statement (SQL, positional parameters)
        in each layout of :meth:`_window_select`; a reader's statements run
        in one transaction (ADBC's connections do not autocommit), so the
        layouts of a source read the same rows.
        """
        from concurrent.futures import ThreadPoolExecutor

        import adbc_driver_sqlite.dbapi as adbc

        # The same patience with a busy database as this connection has.
        busy_ms = int(self.conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one())

        def read(share: list[dict[str, tuple[str, list[Any]]]]
                 ) -> list[dict[str, np.ndarray | None]]:
            out: list[dict[str, np.ndarray | None]] = []
            with adbc.connect(uri) as conn, conn.cursor() as cur:
                cur.execute(f"PRAGMA busy_timeout = {busy_ms}")

                def run(statement: tuple[str, list[Any]]) -> list[np.ndarray]:
                    # One Arrow batch per statement: no chunks to join afterwards.
                    cur.adbc_statement.set_options(
                        **{"adbc.sqlite.query.batch_rows": str(1 << 24)})
                    cur.execute(*statement)
                    table = cur.fetch_arrow_table()
                    if any(column.null_count for column in table.columns):
                        raise _NotPacked
                    return [np.asarray(column.to_numpy()) for column in table.columns]

                for statements in share:
                    out.append(_arrow_link_columns(run, statements, self._LINK_COLUMNS))
            return out

        with ThreadPoolExecutor(len(shares)) as pool:
            return list(pool.map(read, shares))

    def _driver_rows(self, stmt: sa.Select[Any]) -> list[tuple[Any, ...]]:
        """``stmt``'s rows as the driver's cursor gives them: plain tuples, no Row objects."""
        result = self.conn.execute(stmt)
        try:
            return result.cursor.fetchall() if result.cursor is not None else []
        finally:
            result.close()

    def _read_cursor(self, statements: list[sa.Select[Any]]) -> list[list[np.ndarray]]:
        """Run the statements on this connection; the columns of each, as arrays."""
        # One record per row, typed per column: link ids stay exact integers.
        dtype = np.dtype(list(self._LINK_COLUMNS))
        out = []
        for stmt in statements:
            rows = self._driver_rows(stmt)
            records = np.fromiter(rows, dtype, count=len(rows))
            out.append([np.ascontiguousarray(records[name]) for name, _ in self._LINK_COLUMNS])
        return out


def _add_to_buckets(ins: Any) -> Any:
    """``ins`` (an INSERT into ``metric_buckets``) adding to a bucket already stored."""
    t = metric_buckets
    return ins.on_conflict_do_update(
        index_elements=list(BUCKET_KEY),
        set_={
            "count": t.c.count + ins.excluded.count,
            "value_sum": t.c.value_sum + ins.excluded.value_sum,
            "weight_sum": t.c.weight_sum + ins.excluded.weight_sum,
            "weighted_value_sum": t.c.weighted_value_sum + ins.excluded.weighted_value_sum,
            "last_ts_s": sa.case((ins.excluded.last_ts_s > t.c.last_ts_s,
                                  ins.excluded.last_ts_s), else_=t.c.last_ts_s),
        })


@lru_cache(maxsize=2)
def _staged_sql(table: str) -> str:
    """The INSERT ... SELECT that copies a staged table (``samples`` or ``buckets``)
    into its own, compiled for SQLite.

    The staged tables are plain rowid tables; ``WHERE true`` is SQLite's
    rule for an upsert fed by a SELECT (it tells the parser the ON CONFLICT
    is the INSERT's, not a join's). Samples are taken in ``origin_key``
    order, the buckets as staged (see :meth:`MetricsDB._add_staged`).
    """
    columns = STAGING_TABLES[table]
    staged = sa.table(table, *(sa.column(c) for c in columns), schema=_STAGING)
    source = sa.select(*staged.c).where(sa.true())
    if table == "samples":
        source = source.order_by(staged.c.origin_key, sa.literal_column("rowid"))
        stmt = (sqlite.insert(metric_samples).from_select(list(columns), source)
                .on_conflict_do_nothing(index_elements=["origin_key"]))
    else:
        stmt = _add_to_buckets(sqlite.insert(metric_buckets).from_select(list(columns), source))
    return str(stmt.compile(dialect=sqlite.dialect()))


# A packed link and count (``link * _COUNT_RANGE + count``) fits in int64 while
# the links do, that is for site ids below _PACKED_SPAN.
_COUNT_BITS = 31
_COUNT_RANGE = 2**_COUNT_BITS
_PACKED_SPAN = 2**16


class _NotPacked(Exception):
    """A statement gave nulls (a count outside the packing): read the full layout."""


def _arrow_link_columns(run: Callable[[tuple[str, list[Any]]], list[np.ndarray]],
                        statements: dict[str, tuple[str, list[Any]]],
                        link_columns: tuple[tuple[str, Any], ...]
                        ) -> dict[str, np.ndarray | None]:
    """One source's share as :meth:`MetricsDB.window_links` gives it, from ``run``'s
    columns of its ``packed`` statement (and ``value_sum`` if needed), or of its
    ``full`` one where there is no packed one or a count did not fit."""
    packed = None
    if "packed" in statements:
        with suppress(_NotPacked):
            packed, weight_sum, weighted_value_sum = run(statements["packed"])
    # Floats where a sum went past int64: the full columns then, as for a NULL.
    if packed is not None and (not len(packed) or packed.dtype.kind == "i"):
        packed = packed.astype(np.int64, copy=False)
        weight_sum = weight_sum.astype(np.float64, copy=False)
        weighted_value_sum = weighted_value_sum.astype(np.float64, copy=False)
        value_sum = None
        if _needs_value_sum(weight_sum, weighted_value_sum):
            (value_sum,) = run(statements["value_sum"])
            value_sum = value_sum.astype(np.float64, copy=False)
        # packed >= 0 (link >= 0, count in [0, _COUNT_RANGE)): a shift and a mask
        # split it as // and % would, several times faster.
        return {"link": packed >> _COUNT_BITS, "count": packed & (_COUNT_RANGE - 1),
                "value_sum": value_sum, "weight_sum": weight_sum,
                "weighted_value_sum": weighted_value_sum}
    full = run(statements["full"])
    return {name: np.asarray(column, dtype=dtype)
            for (name, dtype), column in zip(link_columns, full, strict=True)}


def _marked_range(marks: dict[tuple[str, str], tuple[int, int]]) -> tuple[int, int]:
    """The starts some mark covers, as one range (a write outside it touches no block)."""
    return min(f for f, _ in marks.values()), max(t for _, t in marks.values())


def _joined(blocks: dict[str, np.ndarray], rows: dict[str, np.ndarray | None],
            names: Sequence[str]) -> dict[str, np.ndarray | None]:
    """One share's chunk: its links' buckets from blocks, then from rows (later starts),
    so each link's buckets stay oldest first. ``rows`` in the full layout."""
    if not len(rows["link"]):  # type: ignore[arg-type]
        return dict(blocks)
    if not len(blocks["link"]):
        return rows
    return {name: np.concatenate([blocks[name], rows[name]]) for name in names}


def _needs_value_sum(weight_sum: np.ndarray, weighted_value_sum: np.ndarray) -> bool:
    """Whether a link of these buckets may need the plain mean (``value_sum / count``).

    A link takes its weighted mean where its summed weights are > 0 and the
    mean is a number (``netbroker.metrics._window_mean``). When every
    bucket's weight is > 0 and finite, and both sums stay far from overflow
    even over all the buckets together, every link's weights sum above 0
    and its weighted sum is finite: no link needs ``value_sum``. O(b).
    """
    if not len(weight_sum):
        return False
    bound = 1e300 / len(weight_sum)
    return not (bool(np.all((weight_sum > 0) & (weight_sum < bound)))
                and bool(np.all(np.abs(weighted_value_sum) < bound)))


def _bound(statement: tuple[str, tuple[tuple[str, Any], ...]], window: dict[str, float]
           ) -> tuple[str, list[Any]]:
    """A :func:`_share_sql` statement with its window's parameters filled in."""
    sql, params = statement
    return sql, [window.get(name, value) for name, value in params]


@lru_cache(maxsize=256)
def _share_sql(kind: str, source: str, site_span: int, sites: tuple[int, int],
               layout: str = "full") -> tuple[str, tuple[tuple[str, Any], ...]]:
    """A reader's window statement compiled for SQLite, the window left open.

    Returns the SQL and its positional parameters as (name, value) pairs,
    ``since_s`` and ``until_s`` to be filled in. Compiling the recursive
    statement costs ~2.5 ms, several times per matrix; the window moves
    with the clock, the rest of the key does not. ``layout`` as
    :meth:`MetricsDB._window_select` takes it.
    """
    stmt = MetricsDB._window_select(kind, source, sa.bindparam("since_s"),
                                    sa.bindparam("until_s"), site_span, sites, layout)
    compiled = stmt.compile(dialect=sqlite.dialect())
    return str(compiled), tuple((name, compiled.params[name])
                                for name in compiled.positiontup or ())

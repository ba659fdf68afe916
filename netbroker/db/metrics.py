"""MetricsDB: network metric samples and their time buckets, on one open connection.

Ingestion is the hot path (a million FTS records is an ordinary day), so
it runs as few statements as it can: per chunk of samples, one insert that
skips rows already stored (``ON CONFLICT DO NOTHING``) and one additive
upsert (``ON CONFLICT DO UPDATE``) of the buckets the new rows touch. On
SQLite a chunk comes staged (``netbroker.common.sample_rows.StagedChunk``: an
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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import lru_cache
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection

from netbroker.common.sample_rows import (
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
from netbroker.db.engine import insert_for
from netbroker.db.schema import (
    BLOCK_ARRAYS,
    metric_block_marks,
    metric_bucket_blocks,
    metric_buckets,
    metric_samples,
)

# The pure row functions live in netbroker.common.sample_rows; named here too, where
# the writer that takes their rows is.
__all__ = ["SAMPLE_COLUMNS", "MetricsDB", "SampleChunk", "StagedChunk", "fold_into_buckets",
           "origin_key", "prepare_chunk"]

assert tuple(c.name for c in metric_buckets.primary_key) == BUCKET_KEY, "fold's key order"
_INGEST_LOCK = 0x6E62_6D65  # "nbme": the advisory lock key of metric ingestion
# SQLite page cache while a batch is written, in KiB (PRAGMA cache_size takes
# -KiB): a million FTS records update ~0.5 GB of B-tree pages, in no order a
# 64 MiB cache can follow, and each miss is a read. Memory only, given back
# when the batch is written; durability settings are not touched. 1 GiB
# rather than 256 MiB: a million records need it (bench/ingest.py measures
# the batch).
_BATCH_CACHE_KIB = 1024 * 1024
_STAGING = "nb_staging"  # the schema a staged chunk is attached as, on SQLite


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

        For the writes of one large batch (see ``_BATCH_CACHE_KIB``; its
        effect is measured by ``bench/ingest.py``). The connection's own size
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
                    self._sqlite().deserialize(
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

    def add_chunk(self, chunk: SampleChunk | StagedChunk, bucket_s: int,
                  inserted: list[bool] | None = None) -> int:
        """Insert a prepared chunk's rows not stored yet, and fold those into the buckets.

        The caller holds :meth:`lock_for_ingest`; ``bucket_s`` is the width
        ``chunk`` was prepared with; a :class:`StagedChunk` only where
        :meth:`stages`. Returns how many rows were new. ``inserted``, when
        given, receives one flag per row, in the order given, whenever not
        every row was new (it stays empty when all were): which records of
        the chunk were stored (``collectors.ingest``).

        Notes
        -----
        Rows go in with ``ON CONFLICT DO NOTHING``, in ``origin_key`` order:
        the inserts then walk the key's unique index from one end to the
        other instead of jumping about it (the buckets too are in key
        order). When every row went in (the
        usual case) the chunk's buckets are added as prepared; otherwise the
        rows inserted are read back by id (under the ingestion lock new ids
        are all above the highest id before the insert) and only those are
        folded, again in their given order, so bucket sums add up in input
        order either way. One insert per row and one upsert per bucket.
        A staged chunk goes the same way through :meth:`_add_staged`.
        """
        if isinstance(chunk, StagedChunk):
            return self._add_staged(chunk, bucket_s, inserted)
        rows = chunk.rows
        if not rows:
            return 0
        t = metric_samples
        before = self._max_sample_id()
        stmt = insert_for(self.conn, t).on_conflict_do_nothing(index_elements=["origin_key"])
        if self._executemany(stmt, SAMPLE_COLUMNS, chunk.by_key) == len(rows):
            self._add_to_buckets(chunk.buckets)
            return len(rows)
        return self._fold_new(rows, before, bucket_s, inserted)

    def _add_staged(self, chunk: StagedChunk, bucket_s: int,
                    inserted: list[bool] | None = None) -> int:
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
        self._sqlite().deserialize(chunk.image, name=_STAGING)
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
        return self._fold_new([tuple(r) for r in staged], before, bucket_s, inserted)

    def _fold_new(self, rows: Sequence[tuple[Any, ...]], before: int, bucket_s: int,
                  inserted: list[bool] | None = None) -> int:
        """Fold into the buckets the ``rows`` just inserted (ids above ``before``); their count.

        Under the ingestion lock the new ids are all above the highest id
        before the insert; a row repeated in ``rows`` went in once, and is
        folded once, in the order given. ``inserted`` as for :meth:`add_chunk`.
        """
        t = metric_samples
        new_keys = set(self.conn.execute(
            sa.select(t.c.origin_key).where(t.c.id > before)).scalars())
        kept = []
        for r in rows:
            new = r[0] in new_keys
            if new:
                new_keys.discard(r[0])
                kept.append(r)
            if inserted is not None:
                inserted.append(new)
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
        self._executemany(_add_to_buckets(insert_for(self.conn, metric_buckets)),
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

    def block_buckets(self, kind: str, source: str, through_s: int, keep_from_s: int,
                      marks: dict[tuple[str, str], tuple[int, int]] | None = None) -> int:
        """Block the bucket starts of ``kind`` and ``source`` up to ``through_s``.

        Writes the block of each start in (the mark's ``through_s``,
        ``through_s``], or from ``keep_from_s`` where there is no mark yet;
        drops the blocks before ``keep_from_s``; moves the mark. Returns the
        blocks written. The caller holds :meth:`lock_for_ingest`, so no
        ingestion writes the rows between their read and their block's
        write; ``marks`` is :meth:`block_marks` read under it (read here if
        not given). A mark that would not move writes nothing: no statement at
        all. O(b) in the bucket rows of the new starts, one start in memory
        at a time.
        """
        mark = (self.block_marks() if marks is None else marks).get((kind, source))
        if mark is not None and mark == (max(mark[0], keep_from_s), max(mark[1], through_s)):
            return 0  # nothing closed since, nothing to drop
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
        ins = insert_for(self.conn, m).values(kind=kind, source=source, from_s=keep,
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

    def _block_chunk(self, kind: str, source: str, since_s: float, through_s: float,
                     site_span: int, src_site_ids: Sequence[int] | None = None
                     ) -> dict[str, np.ndarray]:
        """The blocks of starts in [since_s, through_s] as one :meth:`window_links`
        chunk, the oldest start first; ``src_site_ids`` keeps only links from those
        sites. O(l) in the links copied."""
        b = metric_bucket_blocks
        dtypes = dict(BLOCK_ARRAYS)
        names = ("src_site_id", "dst_site_id", "count", "value_sum", "weight_sum",
                 "weighted_value_sum")
        result = self.conn.execute(
            sa.select(*(b.c[f"{name}_array"] for name in names))
            .where(b.c.kind == kind, b.c.source == source, b.c.bucket_start_s >= since_s,
                   b.c.bucket_start_s <= through_s)
            .order_by(b.c.bucket_start_s))
        pieces = [[np.frombuffer(blob, dtypes[name]) for name, blob in zip(names, row,
                                                                            strict=True)]
                  for row in result]
        columns = ([c[0] if len(c) == 1 else np.concatenate(c) for c in zip(*pieces,
                                                                           strict=True)]
                   if pieces else [np.empty(0, dtypes[name]) for name in names])
        if src_site_ids is not None:
            keep = np.isin(columns[0], np.asarray(list(src_site_ids), np.int64))
            columns = [c[keep] for c in columns]
        src, dst, count, value_sum, weight_sum, weighted_value_sum = columns
        return {"link": src.astype(np.int64) * site_span + dst,
                "count": count.astype(np.int64, copy=False),
                "value_sum": value_sum.astype(np.float64, copy=False),
                "weight_sum": weight_sum.astype(np.float64, copy=False),
                "weighted_value_sum": weighted_value_sum.astype(np.float64, copy=False)}

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

    def newest_sample_per_source(self) -> list[tuple[str, float]]:
        """(source, timestamp of its newest stored sample, Unix s) for every source."""
        rows = self.conn.execute(sa.select(metric_samples.c.source,
                                           sa.func.max(metric_samples.c.ts_s))
                                 .group_by(metric_samples.c.source))
        return [(source, float(ts)) for source, ts in rows]

    # The columns of window_links and their types, in the order selected.
    _LINK_COLUMNS = (("link", np.int64), ("count", np.int64), ("value_sum", np.float64),
                     ("weight_sum", np.float64), ("weighted_value_sum", np.float64))

    def window_links(self, kind: str, sources: Sequence[str], since_s: float, until_s: float,
                     site_span: int, src_site_ids: Sequence[int] | None = None
                     ) -> list[dict[str, np.ndarray]]:
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
        src_site_ids : sequence of int, optional
            Keep only the links leaving these sites (default: every link).

        Returns
        -------
        list of dict of ndarray
            Per source, its buckets as a dict with one element per bucket in
            each of ``link`` and ``count`` (int64), ``value_sum``,
            ``weight_sum`` and ``weighted_value_sum`` (float64). The buckets of
            a link are oldest first, as :meth:`window` gives them.

        Notes
        -----
        Everything is read on this connection, through the driver the
        engine was made with. A second SQLite library in the process (an
        ADBC driver carries its own copy) does not share the first one's
        POSIX locks, so closing a connection of one drops the locks of the
        other's; the next process to close the database then deletes the
        WAL the service still writes to, and committed writes are lost.

        Where the window starts inside a source's blocks (the aggregate
        cycle's copies of closed starts, :meth:`block_buckets`), the starts
        up to its mark come from blocks, one row per start, and only the
        later starts from rows. A start is read whole from one or the other,
        so each start's buckets are those of one moment. O(s + l) for s
        blocked starts and l links in them, plus O(b) for the b bucket rows
        of the open starts (one range scan of the primary key per source).
        """
        names = [name for name, _ in self._LINK_COLUMNS]
        blocked = self._blocked_through(kind, sources, since_s, until_s)
        # Where blocks serve a source, its rows are those of the starts after them.
        selects = [self._window_select(kind, s, blocked[s] + 1 if s in blocked else since_s,
                                       until_s, site_span, src_site_ids) for s in sources]
        chunks = [dict(zip(names, columns, strict=True))
                  for columns in self._read_cursor(selects)]
        for i, source in enumerate(sources):
            if source in blocked:
                block = self._block_chunk(kind, source, since_s, blocked[source], site_span,
                                          src_site_ids)
                chunks[i] = _joined(block, chunks[i], names)
        return chunks

    @staticmethod
    def _window_select(kind: str, source: str, since_s: float, until_s: float,
                       site_span: int, src_site_ids: Sequence[int] | None = None
                       ) -> sa.Select[Any]:
        """The statement of one source's window, in :attr:`_LINK_COLUMNS`, key order
        (only the links leaving ``src_site_ids`` when given)."""
        t = metric_buckets
        link = sa.literal(site_span, sa.BigInteger) * t.c.src_site_id + t.c.dst_site_id
        stmt = (sa.select(link, t.c.count, t.c.value_sum, t.c.weight_sum,
                          t.c.weighted_value_sum)
                .where(t.c.kind == kind, t.c.source == source,
                       t.c.bucket_start_s >= since_s, t.c.bucket_start_s <= until_s)
                .order_by(t.c.bucket_start_s))
        if src_site_ids is not None:
            stmt = stmt.where(t.c.src_site_id.in_(list(src_site_ids)))
        return stmt

    @staticmethod
    def _bucket_starts(kind: str, source: str, since_s: float, until_s: float
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

    def _sqlite(self) -> Any:
        """The driver's own connection (sqlite3's: ``deserialize`` into a schema)."""
        return self.conn.connection.driver_connection

    def _driver_rows(self, stmt: sa.Select[Any]) -> list[tuple[Any, ...]]:
        """``stmt``'s rows as the driver's cursor gives them: plain tuples, no Row objects."""
        result = self.conn.execute(stmt)
        try:
            rows = result.cursor.fetchall() if result.cursor is not None else []
            return rows  # type: ignore[return-value]  # the drivers' fetchall is a list
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


def _marked_range(marks: dict[tuple[str, str], tuple[int, int]]) -> tuple[int, int]:
    """The starts some mark covers, as one range (a write outside it touches no block)."""
    return min(f for f, _ in marks.values()), max(t for _, t in marks.values())


def _joined(blocks: dict[str, np.ndarray], rows: dict[str, np.ndarray],
            names: Sequence[str]) -> dict[str, np.ndarray]:
    """One source's chunk: its buckets from blocks, then from rows (later starts),
    so each link's buckets stay oldest first."""
    if not len(rows["link"]):
        return dict(blocks)
    if not len(blocks["link"]):
        return rows
    return {name: np.concatenate([blocks[name], rows[name]]) for name in names}

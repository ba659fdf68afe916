"""Ingestion: read a batch, map hosts to sites, store the new samples, report.

One batch is one transaction, and one batch is written at a time (see
``MetricsDB.lock_for_ingest``). Every record read ends in exactly one of
the :class:`RecordCounts`: stored; a duplicate (every sample of it seen
before, same source and origin id: it changes nothing); unmapped (a host
the registry does not know: counted and listed, never fatal); too old; not
a link (a server summary, a map packet, metadata: what it is is counted);
rejected (with its position and the reason). The counts add up to the
records read, and the report says which shapes they were read as.

Too old, by default, means older than the raw retention: the raw rows of
such samples would be pruned at once, so a second ingest could no longer
recognise them as duplicates. A backfill (``backfill=True``, or an explicit
``since_s``) keeps them: the buckets keep their sums, the raw rows go at
the next prune (``netbroker network prune`` or the service's cycle), and
ingesting the same records again after that prune would count them twice.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine

from collectors.parsing import (
    CHUNK,
    PARSERS,
    ChunkJob,
    ParseCounts,
    parsed_elsewhere,
    parsed_here,
    parser_for,
    work_bytes,
)
from collectors.records import Rejected, Source
from netbroker.common.config import MetricsSettings
from netbroker.common.observability import COLLECTOR_RECORDS
from netbroker.common.sample_rows import SampleChunk, StagedChunk
from netbroker.db import begin_immediate
from netbroker.db.grid import GridDB
from netbroker.db.metrics import MetricsDB

__all__ = ["CHUNK", "PARALLEL_MIN_BYTES", "PARSERS", "IngestReport", "RecordCounts", "ingest",
           "parser_for"]

# Inputs this large are parsed in a second process (two for batches of
# collectors.parsing.SPLIT_MIN_BYTES): about 150,000 FTS records, 2-4 s of work
# on one core. Smaller ones stay in this one: the child's start (~0.1 s, it
# imports no database layer) and the hand-over of the batch would eat much of
# what it saves, and one process is simpler to follow.
PARALLEL_MIN_BYTES = 128 * 2**20


@dataclass
class RecordCounts:
    """What became of the records read; the six outcomes add up to ``read``.

    ``stored``: at least one sample of the record was new. ``duplicate``:
    every sample of it was stored before. ``unmapped``: an end maps to no
    site. ``too_old``: all its samples are older than what the batch keeps.
    ``not_a_link``: it measures no link. ``rejected``: it cannot be used.
    """

    read: int = 0
    stored: int = 0
    duplicate: int = 0
    unmapped: int = 0
    too_old: int = 0
    not_a_link: int = 0
    rejected: int = 0


@dataclass
class IngestReport:
    """What one batch did, per record and per sample.

    Per sample (a record gives one per kind it measures): ``samples`` read,
    ``stored``, ``duplicates``, ``unmapped_samples`` and
    ``unmapped`` (per host reference), ``too_old``. Per record: ``records``
    (:class:`RecordCounts`), ``rejected`` (each with its position and
    reason), ``not_a_link`` (per what they are), ``shapes`` (every record
    read, by the shape it was read as) and ``layouts`` (documents per
    framing). ``kept_from_s``: samples older than this were too old (None
    when a backfill kept all).
    """

    source: str
    samples: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    unmapped: Counter[str] = field(default_factory=Counter)
    unmapped_samples: int = 0
    too_old: int = 0
    records: RecordCounts = field(default_factory=RecordCounts)
    not_a_link: Counter[str] = field(default_factory=Counter)
    shapes: Counter[str] = field(default_factory=Counter)
    layouts: Counter[str] = field(default_factory=Counter)
    kept_from_s: float | None = None

    @property
    def usable(self) -> bool:
        """Whether a record read is in the database now: stored, or stored before."""
        return self.records.stored + self.records.duplicate > 0

    def merge(self, counts: ParseCounts) -> None:
        """Add what parsing counted (everything but the stores and duplicates)."""
        self.samples += counts.samples
        self.rejected.extend(counts.rejected)
        self.unmapped.update(counts.unmapped)
        self.unmapped_samples += counts.unmapped_samples
        self.too_old += counts.too_old
        self.not_a_link.update(counts.not_a_link)
        self.shapes.update(counts.shapes)
        self.layouts.update(counts.layouts)
        r = self.records
        r.unmapped += counts.unmapped_records
        r.too_old += counts.too_old_records
        r.not_a_link += sum(counts.not_a_link.values())
        r.rejected += len(counts.rejected)
        r.read += counts.records

    def as_dict(self, max_rejected: int = 100, max_hosts: int = 20) -> dict[str, Any]:
        """The report for ``--json`` and the API: the rejections and unmapped hosts
        capped at ``max_rejected`` and ``max_hosts`` (the most frequent first)."""
        kept = (None if self.kept_from_s is None
                else datetime.fromtimestamp(self.kept_from_s, UTC).isoformat())
        return {
            "source": self.source, "samples": self.samples, "stored": self.stored,
            "duplicates": self.duplicates, "rejected": len(self.rejected),
            "unmapped_samples": self.unmapped_samples, "too_old": self.too_old,
            "unmapped_hosts": dict(self.unmapped.most_common(max_hosts)),
            "unmapped_hosts_total": len(self.unmapped),
            "rejections": [{"position": r.position, "reason": r.reason,
                            "origin_id": r.origin_id, "shape": r.shape}
                           for r in self.rejected[:max_rejected]],
            "records": asdict(self.records),
            "shapes": dict(self.shapes.most_common()),
            "layout": dict(self.layouts.most_common()),
            "not_a_link": dict(self.not_a_link.most_common()),
            "kept_from": kept, "usable": self.usable,
        }


def ingest(engine: Engine, source: Source | str, data: bytes | str,
           settings: MetricsSettings | None = None, now_s: float | None = None,
           on_progress: Callable[[int], None] | None = None,
           parallel: bool | None = None, since_s: float | None = None,
           backfill: bool = False) -> IngestReport:
    """Read ``data`` as records of ``source`` and store its new samples.

    Parameters
    ----------
    engine : Engine
    source : Source or str
        ``fts``, ``perfsonar``, ``xrootd`` or ``nws``.
    data : bytes or str
        The records in the source's own format, in any layout its reader
        takes (``collectors.layout`` for the JSON sources).
    settings : MetricsSettings, optional
        Bucket width and raw retention (defaults when omitted).
    now_s : float, optional
        The present, epoch seconds (tests pin it); default ``time.time()``.
    on_progress : callable, optional
        Called with the number of parsed items (samples and rejections) so
        far, after every chunk written (for progress bars).
    parallel : bool, optional
        Parse in a second process (or two) while this one writes
        (``collectors.parsing``); by default for inputs of
        :data:`PARALLEL_MIN_BYTES` or more (weighed by
        ``collectors.parsing.work_bytes``). The outcome is the same either way.
    since_s : float, optional
        Keep the samples from this time on (epoch s), however old: a backfill
        from there. Default: from the raw retention back from ``now_s``.
    backfill : bool
        Keep every sample, however old (``since_s`` is then ignored).

    Returns
    -------
    IngestReport
        Its ``records`` add up to the records read.

    Raises
    ------
    ValueError
        ``source`` is not one netbroker reads.

    Notes
    -----
    O(n) in the records: one parse each, a cached site look-up per host,
    then batched inserts (see ``MetricsDB.add_chunk``). Parsing, mapping,
    sorting and folding are a third to a half of the work, and need no
    database: a large batch has them done by a second process (two for a
    larger one, ``collectors.parsing.split_job``), one chunk
    ahead of the writer, so two cores share it.
    """
    source = Source(source)
    if source not in PARSERS:
        raise ValueError(f"no parser for source {source.value!r}")
    settings = settings or MetricsSettings()
    now_s = time.time() if now_s is None else now_s
    oldest_s = (-math.inf if backfill else since_s if since_s is not None
                else now_s - settings.raw_retention_days * 86400)
    report = IngestReport(source.value, kept_from_s=None if backfill else oldest_s)
    bucket_s = settings.bucket_minutes * 60
    if parallel is None:
        parallel = work_bytes(source, len(data)) >= PARALLEL_MIN_BYTES
    with begin_immediate(engine) as conn:
        store = MetricsDB(conn)
        store.lock_for_ingest()
        lookup = GridDB(conn).site_lookup()
        job = ChunkJob(source, data, lookup, oldest_s, bucket_s, CHUNK, store.stages())
        with store.large_batch(), (parsed_elsewhere(job) if parallel
                                   else parsed_here(job)) as parsed:
            for chunk, progress, sizes in parsed.chunks:
                _write_chunk(store, chunk, bucket_s, sizes, report)
                if on_progress is not None:
                    on_progress(progress)
            report.merge(parsed.counts())
        report.duplicates -= report.stored
    _count_outcomes(report)
    return report


def _write_chunk(store: MetricsDB, chunk: SampleChunk | StagedChunk, bucket_s: int,
                 sizes: Sequence[int], report: IngestReport) -> None:
    """Write one chunk and count its records: stored when a sample of theirs went in.

    Its rows come record by record (``sizes``: each record's rows in turn);
    the usual chunk goes in whole, one in which some rows were stored before
    is told apart row by row (``MetricsDB.add_chunk``'s ``inserted``).
    """
    inserted: list[bool] = []
    new = store.add_chunk(chunk, bucket_s, inserted)
    report.stored += new
    report.duplicates += chunk.size
    records = report.records
    if new == chunk.size:
        records.stored += len(sizes)
        return
    at = 0
    for size in sizes:
        if any(inserted[at:at + size]):
            records.stored += 1
        else:
            records.duplicate += 1
        at += size


def _count_outcomes(report: IngestReport) -> None:
    """The batch's outcomes in the ``netbroker_collector_records`` counter (samples
    stored, duplicate, unmapped and too old; records rejected and not a link)."""
    for outcome, n in (("stored", report.stored), ("duplicate", report.duplicates),
                       ("rejected", len(report.rejected)),
                       ("unmapped", report.unmapped_samples), ("too_old", report.too_old),
                       ("not_a_link", report.records.not_a_link)):
        if n:
            COLLECTOR_RECORDS.labels(report.source, outcome).inc(n)

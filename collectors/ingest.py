"""Ingestion: parse a batch, map hosts to sites, store the new samples, report.

One batch is one transaction, and one batch is written at a time (see
``MetricsDB.lock_for_ingest``). Every record is checked: the bad ones are
reported with their position and reason, the good ones of the same batch
are stored, and records seen before (same source and origin id) are counted
as duplicates and change nothing. Hosts the registry does not know are
counted and listed, never fatal. Samples older than the raw retention are
counted as too old and not stored: their raw rows would already be pruned,
so a second ingest could no longer recognise them as duplicates.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
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
)
from collectors.records import Rejected, Source
from netbroker.config import MetricsSettings
from netbroker.db import begin_immediate
from netbroker.db.grid import GridDB
from netbroker.db.metrics import MetricsDB
from netbroker.observability import COLLECTOR_RECORDS

__all__ = ["CHUNK", "PARALLEL_MIN_BYTES", "PARSERS", "IngestReport", "ingest", "parser_for"]

# Inputs this large are parsed in a second process (two for FTS batches of
# collectors.parsing.SPLIT_MIN_BYTES): about 150,000 FTS records, 2-4 s of work
# on one core. Smaller ones stay in this one: the child's start (~0.1 s, it
# imports no database layer) and the hand-over of the batch would eat much of
# what it saves, and one process is simpler to follow.
PARALLEL_MIN_BYTES = 128 * 2**20


@dataclass
class IngestReport:
    """What one batch did."""

    source: str
    samples: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    unmapped: Counter[str] = field(default_factory=Counter)
    unmapped_samples: int = 0
    too_old: int = 0

    def merge(self, counts: ParseCounts) -> None:
        """Add what parsing counted (everything but the stores and duplicates)."""
        self.samples += counts.samples
        self.rejected.extend(counts.rejected)
        self.unmapped.update(counts.unmapped)
        self.unmapped_samples += counts.unmapped_samples
        self.too_old += counts.too_old

    def as_dict(self, max_rejected: int = 100) -> dict[str, Any]:
        return {
            "source": self.source, "samples": self.samples, "stored": self.stored,
            "duplicates": self.duplicates, "rejected": len(self.rejected),
            "unmapped_samples": self.unmapped_samples, "too_old": self.too_old,
            "unmapped_hosts": dict(self.unmapped.most_common()),
            "rejections": [{"position": r.position, "reason": r.reason,
                            "origin_id": r.origin_id} for r in self.rejected[:max_rejected]],
        }


def ingest(engine: Engine, source: Source | str, data: bytes | str,
           settings: MetricsSettings | None = None, now_s: float | None = None,
           on_progress: Callable[[int], None] | None = None,
           parallel: bool | None = None) -> IngestReport:
    """Parse ``data`` as records of ``source`` and store its new samples.

    Parameters
    ----------
    engine : Engine
    source : Source or str
        ``fts``, ``perfsonar``, ``xrootd`` or ``nws``.
    data : bytes or str
        The records in the source's own format.
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
        :data:`PARALLEL_MIN_BYTES` or more. The outcome is the same either way.

    Returns
    -------
    IngestReport

    Raises
    ------
    ValueError
        ``source`` is not one netbroker parses.

    Notes
    -----
    O(n) in the records: one parse each, a cached site look-up per host,
    then batched inserts (see ``MetricsDB.add_chunk``). Parsing, mapping,
    sorting and folding are a third to a half of the work, and need no
    database: a large batch has them done by a second process (two for a
    large FTS batch, ``collectors.parsing.split_job``), one chunk
    ahead of the writer, so two cores share it.
    """
    source = Source(source)
    if source not in PARSERS:
        raise ValueError(f"no parser for source {source.value!r}")
    settings = settings or MetricsSettings()
    oldest_s = (time.time() if now_s is None else now_s) - settings.raw_retention_days * 86400
    report = IngestReport(source.value)
    bucket_s = settings.bucket_minutes * 60
    if parallel is None:
        parallel = len(data) >= PARALLEL_MIN_BYTES
    with begin_immediate(engine) as conn:
        store = MetricsDB(conn)
        store.lock_for_ingest()
        lookup = GridDB(conn).site_lookup()
        job = ChunkJob(source, data, lookup, oldest_s, bucket_s, CHUNK, store.stages())
        with store.large_batch(), (parsed_elsewhere(job) if parallel
                                   else parsed_here(job)) as parsed:
            for chunk, progress in parsed.chunks:
                report.stored += store.add_chunk(chunk, bucket_s)
                report.duplicates += chunk.size
                if on_progress is not None:
                    on_progress(progress)
            report.merge(parsed.counts())
        report.duplicates -= report.stored
    for outcome, n in (("stored", report.stored), ("duplicate", report.duplicates),
                       ("rejected", len(report.rejected)),
                       ("unmapped", report.unmapped_samples), ("too_old", report.too_old)):
        if n:
            COLLECTOR_RECORDS.labels(source.value, outcome).inc(n)
    return report

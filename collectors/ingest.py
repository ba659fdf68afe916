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

import importlib
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine

from collectors.mapping import SiteResolver
from collectors.records import MetricKind, ParsedSample, Rejected, Source
from netbroker.config import MetricsSettings
from netbroker.db import begin_immediate
from netbroker.db.grid import GridDB
from netbroker.db.metrics import MetricsDB, origin_key
from netbroker.observability import COLLECTOR_RECORDS

__all__ = ["PARSERS", "IngestReport", "ingest", "parser_for"]

Parser = Callable[[bytes | str], Iterator[ParsedSample | Rejected]]

CHUNK = 20_000  # samples per round trip of inserts: bounded memory on large files

# Enum member -> its plain string, for rows: a dict look-up costs less than ``.value``.
_PLAIN: dict[Source | MetricKind, str] = {m: m.value for m in (*Source, *MetricKind)}

# Each source's module has a ``parse``; a batch imports only the one it needs.
PARSERS: dict[Source, str] = {
    Source.FTS: "collectors.fts",
    Source.PERFSONAR: "collectors.perfsonar",
    Source.XROOTD: "collectors.xrootd",
    Source.NWS: "collectors.nws",
}


def parser_for(source: Source) -> Parser:
    """The ``parse`` function of ``source``'s collector module."""
    parse: Parser = importlib.import_module(PARSERS[source]).parse
    return parse


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
           on_progress: Callable[[int], None] | None = None) -> IngestReport:
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
    then batched inserts (see ``MetricsDB.add_samples``).
    """
    source = Source(source)
    if source not in PARSERS:
        raise ValueError(f"no parser for source {source.value!r}")
    settings = settings or MetricsSettings()
    oldest_s = (time.time() if now_s is None else now_s) - settings.raw_retention_days * 86400
    report = IngestReport(source.value)
    bucket_s = settings.bucket_minutes * 60
    with begin_immediate(engine) as conn:
        store = MetricsDB(conn)
        store.lock_for_ingest()
        resolver = SiteResolver(GridDB(conn).site_lookup())
        with store.batch_cache():
            for rows in _chunks(parser_for(source)(data), resolver, oldest_s, report):
                report.stored += store.add_samples(rows, bucket_s)
                report.duplicates += len(rows)
                if on_progress is not None:
                    on_progress(report.samples + len(report.rejected))
        report.duplicates -= report.stored
    for outcome, n in (("stored", report.stored), ("duplicate", report.duplicates),
                       ("rejected", len(report.rejected)),
                       ("unmapped", report.unmapped_samples), ("too_old", report.too_old)):
        if n:
            COLLECTOR_RECORDS.labels(source.value, outcome).inc(n)
    return report


def _chunks(parsed: Iterator[ParsedSample | Rejected], resolver: SiteResolver,
            oldest_s: float, report: IngestReport) -> Iterator[list[tuple[Any, ...]]]:
    """Rows to store, :data:`CHUNK` at a time, counting what is not stored on the way.

    A record repeated in the batch is left to the database: its second
    insert conflicts and counts as a duplicate. The loop runs once per
    sample (millions a batch), hence the local names and counters: the
    report's counts are brought up to date before each chunk is yielded.
    """
    resolve, key_of, plain = resolver.resolve, origin_key, _PLAIN
    rows: list[tuple[Any, ...]] = []
    samples = unmapped = too_old = 0
    src_ref = dst_ref = src = dst = None
    for item in parsed:
        if isinstance(item, Rejected):
            report.rejected.append(item)
            continue
        samples += 1
        source, origin_id, item_src, item_dst, kind, value, ts_s, weight, unit = item
        if item_src is not src_ref or item_dst is not dst_ref:  # samples of one record share them
            src_ref, dst_ref = item_src, item_dst
            src, dst = resolve(src_ref), resolve(dst_ref)
        if src is None or dst is None:
            unmapped += 1
            for ref, site in ((src_ref, src), (dst_ref, dst)):
                if site is None:
                    report.unmapped[f"{ref.by}:{ref.value}"] += 1
            continue
        if ts_s < oldest_s:
            too_old += 1
            continue
        source = plain[source]
        rows.append((key_of(source, origin_id), source, origin_id, src, dst, plain[kind], value,
                     ts_s, weight, unit))  # SAMPLE_COLUMNS order
        if len(rows) >= CHUNK:
            report.samples += samples
            report.unmapped_samples += unmapped
            report.too_old += too_old
            samples = unmapped = too_old = 0
            yield rows
            rows = []
    report.samples += samples
    report.unmapped_samples += unmapped
    report.too_old += too_old
    if rows:
        yield rows

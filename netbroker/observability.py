"""Observability: Prometheus metrics and structured JSON logs with a request id.

Two kinds of metrics:

- process metrics, counted where things happen: the dispatch latency
  histogram (``netbroker_dispatch_seconds``, observed by the dispatcher on
  every acquisition) and collector records per source and outcome
  (``netbroker_collector_records_total``, counted by ingestion);
- database metrics, read when ``/metrics`` is scraped by :class:`DbCollector`:
  jobs per state and queue, each periodic cycle's last duration, its runs
  and failures (``netbroker_cycle_runs_total``,
  ``netbroker_cycle_failures_total``), its last success and whether it is
  overdue, and how old each metric source's newest sample is. They hold
  for the whole service, however many processes serve it.

Logs: :class:`JsonFormatter` writes one JSON object per record with the
time, level, logger, message and the id of the HTTP request being served
(:data:`request_id`, set by the API's middleware from ``X-Request-ID`` or
made up), so a request can be followed across the log.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine

from netbroker.db.cycles import CycleDB, is_overdue
from netbroker.db.schema import jobs, metric_samples, queues

__all__ = [
    "COLLECTOR_RECORDS",
    "DISPATCH_SECONDS",
    "DbCollector",
    "JsonFormatter",
    "configure_logging",
    "request_id",
    "service_registry",
]

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

DISPATCH_SECONDS = Histogram(
    "netbroker_dispatch_seconds", "Time to hand a job to a pilot (or say there is none).",
    ["protocol"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
COLLECTOR_RECORDS = Counter(
    "netbroker_collector_records", "Metric records ingested, by source and outcome.",
    ["source", "outcome"])


class DbCollector(Collector):
    """Gauges read from the database at scrape time (one short query each)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        jobs_g = GaugeMetricFamily("netbroker_jobs", "Jobs per state and queue.",
                                   labels=["state", "queue"])
        duration = GaugeMetricFamily("netbroker_cycle_last_duration_seconds",
                                     "Duration of each cycle's last run.", labels=["cycle"])
        # Counters kept in the database (each run adds one), so every process's
        # /metrics gives the same counts, whichever process ran the cycle.
        runs = CounterMetricFamily("netbroker_cycle_runs", "Runs of each cycle.",
                                   labels=["cycle"])
        failures = CounterMetricFamily("netbroker_cycle_failures",
                                       "Failed runs of each cycle (the lease included).",
                                       labels=["cycle"])
        succeeded = GaugeMetricFamily("netbroker_cycle_last_success_timestamp_seconds",
                                      "When each cycle last ended well, Unix time.",
                                      labels=["cycle"])
        overdue = GaugeMetricFamily("netbroker_cycle_overdue",
                                    "1 where a cycle missed two of its periods.",
                                    labels=["cycle"])
        stale = GaugeMetricFamily("netbroker_metric_staleness_seconds",
                                  "Age of each metric source's newest stored sample.",
                                  labels=["source"])
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(jobs.c.status, queues.c.name, sa.func.count())
                                .outerjoin(queues, jobs.c.queue_id == queues.c.id)
                                .group_by(jobs.c.status, queues.c.name)).all()
            cycles = CycleDB(conn).list_cycles()
            newest = conn.execute(sa.select(metric_samples.c.source,
                                            sa.func.max(metric_samples.c.ts_s))
                                  .group_by(metric_samples.c.source)).all()
        for status, queue, n in rows:
            jobs_g.add_metric([str(status), queue or ""], n)
        now = time.time()
        at = datetime.fromtimestamp(now, UTC)
        for c in cycles:
            duration.add_metric([c["name"]], c["last_duration_s"] or 0.0)
            runs.add_metric([c["name"]], c["runs"])
            failures.add_metric([c["name"]], c["failures"])
            if c["last_succeeded_at"] is not None:
                succeeded.add_metric([c["name"]], c["last_succeeded_at"].timestamp())
            overdue.add_metric([c["name"]], float(is_overdue(c, at)))
        for source, ts in newest:
            stale.add_metric([source], max(0.0, now - float(ts)))
        yield from (jobs_g, duration, runs, failures, succeeded, overdue, stale)


def service_registry(engine: Engine) -> CollectorRegistry:
    """A registry with the process metrics and this service's database gauges."""
    from prometheus_client import REGISTRY

    registry = CollectorRegistry()
    registry.register(_Forward(REGISTRY))
    registry.register(DbCollector(engine))
    return registry


class _Forward(Collector):
    """The process-wide registry's metrics (histogram, counters, process, GC)."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        yield from self.source.collect()


# The attributes every LogRecord has: anything else on a record came as ``extra``.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName", "color_message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per log record, with the current request id.

    >>> record = logging.LogRecord("netbroker", logging.INFO, __file__, 1, "hello %s",
    ...                            ("pilot",), None)
    >>> token = request_id.set("abc123")
    >>> fields = json.loads(JsonFormatter().format(record))
    >>> request_id.reset(token)
    >>> fields["message"], fields["request_id"], fields["level"]
    ('hello pilot', 'abc123', 'info')
    >>> record.cycle = "clouds"  # as logging's extra={"cycle": "clouds"} sets it
    >>> json.loads(JsonFormatter().format(record))["cycle"]
    'clouds'
    """

    def format(self, record: logging.LogRecord) -> str:
        out = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(),
               "level": record.levelname.lower(), "logger": record.name,
               "message": record.getMessage()}
        rid = request_id.get()
        if rid:
            out["request_id"] = rid
        # What the caller gave as ``extra`` (ids: cycle, job_id, ...), by name.
        out.update({k: v for k, v in record.__dict__.items()
                    if k not in _RECORD_FIELDS and k not in out})
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: str, fmt: str) -> None:
    """Log to stderr, as JSON lines (``fmt == "json"``) or as text."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())

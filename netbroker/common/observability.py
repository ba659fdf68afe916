"""Observability: Prometheus metrics and structured JSON logs with a request id.

Two kinds of metrics:

- process metrics, counted where things happen: the dispatch latency
  histogram (``netbroker_dispatch_seconds``, observed by the dispatcher on
  every acquisition) and collector records per source and outcome
  (``netbroker_collector_records_total``, counted by ingestion);
- database metrics, read when ``/metrics`` is scraped (``netbroker.api.prometheus``):
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
from datetime import UTC, datetime

from prometheus_client import Counter, Histogram

__all__ = [
    "COLLECTOR_RECORDS",
    "DISPATCH_BATCH_CALLS",
    "DISPATCH_SECONDS",
    "JsonFormatter",
    "configure_logging",
    "request_id",
]

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

DISPATCH_SECONDS = Histogram(
    "netbroker_dispatch_seconds", "Time to hand a job to a pilot (or say there is none).",
    ["protocol"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
DISPATCH_BATCH_CALLS = Histogram(
    "netbroker_dispatch_batch_calls",
    "Pilots' calls run together in one statement (PostgreSQL), by call.",
    ["call"], buckets=(1, 2, 4, 8, 16, 32, 64))
COLLECTOR_RECORDS = Counter(
    "netbroker_collector_records", "Metric records ingested, by source and outcome.",
    ["source", "outcome"])


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

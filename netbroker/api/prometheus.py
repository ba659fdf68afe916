"""What ``/metrics`` serves: the process metrics and gauges read from the database.

:class:`DbCollector` reads, at scrape time, jobs per state and queue, each
periodic cycle's last duration, runs, failures, last success and whether it
is overdue, and how old each metric source's newest sample is. They hold for
the whole service, however many processes serve it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine

from netbroker.db.cycles import CycleDB, is_overdue
from netbroker.db.jobs import JobDB
from netbroker.db.metrics import MetricsDB

__all__ = ["DbCollector", "service_registry"]


class DbCollector(Collector):
    """Gauges read from the database at scrape time (one short query each)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        jobs_g = GaugeMetricFamily("netbroker_jobs", "Jobs per state and queue.",
                                   labels=["state", "queue"])
        duration, succeeded, overdue = (
            GaugeMetricFamily(name, doc, labels=["cycle"]) for name, doc in (
                ("netbroker_cycle_last_duration_seconds", "Duration of each cycle's last run."),
                ("netbroker_cycle_last_success_timestamp_seconds",
                 "When each cycle last ended well, Unix time."),
                ("netbroker_cycle_overdue", "1 where a cycle missed two of its periods.")))
        # Counters kept in the database (each run adds one), so every process's
        # /metrics gives the same counts, whichever process ran the cycle.
        runs, failures = (
            CounterMetricFamily(name, doc, labels=["cycle"]) for name, doc in (
                ("netbroker_cycle_runs", "Runs of each cycle."),
                ("netbroker_cycle_failures", "Failed runs of each cycle (the lease included).")))
        stale = GaugeMetricFamily("netbroker_metric_staleness_seconds",
                                  "Age of each metric source's newest stored sample.",
                                  labels=["source"])
        with self.engine.connect() as conn:
            rows = JobDB(conn).count_by_status_and_queue()
            cycles = CycleDB(conn).list_cycles()
            newest = MetricsDB(conn).newest_sample_per_source()
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

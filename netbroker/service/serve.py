"""Running the service: schema upgrade once, the periodic cycles, uvicorn.

This is an edge: it wires the core's scheduler to the collectors' pull
cycle, which the core may not import.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import uvicorn
from sqlalchemy.engine import Engine

from collectors.pull import pull_all
from dispatcher.core import watchdog
from dispatcher.events import release_silent_ranges
from netbroker.api import create_app
from netbroker.clouds.membership import recompute
from netbroker.common.config import Settings
from netbroker.common.observability import configure_logging
from netbroker.db import create_db_engine, describe_url, upgrade
from netbroker.network.metrics import block_closed_buckets, prune_samples
from netbroker.placement.pd2p import run_cycle as run_pd2p
from netbroker.service.scheduler import Cycle, build_scheduler, process_holder
from netbroker.workload.priority import recompute as recompute_priorities
from netbroker.workload.rebrokerage import rebroker
from netbroker.workload.runtime_config import effective_settings
from netbroker.workload.tasks import broker_tasks, finish_tasks

__all__ = ["run_service", "service_cycles"]

log = logging.getLogger(__name__)


def run_service(settings: Settings, config_path: Path | None = None) -> None:
    """Upgrade the schema (if configured) and serve until interrupted.

    With several workers uvicorn imports the app in each process, so the
    workers read their settings from ``$NETBROKER_CONFIG`` and the
    environment; the schema is upgraded here, once, before they start.
    """
    svc = settings.service
    configure_logging(svc.log_level, svc.log_format)
    engine = create_db_engine(settings.database)
    if svc.upgrade_schema_at_start:
        result = upgrade(engine)
        log.info("database %s at schema %s", describe_url(settings.database.url), result.after)
    scheduler = None
    if svc.run_cycles:
        scheduler = build_scheduler(engine, service_cycles(settings), process_holder())
        scheduler.start()
    try:
        if svc.workers == 1:
            uvicorn.run(create_app(settings, engine), host=svc.host, port=svc.port,
                        log_level=svc.log_level, log_config=None, access_log=svc.access_log)
            return
        if config_path is not None:
            os.environ["NETBROKER_CONFIG"] = str(config_path)
        uvicorn.run("netbroker.api.app:create_app_from_settings", factory=True, host=svc.host,
                    port=svc.port, workers=svc.workers, log_level=svc.log_level,
                    log_config=None, access_log=svc.access_log)
    finally:
        if scheduler is not None:
            scheduler.shutdown(wait=False)


def service_cycles(settings: Settings) -> list[Cycle]:
    """The periodic cycles a service runs: pull the archives, recompute the clouds,
    broker waiting tasks, rebroker waiting jobs, recompute priorities, PD2P, watch
    heartbeats, block closed buckets (aggregate), prune raw samples.

    Periods are fixed at start; each run reads the settings in force (with the
    operators' runtime changes), so a changed threshold counts at the next run.
    """

    def now(engine: Engine) -> Settings:
        return effective_settings(engine, settings)

    cycles = [Cycle("prune_samples", 6 * 3600,
                    lambda engine: prune_samples(engine, settings.metrics)),
              Cycle("aggregate", (settings.metrics.aggregate_minutes
                                  or settings.metrics.bucket_minutes) * 60,
                    lambda engine: block_closed_buckets(engine, settings.metrics)),
              Cycle("clouds", settings.clouds.recompute_minutes * 60,
                    lambda engine: recompute(engine, now(engine).clouds, settings.metrics)),
              Cycle("heartbeat_watchdog", settings.dispatcher.watchdog_minutes * 60,
                    lambda engine: (watchdog(engine, settings.dispatcher),
                                    release_silent_ranges(engine, settings.dispatcher))),
              Cycle("brokerage", settings.brokerage.cycle_minutes * 60,
                    lambda engine: (broker_tasks(engine, now(engine)), finish_tasks(engine))),
              Cycle("rebrokerage", settings.rebrokerage.cycle_minutes * 60,
                    lambda engine: rebroker(engine, now(engine))),
              Cycle("priority", settings.priority.cycle_minutes * 60,
                    lambda engine: recompute_priorities(engine, now(engine).priority)),
              Cycle("pd2p", settings.pd2p.cycle_minutes * 60,
                    lambda engine: run_pd2p(engine, now(engine)))]
    c = settings.collectors
    if c.fts_urls or c.esmond_urls or c.pscheduler_urls or c.xrootd_urls or c.nws_urls:
        cycles.append(Cycle("collect", c.cycle_minutes * 60,
                            lambda engine: pull_all(engine, c, settings.metrics)))
    return cycles

"""Running the service: schema upgrade once, then uvicorn with one or more workers."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import uvicorn

from netbroker.api import create_app
from netbroker.config import Settings
from netbroker.db import create_db_engine, describe_url, upgrade

__all__ = ["run_service"]

log = logging.getLogger(__name__)


def run_service(settings: Settings, config_path: Path | None = None) -> None:
    """Upgrade the schema (if configured) and serve until interrupted.

    With several workers uvicorn imports the app in each process, so the
    workers read their settings from ``$NETBROKER_CONFIG`` and the
    environment; the schema is upgraded here, once, before they start.
    """
    svc = settings.service
    logging.basicConfig(level=svc.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    engine = create_db_engine(settings.database)
    if svc.upgrade_schema_at_start:
        result = upgrade(engine)
        log.info("database %s at schema %s", describe_url(settings.database.url), result.after)
    if svc.workers == 1:
        uvicorn.run(create_app(settings, engine), host=svc.host, port=svc.port,
                    log_level=svc.log_level)
        return
    engine.dispose()
    if config_path is not None:
        os.environ["NETBROKER_CONFIG"] = str(config_path)
    uvicorn.run("netbroker.api.app:create_app_from_settings", factory=True, host=svc.host,
                port=svc.port, workers=svc.workers, log_level=svc.log_level)

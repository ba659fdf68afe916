"""The FastAPI application: routers, error handlers, health.

``create_app`` builds it around an engine; ``netbroker serve`` runs it
under uvicorn after bringing the schema to head (once, before any worker
starts). Later issues add the dispatcher, the monitor pages and metrics.
"""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Engine

import netbroker
from dispatcher import api as dispatcher_api
from dispatcher import panda
from netbroker.api import grid, network, replication, tasks
from netbroker.api.deps import EngineDep
from netbroker.api.errors import register_error_handlers
from netbroker.api.models import Health
from netbroker.config import Settings, load_settings
from netbroker.db import create_db_engine, current_revision, head_revision

__all__ = ["create_app", "create_app_from_settings"]


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    """Build the app. The engine defaults to one made from ``settings.database``."""
    app = FastAPI(
        title="netbroker",
        version=netbroker.__version__,
        summary="Network-aware brokerage and data placement for computing grids.",
    )
    app.state.settings = settings
    app.state.engine = engine if engine is not None else create_db_engine(settings.database)
    register_error_handlers(app)
    app.include_router(grid.router)
    app.include_router(network.router)
    app.include_router(tasks.router)
    app.include_router(replication.router)
    app.include_router(dispatcher_api.router)
    app.include_router(panda.router)
    app.add_api_route("/healthz", _health, methods=["GET"], response_model=Health,
                      tags=["service"], responses={503: {"model": Health}})
    return app


def create_app_from_settings() -> FastAPI:
    """Factory for uvicorn workers: settings from ``$NETBROKER_CONFIG`` and the env."""
    return create_app(load_settings())


def _health(engine: EngineDep) -> JSONResponse:
    """Liveness and readiness: the database answers and the schema is at head."""
    head = head_revision()
    try:
        with engine.connect() as conn:
            conn.execute(sa.select(1))
        current = current_revision(engine)
    except sa.exc.DBAPIError:
        body = Health(status="unavailable", database="down", schema_revision=None,
                      head_revision=head)
        return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "5"})
    ok = current == head
    body = Health(status="ok" if ok else "schema behind", database="ok",
                  schema_revision=current, head_revision=head)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

"""The FastAPI application: the routers, error handlers, health, docs and metrics.

``create_app`` builds it around an engine: the JSON API (``/api/v1``), the
dispatcher (the PanDA wire protocol and its JSON twin), the monitor pages
(``/monitor``, and ``/`` leads there), ``/metrics``, ``/healthz`` and
``/readyz``, the API's documentation (``/docs``, ``/redoc``, from files
packaged with it: no CDN) and its problem types (``/problems/{slug}``),
behind a request-id middleware; the PanDA wire protocol's POSTs are served
by ``dispatcher.edge.WireEdge`` before FastAPI's layers and routing (see
:class:`NetbrokerAPI`). ``netbroker serve`` runs it under uvicorn after
bringing the schema to head (once, before any worker starts).
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.engine import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import netbroker
from dispatcher import api as dispatcher_api
from dispatcher import fastpath, panda
from dispatcher.edge import WireEdge
from netbroker.api import config, grid, monitor, monitor_grid, network, replication, tasks
from netbroker.api.errors import problem_types, register_error_handlers
from netbroker.api.input_guard import InputGuard
from netbroker.api.models import Health
from netbroker.api.openapi import document_errors_and_security
from netbroker.api.pages import STATIC_DIR, render
from netbroker.api.prometheus import service_registry
from netbroker.common.config import Settings, load_settings
from netbroker.common.observability import configure_logging, request_id
from netbroker.db import create_db_engine, current_revision, head_revision
from netbroker.web.deps import EngineDep

__all__ = ["NetbrokerAPI", "create_app", "create_app_from_settings"]


class NetbrokerAPI(FastAPI):
    """The FastAPI app, entered through the request ids and the pilots' wire edge.

    Starlette wraps every request in its own layers (server errors, FastAPI's
    exception telemetry and body limit) before the user middleware; a
    pilot's getJob and updateJob need none of them (the edge answers their
    errors itself, and an exception no handler takes still ends in a 500,
    from the server). So the outermost layers are ours:
    :class:`RequestIdMiddleware`, then ``dispatcher.edge.WireEdge``, then,
    for every other request, the whole FastAPI app as before.
    """

    wire_edge: WireEdge

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self  # as Starlette sets it, for the edge's handlers
        await self._outer(scope, receive, send)

    def serve_wire_posts(self, routes: dict[str, Any]) -> None:
        """Put the edge for ``routes`` (path -> handler) in front of the app."""
        self.wire_edge = WireEdge(super().__call__, routes)
        self._outer = RequestIdMiddleware(self.wire_edge)


def create_app(settings: Settings, engine: Engine | None = None) -> NetbrokerAPI:
    """Build the app. The engine defaults to one made from ``settings.database``."""
    app = NetbrokerAPI(
        lifespan=_lifespan,
        title="netbroker",
        version=netbroker.__version__,
        summary="Network-aware brokerage and data placement for computing grids.",
        docs_url=None, redoc_url=None,  # served below from the packaged assets
    )
    app.state.settings = settings
    app.state.engine = engine if engine is not None else create_db_engine(settings.database)
    register_error_handlers(app)
    # Routes are matched in order: the pilots' hot path and the health check first.
    app.include_router(panda.router)
    app.include_router(dispatcher_api.router)
    app.add_api_route("/healthz", _health, methods=["GET"], response_model=Health,
                      tags=["service"], responses={503: {"model": Health}})
    app.add_api_route("/readyz", _ready, methods=["GET"], response_model=Health,
                      tags=["service"], responses={503: {"model": Health}})
    app.include_router(grid.router)
    app.include_router(network.router)
    app.include_router(tasks.router)
    app.include_router(replication.router)
    app.include_router(config.router)
    app.include_router(monitor.router)
    app.include_router(monitor_grid.router)
    app.mount("/monitor/static", StaticFiles(directory=STATIC_DIR), name="static")
    _add_docs(app)
    registry = service_registry(app.state.engine)

    def metrics() -> Response:
        """Prometheus metrics: jobs per state and queue, dispatch latency, cycles,
        collector records, metric staleness."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route("/metrics", metrics, methods=["GET"], tags=["service"],
                      response_class=Response)
    # Text no backend stores, refused before any route (the pilots' routes clean theirs).
    app.add_middleware(InputGuard, max_json_body_bytes=settings.service.max_json_body_bytes,
                       unread_prefixes=("/api/v1/pilot/", "/api/v1/metrics/"))
    # The pilots' calls past FastAPI's layers and routing (dispatcher.edge), inside
    # the request ids, which every answer gets.
    app.serve_wire_posts(panda.WIRE_POSTS)
    _declare_public_reads(app)
    return app


VENDOR = "/monitor/static/vendor"


def _add_docs(app: FastAPI) -> None:
    """``/`` (to the monitor), ``/docs`` and ``/redoc`` from the packaged assets
    (``static/vendor``), and ``/problems/{slug}``, what each problem type means."""

    def root() -> RedirectResponse:
        return RedirectResponse("/monitor", status_code=307)

    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title="netbroker API",
            swagger_js_url=f"{VENDOR}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{VENDOR}/swagger-ui/swagger-ui.css",
            swagger_favicon_url="data:,",
            swagger_ui_parameters={"persistAuthorization": True})

    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title="netbroker API",
                              redoc_js_url=f"{VENDOR}/redoc/redoc.standalone.js",
                              redoc_favicon_url="data:,", with_google_fonts=False)

    def problem(request: Request, slug: str) -> HTMLResponse:
        known = {p.slug: p for p in problem_types()}
        if slug not in known:
            raise HTTPException(404, f"unknown problem type {slug!r}")
        return render(request, "problem.html", kind=known[slug], kinds=list(known.values()))

    for path, endpoint in (("/", root), ("/docs", docs), ("/redoc", redoc),
                           ("/problems/{slug}", problem)):
        app.add_api_route(path, endpoint, methods=["GET"], include_in_schema=False)


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """While serving: the dispatcher's engine for calls on the event loop and its
    batchers of acquisitions and reports (PostgreSQL), or its batcher of writes (SQLite;
    ``dispatcher.fastpath``)."""
    app.state.dispatch_engine = fastpath.create_dispatch_engine(app.state.engine)
    app.state.dispatch_writers = fastpath.create_write_batcher(app.state.engine)
    app.state.dispatch_batchers = fastpath.create_batchers(app.state.engine,
                                                           app.state.dispatch_engine)
    # What is alive now (the modules, the app, their caches) stays for good: out of
    # the collector's way, so that a full collection walks what requests made since,
    # not every object of numpy, pandas and SQLAlchemy (a pause for every request
    # in flight).
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        fastpath.close_dispatch_engine(app.state.dispatch_engine)
        app.state.dispatch_engine = app.state.dispatch_writers = None
        app.state.dispatch_batchers = None


def _declare_public_reads(app: FastAPI) -> None:
    """Every route declares who may call it: writes name their roles where they are
    defined (``netbroker.web.auth``); reads are open to anyone, said here once, in
    the spec the app serves."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        for operations in schema.get("paths", {}).values():
            for method, operation in operations.items():
                if method == "get":
                    operation.setdefault("x-roles", ["public"])
        app.openapi_schema = document_errors_and_security(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


class RequestIdMiddleware:
    """Tag each request (``X-Request-ID`` if the client sent a sane one) for the logs,
    and echo the id on the answer. Plain ASGI: no per-request task or body copy."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"]
                      if k == b"x-request-id"), "")
        rid = given if 0 < len(given) <= 64 and given.isprintable() else os.urandom(16).hex()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []),
                                      (b"x-request-id", rid.encode("latin-1"))]
            await send(message)

        token = request_id.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)


def create_app_from_settings() -> NetbrokerAPI:
    """Factory for uvicorn workers: settings from ``$NETBROKER_CONFIG`` and the env."""
    settings = load_settings()
    configure_logging(settings.service.log_level, settings.service.log_format)
    return create_app(settings)


def _health(engine: EngineDep) -> JSONResponse:
    """Health: the database answers and the schema is at head (503 otherwise). The
    same check as ``/readyz``, kept under its old name for the tools that poll it."""
    return _probe(engine)


def _ready(engine: EngineDep) -> JSONResponse:
    """Ready to serve: the database is reachable and its schema is at the code's head
    revision; 503 (with Retry-After when the database is down) otherwise."""
    return _probe(engine)


def _probe(engine: Engine) -> JSONResponse:
    head = head_revision()
    try:
        current = current_revision(engine)  # a read: the database answers, or this raises
    except sa.exc.DBAPIError:
        body = Health(status="unavailable", database="down", schema_revision=None,
                      head_revision=head)
        return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "5"})
    ok = current == head
    body = Health(status="ok" if ok else "schema behind", database="ok",
                  schema_revision=current, head_revision=head)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

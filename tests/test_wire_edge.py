"""dispatcher.edge.WireEdge: the wire POSTs answered past FastAPI's routing, as FastAPI would."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.engine import Engine

from dispatcher import panda
from dispatcher.edge import WireEdge
from netbroker.api.app import create_app
from netbroker.common.config import Settings
from tests.conftest import LiveServer
from tests.test_dispatcher import add_jobs


class Refused(Exception):
    pass


class RefusedHard(Refused):
    pass


def edge_app() -> tuple[FastAPI, list[str]]:
    """An app whose /hot is served by the edge and registered with FastAPI too."""
    calls: list[str] = []
    app = FastAPI()

    async def hot(request: Request) -> Response:
        calls.append((await request.body()).decode())
        if request.headers.get("x-fail") == "refused":
            raise RefusedHard("no")
        if request.headers.get("x-fail") == "http":
            raise HTTPException(418, "teapot", headers={"X-Why": "tea"})
        if request.headers.get("x-fail") == "bug":
            raise ZeroDivisionError("bug")
        return Response(b"hot:" + request.url.path.encode())

    async def refused(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"refused": str(exc)}, status_code=409)

    app.add_api_route("/hot", hot, methods=["POST"])
    app.add_api_route("/cold", lambda: {"cold": True}, methods=["GET"])
    app.add_exception_handler(Refused, refused)
    app.add_middleware(WireEdge, routes={"/hot": hot})
    return app, calls


def call(app: FastAPI, method: str, path: str, raise_errors: bool = False,
         root_path: str = "", **kwargs: Any) -> httpx.Response:
    """One request to ``app`` in process (ASGI), no server."""
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_errors,
                                        root_path=root_path)
        async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
            return await client.request(method, path, **kwargs)
    return asyncio.run(go())


def test_the_edge_serves_its_paths_and_passes_the_rest_on() -> None:
    app, calls = edge_app()
    assert call(app, "POST", "/hot", content=b"a=1").text == "hot:/hot"
    assert calls == ["a=1"]
    assert call(app, "GET", "/cold").json() == {"cold": True}
    assert call(app, "GET", "/hot").status_code == 405  # FastAPI's answer, as before
    assert call(app, "POST", "/nowhere").status_code == 404


def test_exceptions_get_the_apps_own_answers() -> None:
    app, _ = edge_app()
    # a subclass of a handled exception: the base's handler, as Starlette picks it
    refused = call(app, "POST", "/hot", headers={"x-fail": "refused"})
    assert (refused.status_code, refused.json()) == (409, {"refused": "no"})
    teapot = call(app, "POST", "/hot", headers={"x-fail": "http"})
    assert (teapot.status_code, teapot.json()) == (418, {"detail": "teapot"})
    assert teapot.headers["x-why"] == "tea"
    assert call(app, "POST", "/hot", headers={"x-fail": "bug"}).status_code == 500


def test_an_unhandled_exception_goes_on_up() -> None:
    app, _ = edge_app()
    with pytest.raises(ZeroDivisionError):
        call(app, "POST", "/hot", raise_errors=True, headers={"x-fail": "bug"})


def test_paths_are_matched_below_the_root_path() -> None:
    app, calls = edge_app()
    assert call(app, "POST", "/panda/hot", root_path="/panda").status_code == 200
    assert len(calls) == 1


def test_the_service_answers_pilots_through_the_edge_with_request_ids(
        grid_engine: Engine) -> None:
    app = create_app(Settings(), grid_engine)
    assert app.wire_edge.routes == panda.WIRE_POSTS
    assert not [m for m in app.user_middleware if m.cls is WireEdge]  # in front, not inside
    assert set(panda.WIRE_POSTS) == {f"/server/panda/{name}" for name in (
        "getJob", "updateJob", "getEventRanges", "updateEventRanges")}
    (job_id,) = add_jobs(grid_engine, 1)
    with LiveServer(grid_engine) as server, httpx.Client(base_url=server.url) as http:
        got = http.post("/server/panda/getJob", data={"computingElement": "DESY-HH"},
                        headers={"Accept": "application/json", "X-Request-ID": "pilot-7"})
        assert got.json()["PandaID"] == job_id
        assert got.headers["x-request-id"] == "pilot-7"
        assert http.get("/server/panda/getJob").status_code == 405
        bad = http.post("/server/panda/updateJob", data={"jobId": "x", "state": "running"},
                        headers={"Accept": "application/json"})
        assert bad.status_code == 400 and bad.json()["StatusCode"] == 30
        spec = http.get("/openapi.json").json()["paths"]
        assert "/server/panda/getJob" in spec and "/server/panda/updateJob" in spec

"""One error shape for the whole JSON API (RFC 9457), pages for the monitor, the service's
surface (``/``, ``/readyz``, the spec's error schemas and bearer scheme), on both backends."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.engine import Engine

from netbroker.accounts import auth
from netbroker.api.errors import problem_types
from netbroker.registry import registry
from tests.conftest import LiveServer
from tests.factories import mini_grid, task_spec

PROBLEM_KEYS = {"type", "title", "status", "detail"}


def _problem(answer: httpx.Response, status: int, slug: str) -> dict[str, object]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = answer.json()
    assert set(body) >= PROBLEM_KEYS and body["status"] == status
    assert body["type"] == f"/problems/{slug}" and isinstance(body["detail"], str)
    return body


def test_every_api_error_is_a_problem_of_one_shape(engine: Engine) -> None:
    registry.import_grid_document(engine, mini_grid())
    token = auth.create_token(engine, "alice", "user")
    with LiveServer(engine, auth=True) as server, httpx.Client(
            base_url=server.url, timeout=30) as http:
        _problem(http.get("/api/v1/sites/NOWHERE"), 404, "unknown-site")
        _problem(http.get("/api/v1/tasks/77"), 404, "unknown-task")
        _problem(http.get("/api/v1/nothing-here"), 404, "not-found")
        _problem(http.delete("/api/v1/clouds"), 405, "method-not-allowed")
        bad = _problem(http.get("/api/v1/jobs", params={"status": "bogus", "limit": 0}), 422,
                       "invalid-request")
        assert bad["fields"] == ["status", "limit"]
        assert [e["loc"] for e in bad["errors"]] == [["query", "status"], ["query", "limit"]]
        unauthorized = _problem(http.post("/api/v1/tasks", json=task_spec()), 401,
                                "unauthorized")
        assert "bearer token" in str(unauthorized["detail"])
        assert http.post("/api/v1/tasks", json=task_spec()).headers["www-authenticate"] \
            == "Bearer"
        user = {"Authorization": f"Bearer {token}"}
        _problem(http.post("/api/v1/priority/boosts", json={"value": 1, "hours": 1,
                                                            "user": "a"}, headers=user),
                 403, "forbidden")
        other = _problem(http.post("/api/v1/tasks", json=task_spec(user="bob"), headers=user),
                         403, "forbidden")
        assert "bob" in str(other["detail"])
        refused = _problem(http.post("/api/v1/tasks", json=task_spec(user="alice", cores=0),
                                     headers=user), 422, "invalid-request")
        assert refused["fields"] == ["cores"]
        assert http.post("/api/v1/tasks", json=task_spec(user="alice"),
                         headers=user).status_code == 201
        exists = _problem(http.post("/api/v1/tasks", json=task_spec(user="alice"),
                                    headers=user), 409, "task-exists")
        assert exists["task_id"] == 1
        _problem(http.get("/api/v1/sites/%00"), 400, "invalid-text")
        _problem(http.get("/api/v1/replication/decisions", params={"after": "x"}), 400,
                 "invalid-decision")


def test_monitor_errors_are_pages_and_root_leads_to_the_monitor(grid_engine: Engine) -> None:
    with LiveServer(grid_engine) as server, httpx.Client(base_url=server.url,
                                                          timeout=30) as http:
        root = http.get("/", follow_redirects=False)
        assert root.status_code == 307 and root.headers["location"] == "/monitor"
        assert "Overview" in http.get("/", follow_redirects=True).text
        for path, status, words in [
                ("/monitor/jobs/9999", 404, "unknown job '9999'"),
                ("/monitor/tasks/9999", 404, "unknown task '9999'"),
                ("/monitor/nothing", 404, "Not Found"),
                ("/monitor/jobs?state=bogus", 400, "filter state='bogus'"),
                ("/monitor/tasks?status=bogus", 400, "filter status='bogus'")]:
            page = http.get(path)
            assert page.status_code == status, path
            assert page.headers["content-type"].startswith("text/html"), path
            assert words in page.text.replace("&#39;", "'"), path


def test_problem_types_are_described(client: httpx.Client) -> None:
    slugs = {p.slug for p in problem_types()}
    assert {"unknown-site", "invalid-request", "invalid-text", "task-exists",
            "storage-unavailable", "unauthorized", "invalid-filter"} <= slugs
    page = client.get("/problems/unknown-site")
    assert page.status_code == 200 and "Unknown site" in page.text
    assert 'href="/problems/invalid-request"' in page.text
    _problem(client.get("/problems/no-such-thing"), 404, "not-found")


def test_ready_when_the_database_answers_at_head(client: httpx.Client,
                                                 empty_db_url: str) -> None:
    from netbroker.db import create_db_engine

    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ok"
    engine = create_db_engine(empty_db_url)
    with LiveServer(engine) as server:
        behind = httpx.get(f"{server.url}/readyz", timeout=10)
    engine.dispose()
    assert behind.status_code == 503 and behind.json()["status"] == "schema behind"


def test_the_spec_names_the_problem_shapes_and_the_bearer_scheme(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert set(schemas["Problem"]["required"]) == PROBLEM_KEYS
    assert spec["components"]["securitySchemes"]["bearer"] == {
        **spec["components"]["securitySchemes"]["bearer"], "type": "http", "scheme": "bearer"}
    submit = spec["paths"]["/api/v1/tasks"]["post"]
    assert submit["security"] == [{"bearer": []}]
    assert submit["responses"]["422"]["content"]["application/problem+json"]["schema"] == {
        "$ref": "#/components/schemas/ValidationProblem"}
    assert "default" in submit["responses"]
    assert "security" not in spec["paths"]["/api/v1/clouds"]["get"]
    assert spec["paths"]["/server/panda/getJob"]["post"]["security"] == [{"bearer": []}]


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_load_their_assets_from_the_service(client: httpx.Client, path: str) -> None:
    page = client.get(path).text
    assert "cdn" not in page.lower() and "googleapis" not in page
    for asset in ("/monitor/static/vendor/swagger-ui/swagger-ui-bundle.js",
                  "/monitor/static/vendor/swagger-ui/swagger-ui.css") if path == "/docs" else (
                      "/monitor/static/vendor/redoc/redoc.standalone.js",):
        assert asset in page
        served = client.get(asset)
        assert served.status_code == 200 and len(served.content) > 100_000

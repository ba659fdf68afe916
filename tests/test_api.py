"""The read API of the grid registry, over real HTTP on 127.0.0.1, on both backends."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.engine import Engine

from tests.conftest import LiveServer


def test_health_reports_database_and_schema(client: httpx.Client) -> None:
    body = client.get("/healthz").raise_for_status().json()
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["schema_revision"] == body["head_revision"] is not None


def test_health_is_503_when_the_schema_is_behind(empty_db_url: str) -> None:
    from netbroker.db import create_db_engine

    engine = create_db_engine(empty_db_url)
    with LiveServer(engine) as server:
        response = httpx.get(f"{server.url}/healthz", timeout=10)
    engine.dispose()
    assert response.status_code == 503
    assert response.json()["status"] == "schema behind"


def test_clouds_list_every_cloud_with_its_tier1(client: httpx.Client) -> None:
    clouds = {c["name"]: c for c in client.get("/api/v1/clouds").raise_for_status().json()}
    assert len(clouds) == 12
    assert clouds["US"]["tier1"] == "BNL-ATLAS"
    assert clouds["UK"]["tier1"] == "RAL-LCG2"
    assert all(c["sites"] > 0 for c in clouds.values())


def test_sites_filter_by_cloud_tier_and_status(client: httpx.Client) -> None:
    de_t2 = client.get("/api/v1/sites", params={"cloud": "DE", "tier": 2}).json()
    assert de_t2 and all(s["cloud"] == "DE" and s["tier"] == 2 for s in de_t2)
    assert "DESY-HH" in {s["name"] for s in de_t2}
    offline = client.get("/api/v1/sites", params={"status": "offline"}).json()
    assert {s["name"] for s in offline} == {"RO-16-UAIC", "UKI-LT2-Brunel", "INFN-COSENZA"}


def test_cloud_route_lists_its_sites(client: httpx.Client) -> None:
    sites = client.get("/api/v1/clouds/CERN").raise_for_status().json()
    assert "CERN-PROD" in {s["name"] for s in sites}


def test_site_detail_has_hosts_queues_and_endpoints(client: httpx.Client) -> None:
    site = client.get("/api/v1/sites/FZK-LCG2").raise_for_status().json()
    assert site["tier"] == 1 and site["is_nucleus"] is True
    assert {e["kind"] for e in site["endpoints"]} == {"disk", "tape"}
    assert all(q["site"] == "FZK-LCG2" for q in site["queues"])
    assert any(h["role"] == "perfsonar" for h in site["hosts"])


def test_queues_filter_by_site(client: httpx.Client) -> None:
    queues = client.get("/api/v1/queues", params={"site": "DESY-HH"}).json()
    assert queues and {q["site"] for q in queues} == {"DESY-HH"}
    assert all(q["cores"] >= 1 and q["max_memory_mb"] > 0 for q in queues)


@pytest.mark.parametrize(("path", "status", "names"), [
    ("/api/v1/sites/NOWHERE", 404, "unknown site 'NOWHERE'"),
    ("/api/v1/sites?cloud=XX", 404, "unknown cloud 'XX'"),
    ("/api/v1/clouds/XX", 404, "unknown cloud 'XX'"),
    ("/api/v1/queues?site=NOWHERE", 404, "unknown site 'NOWHERE'"),
])
def test_unknown_names_are_404_naming_them(client: httpx.Client, path: str, status: int,
                                          names: str) -> None:
    response = client.get(path)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["detail"] == names and problem["status"] == status
    assert problem["type"].startswith("/problems/unknown-") and problem["title"].startswith(
        "Unknown ")


@pytest.mark.parametrize(("params", "field"), [
    ({"tier": 9}, "tier"),
    ({"tier": "one"}, "tier"),
    ({"status": "sleeping"}, "status"),
])
def test_bad_query_parameters_are_422_naming_the_field(client: httpx.Client,
                                                       params: dict[str, object],
                                                       field: str) -> None:
    response = client.get("/api/v1/sites", params=params)
    assert response.status_code == 422
    problem = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert problem["type"] == "/problems/invalid-request" and problem["fields"] == [field]
    assert problem["errors"][0]["loc"] == ["query", field]


def test_openapi_lists_the_routes(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").raise_for_status().json()["paths"]
    assert {"/healthz", "/api/v1/clouds", "/api/v1/sites", "/api/v1/sites/{name}",
            "/api/v1/queues"} <= set(paths)


def test_storage_down_is_503_with_retry_after(grid_engine: Engine, backend: str) -> None:
    from netbroker.db import create_db_engine

    if backend == "sqlite":
        broken = create_db_engine("sqlite:////nonexistent-dir/netbroker.db")
    else:
        broken = create_db_engine("postgresql+psycopg://nobody@/none?host=/nonexistent-dir")
    with LiveServer(broken) as server:
        response = httpx.get(f"{server.url}/api/v1/clouds", timeout=10)
        health = httpx.get(f"{server.url}/healthz", timeout=10)
    broken.dispose()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert health.status_code == 503

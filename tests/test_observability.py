"""Observability: Prometheus /metrics and request ids, on both backends."""

from __future__ import annotations

import json
import logging

import httpx
from sqlalchemy.engine import Engine

from netbroker.common.observability import JsonFormatter, request_id
from tests.conftest import LiveServer
from tests.factories import recent_fts_lines
from tests.test_dispatcher import add_jobs


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format, or None."""
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            got = dict(part.split("=", 1) for part in line[line.find("{") + 1:line.find("}")]
                       .split(",") if "=" in part) if "{" in line else {}
            if all(got.get(k) == f'"{v}"' for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_show_jobs_dispatch_latency_collectors_and_staleness(
        grid_engine: Engine) -> None:
    add_jobs(grid_engine, 3)
    with LiveServer(grid_engine) as server, \
            httpx.Client(base_url=server.url, timeout=10) as http:
        before = sample(http.get("/metrics").text, "netbroker_dispatch_seconds_count",
                        protocol="json") or 0.0
        got = http.post("/api/v1/pilot/jobs/acquire", json={"queue": "DESY-HH",
                                                            "disk_mb": 20000})
        assert got.json()["job"] is not None
        pushed = http.post("/api/v1/metrics/fts", content=recent_fts_lines() + b"\n{bad json")
        assert pushed.status_code == 200
        text = http.get("/metrics").text
    assert sample(text, "netbroker_jobs", state="activated", queue="DESY-HH") == 2
    assert sample(text, "netbroker_jobs", state="sent", queue="DESY-HH") == 1
    assert sample(text, "netbroker_dispatch_seconds_count", protocol="json") == before + 1
    assert (sample(text, "netbroker_collector_records_total", source="fts",
                   outcome="rejected") or 0) >= 1
    assert (sample(text, "netbroker_collector_records_total", source="fts",
                   outcome="stored") or 0) >= 1
    staleness = sample(text, "netbroker_metric_staleness_seconds", source="fts")
    assert staleness is not None and 0 <= staleness < 3600


def test_every_answer_carries_a_request_id(grid_engine: Engine) -> None:
    with LiveServer(grid_engine) as server, \
            httpx.Client(base_url=server.url, timeout=10) as http:
        given = http.get("/healthz", headers={"X-Request-ID": "trace-42"})
        made = http.get("/api/v1/clouds")
    assert given.headers["X-Request-ID"] == "trace-42"
    assert len(made.headers["X-Request-ID"]) == 32


def test_json_logs_carry_the_request_id() -> None:
    record = logging.LogRecord("netbroker.api", logging.WARNING, __file__, 1, "slow %d ms",
                               (250,), None)
    token = request_id.set("req-1")
    try:
        fields = json.loads(JsonFormatter().format(record))
    finally:
        request_id.reset(token)
    assert fields["message"] == "slow 250 ms" and fields["request_id"] == "req-1"
    assert fields["level"] == "warning" and fields["time"].endswith("+00:00")

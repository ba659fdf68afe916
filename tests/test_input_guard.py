"""Text no backend can store is refused with 400 before any route, on both backends:
NUL in a path, a query or a JSON body, a lone surrogate in a JSON body, a path
or query that is not UTF-8; nothing stored, and never a 500."""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from netbroker.db.schema import priority_boosts, tasks
from tests.factories import task_spec

pytestmark = pytest.mark.reliability


@pytest.mark.parametrize(("path", "words"), [
    ("/api/v1/jobs?user=a%00b", "query holds a NUL"),
    ("/monitor/jobs?site=%00", "query holds a NUL"),
    ("/api/v1/sites/%00", "path holds a NUL"),
    ("/api/v1/tasks?user=%ED%A0%80", "query is not UTF-8"),
    ("/api/v1/sites/%FF", "path is not UTF-8"),
    ("/cache/schedconfig/%00.all.json", "path holds a NUL"),
])
def test_a_nul_or_bad_utf8_in_the_url_is_400(client: httpx.Client, path: str,
                                              words: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 400, answer.text
    if path.startswith("/monitor"):  # the monitor's refusals are pages
        assert answer.headers["content-type"].startswith("text/html")
        assert words in answer.text and "Invalid text" in answer.text
        return
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["type"] == "/problems/invalid-text" and problem["status"] == 400
    assert words in problem["detail"]


@pytest.mark.parametrize(("path", "body", "words"), [
    ("/api/v1/tasks", b'{"name": "a\\u0000b", "user": "alice", "input_dataset": '
                      b'"data23:data23.AOD", "transformation": "t.sh"}', "NUL character"),
    ("/api/v1/tasks", b'{"name": "t1", "user": "x\\udc80y", "input_dataset": '
                      b'"data23:data23.AOD", "transformation": "t.sh"}',
     "lone surrogate (\\udc80)"),
    ("/api/v1/priority/boosts", b'{"value": 1, "hours": 1, "user": "a\\u0000"}', "NUL"),
    ("/api/v1/priority/boosts", b'{"value": 1, "hours": 1, "user": "\\uD83D"}',
     "lone surrogate"),
])
def test_a_nul_or_lone_surrogate_in_a_json_body_is_400_and_nothing_is_stored(
        client: httpx.Client, grid_engine: Engine, path: str, body: bytes,
        words: str) -> None:
    answer = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert words in answer.json()["detail"]
    with grid_engine.connect() as conn:
        for table in (tasks, priority_boosts):
            assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 0


def test_a_surrogate_pair_and_plain_unicode_pass(client: httpx.Client) -> None:
    made = client.post("/api/v1/priority/boosts", content=(
        b'{"value": 1, "hours": 1, "user": "\\ud83d\\ude00 J\\u00fcrgen"}'),
        headers={"Content-Type": "application/json"})
    assert made.status_code == 201, made.text
    assert made.json()["user_name"] == "\U0001f600 J\u00fcrgen"


def test_a_pilot_api_422_echoing_a_lone_surrogate_is_encodable(client: httpx.Client) -> None:
    """The pilot routes are not guarded (they clean free text); a name they refuse
    is a 422 whose echoed input shows U+FFFD in place of the surrogate."""
    answer = client.post("/api/v1/pilot/jobs/acquire", content=b'{"queue": "DESY\\udc80"}',
                         headers={"Content-Type": "application/json"})
    assert answer.status_code == 422
    (error,) = answer.json()["errors"]
    assert error["loc"] == ["body", "queue"] and error["input"] == "DESY\ufffd"


def test_a_json_body_past_the_limit_is_413(grid_engine: Engine) -> None:
    from netbroker.common.config import ServiceSettings, Settings
    from tests.conftest import LiveServer

    settings = Settings(service=ServiceSettings(max_json_body_bytes=4096))
    with LiveServer(grid_engine, settings) as server:
        answer = httpx.post(f"{server.url}/api/v1/tasks",
                            json=task_spec(parameters="x" * 5000), timeout=10)
    assert answer.status_code == 413
    assert answer.json()["type"] == "/problems/payload-too-large"
    assert "over the 4096 bytes" in answer.json()["detail"]

"""Bearer tokens and roles, on both backends: the whole route x role matrix from OpenAPI."""

from __future__ import annotations

import re

import httpx
import pytest
from sqlalchemy.engine import Engine

from netbroker.accounts import auth
from netbroker.accounts.auth import ROLES, create_token
from netbroker.common.errors import NetbrokerError
from netbroker.registry import registry
from tests.conftest import LiveServer
from tests.factories import mini_grid, task_spec
from tests.test_dispatcher import add_jobs

pytestmark = pytest.mark.roles


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def fill(path: str) -> str:
    """A concrete URL for a templated path: ids 1, a source name, anything else ``x``."""
    path = path.replace("{source}", "fts")
    path = re.sub(r"\{[a-z_]*id\}", "1", path)
    return re.sub(r"\{[^}]+\}", "x", path)


def test_every_write_admits_exactly_its_roles_and_reads_are_open(grid_engine: Engine) -> None:
    tokens = {role: create_token(grid_engine, f"t-{role}", role) for role in ROLES}
    checked = 0
    with LiveServer(grid_engine, auth=True) as server, \
            httpx.Client(base_url=server.url, timeout=30) as http:
        spec = http.get("/openapi.json").json()
        for path, operations in spec["paths"].items():
            for method, op in operations.items():
                url, roles = fill(path), op.get("x-roles")
                if method == "get":
                    assert roles == ["public"], f"GET {path} is a read: open to anyone"
                    assert http.get(url).status_code not in (401, 403), path
                    continue
                assert roles and "admin" in roles, f"{method} {path} declares no roles"
                assert http.request(method, url, json={}).status_code == 401, path
                bad = http.request(method, url, json={}, headers=bearer("nb_forged"))
                assert bad.status_code == 401 and bad.headers["WWW-Authenticate"] == "Bearer"
                for role, token in tokens.items():
                    code = http.request(method, url, json={}, headers=bearer(token)).status_code
                    if role in roles:
                        assert code not in (401, 403), (role, method, path, code)
                    else:
                        assert code == 403, (role, method, path, code)
                checked += 1
    assert checked >= 17  # every write route of the API was walked


def test_a_pilot_reports_only_on_its_own_jobs(grid_engine: Engine) -> None:
    (job_id,) = add_jobs(grid_engine, 1)
    mine, other = (create_token(grid_engine, name, "pilot") for name in ("pilot-a", "pilot-b"))
    with LiveServer(grid_engine, auth=True) as server, \
            httpx.Client(base_url=server.url, timeout=10) as http:
        got = http.post("/api/v1/pilot/jobs/acquire", headers=bearer(mine),
                        json={"queue": "DESY-HH", "disk_mb": 20000}).json()["job"]
        assert got["id"] == job_id and got["owner"] == "pilot-a"
        stolen = http.post(f"/api/v1/pilot/jobs/{job_id}/update", headers=bearer(other),
                           json={"state": "running"})
        assert stolen.status_code == 403 and "another pilot" in stolen.json()["detail"]
        wire = http.post("/server/panda/updateJob", headers={**bearer(other),
                                                            "Accept": "application/json"},
                         data={"jobId": str(job_id), "state": "running"})
        assert wire.status_code == 403
        assert http.post(f"/api/v1/pilot/jobs/{job_id}/update", headers=bearer(mine),
                         json={"state": "running"}).json()["status"] == "running"


def test_users_act_for_themselves_and_revoked_tokens_stop_working(engine: Engine) -> None:
    registry.import_grid_document(engine, mini_grid())
    alice, bob = (create_token(engine, name, "user") for name in ("alice", "bob"))
    with LiveServer(engine, auth=True) as server, \
            httpx.Client(base_url=server.url, timeout=10) as http:
        as_bob = http.post("/api/v1/tasks", headers=bearer(alice), json=task_spec(user="bob"))
        assert as_bob.status_code == 403
        made = http.post("/api/v1/tasks", headers=bearer(alice), json=task_spec(user="alice"))
        assert made.status_code == 201, made.text
        task_id = made.json()["id"]
        assert http.post(f"/api/v1/tasks/{task_id}/kill", headers=bearer(bob)
                         ).status_code == 403
        auth.revoke_token(engine, "alice")
        assert http.post(f"/api/v1/tasks/{task_id}/kill", headers=bearer(alice)
                         ).status_code == 401
    with pytest.raises(NetbrokerError, match="exists"):
        create_token(engine, "bob", "user")
    with pytest.raises(NetbrokerError, match="role 'root'"):
        create_token(engine, "x", "root")
    assert {t["name"]: t["revoked_at"] is not None for t in auth.list_tokens(engine)} == {
        "alice": True, "bob": False}

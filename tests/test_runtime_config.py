"""Runtime settings through the operator API, on both backends: validated, audited,
previewed, and in force at the next cycle."""

from __future__ import annotations

import time

import httpx
from sqlalchemy.engine import Engine

from collectors.ingest import ingest
from netbroker.accounts.auth import create_token
from netbroker.common.config import Settings
from netbroker.service.serve import service_cycles
from tests.conftest import LiveServer
from tests.factories import fts_transfers

FZK, MAN = "FZK-LCG2_DATADISK", "UKI-NORTHGRID-MAN-HEP_DATADISK"


def test_a_threshold_change_is_audited_previewed_and_used_by_the_next_cycle(
        grid_engine: Engine) -> None:
    end = time.time() - 60
    assert ingest(grid_engine, "fts", fts_transfers(FZK, MAN, 4.0, 4, end),
                  now_s=end + 60).stored == 8  # 4 MB/s: under the 5 MB/s to join DE
    operator = {"Authorization": f"Bearer {create_token(grid_engine, 'op', 'operator')}"}
    change = {"changes": {"clouds.min_mbytes_per_s_from_tier1": 3.0}}
    with LiveServer(grid_engine, auth=True) as server, \
            httpx.Client(base_url=server.url, timeout=60) as http:
        preview = http.post("/api/v1/config/preview", json=change, headers=operator).json()
        previewed = {(c["cloud"], c["site"], c["change"]) for c in preview["clouds"]}
        assert ("DE", "UKI-NORTHGRID-MAN-HEP", "joined") in previewed
        assert http.get("/api/v1/config/audit").json() == []  # the preview changed nothing

        refused = http.put("/api/v1/config", headers=operator, json={"changes": {
            "clouds.min_mbytes_per_s_from_tier1": -1, "brokerage.weight_data": 2.0}})
        assert refused.status_code == 422
        assert "clouds.min_mbytes_per_s_from_tier1" in refused.json()["detail"]
        assert refused.json()["fields"] == ["changes.clouds.min_mbytes_per_s_from_tier1"]
        assert refused.json()["errors"][0]["loc"] == [
            "body", "changes", "clouds.min_mbytes_per_s_from_tier1"]
        assert http.put("/api/v1/config", headers=operator, json={"changes": {
            "database.url": "sqlite:///x.db"}}).status_code == 422
        assert http.put("/api/v1/config", json=change).status_code == 401
        assert http.get("/api/v1/config/audit").json() == []  # refusals changed nothing

        done = http.put("/api/v1/config", headers=operator, json=change)
        assert done.status_code == 200, done.text
        (entry,) = http.get("/api/v1/config/audit").json()
        assert (entry["who"], entry["key"], entry["old"], entry["new"]) == (
            "op", "clouds.min_mbytes_per_s_from_tier1", 5.0, 3.0)
        shown = http.get("/api/v1/config").json()
        assert shown["settings"]["clouds"]["min_mbytes_per_s_from_tier1"] == 3.0
        assert shown["overrides"] == {"clouds.min_mbytes_per_s_from_tier1": 3.0}
    # The service's next cloud cycle runs with the new threshold.
    (cycle,) = [c for c in service_cycles(Settings()) if c.name == "clouds"]
    changes = cycle.job(grid_engine)
    assert {(c.cloud, c.site, c.change) for c in changes} == previewed  # type: ignore[union-attr]

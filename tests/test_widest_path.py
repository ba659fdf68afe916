"""The site graph where the design puts it: the API's path question, on both backends.

Three sites of the sample grid with hand-set consolidated throughput (MB/s):
CERN-PROD -> FZK-LCG2 10 (direct), CERN-PROD -> BNL-ATLAS 80, BNL-ATLAS -> FZK-LCG2
50. The widest path goes through BNL-ATLAS with a bottleneck of 50; perfSONAR's 200
on the direct link is not used while FTS (first in precedence) has enough samples.
"""

from __future__ import annotations

import math

import httpx
import networkx as nx
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from netbroker.db.grid import GridDB
from netbroker.db.schema import metric_buckets, sites
from netbroker.network.graph import widest_path, widest_path_report
from tests.conftest import LiveServer

NOW_S = 1795514400.0
START = int(NOW_S // 600 * 600) - 600  # a closed bucket inside every window


def _bucket(ids: dict[str, int], src: str, dst: str, source: str, count: int,
            mean: float) -> dict[str, object]:
    return {"kind": "throughput", "bucket_start_s": START, "src_site_id": ids[src],
            "dst_site_id": ids[dst], "source": source, "count": count,
            "value_sum": mean * count, "weight_sum": 0.0, "weighted_value_sum": 0.0,
            "last_ts_s": START + 60.0}


def _links(engine: Engine) -> None:
    with engine.connect() as conn:
        ids = GridDB(conn).ids(sites)
    rows = [_bucket(ids, "CERN-PROD", "FZK-LCG2", "fts", 5, 10.0),
            _bucket(ids, "CERN-PROD", "FZK-LCG2", "perfsonar", 5, 200.0),
            _bucket(ids, "CERN-PROD", "BNL-ATLAS", "fts", 5, 80.0),
            _bucket(ids, "BNL-ATLAS", "FZK-LCG2", "fts", 5, 50.0),
            # too few samples to count (min_samples is 3): not a link
            _bucket(ids, "FZK-LCG2", "CERN-PROD", "fts", 1, 999.0)]
    with engine.begin() as conn:
        conn.execute(sa.insert(metric_buckets), rows)


def test_widest_path_prefers_two_fast_hops_to_a_slow_direct_link(grid_engine: Engine) -> None:
    _links(grid_engine)
    report = widest_path_report(grid_engine, "CERN-PROD", "FZK-LCG2", "1d", now_s=NOW_S)
    assert report["bottleneck"] == 50.0 and report["unit"] == "MB/s"
    assert [(h["src"], h["dst"], h["value"]) for h in report["hops"]] == [
        ("CERN-PROD", "BNL-ATLAS", 80.0), ("BNL-ATLAS", "FZK-LCG2", 50.0)]
    assert report["direct"] == {"src": "CERN-PROD", "dst": "FZK-LCG2", "value": 10.0,
                                "source": "fts", "count": 5}
    back = widest_path_report(grid_engine, "FZK-LCG2", "CERN-PROD", "1d", now_s=NOW_S)
    assert back["bottleneck"] is None and back["hops"] == [] and back["direct"] is None


def test_widest_path_over_http_names_an_unknown_site(grid_engine: Engine) -> None:
    _links(grid_engine)
    with LiveServer(grid_engine) as server, httpx.Client(base_url=server.url) as client:
        ok = client.get("/api/v1/network/paths/CERN-PROD/FZK-LCG2",
                        params={"window": "1h", "at": NOW_S})
        missing = client.get("/api/v1/network/paths/CERN-PROD/NOWHERE")
        bad = client.get("/api/v1/network/paths/CERN-PROD/FZK-LCG2", params={"window": "2d"})
    assert ok.status_code == 200
    body = ok.json()
    assert body["bottleneck"] == 50.0 and body["window"] == "1h"
    assert [h["dst"] for h in body["hops"]] == ["BNL-ATLAS", "FZK-LCG2"]
    assert body["direct"]["value"] == 10.0 and body["direct"]["source"] == "fts"
    assert missing.status_code == 404 and "NOWHERE" in missing.text
    assert bad.status_code == 422


def test_widest_path_edges() -> None:
    g = nx.DiGraph()
    g.add_edge("A", "B", throughput={"value": 5.0})
    g.add_node("C")
    assert widest_path(g, "A", "A") == (math.inf, ["A"])
    width, path = widest_path(g, "A", "C")
    assert math.isnan(width) and path == []
    # a tie in width keeps the first path found; an edge without the kind is no link
    g.add_edge("A", "C", rtt={"value": 1.0})
    assert math.isnan(widest_path(g, "A", "C")[0])

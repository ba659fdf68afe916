"""Windows, consolidation, the matrix, the graph and their surfaces, on both backends.

The week of traffic is FTS transfer-completion messages in the real format,
generated with a fixed seed; the expected window values are recomputed here
with numpy straight from the generated transfers, not through the code
under test.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from collectors import nws
from collectors.ingest import ingest
from netbroker.common.config import MetricsSettings
from netbroker.db import create_db_engine, upgrade
from netbroker.db.grid import GridDB
from netbroker.db.metrics import MetricsDB
from netbroker.db.schema import metric_buckets, sites
from netbroker.network import metrics
from netbroker.network.graph import site_graph
from netbroker.registry import registry
from tests.conftest import LiveServer

BUCKET_S = 600
NOW_S = 1795514400.0  # 2026-11-24T10:00:00Z, the end of the generated week
LINKS = {  # (source RSE, destination RSE): mean MB/s of its transfers
    ("CERN-PROD_DATADISK", "FZK-LCG2_DATADISK"): 120.0,
    ("FZK-LCG2_DATADISK", "DESY-HH_DATADISK"): 60.0,
    ("BNL-ATLAS_DATADISK", "MWT2_DATADISK"): 200.0,
}
SITE = {"CERN-PROD_DATADISK": "CERN-PROD", "FZK-LCG2_DATADISK": "FZK-LCG2",
        "DESY-HH_DATADISK": "DESY-HH", "BNL-ATLAS_DATADISK": "BNL-ATLAS",
        "MWT2_DATADISK": "MWT2"}


def week_of_transfers(seed: int = 7) -> pd.DataFrame:
    """Transfers over the week before NOW_S: one row each, with the truth we expect."""
    rng = np.random.default_rng(seed)
    rows = []
    for (src, dst), mean in LINKS.items():
        n = 400
        end = NOW_S - rng.uniform(0, 7 * 86400, n)
        size = rng.integers(100_000_000, 4_000_000_000, n)
        rate = rng.gamma(4.0, mean / 4.0, n)  # MB/s
        duration_ms = np.maximum(np.round(size / (rate * 1e6) * 1000), 1)
        ok = rng.random(n) > 0.1
        for i in range(n):
            rows.append({"src": src, "dst": dst, "end_ms": int(end[i] * 1000),
                         "start_ms": int(end[i] * 1000) - int(duration_ms[i]),
                         "size": int(size[i]), "ok": bool(ok[i]), "id": f"{src}-{dst}-{i}"})
    return pd.DataFrame(rows)


def as_fts_lines(transfers: pd.DataFrame) -> str:
    lines = []
    for t in transfers.itertuples(index=False):
        lines.append(json.dumps({
            "tr_id": t.id, "job_id": t.id, "file_id": "1", "vo": "atlas",
            "endpnt": "fts3-atlas.cern.ch", "src_se": "davs://a.example", "dst_se": "davs://b.example",
            "file_metadata": {"src_rse": t.src, "dst_rse": t.dst, "scope": "mc23_13p6TeV"},
            "t_final_transfer_state": "Ok" if t.ok else "Error",
            "timestamp_tr_st": t.start_ms, "timestamp_tr_comp": t.end_ms,
            "file_size": t.size, "tr_bt_transfered": t.size if t.ok else 0,
            "throughput": -1, "activity": "Data Consolidation"}))
    return "\n".join(lines)


def expected(transfers: pd.DataFrame, window_s: int) -> pd.DataFrame:
    """Byte-weighted mean MB/s and success rate per link over whole buckets in the window."""
    end_s = transfers["end_ms"] / 1000.0
    bucket = np.floor(end_s / BUCKET_S) * BUCKET_S
    first = math.ceil((NOW_S - window_s) / BUCKET_S) * BUCKET_S
    inside = transfers[(bucket >= first) & (bucket <= NOW_S)].copy()
    inside["mbps"] = inside["size"] / ((inside["end_ms"] - inside["start_ms"]) / 1000.0) / 1e6
    out = {}
    for (src, dst), g in inside.groupby(["src", "dst"]):
        ok = g[g["ok"]]
        out[(SITE[src], SITE[dst])] = {
            "throughput": float((ok["mbps"] * ok["size"]).sum() / ok["size"].sum()),
            "success": float(g["ok"].mean()), "count": len(ok)}
    return pd.DataFrame(out).T


@pytest.fixture
def week(grid_engine: Engine) -> pd.DataFrame:
    transfers = week_of_transfers()
    report = ingest(grid_engine, "fts", as_fts_lines(transfers), now_s=NOW_S)
    assert report.rejected == [] and report.unmapped_samples == 0
    return transfers


@pytest.mark.parametrize("window", ["1h", "1d", "1w"])
def test_a_known_week_gives_the_expected_window_values(grid_engine: Engine,
                                                       week: pd.DataFrame, window: str) -> None:
    truth = expected(week, metrics.WINDOWS_S[window])
    tp = metrics.network_matrix(grid_engine, "throughput", window, "fts", now_s=NOW_S)
    ok = metrics.network_matrix(grid_engine, "success", window, "fts", now_s=NOW_S)
    assert truth.index.size > 0
    for (src, dst), row in truth.iterrows():
        assert tp.loc[src, dst] == pytest.approx(row["throughput"], rel=1e-9)
        assert ok.loc[src, dst] == pytest.approx(row["success"], rel=1e-9)
    known = tp.stack().dropna()
    assert len(known) == len(truth)  # no other link has a value


def test_links_without_recent_data_are_unknown_not_zero(grid_engine: Engine,
                                                        week: pd.DataFrame) -> None:
    later = NOW_S + 2 * 3600  # two hours after the last transfer
    hour = metrics.network_matrix(grid_engine, "throughput", "1h", "fts", now_s=later)
    assert hour.empty or hour.isna().all().all()
    day = metrics.network_matrix(grid_engine, "throughput", "1d", "fts", now_s=later)
    assert day.loc["CERN-PROD", "FZK-LCG2"] > 0
    assert math.isnan(day.loc["FZK-LCG2", "CERN-PROD"])  # never measured that way


def test_consolidation_prefers_fts_and_falls_back_by_precedence(grid_engine: Engine,
                                                               week: pd.DataFrame) -> None:
    stamp = "2026-11-24T09:30:00"
    doc = {"CERN-PROD:FZK-LCG2": {"mbps": {"perfsonar": {"1h": 999.0, "timestamp": stamp},
                                            "faxcost": {"1h": 998.0, "timestamp": stamp}}},
           "RAL-LCG2:DESY-HH": {"mbps": {"perfsonar": {"1h": 42.0, "timestamp": stamp},
                                          "dashb": {"1h": 44.0, "timestamp": stamp}}}}
    report = ingest(grid_engine, "nws", json.dumps(doc), now_s=NOW_S)
    assert report.stored == 4
    settings = MetricsSettings(min_samples=2)
    links = metrics.consolidate(metrics.link_table(grid_engine, "throughput", "1d", settings,
                                                   NOW_S), ["fts", "nws"], 2)
    chosen = {(r.src, r.dst): (r.source, r.value) for r in links.itertuples()}
    assert chosen[("CERN-PROD", "FZK-LCG2")][0] == "fts"
    assert chosen[("RAL-LCG2", "DESY-HH")] == ("nws", pytest.approx(43.0))
    lonely = metrics.consolidate(metrics.link_table(grid_engine, "throughput", "1d", settings,
                                                    NOW_S), ["nws"], 3)
    assert ("RAL-LCG2", "DESY-HH") not in {(r.src, r.dst) for r in lonely.itertuples()}


def test_site_graph_carries_values_with_provenance(grid_engine: Engine,
                                                   week: pd.DataFrame) -> None:
    graph = site_graph(grid_engine, "1w", now_s=NOW_S)
    assert graph.number_of_nodes() == 152
    edge = graph["BNL-ATLAS"]["MWT2"]
    assert edge["throughput"]["source"] == "fts" and edge["throughput"]["unit"] == "MB/s"
    assert edge["throughput"]["count"] == int(week[week.src.eq("BNL-ATLAS_DATADISK")].ok.sum())
    assert 0 < edge["success"]["value"] < 1
    assert graph.nodes["MWT2"]["cloud"] == "US"


def test_nws_export_reads_back_as_the_same_values(grid_engine: Engine,
                                                  week: pd.DataFrame) -> None:
    doc = nws.nws_document(grid_engine, now_s=NOW_S)
    entry = doc["CERN-PROD:FZK-LCG2"]["mbps"]["netbroker"]
    tp = metrics.network_matrix(grid_engine, "throughput", "1d", now_s=NOW_S)
    assert entry["1d"] == pytest.approx(tp.loc["CERN-PROD", "FZK-LCG2"], abs=1e-3)
    assert entry["timestamp"] == "2026-11-24T10:00:00"
    samples = [s for s in nws.parse(json.dumps(doc)) if hasattr(s, "kind")]
    assert {(s.src.value, s.dst.value) for s in samples} == {
        ("CERN-PROD", "FZK-LCG2"), ("FZK-LCG2", "DESY-HH"), ("BNL-ATLAS", "MWT2")}


def test_matrix_and_link_history_over_http(grid_engine: Engine, week: pd.DataFrame) -> None:
    with LiveServer(grid_engine) as server, httpx.Client(base_url=server.url) as client:
        at = {"at": NOW_S}
        body = client.get("/api/v1/network/matrix",
                          params={"kind": "throughput", "window": "1w", **at}).json()
        row = body["sources"].index("CERN-PROD")
        col = body["destinations"].index("FZK-LCG2")
        assert body["unit"] == "MB/s" and body["values"][row][col] > 0
        assert body["values"][row][body["destinations"].index("MWT2")] is None
        csv = client.get("/api/v1/network/matrix", params={"window": "1w", "format": "csv", **at})
        assert csv.headers["content-type"].startswith("text/csv")
        parquet = client.get("/api/v1/network/matrix", params={"window": "1w",
                                                                "format": "parquet", **at})
        import io
        assert pd.read_parquet(io.BytesIO(parquet.content)).shape == (len(body["sources"]),) * 2
        bad = client.get("/api/v1/network/matrix", params={"window": "2w"})
        assert bad.status_code == 422
        history = client.get("/api/v1/network/links/CERN-PROD/FZK-LCG2",
                             params={"kind": "success", "days": 8, **at}).json()
        assert sum(p["count"] for p in history) == int(
            week[week.src.eq("CERN-PROD_DATADISK")].shape[0])
        unknown = client.get("/api/v1/network/links/CERN-PROD/NOWHERE")
        assert unknown.status_code == 404


def test_push_a_batch_over_http_reports_rejections(grid_engine: Engine) -> None:
    lines = (Path(__file__).parent / "data" / "fts" / "transfer_complete.jsonl").read_text()
    with LiveServer(grid_engine) as server, httpx.Client(base_url=server.url) as client:
        first = client.post("/api/v1/metrics/fts", content=lines + "{oops\n").json()
        assert first["rejected"] == 1 and first["rejections"][0]["position"] == 8
        again = client.post("/api/v1/metrics/fts", content=lines).json()
        assert again["stored"] == 0
        assert client.post("/api/v1/metrics/snmp", content=b"{}").status_code == 422


def test_heatmap_png_is_written(grid_engine: Engine, week: pd.DataFrame, tmp_path: Path) -> None:
    from netbroker.plots.heatmap import plot_matrix
    from netbroker.registry.registry import site_clouds

    tp = metrics.network_matrix(grid_engine, "throughput", "1w", now_s=NOW_S)
    path = plot_matrix(tp, site_clouds(grid_engine), "MB/s", "throughput 1w", tmp_path / "m.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_consolidated_matrix_follows_the_consolidate_rule(grid_engine: Engine,
                                                          week: pd.DataFrame) -> None:
    """The matrix's fast path and the table's consolidate() agree link by link."""
    stamp = "2026-11-24T09:30:00"
    doc = {"CERN-PROD:FZK-LCG2": {"mbps": {s: {"1h": 500.0 + i, "timestamp": stamp}
                                            for i, s in enumerate(["a", "b", "c"])}},
           "RAL-LCG2:DESY-HH": {"mbps": {s: {"1h": 40.0 + i, "timestamp": stamp}
                                          for i, s in enumerate(["a", "b"])}}}
    ingest(grid_engine, "nws", json.dumps(doc), now_s=NOW_S)
    settings = MetricsSettings(min_samples=2)
    fast = metrics.network_matrix(grid_engine, "throughput", "1w", settings=settings,
                                  now_s=NOW_S)
    table = metrics.consolidate(metrics.link_table(grid_engine, "throughput", "1w", settings,
                                                   NOW_S),
                                settings.precedence_for("throughput"), settings.min_samples)
    assert len(fast.stack().dropna()) == len(table)
    for row in table.itertuples():
        assert fast.loc[row.src, row.dst] == pytest.approx(row.value)
    assert fast.loc["RAL-LCG2", "DESY-HH"] == pytest.approx(40.5)  # nws, two samples


def test_closeness_and_latency_matrices(grid_engine: Engine, week: pd.DataFrame) -> None:
    """Closeness grades consolidated throughput 0..11; latency is the one-way delay."""
    tp = metrics.network_matrix(grid_engine, "throughput", "1w", now_s=NOW_S)
    grade = metrics.network_matrix(grid_engine, "closeness", "1w", now_s=NOW_S)
    settings = MetricsSettings()
    span = math.log10(settings.closeness_best_mbytes_per_s
                      / settings.closeness_worst_mbytes_per_s)
    for src, dst in [("CERN-PROD", "FZK-LCG2"), ("FZK-LCG2", "DESY-HH")]:
        expected = round(11 * min(max(math.log10(
            settings.closeness_best_mbytes_per_s / tp.loc[src, dst]) / span, 0), 1))
        assert grade.loc[src, dst] == expected
    assert math.isnan(grade.loc["FZK-LCG2", "CERN-PROD"])
    doc = {"RAL-LCG2:DESY-HH": {"latency": {"latest": 21.5, "timestamp": "2026-11-24T09:30:00"}}}
    ingest(grid_engine, "nws", json.dumps(doc), now_s=NOW_S)
    latency = metrics.network_matrix(grid_engine, "latency", "1d", "nws", now_s=NOW_S)
    assert latency.loc["RAL-LCG2", "DESY-HH"] == 21.5


def random_buckets(site_ids: list[int], seed: int) -> list[dict[str, object]]:
    """Bucket rows of throughput and rtt from every source, over the 25 hours before NOW_S.

    Up to five buckets per link and source, so sums run over several rows;
    values of six magnitudes, so a plain running sum and pandas' compensated
    one differ; one to three samples per bucket, so some links miss
    ``min_samples``; a third of the buckets without weights (weight_sum 0),
    alone on a link or mixed with weighted ones; some buckets older than 1d.
    """
    rng = np.random.default_rng(seed)
    starts = int(NOW_S // BUCKET_S * BUCKET_S) - BUCKET_S * np.arange(150)
    picked = rng.choice(site_ids, 24, replace=False)
    rows: list[dict[str, object]] = []
    for src in picked:
        for dst in picked:
            if src == dst or rng.random() < 0.5:
                continue
            for kind, sources in (("throughput", ["fts", "xrootd", "perfsonar", "nws"]),
                                  ("rtt", ["perfsonar", "nws"])):
                for source in sources:
                    if rng.random() < 0.4:
                        continue
                    for start in rng.choice(starts, rng.integers(1, 6), replace=False):
                        count = int(rng.integers(1, 4))
                        mean = rng.gamma(2.0, 50.0) * 10.0 ** int(rng.integers(-3, 3))
                        weight = 0.0 if rng.random() < 0.3 else count * float(
                            rng.integers(1, 4_000_000_000))
                        rows.append({"kind": kind, "bucket_start_s": int(start),
                                     "src_site_id": int(src), "dst_site_id": int(dst),
                                     "source": source, "count": count,
                                     "value_sum": mean * count, "weight_sum": weight,
                                     "weighted_value_sum": mean * weight,
                                     "last_ts_s": float(start) + rng.uniform(0, BUCKET_S)})
    return rows


def matrix_from_link_table(engine: Engine, kind: str, window: str, source: str,
                           settings: MetricsSettings) -> pd.DataFrame:
    """The matrix the plain way: link_table (pandas sums), consolidate, a cell per link."""
    links = metrics.link_table(engine, kind, window, settings, NOW_S)
    if source == "consolidated":
        chosen = metrics.consolidate(links, settings.precedence_for(kind), settings.min_samples)
    else:
        chosen = links[links["source"].eq(source) & links["count"].ge(1)]
    with engine.connect() as conn:
        order = [s["name"] for s in GridDB(conn).list_sites()]
    used = set(chosen["src"]) | set(chosen["dst"])
    names = [name for name in order if name in used]
    matrix = pd.DataFrame(np.nan, index=pd.Index(names, name="src"),
                          columns=pd.Index(names, name="dst"))
    for row in chosen.itertuples():
        matrix.loc[row.src, row.dst] = row.value
    return matrix


def add_random_buckets(engine: Engine, seed: int) -> list[dict[str, object]]:
    with engine.connect() as conn:
        ids = sorted(GridDB(conn).ids(sites).values())
    rows = random_buckets(ids, seed)
    with engine.begin() as conn:
        conn.execute(sa.insert(metric_buckets), rows)
    return rows


@pytest.mark.parametrize("seed", [11, 12])
def test_matrix_equals_the_link_table_consolidation_to_the_bit(grid_engine: Engine,
                                                               seed: int) -> None:
    """The matrix's columnar read and array sums give link_table's pandas values exactly."""
    rows = add_random_buckets(grid_engine, seed)
    assert any(r["weight_sum"] == 0 for r in rows) and any(r["weight_sum"] > 0 for r in rows)
    settings = MetricsSettings(min_samples=3)
    for kind in ("throughput", "rtt"):
        for source in ("consolidated", *settings.precedence_for(kind)):
            for window in ("1h", "1d"):
                fast = metrics.network_matrix(grid_engine, kind, window, source, settings,
                                              NOW_S)
                plain = matrix_from_link_table(grid_engine, kind, window, source, settings)
                assert not fast.empty  # every source has links in both windows
                pd.testing.assert_frame_equal(fast, plain, check_exact=True)


def test_matrix_reads_alike_from_a_file_and_from_memory(tmp_path: Path) -> None:
    """A SQLite file and an in-memory database give the same matrix, with buckets
    of another width (starts off today's 10 min grid) and at the window's edges."""
    matrices = []
    for url in (f"sqlite:///{tmp_path / 'file.db'}", "sqlite://"):
        engine = create_db_engine(url)
        upgrade(engine)
        registry.import_grid_file(engine, registry.sample_grid_path())
        rows = add_random_buckets(engine, 13)
        odd = {(row["kind"], row["source"], start, row["src_site_id"], row["dst_site_id"]):
               {**row, "bucket_start_s": start}
               for row, start in zip(rows[:300:3], itertools.cycle(
                   [int(NOW_S) - 86_400, int(NOW_S) - 86_401, int(NOW_S) - 4_500,
                    int(NOW_S) - 300, int(NOW_S), int(NOW_S) + 1]))}
        for row in rows:  # starts on the grid may be taken
            odd.pop((row["kind"], row["source"], row["bucket_start_s"], row["src_site_id"],
                     row["dst_site_id"]), None)
        with engine.begin() as conn:
            conn.execute(sa.insert(metric_buckets), list(odd.values()))
        matrices.append(metrics.network_matrix(engine, "throughput", "1d",
                                               settings=MetricsSettings(min_samples=3),
                                               now_s=NOW_S))
        engine.dispose()
    assert matrices[0].notna().sum().sum() > 100
    pd.testing.assert_frame_equal(matrices[0], matrices[1], check_exact=True)


def test_a_window_is_one_range_of_the_bucket_key(tmp_path: Path) -> None:
    """SQLite's plan for one source's window: a search of the primary key on kind,
    source and the bucket-start range, rows in key order (no sort, no full scan)."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'plan.db'}")
    upgrade(engine)
    stmt = MetricsDB._window_select("throughput", "fts", NOW_S - 86_400, NOW_S, 1000)
    compiled = stmt.compile(dialect=engine.dialect)
    with engine.connect() as conn:
        plan = [row[3] for row in conn.exec_driver_sql(
            f"EXPLAIN QUERY PLAN {compiled}", tuple(compiled.params[name]
                                                    for name in compiled.positiontup or ()))]
    engine.dispose()
    assert any("kind=? AND source=? AND bucket_start_s>? AND bucket_start_s<?" in step
               for step in plan), plan
    assert not any("TEMP B-TREE" in step or step.startswith("SCAN") for step in plan), plan


def test_bucket_key_puts_each_source_in_one_range(engine: Engine) -> None:
    """Migrated databases key buckets (kind, source, bucket start, src, dst), as the
    MetaData does: a window of one kind and source is one range of the key."""
    key = sa.inspect(engine).get_pk_constraint("metric_buckets")["constrained_columns"]
    assert key == ["kind", "source", "bucket_start_s", "src_site_id", "dst_site_id"]
    assert key == [c.name for c in metric_buckets.primary_key.columns]


def test_window_links_keep_counts_beyond_32_bits_and_the_plain_mean(tmp_path: Path) -> None:
    """The columns read are the buckets' own: a count past 2**31 exactly, and a link
    whose buckets have no weight takes the plain mean (value_sum / count)."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'columns.db'}")
    upgrade(engine)
    registry.import_grid_file(engine, registry.sample_grid_path())
    with engine.connect() as conn:
        ids = sorted(GridDB(conn).ids(sites).values())
    start = int(NOW_S // BUCKET_S * BUCKET_S) - BUCKET_S
    span = max(ids) + 1

    def bucket(source: str, src: int, dst: int, count: int, weight: float) -> dict:
        return {"kind": "throughput", "source": source, "bucket_start_s": start,
                "src_site_id": src, "dst_site_id": dst, "count": count,
                "value_sum": 7.0 * count, "weight_sum": weight,
                "weighted_value_sum": 5.0 * weight, "last_ts_s": float(start)}

    rows = [bucket("xrootd", ids[0], ids[1], 2, 0.0),  # weightless: the plain mean
            bucket("xrootd", ids[1], ids[0], 2, 4.0),
            bucket("perfsonar", ids[0], ids[2], 2**31 + 5, 1.0)]
    with engine.begin() as conn:
        conn.execute(sa.insert(metric_buckets), rows)
    with engine.connect() as conn:
        xrootd, perfsonar = MetricsDB(conn).window_links("throughput", ["xrootd", "perfsonar"],
                                                         start, NOW_S, span)
    assert xrootd["link"].tolist() == [ids[0] * span + ids[1], ids[1] * span + ids[0]]
    assert xrootd["value_sum"].tolist() == [14.0, 14.0]
    assert xrootd["weight_sum"].tolist() == [0.0, 4.0]
    assert perfsonar["count"].tolist() == [2**31 + 5]
    assert perfsonar["count"].dtype == np.int64
    matrix = metrics.network_matrix(engine, "throughput", "1h", "xrootd", now_s=NOW_S)
    with engine.connect() as conn:
        names_by_id = {v: k for k, v in GridDB(conn).ids(sites).items()}
    assert matrix.loc[names_by_id[ids[0]], names_by_id[ids[1]]] == 7.0  # the plain mean
    assert matrix.loc[names_by_id[ids[1]], names_by_id[ids[0]]] == 5.0  # the weighted one
    engine.dispose()


def test_a_matrix_read_loads_no_second_sqlite_library(tmp_path: Path) -> None:
    """Two SQLite libraries in one process do not share POSIX locks: closing a
    connection of one drops the other's, and the WAL the service writes to can be
    deleted under it. After a matrix read of a SQLite file (blocks and rows) the
    process has mapped only the SQLite its sqlite3 module links."""
    import subprocess
    import sys

    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
from netbroker.network import metrics
from netbroker.registry import registry
from netbroker.db import create_db_engine, upgrade
from tests.test_network_matrix import NOW_S, add_random_buckets
engine = create_db_engine("sqlite:///{tmp_path / 'libs.db'}")
upgrade(engine)
registry.import_grid_file(engine, registry.sample_grid_path())
add_random_buckets(engine, 5)
metrics.block_closed_buckets(engine, now_s=NOW_S)
assert metrics.network_matrix(engine, "throughput", "1d", now_s=NOW_S).notna().any().any()
import _sqlite3
own = {{_sqlite3.__file__}}
with open("/proc/self/maps") as maps:
    mapped = {{line.split()[-1] for line in maps if "sqlite" in line.lower()
              and line.split()[-1].startswith("/")}}
print(sorted(mapped - own))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, check=True).stdout.strip().splitlines()[-1]
    others = [path for path in json.loads(out.replace("'", '"'))
              if "libsqlite3" not in Path(path).name]  # the one _sqlite3 links
    assert others == [], others


def test_matrix_of_sparse_site_ids_equals_the_link_table_consolidation(
        grid_engine: Engine) -> None:
    """Site ids far apart (sites added with ids in the thousands) take the matrix
    off arrays over the stored ids, onto the sites' positions: the same values."""
    with grid_engine.begin() as conn:
        template = conn.execute(sa.select(sites).limit(1)).mappings().one()
        extra = [{**template, "id": 40_000 + 7 * i, "name": f"FAR-AWAY-{i}"} for i in range(8)]
        conn.execute(sa.insert(sites), extra)
    add_random_buckets(grid_engine, 14)
    with grid_engine.connect() as conn:
        ids = sorted(GridDB(conn).ids(sites).values())
    assert max(ids) + 1 > 2 * len(ids)  # sparse: the renumbering path
    settings = MetricsSettings(min_samples=3)
    fast = metrics.network_matrix(grid_engine, "throughput", "1d", settings=settings,
                                  now_s=NOW_S)
    plain = matrix_from_link_table(grid_engine, "throughput", "1d", "consolidated", settings)
    assert any(name.startswith("FAR-AWAY") for name in fast.index)
    pd.testing.assert_frame_equal(fast, plain, check_exact=True)

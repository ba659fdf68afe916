"""Blocks of closed bucket starts (the aggregate cycle's copies), on both backends.

A matrix read through blocks must be the matrix read through rows to the
bit, and stay so when samples arrive late into a start already blocked,
through either write path (staged chunks on SQLite, tuples elsewhere).
Every check of a block here compares it with the bucket rows it copies.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

import collectors.ingest as collectors_ingest
from collectors.ingest import ingest
from netbroker.common.config import MetricsSettings, Settings
from netbroker.db.grid import GridDB
from netbroker.db.metrics import MetricsDB
from netbroker.db.schema import BLOCK_ARRAYS, metric_bucket_blocks, metric_buckets
from netbroker.network import metrics
from netbroker.service.serve import service_cycles
from tests.factories import fts_transfers, recent_fts_lines
from tests.test_network_matrix import (
    BUCKET_S,
    NOW_S,
    add_random_buckets,
    as_fts_lines,
    matrix_from_link_table,
    week_of_transfers,
)

SETTINGS = MetricsSettings(min_samples=3)
DAY = 86_400


def assert_blocks_copy_the_rows(engine: Engine) -> int:
    """Each mark's starts with rows have a block each, equal to their rows, and no
    start outside a mark has one. Returns how many blocks there are."""
    t, b = metric_buckets, metric_bucket_blocks
    with engine.connect() as conn:
        marks = MetricsDB(conn).block_marks()
        blocks = conn.execute(sa.select(b)).mappings().all()
        by_key = {(r["kind"], r["source"], int(r["bucket_start_s"])): r for r in blocks}
        expected = set()
        for (kind, source), (first, last) in marks.items():
            expected |= {(kind, source, int(s)) for s in conn.execute(
                sa.select(t.c.bucket_start_s).distinct().where(
                    t.c.kind == kind, t.c.source == source, t.c.bucket_start_s >= first,
                    t.c.bucket_start_s <= last)).scalars()}
        assert set(by_key) == expected
        names = [name for name, _ in BLOCK_ARRAYS]
        for (kind, source, start), block in by_key.items():
            rows = conn.execute(
                sa.select(*(t.c[n] for n in names))
                .where(t.c.kind == kind, t.c.source == source, t.c.bucket_start_s == start)
                .order_by(t.c.src_site_id, t.c.dst_site_id)).all()
            assert block["links"] == len(rows)
            for i, (name, dtype) in enumerate(BLOCK_ARRAYS):
                stored = np.frombuffer(block[f"{name}_array"], dtype)
                np.testing.assert_array_equal(stored, np.array([r[i] for r in rows], dtype))
    return len(by_key)


def all_matrices(engine: Engine) -> dict[tuple[str, str, str], pd.DataFrame]:
    out = {}
    for kind in ("throughput", "rtt"):
        for source in ("consolidated", *SETTINGS.precedence_for(kind)):
            for window in ("1h", "1d", "1w"):
                out[kind, source, window] = metrics.network_matrix(
                    engine, kind, window, source, SETTINGS, NOW_S)
    return out


def test_matrix_through_blocks_equals_the_matrix_through_rows(grid_engine: Engine) -> None:
    """Random buckets over 25 hours: blocked up to an hour and a bucket before now,
    the 1d and 1w windows read blocks then rows, the 1h window rows only; every
    matrix is the one read through rows, and link_table's, exactly."""
    add_random_buckets(grid_engine, 21)
    before = all_matrices(grid_engine)
    written = metrics.block_closed_buckets(grid_engine, SETTINGS, NOW_S)
    assert set(written) == {"throughput/fts", "throughput/xrootd", "throughput/perfsonar",
                            "throughput/nws", "rtt/perfsonar", "rtt/nws"}
    assert written["throughput/fts"] > 100  # of the 150 starts, those closed an hour ago
    assert assert_blocks_copy_the_rows(grid_engine) == sum(written.values())
    with grid_engine.connect() as conn:
        db = MetricsDB(conn)
        since_1d = metrics.window_start_s(NOW_S, "1d", BUCKET_S)
        since_1h = metrics.window_start_s(NOW_S, "1h", BUCKET_S)
        through = int(NOW_S) - 3600 - BUCKET_S
        assert db._blocked_through("throughput", ["fts", "xrootd"], since_1d, NOW_S) == {
            "fts": through, "xrootd": through}
        assert db._blocked_through("throughput", ["fts"], since_1h, NOW_S) == {}
    after = all_matrices(grid_engine)
    for key, matrix in before.items():
        pd.testing.assert_frame_equal(after[key], matrix, check_exact=True)
        kind, source, window = key
        pd.testing.assert_frame_equal(
            matrix, matrix_from_link_table(grid_engine, kind, window, source, SETTINGS),
            check_exact=True)
    assert not after["throughput", "consolidated", "1d"].empty
    assert metrics.block_closed_buckets(grid_engine, SETTINGS, NOW_S) == {}  # nothing new


def test_late_samples_rebuild_the_blocks_they_fall_in(grid_engine: Engine) -> None:
    """A week of FTS transfers ingested and blocked; then transfers ending in starts
    already blocked (late) and in open ones arrive through ingestion, and bucket
    rows through add_buckets: the blocks follow, the matrices are link_table's."""
    report = ingest(grid_engine, "fts", as_fts_lines(week_of_transfers()), now_s=NOW_S)
    assert report.stored > 1000
    assert metrics.block_closed_buckets(grid_engine, SETTINGS, NOW_S)["success/fts"] > 500
    assert_blocks_copy_the_rows(grid_engine)
    old = metrics.network_matrix(grid_engine, "throughput", "1d", "fts", SETTINGS, NOW_S)
    late = "\n".join([
        fts_transfers("CERN-PROD_DATADISK", "FZK-LCG2_DATADISK", 1.0, 30, NOW_S - 5 * 3600,
                      tag="late"),  # 30 slow transfers, an hour of blocked starts
        fts_transfers("FZK-LCG2_DATADISK", "DESY-HH_DATADISK", 900.0, 5, NOW_S - 60,
                      tag="open")])
    assert ingest(grid_engine, "fts", late, now_s=NOW_S).stored == 70  # throughput, success
    with grid_engine.connect() as conn:
        ids = dict(conn.execute(sa.text("SELECT name, id FROM sites")).all())
    start = int(NOW_S // BUCKET_S * BUCKET_S) - 20 * BUCKET_S  # blocked
    with grid_engine.begin() as conn:
        MetricsDB(conn).add_buckets([("throughput", "fts", start, ids["BNL-ATLAS"],
                                      ids["MWT2"], 4, 4e4, 4e9, 4e13, float(start))])
    assert_blocks_copy_the_rows(grid_engine)
    new = metrics.network_matrix(grid_engine, "throughput", "1d", "fts", SETTINGS, NOW_S)
    assert new.loc["CERN-PROD", "FZK-LCG2"] < old.loc["CERN-PROD", "FZK-LCG2"]
    assert new.loc["BNL-ATLAS", "MWT2"] > old.loc["BNL-ATLAS", "MWT2"]
    for kind in ("throughput", "success"):
        for window in ("1h", "1d", "1w"):
            pd.testing.assert_frame_equal(
                metrics.network_matrix(grid_engine, kind, window, "consolidated", SETTINGS,
                                       NOW_S),
                matrix_from_link_table(grid_engine, kind, window, "consolidated", SETTINGS),
                check_exact=True)


def test_blocks_follow_the_clock_and_leave_with_the_longest_window(grid_engine: Engine
                                                                   ) -> None:
    """Blocking at an earlier time marks less; later runs extend the mark; past a week
    and a day the blocks go, and a window reaching before the mark reads rows."""
    add_random_buckets(grid_engine, 22)
    before = all_matrices(grid_engine)
    early = metrics.block_closed_buckets(grid_engine, SETTINGS, NOW_S - 20 * 3600)
    with grid_engine.connect() as conn:
        marks = MetricsDB(conn).block_marks()
    first, through = marks["throughput", "fts"]
    assert through == int(NOW_S) - 20 * 3600 - 3600 - BUCKET_S
    assert first == metrics.window_start_s(NOW_S - 20 * 3600, "1w", BUCKET_S) - DAY
    later = metrics.block_closed_buckets(grid_engine, SETTINGS, NOW_S)
    assert later["throughput/fts"] > 0 and early["throughput/fts"] > 0
    assert assert_blocks_copy_the_rows(grid_engine) == (sum(early.values())
                                                        + sum(later.values()))
    assert all_matrices(grid_engine).keys() == before.keys()
    for key, matrix in all_matrices(grid_engine).items():
        pd.testing.assert_frame_equal(matrix, before[key], check_exact=True)
    assert metrics.block_closed_buckets(grid_engine, SETTINGS, NOW_S + 9 * DAY) == {}
    assert assert_blocks_copy_the_rows(grid_engine) == 0  # all older than 8 days
    with grid_engine.connect() as conn:
        assert MetricsDB(conn)._blocked_through(
            "throughput", ["fts"], metrics.window_start_s(NOW_S, "1d", BUCKET_S), NOW_S) == {}
    for key, matrix in all_matrices(grid_engine).items():
        pd.testing.assert_frame_equal(matrix, before[key], check_exact=True)


def test_the_service_runs_the_aggregate_cycle_every_bucket(grid_engine: Engine) -> None:
    """The service's aggregate cycle, run as the scheduler runs it (on the real
    clock): transfers that ended 3 hours ago get their blocks."""
    settings = Settings()
    (cycle,) = [c for c in service_cycles(settings) if c.name == "aggregate"]
    assert cycle.period_s == settings.metrics.bucket_minutes * 60
    assert ingest(grid_engine, "fts", recent_fts_lines(ended_s_ago=3 * 3600)).stored == 10
    written = cycle.job(grid_engine)
    assert isinstance(written, dict) and written.get("throughput/fts", 0) >= 1
    assert assert_blocks_copy_the_rows(grid_engine) == sum(written.values())


def test_a_backfill_rebuilds_each_block_it_touches_once(grid_engine: Engine,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A second week of transfers ingested after blocking, in chunks of 100 samples,
    writes to most blocked starts in many chunks: each block is rebuilt once, at
    the end of the batch, and the blocks and matrices then match the rows."""
    ingest(grid_engine, "fts", as_fts_lines(week_of_transfers()), now_s=NOW_S)
    metrics.block_closed_buckets(grid_engine, SETTINGS, NOW_S)
    blocks = assert_blocks_copy_the_rows(grid_engine)
    again = week_of_transfers(seed=8)
    again["id"] = again["id"] + "-again"
    writes: list[tuple[str, str, int]] = []
    write_block = MetricsDB._write_block

    def counted(self: MetricsDB, kind: str, source: str, start: int) -> int:
        writes.append((kind, source, start))
        return write_block(self, kind, source, start)

    monkeypatch.setattr(MetricsDB, "_write_block", counted)
    monkeypatch.setattr(collectors_ingest, "CHUNK", 100)
    report = ingest(grid_engine, "fts", as_fts_lines(again), now_s=NOW_S)
    assert report.stored == report.samples > 2000  # nothing dropped, none a duplicate
    assert len(writes) == len(set(writes)) > blocks // 2  # once each, most of them
    assert_blocks_copy_the_rows(grid_engine)
    for window in ("1d", "1w"):
        pd.testing.assert_frame_equal(
            metrics.network_matrix(grid_engine, "throughput", window, "consolidated",
                                   SETTINGS, NOW_S),
            matrix_from_link_table(grid_engine, "throughput", window, "consolidated",
                                   SETTINGS),
            check_exact=True)


def test_a_run_between_two_closings_only_reads_the_marks(grid_engine: Engine) -> None:
    """The cycle runs far more often than buckets close: between two closings it
    writes nothing and reads the marks alone; at the next closing every mark moves
    one bucket width."""
    add_random_buckets(grid_engine, 22)
    metrics.block_closed_buckets(grid_engine, SETTINGS, NOW_S + 1)  # the week's start moved
    with grid_engine.connect() as conn:
        marks = MetricsDB(conn).block_marks()
    statements: list[str] = []

    def count(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    sa.event.listen(grid_engine, "before_cursor_execute", count)
    try:
        assert metrics.block_closed_buckets(grid_engine, SETTINGS, NOW_S + BUCKET_S / 2) == {}
    finally:
        sa.event.remove(grid_engine, "before_cursor_execute", count)
    assert not [s for s in statements if not s.lstrip().upper().startswith(
        ("SELECT", "BEGIN", "LOCK", "PRAGMA"))], statements  # no write
    assert sum("metric_block_marks" in s for s in statements) == 1  # the marks, once
    with grid_engine.connect() as conn:
        assert MetricsDB(conn).block_marks() == marks
    metrics.block_closed_buckets(grid_engine, SETTINGS, NOW_S + BUCKET_S)
    with grid_engine.connect() as conn:
        moved = MetricsDB(conn).block_marks()
    assert {k: v[1] - marks[k][1] for k, v in moved.items()} == dict.fromkeys(marks, BUCKET_S)


def tier1_links_from_link_table(engine: Engine, kind: str, window: str,
                                src_names: set[str]) -> dict[tuple[str, str], tuple[int, float]]:
    """The Tier-1 links the plain way: link_table (pandas sums), consolidate, keep the
    links leaving ``src_names``."""
    links = metrics.link_table(engine, kind, window, SETTINGS, NOW_S)
    chosen = metrics.consolidate(links, SETTINGS.precedence_for(kind), SETTINGS.min_samples)
    return {(r.src, r.dst): (int(r.count), float(r.value)) for r in chosen.itertuples()
            if r.src in src_names}


def test_tier1_links_through_blocks_equal_the_link_table_consolidation(
        grid_engine: Engine) -> None:
    """The decisions' read of some sites' links (tier1_links) gives link_table's
    consolidated values to the bit, through rows and through blocks alike, each
    source's links in (src, dst) order, the sources in precedence."""
    add_random_buckets(grid_engine, 23)
    with grid_engine.connect() as conn:
        ids = GridDB(conn).site_ids()
    names = {sid: name for name, sid in ids.items()}
    subsets = (tuple(sorted(ids.values())[::7]), tuple(sorted(ids.values())))

    def read() -> dict[tuple[str, str, tuple[int, ...]], list[tuple[int, int, int, float]]]:
        return {(kind, window, src): metrics.tier1_links(
                    grid_engine, metrics.MetricKind(kind), window, list(src), SETTINGS, NOW_S)
                for kind in ("throughput", "rtt") for window in ("1h", "1d", "1w")
                for src in subsets}

    before = read()
    assert metrics.block_closed_buckets(grid_engine, SETTINGS, NOW_S)
    assert read() == before
    for (kind, window, src), links in before.items():
        assert links, (kind, window)
        got = {(names[s], names[d]): (n, v) for s, d, n, v in links}
        assert len(got) == len(links)
        assert got == tier1_links_from_link_table(grid_engine, kind, window,
                                                  {names[s] for s in src})
        keys = [(s, d) for s, d, _, _ in links]
        restarts = sum(a >= b for a, b in itertools.pairwise(keys))
        assert restarts < len(SETTINGS.precedence_for(kind))  # one run per source

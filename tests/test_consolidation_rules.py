"""The consolidation rule as the decisions read it (``tier1_links``), on both backends.

Clouds, brokerage's grid view, PD2P and the mesh ranking read the links
leaving some sites through :func:`netbroker.network.metrics.tier1_links`; the
matrix (:func:`network_matrix`) and :func:`consolidate` have their own tests
(``tests/test_network_matrix.py``). The rule: per link, the first source of
the kind's precedence (throughput: FTS, XRootD, perfSONAR, NWS) that has at
least ``metrics.min_samples`` samples in the window; throughput is the mean
weighted by bytes, other kinds the plain mean; a link with no usable source
has no value (unknown), never zero.

The mini grid: FZK (DE's Tier-1) to MAN (a UK Tier-2).
"""

from __future__ import annotations

import json
import time
import tracemalloc

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from collectors.ingest import ingest
from netbroker.clouds import membership as clouds
from netbroker.common.config import CloudSettings, MetricsSettings
from netbroker.db.grid import GridDB
from netbroker.db.schema import metric_buckets, sites
from netbroker.network import metrics
from netbroker.network.metrics import MetricKind
from netbroker.registry import registry
from tests.factories import fts_transfers, mini_grid, perfsonar_documents

T0 = 1795514400.0  # 2026-11-24T10:00:00Z


@pytest.fixture
def mini(engine: Engine) -> Engine:
    registry.import_grid_document(engine, mini_grid())
    return engine


def fts(engine: Engine, mbytes_per_s: float, n: int, tag: str = "t") -> None:
    assert ingest(engine, "fts", fts_transfers("FZK_DATADISK", "MAN_DATADISK", mbytes_per_s, n,
                                               T0 - 120, tag), now_s=T0).stored == 2 * n


def perfsonar(engine: Engine, n: int, **value: float) -> None:
    assert ingest(engine, "perfsonar", perfsonar_documents("FZK", "MAN", n, T0 - 120, **value),
                  now_s=T0).stored == n


def links(engine: Engine, kind: MetricKind = MetricKind.THROUGHPUT,
          settings: MetricsSettings | None = None, window: str = "1h",
          now_s: float = T0) -> dict[tuple[str, str], tuple[int, float]]:
    with engine.connect() as conn:
        ids = GridDB(conn).ids(sites)
    names = {i: n for n, i in ids.items()}
    return {(names[s], names[d]): (n, v) for s, d, n, v in
            metrics.tier1_links(engine, kind, window, [ids["FZK"]], settings, now_s)}


def test_fts_wins_over_perfsonar_when_both_have_enough_samples(mini: Engine) -> None:
    fts(mini, 2.0, 2)
    perfsonar(mini, 4, mbytes_per_s=50.0)
    assert links(mini) == {("FZK", "MAN"): (2, 2.0)}


def test_a_source_under_min_samples_gives_way_to_the_next(mini: Engine) -> None:
    fts(mini, 2.0, 1)  # one FTS sample: fewer than the 2 a source needs
    perfsonar(mini, 4, mbytes_per_s=50.0)
    assert links(mini) == {("FZK", "MAN"): (4, 50.0)}


def test_the_configured_precedence_is_the_order_used(mini: Engine) -> None:
    fts(mini, 2.0, 2)
    perfsonar(mini, 4, mbytes_per_s=50.0)
    reverse = MetricsSettings(precedence={"throughput": ["perfsonar", "fts"]})
    assert links(mini, settings=reverse) == {("FZK", "MAN"): (4, 50.0)}
    only_fts = MetricsSettings(precedence={"throughput": ["fts"]})
    assert links(mini, settings=only_fts) == {("FZK", "MAN"): (2, 2.0)}


@pytest.mark.parametrize(("least", "known"), [(2, True), (3, False)])
def test_a_link_whose_only_source_lacks_samples_is_unknown(mini: Engine, least: int,
                                                           known: bool) -> None:
    fts(mini, 2.0, 2)
    assert bool(links(mini, settings=MetricsSettings(min_samples=least))) is known


def test_a_link_without_recent_data_is_unknown_not_zero(mini: Engine) -> None:
    fts(mini, 2.0, 4)
    assert links(mini, now_s=T0 + 2 * 3600) == {}
    assert links(mini, window="1d", now_s=T0 + 2 * 3600) == {("FZK", "MAN"): (4, 2.0)}


def test_throughput_is_weighted_by_bytes_and_loss_is_a_plain_mean(mini: Engine) -> None:
    # 1 GB at 10 MB/s and 3 GB at 50 MB/s: (10 * 1 + 50 * 3) / 4 = 40 (plain mean: 30).
    lines = []
    for i, (size, seconds) in enumerate(((10**9, 100.0), (3 * 10**9, 60.0))):
        end_ms = int((T0 - 120 - 60 * i) * 1000)
        lines.append(json.dumps({
            "tr_id": f"w{i}", "vo": "atlas", "endpnt": "fts3.example",
            "src_se": "davs://a.example", "dst_se": "davs://b.example",
            "t_final_transfer_state": "Ok",
            "file_metadata": {"src_rse": "FZK_DATADISK", "dst_rse": "MAN_DATADISK"},
            "timestamp_tr_st": end_ms - int(seconds * 1000), "timestamp_tr_comp": end_ms,
            "file_size": size, "tr_bt_transfered": size, "throughput": -1}))
    assert ingest(mini, "fts", "\n".join(lines), now_s=T0).stored == 4
    assert links(mini) == {("FZK", "MAN"): (2, 40.0)}
    for i, fraction in enumerate((0.01, 0.03)):
        assert ingest(mini, "perfsonar", perfsonar_documents(
            "FZK", "MAN", 2, T0 - 300 - 120 * i, packet_loss=fraction), now_s=T0).stored == 2
    ((count, value),) = links(mini, MetricKind.PACKET_LOSS).values()
    assert count == 4 and value == pytest.approx(0.02)


def test_the_membership_reads_the_link_by_the_same_rule(mini: Engine) -> None:
    # FTS says 2 MB/s, perfSONAR 50: FTS comes first, so MAN does not join DE;
    # without FTS's second sample perfSONAR's 50 MB/s counts and it joins.
    fts(mini, 2.0, 2)
    perfsonar(mini, 4, mbytes_per_s=50.0)
    hour = CloudSettings(window="1h")
    assert clouds.preview(mini, hour, now_s=T0) == []
    mini_reordered = MetricsSettings(precedence={"throughput": ["perfsonar", "fts"]})
    (joined,) = clouds.preview(mini, hour, mini_reordered, now_s=T0)
    assert (joined.site, joined.mbytes_per_s, joined.samples) == ("MAN", 50.0, 4)


def test_the_link_table_of_sparse_site_ids_stays_small(mini: Engine) -> None:
    # A site with id 40,000: arrays over src * span + dst would hold 40,001 ** 2 links
    # (12 GB); the table's arrays are over the links read. Two FTS buckets FAR -> FZK,
    # 1 GB at 10 MB/s and 3 GB at 50 MB/s: (10 * 1 + 50 * 3) / 4 = 40 MB/s; one FZK -> FAR.
    with mini.begin() as conn:
        template = conn.execute(sa.select(sites).where(sites.c.name == "FZK")).mappings().one()
        conn.execute(sa.insert(sites), [{**template, "id": 40_000, "name": "FAR"}])
        fzk = template["id"]

        def bucket(start: float, src: int, dst: int, mbytes_per_s: float, gb: float
                   ) -> dict[str, object]:
            return {"kind": "throughput", "bucket_start_s": int(start), "src_site_id": src,
                    "dst_site_id": dst, "source": "fts", "count": 1,
                    "value_sum": mbytes_per_s, "weight_sum": gb * 1e9,
                    "weighted_value_sum": mbytes_per_s * gb * 1e9, "last_ts_s": start + 60}

        conn.execute(sa.insert(metric_buckets), [
            bucket(T0 - 1200, 40_000, fzk, 10.0, 1.0), bucket(T0 - 600, 40_000, fzk, 50.0, 3.0),
            bucket(T0 - 600, fzk, 40_000, 5.0, 1.0)])
    tracemalloc.start()
    try:
        table = metrics.link_table(mini, MetricKind.THROUGHPUT, "1h", now_s=T0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20, peak  # megabytes, not gigabytes
    assert table[["src", "dst", "source", "count", "value", "last_ts_s"]].values.tolist() == [
        ["FAR", "FZK", "fts", 2, 40.0, T0 - 540], ["FZK", "FAR", "fts", 1, 5.0, T0 - 540]]


COLUMNS = ["src", "dst", "source", "count", "value", "last_ts_s"]


def test_consolidate_keeps_one_row_per_link_from_its_first_usable_listed_source() -> None:
    # Precedence FTS, XRootD, perfSONAR, at least 2 samples. A -> B: FTS has 1 sample, so
    # perfSONAR (the third) counts; NWS, not listed, never does, even with 9 samples.
    # A -> C: XRootD's 3. B -> A: only NWS: no row (unknown).
    links = pd.DataFrame(
        [["B", "A", "nws", 10, 70.0, 1.0], ["A", "B", "fts", 1, 30.0, 2.0],
         ["A", "B", "perfsonar", 5, 80.0, 3.0], ["A", "B", "nws", 9, 99.0, 4.0],
         ["A", "C", "xrootd", 3, 20.0, 5.0]], columns=COLUMNS)
    chosen = metrics.consolidate(links, ["fts", "xrootd", "perfsonar"], 2)
    expected = pd.DataFrame([["A", "B", "perfsonar", 5, 80.0, 3.0],
                             ["A", "C", "xrootd", 3, 20.0, 5.0]], columns=COLUMNS)
    pd.testing.assert_frame_equal(chosen, expected)  # the index too: 0, 1


def test_consolidate_of_no_links_is_an_empty_table_with_the_columns() -> None:
    chosen = metrics.consolidate(pd.DataFrame(columns=COLUMNS), ["fts"], 2)
    assert chosen.empty and list(chosen.columns) == COLUMNS


def test_a_links_windows_count_only_that_links_source_site(mini: Engine) -> None:
    # FZK -> MAN at 2 MB/s (2 transfers) and RAL -> MAN at 8 (3): FZK -> MAN's windows hold
    # only FZK's, each window the same two samples.
    fts(mini, 2.0, 2)
    assert ingest(mini, "fts", fts_transfers("RAL_DATADISK", "MAN_DATADISK", 8.0, 3, T0 - 120,
                                             "r"), now_s=T0).stored == 6
    rows = metrics.link_windows(mini, "FZK", "MAN", ["throughput"], now_s=T0)
    assert [(r["window"], r["source"], r["count"], r["value"], r["chosen"]) for r in rows] == [
        ("1h", "fts", 2, 2.0, True), ("1d", "fts", 2, 2.0, True), ("1w", "fts", 2, 2.0, True)]


@pytest.mark.parametrize(("bucket_minutes", "known"), [(10, True), (60, False)])
def test_the_link_table_takes_the_whole_buckets_of_the_configured_width(
        mini: Engine, bucket_minutes: int, known: bool) -> None:
    # A 10-minute bucket at T0 - 2,400 s, read at T0 + 1,200 s over 1 h: the window starts
    # at T0 - 2,400 on the 10-minute grid, at T0 on the 60-minute one (the bucket is out).
    with mini.begin() as conn:
        ids = GridDB(conn).ids(sites)
        conn.execute(sa.insert(metric_buckets), [{
            "kind": "throughput", "bucket_start_s": int(T0 - 2400), "src_site_id": ids["FZK"],
            "dst_site_id": ids["MAN"], "source": "fts", "count": 2, "value_sum": 4.0,
            "weight_sum": 2e9, "weighted_value_sum": 4e9, "last_ts_s": T0 - 2000}])
    table = metrics.link_table(mini, MetricKind.THROUGHPUT, "1h",
                               MetricsSettings(bucket_minutes=bucket_minutes), now_s=T0 + 1200)
    assert table[["src", "dst", "count", "value"]].values.tolist() == (
        [["FZK", "MAN", 2, 2.0]] if known else [])


def fzk_man_bucket(engine: Engine, start_s: float) -> None:
    """One FTS bucket FZK -> MAN of 2 samples at 2 MB/s (2 GB moved) starting at start_s."""
    with engine.begin() as conn:
        ids = GridDB(conn).ids(sites)
        conn.execute(sa.insert(metric_buckets), [{
            "kind": "throughput", "bucket_start_s": int(start_s), "src_site_id": ids["FZK"],
            "dst_site_id": ids["MAN"], "source": "fts", "count": 2, "value_sum": 4.0,
            "weight_sum": 2e9, "weighted_value_sum": 4e9, "last_ts_s": start_s + 300}])


@pytest.mark.parametrize(("start_s", "now_s", "bucket_minutes", "known"), [
    (T0 - 3600, T0, 10, True),     # the window's first whole bucket: now - 1 h
    (T0 - 4200, T0, 10, False),    # one bucket before it
    # A 10-minute bucket left from before the width became 60 minutes: at T0 + 1,200 s
    # the 1 h window's first whole 60-minute bucket starts at T0, after it.
    (T0 - 2400, T0 + 1200, 10, True),
    (T0 - 2400, T0 + 1200, 60, False),
])
def test_the_tier1_links_window_starts_at_the_first_whole_bucket_of_the_width(
        mini: Engine, start_s: float, now_s: float, bucket_minutes: int, known: bool) -> None:
    fzk_man_bucket(mini, start_s)
    found = links(mini, settings=MetricsSettings(bucket_minutes=bucket_minutes), now_s=now_s)
    assert found == ({("FZK", "MAN"): (2, 2.0)} if known else {})


def test_the_tier1_links_without_a_time_read_the_window_ending_now(mini: Engine) -> None:
    fzk_man_bucket(mini, (time.time() // 600 - 1) * 600)  # the last closed 10-minute bucket
    with mini.connect() as conn:
        ids = GridDB(conn).ids(sites)
    assert metrics.tier1_links(mini, MetricKind.THROUGHPUT, "1h", [ids["FZK"]]) == [
        (ids["FZK"], ids["MAN"], 2, 2.0)]


def test_the_window_mean_is_weighted_wherever_the_weights_sum_above_zero() -> None:
    # Two samples, 10 and 6: weights 1 and 0 give the weighted mean 10 (the weight of 1
    # is enough); no weight at all, the plain mean 8.
    mean = metrics.window_mean(np.array([2.0, 2.0]), np.array([16.0, 16.0]),
                               np.array([1.0, 0.0]), np.array([10.0, 0.0]))
    assert mean.tolist() == [10.0, 8.0]


def test_the_tier1_links_sum_a_links_buckets_over_the_window(mini: Engine) -> None:
    # Two FTS buckets FZK -> MAN: 1 GB at 10 MB/s, then 3 GB at 50: (10 + 150) / 4 = 40.
    with mini.begin() as conn:
        ids = GridDB(conn).ids(sites)
        conn.execute(sa.insert(metric_buckets), [{
            "kind": "throughput", "bucket_start_s": int(start), "src_site_id": ids["FZK"],
            "dst_site_id": ids["MAN"], "source": "fts", "count": 1, "value_sum": rate,
            "weight_sum": gb * 1e9, "weighted_value_sum": rate * gb * 1e9,
            "last_ts_s": start + 60} for start, rate, gb in ((T0 - 1200, 10.0, 1.0),
                                                              (T0 - 600, 50.0, 3.0))])
    assert links(mini) == {("FZK", "MAN"): (2, 40.0)}


def test_the_tier1_links_give_counts_as_integers_and_values_as_floats(mini: Engine) -> None:
    fts(mini, 2.0, 2)
    with mini.connect() as conn:
        ids = GridDB(conn).ids(sites)
    ((src, dst, count, value),) = metrics.tier1_links(mini, MetricKind.THROUGHPUT, "1h",
                                                      [ids["FZK"]], now_s=T0)
    assert (src, dst, count, value) == (ids["FZK"], ids["MAN"], 2, 2.0)
    assert [type(x) for x in (src, dst, count, value)] == [int, int, int, float]

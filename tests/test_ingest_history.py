"""Old samples: the raw retention at ingest, a backfill or --since, past windows, pruning.

The two transfers of tests/data/fts/pretty_printed.json end on 2025-11-20:
CERN-PROD_DATADISK -> FZK-LCG2_DATADISK, 4,000,000,000 bytes in 40 s (100 MB/s)
at 10:00:40, and a failure between CERN and DESY at 10:01:40 (its completion
time is 0: its start, 10:01:40, stands for it).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from collectors.ingest import ingest
from netbroker.db.schema import metric_samples
from netbroker.network import metrics

DATA = (Path(__file__).parent / "data" / "fts" / "pretty_printed.json").read_bytes()
ENDED_S = 1763632840.0  # the finished transfer's timestamp_tr_comp, s
FAILED_S = 1763632900.0  # the failed one's timestamp_tr_st, s
A_YEAR_LATER = ENDED_S + 365 * 86400


def test_records_older_than_the_retention_are_too_old_and_said_so(grid_engine: Engine) -> None:
    report = ingest(grid_engine, "fts", DATA, now_s=A_YEAR_LATER)
    assert (report.records.read, report.records.too_old, report.records.stored) == (2, 2, 0)
    assert report.too_old == 3  # samples: throughput and success, and the failure's success
    assert report.kept_from_s == A_YEAR_LATER - 14 * 86400  # the default raw retention
    assert not report.usable


def test_since_keeps_what_is_after_it_however_old(grid_engine: Engine) -> None:
    between = (ENDED_S + FAILED_S) / 2
    report = ingest(grid_engine, "fts", DATA, now_s=A_YEAR_LATER, since_s=between)
    # the finished transfer ended before `between`, the failure after it
    assert (report.records.too_old, report.records.stored) == (1, 1)
    assert report.kept_from_s == between


def test_a_backfill_keeps_everything_and_the_past_window_reads_it(grid_engine: Engine) -> None:
    report = ingest(grid_engine, "fts", DATA, now_s=A_YEAR_LATER, backfill=True)
    assert (report.records.stored, report.kept_from_s) == (2, None)
    past = metrics.network_matrix(grid_engine, "throughput", "1h", "fts", now_s=ENDED_S + 600)
    assert past.loc["CERN-PROD", "FZK-LCG2"] == 100.0  # one sample: 4e9 bytes / 40 s / 1e6
    success = metrics.network_matrix(grid_engine, "success", "1h", "fts", now_s=FAILED_S + 60)
    assert success.loc["CERN-PROD", "DESY-HH"] == 0.0  # the failure
    now = metrics.network_matrix(grid_engine, "throughput", "1h", "fts", now_s=A_YEAR_LATER)
    assert now.empty  # nothing in the window ending now


def test_the_retention_still_prunes_backfilled_rows_and_the_buckets_keep_the_window(
        grid_engine: Engine) -> None:
    ingest(grid_engine, "fts", DATA, now_s=A_YEAR_LATER, backfill=True)
    assert metrics.prune_samples(grid_engine, now_s=A_YEAR_LATER) == 3
    with grid_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(metric_samples)).scalar() == 0
    past = metrics.network_matrix(grid_engine, "throughput", "1h", "fts", now_s=ENDED_S + 600)
    assert past.loc["CERN-PROD", "FZK-LCG2"] == 100.0


@pytest.mark.parametrize("window", ["1h", "1d", "1w"])
def test_a_window_ending_before_the_samples_holds_none_of_them(grid_engine: Engine,
                                                               window: str) -> None:
    ingest(grid_engine, "fts", DATA, now_s=A_YEAR_LATER, backfill=True)
    before = metrics.network_matrix(grid_engine, "throughput", window, "fts",
                                    now_s=ENDED_S - 3600)
    assert before.empty

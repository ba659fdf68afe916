"""matrix.1000: the consolidated 1d throughput matrix of a 1,000-site full mesh.

Registers 1,000 sites (10 clouds), fills the buckets of the last day with
one FTS bucket per ordered site pair (999,000 links) plus perfSONAR buckets
for a fifth of them, each at a random one of the day's 144 bucket starts,
then times in the same run, in turn, (a) ``network_matrix`` (the window read
from SQLite, consolidation by precedence, pivot to sites x sites) and (b)
the baseline: ``pandas.pivot_table`` of the same FTS rows already in memory.

The day is read as a service holds it: the aggregate cycle
(``metrics.block_closed_buckets``) has copied each closed start into its
block, so (a) reads blocks for all but the last 70 minutes and rows for
those. Prints ``matrix.1000`` in seconds with the ratio (a)/(b), the goal
within 3x; and ``matrix.1000.rows``, the same matrix read before the cycle
ran (every bucket a row), which has no goal of its own.

    python bench/matrix.py [--sites N]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
from _common import best_of_pair, emit, scratch_path

from netbroker.db import create_db_engine, upgrade
from netbroker.db.metrics import MetricsDB
from netbroker.network import metrics
from netbroker.registry import registry

NOW_S = 1_795_514_400.0


def grid_document(n: int) -> str:
    """``n`` sites in 10 clouds, the first of each its Tier-1."""
    clouds = [f"C{c}" for c in range(10)]
    sites = {f"SITE-{i:04d}": {"cloud": clouds[i % 10], "tier_level": 1 if i < 10 else 2}
             for i in range(n)}
    return json.dumps({"cloud": {c: {"tier1": f"SITE-{i:04d}"} for i, c in enumerate(clouds)},
                       "site": sites})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sites", type=int, default=1000)
    n = parser.parse_args().sites
    engine = create_db_engine(f"sqlite:///{scratch_path('matrix.db')}")
    upgrade(engine)
    registry.import_grid_document(engine, grid_document(n))
    rng = np.random.default_rng(3)
    src, dst = np.meshgrid(np.arange(1, n + 1), np.arange(1, n + 1), indexing="ij")
    mask = src != dst
    src, dst = src[mask], dst[mask]
    mbps = rng.gamma(3.0, 20.0, src.size)
    first = metrics.window_start_s(NOW_S, "1d", 600)
    start = first + 600 * rng.integers(0, 144, src.size)
    fts = [("throughput", "fts", int(t), int(s), int(d), 3, m * 3, 3e9, m * 3e9, t + 300.0)
           for t, s, d, m in zip(start, src, dst, mbps, strict=True)]
    ps = [("throughput", "perfsonar", int(t), int(s), int(d), 4, 400.0, 4.0, 400.0, t + 60.0)
          for t, s, d in zip(start[::5], src[::5], dst[::5], strict=True)]
    with engine.begin() as conn:
        db = MetricsDB(conn)
        db.add_buckets(fts)
        db.add_buckets(ps)
    in_memory = pd.DataFrame({"src": src, "dst": dst, "value": mbps})

    def matrix() -> pd.DataFrame:
        return metrics.network_matrix(engine, "throughput", "1d", now_s=NOW_S)

    def pivot() -> pd.DataFrame:
        return pd.pivot_table(in_memory, index="src", columns="dst", values="value",
                              aggfunc="mean")

    rows_took, rows_baseline = best_of_pair(5, matrix, pivot)
    by_rows = matrix()
    assert metrics.block_closed_buckets(engine, now_s=NOW_S)  # the aggregate cycle
    took, baseline = best_of_pair(9, matrix, pivot)
    blocked = matrix()
    assert blocked.shape == (n, n) and int(blocked.notna().sum().sum()) == src.size
    pd.testing.assert_frame_equal(blocked, by_rows, check_exact=True)
    emit(f"matrix.{n}", took, "s", baseline, "<= 3")
    emit(f"matrix.{n}.rows", rows_took, "s", rows_baseline, "none (before the cycle)")


if __name__ == "__main__":
    main()

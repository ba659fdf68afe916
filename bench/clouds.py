"""clouds.2000: one full recomputation of dynamic cloud membership for 2,000 sites.

Registers 2,000 sites in 10 clouds (each with a Tier-1 and an online queue),
fills the last day's buckets with FTS throughput for every Tier-1 -> site
link plus 200 random links per site (the rest of a realistic, partial
mesh: 420,000 links), then times ``netbroker.clouds.membership.recompute`` (read the
registry and the Tier-1 links, decide, store members and history). The
in-run baseline is the pure decision (``decide_membership``) on the same
inputs, so the ratio says how much of the cycle is I/O. The goal is on the
value: under 2 s.

    python bench/clouds.py [--sites N]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from _common import best_of, emit, scratch_path

from netbroker.clouds import membership as clouds
from netbroker.common.config import CloudSettings
from netbroker.db import create_db_engine, upgrade
from netbroker.db.metrics import MetricsDB
from netbroker.registry import registry

NOW_S = 1_795_514_400.0


def grid_document(n: int) -> str:
    names = [f"SITE-{i:04d}" for i in range(n)]
    doc = {"cloud": {f"C{c}": {"tier1": names[c]} for c in range(10)},
           "site": {s: {"cloud": f"C{i % 10}", "tier_level": 1 if i < 10 else 2}
                    for i, s in enumerate(names)},
           "pandaqueue": {s: {"atlas_site": s, "status": "online", "maxrss": 2000,
                              "maxtime": 86400, "pilot_slots": 100} for s in names}}
    return json.dumps(doc)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sites", type=int, default=2000)
    n = parser.parse_args().sites
    engine = create_db_engine(f"sqlite:///{scratch_path('clouds.db')}")
    upgrade(engine)
    registry.import_grid_document(engine, grid_document(n))
    rng = np.random.default_rng(5)
    start = int(NOW_S // 600 * 600) - 3600
    pairs = {(t + 1, d) for t in range(10) for d in range(1, n + 1) if d != t + 1}
    for s in range(1, n + 1):
        pairs |= {(s, int(d)) for d in rng.choice(np.arange(1, n + 1), 200) if d != s}
    rows = [("throughput", "fts", start, s, d, 4, 0.0, 4e9, float(rng.gamma(2, 4)) * 4e9,
             NOW_S - 60) for s, d in sorted(pairs)]
    with engine.begin() as conn:
        MetricsDB(conn).add_buckets(rows)
    settings = CloudSettings(window="1d")
    inputs = clouds.gather_inputs(engine, settings, now_s=NOW_S)
    decision = best_of(3, lambda: clouds.decide_membership(inputs, settings))
    # The first recomputation is the heavy one (every join written to history).
    took = best_of(1, lambda: clouds.recompute(engine, settings, now_s=NOW_S))
    emit(f"clouds.{n}", took, "s", decision, "value < 2 s")


if __name__ == "__main__":
    main()

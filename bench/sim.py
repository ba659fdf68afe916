"""sim.week: seconds for the busy scenario's week under the three policies.

``netbroker simulate --scenario busy``: a week of the 150-site grid with a
quarter of its slots (meant to run at 80-95% of them), 100,000 jobs, the
policies side by side as ``netbroker simulate`` runs them (a spawned process
per CPU, the slowest first), every decision the service's own on measured metrics
(netbroker/sim). The in-run baseline is
the plain reference scenario (the same grid with four times the slots, the
same 100,000 jobs) simulated in the same run: the ratio says what the busy
grid's queueing, rebrokerage and PD2P add. The goal is on the value:
under 3 minutes.

    python bench/sim.py [--jobs N] [--rows FILE]

``--rows`` also writes every policy's results (``netbroker simulate --json``'s
rows) to FILE, so one run gives the README's table too.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from _common import emit

from netbroker.sim import compare, load_scenario
from netbroker.sim.scenario import busy_scenario, reference_scenario


def seconds(path: Path, jobs: int | None, rows: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    scenario = load_scenario(path)
    results = compare(scenario, jobs=jobs)
    rows.extend({"scenario": scenario.name, **r.row()} for r in results)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=None, help="override the job count")
    parser.add_argument("--rows", type=Path, default=None,
                        help="also write each policy's results here (JSON)")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    baseline = seconds(reference_scenario(), args.jobs, rows)
    busy = seconds(busy_scenario(), args.jobs, rows)
    if args.rows is not None:
        args.rows.write_text(json.dumps(rows, indent=1) + "\n")
    emit("sim.week", busy, "s", baseline, "< 180 s")


if __name__ == "__main__":
    main()

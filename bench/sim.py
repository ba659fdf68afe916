"""sim.week: seconds for the busy scenario's week under the three policies.

``netbroker simulate --scenario busy``: a week of the 150-site grid at 80-95%
of its slots, 100,000 jobs, each policy in turn, every decision the
service's own on measured metrics (netbroker/sim). The in-run baseline is
the plain reference scenario (the same grid with four times the slots, the
same 100,000 jobs) simulated in the same run: the ratio says what the busy
grid's queueing, rebrokerage and PD2P add. The goal is on the value:
under 3 minutes.

    python bench/sim.py [--jobs N]
"""

from __future__ import annotations

import argparse
import time

from _common import emit

from netbroker.sim import compare, load_scenario
from netbroker.sim.scenario import busy_scenario, reference_scenario


def seconds(path: object, jobs: int | None) -> float:
    started = time.perf_counter()
    compare(load_scenario(path), jobs=jobs)  # type: ignore[arg-type]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=None, help="override the job count")
    jobs = parser.parse_args().jobs
    baseline = seconds(reference_scenario(), jobs)
    busy = seconds(busy_scenario(), jobs)
    emit("sim.week", busy, "s", baseline, "< 180 s")


if __name__ == "__main__":
    main()

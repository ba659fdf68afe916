"""The grid simulator: the service's brokerage and cloud code under a simulated clock.

``netbroker simulate --scenario FILE`` runs a scenario's workload under the
``static``, ``dynamic`` and ``full_mesh`` policies and prints them side by
side (:func:`compare`).

An edge: may import the core, ``collectors`` (the simulated samples go
through the real ingestion) and below.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from netbroker.sim.run import POLICIES, SimResult, simulate
from netbroker.sim.scenario import (
    Scenario,
    build_grid,
    busy_scenario,
    load_scenario,
    reference_scenario,
)
from netbroker.sim.service import prepare_database

__all__ = ["POLICIES", "Scenario", "SimResult", "build_grid", "busy_scenario", "compare",
           "load_scenario", "reference_scenario", "simulate", "with_jobs"]


# The policies by how long a simulation of them takes, longest first (measured on the
# shipped scenarios: docs/performance.md).
SLOWEST_FIRST = {"full_mesh": 0, "dynamic": 1, "static": 2}


def with_jobs(scenario: Scenario, jobs: int | None) -> Scenario:
    """The scenario with another job count (``None``: unchanged)."""
    if jobs is None:
        return scenario
    return scenario.model_copy(update={"workload": scenario.workload.model_copy(
        update={"jobs": jobs})})


def compare(scenario: Scenario, policies: tuple[str, ...] = POLICIES,
            jobs: int | None = None, workers: int | None = None,
            done: Callable[[SimResult], None] | None = None) -> list[SimResult]:
    """The same workload under each policy (``jobs`` overrides the scenario's count),
    each from a copy of one database holding the grid; the results in ``policies``'
    order.

    The policies are independent runs (each its own database and seeded
    generator), so ``workers`` processes run them side by side (default: one
    per policy, at most one per CPU; 1: one after the other in this process)
    and a result does not depend on which. ``done`` is called with each result
    as it comes.
    """
    scenario = with_jobs(scenario, jobs)
    grid = build_grid(scenario)
    if workers is None:
        workers = min(len(policies), os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(prefix="netbroker-sim-") as scratch:
        template = prepare_database(grid, Path(scratch))
        if workers <= 1 or len(policies) <= 1:
            results = []
            for policy in policies:
                results.append(simulate(grid, scenario, policy, template=template))
                if done is not None:
                    done(results[-1])
            return results
        # spawn, not fork: a fresh interpreter holds no engine or lock of this one
        context = multiprocessing.get_context("spawn")
        # The slowest first (longest-processing-time order): the policies that open the
        # grid rebroker and copy the most, so with fewer workers than policies the last
        # to start is the shortest.
        order = sorted(policies, key=lambda p: SLOWEST_FIRST.get(p, len(SLOWEST_FIRST)))
        with ProcessPoolExecutor(min(workers, len(policies)), mp_context=context) as pool:
            futures = {policy: pool.submit(simulate, grid, scenario, policy, 0, template)
                       for policy in order}
            for future in as_completed(futures.values()):
                if done is not None:
                    done(future.result())
            return [futures[policy].result() for policy in policies]

"""The grid simulator: the service's brokerage and cloud code under a simulated clock.

``netbroker simulate --scenario FILE`` runs a scenario's workload under the
``static``, ``dynamic`` and ``full_mesh`` policies and prints them side by
side (:func:`compare`).

An edge: may import the core, ``collectors`` (the simulated samples go
through the real ingestion) and below.
"""

from __future__ import annotations

import tempfile
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


def with_jobs(scenario: Scenario, jobs: int | None) -> Scenario:
    """The scenario with another job count (``None``: unchanged)."""
    if jobs is None:
        return scenario
    return scenario.model_copy(update={"workload": scenario.workload.model_copy(
        update={"jobs": jobs})})


def compare(scenario: Scenario, policies: tuple[str, ...] = POLICIES,
            jobs: int | None = None) -> list[SimResult]:
    """The same workload under each policy (``jobs`` overrides the scenario's count),
    each from a copy of one database holding the grid."""
    scenario = with_jobs(scenario, jobs)
    grid = build_grid(scenario)
    with tempfile.TemporaryDirectory(prefix="netbroker-sim-") as scratch:
        template = prepare_database(grid, Path(scratch))
        return [simulate(grid, scenario, policy, template=template) for policy in policies]

"""The grid simulator: the service's brokerage and cloud code under a simulated clock.

``netbroker simulate --scenario FILE`` runs a scenario's workload under the
``static``, ``dynamic`` and ``full_mesh`` policies and prints them side by
side (:func:`compare`).
"""

from __future__ import annotations

from netbroker.sim.run import POLICIES, SimResult, simulate
from netbroker.sim.scenario import Scenario, build_grid, load_scenario, reference_scenario

__all__ = ["POLICIES", "Scenario", "SimResult", "build_grid", "compare", "load_scenario",
           "reference_scenario", "simulate", "with_jobs"]


def with_jobs(scenario: Scenario, jobs: int | None) -> Scenario:
    """The scenario with another job count (``None``: unchanged)."""
    if jobs is None:
        return scenario
    return scenario.model_copy(update={"workload": scenario.workload.model_copy(
        update={"jobs": jobs})})


def compare(scenario: Scenario, policies: tuple[str, ...] = POLICIES,
            jobs: int | None = None) -> list[SimResult]:
    """The same workload under each policy (``jobs`` overrides the scenario's count)."""
    scenario = with_jobs(scenario, jobs)
    grid = build_grid(scenario)
    return [simulate(grid, scenario, policy) for policy in policies]

"""The simulator: the service's brokerage under a simulated clock, three policies."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from netbroker.common.errors import ConfigError
from netbroker.sim import POLICIES, Scenario, build_grid, compare, load_scenario, simulate
from netbroker.sim.scenario import Grid

SMALL = """
name = "small"
seed = 3
[grid]
clouds = 3
sites = 24
slots_tier1 = [30, 60]
slots_tier2 = [5, 20]
slots_tier3 = [2, 5]
[links]
well_connected_foreign = 4
[workload]
jobs = 3000
files_per_task = [20, 80]
hours = 24.0
datasets = 30
[[changes]]
at_hours = 6.0
src = "T1:0"
dst = "*"
mbytes_per_s = 0.5
[[outages]]
site = "T1:1"
start_hours = 2.0
hours = 4.0
"""


@pytest.fixture
def small(tmp_path: Path) -> Scenario:
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    return load_scenario(path)


def test_every_policy_ends_every_job_and_static_stays_home(small: Scenario) -> None:
    results = {r.policy: r for r in compare(small)}
    assert set(results) == set(POLICIES)
    for r in results.values():
        # every job ends: finished, or failed after its last attempt (sites fail jobs)
        assert r.jobs + r.jobs_failed == 3000
        assert r.jobs_failed <= r.failed_attempts and r.jobs_failed < 30
        assert 0 <= r.wait_mean_h <= r.turnaround_mean_h
        assert r.wait_p95_h <= r.turnaround_p95_h + 1e-9
        assert all(0 <= u <= 100 for u in r.utilisation.values())
    assert results["static"].jobs_outside_home_cloud == 0
    assert results["dynamic"].jobs_outside_home_cloud > 0  # foreign members took work


def test_a_simulation_is_deterministic_in_this_process_or_another(small: Scenario) -> None:
    grid = build_grid(small)
    first, again = simulate(grid, small, "dynamic"), simulate(grid, small, "dynamic")
    assert {**first.row(), "wall_s": 0} == {**again.row(), "wall_s": 0}
    # side by side in two spawned processes, the results in the order asked for
    static, dynamic = compare(small, ("static", "dynamic"), workers=2)
    assert (static.policy, dynamic.policy) == ("static", "dynamic")
    assert {**dynamic.row(), "wall_s": 0} == {**first.row(), "wall_s": 0}


def test_a_bad_scenario_is_refused_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[workload]\njobs = -1\n")
    with pytest.raises(ConfigError, match=r"workload\.jobs: Input should be greater than"):
        load_scenario(path)


def test_simulate_command_prints_the_three_policies(tmp_path: Path) -> None:
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    run = subprocess.run([sys.executable, "-m", "netbroker", "simulate", "--scenario",
                          str(path), "--json"], capture_output=True, text=True, timeout=300,
                         check=False)
    assert run.returncode == 0, run.stderr
    assert [r["policy"] for r in json.loads(run.stdout)] == list(POLICIES)
    table = subprocess.run([sys.executable, "-m", "netbroker", "simulate", "--jobs", "2000",
                            "--policy", "static", "--policy", "full_mesh"],
                           capture_output=True, text=True, timeout=300, check=False,
                           env={"COLUMNS": "150", "PATH": "/usr/bin:/bin"})
    assert table.returncode == 0, table.stderr
    assert "static" in table.stdout and "full_mesh" in table.stdout
    assert "TB moved across clouds" in table.stdout


TWO_SITES = """
name = "two sites"
seed = 5
pd2p = false
rebrokerage = false
[grid]
clouds = 1
sites = 2
tier3_fraction = 0.0
[links]
well_connected_foreign = 0
[workload]
jobs = 6
files_per_task = [6, 7]
datasets = 1
replicas = [1, 1]
"""

def _two_sites(tmp_path: Path) -> tuple[Scenario, Grid]:
    """TWO_SITES made exact: 5 slots, 4 of them at the Tier-1 (which holds the
    data), 1 at a Tier-2 whose queue no job fits (16 GB against 1 GB); speed 1,
    nothing failing; one task of six one-hour jobs at time 0."""
    path = tmp_path / "two.toml"
    path.write_text(TWO_SITES)
    scenario = load_scenario(path)
    grid = build_grid(scenario)
    grid.speed[:] = 1.0
    grid.failure[:] = 0.0  # type: ignore[index]
    grid.replicas = [np.array([0])]
    (task,) = grid.tasks
    task.arrival_s, task.files, task.job_s, task.cores, task.memory_mb = 0.0, 6, 3600.0, 1, 2000
    grid.queue_site = np.array([0, 1])
    grid.queue_names = [f"{grid.names[0]}_UNIFIED0", f"{grid.names[1]}_UNIFIED0"]
    grid.queue_type = np.array(["unified", "unified"], dtype=object)
    grid.queue_cores = np.array([8, 8])
    grid.queue_memory_mb = np.array([16000, 1000])
    grid.queue_walltime_s = np.array([np.inf, np.inf])
    grid.queue_disk_mb = np.array([10**6, 10**6])
    grid.queue_slots = np.array([4, 1])
    grid.slots = np.array([4, 1])
    return scenario, grid


def test_the_slots_held_are_counted_hour_by_hour(tmp_path: Path) -> None:
    """The grid of ``_two_sites``. By hand: four jobs hold 4 of the 5 slots in the
    first hour, the last two 2 of 5 in the second; the makespan is 2 h, so
    6 of 10 slot-hours are held (60%) and one hour of two is at 80% or more."""
    scenario, grid = _two_sites(tmp_path)
    result = simulate(grid, scenario, "static")
    assert result.jobs == 6 and result.failed_attempts == 0
    assert result.makespan_h == 2.0
    assert result.held_percent == 60.0
    assert result.hours_held_80_percent == 50.0
    assert result.busy_percent == 60.0  # every attempt succeeded: CPU used = slots held
    assert result.held_arrivals_percent == 0.0  # one task: no hours of arrivals


def test_the_slots_held_while_tasks_arrive_are_apart_from_the_drain(tmp_path: Path) -> None:
    """The grid of the test above, its task of six one-hour jobs at time 0 and a
    second task of four at 2 h. By hand: hour 1 holds 4 of 5 slots, hour 2 the
    first task's last two, hour 3 the second task's four; makespan 3 h, 10 of 15
    slot-hours held (66.7%), hours 1 and 3 at 80% (66.7%); while tasks arrive
    (0 to 2 h) 6 of 10 slot-hours (60%)."""
    scenario, grid = _two_sites(tmp_path)
    grid.tasks.append(dataclasses.replace(grid.tasks[0], arrival_s=7200.0, files=4))
    result = simulate(grid, scenario, "static")
    assert result.jobs == 10 and result.makespan_h == 3.0
    assert result.held_percent == 66.7
    assert result.hours_held_80_percent == 66.7
    assert result.held_arrivals_percent == 60.0


POPULAR = """
seed = 5
[workload]
jobs = 40000
files_per_task = [20, 21]
datasets = 600
popularity_zipf = {a}
"""


@pytest.mark.parametrize(("a", "share"), [(3.0, 0.832), (1.6, 0.4375)])
def test_the_dataset_draw_follows_the_scenarios_zipf_exponent(tmp_path: Path, a: float,
                                                              share: float) -> None:
    # 2,000 tasks of 20 jobs; no hot datasets, so a task reads its Zipf draw (mod 600):
    # dataset 1 with probability 1 / zeta(a), 1 / 1.2021 = 0.832 at 3.0 and
    # 1 / 2.2858 = 0.4375 at 1.6 (the tail folded back on dataset 1 adds < 0.001).
    path = tmp_path / "popular.toml"
    path.write_text(POPULAR.format(a=a))
    grid = build_grid(load_scenario(path))
    first = np.mean([t.dataset == 1 for t in grid.tasks])
    assert len(grid.tasks) == 2000 and abs(first - share) < 0.035


def test_the_default_zipf_exponent_is_the_reference_draw(tmp_path: Path) -> None:
    default, explicit = tmp_path / "default.toml", tmp_path / "explicit.toml"
    default.write_text(POPULAR.replace("popularity_zipf = {a}\n", ""))
    explicit.write_text(POPULAR.format(a=1.6))
    assert ([t.dataset for t in build_grid(load_scenario(default)).tasks]
            == [t.dataset for t in build_grid(load_scenario(explicit)).tasks])
    bad = tmp_path / "bad.toml"
    bad.write_text(POPULAR.format(a=1.0))
    with pytest.raises(ConfigError, match=r"workload\.popularity_zipf: Input should be greater"):
        load_scenario(bad)

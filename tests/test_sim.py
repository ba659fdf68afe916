"""The simulator: the service's brokerage under a simulated clock, three policies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from netbroker.common.errors import ConfigError
from netbroker.sim import POLICIES, Scenario, build_grid, compare, load_scenario, simulate

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


def test_a_simulation_is_deterministic(small: Scenario) -> None:
    grid = build_grid(small)
    first, again = simulate(grid, small, "dynamic"), simulate(grid, small, "dynamic")
    assert {**first.row(), "wall_s": 0} == {**again.row(), "wall_s": 0}


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

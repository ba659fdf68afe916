"""Simulation scenarios: a grid, its links and their changes, a workload, failures.

A scenario is a TOML file (validated here, every problem named by its key)
from which :func:`build_grid` generates, with the scenario's seed, the
sites (clouds of a Tier-1, Tier-2s and Tier-3s, slots and CPU speed), the
link throughput matrix (fast inside clouds, Tier-1s meshed, a few foreign
sites well connected to a Tier-1, the rest slow and scattered), the datasets
and where they sit, and the tasks with their arrival times.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from netbroker.errors import ConfigError

__all__ = ["Grid", "LinkChange", "Outage", "Scenario", "Task", "build_grid", "load_scenario",
           "reference_scenario"]

MB = 1_000_000


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GridSpec(_Model):
    clouds: int = Field(10, ge=1, le=100)
    sites: int = Field(150, ge=2, le=5000)
    tier3_fraction: float = Field(0.2, ge=0, lt=1)
    slots_tier1: tuple[int, int] = (800, 3000)
    slots_tier2: tuple[int, int] = (100, 1200)
    slots_tier3: tuple[int, int] = (20, 200)
    speed_spread: float = Field(0.3, ge=0, lt=1, description="CPU speed 1 +- this.")


class LinksSpec(_Model):
    intra_cloud_mbytes_per_s: tuple[float, float] = (50.0, 400.0)
    tier1_mesh_mbytes_per_s: tuple[float, float] = (20.0, 150.0)
    other_mbytes_per_s: tuple[float, float] = (0.3, 4.0)
    well_connected_foreign: int = Field(
        20, ge=0, description="Foreign sites given a fast link (10-60 MB/s) from a Tier-1.")


class LinkChange(_Model):
    """At ``at_hours``, the links from ``src`` to ``dst`` (site names or ``T1:<cloud>``)
    run at ``mbytes_per_s``."""

    at_hours: float = Field(ge=0)
    src: str
    dst: str
    mbytes_per_s: float = Field(gt=0)


class Outage(_Model):
    """A site offline from ``start_hours`` for ``hours``."""

    site: str
    start_hours: float = Field(ge=0)
    hours: float = Field(gt=0)


class WorkloadSpec(_Model):
    jobs: int = Field(100_000, ge=1)
    files_per_task: tuple[int, int] = (20, 300)
    file_gbytes: tuple[float, float] = (0.5, 4.0)
    job_hours: tuple[float, float] = (0.5, 6.0)
    analysis_fraction: float = Field(0.4, ge=0, le=1)
    hours: float = Field(120.0, gt=0, description="Tasks arrive over this many hours.")
    datasets: int = Field(600, ge=1)
    replicas: tuple[int, int] = (1, 3)
    failure_fraction: float = Field(0.03, ge=0, lt=1)


class Scenario(_Model):
    """A whole scenario, as the TOML file says it."""

    name: str = "scenario"
    seed: int = 1
    grid: GridSpec = GridSpec()
    links: LinksSpec = LinksSpec()
    changes: list[LinkChange] = Field(default_factory=list)
    outages: list[Outage] = Field(default_factory=list)
    workload: WorkloadSpec = WorkloadSpec()
    membership_every_hours: float = Field(0.5, gt=0)
    min_mbytes_per_s_from_tier1: float = Field(5.0, gt=0)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; raises ``ConfigError`` naming each bad key."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError([f"cannot read: {exc.strerror}"], str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], str(path)) from None
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()],
                          str(path)) from None


def reference_scenario() -> Path:
    """The shipped reference scenario: 150 sites, a week, 100,000 jobs."""
    return Path(__file__).with_name("reference.toml")


@dataclass
class Task:
    arrival_s: float
    dataset: int
    files: int
    file_bytes: float
    job_s: float          # CPU seconds of one job (one file), at speed 1
    analysis: bool
    priority: int


@dataclass
class Grid:
    """A generated grid: arrays by site (``n``) and cloud (``c``)."""

    names: list[str]
    cloud: np.ndarray          # (n,)
    tier: np.ndarray           # (n,)
    slots: np.ndarray          # (n,)
    speed: np.ndarray          # (n,)
    tier1: np.ndarray          # (c,) site index
    rate: np.ndarray           # (n, n) MB/s, the truth the network delivers
    replicas: list[np.ndarray]  # per dataset: site indices holding it
    tasks: list[Task]

    def site(self, name: str) -> list[int]:
        """Site indices a change names: a site, or ``T1:<cloud index>``, or ``*``."""
        if name == "*":
            return list(range(len(self.names)))
        if name.startswith("T1:"):
            return [int(self.tier1[int(name[3:])])]
        return [self.names.index(name)]


def build_grid(s: Scenario) -> Grid:
    """Generate the scenario's grid and workload, deterministically from its seed."""
    rng = np.random.default_rng(s.seed)
    g, n, c = s.grid, s.grid.sites, s.grid.clouds
    cloud = np.arange(n) % c
    tier = np.where(np.arange(n) < c, 1, np.where(rng.random(n) < g.tier3_fraction, 3, 2))
    names = [f"T{t}-C{k:02d}-{i:04d}" for i, (t, k) in enumerate(zip(tier, cloud, strict=True))]
    ranges = {1: g.slots_tier1, 2: g.slots_tier2, 3: g.slots_tier3}
    slots = np.array([rng.integers(*ranges[int(t)]) for t in tier])
    speed = 1 + rng.uniform(-g.speed_spread, g.speed_spread, n)
    tier1 = np.arange(c)
    lk = s.links
    rate = rng.uniform(*lk.other_mbytes_per_s, (n, n))
    same = cloud[:, None] == cloud[None, :]
    rate[same] = rng.uniform(*lk.intra_cloud_mbytes_per_s, int(same.sum()))
    t1 = tier == 1
    mesh = t1[:, None] & t1[None, :]
    rate[mesh] = rng.uniform(*lk.tier1_mesh_mbytes_per_s, int(mesh.sum()))
    for _ in range(lk.well_connected_foreign):
        k = int(rng.integers(c))
        foreign = np.flatnonzero(cloud != k)
        site = int(rng.choice(foreign))
        rate[tier1[k], site] = rate[site, tier1[k]] = rng.uniform(10, 60)
    np.fill_diagonal(rate, np.inf)
    w = s.workload
    holders = np.flatnonzero(tier <= 2)
    weights = np.where(tier[holders] == 1, 4.0, 1.0)
    replicas = [rng.choice(holders, int(rng.integers(w.replicas[0], w.replicas[1] + 1)),
                           replace=False, p=weights / weights.sum()) for _ in range(w.datasets)]
    popularity = rng.zipf(1.6, w.datasets * 4) % w.datasets  # a few datasets read a lot
    tasks, jobs = [], 0
    while jobs < w.jobs:
        files = int(min(rng.integers(*w.files_per_task), w.jobs - jobs))
        analysis = bool(rng.random() < w.analysis_fraction)
        tasks.append(Task(float(rng.uniform(0, w.hours * 3600)), int(rng.choice(popularity)),
                          files, float(rng.uniform(*w.file_gbytes) * 1e9),
                          float(rng.uniform(*w.job_hours) * 3600), analysis,
                          900 if analysis else 1000))
        jobs += files
    tasks.sort(key=lambda t: t.arrival_s)
    return Grid(names, cloud, tier, slots, speed, tier1, rate, replicas, tasks)

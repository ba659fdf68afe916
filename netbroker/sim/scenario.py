"""Simulation scenarios: a grid, its links and their changes, a workload, failures.

A scenario is a TOML file (validated here, every problem named by its key)
from which :func:`build_grid` generates, with the scenario's seed, the
sites (clouds of a Tier-1, Tier-2s and Tier-3s, slots, CPU speed, how often
their jobs fail), their queues (each site takes the queues of a site of the
same tier in the shipped sample grid: types, cores, memory, wall time and
disk as CRIC gives them, the site's slots shared in the sample's
proportions), the links (capacity in MB/s, fast inside clouds, Tier-1s
meshed, a few foreign sites well connected to a Tier-1, the rest slow and
scattered; a packet loss each), the datasets and where they sit (a few hot
ones many analysis tasks read), and the tasks with their arrival times.
:func:`grid_document` writes the grid as the CRIC-shaped document the
service imports.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from netbroker.common.errors import ConfigError

__all__ = ["Congestion", "Grid", "LinkChange", "Outage", "Scenario", "Task", "build_grid",
           "busy_scenario", "grid_document", "load_scenario", "reference_scenario"]

MB = 1_000_000
BIG_FILES_MAX_JOB_SHARE = 0.01  # a dataset read by more of the jobs never has big files
SAMPLE_GRID = Path(__file__).resolve().parent.parent / "data" / "sample_grid.json"


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
    failure_fraction: float = Field(0.03, ge=0, lt=1,
                                    description="Attempts that fail at an ordinary site.")
    bad_sites: int = Field(0, ge=0, description="Tier-2s whose jobs fail far more often.")
    bad_failure_fraction: float = Field(0.4, ge=0, lt=1)


class LinksSpec(_Model):
    intra_cloud_mbytes_per_s: tuple[float, float] = (50.0, 400.0)
    tier1_mesh_mbytes_per_s: tuple[float, float] = (20.0, 150.0)
    other_mbytes_per_s: tuple[float, float] = (0.3, 4.0)
    well_connected_foreign: int = Field(
        20, ge=0, description="Foreign sites given a fast link (10-60 MB/s) from a Tier-1.")
    per_transfer_mbytes_per_s: float = Field(
        200.0, gt=0, description="Fastest one transfer goes, however idle its link.")
    transfer_setup_s: tuple[float, float] = (5.0, 30.0)
    packet_loss_fraction: tuple[float, float] = (0.0, 0.004)


class MeasureSpec(_Model):
    """What the service measures, and how well: FTS reports every transfer; perfSONAR
    tests each Tier-1's link to every site with a perfSONAR host."""

    every_minutes: float = Field(
        30.0, gt=0, description="Records are ingested and the matrix re-read this often.")
    throughput_every_hours: float = Field(6.0, gt=0)
    loss_every_hours: float = Field(3.0, gt=0)
    noise_fraction: float = Field(0.15, ge=0, lt=2, description="Spread of a probe's value.")
    gap_fraction: float = Field(0.1, ge=0, lt=1, description="Probes that report nothing.")
    unprobed_fraction: float = Field(0.1, ge=0, lt=1,
                                     description="Sites without a perfSONAR host.")


class LinkChange(_Model):
    """At ``at_hours``, the links from ``src`` to ``dst`` (site names or ``T1:<cloud>``)
    run at ``mbytes_per_s`` (and lose ``packet_loss_fraction`` of their packets)."""

    at_hours: float = Field(ge=0)
    src: str
    dst: str
    mbytes_per_s: float = Field(gt=0)
    packet_loss_fraction: float | None = Field(None, ge=0, le=1)


class Congestion(_Model):
    """Traffic the grid does not see takes ``share`` of the links' capacity for a while."""

    src: str
    dst: str
    start_hours: float = Field(ge=0)
    hours: float = Field(gt=0)
    share: float = Field(gt=0, lt=1)


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
    popularity_zipf: float = Field(
        1.6, gt=1, description="Zipf exponent of the tasks' dataset draw: the higher, the "
                               "more tasks read the few most read datasets.")
    replicas: tuple[int, int] = (1, 3)
    failure_fraction: float | None = Field(
        None, ge=0, lt=1, description="Obsolete: grid.failure_fraction says it now.")
    multicore_fraction: float = Field(0.5, ge=0, le=1,
                                      description="Production tasks asking for 8 cores.")
    memory_mb: tuple[int, int] = (1500, 4000)
    hot_datasets: int = Field(0, ge=0, description="Datasets many analysis tasks read.")
    hot_fraction: float = Field(0.0, ge=0, le=1,
                                description="Analysis tasks reading one of the hot datasets.")
    big_file_fraction: float = Field(0.0, ge=0, le=1,
                                     description="Datasets of big files (the disk filter).")
    big_file_gbytes: tuple[float, float] = (15.0, 30.0)
    long_job_fraction: float = Field(0.0, ge=0, le=1,
                                     description="Tasks of long jobs (the wall-time filter).")
    long_job_hours: tuple[float, float] = (24.0, 40.0)


class Scenario(_Model):
    """A whole scenario, as the TOML file says it."""

    name: str = "scenario"
    seed: int = 1
    grid: GridSpec = GridSpec()
    links: LinksSpec = LinksSpec()
    measure: MeasureSpec = MeasureSpec()
    changes: list[LinkChange] = Field(default_factory=list)
    congestion: list[Congestion] = Field(default_factory=list)
    outages: list[Outage] = Field(default_factory=list)
    workload: WorkloadSpec = WorkloadSpec()
    membership_every_hours: float = Field(0.5, gt=0)
    min_mbytes_per_s_from_tier1: float = Field(5.0, gt=0)
    pd2p: bool = Field(True, description="Run PD2P (and act as DDM for its decisions).")
    pd2p_every_minutes: float = Field(30.0, gt=0)
    rebrokerage: bool = Field(True, description="Run the rebrokerage cycle.")
    rebrokerage_every_minutes: float = Field(60.0, gt=0)


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
    """The shipped reference scenario: 150 sites, a week, 100,000 jobs, slots to spare."""
    return Path(__file__).with_name("reference.toml")


def busy_scenario() -> Path:
    """The shipped busy scenario: the same grid with a quarter of the slots (meant to be
    80-95% busy), hot datasets, a congested and a degraded link, a few failing sites."""
    return Path(__file__).with_name("busy.toml")


@dataclass
class Task:
    arrival_s: float
    dataset: int
    files: int
    file_bytes: float
    job_s: float          # CPU seconds of one file, at speed 1
    analysis: bool
    priority: int
    cores: int = 1
    memory_mb: int = 2000


@dataclass
class Grid:
    """A generated grid: arrays by site (``n``), cloud (``c``) and queue (``q``)."""

    names: list[str]
    cloud: np.ndarray          # (n,)
    tier: np.ndarray           # (n,)
    slots: np.ndarray          # (n,)
    speed: np.ndarray          # (n,)
    tier1: np.ndarray          # (c,) site index
    rate: np.ndarray           # (n, n) MB/s, the links' capacity (the truth)
    replicas: list[np.ndarray]  # per dataset: site indices holding it
    tasks: list[Task]
    loss: np.ndarray | None = None        # (n, n) packet loss fraction, the truth
    failure: np.ndarray | None = None     # (n,) fraction of attempts that fail
    probed: np.ndarray | None = None      # (n,) bool: the site has a perfSONAR host
    queue_site: np.ndarray | None = None  # (q,)
    queue_names: list[str] | None = None
    queue_type: np.ndarray | None = None
    queue_cores: np.ndarray | None = None
    queue_memory_mb: np.ndarray | None = None
    queue_walltime_s: np.ndarray | None = None  # inf: no limit
    queue_disk_mb: np.ndarray | None = None
    queue_slots: np.ndarray | None = None
    dataset_files: np.ndarray | None = None     # (d,) files of each dataset
    dataset_file_bytes: np.ndarray | None = None  # (d,) bytes of each of its files
    hot: np.ndarray | None = None               # (d,) bool

    def site(self, name: str) -> list[int]:
        """Site indices a change names: a site, or ``T1:<cloud index>``, or ``*``."""
        if name == "*":
            return list(range(len(self.names)))
        if name.startswith("T1:"):
            return [int(self.tier1[int(name[3:])])]
        return [self.names.index(name)]


@cache
def _sample_queue_sets() -> dict[int, list[list[dict[str, float | str]]]]:
    """The sample grid's queues, per site, grouped by the site's tier (0 counts as 1)."""
    doc = json.loads(SAMPLE_GRID.read_text())
    tiers = {name: max(1, int(s["tier_level"])) for name, s in doc["site"].items()}
    by_site: dict[str, list[dict[str, float | str]]] = {}
    for q in doc["pandaqueue"].values():
        by_site.setdefault(q["atlas_site"], []).append({
            "type": q["type"], "cores": q["corecount"], "memory_mb": q["maxrss"],
            "walltime_s": q["maxtime"] or np.inf, "disk_mb": q["maxwdir"],
            "slots": q["pilot_slots"]})
    out: dict[int, list[list[dict[str, float | str]]]] = {1: [], 2: [], 3: []}
    for site, queues in sorted(by_site.items()):
        out[tiers.get(site, 2)].append(sorted(queues, key=lambda q: str(q["type"])))
    return out


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
    # a few datasets read a lot
    popularity = rng.zipf(w.popularity_zipf, w.datasets * 4) % w.datasets
    tasks, jobs = [], 0
    while jobs < w.jobs:
        files = min(int(rng.integers(*w.files_per_task)), w.jobs - jobs)
        analysis = bool(rng.random() < w.analysis_fraction)
        tasks.append(Task(float(rng.uniform(0, w.hours * 3600)), int(rng.choice(popularity)),
                          files, float(rng.uniform(*w.file_gbytes) * 1e9),
                          float(rng.uniform(*w.job_hours) * 3600), analysis,
                          900 if analysis else 1000))
        jobs += files
    tasks.sort(key=lambda t: t.arrival_s)
    grid = Grid(names, cloud, tier, slots, speed, tier1, rate, replicas, tasks)
    # What the brokerage filters and the network's measurement act on, drawn from a
    # generator of their own so the grid and workload above stay those of the seed.
    _realise(grid, s, np.random.default_rng([s.seed, 2]))
    return grid


def _realise(grid: Grid, s: Scenario, rng: np.random.Generator) -> None:
    """Queues, loss, failures, perfSONAR hosts, dataset files and the tasks' needs."""
    n, w = len(grid.names), s.workload
    lk = s.links
    grid.loss = rng.uniform(*lk.packet_loss_fraction, (n, n))
    np.fill_diagonal(grid.loss, 0.0)
    base = w.failure_fraction if w.failure_fraction is not None else s.grid.failure_fraction
    failure = np.full(n, base)
    tier2 = np.flatnonzero(grid.tier == 2)
    if s.grid.bad_sites:
        bad = rng.choice(tier2, min(s.grid.bad_sites, len(tier2)), replace=False)
        failure[bad] = s.grid.bad_failure_fraction
    grid.failure = failure
    grid.probed = (grid.tier == 1) | (rng.random(n) >= s.measure.unprobed_fraction)
    pools = _sample_queue_sets()
    site_of, qnames, fields = [], [], []
    for i, name in enumerate(grid.names):
        pool = pools[int(grid.tier[i])] or pools[2]
        queues = pool[int(rng.integers(len(pool)))]
        total = sum(float(q["slots"]) for q in queues) or 1.0
        for j, q in enumerate(queues):
            site_of.append(i)
            qnames.append(f"{name}_{str(q['type']).upper()}{j}")
            share = max(1, round(int(grid.slots[i]) * float(q["slots"]) / total))
            fields.append((q["type"], q["cores"], q["memory_mb"], q["walltime_s"],
                           q["disk_mb"], share))
    grid.queue_site = np.array(site_of, dtype=np.int64)
    grid.queue_names = qnames
    grid.queue_type = np.array([f[0] for f in fields], dtype=object)
    grid.queue_cores = np.array([f[1] for f in fields], dtype=np.int64)
    grid.queue_memory_mb = np.array([f[2] for f in fields], dtype=np.int64)
    grid.queue_walltime_s = np.array([f[3] for f in fields], dtype=float)
    grid.queue_disk_mb = np.array([f[4] for f in fields], dtype=np.int64)
    grid.queue_slots = np.array([f[5] for f in fields], dtype=np.int64)
    grid.slots = np.bincount(grid.queue_site, weights=grid.queue_slots,
                             minlength=n).astype(np.int64)
    d = len(grid.replicas)
    files = np.zeros(d, np.int64)
    for t in grid.tasks:
        files[t.dataset] = max(files[t.dataset], t.files)
    hot = np.zeros(d, bool)
    if w.hot_datasets:
        hot[rng.choice(d, min(w.hot_datasets, d), replace=False)] = True
    # Big files are datasets few tasks read (a reprocessing's raw input), never a hot
    # one nor one of the most read: a 30 GB file per job on the workload's favourite
    # dataset would make the whole grid wait on the network.
    jobs = np.bincount([t.dataset for t in grid.tasks], weights=[t.files for t in grid.tasks],
                       minlength=d)
    read_a_lot = jobs > BIG_FILES_MAX_JOB_SHARE * max(float(jobs.sum()), 1.0)
    big = (rng.random(d) < w.big_file_fraction) & ~hot & ~read_a_lot
    file_bytes = np.where(big, rng.uniform(*w.big_file_gbytes, d),
                          rng.uniform(*w.file_gbytes, d)) * 1e9
    hot_ids = np.flatnonzero(hot)
    for t in grid.tasks:
        if t.analysis and len(hot_ids) and rng.random() < w.hot_fraction:
            t.dataset = int(rng.choice(hot_ids))
        files[t.dataset] = max(files[t.dataset], t.files)
        t.file_bytes = float(file_bytes[t.dataset])
        t.cores = 8 if not t.analysis and rng.random() < w.multicore_fraction else 1
        t.memory_mb = int(rng.integers(*w.memory_mb)) * (2 if t.cores > 1 else 1)
        if rng.random() < w.long_job_fraction:
            t.job_s = float(rng.uniform(*w.long_job_hours) * 3600)
    grid.dataset_files = np.maximum(files, 1)
    grid.dataset_file_bytes = file_bytes
    grid.hot = hot


def grid_document(grid: Grid) -> str:
    """The grid as the CRIC-shaped document ``netbroker grid import`` reads.

    Clouds ``C00``.. with their Tier-1s (nuclei); each site with its network domain
    ``<site>.sim`` (its perfSONAR host is ``ps.<site>.sim``), one disk endpoint
    ``<site>_DATADISK`` and its queues; the datasets ``sim:ds.NNNN`` with their files
    and the disk replicas where they start.
    """
    assert grid.queue_site is not None and grid.queue_names is not None
    assert grid.dataset_files is not None and grid.dataset_file_bytes is not None
    doc: dict[str, object] = {
        "cloud": {f"C{k:02d}": {"tier1": grid.names[int(t)]}
                  for k, t in enumerate(grid.tier1)}}
    doc["site"] = {name: {"cloud": f"C{int(grid.cloud[i]):02d}",
                          "tier_level": int(grid.tier[i]), "country": "Simland",
                          "status": "online",
                          "datapolicies": ["Nucleus"] if grid.tier[i] == 1 else [],
                          "domains": [f"{name.lower()}.sim"]}
                   for i, name in enumerate(grid.names)}
    tb = {1: 5000, 2: 500, 3: 100}
    doc["ddmendpoint"] = {f"{name}_DATADISK": {
        "site": name, "type": "DATADISK", "is_tape": False, "state": "ACTIVE",
        "se": f"davs://se.{name.lower()}.sim:443", "space_total_bytes": tb[int(grid.tier[i])]
        * 10**12, "space_free_bytes": tb[int(grid.tier[i])] * 8 * 10**11}
        for i, name in enumerate(grid.names)}
    assert grid.queue_type is not None and grid.queue_slots is not None
    doc["pandaqueue"] = {q: {
        "atlas_site": grid.names[int(grid.queue_site[k])], "panda_resource": q,
        "type": str(grid.queue_type[k]), "status": "online",
        "corecount": int(grid.queue_cores[k]),  # type: ignore[index]
        "maxrss": int(grid.queue_memory_mb[k]),  # type: ignore[index]
        "maxtime": 0 if not np.isfinite(grid.queue_walltime_s[k])  # type: ignore[index]
        else int(grid.queue_walltime_s[k]),  # type: ignore[index]
        "maxwdir": int(grid.queue_disk_mb[k]),  # type: ignore[index]
        "pilot_slots": int(grid.queue_slots[k])} for k, q in enumerate(grid.queue_names)}
    doc["dataset"] = [{
        "scope": "sim", "name": f"ds.{d:04d}",
        "files": [{"name": f"ds.{d:04d}._{f:06d}", "bytes": int(grid.dataset_file_bytes[d]),
                   "guid": f"00000000-0000-4000-8000-{d:04d}{f:08d}", "adler32": "0a0b0c0d"}
                  for f in range(1, int(grid.dataset_files[d]) + 1)],
        "replicas": [{"rse": f"{grid.names[int(s)]}_DATADISK", "state": "AVAILABLE"}
                     for s in grid.replicas[d]]}
        for d in range(len(grid.replicas))]
    return json.dumps(doc)

"""The discrete-event simulation: a scenario's workload under one brokerage policy.

Everything that decides is the service's own code, called in-process on a
:class:`~netbroker.brokerage.GridView` the simulation keeps up to date:
``broker_task`` and ``broker_jobs`` place tasks and jobs, and (policy
``dynamic``) ``decide_membership`` recomputes the clouds' foreign members
from the Tier-1 links every ``membership_every_hours``. The policies:

- ``static``: fixed clouds, a task's jobs run only at its cloud's own sites;
- ``dynamic``: clouds plus foreign calculated members (the measured link
  from the Tier-1 passes ``min_mbytes_per_s_from_tier1``, with hysteresis);
- ``full_mesh``: a task goes to a nucleus (the Tier-1s) and its jobs to any
  site that nucleus reaches at the threshold, no cloud boundary.

The clock is simulated. A job placed away from its input first waits for it
(the file's size over the link's throughput from the best replica; bytes
crossing clouds are counted), then for a free slot at its site (highest
priority first), then runs (its CPU time over the site's speed); a failed
attempt (``failure_fraction``) runs again at the same site. Links change and
sites go offline at the scenario's times. Not simulated: link contention,
PD2P replication, aging and fair share.
"""

from __future__ import annotations

import heapq
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from netbroker.brokerage import GridView, TaskNeeds, broker_jobs, broker_task
from netbroker.clouds import MembershipInputs, decide_membership
from netbroker.config import BrokerageSettings, CloudSettings
from netbroker.sim.scenario import Grid, Scenario

__all__ = ["POLICIES", "SimResult", "simulate"]

POLICIES = ("static", "dynamic", "full_mesh")
MB = 1_000_000


@dataclass
class SimResult:
    """One policy's outcome: times in hours, data in TB, utilisation in percent."""

    policy: str
    jobs: int
    makespan_h: float
    wait_mean_h: float
    wait_p95_h: float
    turnaround_mean_h: float
    turnaround_p95_h: float
    tb_across_clouds: float
    waited_for_data: int
    jobs_outside_home_cloud: int
    failed_attempts: int
    utilisation: dict[int, float] = field(default_factory=dict)
    wall_s: float = 0.0

    def row(self) -> dict[str, Any]:
        return {**{k: v for k, v in self.__dict__.items() if k != "utilisation"},
                **{f"cpu_tier{t}_percent": u for t, u in sorted(self.utilisation.items())}}


def _view(grid: Grid) -> GridView:
    n, c = len(grid.names), len(grid.tier1)
    return GridView(
        sites=grid.names, site_cloud=grid.cloud.copy(), site_online=np.ones(n, bool),
        site_nucleus=grid.tier == 1, site_disk_free=np.full(n, 1e18),
        clouds=[f"C{k:02d}" for k in range(c)], cloud_tier1=grid.tier1.copy(),
        foreign=np.zeros((c, n), bool), queues=[f"{s}_Q" for s in grid.names],
        queue_site=np.arange(n), queue_status=np.array(["online"] * n, dtype=object),
        queue_type=np.array(["unified"] * n, dtype=object), queue_cores=np.full(n, 8),
        queue_memory_mb=np.full(n, 16000), queue_walltime_s=np.full(n, 7 * 86400),
        queue_disk_mb=np.full(n, 10**7), queue_slots=grid.slots.copy(),
        queue_waiting=np.zeros(n, np.int64), queue_running=np.zeros(n, np.int64),
        throughput=np.where(np.isinf(grid.rate), np.nan, grid.rate),
        present={d: _mask(n, r) for d, r in enumerate(grid.replicas)},
        sources={d: _mask(n, r) for d, r in enumerate(grid.replicas)})


def _mask(n: int, idx: np.ndarray) -> np.ndarray:
    m = np.zeros(n, bool)
    m[idx] = True
    return m


def simulate(grid: Grid, scenario: Scenario, policy: str, seed: int = 0) -> SimResult:
    """Run the scenario's workload on ``grid`` under ``policy``; see the module docstring.

    O(E log E) in events (about three per job) plus one brokerage per task.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; expected one of {POLICIES}")
    started = time.perf_counter()
    rng = np.random.default_rng([scenario.seed, seed])
    bsettings = BrokerageSettings(mode="full_mesh" if policy == "full_mesh" else "clouds")
    csettings = CloudSettings(min_mbytes_per_s_from_tier1=scenario.min_mbytes_per_s_from_tier1,
                              min_samples=1)
    view = _view(grid)
    rate = grid.rate.copy()
    n = len(grid.names)
    free = grid.slots.copy()
    queued: list[list[tuple[int, int, int]]] = [[] for _ in range(n)]  # (-prio, seq, job)
    outage = np.zeros(n, bool)
    stale = np.zeros_like(view.foreign, dtype=np.int64)
    # per job: arrival, first start, end, site, task cloud, cpu seconds
    arrival, start, end = [], [], []
    site_of, home_of, cpu, prio = [], [], [], []
    busy = np.zeros(n)  # slot-seconds
    counters = {"bytes_cross": 0.0, "waited": 0, "outside": 0, "failed": 0}
    seq = itertools.count()
    events: list[tuple[float, int, str, Any]] = []

    def push(t: float, kind: str, payload: Any) -> None:
        heapq.heappush(events, (t, next(seq), kind, payload))

    for k, task in enumerate(grid.tasks):
        push(task.arrival_s, "task", k)
    for ch in scenario.changes:
        push(ch.at_hours * 3600, "change", ch)
    for o in scenario.outages:
        push(o.start_hours * 3600, "down", grid.site(o.site))
        push((o.start_hours + o.hours) * 3600, "up", grid.site(o.site))
    if policy == "dynamic":
        push(0.0, "members", None)

    def dispatch(s: int, now: float) -> None:
        while free[s] > 0 and queued[s] and not outage[s]:
            _, _, j = heapq.heappop(queued[s])
            free[s] -= 1
            view.queue_waiting[s] -= 1
            view.queue_running[s] += 1
            if start[j] < 0:
                start[j] = now
            run = cpu[j] / grid.speed[s]
            if rng.random() < scenario.workload.failure_fraction:
                counters["failed"] += 1
                push(now + run * rng.uniform(0.05, 1.0), "retry", j)
            else:
                push(now + run, "end", j)

    now = 0.0
    while events:
        now, _, kind, payload = heapq.heappop(events)
        if kind == "task":
            task = grid.tasks[payload]
            needs = TaskNeeds(payload, "analysis" if task.analysis else "production",
                              task.dataset, np.full(task.files, task.file_bytes), 1, 2000,
                              int(task.job_s) + 1, 1)
            task_rng = np.random.default_rng([scenario.seed, seed, payload])
            choice = broker_task(view, needs, bsettings, scenario.min_mbytes_per_s_from_tier1,
                                 task_rng)
            if choice.chosen is None:
                push(now + 1800, "task", payload)  # nothing fits now: try again later
                continue
            plan = broker_jobs(view, needs, choice.members, bsettings, task_rng)
            home = (int(choice.chosen) if policy != "full_mesh"
                    else int(grid.cloud[choice.chosen]))
            holders = grid.replicas[task.dataset]
            for q in plan.queue.tolist():
                j = len(arrival)
                arrival.append(now)
                start.append(-1.0)
                end.append(-1.0)
                site_of.append(q)
                home_of.append(home)
                cpu.append(task.job_s)
                prio.append(task.priority)
                if grid.cloud[q] != home:
                    counters["outside"] += 1
                if q in holders:
                    push(now, "ready", j)
                    continue
                src = int(holders[np.argmax(rate[holders, q])])
                counters["waited"] += 1
                if grid.cloud[src] != grid.cloud[q]:
                    counters["bytes_cross"] += task.file_bytes
                push(now + task.file_bytes / (rate[src, q] * MB), "ready", j)
            # broker_jobs counted the jobs as waiting: they are, in transfer or queued
        elif kind == "ready":
            j = payload
            heapq.heappush(queued[site_of[j]], (-prio[j], j, j))
            dispatch(site_of[j], now)
        elif kind in ("end", "retry"):
            j = payload
            s = site_of[j]
            free[s] += 1
            view.queue_running[s] -= 1
            busy[s] += cpu[j] / grid.speed[s] if kind == "end" else 0.0
            if kind == "end":
                end[j] = now
            else:
                view.queue_waiting[s] += 1
                heapq.heappush(queued[s], (-prio[j], j, j))
            dispatch(s, now)
        elif kind == "change":
            for a in grid.site(payload.src):
                for b in grid.site(payload.dst):
                    if a != b:
                        rate[a, b] = payload.mbytes_per_s
                        view.throughput[a, b] = payload.mbytes_per_s
        elif kind in ("down", "up"):
            for s in payload:
                outage[s] = kind == "down"
                view.site_online[s] = kind == "up"
                view.queue_status[s] = "online" if kind == "up" else "offline"
                if kind == "up":
                    dispatch(s, now)
        elif kind == "members":
            links = view.throughput[grid.tier1]
            inputs = MembershipInputs(view.clouds, grid.names, grid.cloud, links,
                                      np.where(np.isnan(links), 0, 10), np.full(links.shape,
                                                                                np.nan),
                                      view.site_online.copy(), view.foreign.copy(), stale)
            result = decide_membership(inputs, csettings)
            view.foreign[:], stale = result.members, result.stale
            if len(events):
                push(now + scenario.membership_every_hours * 3600, "members", None)
    return _result(policy, grid, np.array(arrival), np.array(start), np.array(end), busy,
                   counters, time.perf_counter() - started)


def _result(policy: str, grid: Grid, arrival: np.ndarray, start: np.ndarray, end: np.ndarray,
            busy: np.ndarray, counters: dict[str, float], wall_s: float) -> SimResult:
    done = end >= 0
    span = float(end[done].max() - arrival.min()) if done.any() else 0.0
    wait = (start[done] - arrival[done]) / 3600
    turn = (end[done] - arrival[done]) / 3600
    util = {}
    for t in (1, 2, 3):
        sites = grid.tier == t
        capacity = float(grid.slots[sites].sum()) * span
        if capacity > 0:
            util[t] = round(100 * float(busy[sites].sum()) / capacity, 1)
    return SimResult(
        policy, int(done.sum()), round(span / 3600, 2), round(float(wait.mean()), 3),
        round(float(np.percentile(wait, 95)), 3), round(float(turn.mean()), 3),
        round(float(np.percentile(turn, 95)), 3), round(counters["bytes_cross"] / 1e12, 2),
        int(counters["waited"]), int(counters["outside"]), int(counters["failed"]), util,
        round(wall_s, 1))

"""The discrete-event simulation: a scenario's workload under one brokerage policy.

Everything that decides is the service's own code. Brokerage
(``broker_task``, ``broker_jobs``) places each task and its jobs on a
:class:`~netbroker.workload.brokerage.GridView` the simulation keeps up to date:
the queues (the sample grid's types, cores, memory, wall time and disk) and
their load, the replicas, the sites online, and the consolidated throughput
matrix as the service reads it from its database. The rest runs on the
service's database (:class:`~netbroker.sim.service.SimService`) at the
simulated time: ``clouds.recompute`` (policy ``dynamic``) judges the
Tier-1 links and the sites' job success and gives the foreign members,
``pd2p.run_cycle`` decides replicas (the simulation copies them as DDM
would and reports them done, which rebrokers the jobs waiting for them),
``rebrokerage.rebroker`` moves waiting jobs. The policies:

- ``static``: fixed clouds, a task's jobs run only at its cloud's own sites;
- ``dynamic``: clouds plus foreign calculated members;
- ``full_mesh``: a task goes to a nucleus (the Tier-1s) and its jobs to any
  site the nucleus reaches at the threshold, no cloud boundary.

The network is measured, never read: a transfer shares its link's capacity
with the link's other transfers and the congestion the grid does not see
(:class:`~netbroker.sim.network.Links`), and each finished transfer is an
FTS message; perfSONAR tests each Tier-1's link to every site that has a
host (throughput every few hours, loss more often, with noise and gaps).
The records are ingested every ``measure.every_minutes`` and the matrix is
read again (the service's aggregate cycle blocks the closed bucket starts
hourly, so reads take them whole): links are known from the window's
samples only, stale after a change, unknown without any. A job placed
away from its input waits for its transfer (from the replica the
measurements rank best), then for a slot of its queue (highest priority
first), then runs (its CPU time over the site's speed); a failed attempt
(the site's failure fraction) runs again, up to three attempts, and counts
against the site's job success.
Not simulated: priorities' aging and fair share, tape, output stage-out.
"""

from __future__ import annotations

import heapq
import itertools
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from netbroker.common.config import Settings
from netbroker.sim.network import Links, fts_message, perfsonar_document
from netbroker.sim.scenario import Grid, Scenario
from netbroker.sim.service import T0_S, SimService, at, prepare_database
from netbroker.workload.brokerage import GridView, TaskNeeds, broker_jobs, broker_task

__all__ = ["POLICIES", "SimResult", "held_fractions", "simulate"]

POLICIES = ("static", "dynamic", "full_mesh")
MB = 1_000_000
MAX_ATTEMPTS = 3
# The aggregate cycle (blocks of closed bucket starts) runs hourly here, every bucket in
# the service: reads through blocks equal reads through rows, only cheaper.
AGGREGATE_EVERY_S = 3600.0
PENDING_GIVE_UP_S = 2 * 86400  # a task no queue takes for two days is given up (counted)
# Job states in the simulation, and as the service's database shows them.
TRANSFER, QUEUED, RUNNING, FINISHED, FAILED = range(5)
DB_STATE = {TRANSFER: "assigned", QUEUED: "activated", RUNNING: "running",
            FINISHED: "finished", FAILED: "failed"}


@dataclass
class SimResult:
    """One policy's outcome: times in hours, data in TB, utilisation in percent.

    ``busy_percent`` is the CPU time of the attempts that succeeded over the
    grid's slot-hours in the makespan; ``held_percent`` the time slots were
    held by any attempt (failed ones too) over the same; and
    ``hours_held_80_percent`` the share of the makespan, hour by hour from
    the first arrival, in which at least 80% of the slots were held
    (:func:`held_fractions`); ``held_arrivals_percent`` the slots held from
    the first task's arrival to the last one's, the hours in which work still
    arrives, apart from the drain after them.
    """

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
    rebrokered: int = 0
    pd2p_replicas: int = 0
    tb_pd2p: float = 0.0
    transfer_wait_mean_h: float = 0.0
    busy_percent: float = 0.0
    held_percent: float = 0.0
    hours_held_80_percent: float = 0.0
    held_arrivals_percent: float = 0.0
    jobs_failed: int = 0
    utilisation: dict[int, float] = field(default_factory=dict)
    membership: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0

    def row(self) -> dict[str, Any]:
        return {**{k: v for k, v in self.__dict__.items()
                   if k not in ("utilisation", "membership")},
                **{f"cpu_tier{t}_percent": u for t, u in sorted(self.utilisation.items())},
                "membership": dict(sorted(self.membership.items()))}


def _view(grid: Grid) -> GridView:
    n, c = len(grid.names), len(grid.tier1)
    assert grid.queue_site is not None and grid.queue_names is not None
    q = len(grid.queue_site)
    return GridView(
        sites=grid.names, site_cloud=grid.cloud.copy(), site_online=np.ones(n, bool),
        site_nucleus=grid.tier == 1, site_disk_free=np.full(n, 1e18),
        clouds=[f"C{k:02d}" for k in range(c)], cloud_tier1=grid.tier1.copy(),
        foreign=np.zeros((c, n), bool), queues=list(grid.queue_names),
        queue_site=grid.queue_site.copy(), queue_status=np.array(["online"] * q, dtype=object),
        queue_type=grid.queue_type.copy(),  # type: ignore[union-attr]
        queue_cores=grid.queue_cores.copy(),  # type: ignore[union-attr]
        queue_memory_mb=grid.queue_memory_mb.copy(),  # type: ignore[union-attr]
        queue_walltime_s=grid.queue_walltime_s.copy(),  # type: ignore[union-attr]
        queue_disk_mb=grid.queue_disk_mb.copy(),  # type: ignore[union-attr]
        queue_slots=grid.queue_slots.copy(),  # type: ignore[union-attr]
        queue_waiting=np.zeros(q, np.int64), queue_running=np.zeros(q, np.int64),
        throughput=np.full((n, n), np.nan),
        present={d: _mask(n, r) for d, r in enumerate(grid.replicas)},
        sources={d: _mask(n, r) for d, r in enumerate(grid.replicas)})


def _mask(n: int, idx: np.ndarray) -> np.ndarray:
    m = np.zeros(n, bool)
    m[idx] = True
    return m


def simulate(grid: Grid, scenario: Scenario, policy: str, seed: int = 0,
             template: Path | None = None) -> SimResult:
    """Run the scenario's workload on ``grid`` under ``policy``; see the module docstring.

    ``template`` is a database made by :func:`~netbroker.sim.service.prepare_database`
    (one is made when omitted). O(E log E) in events (about six per job), one
    brokerage per task, and the service's cycles at their periods.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; expected one of {POLICIES}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="netbroker-sim-") as scratch:
        if template is None:
            template = prepare_database(grid, Path(scratch))
        settings = Settings.model_validate({
            "brokerage": {"mode": "full_mesh" if policy == "full_mesh" else "clouds"},
            "clouds": {"min_mbytes_per_s_from_tier1": scenario.min_mbytes_per_s_from_tier1}})
        service = SimService(grid, template, settings)
        try:
            run = _Run(grid, scenario, policy, seed, service)
            run.loop()
        finally:
            service.close()
    return run.result(time.perf_counter() - started)


class _Run:
    """One simulation's state and its event loop (see :func:`simulate`)."""

    def __init__(self, grid: Grid, scenario: Scenario, policy: str, seed: int,
                 service: SimService) -> None:
        self.grid, self.s, self.policy, self.seed, self.service = (grid, scenario, policy,
                                                                   seed, service)
        self.rng = np.random.default_rng([scenario.seed, seed])
        self.settings = service.settings
        self.view = _view(grid)
        assert grid.queue_site is not None and grid.queue_slots is not None
        self.free = grid.queue_slots.copy()
        self.queued: list[list[tuple[int, int, int, int]]] = [[] for _ in grid.queue_site]
        self.links = Links(grid.rate, scenario.links.per_transfer_mbytes_per_s)
        self.events: list[tuple[float, int, str, Any]] = []
        self.seq = itertools.count()
        # per job
        self.task_of: list[int] = []
        self.queue_of: list[int] = []
        self.cpu: list[float] = []
        self.prio: list[int] = []
        self.bytes: list[float] = []
        self.state: list[int] = []
        self.gen: list[int] = []
        self.attempt: list[int] = []
        self.arrival: list[float] = []
        self.first_start: list[float] = []
        self.end: list[float] = []
        self.db_id: list[int | None] = []
        self.db_state: list[str] = []
        self.transfer_of: list[int] = []
        self.by_db: dict[int, int] = {}
        # per task
        self.task_db: list[int | None] = [None] * len(grid.tasks)
        self.task_home: list[int] = [0] * len(grid.tasks)
        self.pending_tasks: list[dict[str, Any]] = []
        self.pending_accesses: list[dict[str, Any]] = []
        self.pending_task_index: list[int] = []
        self.dirty: set[int] = set()
        self.closed_rows: list[dict[str, Any]] = []  # failed attempts, with their row ids
        self.failed_unseen: list[tuple[int, int]] = []  # failed attempts without a row
        self.tasks_left = len(grid.tasks)
        self.jobs_live = 0
        # transfers: id -> (job or -1, decision or -1, src, dst, bytes, requested at)
        self.transfers: dict[int, tuple[int, int, int, int, float, float]] = {}
        self.copies_left: dict[int, int] = {}
        self.copy_target: dict[int, tuple[int, int]] = {}
        self.next_tid = itertools.count()
        self.fetching: dict[tuple[int, int], set[int]] = {}  # (dataset, site) -> jobs
        self.membership: dict[str, int] = {}  # "joined" or "left: <reason>" -> how many
        self.fts: list[str] = []
        self.perfsonar: list[str] = []
        self.busy = np.zeros(len(grid.names))
        self.run_start: list[float] = []  # per job: when its attempt took its slot
        self.held_from: list[float] = []  # per attempt ended: when it took its slot,
        self.held_to: list[float] = []    # and when it gave it back
        self.counters = {"bytes_cross": 0.0, "waited": 0, "outside": 0, "failed": 0,
                         "rebrokered": 0, "pd2p": 0, "pd2p_bytes": 0.0, "transfer_s": 0.0,
                         "final_failed": 0, "unbrokered": 0}
        self.now = 0.0

    # --- the event queue -----------------------------------------------------------------
    def push(self, t: float, kind: str, payload: Any = None) -> None:
        heapq.heappush(self.events, (t, next(self.seq), kind, payload))

    def link_event(self, ev: tuple[float, tuple[int, int], int] | None) -> None:
        if ev is not None:
            self.push(ev[0], "link", (ev[1], ev[2]))

    def loop(self) -> None:
        s, grid = self.s, self.grid
        for k, task in enumerate(grid.tasks):
            self.push(task.arrival_s, "task", k)
        for ch in s.changes:
            self.push(ch.at_hours * 3600, "change", ch)
        for cg in s.congestion:
            self.push(cg.start_hours * 3600, "congest", (cg, cg.share))
            self.push((cg.start_hours + cg.hours) * 3600, "congest", (cg, 0.0))
        for o in s.outages:
            self.push(o.start_hours * 3600, "down", grid.site(o.site))
            self.push((o.start_hours + o.hours) * 3600, "up", grid.site(o.site))
        m = s.measure
        self.push(0.0, "probe_throughput")
        self.push(0.0, "probe_loss")
        self.push(m.every_minutes * 60, "measure")
        self.push(AGGREGATE_EVERY_S, "aggregate")
        if self.policy == "dynamic":
            self.push(s.membership_every_hours * 3600, "members")
        if s.pd2p:
            self.push(s.pd2p_every_minutes * 60, "pd2p")
        if s.rebrokerage:
            self.push(s.rebrokerage_every_minutes * 60, "rebroker")
        handlers: dict[str, Callable[[Any], None]] = {
                    "task": self.on_task, "link": self.on_link, "setup": self.on_setup,
                    "end": self.on_end, "change": self.on_change, "congest": self.on_congest,
                    "down": self.on_down, "up": self.on_up, "measure": self.on_measure,
                    "probe_throughput": self.on_probe_throughput,
                    "probe_loss": self.on_probe_loss, "members": self.on_members,
                    "pd2p": self.on_pd2p, "rebroker": self.on_rebroker,
                    "aggregate": self.on_aggregate}
        periodic = {"measure", "probe_throughput", "probe_loss", "members", "pd2p", "rebroker",
                    "aggregate"}
        while self.events:
            self.now, _, kind, payload = heapq.heappop(self.events)
            if kind in periodic and self.tasks_left == 0 and self.jobs_live == 0:
                continue  # the work is done: the cycles stop
            handlers[kind](payload)

    # --- tasks and jobs --------------------------------------------------------------------
    def on_task(self, k: int) -> None:
        task = self.grid.tasks[k]
        needs = TaskNeeds(k, "analysis" if task.analysis else "production", task.dataset,
                          np.full(task.files, task.file_bytes), task.cores, task.memory_mb,
                          math.ceil(task.job_s), 1)
        rng = np.random.default_rng([self.s.seed, self.seed, k])
        b = self.settings.brokerage
        choice = broker_task(self.view, needs, b, self.s.min_mbytes_per_s_from_tier1, rng)
        plan = broker_jobs(self.view, needs, choice.members, b, rng) \
            if choice.chosen is not None else None
        if plan is None or len(plan) == 0:  # pending: the brokerage cycle tries again
            if self.now - task.arrival_s < PENDING_GIVE_UP_S:
                self.push(self.now + b.cycle_minutes * 60, "task", k)
            else:
                self.counters["unbrokered"] += 1
                self.tasks_left -= 1
            return
        self.tasks_left -= 1
        assert choice.chosen is not None  # a plan exists only for a chosen candidate
        mesh = self.policy == "full_mesh"
        home = int(self.grid.cloud[choice.chosen]) if mesh else int(choice.chosen)
        self.task_home[k] = home
        self.pending_task_index.append(k)
        self.pending_tasks.append({
            "name": f"sim.{k:05d}", "user_name": f"user{k % 37}" if task.analysis else "prod",
            "working_group": "", "processing_type": needs.processing_type,
            "dataset_id": task.dataset, "transformation": "sim", "job_pars": "",
            "cores": task.cores, "memory_mb": task.memory_mb, "walltime_s": needs.walltime_s,
            "files_per_job": 1, "events_per_job": None, "events_per_file": None,
            "priority": task.priority, "event_service": False, "events_per_range": None,
            "max_attempts": MAX_ATTEMPTS, "site_id": None, "created_at": at(self.now),
            "modified_at": at(self.now), "cloud": None if mesh else home,
            "nucleus": int(choice.chosen) if mesh else None})
        if task.analysis:
            self.pending_accesses.append({"dataset_id": task.dataset,
                                          "task_id": len(self.pending_tasks) - 1,
                                          "user_name": f"user{k % 37}", "jobs": len(plan),
                                          "at": at(self.now)})
        site = self.view.queue_site
        for q, nfiles in zip(plan.queue.tolist(), plan.n_files.tolist(), strict=True):
            j = len(self.state)
            self.task_of.append(k)
            self.queue_of.append(q)
            self.cpu.append(task.job_s * nfiles)
            self.prio.append(task.priority)
            self.bytes.append(task.file_bytes * nfiles)
            self.state.append(TRANSFER)
            self.gen.append(0)
            self.attempt.append(1)
            self.arrival.append(self.now)
            self.first_start.append(-1.0)
            self.run_start.append(-1.0)
            self.end.append(-1.0)
            self.db_id.append(None)
            self.db_state.append("")
            self.transfer_of.append(-1)
            self.jobs_live += 1
            if self.grid.cloud[site[q]] != home:
                self.counters["outside"] += 1
            self._place(j, q)
        # broker_jobs counted the jobs as waiting at their queues; _place keeps it so

    def _place(self, j: int, q: int) -> None:
        """Job ``j`` at queue ``q``: queued if its input is on disk there, else fetched."""
        s = int(self.view.queue_site[q])
        d = self.grid.tasks[self.task_of[j]].dataset
        self.queue_of[j] = q
        if self.view.present[d][s]:
            self._queue(j)
            return
        src = self._best_source(d, s)
        self.counters["waited"] += 1
        if self.grid.cloud[src] != self.grid.cloud[s]:
            self.counters["bytes_cross"] += self.bytes[j]
        self.state[j] = TRANSFER
        self.dirty.add(j)
        self.transfer_of[j] = self._transfer(j, -1, src, s, self.bytes[j])
        self.fetching.setdefault((d, s), set()).add(j)

    def _best_source(self, d: int, s: int) -> int:
        """The replica holder the measurements rank best for site ``s`` (unknown: 1 MB/s)."""
        holders = np.flatnonzero(self.view.sources[d])
        rates = self.view.throughput[holders, s]
        known = np.where(np.isnan(rates), self.settings.brokerage.unknown_link_mbytes_per_s,
                         rates)
        return int(holders[int(np.argmax(known))])

    def _transfer(self, j: int, decision: int, src: int, dst: int, nbytes: float) -> int:
        tid = next(self.next_tid)
        self.transfers[tid] = (j, decision, src, dst, nbytes, self.now)
        setup = self.rng.uniform(*self.s.links.transfer_setup_s)
        self.push(self.now + setup, "setup", tid)
        return tid

    def on_setup(self, tid: int) -> None:
        if tid not in self.transfers:
            return  # cancelled before it started
        _j, _, src, dst, nbytes, _ = self.transfers[tid]
        self.link_event(self.links.start(self.now, tid, (src, dst), nbytes))

    def on_link(self, payload: tuple[tuple[int, int], int]) -> None:
        done, nxt = self.links.due(self.now, *payload)
        self.link_event(nxt)
        for tid in done:
            j, decision, src, dst, nbytes, requested = self.transfers.pop(tid)
            self.fts.append(fts_message(tid, f"{self.grid.names[src]}_DATADISK",
                                        f"{self.grid.names[dst]}_DATADISK", T0_S + requested,
                                        T0_S + self.now, int(nbytes)))
            if j >= 0:
                self.transfer_of[j] = -1
                self._fetched(j)
                self.counters["transfer_s"] += self.now - requested
                self._queue(j)
            else:
                self._copy_part_done(decision)

    def _cancel_transfer(self, j: int) -> None:
        tid = self.transfer_of[j]
        if tid >= 0:
            self.transfers.pop(tid, None)
            self.link_event(self.links.cancel(self.now, tid))
            self.transfer_of[j] = -1
            self._fetched(j)

    def _fetched(self, j: int) -> None:
        key = (self.grid.tasks[self.task_of[j]].dataset, int(self.view.queue_site[
            self.queue_of[j]]))
        self.fetching.get(key, set()).discard(j)

    def _queue(self, j: int) -> None:
        self.state[j] = QUEUED
        self.dirty.add(j)
        q = self.queue_of[j]
        heapq.heappush(self.queued[q], (-self.prio[j], j, j, self.gen[j]))
        self._dispatch(q)

    def _dispatch(self, q: int) -> None:
        heap, s = self.queued[q], int(self.view.queue_site[q])
        while self.free[q] > 0 and heap and self.view.queue_status[q] == "online":
            _, _, j, gen = heapq.heappop(heap)
            if gen != self.gen[j] or self.state[j] != QUEUED or self.queue_of[j] != q:
                continue  # moved or started meanwhile
            self.free[q] -= 1
            self.view.queue_waiting[q] -= 1
            self.view.queue_running[q] += 1
            self.state[j] = RUNNING
            self.dirty.add(j)
            if self.first_start[j] < 0:
                self.first_start[j] = self.now
            self.run_start[j] = self.now
            run = self.cpu[j] / self.grid.speed[s]
            assert self.grid.failure is not None
            if self.rng.random() < self.grid.failure[s]:
                self.push(self.now + run * self.rng.uniform(0.05, 1.0), "end", (j, False))
            else:
                self.push(self.now + run, "end", (j, True))

    def on_end(self, payload: tuple[int, bool]) -> None:
        j, ok = payload
        q = self.queue_of[j]
        s = int(self.view.queue_site[q])
        self.free[q] += 1
        self.view.queue_running[q] -= 1
        self.held_from.append(self.run_start[j])
        self.held_to.append(self.now)
        if ok:
            self.busy[s] += self.cpu[j] / self.grid.speed[s]
            self.state[j], self.end[j] = FINISHED, self.now
            self.jobs_live -= 1
            self.dirty.add(j)
        else:
            # The attempt's row fails (made now if the database has not seen it yet);
            # a retry is a row of its own.
            self.counters["failed"] += 1
            job_id = self.db_id[j]
            if job_id is not None:
                self.closed_rows.append({"job_id": job_id, "new_status": "failed",
                                         "at": at(self.now), "cpu": None})
                self.by_db.pop(job_id, None)
                self.db_id[j], self.db_state[j] = None, ""
            else:
                self.failed_unseen.append((j, self.attempt[j]))
            self.dirty.discard(j)
            if self.attempt[j] >= MAX_ATTEMPTS:
                self.state[j], self.end[j] = FAILED, self.now
                self.counters["final_failed"] += 1
                self.jobs_live -= 1
            else:
                self.attempt[j] += 1
                self.view.queue_waiting[q] += 1
                self._queue(j)
        self._dispatch(q)

    # --- the world changing ------------------------------------------------------------
    def on_change(self, ch: Any) -> None:
        for a in self.grid.site(ch.src):
            for b in self.grid.site(ch.dst):
                if a != b:
                    self.link_event(self.links.set_capacity(self.now, (a, b), ch.mbytes_per_s))
                    if ch.packet_loss_fraction is not None:
                        self.grid.loss[a, b] = ch.packet_loss_fraction  # type: ignore[index]

    def on_congest(self, payload: tuple[Any, float]) -> None:
        cg, share = payload
        for a in self.grid.site(cg.src):
            for b in self.grid.site(cg.dst):
                if a != b:
                    self.link_event(self.links.congest(self.now, (a, b), share))

    def on_down(self, sites: list[int]) -> None:
        for s in sites:
            self.view.site_online[s] = False
            self.view.queue_status[self.view.queue_site == s] = "offline"
            self.service.set_site_status(s, "offline")

    def on_up(self, sites: list[int]) -> None:
        for s in sites:
            self.view.site_online[s] = True
            self.view.queue_status[self.view.queue_site == s] = "online"
            self.service.set_site_status(s, "online")
            for q in np.flatnonzero(self.view.queue_site == s).tolist():
                self._dispatch(q)

    # --- what the service measures and decides -------------------------------------------
    def on_probe_throughput(self, _: Any) -> None:
        m, grid = self.s.measure, self.grid
        assert grid.probed is not None
        for t1 in grid.tier1.tolist():
            for d in np.flatnonzero(grid.probed).tolist():
                if d == t1 or self.rng.random() < m.gap_fraction:
                    continue
                mbytes = self.links.rate((t1, d), extra=1) / MB
                noisy = mbytes * self.rng.lognormal(0.0, m.noise_fraction)
                self.perfsonar.append(perfsonar_document(grid.names[t1], grid.names[d],
                                                         T0_S + self.now, mbytes_per_s=noisy))
        self.push(self.now + m.throughput_every_hours * 3600, "probe_throughput")

    def on_probe_loss(self, _: Any) -> None:
        m, grid = self.s.measure, self.grid
        assert grid.probed is not None and grid.loss is not None
        for t1 in grid.tier1.tolist():
            for d in np.flatnonzero(grid.probed).tolist():
                if d == t1 or self.rng.random() < m.gap_fraction:
                    continue
                loss = min(1.0, grid.loss[t1, d] * self.rng.lognormal(0.0, m.noise_fraction))
                self.perfsonar.append(perfsonar_document(grid.names[t1], grid.names[d],
                                                         T0_S + self.now, packet_loss=loss))
        self.push(self.now + m.loss_every_hours * 3600, "probe_loss")

    def on_measure(self, _: Any) -> None:
        self.service.ingest(self.fts, self.perfsonar, self.now)
        self.fts, self.perfsonar = [], []
        self.view.throughput = self.service.throughput(self.now)
        self.push(self.now + self.s.measure.every_minutes * 60, "measure")

    def on_aggregate(self, _: Any) -> None:
        self.service.aggregate(self.now)
        self.push(self.now + AGGREGATE_EVERY_S, "aggregate")

    def sync(self) -> None:
        """Tell the service's database what happened since the last cycle."""
        if self.pending_tasks:
            ids = self.service.add_tasks(self.pending_tasks, self.pending_accesses)
            for k, task_id in zip(self.pending_task_index, ids, strict=True):
                self.task_db[k] = task_id
            self.pending_tasks, self.pending_accesses, self.pending_task_index = [], [], []
        new = [self._job_row(j, "failed", attempt) for j, attempt in self.failed_unseen]
        changed, fresh = list(self.closed_rows), []
        for j in sorted(self.dirty):
            status = DB_STATE[self.state[j]]
            if self.db_id[j] is None:
                if self.state[j] == FAILED:
                    continue  # its last attempt's row is made failed above
                new.append(self._job_row(j, status, self.attempt[j]))
                fresh.append(j)
            elif status != self.db_state[j]:
                cpu = self.cpu[j] if self.state[j] == FINISHED else None
                changed.append({"job_id": self.db_id[j], "new_status": status,
                                "at": at(self.now), "cpu": cpu})
                self.db_state[j] = status
        ids = self.service.sync_jobs(new, changed, self.now)[len(self.failed_unseen):]
        self.failed_unseen = []
        for j, job_id in zip(fresh, ids, strict=True):
            self.db_id[j], self.db_state[j] = job_id, DB_STATE[self.state[j]]
            self.by_db[job_id] = j
        self.dirty.clear()
        self.closed_rows = []

    def _job_row(self, j: int, status: str, attempt: int) -> dict[str, Any]:
        task = self.grid.tasks[self.task_of[j]]
        k = self.task_of[j]
        waiting = status in ("assigned", "activated")
        return {"task_id": self.task_db[k], "name": f"sim.{k:05d}._{j:07d}.{attempt}",
                "status": status, "queue_id": self.queue_of[j],
                "prod_source_label": "user" if task.analysis else "managed",
                "priority": self.prio[j], "base_priority": self.prio[j],
                "attempt_nr": attempt, "max_attempts": MAX_ATTEMPTS, "cores": task.cores,
                "min_ram_mb": task.memory_mb,
                "max_disk_mb": math.ceil(self.bytes[j] / MB) +
                self.settings.brokerage.scratch_disk_mb,
                "max_walltime_s": math.ceil(self.cpu[j]), "transformation": "sim",
                "user_name": f"user{k % 37}" if task.analysis else "prod",
                "input_bytes": int(self.bytes[j]),
                "waiting_since": at(self.arrival[j]) if waiting else None,
                "cpu_time_s": self.cpu[j] if status == "finished" else None}

    def on_members(self, _: Any) -> None:
        self.sync()
        self.view.foreign, changes = self.service.recompute_clouds(self.now)
        for c in changes:
            key = c.change if c.change == "joined" else f"left: {c.reason}"
            self.membership[key] = self.membership.get(key, 0) + 1
        self.push(self.now + self.s.membership_every_hours * 3600, "members")

    def on_pd2p(self, _: Any) -> None:
        self.sync()
        for d in self.service.run_pd2p(self.now):
            self.counters["pd2p"] += 1
            self.counters["pd2p_bytes"] += d["bytes"]
            files = int(self.grid.dataset_files[d["dataset"]])  # type: ignore[index]
            parts = max(1, min(files, 20))  # DDM copies the files, a few at a time
            self.copies_left[d["id"]] = parts
            self.copy_target[d["id"]] = (d["dataset"], d["target"])
            for _ in range(parts):
                self._transfer(-1, d["id"], d["sources"][0], d["target"], d["bytes"] / parts)
        self.push(self.now + self.s.pd2p_every_minutes * 60, "pd2p")

    def _copy_part_done(self, decision: int) -> None:
        self.copies_left[decision] -= 1
        if self.copies_left[decision]:
            return
        dataset, target = self.copy_target.pop(decision)
        self.view.present[dataset][target] = True
        self.view.sources[dataset][target] = True
        self.sync()
        self._apply(self.service.replica_done(decision, self.now))
        # Jobs fetching that dataset to the new copy's site need not wait any longer.
        for j in sorted(self.fetching.pop((dataset, target), set())):
            self._cancel_transfer(j)
            self._queue(j)

    def on_rebroker(self, _: Any) -> None:
        self.sync()
        self._apply(self.service.rebroker(self.now))
        self.push(self.now + self.s.rebrokerage_every_minutes * 60, "rebroker")

    def _apply(self, moves: list[dict[str, Any]]) -> None:
        """Carry out the service's moves: the job leaves its transfer or queue."""
        for m in moves:
            j = self.by_db.get(m["job_id"])
            if j is None or self.state[j] not in (TRANSFER, QUEUED):
                continue  # it started (or moved) in the simulation meanwhile
            old, new = self.queue_of[j], m["to"]
            self._cancel_transfer(j)
            self.gen[j] += 1
            self.view.queue_waiting[old] -= 1
            self.view.queue_waiting[new] += 1
            self.counters["rebrokered"] += 1
            self.dirty.add(j)
            self._place(j, new)

    # --- the outcome ---------------------------------------------------------------------
    def result(self, wall_s: float) -> SimResult:
        grid = self.grid
        arrival, start, end = (np.array(x) for x in (self.arrival, self.first_start, self.end))
        state = np.array(self.state)
        done = state == FINISHED
        span = float(end[done].max() - arrival.min()) if done.any() else 0.0
        wait = (start[done] - arrival[done]) / 3600
        turn = (end[done] - arrival[done]) / 3600
        util = {}
        for t in (1, 2, 3):
            sites = grid.tier == t
            capacity = float(grid.slots[sites].sum()) * span
            if capacity > 0:
                util[t] = round(100 * float(self.busy[sites].sum()) / capacity, 1)
        c = self.counters
        waited = max(int(c["waited"]), 1)
        first = float(arrival.min()) if len(arrival) else 0.0
        slots = int(grid.slots.sum())
        held_from, held_to = np.array(self.held_from), np.array(self.held_to)
        held, seconds = held_fractions(held_from, held_to, slots, first, first + span)
        # the hours of arrivals: from the first task's arrival to the last one's
        task_arrivals = [t.arrival_s for t in grid.tasks] or [first]
        tasks_from, tasks_to = min(task_arrivals), max(task_arrivals)
        held_a, seconds_a = held_fractions(held_from, held_to, slots, tasks_from, tasks_to)
        return SimResult(
            self.policy, int(done.sum()), round(span / 3600, 2), round(float(wait.mean()), 3),
            round(float(np.percentile(wait, 95)), 3), round(float(turn.mean()), 3),
            round(float(np.percentile(turn, 95)), 3), round(c["bytes_cross"] / 1e12, 2),
            int(c["waited"]), int(c["outside"]), int(c["failed"]), int(c["rebrokered"]),
            int(c["pd2p"]), round(c["pd2p_bytes"] / 1e12, 2),
            round(c["transfer_s"] / waited / 3600, 3),
            round(100 * float(self.busy.sum()) / max(float(grid.slots.sum()) * span, 1.0), 1),
            _mean_percent(held, seconds),
            round(100 * float(seconds[held >= 0.8].sum()) / max(float(seconds.sum()), 1.0), 1),
            _mean_percent(held_a, seconds_a),
            int(c["final_failed"]), util, dict(self.membership), round(wall_s, 1))


def _mean_percent(share: np.ndarray, seconds: np.ndarray) -> float:
    """The time-weighted mean of per-bin shares, in percent to 0.1; 0 for no time."""
    return round(100 * float((share * seconds).sum()) / max(float(seconds.sum()), 1.0), 1)


def held_fractions(held_from: np.ndarray, held_to: np.ndarray, slots: int, start_s: float,
                   end_s: float, bin_s: float = 3600.0) -> tuple[np.ndarray, np.ndarray]:
    """The share of ``slots`` held in each bin of ``bin_s`` from ``start_s`` to ``end_s``.

    ``held_from[i]`` to ``held_to[i]`` is one attempt holding one slot. Returns
    per bin the fraction held (slot-seconds held over ``slots`` times the bin's
    length) and the bin's length in seconds (the last bin ends at ``end_s``).
    O((a + b) log a) for a attempts and b bins: the slot-seconds held before a
    time ``x`` are the sum over attempts started before ``x`` of ``x - from``,
    less the same over those ended before it, read off sorted cumulative sums.

    >>> held, seconds = held_fractions(np.array([0.0, 0.0, 3600.0]),
    ...     np.array([3600.0, 7200.0, 5400.0]), 2, 0.0, 7200.0)
    >>> held.tolist(), seconds.tolist()
    ([1.0, 0.75], [3600.0, 3600.0])
    """
    edges = np.append(np.arange(start_s, end_s, bin_s), end_s) if end_s > start_s \
        else np.array([start_s, start_s])
    starts, ends = np.sort(held_from), np.sort(held_to)

    def before(x: np.ndarray, times: np.ndarray) -> np.ndarray:
        k = np.searchsorted(times, x)
        total = np.concatenate(([0.0], np.cumsum(times)))
        return k * x - total[k]

    held_s = np.diff(before(edges, starts) - before(edges, ends))
    seconds = np.diff(edges)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(seconds > 0, held_s / (max(slots, 1) * seconds), 0.0)
    return share, seconds

"""Brokerage: a task to a cloud (or nucleus), its jobs to sites and queues.

Everything here is pure: it takes a :class:`GridView` (a snapshot of sites,
queues, replicas, queue load and the consolidated throughput matrix, as
arrays indexed by site and queue) and a task's :class:`TaskNeeds`, and
returns a decision with every candidate explained. ``netbroker.workload.tasks``
reads the view from the database and stores the decisions.

A candidate first passes hard filters, in order, and the first one it fails
is recorded: ``site status``, ``queue status``, ``queue type``, ``cores``,
``memory``, ``walltime``, ``disk`` (jobs), then ``no queue fits`` and
``output space`` (tasks). The survivors are weighed::

    score = weight_data * data                         # input already there, 0 or 1
          + weight_capacity * free                      # free pilot slots, 0..1
          + weight_network / (1 + transfer_s / scale)   # time to bring the input

and those within ``near_equal_fraction`` of the best are drawn at random in
proportion to their score, with a seed stored in the decision, so equal
sites share the work and any decision can be replayed.

A task's data counts only where its jobs start soon: a cloud (nucleus)
holding the input scores ``data`` 0 when another passing candidate would
start the task more than ``start_sooner_by_minutes`` sooner. A candidate's
expected start is its wait for a slot (the jobs waiting per pilot slot of
its passing queues, times the task's job wall time, as rebrokerage counts a
backlog) plus the time to bring the input to it; so a backlog sends a task
away from its data only when the transfer costs less than the queue.

Job sizes are fitted to the queue, as JEDI does: a job gets as many of the
task's files as the queue's wall time and disk allow, up to
``files_per_job`` (or, for event-split tasks, as many events).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from netbroker.common.config import BrokerageSettings

__all__ = [
    "FILTERS",
    "GridView",
    "JobPlan",
    "QueueScores",
    "TaskChoice",
    "TaskNeeds",
    "broker_jobs",
    "broker_task",
    "draw",
    "draw_with_room",
    "fitted_files",
    "members_of",
    "mesh_members",
    "queue_candidates",
    "queue_filter_codes",
    "queue_scores",
    "scores",
    "transfer_seconds",
]

# The job filters, in the order they are applied; code i + 1 means "failed filters[i]".
FILTERS = ("site status", "queue status", "queue type", "cores", "memory", "walltime", "disk")
MB = 1_000_000


@dataclass
class GridView:
    """What brokerage looks at, as arrays: ``n`` sites, ``c`` clouds, ``q`` queues.

    ``throughput[s, d]`` is the consolidated throughput from site ``s`` to
    ``d`` in MB/s (NaN: not measured). ``present[ds]`` marks the sites with
    an available disk replica of dataset ``ds``; ``sources[ds]`` the sites
    with any available replica (tape included), from which input can be
    copied. ``queue_waiting`` and ``queue_running`` are the jobs queued and
    holding a pilot; brokerage adds the jobs it places to ``queue_waiting``.
    """

    sites: list[str]
    site_cloud: np.ndarray        # (n,) home cloud index
    site_online: np.ndarray       # (n,) bool
    site_nucleus: np.ndarray      # (n,) bool
    site_disk_free: np.ndarray    # (n,) free bytes on active disk endpoints
    clouds: list[str]
    cloud_tier1: np.ndarray       # (c,) site index of the Tier-1, -1 if none
    foreign: np.ndarray           # (c, n) bool: foreign calculated members
    queues: list[str]
    queue_site: np.ndarray        # (q,) site index
    queue_status: np.ndarray      # (q,) str
    queue_type: np.ndarray        # (q,) str
    queue_cores: np.ndarray       # (q,)
    queue_memory_mb: np.ndarray   # (q,)
    queue_walltime_s: np.ndarray  # (q,)
    queue_disk_mb: np.ndarray     # (q,)
    queue_slots: np.ndarray       # (q,)
    queue_waiting: np.ndarray     # (q,)
    queue_running: np.ndarray     # (q,)
    throughput: np.ndarray        # (n, n) MB/s
    present: dict[int, np.ndarray] = field(default_factory=dict)
    sources: dict[int, np.ndarray] = field(default_factory=dict)

    def site_index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.sites)}


@dataclass(frozen=True)
class TaskNeeds:
    """What a task's jobs need, in the units the filters compare."""

    task_id: int
    processing_type: str          # "production" | "analysis"
    dataset_id: int
    file_bytes: np.ndarray        # (f,) sizes of the input files, in order
    cores: int
    memory_mb: int
    walltime_s: int               # of a full-size job
    files_per_job: int
    events_per_job: int | None = None
    events_per_file: int | None = None
    pinned_site: int = -1         # site index, -1 when free

    @property
    def input_bytes(self) -> int:
        return int(self.file_bytes.sum())

    @property
    def seconds_per_unit(self) -> float:
        """Wall time of one file (or one event, for event-split tasks)."""
        return self.walltime_s / (self.events_per_job or self.files_per_job)


@dataclass(frozen=True)
class TaskChoice:
    """A task brokerage decision: the chosen cloud or nucleus, or None with the reason."""

    chosen: int | None            # cloud index (clouds mode) or nucleus site index
    chosen_name: str | None
    members: np.ndarray           # (n,) bool: the sites the jobs may go to
    candidates: list[dict[str, Any]]
    summary: str


class QueueScores(NamedTuple):
    """Every queue judged for a task: filter codes, terms and score, (q,) arrays."""

    codes: np.ndarray       # first failed filter, 0 passes
    in_scope: np.ndarray    # judged at all (a member's queue)
    eligible: np.ndarray    # in scope and passing
    data: np.ndarray        # 1.0 where the input is on disk at the queue's site
    free: np.ndarray        # free pilot slots / slots, 0..1
    seconds: np.ndarray     # time to bring a job's input there
    score: np.ndarray
    per_job: np.ndarray     # files (events) per job fitted to the queue


@dataclass(frozen=True)
class JobPlan:
    """A job brokerage decision: one row per job, and every queue candidate explained.

    Job ``j`` runs at queue ``queue[j]`` on files ``first_file[j] ..
    first_file[j] + n_files[j] - 1`` (and, for event-split tasks, events
    ``first_event[j]`` .. ``+ n_events[j] - 1`` of that one file).
    """

    queue: np.ndarray
    first_file: np.ndarray
    n_files: np.ndarray
    first_event: np.ndarray | None
    n_events: np.ndarray | None
    data_local: np.ndarray        # (J,) bool: the input is at the job's site
    transfer_s: np.ndarray        # (J,) estimated time to bring the job's input
    candidates: list[dict[str, Any]]
    summary: str

    def __len__(self) -> int:
        return len(self.queue)


def members_of(view: GridView, cloud: int) -> np.ndarray:
    """(n,) bool: a cloud's static and foreign calculated members. O(n).

    >>> v = _tiny_view()
    >>> members_of(v, 0).tolist()
    [True, True, False]
    """
    return (view.site_cloud == cloud) | view.foreign[cloud]


def queue_filter_codes(view: GridView, needs: TaskNeeds, scratch_mb: int,
                       mask: np.ndarray | None = None) -> np.ndarray:
    """The first filter each queue fails: 0 passes, ``i + 1`` failed ``FILTERS[i]``.

    Parameters
    ----------
    view : GridView
    needs : TaskNeeds
    scratch_mb : int
        Work-directory disk a job needs besides one input file.
    mask : (q,) bool array, optional
        Queues to judge; the others get code 0 and must be ignored by the caller.

    Returns
    -------
    (q,) int8 array. O(q).

    Examples
    --------
    >>> v = _tiny_view()
    >>> needs = TaskNeeds(1, "production", 7, np.array([3 * MB]), 8, 2000, 3600, 1)
    >>> [FILTERS[c - 1] if c else "ok" for c in queue_filter_codes(v, needs, 0)]
    ['ok', 'cores', 'site status']
    """
    site = view.queue_site
    wanted_type = {needs.processing_type, "unified"}
    one_unit_s = needs.seconds_per_unit
    smallest_mb = (needs.file_bytes.max(initial=0) / MB) + scratch_mb
    tests = [
        view.site_online[site],
        view.queue_status == "online",
        np.isin(view.queue_type, list(wanted_type)),
        view.queue_cores >= needs.cores,
        view.queue_memory_mb >= needs.memory_mb,
        view.queue_walltime_s >= one_unit_s,
        view.queue_disk_mb >= smallest_mb,
    ]
    codes = np.zeros(len(view.queues), np.int8)
    for i in range(len(tests) - 1, -1, -1):  # the first failed filter wins
        codes[~tests[i]] = i + 1
    if mask is not None:
        codes[~mask] = 0
    return codes


def transfer_seconds(view: GridView, dataset_id: int, nbytes: float | np.ndarray,
                     dst: np.ndarray, unknown_mbytes_per_s: float,
                     local_mbytes_per_s: float = np.inf) -> np.ndarray:
    """Time to bring ``nbytes`` of a dataset to each site of ``dst``.

    From the best-connected site holding a replica; 0 where the data is
    already on disk; at ``local_mbytes_per_s`` (a tape recall) where the
    site itself holds a replica not on disk; an unmeasured link counts as
    ``unknown_mbytes_per_s`` (slow: unknown links rank last, not first); no
    replica anywhere: inf. O(r * len(dst)) for r replica sites.

    >>> v = _tiny_view()
    >>> transfer_seconds(v, 7, 100 * MB, np.arange(3), 1.0).tolist()
    [0.0, 10.0, 100.0]
    """
    dst = np.asarray(dst)
    present = view.present.get(dataset_id)
    sources = view.sources.get(dataset_id)
    if sources is None or not sources.any():
        return np.full(len(dst), np.inf)
    rates = view.throughput[np.flatnonzero(sources)][:, dst]
    best = np.where(np.isnan(rates), unknown_mbytes_per_s, rates).max(axis=0)
    best = np.where(sources[dst], np.maximum(best, local_mbytes_per_s), best)
    seconds = np.asarray(nbytes, dtype=float) / (best * MB)
    if present is not None:
        seconds = np.where(present[dst], 0.0, seconds)
    return np.asarray(seconds, dtype=float)


def scores(data: np.ndarray, free: np.ndarray, transfer_s: np.ndarray,
           settings: BrokerageSettings) -> np.ndarray:
    """The weighted score of each candidate (higher is better). O(k).

    >>> s = BrokerageSettings()
    >>> scores(np.array([1.0, 0.0]), np.array([0.5, 0.5]), np.array([0.0, 3600.0]), s).tolist()
    [1.75, 0.5]
    """
    network = 1.0 / (1.0 + transfer_s / settings.network_scale_s)
    return (settings.weight_data * data + settings.weight_capacity * free
            + settings.weight_network * network)


def draw(score: np.ndarray, eligible: np.ndarray, near_equal_fraction: float,
         rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``size`` candidates among the near-best, in proportion to their score.

    Returns the drawn candidate indices and the (k,) probabilities. The
    near-best are the eligible candidates scoring at least
    ``best * (1 - near_equal_fraction)``. O(k + size).

    >>> idx, p = draw(np.array([1.0, 0.95, 0.2]), np.ones(3, bool), 0.1,
    ...               np.random.default_rng(0), 4)
    >>> sorted(set(idx.tolist())) <= [0, 1], p.round(3).tolist()
    (True, [0.513, 0.487, 0.0])
    """
    masked = np.where(eligible, score, -np.inf)
    best = masked.max()
    near = eligible & (score >= best * (1 - near_equal_fraction))
    weights = np.where(near, np.maximum(score, 1e-12), 0.0)
    p = weights / weights.sum()
    return rng.choice(len(score), size=size, p=p), p


def fitted_files(view: GridView, needs: TaskNeeds, scratch_mb: int) -> np.ndarray:
    """Files (or events) per job at each queue: as many as wall time and disk allow.

    Bounded by ``files_per_job`` (``events_per_job``); at least 1 (the
    filters have removed queues where one does not fit). O(q).

    >>> v = _tiny_view()
    >>> needs = TaskNeeds(1, "production", 7, np.full(10, 1000 * MB), 1, 2000, 4 * 3600, 4)
    >>> fitted_files(v, needs, 0).tolist()  # 1 h per file: 2 h and 48 h queues
    [2, 4, 4]
    """
    per_unit = needs.seconds_per_unit
    cap = needs.events_per_job or needs.files_per_job
    by_time = np.floor(view.queue_walltime_s / per_unit)
    if needs.events_per_job:  # events of one file: the disk holds that one file
        by_disk = np.full(len(view.queues), np.inf)
    else:
        mean_mb = needs.file_bytes.mean() / MB if len(needs.file_bytes) else 0.0
        by_disk = np.floor((view.queue_disk_mb - scratch_mb) / max(mean_mb, 1e-9))
    return np.clip(np.minimum(by_time, by_disk), 1, cap).astype(np.int64)


def broker_task(view: GridView, needs: TaskNeeds, settings: BrokerageSettings,
                mesh_min_mbytes_per_s: float, rng: np.random.Generator) -> TaskChoice:
    """Choose a cloud (``settings.mode == "clouds"``) or a nucleus (``"full_mesh"``).

    A cloud's terms: data — the input is on disk at one of its members,
    unless another candidate would start the task ``start_sooner_by_minutes``
    sooner (:func:`_data_waits`); free — the free pilot slots of its member
    queues that pass the job filters, relative to the best cloud; network —
    the time to bring the input to its Tier-1. A cloud is rejected when none of its members'
    queues passes the job filters, or its Tier-1 lacks the disk space for
    the expected output. In full-mesh mode the candidates are the nuclei and
    a nucleus's members are the sites it reaches at ``mesh_min_mbytes_per_s``
    or more. A pinned task only considers the pinned site's cloud (nucleus).

    O(c * (n + q)) for c candidates.
    """
    codes = queue_filter_codes(view, needs, settings.scratch_disk_mb)
    passing = codes == 0
    passing_site = np.zeros(len(view.sites), bool)
    np.logical_or.at(passing_site, view.queue_site, passing)

    def per_site(per_queue: np.ndarray) -> np.ndarray:  # summed over the passing queues
        return np.bincount(view.queue_site, weights=np.where(passing, per_queue, 0),
                           minlength=len(view.sites))

    free_site = per_site(np.maximum(view.queue_slots - view.queue_waiting
                                    - view.queue_running, 0))
    waiting_site, slots_site = per_site(view.queue_waiting), per_site(view.queue_slots)
    heads, names, member_sets, targets = _task_candidates(view, settings,
                                                          mesh_min_mbytes_per_s)
    output_bytes = needs.input_bytes * settings.output_to_input_fraction
    present = view.present.get(needs.dataset_id, np.zeros(len(view.sites), bool))
    pinned_home = _pinned_head(view, needs, settings, heads, member_sets)
    candidates: list[dict[str, Any]] = []
    ok, data, free, transfer, wait = [], [], [], [], []
    for k, (name, members, target) in enumerate(zip(names, member_sets, targets, strict=True)):
        row: dict[str, Any] = {"name": name, "members": int(members.sum())}
        has_data = bool((present & members).any())
        seconds = 0.0 if has_data else float(
            transfer_seconds(view, needs.dataset_id, needs.input_bytes,
                             np.array([max(target, 0)]), settings.unknown_link_mbytes_per_s,
                             settings.tape_recall_mbytes_per_s)[0])
        reason = _task_refusal(view, codes, passing_site, members, int(target), output_bytes,
                               pinned_home is not None and k != pinned_home)
        row.update(data=has_data, free_slots=int(free_site[members].sum()),
                   transfer_s=_finite(seconds))
        if reason is not None:
            row["filter"] = reason
        candidates.append(row)
        ok.append(reason is None)
        data.append(1.0 if has_data else 0.0)
        free.append(free_site[members].sum())
        transfer.append(seconds)
        wait.append(waiting_site[members].sum() / max(slots_site[members].sum(), 1.0)
                    * needs.walltime_s)
    if not any(ok):
        return TaskChoice(None, None, np.zeros(len(view.sites), bool), candidates,
                          "no candidate passes the filters")
    counted = _data_waits(candidates, np.array(ok), np.array(data), np.array(transfer),
                          np.array(wait), settings)
    pick, why = _draw_task(names, candidates, np.array(ok), counted,
                           np.array(free, dtype=float), np.array(transfer), settings, rng)
    for row in candidates:
        if "data_waits" in row:
            why += (f"; the data at {row['name']} not counted: its jobs would start over "
                    f"{_seconds(settings.start_sooner_by_minutes * 60)} later")
    return TaskChoice(int(pick if settings.mode == "clouds" else heads[pick]), names[pick],
                      member_sets[pick], candidates, why)


def _task_candidates(view: GridView, settings: BrokerageSettings,
                     mesh_min_mbytes_per_s: float
                     ) -> tuple[np.ndarray, list[str], list[np.ndarray], np.ndarray]:
    """The candidates of a task: their indices (nuclei in full mesh, else clouds), names,
    member masks over the sites and the site each brings the input to (-1: none)."""
    if settings.mode == "full_mesh":
        heads = np.flatnonzero(view.site_nucleus)
        return (heads, [view.sites[i] for i in heads],
                [mesh_members(view, int(h), mesh_min_mbytes_per_s) for h in heads], heads)
    heads = np.arange(len(view.clouds))
    return heads, list(view.clouds), [members_of(view, int(k)) for k in heads], view.cloud_tier1


def _task_refusal(view: GridView, codes: np.ndarray, passing_site: np.ndarray,
                  members: np.ndarray, target: int, output_bytes: float,
                  pinned_elsewhere: bool) -> str | None:
    """Why a candidate cannot take the task (the first filter that bites), or None."""
    if pinned_elsewhere:
        return "pinned: the task is pinned to a site outside it"
    if target < 0:
        return "no Tier-1: the cloud has no Tier-1 to hold the output"
    if not (passing_site & members).any():
        return "no queue fits: " + _commonest_filter(codes, view.queue_site, members)
    if view.site_disk_free[target] < output_bytes:
        return (f"output space: {view.site_disk_free[target] / 1e12:.2f} TB free at "
                f"{view.sites[target]}, {output_bytes / 1e12:.2f} TB expected")
    return None


def _data_waits(candidates: list[dict[str, Any]], eligible: np.ndarray, data: np.ndarray,
                transfer: np.ndarray, wait: np.ndarray, settings: BrokerageSettings
                ) -> np.ndarray:
    """The data terms that count: ``data`` with 0 for each eligible candidate holding the
    input whose jobs would start more than ``start_sooner_by_minutes`` later than at
    another eligible candidate (its wait for a slot against the other's wait plus the
    input's transfer). Each row gets its wait (``wait_s``), a dropped one the reason
    (``data_waits``). O(c)."""
    start = transfer + wait
    soonest = np.where(eligible, start, np.inf).min()
    with np.errstate(invalid="ignore"):  # inf - inf (no input anywhere): NaN, not later
        behind = start - soonest
    late = eligible & (data > 0) & (behind > settings.start_sooner_by_minutes * 60)
    for k, row in enumerate(candidates):
        row["wait_s"] = _finite(float(wait[k]))
        if late[k]:
            row["data_waits"] = (f"starts {_seconds(behind[k])} later than the "
                                 "soonest: the data counts only where the jobs start soon")
    return np.where(late, 0.0, data)


def _draw_task(names: list[str], candidates: list[dict[str, Any]], eligible: np.ndarray,
               data: np.ndarray, free: np.ndarray, transfer: np.ndarray,
               settings: BrokerageSettings, rng: np.random.Generator) -> tuple[int, str]:
    """Score the eligible candidates, draw one among the near-best, write each one's
    score, share and terms into its row; the pick and the sentence saying why."""
    free_rel = free / max(free[eligible].max(), 1.0)
    score = scores(data, free_rel, transfer, settings)
    (pick,), p = draw(score, eligible, settings.near_equal_fraction, rng, 1)
    for k, row in enumerate(candidates):
        if eligible[k]:
            row.update(score=round(float(score[k]), 4), share=round(float(p[k]), 4),
                       terms={"data": float(data[k]), "capacity": round(float(free_rel[k]), 4),
                              "network": round(float(1 / (1 + transfer[k] /
                                                           settings.network_scale_s)), 4)})
    why = (f"{names[pick]}: score {score[pick]:.3f} of {int(eligible.sum())} passing "
           f"({'data present' if data[pick] else f'input {_seconds(transfer[pick])} away'}, "
           f"{int(free[pick])} free slots)")
    return int(pick), why


def queue_scores(view: GridView, needs: TaskNeeds, members: np.ndarray,
                 settings: BrokerageSettings) -> QueueScores:
    """Filter and weigh every queue of ``members`` for a task's jobs. O(q + n * r).

    The queues outside ``members`` (or, for a pinned task, off the pinned
    site) are out of scope: not eligible and not explained.
    """
    scratch = settings.scratch_disk_mb
    in_scope = members[view.queue_site]
    if needs.pinned_site >= 0:
        in_scope &= view.queue_site == needs.pinned_site
    codes = queue_filter_codes(view, needs, scratch, in_scope)
    eligible = in_scope & (codes == 0)
    site = view.queue_site
    present = view.present.get(needs.dataset_id, np.zeros(len(view.sites), bool))
    per_job = fitted_files(view, needs, scratch)
    unit_bytes = (needs.file_bytes.mean() if len(needs.file_bytes) else 0.0)
    job_bytes = unit_bytes if needs.events_per_job else per_job * unit_bytes
    site_seconds = transfer_seconds(view, needs.dataset_id, 1.0, np.arange(len(view.sites)),
                                    settings.unknown_link_mbytes_per_s,
                                    settings.tape_recall_mbytes_per_s)
    with np.errstate(invalid="ignore"):  # inf * 0 bytes: nothing to bring
        seconds = np.where(job_bytes == 0, 0.0, site_seconds[site] * job_bytes)
    slots = np.maximum(view.queue_slots, 1)
    free = np.clip((view.queue_slots - view.queue_waiting - view.queue_running) / slots, 0, 1)
    data = present[site].astype(float)
    score = scores(data, free, np.nan_to_num(seconds, posinf=1e18), settings)
    return QueueScores(codes, in_scope, eligible, data, free, seconds, score, per_job)


def broker_jobs(view: GridView, needs: TaskNeeds, members: np.ndarray,
                settings: BrokerageSettings, rng: np.random.Generator) -> JobPlan:
    """Place a task's jobs on the queues of ``members`` and size each job to its queue.

    Every member queue is a candidate; after the filters each is weighed on
    data (input on disk at its site), free (free pilot slots over slots)
    and network (time to bring a job's input). Each job is a weighted draw
    among the near-best, so near-equal queues share the work; a queue takes
    jobs only up to ``max_waiting_per_slot`` waiting per pilot slot, then
    the next best take the rest; when every queue is at that limit, the
    limit rises by one waiting job per slot at a time, so the rest spread
    over the queues in proportion to their slots, not onto the best alone
    (:func:`draw_with_room`). The queues'
    ``queue_waiting`` counts grow by the jobs placed, so the next task sees
    them busier.

    Returns an empty plan (no jobs) when no queue passes.

    O(q + J) for J jobs.
    """
    qs = queue_scores(view, needs, members, settings)
    codes, in_scope, eligible, data, free, seconds, score, per_job = qs
    site = view.queue_site
    present = view.present.get(needs.dataset_id, np.zeros(len(view.sites), bool))
    candidates = queue_candidates(view, codes, in_scope, eligible, data, free, seconds, score)
    if not eligible.any():
        for row in candidates:
            del row["_index"]
        empty = np.zeros(0, np.int64)
        return JobPlan(empty, empty, empty, None, None, np.zeros(0, bool), np.zeros(0),
                       candidates, "no queue passes the filters: "
                       + _commonest_filter(codes, site, members))
    units = len(needs.file_bytes)
    first_event: np.ndarray | None
    n_events: np.ndarray | None
    if needs.events_per_job:
        queue, first_file, n_files, first_event, n_events, p = _event_jobs(
            needs, per_job, score, eligible, _room(view, settings), view.queue_slots, settings,
            rng)
    else:
        queue, first_file, n_files, p = _file_jobs(units, per_job, score, eligible,
                                                   _room(view, settings), view.queue_slots,
                                                   settings, rng)
        first_event = n_events = None  # file jobs: no events
    view.queue_waiting += np.bincount(queue, minlength=len(view.queues))
    counts = np.bincount(queue, minlength=len(view.queues))
    for row in candidates:
        k = row.pop("_index")
        if eligible[k]:
            row.update(share=round(float(p[k]), 4), jobs=int(counts[k]),
                       files_per_job=int(per_job[k]))
    placed = np.flatnonzero(counts)
    summary = f"{len(queue)} jobs on " + ", ".join(
        f"{view.queues[k]} ({counts[k]})" for k in placed[np.argsort(-counts[placed])][:5])
    if len(placed) > 5:
        summary += f" and {len(placed) - 5} more queues"
    return JobPlan(queue, first_file, n_files, first_event, n_events,
                   present[site[queue]], seconds[queue], candidates, summary)


def draw_with_room(score: np.ndarray, eligible: np.ndarray, room: np.ndarray, size: int,
                   near_equal_fraction: float, rng: np.random.Generator,
                   step: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`draw`, but a candidate takes at most ``room[k]`` of the ``size``.

    Round after round the near-best with room left share what remains (a job
    is never dropped). When no eligible candidate has room left, each gains
    ``step[k]`` more (its pilot slots: one more waiting job per slot), so
    what the full candidates cannot hold is spread over them in proportion
    to how fast they drain, the best still filled first at each level;
    without ``step`` the rest are drawn on score alone. Returns the
    candidates drawn, shuffled, and the first round's probabilities.
    O(k * rounds + size), a round per candidate filled.

    >>> q, _ = draw_with_room(np.array([2.0, 1.0]), np.ones(2, bool), np.array([3, 100]), 5,
    ...                       0.1, np.random.default_rng(0))
    >>> sorted(q.tolist())  # the best takes its 3, the next the other 2
    [0, 0, 0, 1, 1]
    >>> q, _ = draw_with_room(np.array([2.0, 1.0]), np.ones(2, bool), np.array([0, 0]), 8,
    ...                       0.1, np.random.default_rng(0), step=np.array([1, 3]))
    >>> sorted(q.tolist())  # both full: one more per slot each, twice (1 + 3, 1 + 3)
    [0, 0, 1, 1, 1, 1, 1, 1]
    """
    left = np.asarray(room, dtype=np.int64).copy()
    raise_by = None if step is None else np.maximum(np.asarray(step, dtype=np.int64), 1)
    taken, first_p = [], None
    remaining = size
    while remaining > 0:
        open_ = eligible & (left > 0)
        if not open_.any() and raise_by is not None and eligible.any():
            left = np.where(eligible, np.maximum(left, 0) + raise_by, left)
            open_ = eligible & (left > 0)
        if not open_.any():
            idx, p = draw(score, eligible, near_equal_fraction, rng, remaining)
            taken.append(idx)
            first_p = p if first_p is None else first_p
            break
        idx, p = draw(score, open_, near_equal_fraction, rng, remaining)
        first_p = p if first_p is None else first_p
        take = np.minimum(np.bincount(idx, minlength=len(score)), left)
        kept = np.repeat(np.arange(len(score)), take)
        taken.append(kept)
        left -= take
        remaining -= len(kept)
    out = np.concatenate(taken) if taken else np.zeros(0, np.int64)
    rng.shuffle(out)
    return out, first_p if first_p is not None else np.zeros(len(score))


def _room(view: GridView, settings: BrokerageSettings) -> np.ndarray:
    """Jobs each queue may still take: up to ``max_waiting_per_slot`` waiting per slot."""
    return np.maximum(np.floor(settings.max_waiting_per_slot * view.queue_slots)
                      - view.queue_waiting, 0).astype(np.int64)


def _file_jobs(units: int, per_job: np.ndarray, score: np.ndarray, eligible: np.ndarray,
               room: np.ndarray, step: np.ndarray, settings: BrokerageSettings,
               rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Jobs over the task's files: draw a queue per job, cut the files by its size."""
    smallest = int(per_job[eligible].min())
    most = max(1, math.ceil(units / smallest))
    queue, p = draw_with_room(score, eligible, room, most, settings.near_equal_fraction, rng,
                              step=step)
    sizes = per_job[queue]
    ends = np.cumsum(sizes)
    count = int(np.searchsorted(ends, units) + 1)
    queue, sizes, ends = queue[:count], sizes[:count].copy(), ends[:count]
    starts = ends - sizes
    sizes[-1] = units - starts[-1]  # the last job takes what is left
    return queue, starts, sizes, p


def _event_jobs(needs: TaskNeeds, per_job: np.ndarray, score: np.ndarray,
                eligible: np.ndarray, room: np.ndarray, step: np.ndarray,
                settings: BrokerageSettings, rng: np.random.Generator
                ) -> tuple[np.ndarray, ...]:
    """Jobs over the events of each file: one queue per file, its events cut by its size."""
    files = len(needs.file_bytes)
    events = int(needs.events_per_file or needs.events_per_job or 1)
    per_file = -(-events // per_job)  # jobs one file makes at each queue
    file_queue, p = draw_with_room(score, eligible, room // np.maximum(per_file, 1), files,
                                   settings.near_equal_fraction, rng,
                                   step=step // np.maximum(per_file, 1))
    size = per_job[file_queue]
    jobs_per_file = -(-events // size)
    queue = np.repeat(file_queue, jobs_per_file)
    first_file = np.repeat(np.arange(files), jobs_per_file)
    starts = np.repeat(np.cumsum(jobs_per_file) - jobs_per_file, jobs_per_file)
    k = np.arange(len(queue)) - starts
    first_event = k * size[first_file]
    n_events = np.minimum(size[first_file], events - first_event)
    return queue, first_file, np.ones(len(queue), np.int64), first_event, n_events, p


def queue_candidates(view: GridView, codes: np.ndarray, in_scope: np.ndarray,
                     eligible: np.ndarray, data: np.ndarray, free: np.ndarray,
                     seconds: np.ndarray, score: np.ndarray) -> list[dict[str, Any]]:
    """The in-scope queues explained: the filter that removed each, or its terms and
    score; best first. Each row keeps its queue index under ``_index``."""
    out = []
    for k in np.flatnonzero(in_scope):
        row: dict[str, Any] = {"_index": int(k), "name": view.queues[k],
                               "site": view.sites[view.queue_site[k]]}
        if not eligible[k]:
            row["filter"] = _filter_text(view, int(k), int(codes[k]))
        else:
            row.update(score=round(float(score[k]), 4),
                       terms={"data": float(data[k]), "capacity": round(float(free[k]), 4),
                              "transfer_s": _finite(float(seconds[k]))})
        out.append(row)
    out.sort(key=lambda r: (-r.get("score", -1.0), r["name"]))
    return out


def _filter_text(view: GridView, k: int, code: int) -> str:
    name = FILTERS[code - 1]
    detail = {
        "site status": lambda: "site is not online",
        "queue status": lambda: f"queue is {view.queue_status[k]}",
        "queue type": lambda: f"queue runs {view.queue_type[k]}",
        "cores": lambda: f"queue has {view.queue_cores[k]} cores",
        "memory": lambda: f"queue allows {view.queue_memory_mb[k]} MB",
        "walltime": lambda: f"queue allows {int(view.queue_walltime_s[k])} s",
        "disk": lambda: f"queue allows {view.queue_disk_mb[k]} MB of disk",
    }[name]()
    return f"{name}: {detail}"


def _commonest_filter(codes: np.ndarray, queue_site: np.ndarray, members: np.ndarray) -> str:
    judged = codes[members[queue_site]]
    failed = judged[judged > 0]
    if len(failed) == 0:
        return "no queues"
    return f"{FILTERS[int(np.bincount(failed).argmax()) - 1]} (most queues)"


def mesh_members(view: GridView, head: int, min_mbytes_per_s: float) -> np.ndarray:
    """(n,) bool: a nucleus and the sites it reaches at ``min_mbytes_per_s`` or more. O(n)."""
    reach = np.nan_to_num(view.throughput[head], nan=0.0) >= min_mbytes_per_s
    reach[head] = True
    return reach


def _pinned_head(view: GridView, needs: TaskNeeds, settings: BrokerageSettings,
                 heads: np.ndarray, member_sets: list[np.ndarray]) -> int | None:
    if needs.pinned_site < 0:
        return None
    if settings.mode == "clouds":
        return int(view.site_cloud[needs.pinned_site])
    for k, members in enumerate(member_sets):  # the first nucleus reaching the site
        if members[needs.pinned_site]:
            return k
    return -1


def _finite(x: float) -> float | None:
    return None if not math.isfinite(x) else round(x, 1)


def _seconds(x: float) -> str:
    return "unreachable" if not math.isfinite(x) else f"{x:.0f} s"


def _tiny_view() -> GridView:
    """Three sites, three queues, for the examples: A and B in cloud 0, C offline."""
    nan = np.nan
    return GridView(
        sites=["A", "B", "C"], site_cloud=np.array([0, 0, 1]),
        site_online=np.array([True, True, False]), site_nucleus=np.array([True, False, False]),
        site_disk_free=np.array([1e15, 1e14, 0.0]), clouds=["X", "Y"],
        cloud_tier1=np.array([0, 2]), foreign=np.zeros((2, 3), bool),
        queues=["A_Q", "B_Q", "C_Q"], queue_site=np.array([0, 1, 2]),
        queue_status=np.array(["online"] * 3), queue_type=np.array(["unified"] * 3),
        queue_cores=np.array([8, 1, 8]), queue_memory_mb=np.array([16000] * 3),
        queue_walltime_s=np.array([7200, 172800, 172800]),
        queue_disk_mb=np.array([100000] * 3), queue_slots=np.array([100] * 3),
        queue_waiting=np.zeros(3, np.int64), queue_running=np.zeros(3, np.int64),
        throughput=np.array([[nan, 10.0, nan], [nan, nan, nan], [nan, nan, nan]]),
        present={7: np.array([True, False, False])}, sources={7: np.array([True, False, False])})

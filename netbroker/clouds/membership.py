"""Dynamic cloud membership: which foreign sites the network puts in each cloud.

A cloud's static members are the sites registered in it. A foreign site
becomes a *foreign calculated* member when its consolidated link from the
cloud's Tier-1 (files served Tier-1 -> site) passes the operator's
thresholds: throughput of at least ``min_mbytes_per_s_from_tier1`` over at
least ``min_samples`` measurements, packet loss at most
``max_packet_loss_fraction`` (unknown loss does not block), and the site
itself fit (online, with an online queue). Hysteresis keeps memberships
from flapping: a member leaves only when its throughput drops below
``threshold * (1 - leave_margin_fraction)``, it becomes unfit, or it has had
no measurement for ``stale_cycles`` recomputations. A site is unfit when it
is offline, has no online queue, or its own jobs succeeded less than
``min_job_success_fraction`` of the time over ``job_success_window_days``
(a site with no finished or failed job there is not judged on it).

:func:`decide_membership` is the pure decision over arrays indexed by cloud
and site; :func:`recompute`, :func:`preview` and :func:`show_membership`
read the database around it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine

from netbroker.common.config import CloudSettings, MetricsSettings
from netbroker.common.enums import utcnow
from netbroker.common.errors import UnknownCloud, UnknownSite
from netbroker.db.clouds import CloudDB
from netbroker.db.engine import begin_immediate
from netbroker.db.grid import GridDB
from netbroker.db.jobs import JobDB
from netbroker.network.metrics import MetricKind, closeness, tier1_links

__all__ = [
    "MembershipChange",
    "MembershipInputs",
    "MembershipResult",
    "cloud_detail",
    "decide_membership",
    "gather_inputs",
    "history",
    "mesh_ranking",
    "preview",
    "recompute",
    "refused_candidates",
    "show_membership",
]


@dataclass(frozen=True)
class MembershipInputs:
    """What a membership decision looks at, as arrays.

    ``c`` clouds and ``n`` sites; matrices are ``(c, n)``, row ``k`` being the
    link from cloud ``k``'s Tier-1 to every site. NaN means not measured.
    """

    clouds: list[str]
    sites: list[str]
    home: np.ndarray            # (n,) index of each site's registered cloud
    mbytes_per_s: np.ndarray    # (c, n) consolidated Tier-1 -> site throughput
    samples: np.ndarray         # (c, n) measurements behind it
    packet_loss: np.ndarray     # (c, n) consolidated packet loss, fraction
    site_fit: np.ndarray        # (n,) bool: online, with an online queue
    members: np.ndarray         # (c, n) bool: foreign members now
    stale: np.ndarray           # (c, n) cycles without data, for members
    job_success: np.ndarray | None = None  # (n,) finished / (finished + failed), NaN: none


@dataclass(frozen=True)
class MembershipChange:
    """One join or leave, with the measurements that decided it."""

    cloud: str
    site: str
    change: str  # "joined" | "left"
    mbytes_per_s: float | None
    packet_loss_fraction: float | None
    samples: int
    reason: str


@dataclass(frozen=True)
class MembershipResult:
    """A decision: the new membership and stale counters, and what changed."""

    members: np.ndarray
    stale: np.ndarray
    changes: list[MembershipChange] = field(default_factory=list)


def decide_membership(inputs: MembershipInputs, settings: CloudSettings) -> MembershipResult:
    """Decide every cloud's foreign members for this cycle.

    Parameters
    ----------
    inputs : MembershipInputs
    settings : CloudSettings
        The thresholds (``min_mbytes_per_s_from_tier1``,
        ``max_packet_loss_fraction``, ``min_samples``, ``leave_margin_fraction``,
        ``stale_cycles``).

    Returns
    -------
    MembershipResult
        New ``(c, n)`` membership and stale counters; one change per join or
        leave, in cloud then site order, with its reason.

    Notes
    -----
    O(c * n) array operations. A member with no measurement keeps its place
    and counts a stale cycle; with a measurement its counter resets.

    Examples
    --------
    >>> z = np.zeros((1, 3))
    >>> inputs = MembershipInputs(["DE"], ["FZK", "DESY", "PIC"], np.array([0, 0, 1]),
    ...     np.array([[np.nan, np.nan, 8.0]]), np.array([[0, 0, 5]]), z * np.nan,
    ...     np.ones(3, bool), z.astype(bool), z.astype(int))
    >>> [(c.site, c.change) for c in decide_membership(inputs, CloudSettings()).changes]
    [('PIC', 'joined')]
    """
    s = settings
    rate, count, loss = inputs.mbytes_per_s, inputs.samples, inputs.packet_loss
    foreign = inputs.home[np.newaxis, :] != np.arange(len(inputs.clouds))[:, np.newaxis]
    measured = (count >= s.min_samples) & ~np.isnan(rate)
    loss_ok = np.isnan(loss) | (loss <= s.max_packet_loss_fraction)
    success = (inputs.job_success if inputs.job_success is not None
               else np.full(len(inputs.sites), np.nan))
    succeeds = np.isnan(success) | (success >= s.min_job_success_fraction)
    fit = (inputs.site_fit & succeeds)[np.newaxis, :]
    joins = foreign & ~inputs.members & fit & measured & (rate >= s.min_mbytes_per_s_from_tier1) \
        & loss_ok
    stale = np.where(inputs.members & ~measured, inputs.stale + 1, 0)
    leave_below = s.min_mbytes_per_s_from_tier1 * (1 - s.leave_margin_fraction)
    too_slow = inputs.members & measured & (rate < leave_below)
    lossy = inputs.members & measured & ~loss_ok
    unfit = inputs.members & ~fit
    gone = inputs.members & (stale >= s.stale_cycles)
    leaves = too_slow | lossy | unfit | gone | (inputs.members & ~foreign)
    members = (inputs.members & ~leaves) | joins
    reasons = {
        "joined": f"throughput >= {s.min_mbytes_per_s_from_tier1:g} MB/s from the Tier-1 "
                  f"over >= {s.min_samples} samples",
        "slow": f"throughput below {leave_below:g} MB/s (threshold less the leave margin)",
        "lossy": f"packet loss above {s.max_packet_loss_fraction:g}",
        "unfit": "site offline or without an online queue",
        "failing": f"site's job success below {s.min_job_success_fraction:g}",
        "stale": f"no measurement for {s.stale_cycles} cycles",
        "home": "now registered in this cloud",
    }
    changes = []
    for k, i in zip(*np.nonzero(joins | leaves), strict=True):
        if joins[k, i]:
            kind, why = "joined", reasons["joined"]
        else:
            kind = "left"
            unfit_why = "unfit" if not inputs.site_fit[i] else "failing"
            why = reasons["home" if not foreign[k, i] else unfit_why if unfit[k, i]
                          else "stale" if gone[k, i] else "lossy" if lossy[k, i] else "slow"]
        changes.append(MembershipChange(
            inputs.clouds[k], inputs.sites[i], kind, _num(rate[k, i]), _num(loss[k, i]),
            int(count[k, i]), why))
    return MembershipResult(members, np.where(members, stale, 0), changes)


def _apart(value: float, limit: float) -> tuple[str, str]:
    """``value`` and ``limit`` as text, ``value`` to 3 significant digits or as many
    more as it takes not to read as ``limit``: a refusal never says "80% < 80%"
    (17 digits tell any two doubles apart, so the loop ends there at the latest). O(1).

    >>> _apart(79.0, 80.0), _apart(79.99, 80.0), _apart(4.99996, 5.0), _apart(0.0201, 0.02)
    (('79', '80'), ('79.99', '80'), ('4.99996', '5'), ('0.0201', '0.02'))
    """
    for digits in range(3, 18):
        text = f"{value:.{digits}g}"
        if float(text) != limit:
            break
    return text, f"{limit:g}"


def _num(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def refused_candidates(inputs: MembershipInputs, settings: CloudSettings,
                       cloud: int) -> list[dict[str, Any]]:
    """The foreign sites cloud ``cloud``'s Tier-1 has a measurement to that are not its
    members and would not join now, each with the first rule it fails and the numbers.

    The rules in order: the site is unfit (offline, no online queue), its jobs
    fail too often, too few samples, throughput under the threshold, packet
    loss over the limit. Sites by throughput, best first. O(n).

    Examples
    --------
    >>> z = np.zeros((1, 3))
    >>> inputs = MembershipInputs(["DE"], ["FZK", "PIC", "RAL"], np.array([0, 1, 2]),
    ...     np.array([[np.nan, 8.0, 2.0]]), np.array([[0, 1, 5]]), z * np.nan,
    ...     np.ones(3, bool), z.astype(bool), z.astype(int))
    >>> [(r["site"], r["reason"]) for r in refused_candidates(inputs, CloudSettings(), 0)]
    [('PIC', '1 samples < 3'), ('RAL', 'throughput 2 MB/s < 5 MB/s')]
    """
    s = settings
    success = (inputs.job_success if inputs.job_success is not None
               else np.full(len(inputs.sites), np.nan))
    out = []
    rate, count, loss = inputs.mbytes_per_s[cloud], inputs.samples[cloud], \
        inputs.packet_loss[cloud]
    for i in np.flatnonzero((inputs.home != cloud) & ~inputs.members[cloud]
                            & (~np.isnan(rate) | (count > 0))):
        if not inputs.site_fit[i]:
            why = "site offline or without an online queue"
        elif not np.isnan(success[i]) and success[i] < s.min_job_success_fraction:
            why = "job success {}% < {}%".format(
                *_apart(100 * success[i], 100 * s.min_job_success_fraction))
        elif count[i] < s.min_samples:
            why = f"{int(count[i])} samples < {s.min_samples}"
        elif rate[i] < s.min_mbytes_per_s_from_tier1:
            why = "throughput {} MB/s < {} MB/s".format(
                *_apart(rate[i], s.min_mbytes_per_s_from_tier1))
        elif not np.isnan(loss[i]) and loss[i] > s.max_packet_loss_fraction:
            why = "packet loss {} > {}".format(*_apart(loss[i], s.max_packet_loss_fraction))
        else:
            continue  # it passes: it joins at the next recomputation
        home = int(inputs.home[i])
        out.append({"site": inputs.sites[i], "home": inputs.clouds[home]
                    if 0 <= home < len(inputs.clouds) else None, "mbytes_per_s": _num(rate[i]),
                    "samples": int(count[i]), "packet_loss_fraction": _num(loss[i]),
                    "reason": why})
    out.sort(key=lambda r: (-float(r["mbytes_per_s"] or -1.0), str(r["site"])))
    return out


def gather_inputs(engine: Engine, settings: CloudSettings,
                  metrics: MetricsSettings | None = None,
                  now_s: float | None = None) -> MembershipInputs:
    """Read the registry, the Tier-1 links of the window and the current members."""
    metrics = metrics or MetricsSettings()
    now_s = time.time() if now_s is None else now_s
    with engine.connect() as conn:
        grid, db = GridDB(conn), CloudDB(conn)
        cloud_rows = grid.list_clouds()
        site_rows = grid.list_sites()
        site_ids, cloud_ids = grid.site_ids(), grid.cloud_ids()
        online_queue_sites = {q["site"] for q in grid.list_queues(status="online")}
        current = db.foreign_members()
    clouds = [c["name"] for c in cloud_rows if c["tier1"]]
    sites = [s["name"] for s in site_rows]
    c_index = {name: k for k, name in enumerate(clouds)}
    s_index = {name: i for i, name in enumerate(sites)}
    home = np.array([c_index.get(s["cloud"], -1) for s in site_rows], dtype=np.int64)
    fit = np.array([s["status"] == "online" and s["name"] in online_queue_sites
                    for s in site_rows], dtype=bool)
    tier1 = {c["name"]: site_ids[c["tier1"]] for c in cloud_rows if c["tier1"]}
    matrices = {kind: tier1_links(engine, kind, settings.window, list(tier1.values()), metrics,
                                  now_s) for kind in (MetricKind.THROUGHPUT,
                                                      MetricKind.PACKET_LOSS)}
    shape = (len(clouds), len(sites))
    rate, count, loss = np.full(shape, np.nan), np.zeros(shape, np.int64), np.full(shape, np.nan)
    by_id = {sid: s_index[name] for name, sid in site_ids.items() if name in s_index}
    row_of = {sid: c_index[cloud] for cloud, sid in tier1.items()}
    for src, dst, n, value in matrices[MetricKind.THROUGHPUT]:
        rate[row_of[src], by_id[dst]], count[row_of[src], by_id[dst]] = value, n
    for src, dst, _, value in matrices[MetricKind.PACKET_LOSS]:
        loss[row_of[src], by_id[dst]] = value
    members = np.zeros(shape, bool)
    stale = np.zeros(shape, np.int64)
    cloud_names = {cid: name for name, cid in cloud_ids.items()}
    site_names = {sid: name for name, sid in site_ids.items()}
    for (cloud_id, site_id), stale_cycles in current.items():
        k, i = c_index.get(cloud_names[cloud_id]), s_index.get(site_names[site_id])
        if k is not None and i is not None:
            members[k, i], stale[k, i] = True, stale_cycles
    # The success window ends where the links' window does, at now_s (not the wall clock).
    since = datetime.fromtimestamp(now_s, UTC) - timedelta(days=settings.job_success_window_days)
    with engine.connect() as conn:
        outcomes = JobDB(conn).final_counts_by_site(since)
    success = np.full(len(sites), np.nan)
    for site_id, (finished, failed) in outcomes.items():
        i = s_index.get(site_names.get(site_id, ""))
        if i is not None and finished + failed > 0:
            success[i] = finished / (finished + failed)
    return MembershipInputs(clouds, sites, home, rate, count, loss, fit, members, stale,
                            success)


def recompute(engine: Engine, settings: CloudSettings, metrics: MetricsSettings | None = None,
              now_s: float | None = None) -> list[MembershipChange]:
    """Recompute every cloud's foreign members, store them and the history of changes."""
    inputs = gather_inputs(engine, settings, metrics, now_s)
    result = decide_membership(inputs, settings)
    now = utcnow()
    with begin_immediate(engine) as conn:  # reads ids, then writes: the lock first
        grid = GridDB(conn)
        cloud_ids, site_ids = grid.cloud_ids(), grid.site_ids()
        rows = [{"cloud_id": cloud_ids[inputs.clouds[k]], "site_id": site_ids[inputs.sites[i]],
                 "stale_cycles": int(result.stale[k, i])}
                for k, i in zip(*np.nonzero(result.members), strict=True)]
        CloudDB(conn).replace_members(rows, now, [
            {"cloud_id": cloud_ids[c.cloud], "site_id": site_ids[c.site], "change": c.change,
             "at": now, "mbytes_per_s": c.mbytes_per_s,
             "packet_loss_fraction": c.packet_loss_fraction, "samples": c.samples,
             "reason": c.reason} for c in result.changes])
    return result.changes


def preview(engine: Engine, settings: CloudSettings, metrics: MetricsSettings | None = None,
            now_s: float | None = None) -> list[MembershipChange]:
    """The joins and leaves ``settings`` would cause now, without storing anything."""
    return decide_membership(gather_inputs(engine, settings, metrics, now_s), settings).changes


def show_membership(engine: Engine) -> list[dict[str, Any]]:
    """Every cloud with its Tier-1, static members and foreign calculated members."""
    with engine.connect() as conn:
        grid = GridDB(conn)
        out = [{"cloud": c["name"], "tier1": c["tier1"],
                "static": [s["name"] for s in grid.list_sites(cloud=c["name"])],
                "foreign": []} for c in grid.list_clouds()]
        by_cloud = {row["cloud"]: row for row in out}
        for cloud, site, joined_at in CloudDB(conn).foreign_member_names():
            by_cloud[cloud]["foreign"].append({"site": site, "joined_at": joined_at})
    return out


def history(engine: Engine, cloud: str | None = None, site: str | None = None,
            limit: int = 100) -> list[dict[str, Any]]:
    """Joins and leaves, newest first."""
    with engine.connect() as conn:
        return CloudDB(conn).history(cloud, site, limit)


def cloud_detail(engine: Engine, name: str, settings: CloudSettings,
                 metrics: MetricsSettings | None = None, now_s: float | None = None
                 ) -> dict[str, Any]:
    """One cloud for its page: ``tier1``, ``members`` (its registered sites),
    ``foreign`` (each foreign calculated member with the join that admitted it:
    throughput, samples, packet loss, reason), ``refused`` (:func:`refused_candidates`
    under ``settings``) and ``history`` (joins and leaves, newest first).

    Raises ``UnknownCloud``.
    """
    with engine.connect() as conn:
        grid = GridDB(conn)
        found = [c for c in grid.list_clouds() if c["name"] == name]
        if not found:
            raise UnknownCloud(name)
        every = grid.list_sites()
        db = CloudDB(conn)
        foreign = [(site, at) for c, site, at in db.foreign_member_names() if c == name]
        events = db.history(name, None, 500)
    admitted = {}
    for e in reversed(events):  # oldest first: the newest join of each site wins
        if e["change"] == "joined":
            admitted[e["site"]] = e
    inputs = gather_inputs(engine, settings, metrics, now_s)
    refused = (refused_candidates(inputs, settings, inputs.clouds.index(name))
               if name in inputs.clouds else [])
    home = {s["name"]: s["cloud"] for s in every}
    return {"cloud": name, "tier1": found[0]["tier1"],
            "members": [s for s in every if s["cloud"] == name],
            "foreign": [{"site": site, "home": home.get(site), "joined_at": at,
                         "admitted_by": admitted.get(site)} for site, at in foreign],
            "refused": refused, "history": events[:200]}



def mesh_ranking(engine: Engine, settings: CloudSettings, metrics: MetricsSettings | None = None,
                 nucleus: str | None = None, now_s: float | None = None
                 ) -> list[dict[str, Any]]:
    """Full-mesh mode: for each nucleus, every measured site ranked by closeness.

    No cloud boundary: a site is close to a nucleus when the consolidated
    throughput from the nucleus to it is high. Rows ``nucleus, rank, site,
    cloud, mbytes_per_s, closeness, samples``; sites without a measurement
    are not ranked (unknown, not far).
    """
    metrics = metrics or MetricsSettings()
    with engine.connect() as conn:
        grid = GridDB(conn)
        site_rows = grid.list_sites()
        site_ids = grid.site_ids()
    nuclei = [s["name"] for s in site_rows if s["is_nucleus"]
              and (nucleus is None or s["name"] == nucleus)]
    if nucleus is not None and not nuclei:
        raise UnknownSite(nucleus)
    names = {sid: name for name, sid in site_ids.items()}
    cloud_of = {s["name"]: s["cloud"] for s in site_rows}
    links = tier1_links(engine, MetricKind.THROUGHPUT, settings.window,
                        [site_ids[n] for n in nuclei], metrics, now_s)
    out = []
    for n in nuclei:
        ranked = sorted((link for link in links if names[link[0]] == n and link[1] != link[0]),
                        key=lambda link: -link[3])
        for rank, (_, dst, count, value) in enumerate(ranked, start=1):
            grade = closeness(np.array([value]), metrics.closeness_best_mbytes_per_s,
                              metrics.closeness_worst_mbytes_per_s)
            out.append({"nucleus": n, "rank": rank, "site": names[dst],
                        "cloud": cloud_of[names[dst]], "mbytes_per_s": value,
                        "closeness": int(grade[0]), "samples": count})
    return out

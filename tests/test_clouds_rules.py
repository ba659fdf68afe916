"""Every documented rule of dynamic cloud membership, at its boundary, on both backends.

The mini grid (``tests.factories.mini_grid``): DE's Tier-1 is FZK; MAN is a
UK Tier-2, foreign to DE, so it can join DE when the FZK -> MAN link is good
enough. Measurements go through the real ingestion: FTS transfers of 1 GB
(whose rates are exact: 1 GB in 200 s is 5.0 MB/s) and perfSONAR's packet
loss. Defaults: join at 5 MB/s over 3 samples, loss at most 0.02, leave
below 5 * (1 - 0.2) = 4 MB/s, job success at least 0.8 over 3 days.

The pure decision (:func:`decide_membership`) is checked at the same
boundaries on hand-made arrays: one cloud, one foreign site.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy.engine import Engine

from collectors.ingest import ingest
from netbroker.clouds import membership as clouds
from netbroker.clouds.membership import MembershipInputs, decide_membership
from netbroker.common.config import CloudSettings
from netbroker.common.enums import JobStatus
from netbroker.db.grid import GridDB
from netbroker.db.jobs import JobDB
from netbroker.db.schema import queues
from netbroker.registry import registry
from tests.factories import fts_transfers, mini_grid, perfsonar_documents

T0 = 1795514400.0  # 2026-11-24T10:00:00Z
HOUR = CloudSettings(window="1h")  # each phase of a test lives in its own hour
MAN = ("UK", "MAN")


@pytest.fixture
def mini(engine: Engine) -> Engine:
    registry.import_grid_document(engine, mini_grid())
    return engine


def fts(engine: Engine, src: str, dst: str, mbytes_per_s: float, n: int, at: float) -> None:
    report = ingest(engine, "fts", fts_transfers(f"{src}_DATADISK", f"{dst}_DATADISK",
                                                 mbytes_per_s, n, at - 120, f"{src}{at}"),
                    now_s=at)
    assert report.stored == 2 * n, report


def loss(engine: Engine, src: str, dst: str, fraction: float, n: int, at: float) -> None:
    report = ingest(engine, "perfsonar", perfsonar_documents(src, dst, n, at - 120,
                                                             packet_loss=fraction), now_s=at)
    assert report.stored == n, report


def changes(engine: Engine, at: float, settings: CloudSettings = HOUR
            ) -> set[tuple[str, str, str, str]]:
    return {(c.cloud, c.site, c.change, c.reason)
            for c in clouds.recompute(engine, settings, now_s=at)}


JOINED = "throughput >= 5 MB/s from the Tier-1 over >= 3 samples"


@pytest.mark.parametrize(("mbytes_per_s", "joins"), [(5.0, True), (4.9, False)])
def test_a_foreign_site_joins_at_the_throughput_threshold_not_below(
        mini: Engine, mbytes_per_s: float, joins: bool) -> None:
    fts(mini, "FZK", "MAN", mbytes_per_s, 4, T0)
    got = clouds.recompute(mini, HOUR, now_s=T0)
    if joins:
        (joined,) = got
        assert (joined.cloud, joined.site, joined.change, joined.reason) == (
            "DE", "MAN", "joined", JOINED)
        assert (joined.mbytes_per_s, joined.samples) == (5.0, 4)
        (row,) = clouds.history(mini, cloud="DE")
        assert (row["site"], row["change"], row["mbytes_per_s"], row["reason"]) == (
            "MAN", "joined", 5.0, JOINED)
    else:
        assert got == [] and clouds.history(mini) == []


@pytest.mark.parametrize(("samples", "joins"), [(3, True), (2, False)])
def test_a_link_counts_only_over_min_samples(mini: Engine, samples: int, joins: bool) -> None:
    fts(mini, "FZK", "MAN", 50.0, samples, T0)
    assert bool(changes(mini, T0)) is joins


def test_only_the_link_from_the_tier1_counts_not_the_way_back(mini: Engine) -> None:
    fts(mini, "MAN", "FZK", 500.0, 4, T0)
    assert changes(mini, T0) == set()


def test_a_measurement_older_than_the_window_does_not_count(mini: Engine) -> None:
    fts(mini, "FZK", "MAN", 50.0, 4, T0)
    assert changes(mini, T0 + 2 * 3600) == set()  # the 1 h window has no bucket of it
    assert changes(mini, T0 + 2 * 3600, CloudSettings(window="1d")) == {
        ("DE", "MAN", "joined", JOINED)}


@pytest.mark.parametrize(("fraction", "joins"), [(0.02, True), (0.03, False)])
def test_packet_loss_above_the_limit_keeps_a_site_out(mini: Engine, fraction: float,
                                                      joins: bool) -> None:
    fts(mini, "FZK", "MAN", 50.0, 4, T0)
    loss(mini, "FZK", "MAN", fraction, 4, T0)
    got = clouds.recompute(mini, HOUR, now_s=T0)
    assert bool(got) is joins
    if joins:
        assert got[0].packet_loss_fraction == 0.02


def test_a_member_whose_loss_rises_leaves_as_lossy(mini: Engine) -> None:
    fts(mini, "FZK", "MAN", 50.0, 4, T0)
    assert changes(mini, T0)
    fts(mini, "FZK", "MAN", 50.0, 4, T0 + 7200)
    loss(mini, "FZK", "MAN", 0.05, 4, T0 + 7200)
    (left,) = clouds.recompute(mini, HOUR, now_s=T0 + 7200)
    assert (left.change, left.reason, left.packet_loss_fraction) == (
        "left", "packet loss above 0.02", 0.05)


@pytest.mark.parametrize(("mbytes_per_s", "leaves"), [(4.0, False), (3.9, True)])
def test_a_member_leaves_only_below_the_threshold_less_the_margin(
        mini: Engine, mbytes_per_s: float, leaves: bool) -> None:
    fts(mini, "FZK", "MAN", 8.0, 4, T0)
    assert changes(mini, T0)
    fts(mini, "FZK", "MAN", mbytes_per_s, 4, T0 + 7200)
    got = changes(mini, T0 + 7200)
    if leaves:
        assert got == {("DE", "MAN", "left",
                        "throughput below 4 MB/s (threshold less the leave margin)")}
    else:
        assert got == set()


def test_a_site_without_an_online_queue_does_not_join(engine: Engine) -> None:
    registry.import_grid_document(engine, mini_grid(queue_status={"MAN": "offline"}))
    fts(engine, "FZK", "MAN", 50.0, 4, T0)
    assert changes(engine, T0) == set()


def outcomes(engine: Engine, finished: int, failed: int, ended: datetime) -> None:
    """Jobs at MAN's queue that ended at ``ended``."""
    with engine.begin() as conn:
        queue_id = GridDB(conn).ids(queues)["MAN_UCORE"]
        JobDB(conn).add_jobs([{
            "name": f"j{ended.timestamp()}-{i}", "status": status, "queue_id": queue_id,
            "prod_source_label": "managed", "priority": 1, "cores": 1, "min_ram_mb": 0,
            "max_disk_mb": 0, "max_walltime_s": 60, "transformation": "x"}
            for i, status in enumerate([JobStatus.FINISHED] * finished
                                       + [JobStatus.FAILED] * failed)], ended)


AT = datetime.fromtimestamp(T0, UTC)


@pytest.mark.parametrize(("finished", "failed", "joins"), [(8, 2, True), (7, 3, False)])
def test_a_site_joins_only_with_enough_of_its_own_jobs_succeeding(
        mini: Engine, finished: int, failed: int, joins: bool) -> None:
    outcomes(mini, finished, failed, AT - timedelta(hours=1))
    fts(mini, "FZK", "MAN", 50.0, 4, T0)
    assert bool(changes(mini, T0)) is joins


def test_job_outcomes_older_than_the_success_window_are_not_judged(mini: Engine) -> None:
    # 10 failures 3 days and a second ago: outside the window; 8 of 10 inside succeeded.
    outcomes(mini, 0, 10, AT - timedelta(days=3, seconds=1))
    outcomes(mini, 8, 2, AT - timedelta(days=3))
    fts(mini, "FZK", "MAN", 50.0, 4, T0)
    inputs = clouds.gather_inputs(mini, HOUR, now_s=T0)
    assert inputs.job_success is not None
    assert inputs.job_success[inputs.sites.index("MAN")] == 0.8
    assert changes(mini, T0) == {("DE", "MAN", "joined", JOINED)}


def test_a_site_with_no_finished_or_failed_job_is_not_judged_on_it(mini: Engine) -> None:
    fts(mini, "FZK", "MAN", 50.0, 4, T0)
    inputs = clouds.gather_inputs(mini, HOUR, now_s=T0)
    assert inputs.job_success is not None and np.isnan(inputs.job_success).all()
    assert changes(mini, T0) == {("DE", "MAN", "joined", JOINED)}


# --- the pure decision, one cloud and one foreign site -----------------------------------

def one_site(rate: float = 50.0, samples: int = 5, packet_loss: float = np.nan,
             fit: bool = True, member: bool = False, stale: int = 0,
             success: float = np.nan, home: int = 1) -> MembershipInputs:
    """Cloud ``C`` (index 0) and the site ``S``, registered in cloud ``home``."""
    return MembershipInputs(["C", "X"], ["S"], np.array([home]),
                            np.array([[rate], [np.nan]]), np.array([[samples], [0]]),
                            np.array([[packet_loss], [np.nan]]), np.array([fit]),
                            np.array([[member], [False]]), np.array([[stale], [0]]),
                            np.array([success]))


def decided(inputs: MembershipInputs, **settings: object) -> list[tuple[str, str]]:
    return [(c.change, c.reason)
            for c in decide_membership(inputs, CloudSettings(**settings)).changes]


@pytest.mark.parametrize(("inputs", "expected"), [
    (one_site(rate=5.0), [("joined", JOINED)]),
    (one_site(rate=4.999), []),
    (one_site(rate=np.nan), []),                         # unknown is not zero, nor a join
    (one_site(samples=3), [("joined", JOINED)]),
    (one_site(samples=2), []),
    (one_site(packet_loss=0.02), [("joined", JOINED)]),
    (one_site(packet_loss=0.0201), []),
    (one_site(fit=False), []),
    (one_site(success=0.8), [("joined", JOINED)]),
    (one_site(success=0.7999), []),
    (one_site(home=0), []),                              # its own cloud: a static member
])
def test_joins_happen_exactly_at_the_documented_bounds(inputs: MembershipInputs,
                                                       expected: list[tuple[str, str]]) -> None:
    assert decided(inputs) == expected


@pytest.mark.parametrize(("inputs", "expected"), [
    (one_site(member=True, rate=4.0), []),
    (one_site(member=True, rate=3.999),
     [("left", "throughput below 4 MB/s (threshold less the leave margin)")]),
    (one_site(member=True, packet_loss=0.03), [("left", "packet loss above 0.02")]),
    (one_site(member=True, fit=False), [("left", "site offline or without an online queue")]),
    (one_site(member=True, success=0.5), [("left", "site's job success below 0.8")]),
    (one_site(member=True, home=0), [("left", "now registered in this cloud")]),
    (one_site(member=True, rate=np.nan, samples=0, stale=1), []),
    (one_site(member=True, rate=np.nan, samples=0, stale=2),
     [("left", "no measurement for 3 cycles")]),
    (one_site(member=True, samples=2, stale=2), [("left", "no measurement for 3 cycles")]),
])
def test_members_leave_exactly_at_the_documented_bounds(inputs: MembershipInputs,
                                                        expected: list[tuple[str, str]]) -> None:
    assert decided(inputs) == expected


def test_a_member_with_a_measurement_starts_its_stale_count_again() -> None:
    kept = decide_membership(one_site(member=True, stale=2), CloudSettings())
    assert kept.members.tolist() == [[True], [False]] and kept.stale.tolist() == [[0], [0]]
    waiting = decide_membership(one_site(member=True, rate=np.nan, samples=0, stale=1),
                                CloudSettings())
    assert waiting.stale.tolist() == [[2], [0]]


@pytest.mark.parametrize(("settings", "rate", "joins"), [
    ({"min_mbytes_per_s_from_tier1": 10.0}, 10.0, True),
    ({"min_mbytes_per_s_from_tier1": 10.0}, 9.0, False),
    ({"min_samples": 6}, 50.0, False),                    # 5 samples
    ({"max_packet_loss_fraction": 0.0}, 50.0, False),     # 0.01 loss
    ({"min_job_success_fraction": 0.95}, 50.0, False),    # 0.9 success
])
def test_each_threshold_setting_moves_the_bound(settings: dict[str, float], rate: float,
                                                joins: bool) -> None:
    inputs = one_site(rate=rate, packet_loss=0.01, success=0.9)
    assert bool(decided(inputs, **settings)) is joins


@pytest.mark.parametrize(("settings", "leaves"), [
    ({"leave_margin_fraction": 0.5}, False),   # stays down to 2.5 MB/s
    ({"leave_margin_fraction": 0.1}, True),    # leaves below 4.5 MB/s
    ({"stale_cycles": 1}, False),
])
def test_the_margin_setting_moves_the_leaving_bound(settings: dict[str, float],
                                                    leaves: bool) -> None:
    assert bool(decided(one_site(member=True, rate=4.2), **settings)) is leaves

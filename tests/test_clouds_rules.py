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
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from collectors.ingest import ingest
from netbroker.clouds import membership as clouds
from netbroker.clouds.membership import MembershipInputs, decide_membership
from netbroker.common.config import CloudSettings, MetricsSettings
from netbroker.common.enums import JobStatus
from netbroker.common.errors import UnknownCloud, UnknownSite
from netbroker.db.clouds import CloudDB
from netbroker.db.grid import GridDB
from netbroker.db.jobs import JobDB
from netbroker.db.schema import clouds as clouds_table
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


# --- the refused candidates of a cloud's page, one cloud and hand-made sites -------------

def sites(*specs: dict[str, object]) -> MembershipInputs:
    """Cloud ``C`` (index 0) and ``X`` (1); each spec a site (``name``, ``rate``,
    ``samples``, ``loss``, ``fit``, ``member``, ``success``, ``home``; by default a
    fit foreign site of X at 50 MB/s over 5 samples, loss and success unknown)."""
    full = [{"rate": 50.0, "samples": 5, "loss": np.nan, "fit": True, "member": False,
             "success": np.nan, "home": 1, **spec} for spec in specs]
    n = len(full)

    def row(key: str) -> list[object]:
        return [s[key] for s in full]

    return MembershipInputs(
        ["C", "X"], [str(s["name"]) for s in full], np.array(row("home")),
        np.array([row("rate"), [np.nan] * n], dtype=float),
        np.array([row("samples"), [0] * n]), np.array([row("loss"), [np.nan] * n], dtype=float),
        np.array(row("fit"), dtype=bool), np.array([row("member"), [False] * n], dtype=bool),
        np.zeros((2, n), int), np.array(row("success"), dtype=float))


def refused(inputs: MembershipInputs, **settings: object) -> list[tuple[object, object]]:
    """Cloud C's refused candidates under ``settings``: (site, reason)."""
    return [(r["site"], r["reason"])
            for r in clouds.refused_candidates(inputs, CloudSettings(**settings), 0)]


@pytest.mark.parametrize(("spec", "expected"), [
    ({}, []),                                                        # it joins next time
    ({"fit": False, "success": 0.5, "samples": 1},
     ["site offline or without an online queue"]),                  # the first rule wins
    ({"success": 0.5, "samples": 1}, ["job success 50% < 80%"]),
    ({"success": 0.79}, ["job success 79% < 80%"]),
    ({"success": 0.7999}, ["job success 79.99% < 80%"]),            # not "80% < 80%"
    ({"success": 0.8}, []),
    ({"samples": 2, "rate": 1.0}, ["2 samples < 3"]),
    ({"samples": 3}, []),
    ({"rate": 4.9, "loss": 0.5}, ["throughput 4.9 MB/s < 5 MB/s"]),
    ({"rate": 4.9999}, ["throughput 4.9999 MB/s < 5 MB/s"]),
    ({"rate": 1.23456}, ["throughput 1.23 MB/s < 5 MB/s"]),         # 3 digits when apart
    ({"rate": 5.0}, []),
    ({"loss": 0.0201}, ["packet loss 0.0201 > 0.02"]),
    ({"loss": 0.020001}, ["packet loss 0.020001 > 0.02"]),
    # the next double above 0.02 needs all 17 digits to read apart from it
    ({"loss": float(np.nextafter(0.02, 1))}, ["packet loss 0.020000000000000004 > 0.02"]),
    ({"loss": 0.02}, []),
    ({"rate": 1.0, "member": True}, []),                            # a member is not refused
    ({"rate": 1.0, "home": 0}, []),                                 # nor a static member
    ({"rate": np.nan, "samples": 0}, []),                           # no measurement: no candidate
    ({"rate": np.nan, "samples": 1}, ["1 samples < 3"]),
    ({"rate": 4.0, "samples": 0}, ["0 samples < 3"]),
])
def test_a_refused_candidate_names_the_first_rule_it_fails_at_its_bound(
        spec: dict[str, object], expected: list[str]) -> None:
    assert refused(sites({"name": "S", **spec})) == [("S", why) for why in expected]


@pytest.mark.parametrize(("settings", "spec", "expected"), [
    ({"min_job_success_fraction": 0.9}, {"success": 0.85}, "job success 85% < 90%"),
    ({"min_samples": 6}, {}, "5 samples < 6"),
    ({"min_mbytes_per_s_from_tier1": 60.0}, {}, "throughput 50 MB/s < 60 MB/s"),
    ({"max_packet_loss_fraction": 0.001}, {"loss": 0.01}, "packet loss 0.01 > 0.001"),
])
def test_the_refusals_follow_the_threshold_settings(settings: dict[str, float],
                                                    spec: dict[str, object],
                                                    expected: str) -> None:
    assert refused(sites({"name": "S", **spec}), **settings) == [("S", expected)]


def test_a_refused_candidate_carries_its_numbers_and_home_cloud() -> None:
    inputs = sites({"name": "A", "rate": 4.0, "loss": 0.01, "samples": 4},
                   {"name": "B", "rate": np.nan, "samples": 1, "home": -1},
                   {"name": "D", "rate": 3.0, "home": 0})
    assert clouds.refused_candidates(inputs, CloudSettings(), 0) == [
        {"site": "A", "home": "X", "mbytes_per_s": 4.0, "samples": 4,
         "packet_loss_fraction": 0.01, "reason": "throughput 4 MB/s < 5 MB/s"},
        {"site": "B", "home": None, "mbytes_per_s": None, "samples": 1,
         "packet_loss_fraction": None, "reason": "1 samples < 3"}]
    # the same links measured from X's Tier-1: D (registered in C, index 0) is foreign
    # there and named with its home; A is X's own
    moved = MembershipInputs(inputs.clouds, inputs.sites, inputs.home, inputs.mbytes_per_s[::-1],
                             inputs.samples[::-1], inputs.packet_loss[::-1], inputs.site_fit,
                             inputs.members, inputs.stale, inputs.job_success)
    assert [(r["site"], r["home"]) for r in clouds.refused_candidates(
        moved, CloudSettings(), 1)] == [("D", "C"), ("B", None)]


def test_refused_candidates_are_listed_best_throughput_first_then_by_name() -> None:
    inputs = sites({"name": "low", "rate": 2.0}, {"name": "unknown", "rate": np.nan,
                                                   "samples": 1},
                   {"name": "b-high", "rate": 4.0}, {"name": "a-high", "rate": 4.0},
                   {"name": "zero", "rate": 0.0}, {"name": "half", "rate": 0.5})
    # 0 MB/s and unknown both sort last, by name
    assert [site for site, _ in refused(inputs)] == ["a-high", "b-high", "low", "half",
                                                     "unknown", "zero"]


def test_without_job_outcomes_no_site_is_refused_on_them() -> None:
    inputs = sites({"name": "S", "rate": 1.0})
    bare = MembershipInputs(inputs.clouds, inputs.sites, inputs.home, inputs.mbytes_per_s,
                            inputs.samples, inputs.packet_loss, inputs.site_fit,
                            inputs.members, inputs.stale)
    assert refused(bare) == [("S", "throughput 1 MB/s < 5 MB/s")]
    joined = MembershipInputs(bare.clouds, bare.sites, bare.home, bare.mbytes_per_s * 5,
                              bare.samples, bare.packet_loss, bare.site_fit, bare.members,
                              bare.stale)
    assert decided(joined) == [("joined", JOINED)]


# --- a cloud's page and the full-mesh ranking, on the mini grid --------------------------

def test_a_cloud_page_shows_its_members_the_join_that_admitted_each_and_the_refused(
        mini: Engine) -> None:
    fts(mini, "FZK", "MAN", 50.0, 4, T0)
    assert changes(mini, T0) == {("DE", "MAN", "joined", JOINED)}
    fts(mini, "FZK", "MAN", 2.5, 4, T0 + 7200)
    assert {c[2] for c in changes(mini, T0 + 7200)} == {"left"}
    fts(mini, "FZK", "MAN", 8.0, 4, T0 + 14400)
    fts(mini, "FZK", "CC", 4.0, 4, T0 + 14400)  # FR's Tier-1: foreign to DE, too slow
    assert changes(mini, T0 + 14400) == {("DE", "MAN", "joined", JOINED)}
    page = clouds.cloud_detail(mini, "DE", HOUR, now_s=T0 + 14400)
    assert (page["cloud"], page["tier1"]) == ("DE", "FZK")
    assert sorted(s["name"] for s in page["members"]) == ["DESY", "FZK", "LRZ"]
    (member,) = page["foreign"]
    assert (member["site"], member["home"]) == ("MAN", "UK")
    assert member["joined_at"].replace(tzinfo=UTC) <= datetime.now(UTC)  # stored at the join
    admitted = member["admitted_by"]  # the newest join (8 MB/s), not the first (50)
    assert (admitted["change"], admitted["mbytes_per_s"], admitted["samples"],
            admitted["reason"]) == ("joined", 8.0, 4, JOINED)
    assert [(r["site"], r["home"], r["reason"]) for r in page["refused"]] == [
        ("CC", "FR", "throughput 4 MB/s < 5 MB/s")]
    assert [(e["site"], e["change"], e["mbytes_per_s"]) for e in page["history"]] == [
        ("MAN", "joined", 8.0), ("MAN", "left", 2.5), ("MAN", "joined", 50.0)]
    # the refusals are judged under the settings given, at the time given
    lower = CloudSettings(window="1h", min_mbytes_per_s_from_tier1=3.5)
    assert clouds.cloud_detail(mini, "DE", lower, now_s=T0 + 14400)["refused"] == []
    assert clouds.cloud_detail(mini, "DE", HOUR, now_s=T0 + 4 * 7200)["refused"] == []
    # another cloud's page: MAN is not foreign there, and UK's own members are its sites
    uk = clouds.cloud_detail(mini, "UK", HOUR, now_s=T0 + 14400)
    assert (uk["tier1"], uk["foreign"], uk["refused"]) == ("RAL", [], [])
    assert sorted(s["name"] for s in uk["members"]) == ["MAN", "RAL"]
    assert [e["cloud"] for e in uk["history"]] == []


def test_an_unknown_cloud_has_no_page(mini: Engine) -> None:
    with pytest.raises(UnknownCloud) as raised:
        clouds.cloud_detail(mini, "XX", HOUR, now_s=T0)
    assert raised.value.name == "XX"


def test_a_cloud_page_reads_the_newest_500_events_and_shows_200(mini: Engine) -> None:
    """MAN's only join is older than 500 events: it is a member with no join shown."""
    with mini.begin() as conn:
        grid = GridDB(conn)
        de, man, lrz = grid.cloud_ids()["DE"], grid.site_ids()["MAN"], grid.site_ids()["LRZ"]
        event = {"cloud_id": de, "mbytes_per_s": 9.0, "packet_loss_fraction": None,
                 "samples": 4, "reason": "r"}
        CloudDB(conn).replace_members(
            [{"cloud_id": de, "site_id": man, "stale_cycles": 0}], AT,
            [{**event, "site_id": man, "change": "joined", "at": AT}]
            + [{**event, "site_id": lrz, "change": "left", "at": AT + timedelta(seconds=i)}
               for i in range(1, 501)])
    page = clouds.cloud_detail(mini, "DE", HOUR, now_s=T0)
    ((site, admitted),) = [(m["site"], m["admitted_by"]) for m in page["foreign"]]
    assert (site, admitted) == ("MAN", None)
    assert len(page["history"]) == 200
    assert page["history"][0]["at"].replace(tzinfo=UTC) == AT + timedelta(seconds=500)


def test_the_full_mesh_ranks_each_nucleus_sites_by_throughput_from_it(mini: Engine) -> None:
    fts(mini, "FZK", "MAN", 8.0, 4, T0)
    fts(mini, "FZK", "DESY", 50.0, 3, T0)
    fts(mini, "DESY", "MAN", 500.0, 4, T0)  # DESY is not a nucleus: not ranked
    # closeness = round(11 * log10(200 / v) / log10(200 / 0.5)): 50 -> 2.55 -> 3, 8 -> 5.91 -> 6
    expected = [
        {"nucleus": "FZK", "rank": 1, "site": "DESY", "cloud": "DE", "mbytes_per_s": 50.0,
         "closeness": 3, "samples": 3},
        {"nucleus": "FZK", "rank": 2, "site": "MAN", "cloud": "UK", "mbytes_per_s": 8.0,
         "closeness": 6, "samples": 4}]
    assert clouds.mesh_ranking(mini, HOUR, now_s=T0) == expected
    assert clouds.mesh_ranking(mini, HOUR, nucleus="FZK", now_s=T0) == expected
    assert clouds.mesh_ranking(mini, HOUR, now_s=T0 + 7200) == []  # out of the 1 h window
    # on a 100 .. 1 MB/s scale: 50 -> 11 * log10(2) / 2 = 1.66 -> 2, 8 -> 6.03 -> 6
    scale = MetricsSettings(closeness_best_mbytes_per_s=100.0, closeness_worst_mbytes_per_s=1.0)
    assert [r["closeness"] for r in clouds.mesh_ranking(mini, HOUR, scale, now_s=T0)] == [2, 6]


def test_a_nucleus_is_not_ranked_against_itself(mini: Engine) -> None:
    report = ingest(mini, "fts", fts_transfers("FZK_DATADISK", "FZK_TAPE", 80.0, 4, T0 - 120,
                                               "self"), now_s=T0)
    assert report.stored == 8, report
    fts(mini, "FZK", "MAN", 8.0, 4, T0)
    assert [r["site"] for r in clouds.mesh_ranking(mini, HOUR, now_s=T0)] == ["MAN"]
    fts(mini, "FZK", "DESY", 4.0, 4, T0)  # slower than MAN: after it, whatever the ids
    assert [r["site"] for r in clouds.mesh_ranking(mini, HOUR, now_s=T0)] == ["MAN", "DESY"]


@pytest.mark.parametrize("nucleus", ["DESY", "NOWHERE"])
def test_the_mesh_of_a_site_that_is_no_nucleus_is_refused(mini: Engine, nucleus: str) -> None:
    with pytest.raises(UnknownSite) as raised:
        clouds.mesh_ranking(mini, HOUR, nucleus=nucleus, now_s=T0)
    assert raised.value.name == nucleus


# --- the pure decision: what a member's links decide when they are too few ---------------

SLOW = "throughput below 4 MB/s (threshold less the leave margin)"
STALE = "no measurement for 3 cycles"


@pytest.mark.parametrize(("inputs", "expected", "stale"), [
    (one_site(rate=1.0), [], 0),                           # not a member: nothing leaves
    (one_site(packet_loss=0.5), [], 0),
    (one_site(rate=50.0, member=True), [], 0),             # a member does not join again
    # under min_samples a member's link is no measurement: it neither leaves on it ...
    (one_site(member=True, rate=1.0, samples=2), [], 1),
    (one_site(member=True, packet_loss=0.5, samples=2), [], 1),
    # ... nor is a throughput of NaN over enough samples one: it counts a stale cycle
    (one_site(member=True, rate=np.nan, samples=5, stale=1), [], 2),
    (one_site(member=True, rate=np.nan, samples=5, stale=2), [("left", STALE)], 0),
    (one_site(member=True, rate=3.999, samples=3), [("left", SLOW)], 0),
])
def test_a_member_is_judged_only_on_a_link_measured_enough(
        inputs: MembershipInputs, expected: list[tuple[str, str]], stale: int) -> None:
    result = decide_membership(inputs, CloudSettings())
    assert [(c.change, c.reason) for c in result.changes] == expected
    assert result.stale.tolist() == [[stale], [0]]


@pytest.mark.parametrize(("inputs", "expected"), [
    (one_site(member=True, home=0, fit=False, rate=1.0), "now registered in this cloud"),
    (one_site(member=True, fit=False, success=0.1, rate=np.nan, samples=0, stale=2),
     "site offline or without an online queue"),
    (one_site(member=True, success=0.1, rate=np.nan, samples=0, stale=2),
     "site's job success below 0.8"),
    (one_site(member=True, rate=1.0, packet_loss=0.5), "packet loss above 0.02"),
])
def test_a_member_leaving_for_several_rules_is_given_the_first(inputs: MembershipInputs,
                                                               expected: str) -> None:
    assert decided(inputs) == [("left", expected)]


def test_a_change_carries_the_measurements_that_decided_it() -> None:
    (change,) = decide_membership(one_site(member=True, rate=3.5, samples=4, packet_loss=0.01),
                                  CloudSettings()).changes
    assert (change.cloud, change.site, change.change, change.mbytes_per_s,
            change.packet_loss_fraction, change.samples) == ("C", "S", "left", 3.5, 0.01, 4)
    (unknown,) = decide_membership(one_site(member=True, rate=np.nan, samples=0, stale=2),
                                   CloudSettings()).changes
    assert (unknown.mbytes_per_s, unknown.packet_loss_fraction, unknown.samples) == (
        None, None, 0)


def test_a_site_judged_on_a_single_failed_job_does_not_join(mini: Engine) -> None:
    outcomes(mini, 0, 1, AT - timedelta(hours=1))  # 0 of 1 succeeded
    fts(mini, "FZK", "MAN", 50.0, 4, T0)
    inputs = clouds.gather_inputs(mini, HOUR, now_s=T0)
    assert inputs.job_success is not None
    assert inputs.job_success[inputs.sites.index("MAN")] == 0.0
    assert changes(mini, T0) == set()


def test_the_stored_history_has_the_change_with_its_measurements(mini: Engine) -> None:
    fts(mini, "FZK", "MAN", 50.0, 4, T0)
    loss(mini, "FZK", "MAN", 0.01, 4, T0)
    assert changes(mini, T0) == {("DE", "MAN", "joined", JOINED)}
    (row,) = clouds.history(mini, site="MAN")
    assert (row["cloud"], row["change"], row["mbytes_per_s"], row["packet_loss_fraction"],
            row["samples"], row["reason"]) == ("DE", "joined", 50.0, 0.01, 4, JOINED)
    assert row["at"] is not None
    # previewing the leave stores nothing
    fts(mini, "FZK", "MAN", 1.0, 4, T0 + 7200)
    (left,) = clouds.preview(mini, HOUR, now_s=T0 + 7200)
    assert (left.change, left.reason, left.mbytes_per_s) == ("left", SLOW, 1.0)
    assert len(clouds.history(mini, site="MAN")) == 1


def test_a_site_that_would_join_is_passed_over_not_the_end_of_the_list() -> None:
    inputs = sites({"name": "A"}, {"name": "B", "rate": 1.0})
    assert refused(inputs) == [("B", "throughput 1 MB/s < 5 MB/s")]


def test_an_empty_grid_has_no_membership_to_decide(engine: Engine) -> None:
    assert clouds.recompute(engine, HOUR, now_s=T0) == []


def test_without_a_time_the_window_ends_now(mini: Engine) -> None:
    fts(mini, "FZK", "MAN", 50.0, 4, T0)  # days before the wall clock: outside its hour
    assert clouds.preview(mini, HOUR) == []
    assert clouds.preview(mini, HOUR, now_s=T0)[0].change == "joined"


# --- the metrics settings given, and a cloud that has lost its Tier-1 --------------------

FIVE_SAMPLES = MetricsSettings(min_samples=5)  # a source needs 5 samples in the window


def test_the_metrics_settings_given_decide_which_links_are_measured(mini: Engine) -> None:
    """4 transfers FZK -> MAN (50 MB/s) and FZK -> CC (4 MB/s): a measurement under the
    default (2 samples a source), none where a source needs 5."""
    fts(mini, "FZK", "MAN", 50.0, 4, T0)
    fts(mini, "FZK", "CC", 4.0, 4, T0)
    assert clouds.preview(mini, HOUR, FIVE_SAMPLES, now_s=T0) == []
    assert clouds.cloud_detail(mini, "DE", HOUR, FIVE_SAMPLES, now_s=T0)["refused"] == []
    assert clouds.mesh_ranking(mini, HOUR, FIVE_SAMPLES, now_s=T0) == []
    assert clouds.recompute(mini, HOUR, FIVE_SAMPLES, now_s=T0) == []
    assert clouds.history(mini) == []
    # the same links under the default settings
    assert [(r["site"], r["reason"]) for r in clouds.cloud_detail(
        mini, "DE", HOUR, now_s=T0)["refused"]] == [("CC", "throughput 4 MB/s < 5 MB/s")]
    assert [(r["site"], r["samples"]) for r in clouds.mesh_ranking(mini, HOUR, now_s=T0)] == [
        ("MAN", 4), ("CC", 4)]
    assert changes(mini, T0) == {("DE", "MAN", "joined", JOINED)}


def lose_tier1(engine: Engine, cloud: str) -> None:
    """The cloud's Tier-1 link gone (what deleting the Tier-1 site leaves: SET NULL)."""
    with engine.begin() as conn:
        conn.execute(sa.update(clouds_table).where(clouds_table.c.name == cloud)
                     .values(tier1_site_id=None))


def test_a_cloud_without_a_tier1_decides_no_membership(mini: Engine) -> None:
    """FR has lost its Tier-1: it is no row of the decision, and its site CC, at home
    nowhere, is foreign to DE and may join it."""
    lose_tier1(mini, "FR")
    fts(mini, "FZK", "CC", 50.0, 4, T0)
    inputs = clouds.gather_inputs(mini, HOUR, now_s=T0)
    assert inputs.clouds == ["DE", "UK"]
    assert inputs.home[inputs.sites.index("CC")] == -1
    page = clouds.cloud_detail(mini, "FR", HOUR, now_s=T0)
    assert (page["tier1"], page["foreign"], page["refused"]) == (None, [], [])
    assert [s["name"] for s in page["members"]] == ["CC"]
    assert changes(mini, T0) == {("DE", "CC", "joined", JOINED)}


def test_a_member_of_a_cloud_without_a_tier1_is_no_member_of_the_others(
        mini: Engine) -> None:
    """MAN joined FR while FR had a Tier-1; FR lost it: nothing measures MAN from FR,
    and MAN is not made a member of DE or of its own UK either."""
    with mini.begin() as conn:
        grid = GridDB(conn)
        CloudDB(conn).replace_members([{"cloud_id": grid.cloud_ids()["FR"],
                                        "site_id": grid.site_ids()["MAN"],
                                        "stale_cycles": 0}], AT, [])
    lose_tier1(mini, "FR")
    inputs = clouds.gather_inputs(mini, HOUR, now_s=T0)
    assert inputs.clouds == ["DE", "UK"] and not inputs.members.any()
    assert clouds.preview(mini, HOUR, now_s=T0) == []

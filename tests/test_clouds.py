"""Dynamic cloud membership: joins, hysteresis, staleness, preview, history, the mesh."""

from __future__ import annotations

import json

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from collectors.ingest import ingest
from netbroker.clouds import membership as clouds
from netbroker.clouds.membership import MembershipInputs, decide_membership
from netbroker.common.config import CloudSettings
from netbroker.common.enums import JobStatus, utcnow
from netbroker.db.grid import GridDB
from netbroker.db.jobs import JobDB
from netbroker.db.schema import metadata, queues
from netbroker.registry import registry
from tests.factories import fts_transfers

T0 = 1795514400.0  # 2026-11-24T10:00:00Z
HOUR = CloudSettings(window="1h")  # each phase of a test lives in its own hour
FZK = "FZK-LCG2_DATADISK"  # the DE cloud's Tier-1
MAN = "UKI-NORTHGRID-MAN-HEP_DATADISK"  # a UK Tier-2, foreign to DE
DESY = "DESY-HH_DATADISK"  # a DE Tier-2, a static member


def feed(engine: Engine, dst: str, mbytes_per_s: float, n: int, at: float) -> None:
    report = ingest(engine, "fts", fts_transfers(FZK, dst, mbytes_per_s, n, at - 120, str(at)),
                    now_s=at)
    assert report.stored == 2 * n


def changes_of(changes: list[clouds.MembershipChange]) -> set[tuple[str, str, str]]:
    return {(c.cloud, c.site, c.change) for c in changes}


def snapshot(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    with engine.connect() as conn:
        return {name: sorted(map(tuple, conn.execute(sa.select(t))), key=repr)
                for name, t in metadata.tables.items()}


def test_foreign_site_joins_cloud_above_threshold(grid_engine: Engine) -> None:
    feed(grid_engine, MAN, 8.0, 4, T0)
    feed(grid_engine, DESY, 50.0, 4, T0)
    feed(grid_engine, "CA-SFU-T2_DATADISK", 4.0, 4, T0)  # below 5 MB/s
    feed(grid_engine, "IFIC-LCG2_DATADISK", 9.0, 2, T0)  # too few samples (3 needed)
    changes = clouds.recompute(grid_engine, HOUR, now_s=T0)
    assert changes_of(changes) == {("DE", "UKI-NORTHGRID-MAN-HEP", "joined")}
    (joined,) = changes
    assert joined.mbytes_per_s == pytest.approx(8.0, rel=1e-4) and joined.samples == 4
    de = next(c for c in clouds.show_membership(grid_engine) if c["cloud"] == "DE")
    assert [m["site"] for m in de["foreign"]] == ["UKI-NORTHGRID-MAN-HEP"]
    assert "DESY-HH" in de["static"]
    (row,) = clouds.history(grid_engine, cloud="DE")
    assert (row["site"], row["change"], row["samples"]) == ("UKI-NORTHGRID-MAN-HEP", "joined", 4)


def test_member_leaves_only_below_the_hysteresis_margin(grid_engine: Engine) -> None:
    feed(grid_engine, MAN, 8.0, 4, T0)
    assert clouds.recompute(grid_engine, HOUR, now_s=T0)
    feed(grid_engine, MAN, 4.5, 4, T0 + 7200)  # under 5, above 5 * (1 - 0.2) = 4
    assert clouds.recompute(grid_engine, HOUR, now_s=T0 + 7200) == []
    feed(grid_engine, MAN, 3.0, 4, T0 + 14400)
    (left,) = clouds.recompute(grid_engine, HOUR, now_s=T0 + 14400)
    assert (left.site, left.change) == ("UKI-NORTHGRID-MAN-HEP", "left")
    assert left.mbytes_per_s == pytest.approx(3.0, rel=1e-4) and "below 4 MB/s" in left.reason
    assert [h["change"] for h in clouds.history(grid_engine, site="UKI-NORTHGRID-MAN-HEP")] \
        == ["left", "joined"]


def test_member_without_measurements_leaves_after_stale_cycles(grid_engine: Engine) -> None:
    feed(grid_engine, MAN, 8.0, 4, T0)
    clouds.recompute(grid_engine, HOUR, now_s=T0)
    assert clouds.recompute(grid_engine, HOUR, now_s=T0 + 7200) == []
    assert clouds.recompute(grid_engine, HOUR, now_s=T0 + 10800) == []
    (left,) = clouds.recompute(grid_engine, HOUR, now_s=T0 + 14400)
    assert left.change == "left" and left.reason == "no measurement for 3 cycles"


def test_member_whose_site_goes_offline_leaves(grid_engine: Engine) -> None:
    feed(grid_engine, MAN, 8.0, 4, T0)
    clouds.recompute(grid_engine, HOUR, now_s=T0)
    registry.import_grid_document(
        grid_engine, '{"site": {"UKI-NORTHGRID-MAN-HEP": {"cloud": "UK", "tier_level": 2, '
                     '"country": "United Kingdom", "status": "offline"}}}')
    (left,) = clouds.recompute(grid_engine, HOUR, now_s=T0 + 60)
    assert left.reason == "site offline or without an online queue"


def test_preview_changes_nothing_and_agrees_with_the_recompute(grid_engine: Engine) -> None:
    feed(grid_engine, MAN, 8.0, 4, T0)
    feed(grid_engine, "CA-SFU-T2_DATADISK", 4.0, 4, T0)
    lower = CloudSettings(window="1h", min_mbytes_per_s_from_tier1=3.5)
    before = snapshot(grid_engine)
    previewed = clouds.preview(grid_engine, lower, now_s=T0)
    assert snapshot(grid_engine) == before
    assert changes_of(previewed) == {("DE", "UKI-NORTHGRID-MAN-HEP", "joined"),
                                     ("DE", "CA-SFU-T2", "joined")}
    assert changes_of(clouds.recompute(grid_engine, lower, now_s=T0)) == changes_of(previewed)


def test_full_mesh_ranks_sites_by_network_closeness(grid_engine: Engine) -> None:
    feed(grid_engine, MAN, 8.0, 4, T0)
    feed(grid_engine, DESY, 50.0, 4, T0)
    ranking = clouds.mesh_ranking(grid_engine, HOUR, nucleus="FZK-LCG2", now_s=T0)
    assert [(r["site"], r["rank"]) for r in ranking] == [("DESY-HH", 1),
                                                         ("UKI-NORTHGRID-MAN-HEP", 2)]
    assert ranking[0]["closeness"] < ranking[1]["closeness"]


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_membership_is_monotone_in_the_threshold(data: st.DataObject) -> None:
    """Lowering the join threshold never removes a join."""
    c, n = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 12))
    floats = st.floats(0, 100, allow_nan=False) | st.just(float("nan"))
    rate = np.array(data.draw(st.lists(floats, min_size=c * n, max_size=c * n))).reshape(c, n)
    count = np.array(data.draw(st.lists(st.integers(0, 6), min_size=c * n,
                                        max_size=c * n))).reshape(c, n)
    home = np.array(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    fit = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    low, high = sorted(data.draw(st.lists(st.floats(0.1, 100), min_size=2, max_size=2)))
    empty = np.zeros((c, n), bool)
    inputs = MembershipInputs([f"C{k}" for k in range(c)], [f"S{i}" for i in range(n)], home,
                              rate, count, np.full((c, n), np.nan), fit, empty,
                              np.zeros((c, n), int))
    at_low = decide_membership(inputs, CloudSettings(min_mbytes_per_s_from_tier1=low)).members
    at_high = decide_membership(inputs, CloudSettings(min_mbytes_per_s_from_tier1=high)).members
    assert not (at_high & ~at_low).any()
    assert not (at_low & (home[np.newaxis, :] == np.arange(c)[:, np.newaxis])).any()


def test_membership_over_http_and_the_command_line(grid_engine: Engine, db_url: str) -> None:
    import httpx

    from tests.conftest import LiveServer
    from tests.test_cli import netbroker

    feed(grid_engine, MAN, 8.0, 4, T0)
    clouds.recompute(grid_engine, HOUR, now_s=T0)
    with LiveServer(grid_engine) as server, httpx.Client(base_url=server.url) as client:
        members = client.get("/api/v1/clouds/DE/members").raise_for_status().json()
        assert [m["site"] for m in members["foreign"]] == ["UKI-NORTHGRID-MAN-HEP"]
        (event,) = client.get("/api/v1/clouds/DE/history").json()
        assert event["change"] == "joined" and event["samples"] == 4
        assert client.get("/api/v1/clouds/XX/members").status_code == 404
    shown = json.loads(netbroker("clouds", "show", "--json", url=db_url).stdout)
    assert {"site": "UKI-NORTHGRID-MAN-HEP"}.items() <= next(
        c for c in shown if c["cloud"] == "DE")["foreign"][0].items()
    # preview against today's clock: the test's measurements are days old, so the
    # member has no data (a stale cycle, not yet a leave) and nothing is written
    before = snapshot(grid_engine)
    preview = netbroker("clouds", "preview", "--set", "window=1h", "--json", url=db_url)
    assert json.loads(preview.stdout) == []
    assert snapshot(grid_engine) == before
    bad = netbroker("clouds", "preview", "--set", "min_mbytes_per_s_from_tier1=-1", url=db_url)
    assert bad.returncode == 2 and "greater than 0" in bad.stderr


def test_a_site_whose_jobs_fail_does_not_join_until_they_succeed(grid_engine: Engine) -> None:
    def outcomes(finished: int, failed: int) -> None:
        with grid_engine.begin() as conn:
            grid = GridDB(conn)
            (queue, *_) = grid.list_queues(site="UKI-NORTHGRID-MAN-HEP")
            queue_id = grid.ids(queues)[queue["name"]]
            JobDB(conn).add_jobs([{
                "name": f"j{i}", "status": status, "queue_id": queue_id,
                "prod_source_label": "managed", "priority": 1, "cores": 1, "min_ram_mb": 0,
                "max_disk_mb": 0, "max_walltime_s": 60, "transformation": "x"}
                for i, status in enumerate([JobStatus.FINISHED] * finished
                                           + [JobStatus.FAILED] * failed)], utcnow())

    outcomes(finished=5, failed=5)  # 50% success, 80% needed
    feed(grid_engine, MAN, 8.0, 4, T0)
    inputs = clouds.gather_inputs(grid_engine, HOUR, now_s=T0)
    assert inputs.job_success is not None
    assert inputs.job_success[inputs.sites.index("UKI-NORTHGRID-MAN-HEP")] == 0.5
    assert clouds.recompute(grid_engine, HOUR, now_s=T0) == []
    outcomes(finished=40, failed=0)  # 45 of 50: 90%
    (joined,) = clouds.recompute(grid_engine, HOUR, now_s=T0 + 60)
    assert (joined.site, joined.change) == ("UKI-NORTHGRID-MAN-HEP", "joined")
    outcomes(finished=0, failed=100)  # 45 of 150: it leaves, with that reason
    (left,) = clouds.recompute(grid_engine, HOUR, now_s=T0 + 120)
    assert left.change == "left" and left.reason == "site's job success below 0.8"


def test_members_are_stored_as_decided_keeping_when_each_joined(grid_engine: Engine) -> None:
    from datetime import timedelta

    from netbroker.db.clouds import CloudDB

    with grid_engine.connect() as conn:
        grid = GridDB(conn)
        cloud = next(iter(grid.cloud_ids().values()))
        a, b, c = sorted(grid.site_ids().values())[:3]
    then, now = utcnow() - timedelta(hours=5), utcnow()

    def replace(members: dict[int, int], at: object) -> None:
        with grid_engine.begin() as conn:
            CloudDB(conn).replace_members(
                [{"cloud_id": cloud, "site_id": s, "stale_cycles": n}
                 for s, n in members.items()], at, [])  # type: ignore[arg-type]

    def stored() -> dict[int, tuple[int, object]]:
        t = metadata.tables["cloud_members"]
        with grid_engine.connect() as conn:
            return {s: (n, j) for s, n, j in conn.execute(
                sa.select(t.c.site_id, t.c.stale_cycles, t.c.joined_at))}

    replace({a: 0, b: 0}, then)
    replace({b: 2, c: 0}, now)  # a leaves, b turns stale, c joins
    got = stored()
    assert set(got) == {b, c}
    assert got[b][0] == 2 and abs((got[b][1] - then).total_seconds()) < 1e-3  # type: ignore[operator]
    assert got[c][0] == 0 and abs((got[c][1] - now).total_seconds()) < 1e-3  # type: ignore[operator]
    replace({b: 2, c: 0}, utcnow())  # the same again: nothing changes
    assert stored() == got

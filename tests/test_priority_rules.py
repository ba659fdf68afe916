"""Every documented priority rule in the periodic pass (``priority.recompute``), both backends.

``priority = base + boosts + aging - failures - fair share``: the fair-share
penalty is ``fairshare_penalty * (usage / user_cpu_hours_per_day - 1)`` when
the user's CPU-hours reported by jobs that changed in the last 24 h exceed
the share, at most ``fairshare_max_penalty``. Defaults: share 1,000
CPU-hours, 100 per 100% above, at most 500. Aging is off here unless a test
is about it, so each number below is worked out by hand from one rule.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from netbroker.common.config import PrioritySettings
from netbroker.common.enums import JobStatus, utcnow
from netbroker.db.grid import GridDB
from netbroker.db.jobs import JobDB
from netbroker.db.priority import PriorityDB
from netbroker.db.schema import jobs, priority_boosts, queues
from netbroker.registry import registry
from netbroker.workload import priority
from tests.factories import mini_grid

NO_AGING = PrioritySettings(aging_per_hour=0)
NOW = utcnow().replace(microsecond=0)


@pytest.fixture
def mini(engine: Engine) -> Engine:
    registry.import_grid_document(engine, mini_grid())
    return engine


def add(engine: Engine, user: str = "alice", status: JobStatus = JobStatus.ACTIVATED,
        at: datetime = NOW, queue: str = "DESY_UCORE", base: int = 1000,
        **over: object) -> int:
    with engine.begin() as conn:
        queue_id = GridDB(conn).ids(queues)[queue]
        (job_id,) = JobDB(conn).add_jobs([{
            "name": f"{user}-{at.timestamp()}-{status}-{over}", "status": status,
            "queue_id": queue_id, "prod_source_label": "managed", "priority": base,
            "cores": 1, "min_ram_mb": 1000, "max_disk_mb": 1000, "max_walltime_s": 3600,
            "transformation": "run.sh", "user_name": user, **over}], at)
    return job_id


def used(engine: Engine, user: str, cpu_hours: float, at: datetime = NOW) -> None:
    """A job of ``user`` that reported ``cpu_hours`` and last changed at ``at``."""
    add(engine, user, JobStatus.FINISHED, at, cpu_time_s=int(cpu_hours * 3600))


def priority_of(engine: Engine, job_id: int) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(jobs.c.priority).where(jobs.c.id == job_id))
                   .scalar_one())


@pytest.mark.parametrize(("cpu_hours", "expected"), [
    (1000.0, 1000),   # at the share: no penalty
    (1100.0, 990),    # 10% above: 100 * 0.1
    (2000.0, 900),    # 100% above
    (4000.0, 700),
    (100_000.0, 500),  # capped at 500
])
def test_the_periodic_pass_applies_the_fair_share_penalty(mini: Engine, cpu_hours: float,
                                                          expected: int) -> None:
    waiting = add(mini, "heavy")
    used(mini, "heavy", cpu_hours)
    priority.recompute(mini, NO_AGING, now=NOW)
    assert priority_of(mini, waiting) == expected


def test_only_the_users_own_usage_counts(mini: Engine) -> None:
    light, heavy = add(mini, "light"), add(mini, "heavy")
    used(mini, "heavy", 3000.0)
    used(mini, "light", 500.0)
    priority.recompute(mini, NO_AGING, now=NOW)
    assert (priority_of(mini, light), priority_of(mini, heavy)) == (1000, 800)


@pytest.mark.parametrize(("ago", "expected"), [
    (timedelta(hours=24), 900),                 # the window's first instant counts
    (timedelta(hours=24, seconds=1), 1000),     # a second before it does not
    (timedelta(hours=1), 900),
])
def test_usage_counts_over_the_last_24_hours_only(mini: Engine, ago: timedelta,
                                                  expected: int) -> None:
    waiting = add(mini, "heavy")
    used(mini, "heavy", 2000.0, at=NOW - ago)
    priority.recompute(mini, NO_AGING, now=NOW)
    assert priority_of(mini, waiting) == expected


@pytest.mark.parametrize(("settings", "expected"), [
    ({"user_cpu_hours_per_day": 500.0}, 700),        # 2,000 is 300% above 500: 300
    ({"fairshare_penalty": 300}, 700),               # 100% above: 300
    ({"fairshare_max_penalty": 50}, 950),
])
def test_the_fair_share_settings_move_the_penalty(mini: Engine, settings: dict[str, float],
                                                  expected: int) -> None:
    waiting = add(mini, "heavy")
    used(mini, "heavy", 2000.0)
    priority.recompute(mini, PrioritySettings(aging_per_hour=0, **settings), now=NOW)
    assert priority_of(mini, waiting) == expected


def test_a_boost_with_no_place_applies_everywhere(mini: Engine) -> None:
    desy, man = add(mini, queue="DESY_UCORE"), add(mini, queue="MAN_UCORE")
    bob = add(mini, "bob", queue="MAN_UCORE")
    priority.add_boost(mini, 200, hours=1, user="alice")
    priority.recompute(mini, NO_AGING)
    assert [priority_of(mini, j) for j in (desy, man, bob)] == [1200, 1200, 1000]


def test_boosts_add_up_and_a_group_boost_needs_the_group(mini: Engine) -> None:
    top = add(mini, working_group="AP_TOP")
    other = add(mini, working_group="AP_SUSY")
    priority.add_boost(mini, 200, hours=1, user="alice")
    priority.add_boost(mini, 30, hours=1, group="AP_TOP", cloud="DE")
    priority.recompute(mini, NO_AGING)
    assert (priority_of(mini, top), priority_of(mini, other)) == (1230, 1200)


def test_a_boost_ends_at_its_expiry(mini: Engine) -> None:
    job = add(mini)
    priority.add_boost(mini, 200, hours=1, user="alice")
    with mini.connect() as conn:
        expires = conn.execute(sa.select(priority_boosts.c.expires_at)).scalar_one()
    priority.recompute(mini, NO_AGING, now=expires - timedelta(seconds=1))
    assert priority_of(mini, job) == 1200
    priority.recompute(mini, NO_AGING, now=expires)
    assert priority_of(mini, job) == 1000


@pytest.mark.parametrize(("hours", "expected"), [(2.5, 1025), (29.0, 1290), (31.0, 1300)])
def test_aging_adds_per_hour_waited_up_to_the_cap(mini: Engine, hours: float,
                                                  expected: int) -> None:
    job = add(mini, waiting_since=NOW - timedelta(hours=hours))
    priority.recompute(mini, PrioritySettings(), now=NOW)
    assert priority_of(mini, job) == expected


def test_each_failed_attempt_costs_the_failure_penalty(mini: Engine) -> None:
    first, fourth = add(mini, attempt_nr=1), add(mini, attempt_nr=4)
    priority.recompute(mini, PrioritySettings(aging_per_hour=0, failure_penalty=70), now=NOW)
    assert (priority_of(mini, first), priority_of(mini, fourth)) == (1000, 1000 - 3 * 70)


def test_a_user_just_over_the_share_loses_one_point(mini: Engine) -> None:
    """1% above the share is a penalty of exactly 1: the boundary of the users whose
    jobs the pass computes with their fair share (penalty > 0)."""
    waiting = add(mini, "heavy")
    used(mini, "heavy", 1010.0)
    priority.recompute(mini, NO_AGING, now=NOW)
    assert priority_of(mini, waiting) == 999


def test_a_boost_naming_a_user_and_a_group_matches_either(mini: Engine) -> None:
    alice, bob_top, bob = (add(mini), add(mini, "bob", working_group="AP_TOP"),
                           add(mini, "bob"))
    priority.add_boost(mini, 40, hours=1, user="alice", group="AP_TOP")
    priority.recompute(mini, NO_AGING, now=NOW)
    assert [priority_of(mini, j) for j in (alice, bob_top, bob)] == [1040, 1040, 1000]


def test_a_boosted_users_job_still_ages_and_has_no_penalty_without_usage(
        mini: Engine) -> None:
    """The jobs of a boosted user are computed outside the database: an hour waited
    is 10 points there too, and a user with no CPU reported has no fair-share
    penalty even when the share is tiny."""
    job = add(mini, waiting_since=NOW - timedelta(hours=1))
    priority.add_boost(mini, 200, hours=2, user="alice")
    priority.recompute(mini, PrioritySettings(user_cpu_hours_per_day=0.5), now=NOW)
    assert priority_of(mini, job) == 1000 + 200 + 10


def test_a_job_without_a_queue_gets_no_boost_bound_to_a_place(mini: Engine) -> None:
    with mini.begin() as conn:
        grid = GridDB(conn)
        sites, clouds = grid.site_ids(), grid.cloud_ids()
        queue_id = grid.ids(queues)["DESY_UCORE"]
        (nowhere,) = JobDB(conn).add_jobs([{
            "name": "no-queue", "status": JobStatus.DEFINED, "queue_id": None,
            "prod_source_label": "managed", "priority": 1000, "cores": 1, "min_ram_mb": 1000,
            "max_disk_mb": 1000, "max_walltime_s": 3600, "transformation": "run.sh",
            "user_name": "alice"}], NOW)
    assert queue_id and min(sites.values()) == 1 and min(clouds.values()) == 1
    for site in sites:  # a boost at every site and in every cloud, none unbound
        priority.add_boost(mini, 100, hours=1, user="alice", site=site)
    for cloud in clouds:
        priority.add_boost(mini, 1000, hours=1, user="alice", cloud=cloud)
    priority.recompute(mini, NO_AGING, now=NOW)
    assert priority_of(mini, nowhere) == 1000


def test_new_jobs_start_with_the_boosts_of_their_group_site_and_cloud(mini: Engine) -> None:
    from netbroker.common.config import Settings
    from netbroker.workload import tasks
    from tests.factories import task_spec

    priority.add_boost(mini, 30, hours=1, group="AP_TOP")
    priority.add_boost(mini, 200, hours=1, user="alice", site="DESY")
    priority.add_boost(mini, 5, hours=1, user="alice", cloud="DE")
    priority.add_boost(mini, 1000, hours=1, user="alice", site="MAN")
    priority.add_boost(mini, 2000, hours=1, user="alice", cloud="UK")
    tasks.submit(mini, tasks.parse_task(task_spec(priority=1000, working_group="AP_TOP")),
                 Settings())
    with mini.connect() as conn:
        site_of = {q["name"]: q["site"] for q in GridDB(conn).list_queues()}
        names = dict(conn.execute(sa.select(queues.c.id, queues.c.name)).all())
        rows = conn.execute(sa.select(jobs.c.queue_id, jobs.c.priority)).all()
    assert rows and any(site_of[names[q]] == "DESY" for q, _ in rows)
    for queue_id, value in rows:  # DE's sites only: the task's data is at DESY
        assert value == 1000 + 30 + 5 + (200 if site_of[names[queue_id]] == "DESY" else 0)


def test_a_boost_rule_is_refused_naming_what_is_wrong(mini: Engine) -> None:
    from netbroker.common.errors import InvalidBoost, UnknownCloud, UnknownSite

    with pytest.raises(InvalidBoost, match=r"^a boost needs a user or a working group$"):
        priority.add_boost(mini, 10, hours=1)
    with pytest.raises(InvalidBoost, match=r"^a boost applies at a site or in a cloud, "
                                           r"not both$"):
        priority.add_boost(mini, 10, hours=1, user="a", site="DESY", cloud="DE")
    with pytest.raises(InvalidBoost, match=r"^hours = 0: a boost must last a positive time$"):
        priority.add_boost(mini, 10, hours=0, user="a")
    with pytest.raises(UnknownSite, match="NOWHERE"):
        priority.add_boost(mini, 10, hours=1, user="a", site="NOWHERE")
    with pytest.raises(UnknownCloud, match="NOWHERE"):
        priority.add_boost(mini, 10, hours=1, user="a", cloud="NOWHERE")
    assert priority.list_boosts(mini) == []


def test_a_boost_keeps_who_made_it_and_why(mini: Engine) -> None:
    priority.add_boost(mini, 10, hours=1, user="a", created_by="ops", comment="release")
    priority.add_boost(mini, 10, hours=1, user="b")
    made = {b["user_name"]: (b["created_by"], b["comment"]) for b in priority.list_boosts(mini)}
    assert made == {"a": ("ops", "release"), "b": ("", "")}


def test_priorities_are_integers() -> None:
    """The priority column is an integer: PostgreSQL's COPY refuses ``1000.0``."""
    import numpy as np

    context = priority.PriorityContext([], {})
    computed = priority.compute_priorities(np.array([1000]), np.array([0]), np.array([1.5]),
                                           np.array([1]), np.array([0.0]), PrioritySettings())
    new = priority.priorities_for_new_jobs(
        context, np.array([1000]), np.array(["alice"], dtype=object),
        np.array([""], dtype=object), np.array([7]), {7: (1, 1)}, PrioritySettings())
    assert computed.dtype == new.dtype == np.int64
    assert computed.tolist() == [1015] and new.tolist() == [1000]


def test_a_boost_for_a_user_with_no_job_changes_nothing(mini: Engine) -> None:
    """A boost whose user has no job at all: the pass reads no job of hers and sets
    nothing (bob's job has its own priority already)."""
    bob = add(mini, "bob")
    priority.add_boost(mini, 200, hours=1, user="alice")
    assert priority.recompute(mini, NO_AGING, now=NOW) == 0
    assert priority_of(mini, bob) == 1000


def test_the_pass_sets_each_changed_job_once_and_counts_it(mini: Engine) -> None:
    """alice's job is boosted (+200, computed here), bob's has waited 2 h (+20, found
    in the database), carol's is unchanged: two jobs set, each once."""
    boosted = add(mini, "alice")
    aged = add(mini, "bob", waiting_since=NOW - timedelta(hours=2))
    same = add(mini, "carol")
    priority.add_boost(mini, 200, hours=1, user="alice")
    assert priority.recompute(mini, PrioritySettings(), now=NOW) == 2
    assert [priority_of(mini, j) for j in (boosted, aged, same)] == [1200, 1020, 1000]


def test_an_empty_batch_sets_no_priority(mini: Engine) -> None:
    job = add(mini)
    with mini.begin() as conn:
        assert PriorityDB(conn).set_priorities([], []) == 0
    assert priority_of(mini, job) == 1000


def test_a_users_cpu_hours_are_the_seconds_their_jobs_reported_over_3600(mini: Engine) -> None:
    used(mini, "heavy", 2000.0)   # 7,200,000 s
    used(mini, "heavy", 0.5)      # 1,800 s
    with mini.connect() as conn:
        assert PriorityDB(conn).cpu_hours_by_user(NOW - timedelta(hours=24)) == {
            "heavy": 2000.5}


def test_boosts_are_listed_newest_first_with_their_site_and_cloud_names(mini: Engine) -> None:
    priority.add_boost(mini, 10, hours=1, user="a", site="DESY")
    priority.add_boost(mini, 20, hours=1, user="b", cloud="UK")
    assert [(b["user_name"], b["value"], b["site"], b["cloud"])
            for b in priority.list_boosts(mini)] == [("b", 20, None, "UK"),
                                                     ("a", 10, "DESY", None)]

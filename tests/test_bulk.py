"""netbroker.db.bulk: rows written in bulk are stored as ``Connection.execute`` stores them.

PostgreSQL's rows go through COPY, whose text format has its own escapes
(tab, newline, backslash), so the texts here hold each of them; SQLite's
through the driver's executemany with the column types' own processing
(datetimes as SQLAlchemy stores them, so that comparisons in SQL keep working).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from netbroker.common.enums import utcnow
from netbroker.db.bulk import allocate_ids, insert_columns, insert_rows
from netbroker.db.engine import begin_immediate
from netbroker.db.grid import GridDB
from netbroker.db.jobs import JobDB
from netbroker.db.schema import jobs, queues

AWKWARD = ["plain", "tab\there", "new\nline", "back\\slash \\N", "quote ' and \"",
           "ünïcødé ✓", ""]


def _rows(queue_id: int, tag: str) -> list[dict[str, Any]]:
    now = utcnow()
    return [{"name": f"{tag}.{k}", "status": "activated", "queue_id": queue_id,
             "prod_source_label": "managed", "priority": 100 + k, "base_priority": 100 + k,
             "cores": 1 + k % 2, "min_ram_mb": 1000, "max_disk_mb": 0, "max_walltime_s": 3600,
             "transformation": "run.sh", "job_pars": text, "user_name": "alice",
             "working_group": "", "waiting_since": now - timedelta(seconds=k, microseconds=k),
             "created_at": now, "modified_at": now, "pilot_id": None}
            for k, text in enumerate(AWKWARD)]


def _stored(engine: Engine, prefix: str) -> list[dict[str, Any]]:
    compared = [c for c in jobs.c if c.name not in ("id", "name")]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(jobs.c.name, *compared)
                            .where(jobs.c.name.like(f"{prefix}.%"))
                            .order_by(jobs.c.name)).mappings().all()
    return [{k: v for k, v in r.items() if k != "name"} for r in rows]


def test_rows_written_in_bulk_read_back_as_those_inserted_one_statement(
        grid_engine: Engine) -> None:
    with grid_engine.connect() as conn:
        queue_id = next(iter(GridDB(conn).ids(queues).values()))
    with begin_immediate(grid_engine) as conn:
        conn.execute(sa.insert(jobs), _rows(queue_id, "plain"))
    with begin_immediate(grid_engine) as conn:
        insert_rows(conn, jobs, _rows(queue_id, "bulk"))
    plain, bulk = _stored(grid_engine, "plain"), _stored(grid_engine, "bulk")
    assert len(bulk) == len(AWKWARD)
    assert [r["job_pars"] for r in bulk] == AWKWARD  # every escape survived
    for a, b in zip(plain, bulk, strict=True):
        assert {k: v for k, v in a.items() if k not in ("waiting_since", "created_at",
                                                         "modified_at")} == \
               {k: v for k, v in b.items() if k not in ("waiting_since", "created_at",
                                                        "modified_at")}
    # the datetimes compare in SQL as those of an ordinary insert (same storage format)
    with grid_engine.connect() as conn:
        older = conn.execute(sa.select(sa.func.count()).select_from(jobs).where(
            jobs.c.name.like("bulk.%"),
            jobs.c.waiting_since < utcnow() - timedelta(microseconds=500))).scalar_one()
    assert older == len(AWKWARD)


def test_ids_allocated_first_are_increasing_and_never_reused(grid_engine: Engine) -> None:
    with grid_engine.connect() as conn:
        queue_id = next(iter(GridDB(conn).ids(queues).values()))
    with begin_immediate(grid_engine) as conn:
        ids = JobDB(conn).add_jobs(_rows(queue_id, "first"), utcnow())
    assert ids == sorted(ids) and len(set(ids)) == len(AWKWARD)
    with begin_immediate(grid_engine) as conn:  # an ordinary insert after them
        (after,) = conn.execute(sa.insert(jobs).returning(jobs.c.id),
                                _rows(queue_id, "after")[:1]).scalars()
        more = allocate_ids(conn, jobs, 3)
    assert after > max(ids)
    assert more == sorted(more) and min(more) > after
    with grid_engine.connect() as conn:
        logged = [(job, str(s)) for job, s, _ in JobDB(conn).state_changes(ids)]
    assert sorted(logged) == [(i, "activated") for i in ids]  # each job's first state


def test_nothing_to_insert_writes_nothing(grid_engine: Engine) -> None:
    with begin_immediate(grid_engine) as conn:
        insert_rows(conn, jobs, [])
        assert allocate_ids(conn, jobs, 0) == []
        assert conn.execute(sa.select(sa.func.count()).select_from(jobs)).scalar_one() == 0


def test_rows_built_a_chunk_at_a_time_are_stored_as_rows_given_at_once(
        grid_engine: Engine) -> None:
    with grid_engine.connect() as conn:
        queue_id = next(iter(GridDB(conn).ids(queues).values()))
    rows = _rows(queue_id, "chunked")
    built = []

    def chunks():  # columns of two rows at a time, built only when asked for
        for k in range(0, len(rows), 2):
            built.append(k)
            yield {name: [r[name] for r in rows[k:k + 2]] for name in rows[0]}

    with begin_immediate(grid_engine) as conn:
        assert insert_columns(conn, jobs, chunks()) == len(AWKWARD)
    with begin_immediate(grid_engine) as conn:
        insert_rows(conn, jobs, _rows(queue_id, "whole"))
    assert built == [0, 2, 4, 6]
    untimed = [[{k: v for k, v in r.items() if not k.endswith(("_since", "_at"))} for r in
                _stored(grid_engine, prefix)] for prefix in ("chunked", "whole")]
    assert len(untimed[0]) == len(AWKWARD) and untimed[0] == untimed[1]


@pytest.mark.parametrize("fault", ["other columns", "short column"])
def test_a_bad_chunk_is_refused_naming_the_table_and_stores_nothing(
        grid_engine: Engine, fault: str) -> None:
    with grid_engine.connect() as conn:
        queue_id = next(iter(GridDB(conn).ids(queues).values()))
    rows = _rows(queue_id, "bad")
    good = {name: [r[name] for r in rows[:2]] for name in rows[0]}
    bad = dict(good)
    if fault == "other columns":
        del bad["pilot_id"]
    else:
        bad["priority"] = bad["priority"][:1]
    with pytest.raises(ValueError, match=r"^jobs: "), begin_immediate(grid_engine) as conn:
        insert_columns(conn, jobs, [good, bad])
    assert _stored(grid_engine, "bad") == []

"""The schema's migrations reach head on both backends and match the MetaData."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from netbroker.db import create_db_engine, current_revision, head_revision, schema_drift, upgrade
from netbroker.db.migrate import alembic_config
from netbroker.db.schema import metadata


def test_upgrade_brings_an_empty_database_to_head(empty_db_url: str) -> None:
    engine = create_db_engine(empty_db_url)
    assert current_revision(engine) is None
    result = upgrade(engine)
    assert result.before is None
    assert result.after == head_revision() is not None
    assert set(sa.inspect(engine).get_table_names()) >= set(metadata.tables)
    engine.dispose()


def test_upgrade_at_head_changes_nothing(engine: sa.Engine) -> None:
    result = upgrade(engine)
    assert not result.changed
    assert result.after == head_revision()


def test_migrations_do_not_drift_from_the_metadata(engine: sa.Engine) -> None:
    assert schema_drift(engine) == []


def test_downgrade_to_base_then_upgrade_again(engine: sa.Engine) -> None:
    from alembic import command

    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    assert not set(sa.inspect(engine).get_table_names()) & set(metadata.tables)
    assert upgrade(engine).after == head_revision()
    assert schema_drift(engine) == []


def test_current_revision_reads_as_alembic_does_at_every_revision(engine: sa.Engine) -> None:
    """The version table read says what Alembic's migration context says: at each
    revision from head down to base (where the table is empty), and without it."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    def alembic_says() -> str | None:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    cfg = alembic_config()
    seen = []
    for script in ScriptDirectory.from_config(cfg).walk_revisions():
        assert current_revision(engine) == alembic_says() == script.revision
        seen.append(script.revision)
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "-1")
    assert len(seen) >= 2 and current_revision(engine) is None is alembic_says()
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE alembic_version")
    assert current_revision(engine) is None
    assert upgrade(engine).after == head_revision()


def test_sqlite_connections_have_wal_foreign_keys_and_busy_timeout(tmp_path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'p.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000
    engine.dispose()


def test_sqlite_immediate_transaction_holds_the_write_lock(tmp_path) -> None:
    """begin_immediate takes the lock at BEGIN: a second writer waits, readers do not."""
    from netbroker.common.config import DatabaseSettings
    from netbroker.db import begin_immediate

    url = f"sqlite:///{tmp_path / 'lock.db'}"
    holder = create_db_engine(url)
    upgrade(holder)
    other = create_db_engine(DatabaseSettings(url=url, sqlite_busy_timeout_ms=50))
    with begin_immediate(holder) as conn:
        conn.exec_driver_sql("SELECT count(*) FROM sites").scalar()
        with other.connect() as reader:  # a reader is not blocked by the held lock
            assert reader.exec_driver_sql("SELECT count(*) FROM sites").scalar() == 0
        with pytest.raises(sa.exc.OperationalError, match="locked"), begin_immediate(other):
            pass
    with begin_immediate(other) as conn:  # released at commit
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1
    holder.dispose()
    other.dispose()


def test_the_state_log_moves_into_the_job_rows_and_back(empty_db_url: str) -> None:
    """0018 moves job_state_changes into jobs.state_log, in the order the rows were
    logged (not by time: two changes may share a time), and its downgrade moves
    them back; a job with no logged state keeps an empty log."""
    from datetime import UTC, datetime

    from alembic import command

    from netbroker.db.jobs import JobDB
    from netbroker.db.schema import UTCDateTime

    engine = create_db_engine(empty_db_url)
    cfg = alembic_config()

    def to(revision: str, up: bool = True) -> None:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            (command.upgrade if up else command.downgrade)(cfg, revision)

    to("0017")
    t0 = datetime(2026, 12, 7, 9, 0, 0, tzinfo=UTC)
    t1 = datetime(2026, 12, 7, 9, 30, 5, 250, tzinfo=UTC)
    with engine.begin() as conn:
        job = sa.table("jobs", *(sa.column(c) for c in (
            "id", "name", "status", "prod_source_label", "priority", "cores", "min_ram_mb",
            "max_disk_mb", "max_walltime_s", "transformation")),
            sa.column("created_at", UTCDateTime()), sa.column("modified_at", UTCDateTime()))
        conn.execute(sa.insert(job), [
            {"id": i, "name": f"j{i}", "status": s, "prod_source_label": "managed",
             "priority": 1, "cores": 1, "min_ram_mb": 0, "max_disk_mb": 0,
             "max_walltime_s": 60, "transformation": "run.sh", "created_at": t0,
             "modified_at": t1} for i, s in ((1, "running"), (2, "activated"), (3, "defined"))])
        log = sa.table("job_state_changes", sa.column("id"), sa.column("job_id"),
                       sa.column("status"), sa.column("at", UTCDateTime()))
        conn.execute(sa.insert(log), [
            {"id": 1, "job_id": 1, "status": "activated", "at": t0},
            {"id": 2, "job_id": 2, "status": "activated", "at": t0},
            {"id": 3, "job_id": 1, "status": "sent", "at": t1},
            {"id": 4, "job_id": 1, "status": "running", "at": t1}])  # same time as "sent"
    to("head")
    with engine.connect() as conn:
        logs = dict(conn.execute(sa.text("SELECT id, state_log FROM jobs")).all())
        assert JobDB(conn).timeline(1)[2]["at"] == t1
    assert logs == {1: "activated 2026-12-07T09:00:00.000000Z\n"
                       "sent 2026-12-07T09:30:05.000250Z\n"
                       "running 2026-12-07T09:30:05.000250Z\n",
                    2: "activated 2026-12-07T09:00:00.000000Z\n",
                    3: ""}
    to("0017", up=False)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT job_id, status, at FROM job_state_changes ORDER BY id")).all()
    stamps = [r[2] if isinstance(r[2], datetime) else datetime.fromisoformat(r[2])
              for r in rows]
    assert [(r[0], r[1]) for r in rows] == [(1, "activated"), (1, "sent"), (1, "running"),
                                            (2, "activated")]
    assert [s.replace(tzinfo=UTC) if s.tzinfo is None else s for s in stamps] == [
        t0, t1, t1, t0]
    engine.dispose()

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

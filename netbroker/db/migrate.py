"""Schema migrations: bring a database to head, say where it is, find drift.

The revisions live in the top-level ``sql`` package (installed with
netbroker), so this works from a wheel as well as from a checkout.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from netbroker.db.schema import metadata

__all__ = ["UpgradeResult", "alembic_config", "current_revision", "head_revision",
           "schema_drift", "upgrade"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UpgradeResult:
    """What :func:`upgrade` did: the revision before and after."""

    before: str | None
    after: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.after


def alembic_config() -> Config:
    """An Alembic config pointing at the installed ``sql`` migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", str(files("sql")))
    return cfg


@functools.cache
def head_revision() -> str | None:
    """The newest revision shipped with this netbroker (read once per process)."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database.

    One read of Alembic's version table (~0.1 ms, so a health probe can ask
    it every time); Alembic's own migration context, ten times dearer, only
    when that read fails (no table yet, or the database is down: then it
    raises) or finds other than a single revision.
    """
    try:
        with engine.connect() as conn:
            found = conn.execute(_VERSION_QUERY).scalars().all()
    except sa.exc.DBAPIError:
        found = []
    if len(found) == 1:
        return str(found[0])
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


_VERSION_QUERY = sa.text("SELECT version_num FROM alembic_version")


def upgrade(engine: Engine, revision: str = "head") -> UpgradeResult:
    """Apply every migration up to ``revision`` in one transaction.

    Returns
    -------
    UpgradeResult
        The revisions before and after; equal when there was nothing to do.
    """
    before = current_revision(engine)
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    after = current_revision(engine)
    if before != after:
        log.info("schema upgraded from %s to %s", before, after)
    return UpgradeResult(before, after)


def schema_drift(engine: Engine) -> list[Any]:
    """Differences between the database and :data:`schema.metadata`.

    An empty list means the migrations produce exactly the schema the code
    declares (what ``alembic check`` tests).
    """
    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "render_as_batch": conn.dialect.name == "sqlite"}
        )
        return list(compare_metadata(ctx, metadata))

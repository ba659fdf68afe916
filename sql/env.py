"""Alembic environment: runs migrations on the connection netbroker hands it.

``netbroker.db.migrate`` passes an open connection in
``config.attributes["connection"]``. Run by the ``alembic`` command line
(``alembic -c alembic.ini revision --autogenerate``), it connects to the
database of netbroker's settings (``NETBROKER_DATABASE_URL`` or the config
file) instead.
"""

from __future__ import annotations

from alembic import context

from netbroker.common.config import load_settings
from netbroker.db.engine import create_db_engine
from netbroker.db.schema import metadata

config = context.config


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER constraints: batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_db_engine(load_settings().database)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("netbroker migrations run online only: give a database URL")
run_migrations_online()

"""Storage: the schema, engines, migrations and one small DB class per table group.

Each DB class owns its statements and takes the connection its caller opened
(the caller owns the transaction).

May import: ``netbroker.common`` only.
"""

from netbroker.db.engine import (
    atomic_write,
    begin_immediate,
    create_db_engine,
    database_key,
    describe_url,
    is_sqlite,
)
from netbroker.db.migrate import current_revision, head_revision, schema_drift, upgrade
from netbroker.db.schema import metadata

__all__ = [
    "atomic_write",
    "begin_immediate",
    "create_db_engine",
    "current_revision",
    "database_key",
    "describe_url",
    "head_revision",
    "is_sqlite",
    "metadata",
    "schema_drift",
    "upgrade",
]

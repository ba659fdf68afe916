"""metric buckets keyed by source before bucket start

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 19:10:00.000000

The key of ``metric_buckets`` becomes (kind, source, bucket_start_s,
src_site_id, dst_site_id): a window of one kind and source is then one range
of the key, where before each source's window read stepped over the rows of
every other source. SQLite rebuilds the table (batch mode, keeping it
``WITHOUT ROWID``); PostgreSQL swaps the constraint in place.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SOURCE_FIRST = ['kind', 'source', 'bucket_start_s', 'src_site_id', 'dst_site_id']
_BUCKET_FIRST = ['kind', 'bucket_start_s', 'src_site_id', 'dst_site_id', 'source']


def _set_bucket_key(columns: list[str]) -> None:
    # table_kwargs only matter where batch mode copies the table (SQLite).
    with op.batch_alter_table('metric_buckets', schema=None,
                              table_kwargs={'sqlite_with_rowid': False}) as batch_op:
        batch_op.drop_constraint('pk_metric_buckets', type_='primary')
        batch_op.create_primary_key('pk_metric_buckets', columns)


def upgrade() -> None:
    _set_bucket_key(_SOURCE_FIRST)


def downgrade() -> None:
    _set_bucket_key(_BUCKET_FIRST)

"""collector pull cursors

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 21:10:00.000000

Where each pull collector stopped reading each series of each archive
(``collector_pull_cursors``), so a pull asks only for what came after. It
starts empty: the first pull of an archive reads its configured time range.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import netbroker.db.schema

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('collector_pull_cursors',
    sa.Column('archive_url', sa.String(length=1024), nullable=False),
    sa.Column('series', sa.String(length=255), nullable=False),
    sa.Column('through_s', sa.Float(), nullable=False),
    sa.Column('updated_at', netbroker.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('archive_url', 'series', name=op.f('pk_collector_pull_cursors'))
    )


def downgrade() -> None:
    op.drop_table('collector_pull_cursors')

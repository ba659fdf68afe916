"""cycle outcomes: the period, last success, last failure and its message

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 21:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import netbroker.db.schema


revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('cycles') as batch:
        batch.add_column(sa.Column('period_s', sa.Float(), nullable=True))
        batch.add_column(sa.Column('last_succeeded_at',
                                   netbroker.db.schema.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('last_failed_at',
                                   netbroker.db.schema.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('last_failure', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('cycles') as batch:
        batch.drop_column('last_failure')
        batch.drop_column('last_failed_at')
        batch.drop_column('last_succeeded_at')
        batch.drop_column('period_s')

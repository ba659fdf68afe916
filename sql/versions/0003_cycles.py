"""cycles: leases and last outcome of the periodic cycles

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 13:24:17.065743
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import netbroker.db.schema


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('cycles',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('holder', sa.String(length=128), nullable=True),
    sa.Column('lease_expires_at', netbroker.db.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_started_at', netbroker.db.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_finished_at', netbroker.db.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_duration_s', sa.Float(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('runs', sa.Integer(), server_default='0', nullable=False),
    sa.Column('failures', sa.Integer(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_cycles'))
    )


def downgrade() -> None:
    op.drop_table('cycles')

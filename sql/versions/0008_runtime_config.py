"""runtime config overrides and their audit log

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 15:58:11.902137
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import netbroker.db.schema


revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('config_audit',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', netbroker.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('who', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('old', sa.Text(), nullable=False),
    sa.Column('new', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_config_audit'))
    )
    with op.batch_alter_table('config_audit', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_config_audit_at'), ['at'], unique=False)

    op.create_table('config_overrides',
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('updated_at', netbroker.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_config_overrides'))
    )


def downgrade() -> None:
    op.drop_table('config_overrides')
    with op.batch_alter_table('config_audit', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_config_audit_at'))

    op.drop_table('config_audit')

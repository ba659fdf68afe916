"""event ranges: the units of work of event-service jobs

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 14:04:28.215865
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import netbroker.db.schema


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('event_ranges',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('job_id', sa.BigInteger(), nullable=False),
    sa.Column('first_event', sa.Integer(), nullable=False),
    sa.Column('last_event', sa.Integer(), nullable=False),
    sa.Column('attempt', sa.Integer(), server_default='1', nullable=False),
    sa.Column('status', sa.Enum('ready', 'running', 'finished', 'failed', 'cancelled', name='event_range_status', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('pilot_id', sa.String(length=255), nullable=True),
    sa.Column('updated_at', netbroker.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('first_event >= 0 AND last_event >= first_event', name=op.f('ck_event_ranges_events_valid')),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_event_ranges_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_event_ranges'))
    )
    with op.batch_alter_table('event_ranges', schema=None) as batch_op:
        batch_op.create_index('ix_event_ranges_job_status', ['job_id', 'status', 'id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('event_ranges', schema=None) as batch_op:
        batch_op.drop_index('ix_event_ranges_job_status')

    op.drop_table('event_ranges')

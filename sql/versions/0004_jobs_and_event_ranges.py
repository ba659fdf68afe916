"""jobs (PanDA states, attempts), their state changes, and event-service ranges

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 14:32:07.529751
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import netbroker.db.schema


revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('jobs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=True),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('status', sa.Enum('defined', 'assigned', 'activated', 'sent', 'starting', 'running', 'transferring', 'holding', 'finished', 'failed', 'cancelled', 'closed', name='job_status', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('queue_id', sa.Integer(), nullable=True),
    sa.Column('prod_source_label', sa.String(length=32), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('attempt_nr', sa.Integer(), server_default='1', nullable=False),
    sa.Column('max_attempts', sa.Integer(), server_default='3', nullable=False),
    sa.Column('retry_of', sa.BigInteger(), nullable=True),
    sa.Column('cores', sa.Integer(), nullable=False),
    sa.Column('min_ram_mb', sa.Integer(), nullable=False),
    sa.Column('max_disk_mb', sa.Integer(), nullable=False),
    sa.Column('max_walltime_s', sa.Integer(), nullable=False),
    sa.Column('transformation', sa.String(length=512), nullable=False),
    sa.Column('job_pars', sa.Text(), server_default='', nullable=False),
    sa.Column('pilot_id', sa.String(length=255), nullable=True),
    sa.Column('node', sa.String(length=255), nullable=True),
    sa.Column('exit_code', sa.Integer(), nullable=True),
    sa.Column('pilot_error_code', sa.Integer(), nullable=True),
    sa.Column('error_diag', sa.Text(), nullable=True),
    sa.Column('cpu_time_s', sa.Float(), nullable=True),
    sa.Column('max_rss_kb', sa.BigInteger(), nullable=True),
    sa.Column('created_at', netbroker.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('modified_at', netbroker.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('heartbeat_at', netbroker.db.schema.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint('cores >= 1 AND min_ram_mb >= 0 AND max_disk_mb >= 0 AND max_walltime_s >= 0', name=op.f('ck_jobs_resources_valid')),
    sa.ForeignKeyConstraint(['queue_id'], ['queues.id'], name=op.f('fk_jobs_queue_id_queues')),
    sa.ForeignKeyConstraint(['retry_of'], ['jobs.id'], name=op.f('fk_jobs_retry_of_jobs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs'))
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_acquire', ['queue_id', 'status', 'priority', 'id'], unique=False)

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

    op.create_table('job_state_changes',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('job_id', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.Enum('defined', 'assigned', 'activated', 'sent', 'starting', 'running', 'transferring', 'holding', 'finished', 'failed', 'cancelled', 'closed', name='job_state_change_status', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('at', netbroker.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_job_state_changes_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_state_changes'))
    )
    with op.batch_alter_table('job_state_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_state_changes_job_id'), ['job_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('job_state_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_state_changes_job_id'))

    op.drop_table('job_state_changes')
    with op.batch_alter_table('event_ranges', schema=None) as batch_op:
        batch_op.drop_index('ix_event_ranges_job_status')

    op.drop_table('event_ranges')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_acquire')

    op.drop_table('jobs')

"""tasks, brokerage decisions, job files, rebrokerages and priority boosts

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 14:57:52.919794
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
    # jobs.task_id gains its foreign key below: SQLite copies the jobs table
    # (batch mode), PostgreSQL alters it in place.
    op.create_table('priority_boosts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_name', sa.String(length=64), nullable=True),
    sa.Column('working_group', sa.String(length=64), nullable=True),
    sa.Column('site_id', sa.Integer(), nullable=True),
    sa.Column('cloud_id', sa.Integer(), nullable=True),
    sa.Column('value', sa.Integer(), nullable=False),
    sa.Column('expires_at', netbroker.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', netbroker.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=64), server_default='', nullable=False),
    sa.Column('comment', sa.String(length=255), server_default='', nullable=False),
    sa.CheckConstraint('site_id IS NULL OR cloud_id IS NULL', name=op.f('ck_priority_boosts_one_place')),
    sa.CheckConstraint('user_name IS NOT NULL OR working_group IS NOT NULL', name=op.f('ck_priority_boosts_who_given')),
    sa.ForeignKeyConstraint(['cloud_id'], ['clouds.id'], name=op.f('fk_priority_boosts_cloud_id_clouds'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_priority_boosts_site_id_sites'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_priority_boosts'))
    )
    op.create_table('tasks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('user_name', sa.String(length=64), nullable=False),
    sa.Column('working_group', sa.String(length=64), server_default='', nullable=False),
    sa.Column('processing_type', sa.Enum('production', 'analysis', name='processing_type', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('dataset_id', sa.Integer(), nullable=False),
    sa.Column('transformation', sa.String(length=512), nullable=False),
    sa.Column('job_pars', sa.Text(), server_default='', nullable=False),
    sa.Column('cores', sa.Integer(), nullable=False),
    sa.Column('memory_mb', sa.Integer(), nullable=False),
    sa.Column('walltime_s', sa.Integer(), nullable=False),
    sa.Column('files_per_job', sa.Integer(), nullable=False),
    sa.Column('events_per_job', sa.Integer(), nullable=True),
    sa.Column('events_per_file', sa.Integer(), nullable=True),
    sa.Column('event_service', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('events_per_range', sa.Integer(), nullable=True),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=True),
    sa.Column('cloud_id', sa.Integer(), nullable=True),
    sa.Column('nucleus_site_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.Enum('registered', 'pending', 'running', 'done', 'failed', 'cancelled', name='task_status', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('reason', sa.String(length=512), server_default='', nullable=False),
    sa.Column('created_at', netbroker.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('modified_at', netbroker.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('cores >= 1 AND memory_mb >= 0 AND walltime_s >= 1 AND files_per_job >= 1 AND max_attempts >= 1', name=op.f('ck_tasks_task_valid')),
    sa.ForeignKeyConstraint(['cloud_id'], ['clouds.id'], name=op.f('fk_tasks_cloud_id_clouds')),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_tasks_dataset_id_datasets')),
    sa.ForeignKeyConstraint(['nucleus_site_id'], ['sites.id'], name=op.f('fk_tasks_nucleus_site_id_sites')),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_tasks_site_id_sites')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tasks')),
    sa.UniqueConstraint('name', name=op.f('uq_tasks_name'))
    )
    op.create_table('brokerage_decisions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('at', netbroker.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('seed', sa.BigInteger(), nullable=False),
    sa.Column('chosen', sa.Text(), nullable=False),
    sa.Column('summary', sa.String(length=512), nullable=False),
    sa.Column('weights', sa.Text(), nullable=False),
    sa.Column('candidates', sa.Text(), nullable=False),
    sa.CheckConstraint("kind IN ('task', 'job', 'rebrokerage')", name=op.f('ck_brokerage_decisions_kind_known')),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], name=op.f('fk_brokerage_decisions_task_id_tasks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_brokerage_decisions'))
    )
    with op.batch_alter_table('brokerage_decisions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_brokerage_decisions_task_id'), ['task_id'], unique=False)

    op.create_table('job_files',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('job_id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('lfn', sa.String(length=255), nullable=False),
    sa.Column('scope', sa.String(length=64), nullable=False),
    sa.Column('dataset', sa.String(length=255), nullable=False),
    sa.Column('file_id', sa.Integer(), nullable=True),
    sa.Column('bytes', sa.BigInteger(), nullable=True),
    sa.Column('guid', sa.String(length=36), nullable=True),
    sa.Column('adler32', sa.String(length=8), nullable=True),
    sa.CheckConstraint("kind IN ('input', 'output', 'log')", name=op.f('ck_job_files_kind_known')),
    sa.ForeignKeyConstraint(['file_id'], ['files.id'], name=op.f('fk_job_files_file_id_files')),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_job_files_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_files'))
    )
    with op.batch_alter_table('job_files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_files_job_id'), ['job_id'], unique=False)

    op.create_table('rebrokerages',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('job_id', sa.BigInteger(), nullable=False),
    sa.Column('from_queue_id', sa.Integer(), nullable=False),
    sa.Column('to_queue_id', sa.Integer(), nullable=False),
    sa.Column('decision_id', sa.BigInteger(), nullable=True),
    sa.Column('at', netbroker.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.String(length=512), nullable=False),
    sa.ForeignKeyConstraint(['decision_id'], ['brokerage_decisions.id'], name=op.f('fk_rebrokerages_decision_id_brokerage_decisions'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['from_queue_id'], ['queues.id'], name=op.f('fk_rebrokerages_from_queue_id_queues')),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_rebrokerages_job_id_jobs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['to_queue_id'], ['queues.id'], name=op.f('fk_rebrokerages_to_queue_id_queues')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rebrokerages'))
    )
    with op.batch_alter_table('rebrokerages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rebrokerages_job_id'), ['job_id'], unique=False)

    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('user_name', sa.String(length=64), server_default='', nullable=False))
        batch_op.add_column(sa.Column('working_group', sa.String(length=64), server_default='', nullable=False))
        batch_op.add_column(sa.Column('base_priority', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('waiting_since', netbroker.db.schema.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('input_bytes', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('brokerage_id', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('rebrokerages', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('pinned', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('event_service', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.create_index('ix_jobs_status', ['status'], unique=False)
        batch_op.create_index('ix_jobs_task_id', ['task_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_jobs_task_id_tasks'), 'tasks', ['task_id'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_jobs_brokerage_id_brokerage_decisions'), 'brokerage_decisions', ['brokerage_id'], ['id'], ondelete='SET NULL')



def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_jobs_brokerage_id_brokerage_decisions'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_jobs_task_id_tasks'), type_='foreignkey')
        batch_op.drop_index('ix_jobs_task_id')
        batch_op.drop_index('ix_jobs_status')
        batch_op.drop_column('event_service')
        batch_op.drop_column('pinned')
        batch_op.drop_column('rebrokerages')
        batch_op.drop_column('brokerage_id')
        batch_op.drop_column('input_bytes')
        batch_op.drop_column('waiting_since')
        batch_op.drop_column('base_priority')
        batch_op.drop_column('working_group')
        batch_op.drop_column('user_name')

    with op.batch_alter_table('rebrokerages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rebrokerages_job_id'))

    op.drop_table('rebrokerages')
    with op.batch_alter_table('job_files', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_files_job_id'))

    op.drop_table('job_files')
    with op.batch_alter_table('brokerage_decisions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_brokerage_decisions_task_id'))

    op.drop_table('brokerage_decisions')
    op.drop_table('tasks')
    op.drop_table('priority_boosts')

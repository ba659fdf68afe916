"""PD2P: dataset accesses (popularity), replication decisions, replica origin and lifetime

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 15:25:24.532240
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import netbroker.db.schema


revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('dataset_accesses',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('dataset_id', sa.Integer(), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=True),
    sa.Column('user_name', sa.String(length=64), nullable=False),
    sa.Column('jobs', sa.Integer(), nullable=False),
    sa.Column('at', netbroker.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_dataset_accesses_dataset_id_datasets'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], name=op.f('fk_dataset_accesses_task_id_tasks'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dataset_accesses'))
    )
    with op.batch_alter_table('dataset_accesses', schema=None) as batch_op:
        batch_op.create_index('ix_dataset_accesses_dataset_id_at', ['dataset_id', 'at'], unique=False)

    op.create_table('replication_decisions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('dataset_id', sa.Integer(), nullable=False),
    sa.Column('bytes', sa.BigInteger(), nullable=False),
    sa.Column('target_endpoint_id', sa.Integer(), nullable=False),
    sa.Column('sources', sa.Text(), nullable=False),
    sa.Column('candidates', sa.Text(), nullable=False),
    sa.Column('reason', sa.String(length=1024), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('failure_reason', sa.String(length=1024), nullable=True),
    sa.Column('lifetime_days', sa.Float(), nullable=False),
    sa.Column('created_at', netbroker.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', netbroker.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', netbroker.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("state IN ('new', 'acknowledged', 'done', 'failed', 'expired')", name=op.f('ck_replication_decisions_state_known')),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_replication_decisions_dataset_id_datasets'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['target_endpoint_id'], ['endpoints.id'], name=op.f('fk_replication_decisions_target_endpoint_id_endpoints')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_replication_decisions'))
    )
    with op.batch_alter_table('replication_decisions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_replication_decisions_dataset_id'), ['dataset_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_replication_decisions_target_endpoint_id'), ['target_endpoint_id'], unique=False)

    with op.batch_alter_table('replicas', schema=None) as batch_op:
        batch_op.add_column(sa.Column('origin', sa.String(length=16), server_default='catalog', nullable=False))
        batch_op.add_column(sa.Column('expires_at', netbroker.db.schema.UTCDateTime(timezone=True), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('replicas', schema=None) as batch_op:
        batch_op.drop_column('expires_at')
        batch_op.drop_column('origin')

    with op.batch_alter_table('replication_decisions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_replication_decisions_target_endpoint_id'))
        batch_op.drop_index(batch_op.f('ix_replication_decisions_dataset_id'))

    op.drop_table('replication_decisions')
    with op.batch_alter_table('dataset_accesses', schema=None) as batch_op:
        batch_op.drop_index('ix_dataset_accesses_dataset_id_at')

    op.drop_table('dataset_accesses')

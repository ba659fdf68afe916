"""cloud membership: foreign calculated members and the history of joins and leaves

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 13:43:44.354469
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
    op.create_table('cloud_members',
    sa.Column('cloud_id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('joined_at', netbroker.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('stale_cycles', sa.Integer(), server_default='0', nullable=False),
    sa.ForeignKeyConstraint(['cloud_id'], ['clouds.id'], name=op.f('fk_cloud_members_cloud_id_clouds'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_cloud_members_site_id_sites'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('cloud_id', 'site_id', name=op.f('pk_cloud_members'))
    )
    op.create_table('cloud_membership_history',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('cloud_id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('change', sa.String(length=8), nullable=False),
    sa.Column('at', netbroker.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('mbytes_per_s', sa.Float(), nullable=True),
    sa.Column('packet_loss_fraction', sa.Float(), nullable=True),
    sa.Column('samples', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=255), nullable=False),
    sa.CheckConstraint("change IN ('joined', 'left')", name=op.f('ck_cloud_membership_history_change_known')),
    sa.ForeignKeyConstraint(['cloud_id'], ['clouds.id'], name=op.f('fk_cloud_membership_history_cloud_id_clouds'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_cloud_membership_history_site_id_sites'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cloud_membership_history'))
    )
    with op.batch_alter_table('cloud_membership_history', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cloud_membership_history_at'), ['at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('cloud_membership_history', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cloud_membership_history_at'))

    op.drop_table('cloud_membership_history')
    op.drop_table('cloud_members')

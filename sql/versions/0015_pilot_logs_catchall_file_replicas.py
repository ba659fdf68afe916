"""job pilot logs (the log extracts a pilot sends with its final report), queue catchall,
file replicas (the outputs pilots report)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 23:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import netbroker.db.schema

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('jobs', sa.Column('pilot_log', sa.Text(), nullable=True))
    op.add_column('queues', sa.Column('catchall', sa.String(length=1024), nullable=True))
    op.create_table('file_replicas',
    sa.Column('file_id', sa.Integer(), nullable=False),
    sa.Column('endpoint_id', sa.Integer(), nullable=False),
    sa.Column('url', sa.String(length=2048), server_default='', nullable=False),
    sa.Column('created_at', netbroker.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['endpoint_id'], ['endpoints.id'],
                            name=op.f('fk_file_replicas_endpoint_id_endpoints'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['file_id'], ['files.id'], name=op.f('fk_file_replicas_file_id_files'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('file_id', 'endpoint_id', name=op.f('pk_file_replicas'))
    )
    op.create_index(op.f('ix_file_replicas_endpoint_id'), 'file_replicas', ['endpoint_id'],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_file_replicas_endpoint_id'), table_name='file_replicas')
    op.drop_table('file_replicas')
    # Plain DROP COLUMN (SQLite >= 3.35 has it): a batch rebuild of queues or jobs
    # would drop a table that other tables' rows still reference.
    op.execute('ALTER TABLE queues DROP COLUMN catchall')
    op.execute('ALTER TABLE jobs DROP COLUMN pilot_log')

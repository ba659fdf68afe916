"""job logs

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25 16:20:48.519960
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import netbroker.db.schema


revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('job_logs',
    sa.Column('job_id', sa.BigInteger(), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.Column('media_type', sa.String(length=64), nullable=False),
    sa.Column('uploaded_at', netbroker.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_job_logs_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', name=op.f('pk_job_logs'))
    )


def downgrade() -> None:
    op.drop_table('job_logs')

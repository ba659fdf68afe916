"""network metrics (raw samples keyed by origin, time buckets) and cycle leases

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 13:32:08.917081
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import netbroker.db.schema


revision: str = '0002'
down_revision: str | None = '0001'
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
    op.create_table('metric_buckets',
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('bucket_start_s', sa.BigInteger(), nullable=False),
    sa.Column('src_site_id', sa.Integer(), nullable=False),
    sa.Column('dst_site_id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('value_sum', sa.Float(), nullable=False),
    sa.Column('weight_sum', sa.Float(), nullable=False),
    sa.Column('weighted_value_sum', sa.Float(), nullable=False),
    sa.Column('last_ts_s', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['dst_site_id'], ['sites.id'], name=op.f('fk_metric_buckets_dst_site_id_sites'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['src_site_id'], ['sites.id'], name=op.f('fk_metric_buckets_src_site_id_sites'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('kind', 'bucket_start_s', 'src_site_id', 'dst_site_id', 'source', name=op.f('pk_metric_buckets')),
    sqlite_with_rowid=False
    )
    op.create_table('metric_samples',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('origin_key', sa.BigInteger(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('origin_id', sa.String(length=255), nullable=False),
    sa.Column('src_site_id', sa.Integer(), nullable=False),
    sa.Column('dst_site_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('ts_s', sa.Float(), nullable=False),
    sa.Column('weight', sa.Float(), nullable=False),
    sa.Column('source_unit', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['dst_site_id'], ['sites.id'], name=op.f('fk_metric_samples_dst_site_id_sites'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['src_site_id'], ['sites.id'], name=op.f('fk_metric_samples_src_site_id_sites'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_metric_samples')),
    sa.UniqueConstraint('origin_key', name=op.f('uq_metric_samples_origin_key'))
    )


def downgrade() -> None:
    op.drop_table('metric_samples')
    op.drop_table('metric_buckets')
    op.drop_table('cycles')

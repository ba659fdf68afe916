"""network metrics: raw samples (unique per source and origin id) and time buckets

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 13:17:51.629993
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
    sa.UniqueConstraint('source', 'origin_id', name=op.f('uq_metric_samples_source_origin_id'))
    )


def downgrade() -> None:
    op.drop_table('metric_samples')
    op.drop_table('metric_buckets')

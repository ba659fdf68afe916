"""grid registry: clouds, sites, hosts, queues, storage endpoints, datasets, files, replicas

Revision ID: 0001
Revises: 
Create Date: 2026-11-25 12:49:15.879842
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import netbroker.db.schema


revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('clouds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('tier1_site_id', sa.Integer(), nullable=True),
    sa.Column('updated_at', netbroker.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tier1_site_id'], ['sites.id'], name=op.f('fk_clouds_tier1_site_id_sites'), ondelete='SET NULL', use_alter=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_clouds')),
    sa.UniqueConstraint('name', name=op.f('uq_clouds_name'))
    )
    op.create_table('datasets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('scope', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('created_at', netbroker.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_datasets')),
    sa.UniqueConstraint('scope', 'name', name=op.f('uq_datasets_scope_name'))
    )
    op.create_table('files',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('dataset_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('guid', sa.String(length=36), nullable=False),
    sa.Column('bytes', sa.BigInteger(), nullable=False),
    sa.Column('adler32', sa.String(length=8), server_default='', nullable=False),
    sa.CheckConstraint('bytes >= 0', name=op.f('ck_files_bytes_not_negative')),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_files_dataset_id_datasets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_files')),
    sa.UniqueConstraint('dataset_id', 'name', name=op.f('uq_files_dataset_id_name'))
    )
    op.create_table('sites',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('cloud_id', sa.Integer(), nullable=False),
    sa.Column('tier', sa.SmallInteger(), nullable=False),
    sa.Column('country', sa.String(length=64), server_default='', nullable=False),
    sa.Column('status', sa.Enum('online', 'offline', 'test', 'brokeroff', name='site_status', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('is_nucleus', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('updated_at', netbroker.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('tier >= 0 AND tier <= 3', name=op.f('ck_sites_tier_range')),
    sa.ForeignKeyConstraint(['cloud_id'], ['clouds.id'], name=op.f('fk_sites_cloud_id_clouds')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sites')),
    sa.UniqueConstraint('name', name=op.f('uq_sites_name'))
    )
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sites_cloud_id'), ['cloud_id'], unique=False)
    # clouds.tier1_site_id -> sites closes a cycle. SQLite has no ALTER, so it
    # takes the key inline above (it checks references only when rows change);
    # elsewhere CREATE TABLE leaves a use_alter key out and it is added here.
    if op.get_context().dialect.supports_alter:
        op.create_foreign_key(op.f('fk_clouds_tier1_site_id_sites'), 'clouds', 'sites',
                              ['tier1_site_id'], ['id'], ondelete='SET NULL')

    op.create_table('endpoints',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('endpoint_type', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('url', sa.String(length=512), server_default='', nullable=False),
    sa.Column('host', sa.String(length=255), server_default='', nullable=False),
    sa.Column('total_bytes', sa.BigInteger(), nullable=False),
    sa.Column('free_bytes', sa.BigInteger(), nullable=False),
    sa.Column('active', sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.Column('updated_at', netbroker.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('disk', 'tape')", name=op.f('ck_endpoints_kind_known')),
    sa.CheckConstraint('free_bytes >= 0 AND free_bytes <= total_bytes', name=op.f('ck_endpoints_space_consistent')),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_endpoints_site_id_sites')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_endpoints')),
    sa.UniqueConstraint('name', name=op.f('uq_endpoints_name'))
    )
    with op.batch_alter_table('endpoints', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_endpoints_site_id'), ['site_id'], unique=False)

    op.create_table('queues',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('panda_resource', sa.String(length=128), nullable=False),
    sa.Column('queue_type', sa.Enum('production', 'analysis', 'unified', name='queue_type', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('status', sa.Enum('online', 'offline', 'test', 'brokeroff', name='queue_status', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('cores', sa.Integer(), nullable=False),
    sa.Column('max_memory_mb', sa.Integer(), nullable=False),
    sa.Column('max_walltime_s', sa.Integer(), nullable=False),
    sa.Column('max_disk_mb', sa.Integer(), nullable=False),
    sa.Column('pilot_slots', sa.Integer(), nullable=False),
    sa.Column('hs06_per_core', sa.Float(), nullable=True),
    sa.Column('updated_at', netbroker.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('cores >= 1', name=op.f('ck_queues_cores_positive')),
    sa.CheckConstraint('max_memory_mb >= 0 AND max_walltime_s >= 0', name=op.f('ck_queues_limits_not_negative')),
    sa.CheckConstraint('pilot_slots >= 0', name=op.f('ck_queues_slots_not_negative')),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_queues_site_id_sites')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_queues')),
    sa.UniqueConstraint('name', name=op.f('uq_queues_name'))
    )
    with op.batch_alter_table('queues', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_queues_site_id'), ['site_id'], unique=False)

    op.create_table('site_hosts',
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.CheckConstraint("role IN ('domain', 'perfsonar')", name=op.f('ck_site_hosts_role_known')),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_site_hosts_site_id_sites'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('site_id', 'role', 'host', name=op.f('pk_site_hosts'))
    )
    with op.batch_alter_table('site_hosts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_site_hosts_host'), ['host'], unique=False)

    op.create_table('replicas',
    sa.Column('dataset_id', sa.Integer(), nullable=False),
    sa.Column('endpoint_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.Enum('available', 'pending', name='replica_state', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('updated_at', netbroker.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_replicas_dataset_id_datasets'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['endpoint_id'], ['endpoints.id'], name=op.f('fk_replicas_endpoint_id_endpoints')),
    sa.PrimaryKeyConstraint('dataset_id', 'endpoint_id', name=op.f('pk_replicas'))
    )
    with op.batch_alter_table('replicas', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_replicas_endpoint_id'), ['endpoint_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('replicas', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_replicas_endpoint_id'))

    op.drop_table('replicas')
    with op.batch_alter_table('site_hosts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_site_hosts_host'))

    op.drop_table('site_hosts')
    with op.batch_alter_table('queues', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_queues_site_id'))

    op.drop_table('queues')
    with op.batch_alter_table('endpoints', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_endpoints_site_id'))

    op.drop_table('endpoints')
    if op.get_context().dialect.supports_alter:
        op.drop_constraint(op.f('fk_clouds_tier1_site_id_sites'), 'clouds', type_='foreignkey')
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sites_cloud_id'))

    op.drop_table('sites')
    op.drop_table('files')
    op.drop_table('datasets')
    op.drop_table('clouds')

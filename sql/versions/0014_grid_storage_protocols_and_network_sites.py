"""grid storage protocols and network sites

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 21:10:00.000000

Storage endpoints keep their protocols (``endpoint_protocols``), queues their
astorages (``queue_storages``) and copy tools, sites their resource centre
(``rc_site``) and networks (``site_subnets``). An endpoint's space becomes
NULL until reported, a queue's ``max_walltime_s`` NULL for no limit.

Making a column nullable rebuilds the table on SQLite. ``endpoints`` and
``queues`` are referenced by other tables, and SQLite's DROP TABLE deletes
their rows first, which counts every referencing row as a violated key: so
the rows are held aside, the table dropped and created again, and the rows
inserted back into it, which settles those counts (foreign keys deferred to
the commit meanwhile). Neither table has children that cascade at that point.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

import netbroker.db.schema

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ACTIVITIES = ("read_lan", "read_wan", "write_lan", "write_wan", "delete_lan", "delete_wan")


def _create_endpoints(space_nullable: bool) -> None:
    op.create_table('endpoints',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('endpoint_type', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('url', sa.String(length=512), server_default='', nullable=False),
    sa.Column('host', sa.String(length=255), server_default='', nullable=False),
    sa.Column('total_bytes', sa.BigInteger(), nullable=space_nullable),
    sa.Column('free_bytes', sa.BigInteger(), nullable=space_nullable),
    sa.Column('active', sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.Column('updated_at', netbroker.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('disk', 'tape')", name=op.f('ck_endpoints_kind_known')),
    sa.CheckConstraint('free_bytes >= 0 AND free_bytes <= total_bytes', name=op.f('ck_endpoints_space_consistent')),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_endpoints_site_id_sites')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_endpoints')),
    sa.UniqueConstraint('name', name=op.f('uq_endpoints_name'))
    )
    op.create_index(op.f('ix_endpoints_site_id'), 'endpoints', ['site_id'], unique=False)


def _create_queues(with_copytools: bool) -> None:
    extra = [sa.Column('copytools', sa.Text(), nullable=True),
             sa.Column('acopytools', sa.Text(), nullable=True)] if with_copytools else []
    op.create_table('queues',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('panda_resource', sa.String(length=128), nullable=False),
    sa.Column('queue_type', sa.Enum('production', 'analysis', 'unified', name='queue_type', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('status', sa.Enum('online', 'offline', 'test', 'brokeroff', name='queue_status', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('cores', sa.Integer(), nullable=False),
    sa.Column('max_memory_mb', sa.Integer(), nullable=False),
    sa.Column('max_walltime_s', sa.Integer(), nullable=with_copytools),
    sa.Column('max_disk_mb', sa.Integer(), nullable=False),
    sa.Column('pilot_slots', sa.Integer(), nullable=False),
    sa.Column('hs06_per_core', sa.Float(), nullable=True),
    sa.Column('updated_at', netbroker.db.schema.UTCDateTime(timezone=True), nullable=False),
    *extra,
    sa.CheckConstraint('cores >= 1', name=op.f('ck_queues_cores_positive')),
    sa.CheckConstraint('max_memory_mb >= 0 AND max_walltime_s >= 0', name=op.f('ck_queues_limits_not_negative')),
    sa.CheckConstraint('pilot_slots >= 0', name=op.f('ck_queues_slots_not_negative')),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_queues_site_id_sites')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_queues')),
    sa.UniqueConstraint('name', name=op.f('uq_queues_name'))
    )
    op.create_index(op.f('ix_queues_site_id'), 'queues', ['site_id'], unique=False)


_KEEP_ENDPOINTS = ('id', 'name', 'site_id', 'endpoint_type', 'kind', 'url', 'host',
                   'total_bytes', 'free_bytes', 'active', 'updated_at')
_KEEP_QUEUES = ('id', 'name', 'site_id', 'panda_resource', 'queue_type', 'status', 'cores',
                'max_memory_mb', 'max_walltime_s', 'max_disk_mb', 'pilot_slots',
                'hs06_per_core', 'updated_at')


def _rebuild_on_sqlite(name: str, columns: Sequence[str], create: Callable[[], None]) -> None:
    """Drop and create ``name`` again, its rows (``columns``) held aside meanwhile."""
    bind = op.get_bind()
    held = f'_held_{name}'
    listed = ', '.join(columns)
    bind.exec_driver_sql('PRAGMA defer_foreign_keys = ON')  # until this transaction commits
    bind.exec_driver_sql(f'CREATE TEMP TABLE {held} AS SELECT {listed} FROM {name}')
    op.drop_table(name)
    create()
    bind.exec_driver_sql(f'INSERT INTO {name} ({listed}) SELECT {listed} FROM {held}')
    bind.exec_driver_sql(f'DROP TABLE {held}')


def _sqlite() -> bool:
    return op.get_bind().dialect.name == 'sqlite'


def upgrade() -> None:
    op.add_column('sites', sa.Column('rc_site', sa.String(length=128), nullable=True))
    if _sqlite():
        _rebuild_on_sqlite('endpoints', _KEEP_ENDPOINTS, lambda: _create_endpoints(True))
        _rebuild_on_sqlite('queues', _KEEP_QUEUES, lambda: _create_queues(True))
    else:
        op.alter_column('endpoints', 'total_bytes', existing_type=sa.BigInteger(),
                        nullable=True)
        op.alter_column('endpoints', 'free_bytes', existing_type=sa.BigInteger(),
                        nullable=True)
        op.alter_column('queues', 'max_walltime_s', existing_type=sa.Integer(), nullable=True)
        op.add_column('queues', sa.Column('copytools', sa.Text(), nullable=True))
        op.add_column('queues', sa.Column('acopytools', sa.Text(), nullable=True))
    op.create_table('endpoint_protocols',
    sa.Column('endpoint_id', sa.Integer(), nullable=False),
    sa.Column('protocol_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.SmallInteger(), nullable=False),
    sa.Column('url', sa.String(length=512), nullable=False),
    sa.Column('scheme', sa.String(length=16), nullable=False),
    sa.Column('host', sa.String(length=255), server_default='', nullable=False),
    sa.Column('port', sa.Integer(), nullable=True),
    sa.Column('path', sa.String(length=512), server_default='', nullable=False),
    sa.Column('flavour', sa.String(length=32), server_default='', nullable=False),
    *[sa.Column(a, sa.SmallInteger(), server_default='0', nullable=False) for a in _ACTIVITIES],
    sa.CheckConstraint(' AND '.join(f'{a} >= 0' for a in _ACTIVITIES), name=op.f('ck_endpoint_protocols_priorities_not_negative')),
    sa.ForeignKeyConstraint(['endpoint_id'], ['endpoints.id'], name=op.f('fk_endpoint_protocols_endpoint_id_endpoints'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('endpoint_id', 'protocol_id', name=op.f('pk_endpoint_protocols'))
    )
    op.create_table('queue_storages',
    sa.Column('queue_id', sa.Integer(), nullable=False),
    sa.Column('activity', sa.String(length=32), nullable=False),
    sa.Column('position', sa.SmallInteger(), nullable=False),
    sa.Column('endpoint_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['endpoint_id'], ['endpoints.id'], name=op.f('fk_queue_storages_endpoint_id_endpoints')),
    sa.ForeignKeyConstraint(['queue_id'], ['queues.id'], name=op.f('fk_queue_storages_queue_id_queues'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('queue_id', 'activity', 'position', name=op.f('pk_queue_storages'))
    )
    op.create_index(op.f('ix_queue_storages_endpoint_id'), 'queue_storages', ['endpoint_id'],
                    unique=False)
    op.create_table('site_subnets',
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('cidr', sa.String(length=49), nullable=False),
    sa.Column('family', sa.SmallInteger(), nullable=False),
    sa.Column('netroute', sa.String(length=128), server_default='', nullable=False),
    sa.CheckConstraint('family IN (4, 6)', name=op.f('ck_site_subnets_family_known')),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_site_subnets_site_id_sites'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('site_id', 'cidr', name=op.f('pk_site_subnets'))
    )


def downgrade() -> None:
    op.drop_table('site_subnets')
    op.drop_index(op.f('ix_queue_storages_endpoint_id'), table_name='queue_storages')
    op.drop_table('queue_storages')
    op.drop_table('endpoint_protocols')
    # Unknown space and no limit have no NOT NULL spelling: they become 0.
    endpoints = sa.table('endpoints', sa.column('total_bytes'), sa.column('free_bytes'))
    op.execute(endpoints.update().where(endpoints.c.total_bytes.is_(None))
               .values(total_bytes=sa.func.coalesce(endpoints.c.free_bytes, 0)))
    op.execute(endpoints.update().where(endpoints.c.free_bytes.is_(None)).values(free_bytes=0))
    queues = sa.table('queues', sa.column('max_walltime_s'))
    op.execute(queues.update().where(queues.c.max_walltime_s.is_(None))
               .values(max_walltime_s=0))
    if _sqlite():
        _rebuild_on_sqlite('queues', _KEEP_QUEUES, lambda: _create_queues(False))
        _rebuild_on_sqlite('endpoints', _KEEP_ENDPOINTS, lambda: _create_endpoints(False))
    else:
        op.drop_column('queues', 'acopytools')
        op.drop_column('queues', 'copytools')
        op.alter_column('queues', 'max_walltime_s', existing_type=sa.Integer(), nullable=False)
        op.alter_column('endpoints', 'free_bytes', existing_type=sa.BigInteger(),
                        nullable=False)
        op.alter_column('endpoints', 'total_bytes', existing_type=sa.BigInteger(),
                        nullable=False)
    op.drop_column('sites', 'rc_site')

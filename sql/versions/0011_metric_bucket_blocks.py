"""metric bucket blocks

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 21:45:00.000000

Closed bucket starts copied into one row each (``metric_bucket_blocks``, the
start's links as arrays), up to a mark per kind and source
(``metric_block_marks``). Both start empty: the aggregate cycle fills them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As netbroker.db.schema.BLOCK_ARRAYS names them, fixed here as of this revision.
_ARRAYS = ('src_site_id', 'dst_site_id', 'count', 'value_sum', 'weight_sum',
           'weighted_value_sum', 'last_ts_s')


def upgrade() -> None:
    op.create_table('metric_bucket_blocks',
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('bucket_start_s', sa.BigInteger(), nullable=False),
    sa.Column('links', sa.Integer(), nullable=False),
    *(sa.Column(f'{name}_array', sa.LargeBinary(), nullable=False) for name in _ARRAYS),
    sa.PrimaryKeyConstraint('kind', 'source', 'bucket_start_s',
                            name=op.f('pk_metric_bucket_blocks'))
    )
    op.create_table('metric_block_marks',
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('from_s', sa.BigInteger(), nullable=False),
    sa.Column('through_s', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('kind', 'source', name=op.f('pk_metric_block_marks'))
    )


def downgrade() -> None:
    op.drop_table('metric_block_marks')
    op.drop_table('metric_bucket_blocks')

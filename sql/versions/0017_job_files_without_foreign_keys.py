"""job files without foreign keys: the rows are written only with their job

Brokerage writes three or more file rows per job with its job, in one
transaction (a COPY on PostgreSQL); the per-row checks of the keys to jobs and
files were a third of the database's work per brokered job. Nothing deletes
jobs or catalog files; ``netbroker doctor`` counts rows whose job or file is
missing.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 08:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0017'
down_revision: str | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # SQLite has no ALTER for constraints: batch mode copies the table.
    with op.batch_alter_table('job_files', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('fk_job_files_job_id_jobs'), type_='foreignkey')
        batch_op.drop_constraint(op.f('fk_job_files_file_id_files'), type_='foreignkey')


def downgrade() -> None:
    with op.batch_alter_table('job_files', schema=None) as batch_op:
        batch_op.create_foreign_key(op.f('fk_job_files_file_id_files'), 'files', ['file_id'],
                                    ['id'])
        batch_op.create_foreign_key(op.f('fk_job_files_job_id_jobs'), 'jobs', ['job_id'],
                                    ['id'], ondelete='CASCADE')

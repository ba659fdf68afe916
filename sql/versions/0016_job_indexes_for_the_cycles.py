"""job indexes for the cycles: (task_id, status), retry_of, the CPU reports; partial

The brokerage cycle closes a running task when none of its jobs is in a
state that is not final, and counts the failed jobs no attempt retries;
the priority cycle sums the CPU time the jobs reported in a day: all three
were scans (of a task's jobs, of every job per failed job, of every job).
Each index holds only the rows it is for (jobs of a task, retries, jobs
that reported CPU time): a job's every state change writes an entry to each
index that holds it.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 22:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Index changes need no table copy on SQLite: no batch mode.
    op.drop_index('ix_jobs_task_id', table_name='jobs')
    op.create_index('ix_jobs_task_id', 'jobs', ['task_id', 'status'], unique=False,
                    postgresql_where=sa.text('task_id IS NOT NULL'),
                    sqlite_where=sa.text('task_id IS NOT NULL'))
    op.create_index('ix_jobs_retry_of', 'jobs', ['retry_of'], unique=False,
                    postgresql_where=sa.text('retry_of IS NOT NULL'),
                    sqlite_where=sa.text('retry_of IS NOT NULL'))
    op.create_index('ix_jobs_cpu_reported', 'jobs', ['modified_at'], unique=False,
                    postgresql_where=sa.text('cpu_time_s IS NOT NULL'),
                    sqlite_where=sa.text('cpu_time_s IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('ix_jobs_cpu_reported', table_name='jobs')
    op.drop_index('ix_jobs_retry_of', table_name='jobs')
    op.drop_index('ix_jobs_task_id', table_name='jobs')
    op.create_index('ix_jobs_task_id', 'jobs', ['task_id'], unique=False)

"""job indexes: (task_id, status), and retry_of

The brokerage cycle closes a running task when none of its jobs is in a
state that is not final, and counts the failed jobs no attempt retries:
both were scans (of a task's jobs, and of every job per failed job).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 22:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Index changes need no table copy on SQLite: no batch mode.
    op.drop_index('ix_jobs_task_id', table_name='jobs')
    op.create_index('ix_jobs_task_id', 'jobs', ['task_id', 'status'], unique=False)
    op.create_index('ix_jobs_retry_of', 'jobs', ['retry_of'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_jobs_retry_of', table_name='jobs')
    op.drop_index('ix_jobs_task_id', table_name='jobs')
    op.create_index('ix_jobs_task_id', 'jobs', ['task_id'], unique=False)

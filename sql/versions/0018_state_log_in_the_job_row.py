"""the state log in the job's row: jobs.state_log replaces the job_state_changes table

Every state change of a job wrote a second row, to ``job_state_changes``,
from the statement that changed the state (a data-modifying CTE on
PostgreSQL, a second statement on SQLite): its heap tuple, two index
entries and the check of its key to ``jobs``. That was about a third of
the database's work per dispatched job. The row a state change rewrites
anyway now carries the log: ``jobs.state_log``, one line per state, oldest
first, ``"<state> <UTC time, ISO 8601, microseconds>Z"``. The upgrade moves
the logged states there, in the order they were logged; the downgrade moves
them back.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 11:30:00.000000
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

import netbroker.db.schema

revision: str = '0018'
down_revision: str | None = '0017'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATES = ('defined', 'assigned', 'activated', 'sent', 'starting', 'running', 'transferring',
           'holding', 'finished', 'failed', 'cancelled', 'closed')
_CHUNK = 10_000


def upgrade() -> None:
    op.add_column('jobs', sa.Column('state_log', sa.Text(), server_default='',
                                    nullable=False))
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql':
        op.execute(
            "UPDATE jobs SET state_log = logged.lines FROM ("
            " SELECT job_id, string_agg(status || ' ' || to_char(at AT TIME ZONE 'UTC',"
            " 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') || E'\\n', '' ORDER BY id) AS lines"
            " FROM job_state_changes GROUP BY job_id) AS logged"
            " WHERE jobs.id = logged.job_id")
    else:
        # SQLite keeps the times as text, naive UTC ('YYYY-MM-DD HH:MM:SS.ffffff').
        rows = bind.execute(sa.text(
            "SELECT job_id, status, at FROM job_state_changes ORDER BY job_id, id"))
        update = sa.text("UPDATE jobs SET state_log = :lines WHERE id = :job_id")
        batch: list[dict[str, Any]] = []
        for job_id, lines in _per_job(rows):
            batch.append({"job_id": job_id, "lines": lines})
            if len(batch) == _CHUNK:
                bind.execute(update, batch)
                batch = []
        if batch:
            bind.execute(update, batch)
    op.drop_index('ix_job_state_changes_job_id', table_name='job_state_changes')
    op.drop_table('job_state_changes')


def _per_job(rows: Any) -> Iterator[tuple[int, str]]:
    """(job id, its log lines) from SQLite's (job id, state, time) rows in job order."""
    job, lines = None, []
    for job_id, status, at in rows:
        if job_id != job and job is not None:
            yield job, "".join(lines)
            lines = []
        job = job_id
        when = at if isinstance(at, datetime) else datetime.fromisoformat(str(at))
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
        lines.append(f"{status} {when:%Y-%m-%dT%H:%M:%S.%f}Z\n")
    if job is not None:
        yield job, "".join(lines)


def downgrade() -> None:
    op.create_table(
        'job_state_changes',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('job_id', sa.BigInteger(), nullable=False),
        sa.Column('status', sa.Enum(*_STATES, name='job_state_change_status',
                                    native_enum=False, create_constraint=True, length=16),
                  nullable=False),
        sa.Column('at', netbroker.db.schema.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['job_id'], ['jobs.id'],
                                name=op.f('fk_job_state_changes_job_id_jobs'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_job_state_changes')))
    op.create_index('ix_job_state_changes_job_id', 'job_state_changes', ['job_id'],
                    unique=False)
    bind = op.get_bind()
    sqlite = bind.dialect.name == 'sqlite'
    insert = sa.text("INSERT INTO job_state_changes (job_id, status, at) VALUES (:job_id, "
                     + (":status, :at)" if sqlite else ":status, CAST(:at AS TIMESTAMPTZ))"))
    batch: list[dict[str, Any]] = []
    for job_id, log in bind.execute(sa.text(
            "SELECT id, state_log FROM jobs WHERE state_log <> '' ORDER BY id")).all():
        for line in log.splitlines():
            status, _, stamp = line.partition(' ')
            # Back as each backend kept it: naive UTC text on SQLite, a UTC timestamptz.
            at = stamp.rstrip('Z').replace('T', ' ') if sqlite else stamp
            batch.append({"job_id": job_id, "status": status, "at": at})
        if len(batch) >= _CHUNK:
            bind.execute(insert, batch)
            batch = []
    if batch:
        bind.execute(insert, batch)
    # Not batch mode: SQLite (3.35 on) drops a plain column in place, where a copy of
    # jobs would take the rows of every table whose key cascades from it.
    op.drop_column('jobs', 'state_log')

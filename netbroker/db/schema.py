"""The schema: one SQLAlchemy ``MetaData``, the single source of truth.

Alembic migrations in ``sql/versions`` are generated from this module and a
test checks that they do not drift from it. Tables use integer surrogate
keys (arrays in the core are indexed by them) and unique natural names (what
operators and the wire protocols speak).

Network metrics: raw ``metric_samples`` (one row per measurement, unique
per source and origin id, pruned after a retention) fold into
``metric_buckets`` (per link, source, kind and time bucket: count and sums),
so 1h/1d/1w windows are sums over buckets, never rescans of history. The
aggregate cycle copies each closed bucket start of a kind and source into
one ``metric_bucket_blocks`` row (the start's links as arrays), up to the
``metric_block_marks`` of that kind and source, so a matrix reads a few
blocks instead of a row per link; writes to a blocked start rebuild its block.

The grid registry::

    clouds ──< sites ──< queues ──< queue_storages >──┐
       │         ├────< endpoints ──< replicas >── datasets ──< files
       │         │          └─────< endpoint_protocols
       └ tier1 ──┘└───< site_hosts, site_subnets

A storage endpoint's space is NULL until a space report gives it; a queue's
``max_walltime_s`` is NULL for no limit (CRIC's ``maxtime 0``).
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from netbroker.common.enums import (
    PROTOCOL_ACTIVITIES,
    EventRangeStatus,
    JobStatus,
    ProcessingType,
    QueueType,
    ReplicaState,
    SiteStatus,
    TaskStatus,
)

__all__ = [
    "BLOCK_ARRAYS",
    "UTCDateTime",
    "api_tokens",
    "brokerage_decisions",
    "cloud_members",
    "cloud_membership_history",
    "clouds",
    "collector_pull_cursors",
    "config_audit",
    "config_overrides",
    "cycles",
    "dataset_accesses",
    "datasets",
    "endpoint_protocols",
    "endpoints",
    "event_ranges",
    "file_replicas",
    "files",
    "job_files",
    "job_logs",
    "jobs",
    "metadata",
    "metric_block_marks",
    "metric_bucket_blocks",
    "metric_buckets",
    "metric_samples",
    "priority_boosts",
    "queue_storages",
    "queues",
    "rebrokerages",
    "replicas",
    "replication_decisions",
    "site_hosts",
    "site_subnets",
    "sites",
    "tasks",
]

# Constraint names must be stable for Alembic (and SQLite batch migrations).
metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)




class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """An aware UTC datetime on every backend.

    SQLite keeps no zone: values are stored as naive UTC and given back
    aware, so the core only ever sees aware UTC datetimes.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: netbroker stores aware UTC only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _enum(cls: type[enum.StrEnum], name: str) -> sa.Enum:
    """A portable enum column: VARCHAR plus a CHECK constraint, values lower-case."""
    return sa.Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


def _updated_at() -> sa.Column[Any]:
    return sa.Column("updated_at", UTCDateTime(), nullable=False)


clouds = sa.Table(
    "clouds",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    # clouds <-> sites is a cycle; the key is added after both tables exist.
    sa.Column(
        "tier1_site_id",
        sa.Integer,
        sa.ForeignKey("sites.id", use_alter=True, ondelete="SET NULL"),
        nullable=True,
    ),
    _updated_at(),
)

sites = sa.Table(
    "sites",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("cloud_id", sa.Integer, sa.ForeignKey("clouds.id"), nullable=False, index=True),
    sa.Column("tier", sa.SmallInteger, nullable=False),
    sa.Column("country", sa.String(64), nullable=False, server_default=""),
    sa.Column("status", _enum(SiteStatus, "site_status"), nullable=False),
    sa.Column("is_nucleus", sa.Boolean, nullable=False, server_default=sa.false()),
    _updated_at(),
    # The WLCG resource centre (CRIC's rc_site) the site belongs to; queues,
    # endpoints and network routes may name a site by it.
    sa.Column("rc_site", sa.String(128), nullable=True),
    sa.CheckConstraint("tier >= 0 AND tier <= 3", name="tier_range"),
)

site_hosts = sa.Table(
    "site_hosts",
    metadata,
    # A perfSONAR host belongs to one site; a network domain may be shared
    # (DESY-HH and DESY-ZN are both desy.de), so the site is part of the key.
    sa.Column(
        "site_id", sa.Integer, sa.ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("role", sa.String(16), primary_key=True),
    sa.Column("host", sa.String(255), primary_key=True, index=True),
    sa.CheckConstraint("role IN ('domain', 'perfsonar')", name="role_known"),
)

queues = sa.Table(
    "queues",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("site_id", sa.Integer, sa.ForeignKey("sites.id"), nullable=False, index=True),
    sa.Column("panda_resource", sa.String(128), nullable=False),
    sa.Column("queue_type", _enum(QueueType, "queue_type"), nullable=False),
    sa.Column("status", _enum(SiteStatus, "queue_status"), nullable=False),
    sa.Column("cores", sa.Integer, nullable=False),
    sa.Column("max_memory_mb", sa.Integer, nullable=False),
    sa.Column("max_walltime_s", sa.Integer, nullable=True),  # NULL: no limit
    sa.Column("max_disk_mb", sa.Integer, nullable=False),
    sa.Column("pilot_slots", sa.Integer, nullable=False),
    sa.Column("hs06_per_core", sa.Float, nullable=True),
    _updated_at(),
    # JSON as CRIC gives them ({"mv": {"setup": ""}}, {"pw": ["mv"]}); NULL when
    # the registry was not told: the queue description derives them from the
    # protocols of the queue's storages.
    sa.Column("copytools", sa.Text, nullable=True),
    sa.Column("acopytools", sa.Text, nullable=True),
    # CRIC's catchall: switches the pilot reads from its queue description (say
    # mv_final_destination, for mv to read and write the storage itself); NULL: none.
    sa.Column("catchall", sa.String(1024), nullable=True),
    sa.CheckConstraint("cores >= 1", name="cores_positive"),
    sa.CheckConstraint("max_memory_mb >= 0 AND max_walltime_s >= 0", name="limits_not_negative"),
    sa.CheckConstraint("pilot_slots >= 0", name="slots_not_negative"),
)

endpoints = sa.Table(
    "endpoints",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("site_id", sa.Integer, sa.ForeignKey("sites.id"), nullable=False, index=True),
    sa.Column("endpoint_type", sa.String(32), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("url", sa.String(512), nullable=False, server_default=""),
    sa.Column("host", sa.String(255), nullable=False, server_default=""),
    # Space is unknown (NULL) until reported: CRIC's endpoints carry none.
    sa.Column("total_bytes", sa.BigInteger, nullable=True),
    sa.Column("free_bytes", sa.BigInteger, nullable=True),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    _updated_at(),
    sa.CheckConstraint("kind IN ('disk', 'tape')", name="kind_known"),
    sa.CheckConstraint("free_bytes >= 0 AND free_bytes <= total_bytes", name="space_consistent"),
)

datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("scope", sa.String(64), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("scope", "name"),
)

files = sa.Table(
    "files",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "dataset_id", sa.Integer, sa.ForeignKey("datasets.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("guid", sa.String(36), nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("adler32", sa.String(8), nullable=False, server_default=""),
    sa.UniqueConstraint("dataset_id", "name"),
    sa.CheckConstraint("bytes >= 0", name="bytes_not_negative"),
)

replicas = sa.Table(
    "replicas",
    metadata,
    sa.Column(
        "dataset_id", sa.Integer, sa.ForeignKey("datasets.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "endpoint_id", sa.Integer, sa.ForeignKey("endpoints.id"), primary_key=True, index=True
    ),
    sa.Column("state", _enum(ReplicaState, "replica_state"), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    # Who made it ("catalog": imported; "pd2p": a replication decision) and,
    # for PD2P's, when its lifetime ends (then it is proposed for clean-up).
    sa.Column("origin", sa.String(16), nullable=False, server_default="catalog"),
    sa.Column("expires_at", UTCDateTime(), nullable=True),
)

endpoint_protocols = sa.Table(
    "endpoint_protocols",
    metadata,
    # One protocol of an endpoint as CRIC describes it: ``url`` is CRIC's
    # "endpoint" (scheme://host:port), ``path`` the prefix files go under; a
    # priority per activity (1 first choice, 0 not used for it). ``protocol_id``
    # is CRIC's id when it gave one, else one unique within the endpoint.
    sa.Column(
        "endpoint_id", sa.Integer, sa.ForeignKey("endpoints.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("protocol_id", sa.Integer, primary_key=True),
    sa.Column("position", sa.SmallInteger, nullable=False),
    sa.Column("url", sa.String(512), nullable=False),
    sa.Column("scheme", sa.String(16), nullable=False),
    sa.Column("host", sa.String(255), nullable=False, server_default=""),
    sa.Column("port", sa.Integer, nullable=True),
    sa.Column("path", sa.String(512), nullable=False, server_default=""),
    sa.Column("flavour", sa.String(32), nullable=False, server_default=""),
    *[sa.Column(a, sa.SmallInteger, nullable=False, server_default="0")
      for a in PROTOCOL_ACTIVITIES],
    sa.CheckConstraint(" AND ".join(f"{a} >= 0" for a in PROTOCOL_ACTIVITIES),
                       name="priorities_not_negative"),
)

queue_storages = sa.Table(
    "queue_storages",
    metadata,
    # A queue's astorages: per activity (read_lan, write_lan, pr, pw, ...) its
    # storage endpoints in order, the first the default.
    sa.Column(
        "queue_id", sa.Integer, sa.ForeignKey("queues.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("activity", sa.String(32), primary_key=True),
    sa.Column("position", sa.SmallInteger, primary_key=True),
    sa.Column("endpoint_id", sa.Integer, sa.ForeignKey("endpoints.id"), nullable=False,
              index=True),
)

site_subnets = sa.Table(
    "site_subnets",
    metadata,
    # The IPv4/IPv6 networks of a site (CRIC netsites and netroutes), which map
    # a host to its site by address when its name does not. ``cidr`` is the
    # network in its normal form (``ipaddress.ip_network(...).compressed``).
    sa.Column(
        "site_id", sa.Integer, sa.ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("cidr", sa.String(49), primary_key=True),
    sa.Column("family", sa.SmallInteger, nullable=False),
    sa.Column("netroute", sa.String(128), nullable=False, server_default=""),
    sa.CheckConstraint("family IN (4, 6)", name="family_known"),
)


file_replicas = sa.Table(
    "file_replicas",
    metadata,
    # One file's copy at an endpoint, as a pilot reported writing it (a job's
    # outputs and log): a dataset made by jobs at several sites lies in pieces,
    # so its replicas are kept file by file; the dataset's replica at an endpoint
    # is available once every file of the dataset has a copy there.
    sa.Column("file_id", sa.Integer, sa.ForeignKey("files.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("endpoint_id", sa.Integer, sa.ForeignKey("endpoints.id", ondelete="CASCADE"),
              primary_key=True, index=True),
    sa.Column("url", sa.String(2048), nullable=False, server_default=""),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)


metric_samples = sa.Table(
    "metric_samples",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    # 64 bits of a hash of (source, origin_id): the idempotency key. Eight
    # bytes index and compare far faster than 100-character transfer ids,
    # and a collision needs ~4e9 samples in the retention to become likely.
    sa.Column("origin_key", sa.BigInteger, nullable=False, unique=True),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("origin_id", sa.String(255), nullable=False),
    sa.Column("src_site_id", sa.Integer, sa.ForeignKey("sites.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("dst_site_id", sa.Integer, sa.ForeignKey("sites.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    # Epoch seconds, UTC: the sources' own clock, cheap to bucket and compare.
    # Not indexed: only the occasional prune reads by time, and every index
    # costs each of the millions of inserts a day.
    sa.Column("ts_s", sa.Float, nullable=False),
    sa.Column("weight", sa.Float, nullable=False),
    sa.Column("source_unit", sa.String(32), nullable=False),
)

metric_buckets = sa.Table(
    "metric_buckets",
    metadata,
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("bucket_start_s", sa.BigInteger, nullable=False),
    sa.Column("src_site_id", sa.Integer, sa.ForeignKey("sites.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("dst_site_id", sa.Integer, sa.ForeignKey("sites.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("value_sum", sa.Float, nullable=False),
    sa.Column("weight_sum", sa.Float, nullable=False),
    sa.Column("weighted_value_sum", sa.Float, nullable=False),
    sa.Column("last_ts_s", sa.Float, nullable=False),
    # Key order serves both writers (one upsert per bucket) and readers: a
    # window of one kind and source is one range of bucket starts, so a
    # reader of one source never steps over the others' rows (the matrix
    # reads each source once). No second index.
    sa.PrimaryKeyConstraint("kind", "source", "bucket_start_s", "src_site_id", "dst_site_id"),
    sqlite_with_rowid=False,  # the key is the table: one B-tree per upsert, not two
)

# The columns of a block: per bucket column, the start's values as one
# little-endian array, the links in (src_site_id, dst_site_id) order.
BLOCK_ARRAYS = (("src_site_id", "<i4"), ("dst_site_id", "<i4"), ("count", "<i8"),
                ("value_sum", "<f8"), ("weight_sum", "<f8"), ("weighted_value_sum", "<f8"),
                ("last_ts_s", "<f8"))

metric_bucket_blocks = sa.Table(
    "metric_bucket_blocks",
    metadata,
    # A copy of the metric_buckets rows of one closed bucket start of a kind
    # and source, as arrays (BLOCK_ARRAYS), so a window reads one row per
    # start instead of one per link. The rows stay the truth: every other
    # reader reads them, and a block is rebuilt from them whenever they
    # change (netbroker.db.metrics.MetricsDB). No foreign key: site ids are
    # inside the arrays (sites are never deleted).
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("bucket_start_s", sa.BigInteger, nullable=False),
    sa.Column("links", sa.Integer, nullable=False),
    *(sa.Column(f"{name}_array", sa.LargeBinary, nullable=False) for name, _ in BLOCK_ARRAYS),
    sa.PrimaryKeyConstraint("kind", "source", "bucket_start_s"),
)

metric_block_marks = sa.Table(
    "metric_block_marks",
    metadata,
    # Per kind and source: every bucket start in [from_s, through_s] that has
    # bucket rows has its block, equal to them. Starts after through_s have
    # none; blocks before from_s are dropped (no window reaches them).
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("from_s", sa.BigInteger, nullable=False),
    sa.Column("through_s", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("kind", "source"),
)

collector_pull_cursors = sa.Table(
    "collector_pull_cursors",
    metadata,
    # Where a pull collector stopped reading one series of one archive, so the
    # next pull asks for what came after: per esmond archive URL and series
    # ("<metadata-key>/<event-type>/<summary>/<window>", or "metadata"), the
    # newest point time read (through_s); per pScheduler runs URL ("runs"),
    # the start time of the oldest run not yet final.
    sa.Column("archive_url", sa.String(1024), nullable=False),
    sa.Column("series", sa.String(255), nullable=False),
    sa.Column("through_s", sa.Float, nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("archive_url", "series"),
)


tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("user_name", sa.String(64), nullable=False),
    sa.Column("working_group", sa.String(64), nullable=False, server_default=""),
    sa.Column("processing_type", _enum(ProcessingType, "processing_type"), nullable=False),
    sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id"), nullable=False),
    sa.Column("transformation", sa.String(512), nullable=False),
    # The job parameters, with $IN, $OUT, $FIRST_EVENT, $MAX_EVENTS, $JOB filled per job.
    sa.Column("job_pars", sa.Text, nullable=False, server_default=""),
    sa.Column("cores", sa.Integer, nullable=False),
    sa.Column("memory_mb", sa.Integer, nullable=False),
    # Wall time of a full-size job (files_per_job files); jobs are fitted to
    # each queue's limit from it, as JEDI does.
    sa.Column("walltime_s", sa.Integer, nullable=False),
    sa.Column("files_per_job", sa.Integer, nullable=False),
    sa.Column("events_per_job", sa.Integer, nullable=True),
    sa.Column("events_per_file", sa.Integer, nullable=True),
    # Event service: each job's events are handed to pilots in ranges of this many.
    sa.Column("event_service", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("events_per_range", sa.Integer, nullable=True),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    # A task pinned to a site is brokered there only and never rebrokered.
    sa.Column("site_id", sa.Integer, sa.ForeignKey("sites.id"), nullable=True),
    sa.Column("cloud_id", sa.Integer, sa.ForeignKey("clouds.id"), nullable=True),
    sa.Column("nucleus_site_id", sa.Integer, sa.ForeignKey("sites.id"), nullable=True),
    sa.Column("status", _enum(TaskStatus, "task_status"), nullable=False),
    sa.Column("reason", sa.String(512), nullable=False, server_default=""),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("modified_at", UTCDateTime(), nullable=False),
    sa.CheckConstraint("cores >= 1 AND memory_mb >= 0 AND walltime_s >= 1 "
                       "AND files_per_job >= 1 AND max_attempts >= 1", name="task_valid"),
)

brokerage_decisions = sa.Table(
    "brokerage_decisions",
    metadata,
    # One row per decision: a task to a cloud or nucleus, a task's jobs to
    # queues, or a rebrokerage. ``candidates`` is JSON: every candidate with
    # the filter that removed it or its terms, score and draw share.
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("task_id", sa.Integer, sa.ForeignKey("tasks.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("seed", sa.BigInteger, nullable=False),
    sa.Column("chosen", sa.Text, nullable=False),
    sa.Column("summary", sa.String(512), nullable=False),
    sa.Column("weights", sa.Text, nullable=False),
    sa.Column("candidates", sa.Text, nullable=False),
    sa.CheckConstraint("kind IN ('task', 'job', 'rebrokerage')", name="kind_known"),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("task_id", sa.Integer, sa.ForeignKey("tasks.id"), nullable=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("status", _enum(JobStatus, "job_status"), nullable=False),
    sa.Column("queue_id", sa.Integer, sa.ForeignKey("queues.id"), nullable=True),
    sa.Column("prod_source_label", sa.String(32), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("attempt_nr", sa.Integer, nullable=False, server_default="1"),
    sa.Column("max_attempts", sa.Integer, nullable=False, server_default="3"),
    # The failed attempt this job retries (PanDA gives each attempt a new id).
    sa.Column("retry_of", sa.BigInteger, sa.ForeignKey("jobs.id"), nullable=True),
    sa.Column("cores", sa.Integer, nullable=False),
    sa.Column("min_ram_mb", sa.Integer, nullable=False),
    sa.Column("max_disk_mb", sa.Integer, nullable=False),
    sa.Column("max_walltime_s", sa.Integer, nullable=False),
    sa.Column("transformation", sa.String(512), nullable=False),
    sa.Column("job_pars", sa.Text, nullable=False, server_default=""),
    sa.Column("pilot_id", sa.String(255), nullable=True),
    sa.Column("node", sa.String(255), nullable=True),
    sa.Column("exit_code", sa.Integer, nullable=True),
    sa.Column("pilot_error_code", sa.Integer, nullable=True),
    sa.Column("error_diag", sa.Text, nullable=True),
    sa.Column("cpu_time_s", sa.Float, nullable=True),
    sa.Column("max_rss_kb", sa.BigInteger, nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("modified_at", UTCDateTime(), nullable=False),
    sa.Column("heartbeat_at", UTCDateTime(), nullable=True),
    sa.Column("user_name", sa.String(64), nullable=False, server_default=""),
    sa.Column("working_group", sa.String(64), nullable=False, server_default=""),
    # ``priority`` is recomputed from this (fair share, boosts, aging, failures).
    sa.Column("base_priority", sa.Integer, nullable=False, server_default="0"),
    # When the job last started waiting (assigned/activated): aging counts from it.
    sa.Column("waiting_since", UTCDateTime(), nullable=True),
    sa.Column("input_bytes", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("brokerage_id", sa.BigInteger,
              sa.ForeignKey("brokerage_decisions.id", ondelete="SET NULL"), nullable=True),
    sa.Column("rebrokerages", sa.Integer, nullable=False, server_default="0"),
    sa.Column("pinned", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("event_service", sa.Boolean, nullable=False, server_default=sa.false()),
    # The token (by name) of the pilot that took the job: only it may report on it.
    sa.Column("owner", sa.String(64), nullable=True),
    # The log extracts its pilot sent with the final report (PanDA's pilotLog), the
    # tail of at most netbroker.common.text.LOG_TAIL_CHARS.
    sa.Column("pilot_log", sa.Text, nullable=True),
    # Every state the job has been in, oldest first, one line each: "<state> <UTC
    # time, ISO 8601>" (netbroker.db.jobs.state_entry). Written by the statement that
    # changes the state, in the row it rewrites anyway: a log table cost the
    # dispatcher a second row, index entries and a key check per change.
    sa.Column("state_log", sa.Text, nullable=False, server_default=""),
    sa.CheckConstraint("cores >= 1 AND min_ram_mb >= 0 AND max_disk_mb >= 0 "
                       "AND max_walltime_s >= 0", name="resources_valid"),
    # Acquisition reads the best activated job of a queue: this index is its plan.
    sa.Index("ix_jobs_acquire", "queue_id", "status", "priority", "id"),
    # The priority and rebrokerage cycles read the waiting jobs.
    sa.Index("ix_jobs_status", "status"),
    # Tasks list their jobs, and a task ends when none is in a state that is not
    # final: a look-up per task and state, not a scan of its jobs. Partial, as
    # the next: every change of a job's state writes a new entry to each index
    # that holds it, so the jobs of no task, and first attempts, are in neither.
    sa.Index("ix_jobs_task_id", "task_id", "status",
             postgresql_where=sa.text("task_id IS NOT NULL"),
             sqlite_where=sa.text("task_id IS NOT NULL")),
    # A job is its task's last attempt when no job retries it.
    sa.Index("ix_jobs_retry_of", "retry_of", postgresql_where=sa.text("retry_of IS NOT NULL"),
             sqlite_where=sa.text("retry_of IS NOT NULL")),
    # Fair share sums the CPU time of the jobs that reported some, by when they
    # last changed: those only, not every waiting job.
    sa.Index("ix_jobs_cpu_reported", "modified_at",
             postgresql_where=sa.text("cpu_time_s IS NOT NULL"),
             sqlite_where=sa.text("cpu_time_s IS NOT NULL")),
)

job_files = sa.Table(
    "job_files",
    metadata,
    # A job's input files (from the catalog) and its output and log files
    # (named at definition; size and checksum filled when the pilot reports).
    # No foreign keys (as PanDA's filesTable4 has none): the rows are written
    # only with their job, in its transaction (brokerage's COPY, a retry), and
    # nothing deletes jobs or catalog files; checked per row, the two keys were
    # a third of the database's work per brokered job. ``netbroker doctor``
    # counts rows whose job or file is missing.
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("job_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("lfn", sa.String(255), nullable=False),
    sa.Column("scope", sa.String(64), nullable=False),
    sa.Column("dataset", sa.String(255), nullable=False),
    sa.Column("file_id", sa.Integer, nullable=True),
    sa.Column("bytes", sa.BigInteger, nullable=True),
    sa.Column("guid", sa.String(36), nullable=True),
    sa.Column("adler32", sa.String(8), nullable=True),
    sa.CheckConstraint("kind IN ('input', 'output', 'log')", name="kind_known"),
)

job_logs = sa.Table(
    "job_logs",
    metadata,
    # The log a pilot uploads when it ends a job (its own lines and the payload's
    # output tails), shown on the job's monitor page.
    sa.Column("job_id", sa.BigInteger, sa.ForeignKey("jobs.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("content", sa.LargeBinary, nullable=False),
    sa.Column("media_type", sa.String(64), nullable=False),
    sa.Column("uploaded_at", UTCDateTime(), nullable=False),
)

rebrokerages = sa.Table(
    "rebrokerages",
    metadata,
    # History of moves: a job taken from one queue to another, and why.
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("job_id", sa.BigInteger, sa.ForeignKey("jobs.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("from_queue_id", sa.Integer, sa.ForeignKey("queues.id"), nullable=False),
    sa.Column("to_queue_id", sa.Integer, sa.ForeignKey("queues.id"), nullable=False),
    sa.Column("decision_id", sa.BigInteger,
              sa.ForeignKey("brokerage_decisions.id", ondelete="SET NULL"), nullable=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("reason", sa.String(512), nullable=False),
)

priority_boosts = sa.Table(
    "priority_boosts",
    metadata,
    # An operator's rule: jobs of a user or a working group gain ``value``
    # at a site, in a cloud, or everywhere (both NULL), until it expires.
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_name", sa.String(64), nullable=True),
    sa.Column("working_group", sa.String(64), nullable=True),
    sa.Column("site_id", sa.Integer, sa.ForeignKey("sites.id", ondelete="CASCADE"),
              nullable=True),
    sa.Column("cloud_id", sa.Integer, sa.ForeignKey("clouds.id", ondelete="CASCADE"),
              nullable=True),
    sa.Column("value", sa.Integer, nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", sa.String(64), nullable=False, server_default=""),
    sa.Column("comment", sa.String(255), nullable=False, server_default=""),
    sa.CheckConstraint("user_name IS NOT NULL OR working_group IS NOT NULL", name="who_given"),
    sa.CheckConstraint("site_id IS NULL OR cloud_id IS NULL", name="one_place"),
)

event_ranges = sa.Table(
    "event_ranges",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("job_id", sa.BigInteger, sa.ForeignKey("jobs.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("first_event", sa.Integer, nullable=False),
    sa.Column("last_event", sa.Integer, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="1"),
    sa.Column("status", _enum(EventRangeStatus, "event_range_status"), nullable=False),
    sa.Column("pilot_id", sa.String(255), nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.CheckConstraint("first_event >= 0 AND last_event >= first_event", name="events_valid"),
    sa.Index("ix_event_ranges_job_status", "job_id", "status", "id"),
)

cloud_members = sa.Table(
    "cloud_members",
    metadata,
    # Foreign calculated members only: a site's home cloud is in ``sites``.
    sa.Column("cloud_id", sa.Integer, sa.ForeignKey("clouds.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("site_id", sa.Integer, sa.ForeignKey("sites.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("joined_at", UTCDateTime(), nullable=False),
    sa.Column("stale_cycles", sa.Integer, nullable=False, server_default="0"),
)

cloud_membership_history = sa.Table(
    "cloud_membership_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("cloud_id", sa.Integer, sa.ForeignKey("clouds.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("site_id", sa.Integer, sa.ForeignKey("sites.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("change", sa.String(8), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False, index=True),
    # The measurements that decided it (NULL: not measured).
    sa.Column("mbytes_per_s", sa.Float, nullable=True),
    sa.Column("packet_loss_fraction", sa.Float, nullable=True),
    sa.Column("samples", sa.Integer, nullable=False),
    sa.Column("reason", sa.String(255), nullable=False),
    sa.CheckConstraint("change IN ('joined', 'left')", name="change_known"),
)

dataset_accesses = sa.Table(
    "dataset_accesses",
    metadata,
    # Popularity: one row per brokered analysis task and input dataset.
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("task_id", sa.Integer, sa.ForeignKey("tasks.id", ondelete="SET NULL"),
              nullable=True),
    sa.Column("user_name", sa.String(64), nullable=False),
    sa.Column("jobs", sa.Integer, nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Index("ix_dataset_accesses_dataset_id_at", "dataset_id", "at"),
)

replication_decisions = sa.Table(
    "replication_decisions",
    metadata,
    # The DDM feed: ids only grow, and are committed in order (see netbroker.placement.pd2p).
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("target_endpoint_id", sa.Integer, sa.ForeignKey("endpoints.id"), nullable=False,
              index=True),
    sa.Column("sources", sa.Text, nullable=False),      # JSON: ranked source endpoints
    sa.Column("candidates", sa.Text, nullable=False),   # JSON: every target weighed
    sa.Column("reason", sa.String(1024), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("failure_reason", sa.String(1024), nullable=True),
    sa.Column("lifetime_days", sa.Float, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.CheckConstraint("state IN ('new', 'acknowledged', 'done', 'failed', 'expired')",
                       name="state_known"),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    # Bearer tokens: only a SHA-256 of each is kept; the token is shown once.
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    sa.CheckConstraint("role IN ('pilot', 'user', 'operator', 'ddm', 'analyst', 'admin')",
                       name="role_known"),
)

config_overrides = sa.Table(
    "config_overrides",
    metadata,
    # Settings changed at runtime by operators (a dotted key, its value as JSON);
    # they override the file and the environment for the tunable groups.
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("updated_by", sa.String(64), nullable=False),
)

config_audit = sa.Table(
    "config_audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", UTCDateTime(), nullable=False, index=True),
    sa.Column("who", sa.String(64), nullable=False),
    sa.Column("key", sa.String(128), nullable=False),
    sa.Column("old", sa.Text, nullable=False),   # JSON
    sa.Column("new", sa.Text, nullable=False),   # JSON
)

cycles = sa.Table(
    "cycles",
    metadata,
    # One row per periodic cycle: who holds its lease (exactly one service
    # process runs a cycle) and how its last run went.
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(128), nullable=True),
    sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
    sa.Column("last_started_at", UTCDateTime(), nullable=True),
    sa.Column("last_finished_at", UTCDateTime(), nullable=True),
    sa.Column("last_duration_s", sa.Float, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("runs", sa.Integer, nullable=False, server_default="0"),
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    # The period the holder runs it at, s: a reader tells an overdue cycle by it.
    sa.Column("period_s", sa.Float, nullable=True),
    # The last run that ended well, the last that failed and why: a cycle that
    # fails now and then shows its last failure after later runs succeed.
    sa.Column("last_succeeded_at", UTCDateTime(), nullable=True),
    sa.Column("last_failed_at", UTCDateTime(), nullable=True),
    sa.Column("last_failure", sa.Text, nullable=True),
)



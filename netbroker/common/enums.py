"""The enums the schema stores and the protocols speak, and the one clock.

PanDA's names for site, queue, job, task, event-range and replica states;
the storage endpoint kinds and protocol activities CRIC names; ``utcnow``,
the aware-UTC time netbroker stores.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime

__all__ = [
    "ENDPOINT_KINDS",
    "PROTOCOL_ACTIVITIES",
    "EventRangeStatus",
    "JobStatus",
    "ProcessingType",
    "QueueType",
    "ReplicaState",
    "SiteStatus",
    "TaskStatus",
    "utcnow",
]


class SiteStatus(enum.StrEnum):
    """Status of a site or a queue, as PanDA names it."""

    ONLINE = "online"
    OFFLINE = "offline"
    TEST = "test"
    BROKEROFF = "brokeroff"


class QueueType(enum.StrEnum):
    """What a compute queue runs."""

    PRODUCTION = "production"
    ANALYSIS = "analysis"
    UNIFIED = "unified"


class JobStatus(enum.StrEnum):
    """A job's state, as PanDA names them (see ``netbroker.common.lifecycle`` for the moves)."""

    DEFINED = "defined"
    ASSIGNED = "assigned"
    ACTIVATED = "activated"
    SENT = "sent"
    STARTING = "starting"
    RUNNING = "running"
    TRANSFERRING = "transferring"
    HOLDING = "holding"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"
    CLOSED = "closed"


class ProcessingType(enum.StrEnum):
    """What a task is: managed production or a user's analysis."""

    PRODUCTION = "production"
    ANALYSIS = "analysis"


class TaskStatus(enum.StrEnum):
    """A task's state: brokered into jobs, or waiting for a candidate."""

    REGISTERED = "registered"  # accepted, not brokered yet
    PENDING = "pending"        # no candidate passed; the brokerage cycle retries
    RUNNING = "running"        # its jobs are defined
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class EventRangeStatus(enum.StrEnum):
    """An event range's state in the event service."""

    READY = "ready"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ReplicaState(enum.StrEnum):
    """Whether a dataset replica can be read yet."""

    AVAILABLE = "available"
    PENDING = "pending"


ENDPOINT_KINDS = ("disk", "tape")

# What a storage protocol may be used for, as CRIC's arprotocols name it: one
# priority column each in ``endpoint_protocols`` (1 first choice, 0 not used).
PROTOCOL_ACTIVITIES = ("read_lan", "read_wan", "write_lan", "write_wan", "delete_lan",
                       "delete_wan")


def utcnow() -> datetime:
    """The current time, aware UTC (the only kind of datetime netbroker stores)."""
    return datetime.now(UTC)

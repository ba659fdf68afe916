"""The job lifecycle: PanDA's states and the moves between them.

::

    defined -> assigned -> activated -> sent -> starting -> running -> transferring
                                          |                    |            |
                                          v                    v            v
                              (activated again when     finished | failed | holding
                               the pilot never starts)

plus ``cancelled`` from any live state and ``closed`` after a final one. A
move not in :data:`TRANSITIONS` is refused (``InvalidTransition``) and
changes nothing; ``running -> running`` is a heartbeat.
"""

from __future__ import annotations

from netbroker.db.schema import JobStatus

__all__ = ["FINAL", "LIVE", "TRANSITIONS", "JobStatus", "allowed_sources"]

S = JobStatus
FINAL = frozenset({S.FINISHED, S.FAILED, S.CANCELLED})
LIVE = frozenset({S.SENT, S.STARTING, S.RUNNING, S.TRANSFERRING, S.HOLDING})

TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    S.DEFINED: frozenset({S.ASSIGNED, S.CANCELLED}),
    S.ASSIGNED: frozenset({S.ACTIVATED, S.DEFINED, S.CANCELLED}),
    S.ACTIVATED: frozenset({S.SENT, S.ASSIGNED, S.CANCELLED}),
    # A pilot may report its final state right after starting (very short
    # payloads); the watchdog sends a never-started job back to activated.
    S.SENT: frozenset({S.STARTING, S.RUNNING, S.FINISHED, S.FAILED, S.ACTIVATED,
                       S.CANCELLED}),
    S.STARTING: frozenset({S.STARTING, S.RUNNING, S.TRANSFERRING, S.FINISHED, S.FAILED,
                           S.CANCELLED}),
    S.RUNNING: frozenset({S.RUNNING, S.TRANSFERRING, S.HOLDING, S.FINISHED, S.FAILED,
                          S.CANCELLED}),
    S.TRANSFERRING: frozenset({S.TRANSFERRING, S.HOLDING, S.FINISHED, S.FAILED,
                               S.CANCELLED}),
    S.HOLDING: frozenset({S.HOLDING, S.TRANSFERRING, S.FINISHED, S.FAILED, S.CANCELLED}),
    S.FINISHED: frozenset({S.CLOSED}),
    S.FAILED: frozenset({S.CLOSED}),
    S.CANCELLED: frozenset({S.CLOSED}),
    S.CLOSED: frozenset(),
}


def allowed_sources(target: JobStatus) -> frozenset[JobStatus]:
    """The states a job may be in to move to ``target``.

    >>> sorted(allowed_sources(JobStatus.SENT))
    [<JobStatus.ACTIVATED: 'activated'>]
    """
    return frozenset(src for src, targets in TRANSITIONS.items() if target in targets)

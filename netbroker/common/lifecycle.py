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

A pilot moves only its own job, and only forward through the states it
reports (:data:`PILOT_TARGETS`, :func:`pilot_sources`): the server's moves
(activated, assigned, defined, cancelled, closed) are not a pilot's to make.
"""

from __future__ import annotations

import functools

from netbroker.common.enums import JobStatus

__all__ = ["FINAL", "LIVE", "PILOT_TARGETS", "TRANSITIONS", "JobStatus", "allowed_sources",
           "pilot_sources"]

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


@functools.cache  # asked on every report: the table does not change
def allowed_sources(target: JobStatus) -> frozenset[JobStatus]:
    """The states a job may be in to move to ``target``.

    >>> sorted(allowed_sources(JobStatus.SENT))
    [<JobStatus.ACTIVATED: 'activated'>]
    """
    return frozenset(src for src, targets in TRANSITIONS.items() if target in targets)


# The states a pilot reports: its job starting, running, moving its outputs,
# waiting for them (holding), and how it ended.
PILOT_TARGETS = frozenset({S.STARTING, S.RUNNING, S.TRANSFERRING, S.HOLDING, S.FINISHED,
                           S.FAILED})


@functools.cache
def pilot_sources(target: JobStatus) -> frozenset[JobStatus]:
    """The states a job may be in for its pilot to move it to ``target``: the live
    ones :func:`allowed_sources` allows, and none for a state a pilot may not report.

    >>> sorted(state.value for state in pilot_sources(JobStatus.RUNNING))
    ['running', 'sent', 'starting']
    >>> pilot_sources(JobStatus.ACTIVATED), pilot_sources(JobStatus.CLOSED)
    (frozenset(), frozenset())
    """
    if target not in PILOT_TARGETS:
        return frozenset()
    return allowed_sources(target) & LIVE

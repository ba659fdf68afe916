"""The netbroker error tree: domain errors raised by the core.

The core never speaks HTTP; the API edge maps each class to a status code
once (``netbroker.api.errors``). Every error carries the identifiers that
explain it, so a message can name the record and the field that was wrong::

    NetbrokerError
    ├── ConfigError                 a setting is invalid (key, value, why)
    ├── StorageUnavailable          the database cannot be reached
    ├── InvalidGridDocument         a grid import was refused (record, field, why)
    ├── InvalidMetric               a metric batch or query was refused as a whole
    ├── InvalidTransition           a job cannot go from its state to the one asked
    ├── InvalidTask                 a task description was refused (field, why)
    ├── TaskExists                  a task of that name was already submitted
    ├── InvalidBoost                a priority boost rule was refused
    ├── Forbidden                   the caller may not act on this object (not its own)
    ├── InvalidFilter               a listing asked with a filter value that cannot match
    ├── InvalidDecision             a replication-feed request was malformed
    │   └── DecisionConflict        the decision is in a state that forbids the move
    └── NotFound
        ├── UnknownCloud
        ├── UnknownSite
        ├── UnknownQueue
        ├── UnknownEndpoint
        ├── UnknownDataset
        ├── UnknownTask
        ├── UnknownBoost
        ├── UnknownDecision
        ├── UnknownToken
        ├── UnknownTransformation
        ├── UnknownUser
        └── UnknownJob
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ConfigError",
    "DecisionConflict",
    "Forbidden",
    "GridProblem",
    "InvalidBoost",
    "InvalidDecision",
    "InvalidFilter",
    "InvalidGridDocument",
    "InvalidMetric",
    "InvalidTask",
    "InvalidTransition",
    "NetbrokerError",
    "NotFound",
    "StorageUnavailable",
    "TaskExists",
    "UnknownBoost",
    "UnknownCloud",
    "UnknownDataset",
    "UnknownDecision",
    "UnknownEndpoint",
    "UnknownJob",
    "UnknownQueue",
    "UnknownSite",
    "UnknownTask",
    "UnknownToken",
    "UnknownTransformation",
    "UnknownUser",
]


class NetbrokerError(Exception):
    """Base of every error netbroker raises on purpose."""


class ConfigError(NetbrokerError):
    """One or more settings are invalid.

    ``problems`` holds one line per bad setting: ``key = value: why``.
    """

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        where = f" in {source}" if source else ""
        super().__init__(f"invalid configuration{where}:\n  " + "\n  ".join(problems))


class StorageUnavailable(NetbrokerError):
    """The database could not be reached; the caller may retry later."""


@dataclass(frozen=True)
class GridProblem:
    """One thing wrong with a grid document: where it is and why it is wrong.

    ``record`` names the record as it appears in the document, for example
    ``site["DESY-HH"]``; ``field`` is the dotted field path inside it.
    """

    record: str
    field: str
    message: str

    def __str__(self) -> str:
        field = f".{self.field}" if self.field else ""
        return f"{self.record}{field}: {self.message}"


class InvalidGridDocument(NetbrokerError):
    """A grid document was refused; nothing of it was stored."""

    def __init__(self, problems: list[GridProblem], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        head = f"grid document {source!s} refused" if source else "grid document refused"
        shown = "\n  ".join(str(p) for p in problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"{head}: {len(problems)} problem(s)\n  {shown}{more}")


class InvalidMetric(NetbrokerError):
    """A metric batch or query refused as a whole (single bad records are reported, not raised)."""


class InvalidTransition(NetbrokerError):
    """A job was asked to move to a state its current state does not lead to."""

    def __init__(self, job_id: int, current: str, wanted: str, what: str = "job") -> None:
        self.job_id, self.current, self.wanted = job_id, current, wanted
        super().__init__(f"{what} {job_id} is {current}: it cannot become {wanted}")


class InvalidTask(NetbrokerError):
    """A task description refused as a whole; ``problems`` name each field and why."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems, self.source = problems, source
        where = f" in {source}" if source else ""
        super().__init__(f"task refused{where}: " + "; ".join(problems))


class TaskExists(NetbrokerError):
    """A task of that name exists: task names are unique, a resubmission is refused."""

    def __init__(self, name: str, task_id: int) -> None:
        self.name, self.task_id = name, task_id
        super().__init__(f"task {name!r} already exists (id {task_id})")


class Forbidden(NetbrokerError):
    """The caller may not act on this object: a pilot on another pilot's job, a user on
    another user's task."""


class InvalidBoost(NetbrokerError):
    """A priority boost rule that cannot apply (no one named, two places, no duration)."""


class InvalidFilter(NetbrokerError):
    """A listing was asked with a filter value that cannot match anything: a job state
    or task status that does not exist, a cloud not registered. ``name`` is the
    filter, ``value`` what was given, ``allowed`` the values it takes (when few)."""

    def __init__(self, name: str, value: str, allowed: list[str] | None = None,
                 why: str | None = None) -> None:
        self.name, self.value, self.allowed = name, value, allowed or []
        reason = why or (f"is not one of {', '.join(self.allowed)}" if self.allowed
                         else "matches nothing")
        super().__init__(f"filter {name}={value!r} {reason}")


class InvalidDecision(NetbrokerError):
    """A request on the replication feed was malformed (cursor, limit, empty reason)."""


class DecisionConflict(InvalidDecision):
    """A replication decision cannot move from its state to the one asked."""


class NotFound(NetbrokerError):
    """A named object does not exist."""

    kind = "object"

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"unknown {self.kind} {name!r}")


class UnknownCloud(NotFound):
    kind = "cloud"


class UnknownSite(NotFound):
    kind = "site"


class UnknownQueue(NotFound):
    kind = "queue"


class UnknownEndpoint(NotFound):
    kind = "storage endpoint"


class UnknownJob(NotFound):
    kind = "job"


class UnknownDataset(NotFound):
    kind = "dataset"


class UnknownTask(NotFound):
    kind = "task"


class UnknownBoost(NotFound):
    kind = "boost"


class UnknownDecision(NotFound):
    kind = "replication decision"


class UnknownToken(NotFound):
    kind = "token"


class UnknownTransformation(NotFound):
    kind = "transformation"


class UnknownUser(NotFound):
    """No task, job or boost names this user."""

    kind = "user"

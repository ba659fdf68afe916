"""Routes of tasks, jobs, brokerage explanations and priority boosts.

Thin: each route validates, calls ``netbroker.workload.tasks`` / ``netbroker.workload.priority``
and returns plain data; domain errors become HTTP in ``netbroker.api.errors``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, status
from pydantic import BaseModel, ConfigDict, Field

from netbroker.accounts.auth import Principal
from netbroker.common.enums import JobStatus, TaskStatus
from netbroker.common.errors import Forbidden
from netbroker.web.auth import require, roles_doc
from netbroker.web.deps import EngineDep, IdPath, SettingsDep, SmallIdPath
from netbroker.workload import priority, tasks
from netbroker.workload.tasks import TaskSpec

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["tasks"])

Limit = Annotated[int, Query(ge=1, le=10_000)]


class BoostIn(BaseModel):
    """An operator's boost rule: who, where, how much, for how long."""

    model_config = ConfigDict(extra="forbid")

    value: int = Field(ge=-100_000, le=100_000, description="Priority points added.")
    hours: float = Field(gt=0, le=24 * 366, description="How long the rule lasts, hours.")
    user: str | None = Field(None, min_length=1, max_length=64)
    working_group: str | None = Field(None, min_length=1, max_length=64)
    site: str | None = Field(None, min_length=1, max_length=128)
    cloud: str | None = Field(None, min_length=1, max_length=64)
    comment: str = Field("", max_length=255)


User = Annotated[Principal, Depends(require("user", "operator"))]
Operator = Annotated[Principal, Depends(require("operator"))]
USER, OPERATOR = roles_doc("user", "operator"), roles_doc("operator")


def _own(principal: Principal, user_name: str, what: str) -> None:
    """A user acts for itself only (operators and admins for anyone)."""
    if principal.role == "user" and principal.name != user_name:
        raise Forbidden(f"{what} belongs to user {user_name!r}, not to {principal.name!r}")


@router.post("/tasks", status_code=status.HTTP_201_CREATED, openapi_extra=USER,
             responses={403: {"description": "a user submits only as itself"},
                        404: {"description": "unknown dataset or site"},
                        409: {"description": "a task of that name exists"}})
def submit_task(spec: TaskSpec, engine: EngineDep, settings: SettingsDep,
                caller: User) -> dict[str, Any]:
    """Submit a task: it is brokered at once (its status says running or pending)."""
    _own(caller, spec.user, f"task {spec.name!r}")
    return tasks.submit(engine, spec, settings)


@router.get("/tasks")
def list_tasks(engine: EngineDep, task_status: Annotated[TaskStatus | None, Query(
        alias="status")] = None, user: str | None = None, limit: Limit = 100
               ) -> list[dict[str, Any]]:
    """Tasks, newest first, with their jobs per state."""
    return tasks.list_tasks(engine, task_status, user, limit)


@router.get("/tasks/{task_id}")
def get_task(task_id: SmallIdPath, engine: EngineDep) -> dict[str, Any]:
    """One task with its jobs per state."""
    return tasks.get_task(engine, task_id)


@router.get("/tasks/{task_id}/brokerage")
def task_brokerage(task_id: SmallIdPath, engine: EngineDep) -> dict[str, Any]:
    """Every brokerage decision of a task, with every candidate and why."""
    return tasks.explain_task(engine, task_id)


@router.post("/tasks/{task_id}/kill", openapi_extra=USER,
             responses={403: {}, 409: {"description": "the task is final"}})
def kill_task(task_id: SmallIdPath, engine: EngineDep, caller: User) -> dict[str, Any]:
    """Cancel a task and its jobs; running ones are told to stop at their next heartbeat."""
    _own(caller, tasks.get_task(engine, task_id)["user_name"], f"task {task_id}")
    return tasks.kill_task(engine, task_id)


@router.get("/jobs")
def list_jobs(engine: EngineDep,
              task: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
              job_status: Annotated[JobStatus | None, Query(alias="status")] = None,
              site: str | None = None, user: str | None = None, limit: Limit = 100
              ) -> list[dict[str, Any]]:
    """Jobs, newest first, filterable by task, state, site and user."""
    return tasks.list_jobs(engine, task, job_status, site, user, limit)


@router.get("/jobs/{job_id}/brokerage")
def job_brokerage(job_id: IdPath, engine: EngineDep) -> dict[str, Any]:
    """Why a job runs where it does: its task's cloud choice, its job brokerage
    (every queue candidate with the filter that removed it or its weights) and
    its rebrokerages."""
    return tasks.explain_job(engine, job_id)


@router.post("/jobs/{job_id}/kill", openapi_extra=USER,
             responses={403: {}, 409: {"description": "the job is final"}})
def kill_job(job_id: IdPath, engine: EngineDep, caller: User) -> dict[str, Any]:
    """Cancel one job."""
    _own(caller, tasks.job_user(engine, job_id), f"job {job_id}")
    return tasks.kill_job(engine, job_id)


@router.get("/priority/boosts", tags=["priority"])
def list_boosts(engine: EngineDep, active: bool = False) -> list[dict[str, Any]]:
    """Boost rules, newest first (only unexpired ones with ``active=true``)."""
    return priority.list_boosts(engine, active_only=active)


@router.post("/priority/boosts", status_code=status.HTTP_201_CREATED, tags=["priority"],
             openapi_extra=OPERATOR)
def add_boost(boost: BoostIn, engine: EngineDep, caller: Operator) -> dict[str, Any]:
    """Add a boost rule; it applies at the next priority recomputation."""
    return priority.add_boost(engine, boost.value, boost.hours, boost.user,
                              boost.working_group, boost.site, boost.cloud,
                              created_by=caller.name, comment=boost.comment)


@router.delete("/priority/boosts/{boost_id}", status_code=status.HTTP_204_NO_CONTENT,
               tags=["priority"], openapi_extra=OPERATOR,
               dependencies=[Depends(require("operator"))])
def remove_boost(boost_id: SmallIdPath, engine: EngineDep) -> None:
    """Remove a boost rule."""
    priority.remove_boost(engine, boost_id)

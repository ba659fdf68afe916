"""The dispatcher's JSON API for pilots (``/api/v1/pilot/...``) and job reads."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from dispatcher.core import (
    AcquireRequest,
    UpdateRequest,
    acquire_job,
    job_log,
    pilot_demand,
    release_job,
    update_job,
    upload_log,
)
from dispatcher.events import RangeReport, get_event_ranges, report_event_ranges
from dispatcher.files import job_files
from netbroker.accounts.auth import Principal
from netbroker.common.errors import UnknownJob
from netbroker.common.observability import DISPATCH_SECONDS
from netbroker.db.jobs import JobDB
from netbroker.web.auth import require, roles_doc
from netbroker.web.deps import EngineDep, IdPath, SettingsDep

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["dispatcher"])


class AcquireOut(BaseModel):
    job: dict[str, Any] | None
    reason: str | None = None


class UpdateOut(BaseModel):
    job_id: int
    status: str
    command: str


Pilot = Annotated[Principal, Depends(require("pilot"))]
PILOT = roles_doc("pilot")


def owner_of(principal: Principal) -> str | None:
    """The owner recorded on (and checked against) jobs: a pilot token's name."""
    return principal.name if principal.role == "pilot" else None


@router.post("/pilot/jobs/acquire", response_model=AcquireOut, openapi_extra=PILOT)
def post_acquire(request: AcquireRequest, engine: EngineDep, pilot: Pilot) -> dict[str, Any]:
    """The single highest-priority activated job of the queue that fits; ``job: null`` if none."""
    started = time.perf_counter()
    job = acquire_job(engine, request, owner_of(pilot))
    DISPATCH_SECONDS.labels("json").observe(time.perf_counter() - started)
    if job is None:
        return {"job": None, "reason": f"no activated job of queue {request.queue} fits"}
    try:
        files = job_files(engine, job)
    except Exception:  # the pilot will not hear of this job: give it back at once
        release_job(engine, job["id"], owner_of(pilot))
        raise
    return {"job": {**job, "files": files}}


@router.post("/pilot/jobs/{job_id}/update", response_model=UpdateOut, openapi_extra=PILOT,
             responses={403: {"description": "another pilot's job"}, 404: {},
                        409: {"description": "the move is not allowed"}})
def post_update(job_id: IdPath, report: UpdateRequest, engine: EngineDep,
                pilot: Pilot) -> dict[str, Any]:
    """A state report (a running report is a heartbeat); the answer may carry a command."""
    return update_job(engine, job_id, report, owner_of(pilot))


@router.post("/pilot/jobs/{job_id}/log", openapi_extra={
    **PILOT, "requestBody": {"content": {"text/plain": {}, "application/gzip": {}},
                             "required": True}},
    responses={403: {"description": "another pilot's job"}, 404: {},
               413: {"description": "too large"}})
async def post_log(job_id: IdPath, request: Request, engine: EngineDep,
                   pilot: Pilot) -> dict[str, Any]:
    """The pilot's log of the job (its own lines and the payload's output tails)."""
    body = await request.body()
    media = request.headers.get("content-type", "text/plain").split(";")[0]
    try:
        return await run_in_threadpool(upload_log, engine, job_id, body, media,
                                       owner_of(pilot))
    except ValueError as exc:
        raise HTTPException(413, str(exc)) from None


@router.get("/jobs/{job_id}/log", responses={404: {"description": "no such job or no log"}})
def get_log(job_id: IdPath, engine: EngineDep) -> Response:
    """The job's log: the one its pilot uploaded, else its pilot's log extracts and
    the log file it staged out (``dispatcher.core.job_log``)."""
    content, media_type = job_log(engine, job_id)
    return Response(content, media_type=media_type)


@router.get("/jobs/{job_id}")
def get_job(job_id: IdPath, engine: EngineDep) -> dict[str, Any]:
    """A job with its timeline of states."""
    with engine.connect() as conn:
        db = JobDB(conn)
        job = db.get(job_id)
        if job is None:
            raise UnknownJob(str(job_id))
        return {**job, "timeline": db.timeline(job_id)}


class RangesIn(BaseModel):
    n: int = Field(1, ge=1, le=10_000)
    pilot_id: str = Field("", max_length=255)


@router.post("/pilot/jobs/{job_id}/event-ranges", openapi_extra=PILOT)
def post_event_ranges(job_id: IdPath, request: RangesIn, engine: EngineDep,
                      pilot: Pilot) -> dict[str, Any]:
    """Up to ``n`` ready event ranges of the job, now held by the asking pilot."""
    return {"ranges": get_event_ranges(engine, job_id, request.n, request.pilot_id,
                                       owner_of(pilot))}


@router.post("/pilot/event-ranges/update", openapi_extra=PILOT)
def post_event_range_reports(reports: list[RangeReport], engine: EngineDep,
                             settings: SettingsDep, pilot: Pilot) -> dict[str, Any]:
    """Each range's outcome; the answer gives each range's new status (null: refused)."""
    return {"results": report_event_ranges(engine, reports, settings.dispatcher,
                                           owner_of(pilot))}


@router.get("/queues/{name}/pilot-demand")
def get_pilot_demand(name: str, engine: EngineDep,
                     pending: Annotated[int, Query(ge=0)] = 0,
                     label: Annotated[str | None, Query(max_length=32)] = None
                     ) -> dict[str, Any]:
    """How many pilots a factory should submit now (``pending``: submitted, not asking yet)."""
    return pilot_demand(engine, name, pending, label)

"""The PanDA server's wire protocol, so existing pilots (PanDA Pilot 3) work unchanged.

Pilots POST form-encoded fields (3.7, every value a string) or a JSON
object, gzip-compressed without a Content-Encoding header (3.11); both are
coerced into one typed request. Answers are a JSON object with
``StatusCode`` (0 ok, 20 no job, 30 failed) when the client accepts JSON,
URL-encoded otherwise, as the PanDA server does.

Routes: ``/server/panda/getJob``, ``/server/panda/updateJob``,
``/server/panda/getEventRanges``, ``/server/panda/updateEventRanges``, and the queue
description the pilot downloads first, ``/cache/schedconfig/<Q>.all.json``
(flat) and ``/cache/schedconfig/<Q>.json`` (wrapped), with the storage
endpoints at ``/cache/ddmendpoints.json``, all generated from the registry.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from dispatcher import fastpath, queuedata
from dispatcher.api import PILOT, owner_of
from dispatcher.core import (
    AcquireRequest,
    OutputReport,
    UpdateRequest,
    release_job,
)
from dispatcher.events import RangeReport, get_event_ranges, report_event_ranges
from dispatcher.files import job_files, panda_file_fields
from dispatcher.wire_input import WireInputError, read_fields
from netbroker.common.config import Settings
from netbroker.common.errors import (
    Forbidden,
    InvalidTransition,
    NotFound,
    StorageUnavailable,
    UnknownQueue,
    UnknownTransformation,
)
from netbroker.common.observability import DISPATCH_SECONDS
from netbroker.common.text import Diagnostic, LogTail, Name, ShortText
from netbroker.db.grid import GridDB
from netbroker.web.auth import authorize
from netbroker.web.deps import EngineDep

__all__ = ["WIRE_POSTS", "router"]

log = logging.getLogger(__name__)
router = APIRouter(tags=["panda wire protocol"])

# PanDA's StatusCodes (pandaserver/jobdispatcher/Protocol.py): success, no job,
# failed, no valid token, a role that may not, another's job.
OK, NO_JOB, FAILED, INVALID_TOKEN, WRONG_ROLE, NOT_YOURS = 0, 20, 30, 50, 60, 70
_PANDA_DISPATCH_SECONDS = DISPATCH_SECONDS.labels("panda")


class GetJobForm(BaseModel):
    """The getJob fields netbroker uses (pilots send more; the rest is ignored)."""

    model_config = ConfigDict(extra="ignore")

    computingElement: Name = Field(min_length=1, max_length=128)
    siteName: Name = Field("", max_length=128)
    prodSourceLabel: Name = Field("managed", min_length=1, max_length=32)
    # Pilot 3 sends memory with decimals ("24105.55078125"): read floats, use whole MB.
    diskSpace: float = Field(1e7, ge=0, le=2**31 - 1, allow_inf_nan=False)  # MB
    mem: float | None = Field(None, ge=0, le=2**31 - 1, allow_inf_nan=False)  # MB
    coreCount: int | None = Field(None, ge=1, le=4096)
    node: ShortText = ""
    pilotID: ShortText = ""


class UpdateJobForm(BaseModel):
    """The updateJob fields netbroker uses."""

    model_config = ConfigDict(extra="ignore")

    jobId: int = Field(ge=1, le=2**63 - 1)
    state: Name = Field(max_length=32)
    transExitCode: int | None = Field(None, ge=-(2**31), le=2**31 - 1)
    pilotErrorCode: int | None = Field(None, ge=-(2**31), le=2**31 - 1)
    pilotErrorDiag: Diagnostic | None = None
    exeErrorDiag: Diagnostic | None = None
    cpuConsumptionTime: float | None = Field(None, ge=0, le=1e12, allow_inf_nan=False)  # s
    maxRSS: int | None = Field(None, ge=0, le=2**63 - 1)  # kB
    # A JSON string despite its name: {"<lfn>": {"guid", "fsize", "adler32", "surl"}}.
    xml: str | None = None
    # Extracts of the pilot's own log (Pilot 3 sends up to 1024 characters at the end).
    pilotLog: LogTail | None = None

    def output_reports(self) -> list[OutputReport] | None:
        """The files the pilot wrote, from ``xml``; None when it sent none."""
        if not self.xml:
            return None
        try:
            written = json.loads(self.xml, parse_constant=_refuse_constant)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ValueError(f"xml is not JSON: {exc}") from None
        if not isinstance(written, dict) or not all(isinstance(m, dict)
                                                    for m in written.values()):
            raise ValueError("xml must map each LFN to its metadata")
        try:
            return [OutputReport(lfn=lfn, bytes=int(meta["fsize"]),
                                 adler32=str(meta["adler32"]).lower().zfill(8),
                                 guid=meta.get("guid") or None, url=meta.get("surl") or None)
                    for lfn, meta in written.items()]
        except KeyError as exc:
            raise ValueError(f"xml: a file's metadata lacks {exc}") from None
        except (TypeError, OverflowError) as exc:
            raise ValueError(f"xml: a file's fsize is not a whole number: {exc}") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"xml holds {name}, which is not a number")


async def _fields(request: Request) -> dict[str, Any]:
    """The request's fields, read within the dispatcher's bounds (``dispatcher.wire_input``)."""
    settings: Settings = request.app.state.settings
    return await read_fields(request, settings.dispatcher)


def _invalid(exc: ValidationError) -> str:
    """A validation error in one line naming each field: ``diskSpace: Input should be ...``."""
    return "; ".join(f"{'.'.join(str(part) for part in error['loc']) or 'body'}: "
                     f"{error['msg']}" for error in exc.errors(include_url=False))


def _answer(request: Request, payload: dict[str, Any], status_code: int = 200) -> Response:
    wants_json = "json" in request.headers.get("accept", "") or \
        "json" in request.headers.get("content-type", "")
    if wants_json:  # orjson: the answer of every getJob, several times json's speed
        return Response(orjson.dumps(payload), status_code=status_code,
                        media_type="application/json")
    return Response(urlencode({k: "" if v is None else v for k, v in payload.items()}),
                    status_code=status_code, media_type="application/x-www-form-urlencoded")


def _refusal(request: Request, error: Exception, status_code: int) -> Response:
    """A refused call, in the PanDA shape the pilot logs: ``StatusCode`` 30 (70 for
    another pilot's job) and why."""
    if isinstance(error, WireInputError):
        status_code = error.status
    message = _invalid(error) if isinstance(error, ValidationError) else str(error)
    code = NOT_YOURS if isinstance(error, Forbidden) else FAILED
    return _answer(request, {"StatusCode": code, "errorDialog": message}, status_code)


# What a pilot call may be refused for, and the HTTP status each takes (the first that fits).
_REFUSALS: tuple[tuple[tuple[type[Exception], ...], int], ...] = (
    ((ValidationError, ValueError), 400), ((Forbidden,), 403), ((NotFound,), 404),
    ((InvalidTransition,), 409))
_REFUSED = (ValidationError, ValueError, Forbidden, NotFound)


def _refused(request: Request, error: Exception) -> Response:
    """:func:`_refusal` with the status of ``error``'s kind (see ``_REFUSALS``)."""
    return _refusal(request, error, next(code for kinds, code in _REFUSALS
                                         if isinstance(error, kinds)))


PilotHandler = Callable[[Request, "str | None"], Awaitable[Response]]


def _pilot_call(handler: PilotHandler) -> Callable[[Request], Awaitable[Response]]:
    """``handler`` as a route: the caller must hold a pilot token, and ``handler``
    gets the owner to record for it (None with auth off).

    These routes read the raw request (form, JSON or gzip'd JSON, whatever the
    pilot's version sends) and check the caller here, not through FastAPI's
    dependencies, whose resolution costs a third of a request on this path. A
    refusal is answered as PanDA does, so the pilot logs why: ``StatusCode``
    50 for no valid token (401), 60 for a token of another role (403).
    """

    async def route(request: Request) -> Response:
        try:
            principal = await authorize(request, ("pilot",))
        except HTTPException as exc:
            code = INVALID_TOKEN if exc.status_code == 401 else WRONG_ROLE
            response = _answer(request, {"StatusCode": code, "errorDialog": exc.detail},
                               exc.status_code)
            response.headers.update(exc.headers or {})
            return response
        try:
            return await handler(request, owner_of(principal))
        except (sa.exc.DBAPIError, StorageUnavailable) as exc:
            # The API's handlers log it and say 503 (unavailable) or 500; the pilot
            # gets the same status in the shape it reads, and retries.
            down = isinstance(exc, (sa.exc.OperationalError, StorageUnavailable))
            log.error("%s: database %s: %s", request.url.path,
                      "unavailable" if down else "error", exc)
            response = _answer(request, {"StatusCode": FAILED, "errorDialog": (
                "the service's database is unavailable; retry later" if down
                else "internal database error")}, 503 if down else 500)
            if down:
                response.headers["Retry-After"] = "5"
            return response

    route.__name__, route.__doc__ = handler.__name__, handler.__doc__
    return route


@router.post("/server/panda/getJob", openapi_extra=PILOT)
@_pilot_call
async def get_job(request: Request, owner: str | None) -> Response:
    """One job for the pilot's queue (``computingElement``), or StatusCode 20."""
    settings: Settings = request.app.state.settings
    try:
        form = GetJobForm.model_validate(await _fields(request))
        label = settings.dispatcher.pilot_labels.get(form.prodSourceLabel, form.prodSourceLabel)
        started = time.perf_counter()
        # The form checked every field against the same bounds (and cleaned the free
        # text): no second validation on the hot path.
        job = await fastpath.acquire(request, AcquireRequest.model_construct(
            queue=form.computingElement, prod_source_label=label,
            cores=form.coreCount, memory_mb=None if form.mem is None else int(form.mem),
            disk_mb=int(form.diskSpace), node=form.node, pilot_id=form.pilotID), owner)
        _PANDA_DISPATCH_SECONDS.observe(time.perf_counter() - started)
    except (ValidationError, ValueError, NotFound) as exc:
        return _refused(request, exc)
    if job is None:
        return _answer(request, {"StatusCode": NO_JOB, "errorDialog": "no jobs"})
    answer = panda_job(job)
    answer["transformation"] = transformation_url(
        job["transformation"], settings.dispatcher.transformation_base_url
        or _own_trf_url(request))
    if job["task_id"] is not None:
        try:
            files = await run_in_threadpool(job_files, request.app.state.engine, job)
        except Exception:  # the pilot will not hear of this job: give it back at once
            await run_in_threadpool(release_job, request.app.state.engine, job["id"], owner)
            raise
        if files["inputs"] or files["outputs"]:
            answer.update(panda_file_fields(files))
    return _answer(request, {"StatusCode": OK, **answer})


@router.post("/server/panda/updateJob", openapi_extra=PILOT)
@_pilot_call
async def update_job_route(request: Request, owner: str | None) -> Response:
    """A pilot's state report; the answer's ``command`` is the back channel."""
    try:
        form = UpdateJobForm.model_validate(await _fields(request))
        report = UpdateRequest(state=form.state, exit_code=form.transExitCode,
                               pilot_error_code=form.pilotErrorCode,
                               error_diag=(form.pilotErrorDiag or form.exeErrorDiag or None),
                               cpu_time_s=form.cpuConsumptionTime, max_rss_kb=form.maxRSS,
                               files=form.output_reports(), pilot_log=form.pilotLog or None)
        result = await fastpath.report(request, form.jobId, report, owner)
    except (*_REFUSED, InvalidTransition) as exc:
        return _refused(request, exc)
    return _answer(request, {"StatusCode": OK, "command": result["command"]})


class GetEventRangesForm(BaseModel):
    model_config = ConfigDict(extra="ignore")

    pandaID: int = Field(ge=1, le=2**63 - 1)
    nRanges: int = Field(10, ge=1, le=10_000)


def event_range_id(job_id: int, row: dict[str, Any]) -> str:
    """The id a pilot echoes back: ``<PandaID>-<range>-<attempt>``.

    >>> event_range_id(7, {"id": 12, "attempt": 2})
    '7-12-2'
    """
    return f"{job_id}-{row['id']}-{row['attempt']}"


@router.post("/server/panda/getEventRanges", openapi_extra=PILOT)
@_pilot_call
async def get_event_ranges_route(request: Request, owner: str | None) -> Response:
    """Up to ``nRanges`` ready event ranges of ``pandaID`` (a JSON string, as PanDA sends)."""
    engine = request.app.state.engine
    try:
        form = GetEventRangesForm.model_validate(await _fields(request))
        rows = await run_in_threadpool(get_event_ranges, engine, form.pandaID, form.nRanges,
                                       "", owner)
    except _REFUSED as exc:
        return _refused(request, exc)
    ranges = [{"eventRangeID": event_range_id(form.pandaID, r), "startEvent": r["first_event"],
               "lastEvent": r["last_event"], "attemptNr": r["attempt"], "LFN": "", "GUID": "",
               "scope": ""} for r in rows]
    return _answer(request, {"StatusCode": OK, "eventRanges": json.dumps(ranges)})


@router.post("/server/panda/updateEventRanges", openapi_extra=PILOT)
@_pilot_call
async def update_event_ranges_route(request: Request, owner: str | None) -> Response:
    """Reports ``[{"eventRangeID", "eventStatus"}]`` (a JSON string); ``Returns`` per range."""
    engine = request.app.state.engine
    settings: Settings = request.app.state.settings  # dispatcher settings need a restart
    try:
        fields = await _fields(request)
    except WireInputError as exc:
        return _refusal(request, exc, exc.status)
    try:
        raw = fields.get("eventRanges", "[]")
        items = json.loads(raw) if isinstance(raw, str) else raw
        reports = [RangeReport(range_id=int(str(item["eventRangeID"]).split("-")[1]),
                               status=item["eventStatus"]) for item in items]
    except (ValidationError, ValueError, KeyError, IndexError, TypeError,
            RecursionError) as exc:
        return _refusal(request, ValueError(f"eventRanges: {exc}"), 400)
    try:
        results = await run_in_threadpool(report_event_ranges, engine, reports,
                                          settings.dispatcher, owner)
    except Forbidden as exc:
        return _refusal(request, exc, 403)
    return _answer(request, {"StatusCode": OK, "Returns": [r is not None for r in results]})


# The getJob fields a job without files leaves empty (the file fields replace them).
_EMPTY_FIELDS = dict.fromkeys(
    ("inFiles", "GUID", "fsize", "checksum", "scopeIn", "realDatasetsIn", "prodDBlocks",
     "prodDBlockToken", "ddmEndPointIn", "outFiles", "scopeOut", "realDatasets",
     "destinationDblock", "ddmEndPointOut", "destinationSE", "logFile", "logGUID", "scopeLog",
     "cmtConfig", "transferType"), "")


def panda_job(job: dict[str, Any]) -> dict[str, Any]:
    """A job row in the shape getJob answers (field names as PanDA's)."""
    return {
        "PandaID": job["id"], "jobsetID": 0, "taskID": job["task_id"] or 0,
        "jobDefinitionID": 0, "jobName": job["name"],
        "prodSourceLabel": job["prod_source_label"], "attemptNr": job["attempt_nr"],
        "coreCount": job["cores"], "maxWalltime": job["max_walltime_s"],
        "maxCpuCount": job["max_walltime_s"], "minRamCount": job["min_ram_mb"],
        "maxDiskCount": job["max_disk_mb"], "currentPriority": job["priority"],
        "processingType": "netbroker", "swRelease": "NULL",
        "transformation": job["transformation"], "jobPars": job["job_pars"],
        **_EMPTY_FIELDS,
    }


_TRF_URLS: dict[tuple[str, str, str], str] = {}


def _own_trf_url(request: Request) -> str:
    """This server's ``/trf/user`` as the pilot reached it (scheme, host, root path),
    remembered per way in: building the request's base URL costs every getJob."""
    scope = request.scope
    key = (scope["scheme"], request.headers.get("host", ""), scope.get("root_path", ""))
    url = _TRF_URLS.get(key)
    if url is None:
        if len(_TRF_URLS) > 1000:  # Host headers are the client's to choose
            _TRF_URLS.clear()
        url = _TRF_URLS[key] = f"{str(request.base_url).rstrip('/')}/trf/user"
    return url


def transformation_url(transformation: str, base_url: str) -> str:
    """Where a pilot downloads a job's transformation: a URL as it is, a bare
    script name under ``base_url``.

    >>> transformation_url("runtest.sh", "http://127.0.0.1:25080/trf/user")
    'http://127.0.0.1:25080/trf/user/runtest.sh'
    >>> transformation_url("https://host.example/trf/user/run.sh", "http://x/trf/user")
    'https://host.example/trf/user/run.sh'
    """
    if "/" in transformation or not transformation:
        return transformation
    return f"{base_url.rstrip('/')}/{transformation}"


@router.get("/trf/user/{name}", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}}, 404: {}})
def transformation(name: str, request: Request) -> Response:
    """A transformation script from ``dispatcher.transformations_dir``, as PanDA's
    servers serve them to the pilots that download their payload (Pilot 3.11's
    ``--baseurls``). 404 naming it when it is not there."""
    settings: Settings = request.app.state.settings
    folder = settings.dispatcher.transformations_dir
    path = Path(folder, name) if folder else None
    if path is None or not _is_script_name(name) or not path.is_file():
        log.warning("transformation %r asked for, not in %s", name,
                    folder or "(dispatcher.transformations_dir is not set)")
        raise UnknownTransformation(name)
    return Response(path.read_bytes(), media_type="application/octet-stream")


def _is_script_name(name: str) -> bool:
    """A file name of the folder itself: no path, nothing hidden.

    >>> [_is_script_name(n) for n in ("run.sh", "../etc/passwd", ".env", "a/b")]
    [True, False, False, False]
    """
    return bool(name) and "/" not in name and "\\" not in name and not name.startswith(".")


@router.get("/cache/schedconfig/{name}.all.json")
def schedconfig_flat(name: str, engine: EngineDep) -> dict[str, Any]:
    """The queue description a pilot downloads first: one flat object."""
    return schedconfig(engine, name)


@router.get("/cache/schedconfig/{name}.json")
def schedconfig_wrapped(name: str, engine: EngineDep) -> dict[str, Any]:
    """The same description wrapped as ``{"<queue>": {...}}``."""
    return {name: schedconfig(engine, name)}


def schedconfig(engine: Engine, name: str) -> dict[str, Any]:
    """A queue in CRIC's schedconfig shape, as Pilot 3 reads it, with its storages,
    copy tools and protocols (``dispatcher.queuedata``)."""
    with engine.connect() as conn:
        description = GridDB(conn).queue_description(name)
    if description is None:
        raise UnknownQueue(name)
    return queuedata.schedconfig(description)


@router.get("/cache/ddmendpoints.json")
def ddmendpoints(engine: EngineDep) -> dict[str, Any]:
    """Storage endpoints keyed by name, with their protocols, in the shape the pilot reads."""
    with engine.connect() as conn:
        return queuedata.ddmendpoints(GridDB(conn).ddm_endpoints())


# The protocol's POSTs, by path: ``dispatcher.edge.WireEdge`` serves them
# straight from ASGI (FastAPI keeps them registered for the spec).
WIRE_POSTS = {
    "/server/panda/getJob": get_job,
    "/server/panda/updateJob": update_job_route,
    "/server/panda/getEventRanges": get_event_ranges_route,
    "/server/panda/updateEventRanges": update_event_ranges_route,
}

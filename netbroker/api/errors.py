"""Errors -> HTTP, mapped once for the whole app, in one shape.

Routes raise nothing HTTP-specific: they let the core's errors through, and
these handlers turn each into a status code and a problem (RFC 9457,
``application/problem+json``)::

    {"type": "/problems/unknown-site", "title": "Unknown site", "status": 404,
     "detail": "unknown site 'XX'", "name": "XX"}

``type`` names the kind of problem (``GET /problems/{slug}`` describes it);
``detail`` says this occurrence in one line; a refused request names its
bad fields in ``fields`` and gives FastAPI's validation items
(``{loc, msg, type}``) in ``errors``; the ids that explain an error ride
along as extension members (``name``, ``task_id``, ``current``, ``wanted``,
``problems``). The monitor (``/monitor``) gets the same status, title and
detail as an HTML page. The PanDA wire protocol answers its own refusals in
PanDA's shape (``dispatcher.panda``) and never reaches these for them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException

from netbroker.common import errors
from netbroker.common.errors import (
    ConfigError,
    InvalidGridDocument,
    InvalidTask,
    InvalidTransition,
    NetbrokerError,
    NotFound,
    StorageUnavailable,
    TaskExists,
)
from netbroker.common.text import without_surrogates

__all__ = ["PROBLEM_JSON", "Problem", "ProblemType", "is_page", "problem_response",
           "problem_types", "register_error_handlers", "validation_problem"]

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_S = "5"

# Status of each domain error, nearest class first (a class not here takes its base's).
_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (NotFound, 404), (errors.DecisionConflict, 409), (InvalidTransition, 409),
    (TaskExists, 409), (errors.Forbidden, 403), (InvalidGridDocument, 422),
    (InvalidTask, 422), (ConfigError, 422), (StorageUnavailable, 503), (NetbrokerError, 400))

# Problems that are no domain error: HTTP's own, the request's shape, the database.
_HTTP_SLUGS = {401: "unauthorized", 403: "forbidden", 404: "not-found",
               405: "method-not-allowed", 413: "payload-too-large"}
_OTHER_TYPES = {
    "invalid-request": (422, "Invalid request",
                        "A parameter or the body does not have the documented shape: "
                        "``fields`` names each, ``errors`` says why."),
    "invalid-text": (400, "Invalid text",
                     "The path, query or JSON body holds text no database stores (a NUL "
                     "character, a lone surrogate, bytes not UTF-8)."),
    "database-error": (500, "Database error",
                       "The database refused a statement; the service logged it."),
    "unauthorized": (401, "Unauthorized", "No bearer token, or one that is unknown or "
                                          "revoked."),
    "forbidden": (403, "Forbidden", "The token's role may not do this, or the object "
                                    "belongs to someone else."),
    "not-found": (404, "Not found", "No route or object at this address."),
    "method-not-allowed": (405, "Method not allowed", "The route does not take this method."),
    "payload-too-large": (413, "Payload too large", "The body is over the size the service "
                                                    "reads."),
}


@dataclass(frozen=True)
class ProblemType:
    """A kind of problem: its slug (``/problems/{slug}``), title, status and meaning."""

    slug: str
    title: str
    status: int
    about: str


@dataclass(frozen=True)
class Problem:
    """One occurrence: what the handlers answer, as JSON or as a page."""

    status: int
    title: str
    detail: str
    slug: str
    extra: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def type(self) -> str:
        return f"/problems/{self.slug}"

    def body(self) -> dict[str, Any]:
        return {"type": self.type, "title": self.title, "status": self.status,
                "detail": self.detail, **self.extra}


def register_error_handlers(app: FastAPI) -> None:
    """Install the handlers on ``app``: one for every error it may meet."""
    for cls in (NetbrokerError, OperationalError, DBAPIError, RequestValidationError,
                HTTPException):
        app.add_exception_handler(cls, _handle)


async def _handle(request: Request, exc: Exception) -> Response:
    problem = problem_of(exc)
    if problem.status >= 500:
        log.error("%s: %s", problem.title, exc, exc_info=problem.status == 500)
    if is_page(request.url.path):
        from netbroker.api.pages import error_page  # the pages import the API's deps

        if isinstance(exc, RequestValidationError):  # on a page, a bad parameter is a filter
            problem = replace(problem, status=400, title="Invalid filter",
                              slug="invalid-filter")
        return error_page(request, problem)
    return problem_response(problem)


def is_page(path: str) -> bool:
    """Whether an error at ``path`` is answered as a page (the monitor's), not a problem."""
    return path == "/monitor" or path.startswith("/monitor/")


def problem_response(problem: Problem) -> JSONResponse:
    """The problem as ``application/problem+json``."""
    return JSONResponse(_encodable(jsonable_encoder(problem.body())), status_code=problem.status,
                        media_type=PROBLEM_JSON, headers=problem.headers or None)


def problem_of(exc: Exception) -> Problem:
    """The problem an exception stands for."""
    if isinstance(exc, RequestValidationError):
        return validation_problem(exc.errors())
    if isinstance(exc, HTTPException):
        slug = _HTTP_SLUGS.get(exc.status_code, f"http-{exc.status_code}")
        return Problem(exc.status_code, HTTPStatus(exc.status_code).phrase, str(exc.detail),
                       slug, headers=dict(exc.headers or {}))
    if isinstance(exc, OperationalError | StorageUnavailable):
        return Problem(503, "Storage unavailable", "database unavailable",
                       "storage-unavailable", headers={"Retry-After": RETRY_AFTER_S})
    if isinstance(exc, DBAPIError):
        return Problem(500, "Database error", "internal database error", "database-error")
    assert isinstance(exc, NetbrokerError)
    status = next(code for cls, code in _STATUS if isinstance(exc, cls))
    detail = "; ".join(line.strip() for line in str(exc).splitlines()).replace(":;", ":")
    return Problem(status, _title(type(exc)), detail, _slug(type(exc).__name__),
                   _extra(exc))


def validation_problem(items: list[dict[str, Any]] | Any) -> Problem:
    """A 422 naming the bad fields, FastAPI's validation items kept in ``errors``."""
    items = list(items)
    fields = list(dict.fromkeys(_field(e.get("loc", ())) for e in items))
    said = "; ".join(f"{_field(e.get('loc', ())) or 'request'}: {e.get('msg', '')}"
                     for e in items[:5])
    more = f" (and {len(items) - 5} more)" if len(items) > 5 else ""
    return Problem(422, "Invalid request", f"{said}{more}" or "invalid request",
                   "invalid-request", {"fields": fields, "errors": items})


def _field(loc: Any) -> str:
    """A field's name from a validation location: ``["query", "status"]`` -> ``status``."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie") and len(parts) > 1:
        parts = parts[1:]
    return ".".join(parts)


def _items(problems: list[tuple[list[Any], str]]) -> dict[str, Any]:
    items = [{"loc": loc, "msg": msg, "type": "value_error"} for loc, msg in problems]
    return {"fields": list(dict.fromkeys(_field(loc) for loc, _ in problems)), "errors": items}


_EXTRAS: tuple[tuple[type[Exception], Callable[[Any], dict[str, Any]]], ...] = (
    (NotFound, lambda e: {"name": e.name}),
    (InvalidTransition, lambda e: {"current": e.current, "wanted": e.wanted}),
    (TaskExists, lambda e: {"task_id": e.task_id}),
    (errors.InvalidFilter, lambda e: {"fields": [e.name], "allowed": e.allowed}),
    (InvalidGridDocument, lambda e: {
        **_items([(["body", p.record, p.field], p.message) for p in e.problems]),
        "problems": [{"record": p.record, "field": p.field, "message": p.message}
                     for p in e.problems]}),
    (InvalidTask, lambda e: {**_items([(["body", p.partition(":")[0]], p)
                                       for p in e.problems]), "problems": e.problems}),
    (ConfigError, lambda e: {**_items([(["body", "changes", p.partition(":")[0]
                                         .split(" = ")[0]], p) for p in e.problems]),
                             "problems": e.problems}),
)


def _extra(exc: Exception) -> dict[str, Any]:
    return next((extra(exc) for cls, extra in _EXTRAS if isinstance(exc, cls)), {})


def _slug(name: str) -> str:
    """A class name as a problem slug.

    >>> _slug("UnknownSite"), _slug("InvalidGridDocument")
    ('unknown-site', 'invalid-grid-document')
    """
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def _title(cls: type[Exception]) -> str:
    if issubclass(cls, NotFound):
        return f"Unknown {cls.kind}"
    words = _slug(cls.__name__).split("-")
    return " ".join([words[0].capitalize(), *words[1:]])


def problem_types() -> list[ProblemType]:
    """Every kind of problem the API answers, by slug: the domain errors and HTTP's."""
    out = {slug: ProblemType(slug, title, status, about)
           for slug, (status, title, about) in _OTHER_TYPES.items()}
    pending: list[type[Exception]] = [NetbrokerError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls is NetbrokerError:
            continue
        status = next(code for base, code in _STATUS if issubclass(cls, base))
        slug = _slug(cls.__name__)
        out[slug] = ProblemType(slug, _title(cls), status, " ".join((cls.__doc__ or "").split()))
    return sorted(out.values(), key=lambda p: p.slug)


def _encodable(value: Any) -> Any:
    """``value`` with every lone surrogate a client sent (which no UTF-8 can carry) shown
    as U+FFFD: a 422 echoing such input stays a 422, not a 500."""
    if isinstance(value, str):
        return without_surrogates(value)
    if isinstance(value, list):
        return [_encodable(v) for v in value]
    if isinstance(value, dict):
        return {k: _encodable(v) for k, v in value.items()}
    return value

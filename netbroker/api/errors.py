"""Domain errors -> HTTP, mapped once for the whole app.

Routes raise nothing HTTP-specific: they let the core's errors through and
these handlers turn them into a status code and a JSON body naming what was
wrong (``{"error": kind, "detail": message, ...}``).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError

from netbroker.errors import (
    ConfigError,
    DecisionConflict,
    Forbidden,
    InvalidDecision,
    InvalidGridDocument,
    InvalidTask,
    InvalidTransition,
    NetbrokerError,
    NotFound,
    StorageUnavailable,
    TaskExists,
)
from netbroker.text import without_surrogates

__all__ = ["register_error_handlers"]

log = logging.getLogger(__name__)

RETRY_AFTER_S = "5"


def register_error_handlers(app: FastAPI) -> None:
    """Install the handlers on ``app``."""
    app.add_exception_handler(NotFound, _not_found)
    app.add_exception_handler(InvalidGridDocument, _invalid_grid)
    app.add_exception_handler(InvalidTransition, _conflict)
    app.add_exception_handler(InvalidTask, _invalid_task)
    app.add_exception_handler(TaskExists, _task_exists)
    app.add_exception_handler(DecisionConflict, _decision_conflict)
    app.add_exception_handler(Forbidden, _forbidden)
    app.add_exception_handler(ConfigError, _config_error)
    app.add_exception_handler(InvalidDecision, _invalid_decision)
    app.add_exception_handler(StorageUnavailable, _storage_down)
    app.add_exception_handler(OperationalError, _storage_down)
    app.add_exception_handler(NetbrokerError, _other)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)


async def _not_found(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, NotFound)
    return JSONResponse({"error": type(exc).__name__, "detail": str(exc), "name": exc.name},
                        status_code=404)


def _unprocessable(error: str, message: str, items: list[tuple[list[Any], str]],
                   **extra: Any) -> JSONResponse:
    """A 422 in FastAPI's own validation-error shape (``detail``: a list of
    ``{loc, msg, type}``), so one schema describes every 422; ``message`` says
    it in one line."""
    return JSONResponse({"error": error, "message": message,
                         "detail": [{"loc": loc, "msg": msg, "type": "value_error"}
                                    for loc, msg in items], **extra}, status_code=422)


async def _invalid_grid(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidGridDocument)
    problems = [{"record": p.record, "field": p.field, "message": p.message}
                for p in exc.problems]
    return _unprocessable("InvalidGridDocument", str(exc),
                          [(["body", p.record, p.field], p.message) for p in exc.problems],
                          problems=problems)


async def _conflict(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidTransition)
    return JSONResponse({"error": "InvalidTransition", "detail": str(exc),
                         "current": exc.current, "wanted": exc.wanted}, status_code=409)


async def _invalid_task(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidTask)
    return _unprocessable("InvalidTask", str(exc),
                          [(["body", p.partition(":")[0]], p) for p in exc.problems],
                          problems=exc.problems)


async def _task_exists(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TaskExists)
    return JSONResponse({"error": "TaskExists", "detail": str(exc), "task_id": exc.task_id},
                        status_code=409)


async def _config_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ConfigError)
    return _unprocessable("ConfigError", str(exc),
                          [(["body", "changes", p.partition(":")[0].split(" = ")[0]], p)
                           for p in exc.problems], problems=exc.problems)


async def _forbidden(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": "Forbidden", "detail": str(exc)}, status_code=403)


async def _decision_conflict(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": "DecisionConflict", "detail": str(exc)}, status_code=409)


async def _invalid_decision(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": "InvalidDecision", "detail": str(exc)}, status_code=400)


async def _storage_down(_: Request, exc: Exception) -> JSONResponse:
    log.error("storage unavailable: %s", exc)
    return JSONResponse({"error": "StorageUnavailable", "detail": "database unavailable"},
                        status_code=503, headers={"Retry-After": RETRY_AFTER_S})


async def _database_error(_: Request, exc: Exception) -> JSONResponse:
    log.exception("database error", exc_info=exc)
    return JSONResponse({"error": "DatabaseError", "detail": "internal database error"},
                        status_code=500)


async def _other(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": type(exc).__name__, "detail": str(exc)}, status_code=400)



async def _invalid_request(_: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422, with the input it echoes made encodable: a lone surrogate a
    client sent (which no UTF-8 can carry) is shown as U+FFFD, not a 500."""
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": _encodable(jsonable_encoder(exc.errors()))},
                        status_code=422)


def _encodable(value: Any) -> Any:
    if isinstance(value, str):
        return without_surrogates(value)
    if isinstance(value, list):
        return [_encodable(v) for v in value]
    if isinstance(value, dict):
        return {k: _encodable(v) for k, v in value.items()}
    return value

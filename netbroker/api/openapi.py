"""What the spec says beyond the routes: the error shape and the bearer tokens.

FastAPI documents a 422 as its own ``HTTPValidationError``; this API
answers every error of ``/api/v1`` as a problem (RFC 9457,
``netbroker.api.errors``), so the spec says so: ``Problem`` for every error
status and as the ``default`` answer, ``ValidationProblem`` (a problem
with FastAPI's items in ``errors``) for 422. Routes that declare roles
(``x-roles`` other than ``public``) take a bearer token: the spec names the
``bearer`` scheme, so Swagger UI shows an Authorize button.
"""

from __future__ import annotations

from typing import Any

from netbroker.api.errors import PROBLEM_JSON

__all__ = ["PROBLEM_SCHEMA", "document_errors_and_security"]

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An error, as RFC 9457 problem details.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "The kind of problem: /problems/{slug}."},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "This occurrence, in one line."},
        "fields": {"type": "array", "items": {"type": "string"},
                   "description": "The names of the bad fields, when a request was refused."},
    },
    "additionalProperties": True,
}

_VALIDATION_PROBLEM: dict[str, Any] = {
    "title": "ValidationProblem",
    "description": "A refused request: the bad fields, and FastAPI's items in ``errors``.",
    "allOf": [{"$ref": "#/components/schemas/Problem"}, {
        "type": "object", "required": ["fields", "errors"],
        "properties": {"errors": {"type": "array",
                                  "items": {"$ref": "#/components/schemas/ValidationError"}}}}],
}

_BEARER = {"type": "http", "scheme": "bearer",
           "description": "A netbroker token (`netbroker token create --role ROLE`); "
                          "the role each write needs is in its `x-roles`."}


def document_errors_and_security(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (FastAPI's) with the problem shapes and the bearer scheme; in place."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas["Problem"] = PROBLEM_SCHEMA
    schemas["ValidationProblem"] = _VALIDATION_PROBLEM
    schemas.setdefault("ValidationError", _validation_error())
    components["securitySchemes"] = {"bearer": _BEARER}
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            if set(operation.get("x-roles", ["public"])) != {"public"}:
                operation["security"] = [{"bearer": []}]
            if path.startswith("/api/v1/"):
                _problem_responses(operation["responses"])
            elif "422" in operation["responses"]:
                operation["responses"]["422"] = _problem("Invalid request", "ValidationProblem")
    return schema


def _problem_responses(responses: dict[str, Any]) -> None:
    for code in list(responses):
        if code != "default" and int(code) >= 400:
            name = "ValidationProblem" if code == "422" else "Problem"
            description = responses[code].get("description") or "Error"
            responses[code] = _problem(description, name)
    responses["default"] = _problem("An error (RFC 9457 problem details)", "Problem")


def _problem(description: str, name: str) -> dict[str, Any]:
    return {"description": description,
            "content": {PROBLEM_JSON: {"schema": {"$ref": f"#/components/schemas/{name}"}}}}


def _validation_error() -> dict[str, Any]:
    """FastAPI's item of a validation error, for a spec whose routes never declared one."""
    return {"title": "ValidationError", "type": "object", "required": ["loc", "msg", "type"],
            "properties": {"loc": {"type": "array", "items": {"anyOf": [
                {"type": "string"}, {"type": "integer"}]}},
                "msg": {"type": "string"}, "type": {"type": "string"}}}

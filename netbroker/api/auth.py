"""Who may call what: bearer tokens checked route by route.

``require(*roles)`` is a dependency every writing route declares; the roles
also go into the OpenAPI spec as ``x-roles`` (``roles_doc``), from which the
role-matrix test walks every route. Reads are open. With
``service.auth = "off"`` every caller is an anonymous admin.

401: no token, or not a valid one (with ``WWW-Authenticate: Bearer``).
403: a valid token whose role may not do this.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from netbroker.api.deps import EngineDep, SettingsDep
from netbroker.auth import Principal, authenticate

__all__ = ["ANONYMOUS", "PrincipalDep", "require", "roles_doc"]

ANONYMOUS = Principal("anonymous", "admin")


def _principal(request: Request, engine: EngineDep, settings: SettingsDep) -> Principal:
    if settings.service.auth == "off":
        return ANONYMOUS
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "a bearer token is required (Authorization: Bearer ...)",
                            headers={"WWW-Authenticate": "Bearer"})
    principal = authenticate(engine, token.strip())
    if principal is None:
        raise HTTPException(401, "the token is not valid (unknown or revoked)",
                            headers={"WWW-Authenticate": "Bearer"})
    return principal


def require(*roles: str) -> Callable[..., Principal]:
    """A dependency admitting the given roles (and admin); returns the caller."""

    def check(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
        if not principal.may(roles):
            raise HTTPException(403, f"role {principal.role} may not do this; "
                                     f"it needs {' or '.join(roles)}")
        return principal

    return check


def roles_doc(*roles: str) -> dict[str, Any]:
    """The ``openapi_extra`` naming a route's roles."""
    return {"x-roles": [*roles, "admin"]}


PrincipalDep = Annotated[Principal, Depends(_principal)]

"""Who may call what: bearer tokens checked route by route.

``require(*roles)`` is a dependency every writing route declares (the PanDA
wire protocol's routes, which read the raw request, call ``authorize``); the roles
also go into the OpenAPI spec as ``x-roles`` (``roles_doc``), from which the
role-matrix test walks every route. Reads are open. With
``service.auth = "off"`` every caller is an anonymous admin.

401: no token, or not a valid one (with ``WWW-Authenticate: Bearer``).
403: a valid token whose role may not do this.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from netbroker.accounts.auth import Principal, authenticate, cached_principal

__all__ = ["ANONYMOUS", "PrincipalDep", "authorize", "caller", "require", "roles_doc"]

ANONYMOUS = Principal("anonymous", "admin")


async def caller(request: Request) -> Principal:
    """Who sent ``request``: the holder of its bearer token.

    ``service.auth`` is not changeable at runtime, so the start-up settings
    say whether tokens are checked. Raises HTTPException 401.
    """
    if request.app.state.settings.service.auth == "off":
        return ANONYMOUS
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(401, "a bearer token is required (Authorization: Bearer ...)",
                            headers={"WWW-Authenticate": "Bearer"})
    # Every write passes here: a remembered token is checked on the event loop,
    # only an unknown one reads the database (in the thread pool).
    engine = request.app.state.engine
    known, principal = cached_principal(engine, token)
    if not known:
        principal = await run_in_threadpool(authenticate, engine, token)
    if principal is None:
        raise HTTPException(401, "the token is not valid (unknown or revoked)",
                            headers={"WWW-Authenticate": "Bearer"})
    return principal


async def authorize(request: Request, roles: tuple[str, ...]) -> Principal:
    """The caller, if its role is among ``roles`` (or admin). Raises HTTPException
    401 or 403. What ``require`` checks, for routes that read the raw request."""
    principal = await caller(request)
    if not principal.may(roles):
        raise HTTPException(403, f"role {principal.role} may not do this; "
                                 f"it needs {' or '.join(roles)}")
    return principal


def require(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting the given roles (and admin); returns the caller."""

    async def check(request: Request) -> Principal:
        return await authorize(request, roles)

    return check


def roles_doc(*roles: str) -> dict[str, Any]:
    """The ``openapi_extra`` naming a route's roles."""
    return {"x-roles": [*roles, "admin"]}


PrincipalDep = Annotated[Principal, Depends(caller)]

"""The pilots' two hot calls straight from ASGI, past FastAPI's routing.

Every job costs one getJob and one final updateJob. Through FastAPI each
request also pays for route matching, the endpoint wrapper and dependency
resolution (even with none to resolve) and the exception middleware's
wrapper: ten times the CPU of calling the same handler from a plain ASGI
layer, a tenth of a job's CPU on PostgreSQL (``docs/performance.md``).
:class:`WireEdge` is that layer: for ``POST`` to the paths it is given, it
builds the request, awaits the very handler FastAPI has
registered for the path, turns an exception into the answer the app's own
exception handlers give (looked up by class, as Starlette does) and sends
the response. Everything else goes to the app unchanged. The routes stay
registered with FastAPI too, so the OpenAPI spec still lists them and any
other method on those paths is answered as before (405).

It sits inside the request-id middleware, so these requests are tagged
and logged like every other; an exception no handler takes goes on up
to the server-error middleware (500), as it would from FastAPI.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["WireEdge"]

Handler = Callable[[Request], Awaitable[Response]]


class WireEdge:
    """Serve ``POST`` to ``routes``' paths with their handlers; pass the rest to ``app``.

    Parameters
    ----------
    app : ASGI app
        What every other request goes to.
    routes : mapping
        Path (as the app routes it, below any ``root_path``) -> an async
        handler taking the request and returning a response.
    """

    def __init__(self, app: ASGIApp, routes: Mapping[str, Handler]) -> None:
        self.app = app
        self.routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            handler = self.routes.get(_route_path(scope))
            if handler is not None:
                request = Request(scope, receive, send)
                try:
                    response = await handler(request)
                except Exception as exc:
                    answer = _exception_handler(scope["app"].exception_handlers, exc)
                    if answer is None:
                        raise
                    if inspect.iscoroutinefunction(answer):
                        response = await answer(request, exc)
                    else:
                        response = await run_in_threadpool(answer, request, exc)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _route_path(scope: Scope) -> str:
    """The path below the root path, as Starlette's router matches it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def _exception_handler(handlers: Mapping[Any, Any], exc: Exception) -> Any:
    """The handler for ``exc``: by status code for an HTTPException, then by its class
    or its nearest base, as Starlette's exception middleware looks it up.

    >>> class A(Exception): ...
    >>> class B(A): ...
    >>> _exception_handler({A: "for A", Exception: "any"}, B())
    'for A'
    >>> _exception_handler({KeyError: "k"}, ValueError()) is None
    True
    """
    if isinstance(exc, HTTPException) and exc.status_code in handlers:
        return handlers[exc.status_code]
    for cls in type(exc).__mro__:
        if cls in handlers:
            return handlers[cls]
    return None

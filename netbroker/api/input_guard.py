"""Text no backend can store, refused at the door of every route.

PostgreSQL refuses a NUL character in text and neither backend can encode
a lone UTF-16 surrogate, so a request carrying one would reach the
database and fail there with a 500 on one backend and not the other. This
ASGI layer answers such a request with 400 before any route runs, the same
on both backends, as a problem (``netbroker.api.errors``):

- a path or query string whose decoded bytes hold NUL or are not UTF-8;
- a JSON body (POST, PUT, PATCH, DELETE) holding the escape ``\\u0000`` or a
  lone surrogate escape (``\\ud800`` without its low half, or the reverse),
  read up to ``service.max_json_body_bytes`` (413 beyond).

The pilot routes clean their free text instead (``netbroker.common.text``): a
pilot's error message must get through. They, and the metric ingestion
whose records the collectors account for one by one, are not read here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import unquote_to_bytes

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from netbroker.api.errors import Problem, is_page, problem_response
from netbroker.api.pages import error_page

__all__ = ["InputGuard", "text_problem"]

_NUL_ESCAPE = re.compile(rb"\\u0000")
_HIGH = rb"\\u[dD][89abAB][0-9a-fA-F]{2}"
_LOW = rb"\\u[dD][c-fC-F][0-9a-fA-F]{2}"
_LONE = re.compile(_HIGH + rb"(?!" + _LOW + rb")|(?<!" + _HIGH + rb")" + _LOW)


def text_problem(where: str, raw: bytes, escaped: bool = False) -> str | None:
    """Why ``raw`` (the bytes of ``where``) cannot be stored, or None.

    ``escaped``: ``raw`` is a JSON text (look for escapes), else percent-encoded.

    >>> text_problem("query", b"user=a%00b")
    'the query holds a NUL character (U+0000)'
    >>> text_problem("body", rb'{"user": "x\\udc80"}', escaped=True)
    'the body holds a lone surrogate (\\\\udc80), which no text can hold'
    >>> text_problem("body", rb'{"user": "\\ud83d\\ude00"}', escaped=True) is None
    True
    """
    if escaped:
        if _NUL_ESCAPE.search(raw):
            return f"the {where} holds a NUL character (\\u0000)"
        lone = _LONE.search(raw)
        if lone:
            return (f"the {where} holds a lone surrogate ({lone.group().decode()}), which "
                    "no text can hold")
        return None
    decoded = unquote_to_bytes(raw.replace(b"+", b" "))
    if b"\x00" in decoded:
        return f"the {where} holds a NUL character (U+0000)"
    try:
        decoded.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"the {where} is not UTF-8 (byte {exc.start} after decoding)"
    return None


class InputGuard:
    """Answer 400 to a request carrying text no backend stores (see the module).

    Parameters
    ----------
    app : ASGI app
        What every other request goes to.
    max_json_body_bytes : int
        The largest JSON body read for the check; 413 beyond.
    unread_prefixes : sequence of str
        Paths whose bodies are not read here (they clean or account for
        their own text).
    """

    def __init__(self, app: ASGIApp, max_json_body_bytes: int,
                 unread_prefixes: Sequence[str]) -> None:
        self.app = app
        self.limit = max_json_body_bytes
        self.unread = tuple(unread_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
        problem = (text_problem("path", raw_path)
                   or text_problem("query", scope.get("query_string", b"")))
        if problem is None and self._reads_body(scope):
            body, too_big = await _read(receive, self.limit)
            if too_big:
                await _answer(scope, receive, send, 413, f"the JSON body is over the "
                              f"{self.limit} bytes allowed (service.max_json_body_bytes)")
                return
            problem = text_problem("body", body, escaped=True)
            receive = _replay(body, receive)
        if problem is not None:
            await _answer(scope, receive, send, 400, problem)
            return
        await self.app(scope, receive, send)

    def _reads_body(self, scope: Scope) -> bool:
        if scope["method"] not in ("POST", "PUT", "PATCH", "DELETE"):
            return False
        if scope["path"].startswith(self.unread):
            return False
        content_type = next((v for k, v in scope["headers"] if k == b"content-type"), b"")
        return b"json" in content_type.lower()


async def _read(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The whole body, or what was read when it passed ``limit`` (and True)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive giving ``body`` once, then the server's own (a disconnect, when it
    comes)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _answer(scope: Scope, receive: Receive, send: Send, status: int,
                  detail: str) -> None:
    """The refusal as every error of the app is answered: a problem (a page under
    ``/monitor``)."""
    slug, title = ("payload-too-large", "Payload too large") if status == 413 else (
        "invalid-text", "Invalid text")
    problem = Problem(status, title, detail, slug)
    if is_page(scope["path"]):
        response: Response = error_page(Request(scope, receive), problem)
    else:
        response = problem_response(problem)
    await response(scope, receive, send)

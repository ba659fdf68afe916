"""A pilot's PanDA-wire request body, read within bounds into plain fields.

Pilots POST form-encoded fields (Pilot 3.7, every value a string) or a JSON
object, gzip-compressed without a Content-Encoding header (3.11). What a
request may cost is bounded before any of it is kept: the body's bytes
(``dispatcher.max_request_bytes``, read as it streams, not whole), what a
gzip body inflates to (``max_inflated_bytes``, inflated in steps, so a
small bomb stops at the bound) and its number of fields
(``max_form_fields``). Beyond a bound the answer is 413; a body that is not
what it claims to be (bad gzip, not UTF-8, broken JSON, NaN or Infinity,
nesting too deep) is 400, naming what was wrong. Values are left as sent;
the forms of ``dispatcher.panda`` type and clean them.
"""

from __future__ import annotations

import json
import zlib
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request

from netbroker.common.config import DispatcherSettings

__all__ = ["WireInputError", "read_fields"]


class WireInputError(ValueError):
    """A request body refused before its fields were read: ``status`` is 400 or 413."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


async def read_fields(request: Request, limits: DispatcherSettings) -> dict[str, Any]:
    """The request's fields, whatever the pilot's version sent: form, JSON, gzip'd JSON.

    Raises
    ------
    WireInputError
        413 past a bound of ``limits``, 400 for a body that cannot be read.
    """
    body = await _body(request, limits.max_request_bytes)
    if body[:2] == b"\x1f\x8b":  # 3.11 gzips without saying so
        body = inflate(body, limits.max_inflated_bytes)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireInputError(400, f"body is not UTF-8 (byte {exc.start})") from None
    text = text.strip()
    if text.startswith("{"):
        fields = _json_object(text)
    else:
        try:
            # Bad %-escapes become surrogates here: free text is cleaned, names refused.
            fields = dict(parse_qsl(text, keep_blank_values=True, errors="surrogateescape",
                                    max_num_fields=limits.max_form_fields))
        except ValueError:
            raise WireInputError(413, f"more than {limits.max_form_fields} form fields"
                                 ) from None
    if len(fields) > limits.max_form_fields:
        raise WireInputError(413, f"more than {limits.max_form_fields} fields")
    return fields


async def _body(request: Request, limit: int) -> bytes:
    """The body, read as it streams; 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise WireInputError(413, f"body of {declared} bytes is over the {limit} allowed")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise WireInputError(413, f"body is over the {limit} bytes allowed")
        chunks.append(chunk)
    return b"".join(chunks)


def inflate(body: bytes, limit: int) -> bytes:
    """``body``'s gzip members inflated, at most ``limit`` bytes of them.

    Inflated in steps of at most what is still allowed, so a bomb costs
    ``limit`` bytes of memory, not what it would become.

    >>> import gzip
    >>> inflate(gzip.compress(b"jobId=1"), 100)
    b'jobId=1'
    >>> inflate(gzip.compress(b"x" * 101), 100)
    Traceback (most recent call last):
    ...
    dispatcher.wire_input.WireInputError: gzip body inflates past the 100 bytes allowed
    """
    out: list[bytes] = []
    size, rest = 0, body
    while rest:
        member = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            data = member.decompress(rest, limit - size + 1)
            while not member.eof and member.unconsumed_tail and size + len(data) <= limit:
                data += member.decompress(member.unconsumed_tail, limit - size - len(data) + 1)
        except zlib.error as exc:
            raise WireInputError(400, f"body is not valid gzip: {exc}") from None
        size += len(data)
        if size > limit:
            raise WireInputError(413, f"gzip body inflates past the {limit} bytes allowed")
        if not member.eof:
            raise WireInputError(400, "body is not valid gzip: it ends inside a member")
        out.append(data)
        rest = member.unused_data.lstrip(b"\x00")  # members may be padded with zeros
    return b"".join(out)


def _json_object(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise WireInputError(400, "JSON body is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise WireInputError(400, f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise WireInputError(400, "JSON body must be an object of fields")
    return data


def _no_constant(name: str) -> Any:
    raise WireInputError(400, f"JSON body holds {name}, which is not a number")

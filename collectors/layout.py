"""Any JSON layout -> documents with their positions: the framing every JSON collector shares.

Archives and dumps arrive framed every which way: one document per file,
pretty-printed over many lines, a JSON array, JSON lines, FTS's broker
stream (messages separated by EOT, ``\\x04``, a message possibly ending in
a space), and any of these concatenated. :class:`JsonDocuments` reads them
all the same way and yields each top-level document with its position:

- line-oriented text: the 1-based line its document starts on. A line that
  is a whole JSON document is one (the fast path: one ``orjson.loads`` per
  line); a line that opens a document which closes on a later line is read
  to its close (found by matching brackets outside strings), so a
  pretty-printed document is one document, never one rejection per line;
- an EOT-separated stream: the message's number (pieces counted as
  ``collectors.fts.split_messages`` counts them).

A document that is not JSON comes as :class:`Unreadable` with the reason
(the stdlib decoder's message and where), once per document: a broken line
among JSON lines is one, a pretty-printed document that never closes is one
up to the next line opening a document at column 0. ``orjson`` decodes (it
reads an integer past 64 bits as a float); the stdlib decoder is tried where
it refuses (``NaN``, ``Infinity``).

Helpers name the wrappers archives add: :func:`envelope` (MONIT's
``{"data": {...}, "metadata": {...}}``) and :func:`search_hits` (an
OpenSearch answer).
"""

from __future__ import annotations

import json
import mmap
import re
from collections.abc import Generator, Iterator, Mapping
from typing import Any, NamedTuple

import orjson

from collectors.records import Framing

__all__ = ["EOT_MESSAGE", "JSON_LINE", "MULTILINE", "Hit", "JsonDocuments", "Unreadable",
           "envelope", "hits_of", "json_type", "search_hits"]

JSON_LINE = "JSON line"
MULTILINE = "multi-line JSON document"
EOT_MESSAGE = "EOT-separated message"

_BOM = b"\xef\xbb\xbf"
# A JSON string (no raw newline inside: JSON has none) or a bracket.
_TOKENS = re.compile(rb'"(?:[^"\\\n]|\\.)*"|[\[\]{}]')
_NOT_SPACE = re.compile(rb"\S")
_OPENERS = (ord("{"), ord("["))


class Unreadable(NamedTuple):
    """What a document that is not JSON gives in place of its value."""

    reason: str


class JsonDocuments:
    """The top-level JSON documents of an input, with their positions.

    Parameters
    ----------
    data : bytes, str or mmap
        The input as read; a leading UTF-8 byte-order mark is skipped.
    first_position : int
        The position of the input's first line (or message): another than
        1 when the input is a later part of a batch split at a line's end.

    Attributes
    ----------
    layouts : dict of str to int
        Documents found per layout (:data:`JSON_LINE`, :data:`MULTILINE`,
        :data:`EOT_MESSAGE`), complete once iteration has ended.
    opening : bool
        Whether the document just yielded is the first of the whole batch
        (a JSON array that opens the input is a list of records, numbered by
        their index).

    Examples
    --------
    >>> docs = JsonDocuments(b'{"a": 1}\\n{\\n  "b": [1,\\n 2]\\n}\\n{broken\\n')
    >>> [(position, getattr(value, "reason", value)) for position, value in docs]
    [(1, {'a': 1}), (2, {'b': [1, 2]}), (6, 'not JSON: Expecting property name enclosed \
in double quotes at line 6 column 2')]
    >>> docs.layouts
    {'multi-line JSON document': 1, 'JSON line': 2}

    Notes
    -----
    O(n) in the bytes: one scan for line ends and one decode per document;
    a multi-line document costs one more scan of its bytes (its brackets).
    """

    def __init__(self, data: bytes | str | mmap.mmap, first_position: int = 1) -> None:
        raw = data.encode() if isinstance(data, str) else data
        self.raw = raw
        self.first_position = first_position
        self.start = 3 if raw[:3] == _BOM else 0
        self.layouts: dict[str, int] = {}
        self.opening = False

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        raw = self.raw
        if raw.find(b"\x04") >= 0:
            return self._messages(raw)
        if raw.find(b"\r") >= 0:  # \r\n and a lone \r end a line, as str.splitlines has it
            self.raw = bytes(raw[self.start:]).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            self.start = 0
        return self._lines()

    def framing(self, unwrapped: Mapping[str, int] | None = None) -> Framing:
        """The documents found per layout, as a reader's last outcome; ``unwrapped``
        adds what the reader counted itself (the envelopes it took off)."""
        return Framing({**self.layouts, **(unwrapped or {})})

    def _count(self, layout: str, n: int = 1) -> None:
        if n:
            self.layouts[layout] = self.layouts.get(layout, 0) + n

    def _messages(self, raw: bytes | mmap.mmap) -> Iterator[tuple[int, Any]]:
        """An EOT-separated stream: each piece one document, numbered from the first."""
        start, end, position = self.start, len(raw), self.first_position
        opening = position == 1
        while start < end:
            stop = raw.find(b"\x04", start)
            if stop < 0:
                stop = end
            piece = raw[start:stop].strip()
            if piece:
                self.opening, opening = opening, False
                self._count(EOT_MESSAGE)
                yield position, _decode(piece, 1, f"message {position}")
            start, position = stop + 1, position + 1

    def _lines(self) -> Iterator[tuple[int, Any]]:
        """Line-oriented text: a document per line, or per run of lines for a
        document that closes on a later line than it opens."""
        raw, loads, error = self.raw, orjson.loads, orjson.JSONDecodeError
        find, end = raw.find, len(raw)
        pos, line, lines = self.start, self.first_position, 0
        opening = line == 1
        while pos < end:
            eol = find(b"\n", pos)
            if eol < 0:
                eol = end
            piece = raw[pos:eol].strip()
            if piece:
                try:
                    value = loads(piece)
                except error:
                    pos, line = yield from self._slow(pos, eol, line, opening)
                    opening = False
                    continue
                self.opening, opening = opening, False
                lines += 1
                yield line, value
            pos, line = eol + 1, line + 1
        self._count(JSON_LINE, lines)

    def _slow(self, pos: int, eol: int, line: int, opening: bool
              ) -> Generator[tuple[int, Any], None, tuple[int, int]]:
        """The documents of a line that is not one whole document; returns where to
        go on (the offset and number of a line start).

        Each document that opens here is read to its close, and what follows it
        on its last line the same way. Followed by a line that is a whole
        document, the line is read by itself (documents concatenated on it,
        or a truncated JSON line: one Unreadable); otherwise a document may
        close lines later (pretty-printed).
        """
        raw = self.raw
        limit = eol if self._next_line_is_a_document(eol) else len(raw)
        at = _NOT_SPACE.search(raw, pos, eol).start()  # type: ignore[union-attr]
        while True:
            close = self._close_of(at, limit) if raw[at] in _OPENERS else -1
            if close < 0:  # not a document that closes: one Unreadable up to the next start
                if limit == eol or raw[at] not in _OPENERS:
                    resume, resume_line, stop = eol + 1, line + 1, eol
                else:
                    resume, resume_line = self._next_opening(eol, line + 1, raw[at] == 0x5B)
                    stop = min(resume, len(raw))
                self.opening = opening
                self._count(MULTILINE if resume_line > line + 1 else JSON_LINE)
                yield line, self._unclosed(at, stop, line, resume_line)
                return resume, resume_line
            last = line + _newlines(raw, at, close)
            self.opening, opening = opening, False
            self._count(MULTILINE if last > line else JSON_LINE)
            yield line, _decode(raw[at:close], line, f"line {line}")
            eol = raw.find(b"\n", close)
            if eol < 0:
                eol = len(raw)
            found = _NOT_SPACE.search(raw, close, eol)
            if not found:
                return eol + 1, last + 1
            at, line = found.start(), last  # another document (or junk) on the same line
            if limit != len(raw):
                limit = eol

    def _unclosed(self, at: int, resume: int, line: int, resume_line: int) -> Unreadable:
        """Why the document opening at ``at`` (line ``line``) is not JSON: the decoder's
        reason, and the lines it spans when more than one."""
        found = _decode(self.raw[at:resume], line, f"line {line}")
        reason = found.reason if isinstance(found, Unreadable) else "not JSON"
        if resume_line > line + 1:
            until = f"line {resume_line}" if resume < len(self.raw) else "the end of the input"
            reason += f" (a document opening at line {line} that does not close before {until})"
        return Unreadable(reason)

    def _next_line_is_a_document(self, eol: int) -> bool:
        """Whether the next line with text is a whole JSON document by itself."""
        raw = self.raw
        found = _NOT_SPACE.search(raw, eol)
        if not found:
            return False
        start = found.start()
        stop = raw.find(b"\n", start)
        try:
            orjson.loads(raw[start:stop if stop >= 0 else len(raw)])
        except orjson.JSONDecodeError:
            return False
        return True

    def _close_of(self, at: int, limit: int) -> int:
        """The offset just past the bracket closing the one at ``at``, or -1 when none
        does before ``limit`` (or, for an object, before a line that opens a document
        at column 0: a pretty-printer indents what is inside; an array's elements
        may well start at column 0)."""
        raw, depth = self.raw, 0
        bounded = raw[at] == 0x7B  # "{"
        for token in _TOKENS.finditer(raw, at, limit):
            first = raw[token.start()]
            if first == 0x22:  # a string: its brackets are text
                continue
            if first in _OPENERS:
                if bounded and depth and raw[token.start() - 1] == 0x0A:  # a new document
                    return -1
                depth += 1
            else:
                depth -= 1
                if depth == 0:
                    return token.end()
        return -1

    def _next_opening(self, eol: int, line: int, arrays_only: bool) -> tuple[int, int]:
        """The next line at or after ``eol + 1`` opening a document at column 0 (an
        array only, after an array: its elements may start there), and its number."""
        raw = self.raw
        hits = [i for i in (-1 if arrays_only else raw.find(b"\n{", eol),
                            raw.find(b"\n[", eol)) if i >= 0]
        if not hits:
            return len(raw), line + _newlines(raw, eol + 1, len(raw))
        start = min(hits) + 1
        return start, line + _newlines(raw, eol + 1, start)


def _newlines(raw: bytes | mmap.mmap, start: int, stop: int) -> int:
    """Line ends in ``raw[start:stop]`` (a mapping has no ``count``: its slice is counted)."""
    if isinstance(raw, bytes):
        return raw.count(b"\n", start, stop)
    return raw[start:stop].count(b"\n")


def _decode(piece: bytes, line: int, where: str) -> Any:
    """The value of one document, or Unreadable saying why (at which line and column)."""
    try:
        return orjson.loads(piece)
    except orjson.JSONDecodeError:
        pass
    text = piece.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        return Unreadable(f"not JSON: {exc.msg} at line {line + exc.lineno - 1} "
                          f"column {exc.colno}")
    except (ValueError, RecursionError) as exc:  # digits past the limit, nesting too deep
        return Unreadable(f"not JSON ({where}): {type(exc).__name__}: {str(exc)[:100]}")


def envelope(doc: Any) -> tuple[Any, bool]:
    """A MONIT archive's record unwrapped: ``({...}, True)`` for
    ``{"data": {...}, "metadata": {...}}``, else ``(doc, False)``.

    >>> envelope({"data": {"a": 1}, "metadata": {"producer": "fts"}})
    ({'a': 1}, True)
    """
    if (type(doc) is dict and type(doc.get("data")) is dict
            and type(doc.get("metadata")) is dict):
        return doc["data"], True
    return doc, False


def search_hits(doc: Any) -> Any:
    """The ``hits.hits`` of an OpenSearch/Elasticsearch answer (a list, unless the answer
    is broken), or None when ``doc`` is not one.

    >>> search_hits({"took": 3, "hits": {"total": 1, "hits": [{"_id": "a", "_source": {}}]}})
    [{'_id': 'a', '_source': {}}]
    """
    if type(doc) is dict and type(doc.get("hits")) is dict:
        return doc["hits"].get("hits")
    return None


class Hit(NamedTuple):
    """One hit of a search answer: where its record stands and what it holds."""

    position: int  # the hit's index where the answer opens the input, else the answer's
    prefix: str  # for the reasons of a hit within an answer: ``"hit <index>: "``, else ""
    source: dict[str, Any] | None  # its ``_source``, None where that is not an object
    id: Any  # its ``_id`` as found (None where it has none)


def hits_of(position: int, hits: list[Any], opening: bool) -> Iterator[Hit]:
    """The hits of a search answer at ``position`` (``opening``: the answer opens the input).

    >>> [tuple(h) for h in hits_of(4, [{"_id": "a", "_source": {}}, 7], False)]
    [(4, 'hit 1: ', {}, 'a'), (4, 'hit 2: ', None, None)]
    """
    for index, hit in enumerate(hits, start=1):
        source = hit.get("_source") if isinstance(hit, dict) else None
        yield Hit(index if opening else position, "" if opening else f"hit {index}: ",
                  source if isinstance(source, dict) else None,
                  hit.get("_id") if isinstance(hit, dict) else None)


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for reasons.

    >>> [json_type(v) for v in (None, True, 3, 2.5, "x", [], {})]
    ['null', 'boolean', 'number', 'number', 'string', 'array', 'object']
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    names = {dict: "object", list: "array", str: "string", int: "number", float: "number"}
    return names.get(type(value), type(value).__name__)

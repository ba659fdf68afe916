"""XRootD summary monitoring (``xrd.report``) -> counted, not stored: server load is not a link.

An XRootD server configured with ``xrd.report`` sends, every interval, one
XML document per UDP datagram (xrootd/xrootd summary monitoring;
``<statistics tod=".." ver=".." src="host:port" tos=".." pgm="xrootd"
ins=".." pid=".." site=".."> <stats id="info|buff|link|poll|proc|xrootd|ofs|
sched|sgen|..."> ... </stats> </statistics>``; ``link`` holds ``num, maxn,
tot, in, out`` (bytes), ``ctime, tmo, stall, sfps``). Its counters are
cumulative since ``tos`` and describe one server's load, not a link
between two sites: each document is read (so a broken one is rejected, at
the line it starts on) and counted as not a link. netbroker keeps none of
it. Collected files hold the documents one after another, one per line or
pretty-printed; a forwarded datagram (``collectors.xrdmon``) holds one.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator

from collectors.records import NotALink, Outcome, Rejected

__all__ = ["SUMMARY", "is_xml", "read_summaries"]

SUMMARY = "XRootD summary monitoring (xrd.report)"
_WHAT = ("XRootD summary (xrd.report): one server's load (counters since its start), not a "
         "link; netbroker keeps none of it")
_DOCUMENT = re.compile(rb"<statistics\b.*?</statistics\s*>", re.DOTALL)
_UNSAFE = re.compile(rb"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)


def is_xml(data: bytes | str) -> bool:
    """Whether the input opens with ``<`` (XML, not JSON).

    >>> is_xml(b"  <statistics/>"), is_xml('{"a": 1}')
    (True, False)
    """
    raw = data.encode() if isinstance(data, str) else data
    return raw[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"<"


def read_summaries(data: bytes | str, first_position: int = 1) -> Iterator[Outcome]:
    """One outcome per ``<statistics>`` document of the input, at the line it starts on.

    Parameters
    ----------
    data : bytes or str
        Summary documents, one after another (any whitespace between).
    first_position : int
        The number of the input's first line.

    Returns
    -------
    iterator of NotALink or Rejected
        A NotALink per document that is well-formed XML with a ``src``; a
        Rejected per one that is not, and per stretch of text between
        documents that is not whitespace.

    Examples
    --------
    >>> doc = ('<statistics tod="1725485991" ver="v5.6.9" src="xrd1.example.org:1094" '
    ...        'tos="1725485980" pgm="xrootd" ins="atlas" pid="482140"><stats id="link">'
    ...        '<num>1</num><in>158400</in><out>85782</out></stats></statistics>')
    >>> [type(o).__name__ for o in read_summaries(doc + "\\n" + doc + "\\njunk")]
    ['NotALink', 'NotALink', 'Rejected']
    """
    raw = data.encode() if isinstance(data, str) else bytes(data)
    at, line = 0, first_position
    for match in _DOCUMENT.finditer(raw):
        yield from _between(raw[at:match.start()], line)
        line += raw.count(b"\n", at, match.start())
        yield _summary(match.group(), line)
        line += raw.count(b"\n", match.start(), match.end())
        at = match.end()
    yield from _between(raw[at:], line)


def _summary(doc: bytes, line: int) -> Outcome:
    if _UNSAFE.search(doc):
        return Rejected(line, "XRootD summary with a DOCTYPE or ENTITY declaration: not read",
                        shape=SUMMARY)
    try:
        root = ElementTree.fromstring(doc)
    except ElementTree.ParseError as exc:
        return Rejected(line, f"not XML: {exc} (an XRootD summary is <statistics src=...> "
                              "<stats id=...>...</stats></statistics>)", shape=SUMMARY)
    if not root.get("src"):
        return Rejected(line, "XRootD summary without src (the server's host:port)",
                        shape=SUMMARY)
    return NotALink(line, _WHAT, SUMMARY)


def _between(text: bytes, line: int) -> Iterator[Rejected]:
    """Text between documents: whitespace, or one rejection naming what was expected."""
    stripped = text.strip()
    if stripped:
        lead = len(text) - len(text.lstrip())
        yield Rejected(line + text.count(b"\n", 0, lead),
                       f"not an XRootD summary document: {stripped[:40]!r} (expected "
                       "<statistics ...>...</statistics>)", shape=SUMMARY)

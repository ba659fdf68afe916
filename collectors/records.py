"""What every collector's reader yields: one outcome per record read.

Readers are pure: they read a source's own record format and yield, in
input order, one outcome per record they read, never raising for bad
input:

- :class:`Record`: a record that measured a link, with its
  :class:`ParsedSample` (one per kind it measured);
- :class:`NotALink`: a record read that measures no link (a server
  summary, a map packet, metadata without points), saying what it is;
- :class:`Rejected`: a record that cannot be used, with its position and why;

and last one :class:`Framing`, how the input was framed. Every record
read is exactly one of the three, which is how an ingestion's counts add
up to the records read. ``parse`` (each module's older entry point) is the
same stream flattened to samples and rejections.

Readers know nothing of the grid registry: the two ends of a link are
given as :class:`HostRef` (a site name, an RSE, a host name, an IP, a
network domain) and ``collectors.ingest`` maps them to sites.

Units are normalised here, once (see ``KIND_UNITS``); the unit the source
used is kept in ``source_unit`` for provenance. ``Source``, ``MetricKind``
and ``KIND_UNITS`` are the core's (``netbroker.network.metrics``), re-exported.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from netbroker.common.metric_kinds import KIND_UNITS, MetricKind
from netbroker.common.metric_kinds import MetricSource as Source

__all__ = ["KIND_UNITS", "Framing", "HostRef", "MetricKind", "NotALink", "Outcome", "ParsedSample",
           "Record", "Rejected", "Source", "flatten"]


class HostRef(NamedTuple):
    """One end of a measured link, as the source names it.

    ``by`` says what ``value`` is: ``"site"`` (a grid site name), ``"rse"``
    (a storage endpoint name), ``"host"`` (a fully qualified host name),
    ``"ip"`` (an IPv4/IPv6 address) or ``"domain"`` (a network domain such
    as ``desy.de``). Host names and domains are lower-case.
    """

    by: str
    value: str


class ParsedSample(NamedTuple):
    """One measurement of one link, in netbroker's units.

    A named tuple rather than a dataclass: parsers make millions of them
    and a tuple is the cheapest immutable record Python has.

    Attributes
    ----------
    source : Source
    origin_id : str
        Unique within ``source`` for this measurement *and kind*; re-ingesting
        the same record yields the same id, which is how duplicates are dropped.
    src, dst : HostRef
        Data flows from ``src`` to ``dst`` (for throughput: the reader is ``dst``).
    kind : MetricKind
    value : float
        In ``KIND_UNITS[kind]``.
    ts_s : float
        When the measurement ended, Unix epoch seconds (UTC).
    weight : float
        Bytes moved for a throughput sample of a transfer or file read (so a
        window's throughput is byte-weighted); 1.0 otherwise, and always 1.0
        for ``success`` (a failed transfer moved no bytes but still counts).
        0.0 for a value summarised over a window by its archive (an esmond
        average or aggregation): a window's weighted mean then leaves it out
        where measurements of their own exist, and takes it (as the plain
        mean) where only summaries do.
    source_unit : str
        The unit the source reported, e.g. ``"bytes/s"``, ``"bits/s"``, ``"MB/s"``.
    """

    source: Source
    origin_id: str
    src: HostRef
    dst: HostRef
    kind: MetricKind
    value: float
    ts_s: float
    weight: float
    source_unit: str


class Record(NamedTuple):
    """A record read that measured a link: its samples, all of the same two ends.

    ``position`` as for :class:`Rejected`; ``shape`` names what the record
    is (``"FTS transfer-complete message"``, ``"esmond points (throughput
    averages/86400)"``), counted in the ingestion report.
    """

    position: int
    shape: str
    samples: tuple[ParsedSample, ...]


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that was not used: where it was in the input and why.

    ``position`` is 1-based: the line where the record's document starts
    for line-oriented inputs (JSON lines, pretty-printed documents, XML),
    the message's number in an EOT-separated stream, the record's index in
    a JSON array that opens the input. ``shape`` names what the record was
    read as, when that is known (it takes no part in equality).
    """

    position: int
    reason: str
    origin_id: str | None = None
    shape: str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class NotALink:
    """A record read that measures no link: what it is, and so why nothing is stored.

    ``what`` is general enough to be counted (``"XRootD summary (xrd.report):
    server load, not a link"``); ``position`` and ``shape`` as for
    :class:`Rejected`.
    """

    position: int
    what: str
    shape: str


@dataclass(frozen=True, slots=True)
class Framing:
    """How the input was framed: documents found per layout (``"JSON line"``,
    ``"multi-line JSON document"``, ``"EOT-separated message"``, ...).

    A reader yields one, last; it counts documents, not records (one document
    may hold many records, as an esmond bundle or a JSON array does).
    """

    layouts: dict[str, int]


Outcome = Record | Rejected | NotALink | Framing


def flatten(outcomes: Iterable[Outcome]) -> Iterator[ParsedSample | Rejected]:
    """A reader's outcomes as each module's ``parse`` gives them: every Record's samples
    and every Rejected, in order (what is not a link, and the framing, left out).

    >>> from collectors.records import Framing, NotALink, Rejected
    >>> list(flatten([Rejected(1, "bad"), NotALink(2, "a map", "m"), Framing({})]))
    [Rejected(position=1, reason='bad', origin_id=None, shape=None)]
    """
    for item in outcomes:
        if type(item) is Record:
            yield from item.samples
        elif type(item) is Rejected:
            yield item

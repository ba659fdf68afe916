"""What every collector's parser yields: parsed samples and rejections.

Parsers are pure: they read a source's own record format and yield, in
input order, one :class:`ParsedSample` per measurement or one
:class:`Rejected` per record that cannot be used, never raising for bad
input. They know nothing of the grid registry: the two ends of a link are
given as :class:`HostRef` (a site name, an RSE, a host name, an IP, a
network domain) and ``collectors.ingest`` maps them to sites.

Units are normalised here, once (see ``KIND_UNITS``); the unit the source
used is kept in ``source_unit`` for provenance. ``Source``, ``MetricKind``
and ``KIND_UNITS`` are the core's (``netbroker.metrics``), re-exported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from netbroker.metric_kinds import KIND_UNITS, MetricKind
from netbroker.metric_kinds import MetricSource as Source

__all__ = ["KIND_UNITS", "HostRef", "MetricKind", "ParsedSample", "Rejected", "Source"]


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


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that was not used: where it was in the input and why.

    ``position`` is 1-based: the line number for line-oriented inputs, the
    record's index for JSON arrays (``detail`` may add a path inside it).
    """

    position: int
    reason: str
    origin_id: str | None = None

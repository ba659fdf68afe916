"""Federated-XRootD measurements -> throughput and success samples.

The forms XRootD's measurements are published in, each record's told apart
on its own: the FAX cost matrix and per-file transfer records (WLCG's form,
and MONIT/GLED's) here; detailed-monitoring packets as the OSG shoveler
forwards them (``collectors.xrdmon``); summary monitoring XML, counted but
not a link (``collectors.xrdsummary``). JSON comes in any layout
(``collectors.layout``: lines, pretty-printed, arrays, concatenated), or as
an OpenSearch search response (``{"hits": {"hits": [{"_id", "_source"}]}}``);
a record wrapped as archives do (``{"data": {...}, "metadata": {...}}``) is
unwrapped first.

**FAX cost matrix.** Defined by ATLAS-Analytics/CostMatrix
``HC/cost_matrix_probe.py`` (the probe), ``REST_api/cost.js`` (what it
indexes) and ``REST_api/ES-template.sh`` (the index mapping). A probe at the
destination site times ``xrdcp`` of a test file from the source site's door,
so data flows ``source`` -> ``destination``. Fields read: ``source``,
``destination`` (ATLAS site names), ``timestamp`` (epoch ms, the probe's
``time``; seconds are told apart as below), ``rate`` (MB/s, indexed as the
query-string text, so often a string). A failed copy is indexed with ``log``
(the ``time`` output holding ``EXITSTATUS``) and no ``rate``. The index also
keeps a ``last: true`` copy of each link's newest document; it yields the
same origin ids, so ingesting both stores it once.

**Per-file transfer records** (the WLCG "GenericFileMonitoring" form).
Defined by opensciencegrid/xrootd-monitoring-shoveler
``collector/wlcg_converter.go`` (``WLCGRecord``) and the older
opensciencegrid/xrootd-monitoring-collector ``Collectors/DetailedCollector.py``
and ``wlcg_converter.py``. Fields read: ``unique_id``, ``operation``
(``read``/``write``/``unknown``, may be absent), ``read_bytes`` (bytes,
``read_single_bytes + read_vector_bytes``), ``start_time``/``end_time``,
``server_site`` (``"UNKNOWN"`` when the server never sent its site name),
``server_host``/``server_domain``, ``client_domain``/``client_host``.
The producers disagree on the clock: the Python collector writes epoch ms,
the Go shoveler and the WLCG twiki example epoch seconds; a value above
``1e11`` is taken as ms (1e11 s is the year 5138, 1e11 ms is 1973).
The Python converter writes ``server_host`` without its domain (which goes
to ``server_domain``); the shoveler writes the full name. Not read:
``file_size`` (-1 when unknown; re-reads make it no bound on ``read_bytes``),
``operation_time`` (whole seconds, less precise than the span) and
``write_bytes``.
"""

from __future__ import annotations

import functools
import ipaddress
import math
from collections.abc import Callable, Iterator
from typing import Any

from collectors import xrdmon, xrdsummary
from collectors.layout import JsonDocuments, Unreadable, envelope, hits_of, json_type, search_hits
from collectors.records import (
    Framing,
    HostRef,
    NotALink,
    Outcome,
    ParsedSample,
    Record,
    Rejected,
    flatten,
)
from netbroker.common.metric_kinds import MetricKind
from netbroker.common.metric_kinds import MetricSource as Source

__all__ = ["parse", "parse_cost_matrix", "parse_file_records", "read"]

COST_MATRIX = "FAX cost-matrix document"
FILE_RECORD = "WLCG per-file transfer record"
GLED_RECORD = "MONIT/GLED per-file transfer record"
_NOT_JSON = "not JSON"
_SEARCH, _MONIT = "OpenSearch search answer", "MONIT envelope"
_EXPECTED = ("a cost-matrix document {source, destination, rate, timestamp}, a per-file "
             "record {unique_id, read_bytes, start_time, end_time, server_*, client_*} or a "
             "shoveler packet {remote, data}")

_MS_ABOVE = 1e11  # epoch values above this are milliseconds, below it seconds
# A read "lasting" longer than this is not a network measurement: the Go
# shoveler takes start_time from the server's start (collector/correlator.go),
# which turns the span into the server's uptime.
_MAX_READ_S = 7 * 86400.0
_NO_NAME = {"", "unknown"}  # what the producers write when they could not tell

Fields = dict[str, Any]
Handler = Callable[[Fields], list[ParsedSample]]
Form = tuple[str, Handler]


class _Bad(ValueError):
    """A record that cannot be used; the message names the field."""


class _NoLink(ValueError):
    """A record that measures no link between sites; the message says what it is."""


def parse_cost_matrix(data: bytes | str) -> Iterator[ParsedSample | Rejected]:
    """Parse FAX cost-matrix documents (one XRootD probe copy each).

    Parameters
    ----------
    data : bytes or str
        Documents ``{source, destination, rate, timestamp}`` in any JSON
        layout, or an OpenSearch search response of them, bare or wrapped.

    Returns
    -------
    iterator of ParsedSample or Rejected
        For a copy with a rate: a throughput sample (MB/s, weight 1.0) and a
        success sample of 1.0, ``source`` -> ``destination`` by site name. For
        a failed copy (no rate): only a success sample of 0.0. One Rejected,
        naming the field, per unusable document.

    Notes
    -----
    O(n) in the input size, one ``json.loads`` per line. A rate of exactly 0
    is what the probe uploads when ``time`` printed no copy time yet ``xrdcp``
    exited 0: the read succeeded but its rate is unknown, so it gives a
    success sample of 1.0 and no throughput.

    Examples
    --------
    >>> doc = ('{"source": "CERN-PROD", "destination": "MWT2", "rate": "45.2",'
    ...        ' "timestamp": 1700000000000}')
    >>> [(s.kind.value, s.value, s.src.value, s.ts_s) for s in parse_cost_matrix(doc)]
    [('throughput', 45.2, 'CERN-PROD', 1700000000.0), ('success', 1.0, 'CERN-PROD', 1700000000.0)]
    """
    return flatten(_read(data, 1, (COST_MATRIX, _cost_matrix_samples)))


def parse_file_records(data: bytes | str) -> Iterator[ParsedSample | Rejected]:
    """Parse per-file XRootD transfer records (WLCG form) into read rates.

    Parameters
    ----------
    data : bytes or str
        JSON Lines, a JSON array, or an OpenSearch search response of
        records, bare or wrapped as ``{"data": {...}, "metadata": {...}}``.

    Returns
    -------
    iterator of ParsedSample or Rejected
        Per read: a throughput sample (MB/s = ``read_bytes`` / seconds between
        ``start_time`` and ``end_time`` / 1e6, weight ``read_bytes``) and a
        success sample of 1.0 (weight 1.0), server -> client. Writes,
        reads of zero bytes and local reads yield nothing (:func:`read`
        counts them as not a link). One Rejected, naming the field, per
        malformed record.

    Notes
    -----
    O(n) in the input size. The server end is ``server_site`` (a site
    name) when known, else the server's host name (or IP); the client end
    is ``client_domain``, else ``client_host``. The bytes are ``read_bytes``,
    else (GLED) ``read_bytes_at_close``. Writes are not read rates because
    their span also covers reading and waiting, zero-byte reads carry no
    rate, and local reads cross no link; none is malformed, so none is
    Rejected.

    Examples
    --------
    >>> rec = ('{"unique_id": "u1", "operation": "read", "read_bytes": 250000000,'
    ...        ' "start_time": 1700000000000, "end_time": 1700000010000,'
    ...        ' "server_site": "MWT2", "client_domain": "uchicago.edu"}')
    >>> [(s.kind.value, s.value, s.weight, s.dst) for s in parse_file_records(rec)]
    ... # doctest: +NORMALIZE_WHITESPACE
    [('throughput', 25.0, 250000000.0, HostRef(by='domain', value='uchicago.edu')),
     ('success', 1.0, 1.0, HostRef(by='domain', value='uchicago.edu'))]
    """
    return flatten(_read(data, 1, (FILE_RECORD, _file_samples)))


def parse(data: bytes | str) -> Iterator[ParsedSample | Rejected]:
    """Parse every XRootD form, telling them apart per record: :func:`read`, flattened.

    Parameters
    ----------
    data : bytes or str
        As for :func:`read`.

    Returns
    -------
    iterator of ParsedSample or Rejected
        A record with ``read_bytes`` (or ``read_bytes_at_close``) or
        ``unique_id`` is a per-file record; one with ``rate``, or with
        ``source`` and ``destination``, is a cost-matrix document; anything
        else that is no packet is Rejected as an unknown form (what is not a
        link is left out: :func:`read` counts it).

    Examples
    --------
    >>> lines = ('{"source": "DESY-HH", "destination": "FZK-LCG2", "timestamp": 1700000000000,'
    ...          ' "log": "EXITSTATUS=54"}\\n{"hello": "world"}')
    >>> [r.reason if isinstance(r, Rejected) else (r.kind.value, r.value) for r in parse(lines)]
    ... # doctest: +ELLIPSIS
    [('success', 0.0), 'unknown record form: keys hello; expected a cost-matrix document ...']
    """
    return flatten(read(data))


def read(data: bytes | str, first_position: int = 1) -> Iterator[Outcome]:
    """Read XRootD records of every form: one outcome per record, then the framing.

    Parameters
    ----------
    data : bytes or str
        JSON in any layout (cost-matrix documents, per-file records,
        shoveler packets, search responses, mixed), or summary XML.
    first_position : int
        The position of the input's first line, for a later part of a batch.

    Returns
    -------
    iterator of Record, Rejected, NotALink, then one Framing
        Per record in input order, as this module's notes say each form
        gives; packets correlated over the batch (``collectors.xrdmon``).

    Notes
    -----
    O(n) in the input size.

    Examples
    --------
    >>> rec = ('{"data": {"unique_id": "u1", "activity": "r", "read_bytes": 0,'
    ...        ' "read_bytes_at_close": 189272229, "start_time": 1491789025000,'
    ...        ' "end_time": 1491789715000, "server_host": "p0579", "server_domain": "cern.ch",'
    ...        ' "client_domain": "in2p3.fr", "remote_access": true},'
    ...        ' "metadata": {"producer": "xrootd", "type": "gled"}}')
    >>> record, framing = read(rec)
    >>> record.shape, round(record.samples[0].value, 6), record.samples[0].src.value
    ('MONIT/GLED per-file transfer record', 0.274308, 'p0579.cern.ch')
    >>> framing.layouts
    {'JSON line': 1, 'MONIT envelope': 1}
    """
    return _read(data, first_position, None)


def _read(data: bytes | str, first_position: int, forced: Form | None) -> Iterator[Outcome]:
    """:func:`read`; ``forced``, the one form every JSON record is read as."""
    if xrdsummary.is_xml(data):
        documents = 0
        for outcome in xrdsummary.read_summaries(data, first_position):
            documents += 1
            yield outcome
        yield Framing({"XML document": documents})
        return
    docs = JsonDocuments(data, first_position)
    reader = _Reader(forced, xrdmon.Correlator(), {})
    for position, doc in docs:
        yield from reader.document(position, doc, docs.opening)
    yield docs.framing(reader.unwrapped)


class _Reader:
    """The state of one batch's reading: the form forced, the packets' maps, the
    containers unwrapped (for the framing)."""

    def __init__(self, forced: Form | None, packets: xrdmon.Correlator,
                 unwrapped: dict[str, int]) -> None:
        self.forced, self.packets, self.unwrapped = forced, packets, unwrapped

    def document(self, position: int, doc: Any, opening: bool) -> Iterator[Outcome]:
        if type(doc) is Unreadable:
            yield Rejected(position, doc.reason, shape=_NOT_JSON)
            return
        hits = search_hits(doc)
        if hits is not None:
            self._unwrapped(_SEARCH)
            yield from self._hits(position, hits, opening)
        elif isinstance(doc, list) and (opening or (doc and all(isinstance(r, dict)
                                                                for r in doc))):
            for index, record in enumerate(doc, start=1):
                yield self.record(index if opening else position, record,
                                  "" if opening else f"item {index}: ")
        elif isinstance(doc, dict) and xrdmon.is_packet(doc) and self.forced is None:
            yield from self.packets.read(position, doc, xrdsummary.read_summaries)
        else:
            if envelope(doc)[1]:
                self._unwrapped(_MONIT)
            yield self.record(position, doc, "")

    def record(self, position: int, record: Any, prefix: str) -> Outcome:
        """One record's outcome, by its form (or the form forced)."""
        try:
            inner = _unwrap(record)
            shape, handler = self.forced or _form(inner, record)
            try:
                return Record(position, shape, tuple(handler(inner)))
            except _NoLink as exc:
                return NotALink(position, str(exc), shape)
        except _Bad as exc:
            return Rejected(position, prefix + str(exc), _origin_of(record), _shape_of(record))

    def _hits(self, position: int, hits: Any, opening: bool) -> Iterator[Outcome]:
        if not isinstance(hits, list):
            yield Rejected(position, "search response hits.hits is not a list", shape=_SEARCH)
            return
        for hit in hits_of(position, hits, opening):
            if hit.source is not None:
                yield self.record(hit.position, hit.source, hit.prefix)
            else:
                yield Rejected(hit.position, "search hit has no _source object",
                               str(hit.id) if hit.id is not None else None, _SEARCH)

    def _unwrapped(self, what: str) -> None:
        self.unwrapped[what] = self.unwrapped.get(what, 0) + 1


def _form(record: Fields, outer: Any) -> Form:
    if "read_bytes" in record or "unique_id" in record or "read_bytes_at_close" in record:
        gled = ("read_bytes_at_close" in record
                or (isinstance(outer, dict) and isinstance(outer.get("metadata"), dict)
                    and outer["metadata"].get("type") == "gled"))
        return (GLED_RECORD if gled else FILE_RECORD), _file_samples
    if "rate" in record or ("source" in record and "destination" in record):
        return COST_MATRIX, _cost_matrix_samples
    keys = ", ".join(sorted(map(str, record))[:8]) or "none"
    raise _Bad(f"unknown record form: keys {keys}; expected {_EXPECTED}")


def _shape_of(record: Any) -> str:
    try:
        return _form(_unwrap(record), record)[0]
    except _Bad:
        return "unknown" if isinstance(record, dict) else json_type(record)


def _unwrap(record: Any) -> Fields:
    if not isinstance(record, dict):
        raise _Bad(f"record must be a JSON object, got {type(record).__name__}")
    # Archives wrap the record; the shoveler's own "metadata" sits beside the fields.
    inner, _ = envelope(record)
    return inner


def _origin_of(record: Any) -> str | None:
    """The record's key for a rejection, when it has one."""
    if not isinstance(record, dict):
        return None
    if isinstance(record.get("data"), dict):
        record = record["data"]
    if record.get("unique_id") not in (None, ""):
        return str(record["unique_id"])
    if all(record.get(k) not in (None, "") for k in ("source", "destination", "timestamp")):
        return f"{record['source']}:{record['destination']}:{record['timestamp']}"
    return None


# -- FAX cost matrix -----------------------------------------------------------------------

def _cost_matrix_samples(record: Fields) -> list[ParsedSample]:
    src = HostRef("site", _name(record, "source"))
    dst = HostRef("site", _name(record, "destination"))
    stamp = _number(record, "timestamp")
    if stamp is None:
        raise _Bad("missing timestamp")
    ts_s = _epoch_s(stamp, "timestamp")
    origin = f"{src.value}:{dst.value}:{_id_number(stamp)}"
    rate = _number(record, "rate")
    if rate is None:  # the probe indexes a failed copy with its log and no rate
        return [ParsedSample(Source.XROOTD, f"{origin}:success", src, dst, MetricKind.SUCCESS,
                             0.0, ts_s, 1.0, "read")]
    if rate < 0:
        raise _Bad(f"rate {rate} is negative")
    success = ParsedSample(Source.XROOTD, f"{origin}:success", src, dst, MetricKind.SUCCESS,
                           1.0, ts_s, 1.0, "read")
    if rate == 0:
        return [success]
    return [ParsedSample(Source.XROOTD, f"{origin}:throughput", src, dst,
                         MetricKind.THROUGHPUT, rate, ts_s, 1.0, "MB/s"), success]


# -- per-file transfer records -------------------------------------------------------------

def _file_samples(record: Fields) -> list[ParsedSample]:
    unique_id = record.get("unique_id")
    if unique_id is None or unique_id == "":
        raise _Bad("missing unique_id")
    if isinstance(unique_id, bool) or not isinstance(unique_id, str | int):
        raise _Bad(f"unique_id must be a string, got {unique_id!r}")
    _not_a_write(record)
    read_bytes = _number(record, "read_bytes")
    at_close = _number(record, "read_bytes_at_close")
    if not read_bytes and at_close is not None:  # GLED: read_bytes 0, the bytes at close
        read_bytes = at_close
    if read_bytes is None:
        raise _Bad("missing read_bytes (and read_bytes_at_close)")
    if read_bytes < 0:
        raise _Bad(f"read_bytes {read_bytes:.0f} is negative")
    if read_bytes == 0:
        raise _NoLink("XRootD read of no bytes (read_bytes 0): no rate")
    src, dst = _server_end(record), _client_end(record)
    _not_local(record)
    start_s, end_s, clock = _read_span(record)
    rate = read_bytes / (end_s - start_s) / 1e6
    return [
        ParsedSample(Source.XROOTD, f"{unique_id}:throughput", src, dst, MetricKind.THROUGHPUT,
                     rate, end_s, read_bytes, f"bytes/({clock} span)"),
        ParsedSample(Source.XROOTD, f"{unique_id}:success", src, dst, MetricKind.SUCCESS,
                     1.0, end_s, 1.0, "read"),
    ]


def _not_a_write(record: Fields) -> None:
    """A write is no read rate: its span covers more than moving the data."""
    operation = record.get("operation")
    if operation is not None and not isinstance(operation, str):
        raise _Bad(f"operation must be a string, got {operation!r}")
    activity = record.get("activity")  # GLED: "r" or "w"
    if (operation or "").lower() == "write" or (isinstance(activity, str)
                                                and activity.lower() in ("w", "write")):
        raise _NoLink("XRootD write: its span is no read rate")


def _not_local(record: Fields) -> None:
    """A read within one site (``remote_access`` false, or one domain) crosses no link."""
    remote = record.get("remote_access")
    if remote is False or (isinstance(remote, str) and remote.strip().lower() == "false"):
        raise _NoLink("XRootD local read (remote_access false): no link between sites")
    server = _text(record, "server_domain").strip(".").lower()
    client = _text(record, "client_domain").strip(".").lower()
    if server and server == client and server not in _NO_NAME:
        raise _NoLink("XRootD local read (server and client in one domain): no link between "
                      "sites")


def _read_span(record: Fields) -> tuple[float, float, str]:
    """(start, end) in epoch seconds and the clock they came in (``ms`` or ``s``)."""
    start, end = _number(record, "start_time"), _number(record, "end_time")
    if start is None:
        raise _Bad("missing start_time")
    if end is None:
        raise _Bad("missing end_time")
    start_s, end_s = _epoch_s(start, "start_time"), _epoch_s(end, "end_time")
    if end_s < start_s:
        raise _Bad(f"end_time {_id_number(end)} is before start_time {_id_number(start)}")
    if end_s == start_s:
        raise _Bad(f"end_time equals start_time {_id_number(start)}: zero duration")
    if end_s - start_s > _MAX_READ_S:
        raise _Bad(f"start_time to end_time spans {end_s - start_s:.0f} s, longer than "
                   f"{_MAX_READ_S:.0f} s: not a file read's duration")
    return start_s, end_s, "ms" if end > _MS_ABOVE else "s"


def _server_end(record: Fields) -> HostRef:
    site = _text(record, "server_site")
    if site.lower() not in _NO_NAME:
        return HostRef("site", site)
    host = _text(record, "server_host")
    domain = _text(record, "server_domain").strip(".")
    if host.lower() in _NO_NAME:
        raise _Bad("missing server_site and server_host")
    if "." not in host and ":" not in host and domain:
        host = f"{host}.{domain}"  # the Python converter splits the name in two
    return _host_ref(host)


def _client_end(record: Fields) -> HostRef:
    domain = _text(record, "client_domain").strip(".")
    if domain:
        return _domain_ref(domain.lower())
    host = _text(record, "client_host")
    if host.lower() in _NO_NAME:
        raise _Bad("missing client_domain and client_host")
    return _host_ref(host)


@functools.lru_cache(maxsize=1 << 16)
def _domain_ref(domain: str) -> HostRef:
    """One HostRef per domain (cached as :func:`_host_ref`)."""
    return HostRef("domain", domain)


@functools.lru_cache(maxsize=1 << 16)
def _host_ref(name: str) -> HostRef:
    """A host name, or an IP address when that is all the producer resolved (cached: a
    batch names its servers and clients again and again, and telling an IP literal
    costs an exception for every name that is none)."""
    bare = name.strip("[]")
    try:
        return HostRef("ip", str(ipaddress.ip_address(bare)))
    except ValueError:
        return HostRef("host", name.lower())


# -- field readers -------------------------------------------------------------------------

def _name(record: Fields, key: str) -> str:
    value = _text(record, key)
    if not value:
        raise _Bad(f"missing {key}")
    return value


def _text(record: Fields, key: str) -> str:
    """A string field, stripped; absent or null reads as empty."""
    value = record.get(key)
    if type(value) is str:  # the usual case, first
        return value.strip()
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Bad(f"{key} must be a string, got {value!r}")
    return value.strip()


def _number(record: Fields, key: str) -> float | None:
    """A numeric field, None when absent; numbers often arrive as strings ("0", "-1")."""
    raw = record.get(key)
    if type(raw) is int and -(2**63) <= raw < 2**63:  # the usual case, first
        return float(raw)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise _Bad(f"{key} must be a number, got {raw!r}")
    try:
        value = float(raw)
    except ValueError:
        raise _Bad(f"{key} must be a number, got {_show(raw)}") from None
    except OverflowError:
        raise _Bad(f"{key} must be a finite number, got {_show(raw)}") from None
    if not math.isfinite(value):
        raise _Bad(f"{key} must be a finite number, got {raw!r}")
    return value


def _show(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."


def _epoch_s(value: float, key: str) -> float:
    if value <= 0:
        raise _Bad(f"{key} {_id_number(value)} is not a positive epoch time")
    return value / 1000.0 if value > _MS_ABOVE else value


def _id_number(value: float) -> str:
    """The same text whether the number arrived as 1700000000000, 1.7e12 or "1700000000000"."""
    return str(int(value)) if value.is_integer() else repr(value)

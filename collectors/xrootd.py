"""Federated-XRootD measurements -> throughput and success samples.

Two record forms live here, both read from JSON Lines, one JSON array, or an
OpenSearch search response (``{"hits": {"hits": [{"_id", "_source"}]}}``);
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

import ipaddress
import json
import math
from collections.abc import Callable, Iterator
from typing import Any

from collectors.records import HostRef, MetricKind, ParsedSample, Rejected, Source

__all__ = ["parse", "parse_cost_matrix", "parse_file_records"]

_MS_ABOVE = 1e11  # epoch values above this are milliseconds, below it seconds
# A read "lasting" longer than this is not a network measurement: the Go
# shoveler takes start_time from the server's start (collector/correlator.go),
# which turns the span into the server's uptime.
_MAX_READ_S = 7 * 86400.0
_NO_NAME = {"", "unknown"}  # what the producers write when they could not tell

Record = dict[str, Any]
Handler = Callable[[Record], list[ParsedSample]]


class _Bad(ValueError):
    """A record that cannot be used; the message names the field."""


def parse_cost_matrix(data: bytes | str) -> Iterator[ParsedSample | Rejected]:
    """Parse FAX cost-matrix documents (one XRootD probe copy each).

    Parameters
    ----------
    data : bytes or str
        JSON Lines, a JSON array, or an OpenSearch search response of
        ``{source, destination, rate, timestamp}`` documents, bare or wrapped.

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
    return _parse(data, _cost_matrix_samples)


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
        success sample of 1.0 (weight 1.0), server -> client. Writes and
        reads of zero bytes yield nothing. One Rejected, naming the field,
        per malformed record.

    Notes
    -----
    O(n) in the input size. The server end is ``server_site`` (a site
    name) when known, else the server's host name (or IP); the client end
    is ``client_domain``, else ``client_host``. Writes are skipped because
    their span also covers reading and waiting, and zero-byte reads because
    they carry no rate; neither is malformed, so neither is Rejected.

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
    return _parse(data, _file_samples)


def parse(data: bytes | str) -> Iterator[ParsedSample | Rejected]:
    """Parse cost-matrix documents and per-file records, telling them apart per record.

    Parameters
    ----------
    data : bytes or str
        As for :func:`parse_cost_matrix` and :func:`parse_file_records`; the
        two forms may be mixed.

    Returns
    -------
    iterator of ParsedSample or Rejected
        A record with ``read_bytes`` or ``unique_id`` is a per-file record;
        one with ``rate``, or with ``source`` and ``destination``, is a
        cost-matrix document; anything else is Rejected as an unknown form.

    Notes
    -----
    O(n) in the input size.

    Examples
    --------
    >>> lines = ('{"source": "DESY-HH", "destination": "FZK-LCG2", "timestamp": 1700000000000,'
    ...          ' "log": "EXITSTATUS=54"}\\n{"hello": "world"}')
    >>> [r.reason if isinstance(r, Rejected) else (r.kind.value, r.value) for r in parse(lines)]
    [('success', 0.0), 'unknown record form: keys hello']
    """
    return _parse(data, _any_samples)


def _parse(data: bytes | str, samples_of: Handler) -> Iterator[ParsedSample | Rejected]:
    """The one worker behind the public parsers: frame, unwrap, convert, reject."""
    for position, record in _records(data):
        if isinstance(record, Rejected):
            yield record
            continue
        try:
            yield from samples_of(_unwrap(record))
        except _Bad as exc:
            yield Rejected(position, str(exc), _origin_of(record))


def _any_samples(record: Record) -> list[ParsedSample]:
    if "read_bytes" in record or "unique_id" in record:
        return _file_samples(record)
    if "rate" in record or ("source" in record and "destination" in record):
        return _cost_matrix_samples(record)
    keys = ", ".join(sorted(record)[:8]) or "none"
    raise _Bad(f"unknown record form: keys {keys}")


# -- input framing -------------------------------------------------------------------------

def _records(data: bytes | str) -> Iterator[tuple[int, Any]]:
    """(1-based position, decoded record or Rejected) for each record of the input."""
    text = data.decode("utf-8-sig", errors="replace") if isinstance(data, bytes) else data
    stripped = text.strip()
    if not stripped:
        return
    try:
        whole = json.loads(stripped)
    except json.JSONDecodeError:
        yield from _lines(text)  # more than one document: JSON Lines (or garbage)
        return
    if isinstance(whole, list):
        yield from enumerate(whole, start=1)
    elif isinstance(whole, dict) and isinstance(whole.get("hits"), dict):
        yield from _hits(whole["hits"].get("hits"))
    else:  # a single JSON Lines record: keep its line number
        yield text[: text.index(stripped[0])].count("\n") + 1, whole


def _lines(text: str) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, Rejected(number, f"not JSON: {exc.msg} at column {exc.colno}")


def _hits(hits: Any) -> Iterator[tuple[int, Any]]:
    if not isinstance(hits, list):
        yield 1, Rejected(1, "search response hits.hits is not a list")
        return
    for index, hit in enumerate(hits, start=1):
        source = hit.get("_source") if isinstance(hit, dict) else None
        if isinstance(source, dict):
            yield index, source
        else:
            hit_id = hit.get("_id") if isinstance(hit, dict) else None
            yield index, Rejected(index, "search hit has no _source object",
                                  str(hit_id) if hit_id is not None else None)


def _unwrap(record: Any) -> Record:
    if not isinstance(record, dict):
        raise _Bad(f"record must be a JSON object, got {type(record).__name__}")
    # Archives wrap the record; the shoveler's own "metadata" sits beside the fields.
    if isinstance(record.get("data"), dict) and isinstance(record.get("metadata"), dict):
        return record["data"]
    return record


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

def _cost_matrix_samples(record: Record) -> list[ParsedSample]:
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

def _file_samples(record: Record) -> list[ParsedSample]:
    unique_id = record.get("unique_id")
    if unique_id is None or unique_id == "":
        raise _Bad("missing unique_id")
    if isinstance(unique_id, bool) or not isinstance(unique_id, str | int):
        raise _Bad(f"unique_id must be a string, got {unique_id!r}")
    operation = record.get("operation")
    if operation is not None and not isinstance(operation, str):
        raise _Bad(f"operation must be a string, got {operation!r}")
    if (operation or "").lower() == "write":
        return []
    read_bytes = _number(record, "read_bytes")
    if read_bytes is None:
        raise _Bad("missing read_bytes")
    if read_bytes < 0:
        raise _Bad(f"read_bytes {read_bytes:.0f} is negative")
    if read_bytes == 0:
        return []
    start_s, end_s, clock = _read_span(record)
    src, dst = _server_end(record), _client_end(record)
    rate = read_bytes / (end_s - start_s) / 1e6
    return [
        ParsedSample(Source.XROOTD, f"{unique_id}:throughput", src, dst, MetricKind.THROUGHPUT,
                     rate, end_s, read_bytes, f"bytes/({clock} span)"),
        ParsedSample(Source.XROOTD, f"{unique_id}:success", src, dst, MetricKind.SUCCESS,
                     1.0, end_s, 1.0, "read"),
    ]


def _read_span(record: Record) -> tuple[float, float, str]:
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


def _server_end(record: Record) -> HostRef:
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


def _client_end(record: Record) -> HostRef:
    domain = _text(record, "client_domain").strip(".")
    if domain:
        return HostRef("domain", domain.lower())
    host = _text(record, "client_host")
    if host.lower() in _NO_NAME:
        raise _Bad("missing client_domain and client_host")
    return _host_ref(host)


def _host_ref(name: str) -> HostRef:
    """A host name, or an IP address when that is all the producer resolved."""
    bare = name.strip("[]")
    try:
        return HostRef("ip", str(ipaddress.ip_address(bare)))
    except ValueError:
        return HostRef("host", name.lower())


# -- field readers -------------------------------------------------------------------------

def _name(record: Record, key: str) -> str:
    value = _text(record, key)
    if not value:
        raise _Bad(f"missing {key}")
    return value


def _text(record: Record, key: str) -> str:
    """A string field, stripped; absent or null reads as empty."""
    value = record.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Bad(f"{key} must be a string, got {value!r}")
    return value.strip()


def _number(record: Record, key: str) -> float | None:
    """A numeric field, None when absent; numbers often arrive as strings ("0", "-1")."""
    raw = record.get(key)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise _Bad(f"{key} must be a number, got {raw!r}")
    try:
        value = float(raw)
    except ValueError:
        raise _Bad(f"{key} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise _Bad(f"{key} must be a finite number, got {raw!r}")
    return value


def _epoch_s(value: float, key: str) -> float:
    if value <= 0:
        raise _Bad(f"{key} {_id_number(value)} is not a positive epoch time")
    return value / 1000.0 if value > _MS_ABOVE else value


def _id_number(value: float) -> str:
    """The same text whether the number arrived as 1700000000000, 1.7e12 or "1700000000000"."""
    return str(int(value)) if value.is_integer() else repr(value)

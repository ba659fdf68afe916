"""perfSONAR archives -> throughput, packet-loss, one-way-delay and RTT samples.

Two archive forms are read; both are JSON a fetcher saved as the archive
returned it (this module does no I/O).

**esmond bundle** (perfsonar/esmond ``docs/perfsonar_client_rest.rst``; event
types in ``esmond/api/perfsonar/types.py``). esmond answers in two steps,
metadata then data per ``base-uri``, so a bundle holds both::

    {"metadata": [<objects as GET /esmond/perfsonar/archive/ returns them>],
     "data": {"<base-uri>": [{"ts": <Unix s>, "val": ...}, ...]}}

Read per metadata object: ``metadata-key``; ``input-source`` and
``input-destination`` (the ends as the tool was given them, usually host
names), else ``source`` and ``destination`` (always IPs); ``event-types[]``
``event-type`` and ``base-uri``. Per point: ``ts`` (when the test ran) and
``val``:

=================== ========================= =========================
event-type          val                       sample
=================== ========================= =========================
throughput          bits/s                    THROUGHPUT, MB/s
packet-loss-rate    fraction 0..1             PACKET_LOSS
histogram-owdelay   ``{"<ms>": count}``       OWD, median ms
histogram-rtt       ``{"<ms>": count}``       RTT, median ms
=================== ========================= =========================

Histogram keys are taken as milliseconds, as the esmond docs define them;
``sample-bucket-width`` is not applied (legacy powstream wrote ms keys with
a 0.0001 s width). Other event types (``failures``, ``packet-trace``,
``packet-loss-rate-bidir``, counts ...) are skipped.

**pScheduler results as perfSONAR 5 archives them** to OpenSearch data
streams ``pscheduler_<test type>`` through Logstash (perfsonar/logstash
``perfsonar-logstash/perfsonar-logstash/``: ``pipeline/02-pscheduler_common.conf``
moves ``run.start-time``/``end-time`` to ``pscheduler.start_time``/``end_time``;
``ruby/pscheduler_normalize_endpoints.rb`` writes ``meta.source`` and
``meta.destination`` as ``{ip, hostname}``, hostname falling back to the IP;
``pipeline/06-result_{throughput,latency,rtt}.conf`` reshape ``result``).
Input: JSON Lines, a JSON array, or a search response
(``hits.hits[]`` with ``_id`` and ``_source``; a line may also be one hit).
Read per document:

* ``test.type``; ``throughput``, ``latency``, ``latencybg`` and ``rtt`` are
  used, other types (trace, dns, http ...) skipped;
* ``result.succeeded`` and ``result.error``: a failed test is rejected;
* the ends: ``meta.source.hostname``, else ``meta.source.ip``, else
  ``test.spec.source`` (Logstash leaves ``meta`` out when DNS failed), and
  likewise ``meta.destination`` / ``test.spec.dest``; with
  ``test.spec.reverse`` a throughput test's data flows dest -> source;
* the time: ``pscheduler.end_time``, else ``@timestamp`` (Logstash's
  receipt), else ``pscheduler.start_time``: ISO-8601 (zone-less = UTC) or
  epoch s (ms above 1e11);
* ``throughput``: ``result.throughput`` (bits/s, iperf's ``throughput-bits``)
  -> THROUGHPUT;
* ``latency``/``latencybg``: ``result.latency.median`` (histogram-latency
  buckets of ``test.spec.bucket-width`` s, default 0.001) -> OWD in ms, and
  ``result.packets.loss`` (lost / sent) -> PACKET_LOSS;
* ``rtt``: the median of ``result.packets.json[].rtt`` (the round trips, ISO
  durations), else ``result.rtt.mean`` (s; the archive stores no median)
  -> RTT in ms. Its ``packets.loss`` is round-trip loss, not the directed
  loss PACKET_LOSS means, so it is not used (esmond files it as ``-bidir``).
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import math
import re
import statistics
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from collectors.records import HostRef, MetricKind, ParsedSample, Rejected, Source

__all__ = ["histogram_median", "parse", "parse_esmond", "parse_pscheduler"]

# esmond event type -> the kind it measures and the unit esmond uses.
_ESMOND_KINDS = {
    "throughput": (MetricKind.THROUGHPUT, "bits/s"),
    "packet-loss-rate": (MetricKind.PACKET_LOSS, "fraction"),
    "histogram-owdelay": (MetricKind.OWD, "ms"),
    "histogram-rtt": (MetricKind.RTT, "ms"),
}
_PSCHEDULER_TYPES = frozenset({"throughput", "latency", "latencybg", "rtt"})
_BITS_PER_MBYTE = 8e6
_DEFAULT_BUCKET_S = 0.001  # pScheduler latency's default bucket-width: keys are ms
_EPOCH_MS_ABOVE = 1e11  # epoch seconds stay below this until the year 5138
_NUM = r"(\d+(?:\.\d+)?)"
_DURATION = re.compile(rf"^P(?:{_NUM}D)?(?:T(?:{_NUM}H)?(?:{_NUM}M)?(?:{_NUM}S)?)?$")
_NOT_JSON = object()  # marks text that is not one JSON document


class _Bad(ValueError):
    """A field that cannot be used; the message names it."""

    def __init__(self, reason: str, origin_id: str | None = None) -> None:
        super().__init__(reason)
        self.origin_id = origin_id


def parse(data: bytes | str) -> Iterator[ParsedSample | Rejected]:
    """Parse perfSONAR data, an esmond bundle or pScheduler results.

    Parameters
    ----------
    data : bytes or str
        A JSON object with ``metadata`` and ``data`` keys is an esmond bundle
        (see :func:`parse_esmond`); anything else is read as pScheduler
        results (see :func:`parse_pscheduler`).

    Returns
    -------
    iterator of ParsedSample or Rejected
        In input order.

    Notes
    -----
    O(n) in the input size; the text is decoded once and, when it is one
    JSON document, parsed once.

    Examples
    --------
    >>> [r.reason for r in parse("[1]")]
    ['document must be a JSON object, got number']
    >>> list(parse('{"metadata": [], "data": {}}'))
    []
    """
    text = _text(data)
    whole = _whole_json(text)
    if isinstance(whole, dict) and "metadata" in whole and "data" in whole:
        yield from _esmond_bundle(whole)
    else:
        yield from _pscheduler_text(text, whole)


def parse_esmond(data: bytes | str) -> Iterator[ParsedSample | Rejected]:
    """Parse an esmond bundle: metadata objects and the points of their base-uris.

    Parameters
    ----------
    data : bytes or str
        ``{"metadata": [...], "data": {"<base-uri>": [{"ts": s, "val": v}]}}``.

    Returns
    -------
    iterator of ParsedSample or Rejected
        One sample per usable point of a throughput, packet-loss-rate,
        histogram-owdelay or histogram-rtt event type, with origin id
        ``"<metadata-key>:<event-type>:<ts>"``, ``ts_s`` the point's ``ts``
        and weight 1. A Rejected per unusable point or metadata object, its
        position the 1-based index of the metadata object, its reason naming
        the event type, the point's index and the field. Text that is not
        JSON gives one Rejected at position 1.

    Notes
    -----
    O(n) in metadata objects plus points; a histogram point costs
    O(b log b) in its b buckets (they are sorted for the median).

    Examples
    --------
    >>> bundle = {"metadata": [{"metadata-key": "f6b7", "input-source": "ps-a.example.org",
    ...     "input-destination": "ps-b.example.org",
    ...     "event-types": [{"event-type": "throughput", "base-uri": "/f6b7/throughput/base"}]}],
    ...     "data": {"/f6b7/throughput/base": [{"ts": 1397421672, "val": 8e9}]}}
    >>> [(s.kind.value, s.value, s.src.value, s.origin_id)
    ...  for s in parse_esmond(json.dumps(bundle))]
    [('throughput', 1000.0, 'ps-a.example.org', 'f6b7:throughput:1397421672')]
    """
    try:
        bundle = _load(_text(data))
    except _Bad as exc:
        yield Rejected(1, str(exc))
        return
    yield from _esmond_bundle(bundle)


def parse_pscheduler(data: bytes | str) -> Iterator[ParsedSample | Rejected]:
    """Parse pScheduler results as perfSONAR's Logstash stores them in OpenSearch.

    Parameters
    ----------
    data : bytes or str
        JSON Lines (one document or search hit per line), a JSON array of
        documents, or an OpenSearch search response (``hits.hits``).

    Returns
    -------
    iterator of ParsedSample or Rejected
        Throughput (MB/s), OWD (median ms) and packet loss (fraction), RTT
        (median ms) samples, weight 1, timed at the run's end. Origin id:
        ``"<_id>:<kind>"``, or without ``_id`` a SHA-1 of test type, ends
        and time in its place. A Rejected per unusable document (a failed
        test among them, the error as reason); position is the line number
        for JSON Lines, else the index in the array or hits.

    Notes
    -----
    O(n) in documents; an RTT document costs O(r log r) in its r round trips.

    Examples
    --------
    >>> doc = {"_id": "aB3x", "_source": {"test": {"type": "throughput"},
    ...     "meta": {"source": {"hostname": "ps-a.example.org", "ip": "192.0.2.1"},
    ...              "destination": {"hostname": "192.0.2.2", "ip": "192.0.2.2"}},
    ...     "pscheduler": {"end_time": "2025-11-20T10:00:36+00:00"},
    ...     "result": {"succeeded": True, "throughput": 9.6e9}}}
    >>> [(s.origin_id, s.value, s.dst, s.ts_s) for s in parse_pscheduler(json.dumps(doc))]
    [('aB3x:throughput', 1200.0, HostRef(by='ip', value='192.0.2.2'), 1763632836.0)]
    """
    text = _text(data)
    yield from _pscheduler_text(text, _whole_json(text))


def histogram_median(hist: Mapping[str, Any]) -> float:
    """The median of a ``{"<value>": count}`` histogram, in the keys' unit.

    The n observations are ordered by value; the median is the middle one
    when n is odd, and the mean of the (n/2)-th and (n/2 + 1)-th when n is
    even (so two adjacent buckets of equal weight give their midpoint).

    Parameters
    ----------
    hist : mapping of str to int
        Bucket value (a number as a string, e.g. ``"34.4"``) -> observation
        count (a whole number >= 0, possibly as a string).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        A key that is not a finite number, a count that is not a whole
        number >= 0, or no observations at all.

    Notes
    -----
    O(b log b) in the b buckets.

    Examples
    --------
    >>> histogram_median({"34.4": 506, "34.5": 85, "34.6": 5, "34.7": 4})
    34.4
    >>> histogram_median({"20": 1, "10": 1})
    15.0
    >>> histogram_median({"1": 1, "2": 2, "9": 2})
    2.0
    """
    if not isinstance(hist, Mapping):
        raise ValueError(f"histogram must be an object of value: count, got {_json_type(hist)}")
    buckets = sorted(_bucket(key, count) for key, count in hist.items())
    total = sum(count for _, count in buckets)
    if total == 0:
        raise ValueError("histogram is empty")
    return _value_at(buckets, (total + 1) // 2) / 2 + _value_at(buckets, total // 2 + 1) / 2


def _bucket(key: Any, count: Any) -> tuple[float, int]:
    try:
        value = float(key)
    except (TypeError, ValueError):
        raise ValueError(f"histogram bucket {_show(key)} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"histogram bucket {_show(key)} is not finite")
    try:
        n = float(count) if not isinstance(count, bool) else -1.0
    except (TypeError, ValueError, OverflowError):
        n = -1.0
    if n < 0 or not n.is_integer():
        raise ValueError(f"histogram count {_show(count)} of bucket {_show(key)} "
                         "is not a whole number >= 0")
    return value, int(n)


def _value_at(buckets: list[tuple[float, int]], rank: int) -> float:
    seen = 0
    for value, count in buckets:
        seen += count
        if seen >= rank:
            return value
    raise AssertionError(f"rank {rank} beyond the histogram's {seen} observations")


# --- esmond ---------------------------------------------------------------------------------


def _esmond_bundle(bundle: Any) -> Iterator[ParsedSample | Rejected]:
    if not (isinstance(bundle, dict) and isinstance(bundle.get("metadata"), list)
            and isinstance(bundle.get("data"), dict)):
        yield Rejected(1, "an esmond bundle is an object with a 'metadata' list "
                          "and a 'data' object of base-uri: points")
        return
    for position, meta in enumerate(bundle["metadata"], start=1):
        yield from _esmond_metadata(position, meta, bundle["data"])


def _esmond_metadata(position: int, meta: Any,
                     data: dict[str, Any]) -> Iterator[ParsedSample | Rejected]:
    """The samples of one metadata object; its ends are only checked if it has points."""
    try:
        series = _esmond_series(meta, data)
        if not series:
            return
        key = meta.get("metadata-key")
        if not isinstance(key, str) or not key.strip():
            raise _Bad("missing metadata-key")
        src = _first_end(meta, "input-source", "source")
        dst = _first_end(meta, "input-destination", "destination")
    except _Bad as exc:
        yield Rejected(position, str(exc))
        return
    for event_type, points in series:
        for index, point in enumerate(points, start=1):
            try:
                yield _esmond_point(key.strip(), event_type, point, src, dst)
            except _Bad as exc:
                yield Rejected(position, f"{event_type} point {index}: {exc}", exc.origin_id)


def _esmond_point(key: str, event_type: str, point: Any, src: HostRef,
                  dst: HostRef) -> ParsedSample:
    ts = _point_ts(point)
    origin = f"{key}:{event_type}:{_ts_text(ts)}"
    kind, unit = _ESMOND_KINDS[event_type]
    try:
        value = _esmond_value(event_type, point.get("val"))
    except _Bad as exc:
        raise _Bad(str(exc), origin) from None
    return ParsedSample(Source.PERFSONAR, origin, src, dst, kind, value, ts, 1.0, unit)


def _esmond_series(meta: Any, data: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    """(event type, points) for each event type we measure that has points in ``data``."""
    if not isinstance(meta, dict):
        raise _Bad(f"metadata object must be a JSON object, got {_json_type(meta)}")
    event_types = meta.get("event-types")
    if not isinstance(event_types, list):
        raise _Bad(f"event-types must be a list, got {_json_type(event_types)}")
    series = []
    for entry in event_types:
        if not isinstance(entry, dict):
            raise _Bad(f"event-types entry must be an object, got {_json_type(entry)}")
        name, base = entry.get("event-type"), entry.get("base-uri")
        if not (isinstance(name, str) and name in _ESMOND_KINDS and isinstance(base, str)):
            continue  # an event type we do not measure (packet-trace, failures, ...)
        points = data.get(base)
        if points is None:
            continue  # the fetcher did not ask for this base-uri
        if not isinstance(points, list):
            raise _Bad(f"data[{base!r}] must be a list of points, got {_json_type(points)}")
        series.append((name, points))
    return series


def _point_ts(point: Any) -> float:
    if not isinstance(point, dict):
        raise _Bad(f"point must be an object with ts and val, got {_json_type(point)}")
    ts = _number(point.get("ts"), "ts")
    if ts <= 0:
        raise _Bad(f"ts {_show(point['ts'])} is not a Unix time")
    return ts


def _esmond_value(event_type: str, val: Any) -> float:
    if event_type == "throughput":
        return _mbytes_per_s(_number(val, "val"), "val")
    if event_type == "packet-loss-rate":
        return _fraction(_number(val, "val"), "val")
    return _median_ms(val, "val")


def _first_end(meta: dict[str, Any], *fields: str) -> HostRef:
    for field in fields:
        raw = meta.get(field)
        if raw not in (None, ""):
            return _host_ref(raw, field)
    raise _Bad(f"missing {' and '.join(fields)}")


# --- pScheduler -----------------------------------------------------------------------------


def _pscheduler_text(text: str, whole: Any) -> Iterator[ParsedSample | Rejected]:
    if whole is _NOT_JSON:
        yield from _pscheduler_lines(text)
        return
    records = whole if isinstance(whole, list) else [whole]
    if isinstance(whole, dict) and "hits" in whole:  # an OpenSearch search response
        hits = whole["hits"].get("hits") if isinstance(whole["hits"], dict) else None
        if not isinstance(hits, list):
            yield Rejected(1, "search response without a hits.hits list")
            return
        records = hits
    for position, record in enumerate(records, start=1):
        yield from _pscheduler_record(position, record)


def _pscheduler_lines(text: str) -> Iterator[ParsedSample | Rejected]:
    if text.lstrip().startswith("["):  # a broken JSON array, not JSON Lines
        try:
            _load(text)
        except _Bad as exc:
            yield Rejected(1, str(exc))
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = _load(line)
        except _Bad as exc:
            yield Rejected(number, str(exc))
            continue
        yield from _pscheduler_record(number, record)


def _pscheduler_record(position: int, record: Any) -> Iterator[ParsedSample | Rejected]:
    doc_id = None
    if isinstance(record, dict) and isinstance(record.get("_source"), dict):  # a search hit
        doc_id = str(record["_id"]) if record.get("_id") not in (None, "") else None
        record = record["_source"]
    try:
        samples = _pscheduler_samples(record, doc_id)
    except _Bad as exc:
        yield Rejected(position, str(exc), exc.origin_id or doc_id)
        return
    yield from samples


def _pscheduler_samples(doc: Any, doc_id: str | None) -> list[ParsedSample]:
    """All samples of one document, or _Bad: a document is used whole or not at all."""
    if not isinstance(doc, dict):
        raise _Bad(f"document must be a JSON object, got {_json_type(doc)}")
    test_type = _get(doc, "test", "type")
    if not isinstance(test_type, str) or not test_type:
        raise _Bad("missing test.type")
    if test_type not in _PSCHEDULER_TYPES:
        return []
    result = doc.get("result")
    failure = _failure(result) if isinstance(result, dict) else "missing result"
    if failure:
        with contextlib.suppress(_Bad):  # name the run if it can be: it is still a record
            doc_id = _identify(doc, test_type, doc_id)[3]
        raise _Bad(failure, doc_id)
    src, dst, ts, base = _identify(doc, test_type, doc_id)
    try:
        values = _pscheduler_values(test_type, doc, result)
    except _Bad as exc:
        raise _Bad(str(exc), base) from None
    for kind, value, _ in values:
        if not math.isfinite(value):  # finite inputs scaled to ms can still overflow
            raise _Bad(f"result gives {kind.value} {value}, out of range", base)
    return [ParsedSample(Source.PERFSONAR, f"{base}:{kind.value}", src, dst, kind, value, ts,
                         1.0, unit) for kind, value, unit in values]


def _identify(doc: dict[str, Any], test_type: str,
              doc_id: str | None) -> tuple[HostRef, HostRef, float, str]:
    """The ends, the time and the id: ``_id``, else a hash of what names the run."""
    src, dst = _pscheduler_ends(doc, test_type)
    ts = _pscheduler_ts(doc)
    base = doc_id or hashlib.sha1(
        f"{test_type}|{src.by}:{src.value}|{dst.by}:{dst.value}|{_ts_text(ts)}".encode()
    ).hexdigest()
    return src, dst, ts, base


def _failure(result: dict[str, Any]) -> str | None:
    """Why the test did not happen: it produced no measurement, which says nothing of the link."""
    succeeded, error = result.get("succeeded"), result.get("error")
    if error not in (None, "", False):
        return f"test failed, result.error: {str(error).strip()[:200]}"
    if succeeded is False or str(succeeded).lower() == "false":
        return "test failed: result.succeeded is false (no result.error)"
    return None


def _pscheduler_ends(doc: dict[str, Any], test_type: str) -> tuple[HostRef, HostRef]:
    src = _meta_end(doc, "source", "source")
    dst = _meta_end(doc, "destination", "dest")
    if test_type == "throughput" and _get(doc, "test", "spec", "reverse") in (True, "true"):
        return dst, src  # iperf -R: the server (dest) sends
    return src, dst


def _meta_end(doc: dict[str, Any], side: str, spec_key: str) -> HostRef:
    for path in (("meta", side, "hostname"), ("meta", side, "ip"), ("test", "spec", spec_key)):
        raw = _get(doc, *path)
        if raw not in (None, ""):
            return _host_ref(raw, ".".join(path))
    raise _Bad(f"missing meta.{side}.hostname, meta.{side}.ip and test.spec.{spec_key}")


def _pscheduler_ts(doc: dict[str, Any]) -> float:
    for path in (("pscheduler", "end_time"), ("@timestamp",), ("pscheduler", "start_time")):
        raw = _get(doc, *path)
        if raw not in (None, ""):
            return _time_s(raw, ".".join(path))
    raise _Bad("missing pscheduler.end_time, @timestamp and pscheduler.start_time")


def _pscheduler_values(test_type: str, doc: dict[str, Any],
                       result: dict[str, Any]) -> list[tuple[MetricKind, float, str]]:
    if test_type == "throughput":
        bits = _number(result.get("throughput"), "result.throughput")
        return [(MetricKind.THROUGHPUT, _mbytes_per_s(bits, "result.throughput"), "bits/s")]
    if test_type == "rtt":
        return [(MetricKind.RTT, *_rtt_ms(result))]
    values = []
    median = _get(result, "latency", "median")
    if median is not None:
        width = _bucket_width_s(doc)
        delay = _number(median, "result.latency.median") * width * 1000.0
        if delay < 0:
            raise _Bad(f"result.latency.median {delay:g} ms is negative")
        unit = "ms" if width == _DEFAULT_BUCKET_S else f"{width:g} s buckets"
        values.append((MetricKind.OWD, delay, unit))
    loss = _get(result, "packets", "loss")
    if loss is not None:
        values.append((MetricKind.PACKET_LOSS,
                       _fraction(_number(loss, "result.packets.loss"), "result.packets.loss"),
                       "fraction"))
    if not values:
        raise _Bad("missing result.latency.median and result.packets.loss")
    return values


def _bucket_width_s(doc: dict[str, Any]) -> float:
    raw = _get(doc, "test", "spec", "bucket-width")
    if raw is None:
        return _DEFAULT_BUCKET_S
    width = _number(raw, "test.spec.bucket-width")
    if not 0.0 < width < 1.0:
        raise _Bad(f"test.spec.bucket-width {width:g} s is outside (0, 1)")
    return width


def _rtt_ms(result: dict[str, Any]) -> tuple[float, str]:
    trips = _get(result, "packets", "json")
    if isinstance(trips, list):
        rtts = [_seconds(trip["rtt"], "result.packets.json[].rtt") for trip in trips
                if isinstance(trip, dict) and trip.get("rtt") not in (None, "")]
        if rtts:  # lost probes carry no rtt
            return statistics.median(rtts) * 1000.0, "ISO-8601 duration"
    mean = _get(result, "rtt", "mean")
    if mean is None:
        raise _Bad("missing result.packets.json round trips and result.rtt.mean")
    return _seconds(mean, "result.rtt.mean") * 1000.0, "s"


# --- fields ---------------------------------------------------------------------------------


def _mbytes_per_s(bits: float, field: str) -> float:
    if bits < 0:
        raise _Bad(f"{field} {bits:g} bits/s is negative")
    return bits / _BITS_PER_MBYTE


def _fraction(loss: float, field: str) -> float:
    if not 0.0 <= loss <= 1.0:
        raise _Bad(f"{field} {loss:g} is outside 0..1")
    return loss


def _median_ms(hist: Any, field: str) -> float:
    try:
        median = histogram_median(hist)
    except ValueError as exc:
        raise _Bad(f"{field}: {exc}") from None
    if median < 0:  # a one-way delay below zero is clock error, not a delay
        raise _Bad(f"{field} median {median:g} ms is negative")
    return median


def _number(raw: Any, field: str) -> float:
    """A finite number; numbers often arrive as strings."""
    if raw is None or raw == "":
        raise _Bad(f"missing {field}")
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise _Bad(f"{field} must be a number, got {_show(raw)}")
    try:
        value = float(raw)
    except (ValueError, OverflowError):
        raise _Bad(f"{field} must be a number, got {_show(raw)}") from None
    if not math.isfinite(value):
        raise _Bad(f"{field} must be a finite number, got {_show(raw)}")
    return value


def _seconds(raw: Any, field: str) -> float:
    """Seconds from a number or an ISO-8601 duration such as ``PT0.0382S``."""
    if isinstance(raw, str) and raw.strip().upper().startswith("P"):
        match = _DURATION.match(raw.strip().upper())
        if not match:
            raise _Bad(f"{field} {_show(raw)} is not an ISO-8601 duration in days or less")
        days, hours, minutes, secs = (float(part or 0) for part in match.groups())
        return ((days * 24 + hours) * 60 + minutes) * 60 + secs
    seconds = _number(raw, field)
    if seconds < 0:
        raise _Bad(f"{field} {seconds:g} s is negative")
    return seconds


def _time_s(raw: Any, field: str) -> float:
    """Unix seconds from ISO-8601 (zone-less = UTC) or an epoch in s or ms."""
    if isinstance(raw, str):
        try:
            raw = float(raw)
        except ValueError:
            try:
                when = datetime.fromisoformat(raw.strip())
            except ValueError:
                raise _Bad(f"{field} {_show(raw)} is not an ISO-8601 or Unix time") from None
            raw = (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    seconds = _number(raw, field)
    if seconds <= 0:
        raise _Bad(f"{field} {_show(raw)} is not a Unix time")
    return seconds / 1000.0 if seconds > _EPOCH_MS_ABOVE else seconds


def _host_ref(raw: Any, field: str) -> HostRef:
    """An IP literal as ``ip``, anything else as a lower-case ``host``."""
    if not isinstance(raw, str):
        raise _Bad(f"{field} must be a host name or IP, got {_show(raw)}")
    name = raw.strip().strip("[]").rstrip(".").lower()
    try:
        return HostRef("ip", str(ipaddress.ip_address(name)))
    except ValueError:
        pass
    if not name or any(c.isspace() or c in "/@,;" for c in name):
        raise _Bad(f"{field} {_show(raw)} is not a host name or IP")
    return HostRef("host", name)


def _get(doc: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def _ts_text(ts: float) -> str:
    """The same text for ``1397421672``, ``"1397421672"`` and ``1397421672.0``."""
    return str(int(ts)) if ts.is_integer() else repr(ts)


def _text(data: bytes | str) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8-sig", errors="replace")
    return data.removeprefix("\ufeff")


def _load(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _Bad(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:  # too many digits, nested too deep
        raise _Bad(f"not JSON: {type(exc).__name__}: {str(exc)[:100]}") from None


def _whole_json(text: str) -> Any:
    try:
        return _load(text)
    except _Bad:
        return _NOT_JSON


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    names = {dict: "object", list: "array", str: "string", int: "number", float: "number"}
    return names.get(type(value), type(value).__name__)


def _show(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."

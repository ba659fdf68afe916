"""esmond archive answers -> perfSONAR samples: bundles, metadata lists, points, summaries.

esmond (perfsonar/esmond ``docs/perfsonar_client_rest.rst``, event types and
summaries in ``esmond/api/perfsonar/types.py``) answers in two steps. The
archive, ``GET /esmond/perfsonar/archive/?...``, answers a list of metadata
objects: ``metadata-key``, ``source``/``destination`` (IPs),
``input-source``/``input-destination`` (the ends as the tool was given
them, usually host names), and ``event-types[]`` with a ``base-uri`` and
``summaries[]`` (``summary-type`` aggregation | average | statistics,
``summary-window`` seconds as a string, ``uri``). Each of those URIs,
``.../<metadata-key>/<event-type>/base`` or
``.../<event-type>/<aggregations|averages|statistics>/<window>``, answers a
list of points ``{"ts": s, "val": ...}``; a summary point's ``ts`` is the
start of its window. A points list alone names neither its link nor its
event type: it is read with its metadata, as a **bundle** keyed by the URI
each list was fetched from (base or summary, path or full URL)::

    {"metadata": [<metadata objects>], "data": {"<uri>": [points], ...}}

=================== ====================== ===================================
event type          val                    sample
=================== ====================== ===================================
throughput          bits/s                 THROUGHPUT (MB/s); base, averages
packet-loss-rate    fraction 0..1          PACKET_LOSS; base, aggregations
packet-count-lost   integer, with -sent    PACKET_LOSS = lost / sent, same ts
histogram-owdelay   ``{"<ms>": count}``    OWD, median ms; base, aggregations
                    statistics object      OWD, its median (else mean), ms
histogram-rtt       as histogram-owdelay   RTT, ms
=================== ====================== ===================================

Throughput aggregations are sums of rates over the window, not a rate: a
series of them is rejected, saying so. Other event types (failures,
packet-trace, retransmits, -bidir, histogram-ttl, ...) are counted as not a
link. A sample of a windowed summary has weight 0.0 (``ParsedSample``): it
stands in for the base points where only it was read, and adds nothing
where they were; a point of a summary over window 0 (a direct
transformation) has the base point's origin id and weight. Origin id:
``"<metadata-key>:<event-type>:<ts>"`` for base, with ``:<summary>/<window>``
before the ts for windowed summaries; the loss of a lost/sent pair has
packet-loss-rate's, so the two forms of one measurement are stored once.

The message-bus form WLCG's collectors read before indexing
(sand-ci/ps-ingest: ``{"meta": {source, destination, input_source,
input_destination, org_metadata_key, event_type}, "datapoints": {"<ts>":
value}}``) is read as base points of its event type, and the documents
they index (``ps_throughput``, ``ps_packetloss``, ``ps_owd``) one sample each.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from collectors import psfields as f
from collectors.layout import json_type
from collectors.records import HostRef, NotALink, Outcome, ParsedSample, Record, Rejected
from netbroker.common.metric_kinds import MetricKind
from netbroker.common.metric_kinds import MetricSource as Source

__all__ = ["BUNDLE", "EVENT_KINDS", "MESSAGE", "METADATA", "POINTS_ALONE", "WLCG_DOCUMENT",
           "SeriesUri", "pair_bundle", "read_bundle", "read_message", "read_metadata",
           "read_points_alone", "read_wlcg_document", "readable", "series_uri"]

BUNDLE = "esmond bundle"
METADATA = "esmond metadata"
POINTS_ALONE = "esmond points list without its metadata"
MESSAGE = "esmond message-bus record"
WLCG_DOCUMENT = "WLCG ps_* index document"

# event type -> the kind it measures and the unit esmond uses.
EVENT_KINDS = {
    "throughput": (MetricKind.THROUGHPUT, "bits/s"),
    "packet-loss-rate": (MetricKind.PACKET_LOSS, "fraction"),
    "histogram-owdelay": (MetricKind.OWD, "ms"),
    "histogram-rtt": (MetricKind.RTT, "ms"),
}
_LOST, _SENT = "packet-count-lost", "packet-count-sent"
# URL path word -> summary type (types.py SUMMARY_TYPES), and back.
SUMMARY_PATHS = {"aggregations": "aggregation", "averages": "average", "statistics": "statistics"}
_SUMMARY_WORDS = {v: k for k, v in SUMMARY_PATHS.items()}
# The summaries whose val each event type reads (others: the series is rejected).
_READABLE = {
    "throughput": {"base", "average"},
    "packet-loss-rate": {"base", "aggregation"},
    "histogram-owdelay": {"base", "aggregation", "statistics"},
    "histogram-rtt": {"base", "aggregation", "statistics"},
}
_WHY_NOT = {
    ("throughput", "aggregation"): "throughput aggregations are sums of rates over the window, "
                                   "not a rate: read its base or averages",
}
_NOT_MEASURED = "esmond {event} point: not a metric netbroker keeps"
_HOW = ('read points with their metadata, as a bundle {"metadata": [...], "data": '
        '{"<uri fetched>": [points]}} (netbroker ingest perfsonar --esmond-metadata FILE '
        '--esmond-uri URI POINTS), or let netbroker collect fetch both')


class SeriesUri(NamedTuple):
    """What a base or summary URI names: whose points, of which event type and summary."""

    metadata_key: str
    event_type: str
    summary: str  # "base", "aggregation", "average" or "statistics"
    window_s: int  # 0 for base

    @property
    def label(self) -> str:
        """``"throughput base"``, ``"throughput averages/86400"``."""
        if self.summary == "base":
            return f"{self.event_type} base"
        return f"{self.event_type} {_SUMMARY_WORDS[self.summary]}/{self.window_s}"


def series_uri(uri: str) -> SeriesUri | None:
    """The series a base or summary URI (a path or a full URL, any query) names.

    >>> series_uri("https://ps.example.org/esmond/perfsonar/archive/F6B7/throughput/base?t=1")
    SeriesUri(metadata_key='f6b7', event_type='throughput', summary='base', window_s=0)
    >>> series_uri("/esmond/perfsonar/archive/f6b7/histogram-owdelay/statistics/300/").label
    'histogram-owdelay statistics/300'
    >>> series_uri("/esmond/perfsonar/archive/f6b7/") is None
    True
    """
    parts = [p for p in urlsplit(uri.strip()).path.split("/") if p]
    if len(parts) >= 3 and parts[-1] == "base":
        return SeriesUri(parts[-3].lower(), parts[-2], "base", 0)
    if len(parts) >= 4 and parts[-1].isdigit() and parts[-2] in SUMMARY_PATHS:
        return SeriesUri(parts[-4].lower(), parts[-3], SUMMARY_PATHS[parts[-2]], int(parts[-1]))
    return None


def readable(found: SeriesUri) -> bool:
    """Whether the points of this series give samples (a fetcher asks for no others).

    >>> readable(series_uri("/k/throughput/averages/86400")), readable(
    ...     series_uri("/k/throughput/aggregations/3600"))
    (True, False)
    """
    if found.event_type in (_LOST, _SENT):
        return True
    return found.summary in _READABLE.get(found.event_type, ())


def read_metadata(position: int, meta: Any, shape: str = METADATA) -> Outcome:
    """A metadata object alone (the archive's answer, or a list of them): not a link."""
    if not isinstance(meta, dict):
        return Rejected(position, f"esmond metadata object must be a JSON object, got "
                                  f"{json_type(meta)}", shape=shape)
    return NotALink(position, "esmond metadata: describes a measurement, holds none of its "
                    "points (fetch its base-uri and summary uris, or ingest it with them as a "
                    "bundle)", shape)


def read_points_alone(position: int, points: list[Any]) -> Rejected:
    """A points list without its metadata: one rejection, saying what to give instead."""
    return Rejected(position, f"an esmond points list ({len(points)} points, as a base-uri or "
                              "summary uri answers) names no source, destination or event "
                              f"type: {_HOW}", shape=POINTS_ALONE)


def read_bundle(position: int, bundle: dict[str, Any]) -> Iterator[Outcome]:
    """The outcomes of a bundle: one per point of its series, per metadata object in turn.

    Positions: the 1-based index of the metadata object a point belongs to;
    a data key that is no esmond URI, or whose metadata the bundle lacks, is
    one rejection at the bundle's ``position``. Reasons name the event
    type, the summary and the point's index.
    """
    metadata, data = bundle.get("metadata"), bundle.get("data")
    if isinstance(metadata, dict):
        metadata = [metadata]
    if not isinstance(metadata, list) or not isinstance(data, dict):
        yield Rejected(position, "an esmond bundle is an object with a 'metadata' list and a "
                                 "'data' object of uri: points", shape=BUNDLE)
        return
    series: dict[str, list[tuple[SeriesUri, str, Any]]] = {}
    for uri, points in data.items():
        found = series_uri(uri) if isinstance(uri, str) else None
        if found is None:
            yield Rejected(position, f"data[{f.show(uri)}] is not an esmond base or summary "
                                     "URI (.../<metadata-key>/<event-type>/base or .../"
                                     "<event-type>/<aggregations|averages|statistics>/<window>)",
                           shape=BUNDLE)
            continue
        series.setdefault(found.metadata_key, []).append((found, uri, points))
    for index, meta in enumerate(metadata, start=1):
        yield from _metadata_series(index, meta, series)
    for key, left in series.items():
        for _, uri, points in left:
            n = len(points) if isinstance(points, list) else 1
            yield Rejected(position, f"data[{f.show(uri)}]: {n} points of metadata-key {key}, "
                                     "which no metadata object of the bundle has", shape=BUNDLE)


def _metadata_series(index: int, meta: Any,
                     series: dict[str, list[tuple[SeriesUri, str, Any]]]) -> Iterator[Outcome]:
    """The outcomes of the points of one metadata object (taken out of ``series``)."""
    if not isinstance(meta, dict):
        yield Rejected(index, f"metadata object must be a JSON object, got {json_type(meta)}",
                       shape=BUNDLE)
        return
    mine = [s for key in _keys_of(meta) for s in series.pop(key, [])]
    if not mine:
        return  # metadata without points: the bundle's context, no record
    try:
        key = meta.get("metadata-key")
        if not isinstance(key, str) or not key.strip():
            raise f.Bad("missing metadata-key")
        if not isinstance(meta.get("event-types"), list):
            raise f.Bad(f"event-types must be a list, got {json_type(meta.get('event-types'))}")
        src, dst = _ends(meta, "-")
    except f.Bad as exc:
        yield Rejected(index, str(exc), shape=BUNDLE)
        return
    counts: dict[tuple[str, int], dict[str, tuple[str, Any]]] = {}
    for found, uri, points in _in_metadata_order(meta, mine):
        if found.event_type in (_LOST, _SENT):
            counts.setdefault((found.summary, found.window_s), {})[found.event_type] = (
                uri, points)
        else:
            yield from _series(index, found, uri, points, src, dst)
    for (summary, window), pair in counts.items():
        yield from _loss_from_counts(index, key.strip().lower(), summary, window, pair, src, dst)


def _keys_of(meta: dict[str, Any]) -> list[str]:
    """The metadata keys a metadata object's points are filed under: its own, and
    those of its base and summary URIs (a metadata object may lack the key)."""
    keys = []
    if isinstance(meta.get("metadata-key"), str):
        keys.append(meta["metadata-key"].strip().lower())
    entries = meta.get("event-types")
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        summaries = entry.get("summaries")
        if not isinstance(summaries, list):
            summaries = []
        uris = [entry.get("base-uri"), *(s.get("uri") for s in summaries if isinstance(s, dict))]
        for uri in uris:
            found = series_uri(uri) if isinstance(uri, str) else None
            if found is not None and found.metadata_key not in keys:
                keys.append(found.metadata_key)
    return keys


def _in_metadata_order(meta: dict[str, Any], mine: list[tuple[SeriesUri, str, Any]]
                       ) -> list[tuple[SeriesUri, str, Any]]:
    """The series in the order of the metadata's event types (then the others)."""
    order = {entry.get("event-type"): i for i, entry in enumerate(meta["event-types"])
             if isinstance(entry, dict)}
    return sorted(mine, key=lambda s: (order.get(s[0].event_type, len(order)),
                                       s[0].summary != "base"))


def _series(index: int, found: SeriesUri, uri: str, points: Any, src: HostRef,
            dst: HostRef) -> Iterator[Outcome]:
    """One series' outcomes: a Record or a Rejected per point, or one Rejected for all."""
    event, shape = found.event_type, f"esmond points ({found.label})"
    if not isinstance(points, list):
        yield Rejected(index, f"data[{f.show(uri)}] must be a list of points, got "
                              f"{json_type(points)}", shape=shape)
        return
    if event not in EVENT_KINDS:
        for _ in points:
            yield NotALink(index, _NOT_MEASURED.format(event=event), shape)
        return
    if not readable(found) and points:
        why = _WHY_NOT.get((event, found.summary),
                           f"esmond keeps no {found.summary} summary of {event}")
        yield Rejected(index, f"data[{f.show(uri)}] ({len(points)} points): {why}", shape=shape)
        return
    name = event if found.summary == "base" else found.label
    kind, unit = EVENT_KINDS[event]
    unit, weight, prefix = _unit(unit, found), _weight(found), _prefix(found, event)
    for number, point in enumerate(points, start=1):
        try:
            ts = _point_ts(point)
            origin = prefix + f.ts_text(ts)
            try:
                value = _value(found, point.get("val"))
            except f.Bad as exc:
                raise f.Bad(str(exc), origin) from None
        except f.Bad as exc:
            yield Rejected(index, f"{name} point {number}: {exc}", exc.origin_id, shape)
        else:
            yield _new(Record, (index, shape, (_new(ParsedSample, (
                Source.PERFSONAR, origin, src, dst, kind, value, ts, weight, unit)),)))


_new = tuple.__new__  # a Record or ParsedSample without its Python-level __new__


def _value(found: SeriesUri, val: Any) -> float:
    """A point's value in netbroker's unit."""
    if val is None:
        raise f.Bad("val is null: no measurement at this ts")
    event = found.event_type
    if type(val) is dict and found.summary != "statistics" and event[0] == "h":
        return f.median_ms(val, "val")  # a histogram, the usual esmond point, first
    if event == "throughput":
        return f.mbytes_per_s(f.number(val, "val"), "val")
    if event == "packet-loss-rate":
        if isinstance(val, dict):  # as posted: numerator (lost) / denominator (sent)
            return _ratio(val.get("numerator"), val.get("denominator"), "val.numerator",
                          "val.denominator")
        return f.fraction(f.number(val, "val"), "val")
    if found.summary == "statistics":
        if not isinstance(val, dict):
            raise f.Bad(f"val of a statistics summary must be an object of minimum, median, "
                        f"mean, ... (ms), got {json_type(val)}")
        field = "median" if val.get("median") is not None else "mean"
        delay = f.number(val.get(field), f"val.{field}")
        if delay < 0:
            raise f.Bad(f"val.{field} {delay:g} ms is negative")
        return delay
    return f.median_ms(val, "val")


def _loss_from_counts(index: int, key: str, summary: str, window: int,
                      pair: dict[str, tuple[str, Any]], src: HostRef,
                      dst: HostRef) -> Iterator[Outcome]:
    """Packet loss from packet-count-lost over packet-count-sent at the same ts: one
    outcome per lost point, and each sent point left without one is not a link."""
    found = SeriesUri(key, "packet-loss-rate", summary, window)
    label = SeriesUri(key, f"{_LOST}/sent", summary, window).label
    shape = f"esmond points ({label})"
    lost_uri, lost = pair.get(_LOST, ("", []))
    sent_uri, sent = pair.get(_SENT, ("", []))
    for uri, points in ((lost_uri, lost), (sent_uri, sent)):
        if not isinstance(points, list):
            yield Rejected(index, f"data[{f.show(uri)}] must be a list of points, got "
                                  f"{json_type(points)}", shape=shape)
            return
    sent_at: dict[float, Any] = {}
    for number, point in enumerate(sent, start=1):
        try:
            sent_at[_point_ts(point)] = point.get("val")
        except f.Bad as exc:
            yield Rejected(index, f"{_SENT} point {number}: {exc}", shape=shape)
    for number, point in enumerate(lost, start=1):
        try:
            ts = _point_ts(point)
            origin = _origin(key, "packet-loss-rate", found, ts)
            if ts not in sent_at:
                raise f.Bad(f"no {_SENT} point at ts {f.ts_text(ts)}: loss is lost / sent",
                            origin)
            loss = _ratio(point.get("val"), sent_at.pop(ts), "val", f"{_SENT} val", origin)
        except f.Bad as exc:
            yield Rejected(index, f"{_LOST} point {number}: {exc}", exc.origin_id, shape)
            continue
        yield Record(index, shape, (ParsedSample(
            Source.PERFSONAR, origin, src, dst, MetricKind.PACKET_LOSS, loss, ts,
            _weight(found), _unit("lost/sent", found)),))
    for _ in sent_at:
        yield NotALink(index, f"esmond {_SENT} point without a {_LOST} point at its ts: no "
                              "loss to compute", shape)


def _ratio(lost: Any, sent: Any, lost_field: str, sent_field: str,
           origin: str | None = None) -> float:
    try:
        n_lost, n_sent = f.number(lost, lost_field), f.number(sent, sent_field)
    except f.Bad as exc:
        raise f.Bad(str(exc), origin) from None
    if n_sent <= 0 or not 0 <= n_lost <= n_sent:
        raise f.Bad(f"{n_lost:g} lost of {n_sent:g} sent is no loss fraction", origin)
    return n_lost / n_sent


def read_message(position: int, message: dict[str, Any]) -> Iterator[Outcome]:
    """The message-bus form: one outcome per datapoint, as base points of its event type."""
    meta = message.get("meta")
    if not isinstance(meta, dict):
        meta = {}
    event, key = meta.get("event_type"), meta.get("org_metadata_key") or meta.get("metadata_key")
    points = message.get("datapoints")
    try:
        if not isinstance(key, str) or not key.strip():
            raise f.Bad("missing meta.org_metadata_key")
        if not isinstance(points, dict):
            raise f.Bad(f"datapoints must be an object of ts: value, got {json_type(points)}")
        src, dst = _ends(meta, "_")
    except f.Bad as exc:
        yield Rejected(position, str(exc), shape=MESSAGE)
        return
    if not points:
        yield NotALink(position, "esmond message-bus record without datapoints", MESSAGE)
        return
    found = SeriesUri(key.strip().lower(), str(event), "base", 0)
    as_points = [{"ts": ts, "val": val} for ts, val in points.items()]
    for outcome in _series(position, found, "", as_points, src, dst):
        if isinstance(outcome, Record):
            yield outcome._replace(shape=MESSAGE)
        else:
            yield outcome


# --- fields ---------------------------------------------------------------------------------


def _point_ts(point: Any) -> float:
    ts = point.get("ts") if type(point) is dict else None
    if type(ts) is int and 0 < ts < 100_000_000_000:  # the usual: epoch s, a number
        return float(ts)
    if not isinstance(point, dict):
        raise f.Bad(f"point must be an object with ts and val, got {json_type(point)}")
    ts = f.number(point.get("ts"), "ts")
    if ts <= 0:
        raise f.Bad(f"ts {f.show(point['ts'])} is not a Unix time")
    return ts / 1000.0 if ts > 1e11 else ts  # epoch ms, leniently


def _origin(key: str, event: str, found: SeriesUri, ts: float) -> str:
    return _prefix(found, event, key) + f.ts_text(ts)


def _prefix(found: SeriesUri, event: str, key: str | None = None) -> str:
    """The origin id of a point of this series, but for its ts."""
    key = found.metadata_key if key is None else key
    if found.window_s == 0:
        return f"{key}:{event}:"
    return f"{key}:{event}:{found.summary}/{found.window_s}:"


def _weight(found: SeriesUri) -> float:
    return 1.0 if found.window_s == 0 else 0.0


_UNIT_WORDS = {"aggregation": "agg", "average": "avg", "statistics": "stats"}


def _unit(unit: str, found: SeriesUri) -> str:
    """The unit, and the summary it came from (short: ``source_unit`` holds 32 characters)."""
    if found.summary == "base":
        return unit
    return f"{unit} {_UNIT_WORDS[found.summary]}/{found.window_s}"


def _first_end(meta: dict[str, Any], *fields: str) -> HostRef:
    for field in fields:
        raw = meta.get(field)
        if raw not in (None, ""):
            return f.host_ref(raw, field)
    raise f.Bad(f"missing {' and '.join(fields)}")


def _ends(meta: dict[str, Any], sep: str) -> tuple[HostRef, HostRef]:
    """The two ends esmond metadata names: ``input<sep>source`` (else ``source``) and
    ``input<sep>destination`` (else ``destination``); ``sep`` is ``-`` in an archive's
    metadata, ``_`` on the message bus."""
    return (_first_end(meta, f"input{sep}source", "source"),
            _first_end(meta, f"input{sep}destination", "destination"))


def read_wlcg_document(position: int, doc: dict[str, Any], doc_id: str | None) -> Outcome:
    """A document of WLCG's ps_* indices (sand-ci/ps-ingest): ``src``/``dest`` (IPs),
    ``src_host``/``dest_host``, ``timestamp`` (ms) and one of ``throughput`` (bits/s),
    ``packet_loss`` (fraction), ``delay_median`` (else ``delay_mean``, ms)."""
    try:
        src = _first_end(doc, "src_host", "src")
        dst = _first_end(doc, "dest_host", "dest")
        ts = f.time_s(doc.get("timestamp"), "timestamp")
        if doc.get("throughput") is not None:
            kind, field, unit = MetricKind.THROUGHPUT, "throughput", "bits/s"
            value = f.mbytes_per_s(f.number(doc["throughput"], field), field)
        elif doc.get("packet_loss") is not None:
            kind, field, unit = MetricKind.PACKET_LOSS, "packet_loss", "fraction"
            value = f.fraction(f.number(doc["packet_loss"], field), field)
        else:
            field = "delay_median" if doc.get("delay_median") is not None else "delay_mean"
            kind, unit = MetricKind.OWD, "ms"
            value = f.number(doc.get(field), f"{field} (or throughput, packet_loss)")
            if value < 0:
                raise f.Bad(f"{field} {value:g} ms is negative")
    except f.Bad as exc:
        return Rejected(position, str(exc), doc_id, WLCG_DOCUMENT)
    base = doc_id or hashlib.sha1(
        f"{kind.value}|{src.value}|{dst.value}|{f.ts_text(ts)}".encode()).hexdigest()
    return Record(position, WLCG_DOCUMENT, (ParsedSample(
        Source.PERFSONAR, f"{base}:{kind.value}", src, dst, kind, value, ts, 1.0, unit),))


def pair_bundle(metadata: bytes | str, uri: str, points: bytes | str) -> bytes:
    """The bundle of one esmond points answer and the metadata answer it belongs to.

    What a file-based ingest of the pair reads: ``metadata`` as the archive
    answered (a list of metadata objects, or one), ``points`` as ``uri`` (a
    base or summary URI, path or URL) answered.

    Raises
    ------
    ValueError
        Either is not JSON of its shape, or ``uri`` is no esmond series URI.

    Examples
    --------
    >>> meta = ('[{"metadata-key": "f6b7", "source": "192.0.2.1", "destination": "192.0.2.2",'
    ...         ' "event-types": [{"event-type": "throughput", "base-uri": "/f6b7/x/base"}]}]')
    >>> json.loads(pair_bundle(meta, "/f6b7/throughput/averages/86400", "[]"))["data"]
    {'/f6b7/throughput/averages/86400': []}
    """
    if series_uri(uri) is None:
        raise ValueError(f"{uri!r} is not an esmond base or summary URI (.../<metadata-key>/"
                         "<event-type>/base or .../<aggregations|averages|statistics>/<window>)")
    try:
        meta, answer = json.loads(metadata), json.loads(points)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if isinstance(meta, dict):
        meta = [meta]
    if not isinstance(meta, list):
        raise ValueError(f"the metadata answer must be a list of metadata objects, got "
                         f"{json_type(meta)}")
    if not isinstance(answer, list):
        raise ValueError(f"the points answer must be a list of {{ts, val}}, got "
                         f"{json_type(answer)}")
    return json.dumps({"metadata": meta, "data": {uri: answer}}).encode()

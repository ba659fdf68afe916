"""perfSONAR archives -> throughput, packet-loss, one-way-delay and RTT samples.

Every form perfSONAR publishes its measurements in is read here, framed in
any JSON layout (``collectors.layout``); each record's shape is detected
on its own, so forms may be mixed. The forms, and the module that reads
each (this one only tells them apart):

========================================== ============================== ==========
shape                                      detected by                    read in
========================================== ============================== ==========
esmond bundle: metadata + points by URI    ``metadata`` and ``data``      esmond
esmond metadata list, or one object        ``metadata-key``,              esmond
                                           ``event-types``
esmond points list, without its metadata   a list of ``{ts, val}``        esmond
message-bus record (WLCG)                  ``meta`` and ``datapoints``    esmond
ps_* index document (WLCG)                 ``src``/``dest``,              esmond
                                           ``timestamp``
pScheduler REST run (with its task)        ``task``, ``state``, ...       pscheduler
pScheduler archived result                 ``schedule``, ``test``,        pscheduler
                                           ``result``
pScheduler result in OpenSearch (a hit)    ``test`` with ``meta``,        pscheduler
                                           ``pscheduler``, ...
pScheduler task alone; runs listing        ``test``, no ``result``;       pscheduler
                                           a list of run URLs
bare pScheduler result                     ``succeeded``, no test         pscheduler
========================================== ============================== ==========

("read in" names the module ``collectors.esmond`` or ``collectors.pscheduler``.)

Containers are unwrapped first: an OpenSearch search answer
(``hits.hits[]``, each hit's ``_source`` read with its ``_id``) and MONIT's
envelope (``{"data": {...}, "metadata": {...}}``). A JSON array that opens
the input, or one of objects anywhere, is a list of records (numbered by
their index when it opens the input); esmond's lists (metadata, points)
are read as the answers they are. A record of no known shape is rejected
with its keys and the shapes expected.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from collectors import esmond, pscheduler
from collectors.layout import JsonDocuments, Unreadable, envelope, hits_of, json_type, search_hits
from collectors.psfields import histogram_median
from collectors.records import NotALink, Outcome, ParsedSample, Rejected, flatten

__all__ = ["histogram_median", "parse", "parse_esmond", "parse_pscheduler", "read"]

_NOT_JSON = "not JSON"
_EXPECTED = ("an esmond bundle {metadata, data}, esmond metadata or points, a pScheduler "
             "run {task, state, result-merged}, an archived result {test, schedule, result}, "
             "an OpenSearch document {test, result, meta} or search answer {hits}")
_RUNS_LISTING = "pScheduler runs listing"
_SEARCH, _MONIT = "OpenSearch search answer", "MONIT envelope"


def read(data: bytes | str, first_position: int = 1) -> Iterator[Outcome]:
    """Read perfSONAR records of any shape: one outcome per record, then the framing.

    Parameters
    ----------
    data : bytes or str
        Any of the shapes in this module's table, in any JSON layout.
    first_position : int
        The position of the input's first line, for a later part of a batch.

    Returns
    -------
    iterator of Record, Rejected, NotALink, then one Framing
        In input order. The Framing counts documents per layout, and the
        search answers and MONIT envelopes unwrapped.

    Notes
    -----
    O(n) in the input size: the text is decoded once, each document parsed
    once; an esmond bundle costs O(m + p) in its metadata objects and points
    (a histogram point O(b log b) in its b buckets).

    Examples
    --------
    >>> run = {"state": "finished", "end-time": "2025-11-20T10:00:36Z",
    ...        "href": "https://ps-a.example.org/pscheduler/tasks/t1/runs/r1",
    ...        "task": {"test": {"type": "throughput", "spec": {"dest": "ps-b.example.org"}}},
    ...        "participants": ["ps-a.example.org"],
    ...        "result-merged": {"succeeded": True, "summary": {"summary": {
    ...            "throughput-bits": 9.6e9}}}}
    >>> import json
    >>> record, framing = read(json.dumps(run))
    >>> record.shape, [(s.origin_id, s.value, s.src.value) for s in record.samples]
    ('pScheduler REST run', [('r1:throughput', 1200.0, 'ps-a.example.org')])
    """
    docs = JsonDocuments(data, first_position)
    unwrapped: dict[str, int] = {}
    for position, doc in docs:
        yield from _document(position, doc, docs.opening, unwrapped)
    yield docs.framing(unwrapped)


def parse(data: bytes | str) -> Iterator[ParsedSample | Rejected]:
    """Parse perfSONAR data of any shape: :func:`read` flattened to samples and rejections.

    Examples
    --------
    >>> [r.reason for r in parse("[1]")]
    ['document must be a JSON object, got number']
    >>> list(parse('{"metadata": [], "data": {}}'))
    []
    """
    return flatten(read(data))


def parse_pscheduler(data: bytes | str) -> Iterator[ParsedSample | Rejected]:
    """Parse pScheduler results (any of its forms): as :func:`parse`, which tells them apart.

    Examples
    --------
    >>> doc = {"_id": "aB3x", "_source": {"test": {"type": "throughput"},
    ...     "meta": {"source": {"hostname": "ps-a.example.org", "ip": "192.0.2.1"},
    ...              "destination": {"hostname": "192.0.2.2", "ip": "192.0.2.2"}},
    ...     "pscheduler": {"end_time": "2025-11-20T10:00:36+00:00"},
    ...     "result": {"succeeded": True, "throughput": 9.6e9}}}
    >>> import json
    >>> [(s.origin_id, s.value, s.dst, s.ts_s) for s in parse_pscheduler(json.dumps(doc))]
    [('aB3x:throughput', 1200.0, HostRef(by='ip', value='192.0.2.2'), 1763632836.0)]
    """
    return flatten(read(data))


def parse_esmond(data: bytes | str) -> Iterator[ParsedSample | Rejected]:
    """Parse one esmond bundle, the whole input: metadata and the points of their URIs.

    Parameters
    ----------
    data : bytes or str
        ``{"metadata": [...], "data": {"<base or summary uri>": [{"ts": s, "val": v}]}}``.

    Returns
    -------
    iterator of ParsedSample or Rejected
        As ``collectors.esmond.read_bundle`` reads it; input that is not one
        bundle is one Rejected at position 1 saying what a bundle is.

    Examples
    --------
    >>> bundle = {"metadata": [{"metadata-key": "f6b7", "input-source": "ps-a.example.org",
    ...     "input-destination": "ps-b.example.org",
    ...     "event-types": [{"event-type": "throughput", "base-uri": "/f6b7/throughput/base"}]}],
    ...     "data": {"/f6b7/throughput/base": [{"ts": 1397421672, "val": 8e9}]}}
    >>> import json
    >>> [(s.kind.value, s.value, s.src.value, s.origin_id)
    ...  for s in parse_esmond(json.dumps(bundle))]
    [('throughput', 1000.0, 'ps-a.example.org', 'f6b7:throughput:1397421672')]
    """
    docs = list(JsonDocuments(data))
    if len(docs) == 1 and type(docs[0][1]) is Unreadable:
        return flatten([Rejected(1, docs[0][1].reason, shape=_NOT_JSON)])
    if len(docs) != 1 or not _is_bundle(docs[0][1]):
        return flatten([Rejected(1, "an esmond bundle is an object with a 'metadata' list and "
                                  "a 'data' object of uri: points", shape=esmond.BUNDLE)])
    return flatten(esmond.read_bundle(1, docs[0][1]))


# --- telling the shapes apart ---------------------------------------------------------------


def _document(position: int, doc: Any, opening: bool,
              unwrapped: dict[str, int]) -> Iterator[Outcome]:
    if type(doc) is Unreadable:
        yield Rejected(position, doc.reason, shape=_NOT_JSON)
    elif isinstance(doc, list):
        yield from _list(position, doc, opening, unwrapped)
    else:
        yield from _record(position, doc, None, opening, unwrapped)


def _list(position: int, doc: list[Any], opening: bool,
          unwrapped: dict[str, int]) -> Iterator[Outcome]:
    """A JSON array: an esmond answer (metadata, points), a runs listing, or records."""
    dicts = bool(doc) and all(isinstance(item, dict) for item in doc)
    if dicts and all("metadata-key" in item or "event-types" in item for item in doc):
        for index, item in enumerate(doc, start=1):
            yield esmond.read_metadata(index if opening else position, item,
                                       "esmond metadata list")
    elif dicts and all("ts" in item and set(item) <= {"ts", "val"} for item in doc):
        yield esmond.read_points_alone(position, doc)
    elif doc and all(isinstance(item, str) for item in doc):
        yield NotALink(position, "pScheduler runs listing: run URLs, no result (fetch each "
                                 "run and its task, as netbroker collect does)", _RUNS_LISTING)
    elif opening or dicts:
        for index, item in enumerate(doc, start=1):
            prefix = "" if opening else f"item {index}: "
            yield from _prefixed(_record(index if opening else position, item, None, False,
                                         unwrapped), prefix)
    else:
        yield Rejected(position, "document must be a JSON object, got array", shape="array")


def _record(position: int, doc: Any, doc_id: str | None, opening: bool,
            unwrapped: dict[str, int]) -> Iterator[Outcome]:
    """One object's outcomes, by the shape its keys say it has."""
    if not isinstance(doc, dict):
        yield Rejected(position, f"document must be a JSON object, got {json_type(doc)}",
                       shape=json_type(doc))
        return
    hits = search_hits(doc)
    if hits is not None:
        unwrapped[_SEARCH] = unwrapped.get(_SEARCH, 0) + 1
        yield from _hits(position, hits, opening, unwrapped)
    elif _is_bundle(doc):
        yield from esmond.read_bundle(position, doc)
    elif envelope(doc)[1]:
        unwrapped[_MONIT] = unwrapped.get(_MONIT, 0) + 1
        yield from _record(position, doc["data"], doc_id, False, unwrapped)
    elif isinstance(doc.get("_source"), dict):
        hit_id = doc.get("_id")
        yield from _record(position, doc["_source"],
                           str(hit_id) if hit_id not in (None, "") else None, False, unwrapped)
    elif isinstance(doc.get("meta"), dict) and "datapoints" in doc:
        yield from esmond.read_message(position, doc)  # one record per datapoint
    else:
        yield _one(position, doc, doc_id)


def _one(position: int, doc: dict[str, Any], doc_id: str | None) -> Outcome:
    """A record that is no container."""
    if "metadata-key" in doc and "event-types" in doc:
        return esmond.read_metadata(position, doc)
    if "ts" in doc and set(doc) <= {"ts", "val"}:
        return esmond.read_points_alone(position, [doc])
    if isinstance(doc.get("task"), dict) and _is_run(doc):
        return pscheduler.read_run(position, doc)
    inner = doc.get("result")
    if isinstance(inner, dict) and isinstance(inner.get("schedule"), dict) and "test" in inner:
        return pscheduler.read_archived(position, inner)  # in the archiver's envelope
    if "test" in doc and any(k in doc for k in ("meta", "pscheduler", "@timestamp")):
        return pscheduler.read_document(position, doc, doc_id)
    if isinstance(doc.get("schedule"), dict) and "test" in doc and "result" in doc:
        return pscheduler.read_archived(position, doc)
    if _is_run(doc):
        return pscheduler.read_run(position, doc)  # without its task: rejected, saying so
    if "test" in doc and "result" in doc:
        return pscheduler.read_document(position, doc, doc_id)
    if isinstance(doc.get("test"), dict):
        return pscheduler.read_task(position)
    if "succeeded" in doc:
        return pscheduler.read_bare(position, doc)
    if "timestamp" in doc and ({"src", "src_host"} & set(doc)) and ({"dest", "dest_host"}
                                                                     & set(doc)):
        return esmond.read_wlcg_document(position, doc, doc_id)
    keys = ", ".join(sorted(map(str, doc))[:8]) or "none"
    return Rejected(position, f"unknown perfSONAR record (keys {keys}); expected {_EXPECTED}",
                    doc_id, "unknown")


def _hits(position: int, hits: Any, opening: bool,
          unwrapped: dict[str, int]) -> Iterator[Outcome]:
    if not isinstance(hits, list):
        yield Rejected(position, "search response without a hits.hits list", shape=_SEARCH)
        return
    for hit in hits_of(position, hits, opening):
        hit_id = str(hit.id) if hit.id not in (None, "") else None
        if hit.source is not None:
            yield from _prefixed(_record(hit.position, hit.source, hit_id, False, unwrapped),
                                 hit.prefix)
        else:
            yield Rejected(hit.position, "search hit has no _source object", hit_id, _SEARCH)


def _is_bundle(doc: Any) -> bool:
    if not isinstance(doc, dict) or "metadata" not in doc or "data" not in doc:
        return False
    meta = doc["metadata"]
    return not isinstance(meta, dict) or "metadata-key" in meta or "event-types" in meta


def _is_run(doc: dict[str, Any]) -> bool:
    return "result-merged" in doc or ("state" in doc and any(
        k in doc for k in ("start-time", "href", "participants", "task-href")))


def _prefixed(outcomes: Iterable[Outcome], prefix: str) -> Iterator[Outcome]:
    for item in outcomes:
        if prefix and type(item) is Rejected:
            yield Rejected(item.position, prefix + item.reason, item.origin_id, item.shape)
        else:
            yield item

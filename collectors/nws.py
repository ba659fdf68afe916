"""The ATLAS network-metrics (NWS) JSON document: import, and export of our matrix.

The document is what PanDA's configurator reads (PanDAWMS/panda-server
``pandaserver/configurator/Configurator.py``, ``NetworkConfigurator``): an
object keyed ``"SRC_SITE:DST_SITE"`` by site name, each value holding

- ``mbps``: ``{"<system>": {"1h": x, "1d": x, "1w": x, "timestamp": iso}}``
  in MB/s, systems such as ``dashb``, ``fts``, ``faxcost``, ``perfsonar``;
- ``files``: done and queued file counts (not read here);
- ``latency`` and ``packetloss``: ``{"latest": x, "timestamp": iso}``.

Timestamps are ``%Y-%m-%dT%H:%M:%S``, UTC, no zone. Imported values are
already aggregated by the publisher: each system's freshest window (1h, else
1d, else 1w) becomes one throughput sample of source ``nws``; latency (a
perfSONAR one-way delay, ms) and packet loss one sample each.
:func:`export_document` writes our consolidated matrix in the same shape
(system ``netbroker``), so existing consumers can read it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy.engine import Engine

from collectors.layout import JsonDocuments, Unreadable
from collectors.records import HostRef, NotALink, Outcome, ParsedSample, Record, Rejected, flatten
from netbroker.common.config import MetricsSettings
from netbroker.common.metric_kinds import MetricKind
from netbroker.common.metric_kinds import MetricSource as Source
from netbroker.network.metrics import WINDOWS_S, network_matrix

__all__ = ["export_document", "nws_document", "parse", "read"]

ISO = "%Y-%m-%dT%H:%M:%S"
DOCUMENT = "NWS network-metrics entry"


def read(data: bytes | str, first_position: int = 1) -> Iterator[Outcome]:
    """Read NWS documents (any JSON layout): one outcome per ``"SRC:DST"`` entry, then the framing.

    ``position`` is the 1-based index of the entry in its document. An entry
    with throughput, latency or packet loss is a Record; one with only file
    counts is not a link netbroker reads; a malformed one is Rejected.

    Examples
    --------
    >>> import json
    >>> doc = {"CERN-PROD:FZK-LCG2": {"mbps": {"fts": {"1h": 120.5, "1d": 98.0,
    ...        "timestamp": "2026-11-24T10:00:00"}}}, "A:B": {"files": {}}}
    >>> [type(o).__name__ for o in read(json.dumps(doc))]
    ['Record', 'NotALink', 'Framing']
    """
    docs = JsonDocuments(data, first_position)
    for position, doc in docs:
        if type(doc) is Unreadable:
            yield Rejected(position, doc.reason, shape="not JSON")
        elif not isinstance(doc, dict):
            yield Rejected(position, "document must be an object keyed 'SRC:DST', got "
                                     f"{type(doc).__name__}", shape=DOCUMENT)
        else:
            yield from _entries(doc)
    yield docs.framing()


def parse(data: bytes | str) -> Iterator[ParsedSample | Rejected]:
    """Parse an NWS document into samples, one Rejected per unusable link entry.

    ``position`` is the 1-based index of the ``"SRC:DST"`` entry in the document.

    Examples
    --------
    >>> import json
    >>> doc = {"CERN-PROD:FZK-LCG2": {"mbps": {"fts": {"1h": 120.5, "1d": 98.0,
    ...        "timestamp": "2026-11-24T10:00:00"}}}}
    >>> [(s.kind.value, s.value, s.src.value) for s in parse(json.dumps(doc))]
    [('throughput', 120.5, 'CERN-PROD')]
    """
    return flatten(read(data))


def _entries(doc: dict[str, Any]) -> Iterator[Outcome]:
    for position, (key, entry) in enumerate(doc.items(), start=1):
        try:
            samples = tuple(_link(key, entry))
        except ValueError as exc:
            yield Rejected(position, f"{key!r}: {exc}", shape=DOCUMENT)
            continue
        if samples:
            yield Record(position, DOCUMENT, samples)
        else:
            yield NotALink(position, "NWS entry without throughput, latency or packet loss "
                                     "(file counts only)", DOCUMENT)


def _link(key: str, entry: Any) -> Iterator[ParsedSample]:
    src, sep, dst = key.partition(":")
    if not sep or not src or not dst:
        raise ValueError("key must be 'SRC_SITE:DST_SITE'")
    if not isinstance(entry, dict):
        raise ValueError("value must be an object")
    ends = (HostRef("site", src), HostRef("site", dst))
    mbps = entry.get("mbps", {})
    if not isinstance(mbps, dict):
        raise ValueError("mbps must be an object keyed by system")
    for system, windows in sorted(mbps.items()):
        if not isinstance(windows, dict):
            raise ValueError(f"mbps.{system} must be an object")
        value = next((windows[w] for w in ("1h", "1d", "1w") if windows.get(w) is not None),
                     None)
        if value is None:
            continue
        rate = _number(value, f"mbps.{system}")
        if rate < 0:
            raise ValueError(f"mbps.{system} {rate} is negative")
        ts = _time(windows.get("timestamp"), f"mbps.{system}.timestamp")
        yield ParsedSample(Source.NWS, f"{key}:mbps:{system}:{ts:.0f}", *ends,
                           MetricKind.THROUGHPUT, rate, ts, 1.0, "MB/s")
    for field, kind, unit in (("latency", MetricKind.OWD, "ms"),
                              ("packetloss", MetricKind.PACKET_LOSS, "fraction")):
        item = entry.get(field)
        if item is None:
            continue
        if not isinstance(item, dict) or item.get("latest") is None:
            raise ValueError(f"{field} must be an object with 'latest'")
        value = _number(item["latest"], f"{field}.latest")
        if value < 0 or (kind is MetricKind.PACKET_LOSS and value > 1):
            raise ValueError(f"{field}.latest {value} is out of range")
        ts = _time(item.get("timestamp"), f"{field}.timestamp")
        yield ParsedSample(Source.NWS, f"{key}:{field}:{ts:.0f}", *ends, kind, value, ts, 1.0,
                           unit)


def _number(raw: Any, field: str) -> float:
    if isinstance(raw, bool):
        raise ValueError(f"{field} must be a number, got {raw!r}")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{field} must be a number, got {raw!r}") from None
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{field} must be finite, got {raw!r}")
    return value


def _time(raw: Any, field: str) -> float:
    if not isinstance(raw, str):
        raise ValueError(f"missing {field}")
    try:
        # NWS writes UTC without a zone; the zone is added, not assumed local.
        parsed = datetime.strptime(raw[:19] + "+0000", "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        raise ValueError(f"{field} {raw!r} is not {ISO}") from None
    return parsed.timestamp()


def export_document(windows: Mapping[str, pd.DataFrame], loss: pd.DataFrame | None = None,
                    latency: pd.DataFrame | None = None, now_s: float | None = None
                    ) -> dict[str, Any]:
    """Our consolidated values in the NWS shape.

    Parameters
    ----------
    windows : mapping
        ``{"1h": matrix, "1d": matrix, "1w": matrix}`` of throughput in MB/s,
        rows src site, columns dst site, NaN for unknown (as
        ``netbroker.network.metrics.network_matrix`` gives).
    loss, latency : DataFrame, optional
        Packet-loss (fraction) and one-way-delay (ms) matrices of one window.
    now_s : float, optional
        The timestamp written, epoch seconds (default now).

    Returns
    -------
    dict
        ``{"SRC:DST": {"mbps": {"netbroker": {"1h", "1d", "1w", "timestamp"}},
        "packetloss": {...}, "latency": {...}}}`` for every link known in
        at least one input; unknown windows are left out, never zero.
    """
    moment = datetime.now(UTC) if now_s is None else datetime.fromtimestamp(now_s, UTC)
    stamp = moment.strftime(ISO)
    doc: dict[str, Any] = {}
    for window, matrix in windows.items():
        for (src, dst), value in matrix.stack().dropna().items():
            entry = doc.setdefault(f"{src}:{dst}", {})
            entry.setdefault("mbps", {}).setdefault("netbroker", {"timestamp": stamp})[
                window] = round(float(value), 3)
    for field, matrix in (("packetloss", loss), ("latency", latency)):
        if matrix is None:
            continue
        for (src, dst), value in matrix.stack().dropna().items():
            doc.setdefault(f"{src}:{dst}", {})[field] = {"latest": float(value),
                                                          "timestamp": stamp}
    return doc


def nws_document(engine: Engine, settings: MetricsSettings | None = None,
                 now_s: float | None = None) -> dict[str, Any]:
    """The stored measurements' consolidated matrix as an NWS document.

    Throughput for the 1h, 1d and 1w windows; packet loss and one-way delay
    of the last hour.
    """
    def matrix(kind: MetricKind, window: str) -> pd.DataFrame:
        return network_matrix(engine, kind, window, settings=settings, now_s=now_s)

    return export_document({w: matrix(MetricKind.THROUGHPUT, w) for w in WINDOWS_S},
                           matrix(MetricKind.PACKET_LOSS, "1h"), matrix(MetricKind.OWD, "1h"),
                           now_s)

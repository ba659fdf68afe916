"""Field readers the perfSONAR readers share: numbers, times, durations, hosts, histograms.

perfSONAR's archives write numbers as numbers or strings (``"86400"``),
times as epoch seconds, epoch milliseconds or ISO-8601, durations as
ISO-8601 (``PT0.0382S``), ends as host names or IP literals in any case.
Each reader here takes those leniently and raises :class:`Bad` naming the
field and what was expected for what it cannot read; ``collectors.esmond``
and ``collectors.pscheduler`` turn that into a rejection. Units are
normalised here: throughput to MB/s, delays to ms.
"""

from __future__ import annotations

import bisect
import ipaddress
import itertools
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from collectors.layout import json_type
from collectors.records import HostRef

__all__ = ["BITS_PER_MBYTE", "Bad", "fraction", "get", "histogram_median", "host_ref",
           "mbytes_per_s", "median_ms", "number", "seconds", "show", "time_s", "ts_text"]

BITS_PER_MBYTE = 8e6
_EPOCH_MS_ABOVE = 1e11  # epoch seconds stay below this until the year 5138
_NUM = r"(\d+(?:\.\d+)?)"
_DURATION = re.compile(rf"^P(?:{_NUM}D)?(?:T(?:{_NUM}H)?(?:{_NUM}M)?(?:{_NUM}S)?)?$")


class Bad(ValueError):
    """A field that cannot be used; the message names it (and the record, when known)."""

    def __init__(self, reason: str, origin_id: str | None = None) -> None:
        super().__init__(reason)
        self.origin_id = origin_id


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
    if type(hist) is not dict and not isinstance(hist, Mapping):
        raise ValueError(f"histogram must be an object of value: count, got {json_type(hist)}")
    median = _plain_median(hist)
    if median is not None:
        return median
    # something to look at closer: a string count, a bad key, no observation, ...
    buckets = sorted(_bucket(key, count) for key, count in hist.items())
    total = sum(count for _, count in buckets)
    if total == 0:
        raise ValueError("histogram is empty")
    return _value_at(buckets, (total + 1) // 2) / 2 + _value_at(buckets, total // 2 + 1) / 2


def _plain_median(hist: Mapping[str, Any]) -> float | None:
    """The median of a histogram in the usual shape (number keys, int counts >= 0,
    some observation), else None for the careful path to read (and to reject what
    it must). The same value, mostly in C: a histogram point costs this twice over
    at most, and an esmond archive is mostly such points."""
    try:
        values = [float(key) for key in hist]
    except (TypeError, ValueError):
        return None
    counts = list(hist.values())
    if (not counts or set(map(type, counts)) != {int} or min(counts) < 0
            or not math.isfinite(math.fsum(values))):
        return None
    if values != sorted(values):
        pairs = sorted(zip(values, counts, strict=True))
        values, counts = [v for v, _ in pairs], [c for _, c in pairs]
    cumulative = list(itertools.accumulate(counts))
    total = cumulative[-1]
    if total == 0:
        return None
    low = values[bisect.bisect_left(cumulative, (total + 1) // 2)]
    high = values[bisect.bisect_left(cumulative, total // 2 + 1)]
    return low / 2 + high / 2


def _bucket(key: Any, count: Any) -> tuple[float, int]:
    try:
        value = float(key)
    except (TypeError, ValueError):
        raise ValueError(f"histogram bucket {show(key)} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"histogram bucket {show(key)} is not finite")
    try:
        n = float(count) if not isinstance(count, bool) else -1.0
    except (TypeError, ValueError, OverflowError):
        n = -1.0
    if n < 0 or not n.is_integer():
        raise ValueError(f"histogram count {show(count)} of bucket {show(key)} "
                         "is not a whole number >= 0")
    return value, int(n)


def _value_at(buckets: list[tuple[float, int]], rank: int) -> float:
    seen = 0
    for value, count in buckets:
        seen += count
        if seen >= rank:
            return value
    raise AssertionError(f"rank {rank} beyond the histogram's {seen} observations")


def median_ms(hist: Any, field: str, scale: float = 1.0) -> float:
    """A delay histogram's median in ms: its keys times ``scale`` (ms per key unit)."""
    try:
        median = histogram_median(hist) * scale
    except ValueError as exc:
        raise Bad(f"{field}: {exc}") from None
    if median < 0:  # a one-way delay below zero is clock error, not a delay
        raise Bad(f"{field} median {median:g} ms is negative")
    return median


def number(raw: Any, field: str) -> float:
    """A finite number; numbers often arrive as strings."""
    if type(raw) is float and math.isfinite(raw):  # the usual case, first
        return raw
    if raw is None or raw == "":
        raise Bad(f"missing {field}")
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise Bad(f"{field} must be a number, got {show(raw)}")
    try:
        value = float(raw)
    except (ValueError, OverflowError):
        raise Bad(f"{field} must be a number, got {show(raw)}") from None
    if not math.isfinite(value):
        raise Bad(f"{field} must be a finite number, got {show(raw)}")
    return value


def mbytes_per_s(bits: float, field: str) -> float:
    """bits/s -> MB/s (10**6 bytes a second)."""
    if bits < 0:
        raise Bad(f"{field} {bits:g} bits/s is negative")
    return bits / BITS_PER_MBYTE


def fraction(loss: float, field: str) -> float:
    if not 0.0 <= loss <= 1.0:
        raise Bad(f"{field} {loss:g} is outside 0..1")
    return loss


def seconds(raw: Any, field: str) -> float:
    """Seconds from a number or an ISO-8601 duration such as ``PT0.0382S``.

    >>> seconds("PT1M2.5S", "rtt"), seconds("0.25", "rtt")
    (62.5, 0.25)
    """
    if isinstance(raw, str) and raw.strip().upper().startswith("P"):
        match = _DURATION.match(raw.strip().upper())
        if not match:
            raise Bad(f"{field} {show(raw)} is not an ISO-8601 duration in days or less")
        days, hours, minutes, secs = (float(part or 0) for part in match.groups())
        return ((days * 24 + hours) * 60 + minutes) * 60 + secs
    value = number(raw, field)
    if value < 0:
        raise Bad(f"{field} {value:g} s is negative")
    return value


def time_s(raw: Any, field: str) -> float:
    """Unix seconds from ISO-8601 (zone-less = UTC) or an epoch in s or ms.

    >>> time_s("2025-11-20T10:00:36", "t"), time_s(1763632836000, "t")
    (1763632836.0, 1763632836.0)
    """
    if isinstance(raw, str):
        try:
            raw = float(raw)
        except ValueError:
            try:
                when = datetime.fromisoformat(raw.strip())
            except ValueError:
                raise Bad(f"{field} {show(raw)} is not an ISO-8601 or Unix time") from None
            raw = (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    value = number(raw, field)
    if value <= 0:
        raise Bad(f"{field} {show(raw)} is not a Unix time")
    return value / 1000.0 if value > _EPOCH_MS_ABOVE else value


def host_ref(raw: Any, field: str) -> HostRef:
    """An IP literal as ``ip``, anything else as a lower-case ``host`` (a port dropped).

    >>> host_ref("PS-Bandwidth.CERN.ch", "f"), host_ref("[2001:DB8::1]:443", "f")
    (HostRef(by='host', value='ps-bandwidth.cern.ch'), HostRef(by='ip', value='2001:db8::1'))
    """
    if not isinstance(raw, str):
        raise Bad(f"{field} must be a host name or IP, got {show(raw)}")
    name = raw.strip()
    if name.startswith("[") and "]" in name:  # [v6]:port
        name = name[1:name.index("]")]
    elif name.count(":") == 1:  # host:port
        name = name.split(":", 1)[0]
    name = name.rstrip(".").lower()
    try:
        return HostRef("ip", str(ipaddress.ip_address(name)))
    except ValueError:
        pass
    if not name or any(c.isspace() or c in "/@,;[]" for c in name):
        raise Bad(f"{field} {show(raw)} is not a host name or IP")
    return HostRef("host", name)


def get(doc: Any, *path: str) -> Any:
    """``doc[path[0]][path[1]]...``, None where a step is missing or not an object."""
    for key in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def ts_text(ts: float) -> str:
    """The same text for ``1397421672``, ``"1397421672"`` and ``1397421672.0``.

    >>> ts_text(1397421672.0), ts_text(1397421672.5)
    ('1397421672', '1397421672.5')
    """
    return str(int(ts)) if ts.is_integer() else repr(ts)


def show(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."

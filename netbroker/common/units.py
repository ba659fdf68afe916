"""Numbers and times for people: one way to print a time, a size, a rate or a duration.

Every page, CLI table and report prints times as ISO 8601 in UTC with a
``Z`` and whole seconds (:func:`iso_utc`), sizes in decimal units (kB, MB,
GB, TB: :func:`human_bytes`) and durations in the unit that reads best
(:func:`human_seconds`). The JSON API keeps full precision (ISO 8601 with
``Z``, as pydantic writes aware UTC datetimes); this module is for the
places a person reads.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

__all__ = ["human_bytes", "human_seconds", "iso_utc"]

_BYTE_UNITS = ((1e15, "PB"), (1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB"))


def iso_utc(value: datetime | float | None, missing: str = "-") -> str:
    """A time as ISO 8601 in UTC, whole seconds, ``Z``; ``missing`` for None.

    Accepts an aware datetime or epoch seconds.

    >>> from datetime import timedelta, timezone
    >>> iso_utc(datetime(2026, 12, 6, 23, 40, 1, 999, tzinfo=timezone(timedelta(hours=1))))
    '2026-12-06T22:40:01Z'
    >>> iso_utc(0.0), iso_utc(None)
    ('1970-01-01T00:00:00Z', '-')
    """
    if value is None:
        return missing
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(float(value), UTC)
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: netbroker prints aware UTC only")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def human_bytes(nbytes: float | None, missing: str = "-") -> str:
    """Bytes in decimal units with three significant digits; ``missing`` for None.

    >>> human_bytes(2_097_152), human_bytes(3e11), human_bytes(512), human_bytes(None)
    ('2.10 MB', '300 GB', '512 B', '-')
    >>> human_bytes(1.5e15)
    '1.50 PB'
    """
    if nbytes is None or not math.isfinite(nbytes):
        return missing
    nbytes = float(nbytes)  # a database's sum may be a Decimal
    for size, unit in _BYTE_UNITS:
        if abs(nbytes) >= size:
            return f"{_three(nbytes / size)} {unit}"
    return f"{int(nbytes)} B"


def human_seconds(seconds: float | None, missing: str = "-") -> str:
    """A duration in s, min, h or days, three significant digits; ``missing`` for None
    (and ``unreachable`` for an infinite one).

    >>> human_seconds(0.0152), human_seconds(95), human_seconds(7200), human_seconds(3e5)
    ('0.0152 s', '1.58 min', '2.00 h', '3.47 days')
    >>> human_seconds(math.inf)
    'unreachable'
    """
    if seconds is None:
        return missing
    if not math.isfinite(seconds):
        return "unreachable"
    for size, unit in ((86400.0, "days"), (3600.0, "h"), (60.0, "min")):
        if abs(seconds) >= size:
            return f"{_three(seconds / size)} {unit}"
    return f"{seconds:.3g} s"


def _three(x: float) -> str:
    """Three significant digits, keeping trailing zeros (``2.10``, ``300``)."""
    if x == 0:
        return "0"
    digits = max(0, 2 - math.floor(math.log10(abs(x))))
    return f"{x:.{digits}f}"

"""Network metrics: the vocabulary, windows over buckets, consolidation, the matrix.

Samples (one measurement of one link by one source) are stored by the
collectors and folded into time buckets (``netbroker.db.metrics``). Here a
window (1h, 1d, 1w) is the sum of the whole buckets that start within it,
so reading a window never rescans raw history. Per link and kind the value
of a window is the weighted mean of its samples (throughput weighted by
bytes moved, everything else by count).

*Consolidation* picks, per link and kind, one source's value by the
operator's precedence (throughput: FTS transfers, then XRootD reads, then
perfSONAR tests) among sources with enough samples. A link with no recent
bucket has no value: unknown, never zero.
"""

from __future__ import annotations

import enum
import time

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from netbroker.config import MetricsSettings
from netbroker.db.grid import GridDB
from netbroker.db.metrics import MetricsDB
from netbroker.errors import UnknownSite

__all__ = [
    "KIND_UNITS",
    "WINDOWS_S",
    "MetricKind",
    "MetricSource",
    "consolidate",
    "link_history",
    "link_table",
    "network_matrix",
    "prune_samples",
    "window_start_s",
]


class MetricSource(enum.StrEnum):
    """Where a measurement came from."""

    FTS = "fts"
    PERFSONAR = "perfsonar"
    XROOTD = "xrootd"
    NWS = "nws"


class MetricKind(enum.StrEnum):
    """What a sample measures; its unit is ``KIND_UNITS[kind]``."""

    THROUGHPUT = "throughput"    # MB/s (10**6 bytes per second), src -> dst
    PACKET_LOSS = "packet_loss"  # fraction 0..1
    OWD = "owd"                  # one-way delay, median, ms
    RTT = "rtt"                  # round-trip time, median, ms
    SUCCESS = "success"          # 1.0 a transfer/read succeeded, 0.0 it failed


KIND_UNITS = {
    MetricKind.THROUGHPUT: "MB/s",
    MetricKind.PACKET_LOSS: "fraction",
    MetricKind.OWD: "ms",
    MetricKind.RTT: "ms",
    MetricKind.SUCCESS: "fraction",
}

WINDOWS_S = {"1h": 3600, "1d": 86400, "1w": 7 * 86400}

_COLUMNS = ["src", "dst", "source", "count", "value", "last_ts_s"]


def window_start_s(now_s: float, window: str, bucket_s: int) -> int:
    """First bucket start inside the window ending at ``now_s``.

    The window holds the whole buckets starting at or after ``now_s - W``
    (and not after ``now_s``): at most one bucket shorter than W.

    >>> window_start_s(7260.0, "1h", 600)  # buckets from 01:10 to 02:01
    4200
    """
    return int(-(-(now_s - WINDOWS_S[window]) // bucket_s) * bucket_s)


def link_table(engine: Engine, kind: MetricKind | str, window: str,
               settings: MetricsSettings | None = None, now_s: float | None = None,
               source: MetricSource | str | None = None) -> pd.DataFrame:
    """Per link and source, the window's sample count and mean value.

    Returns
    -------
    DataFrame
        Columns ``src, dst, source, count, value, last_ts_s``; site names for
        src and dst; one row per (link, source) with data in the window.

    Notes
    -----
    One grouped query over the buckets of the window: O(b) in buckets.
    """
    settings = settings or MetricsSettings()
    now_s = time.time() if now_s is None else now_s
    bucket_s = settings.bucket_minutes * 60
    since = window_start_s(now_s, window, bucket_s)
    with engine.connect() as conn:
        rows = MetricsDB(conn).window(MetricKind(kind).value, since, now_s,
                                      None if source is None else MetricSource(source).value)
        names = {sid: name for name, (sid, *_) in GridDB(conn).site_lookup()["site"].items()}
    if not rows:
        return pd.DataFrame(columns=_COLUMNS)
    df = pd.DataFrame(rows)
    weighted = df["weighted_value_sum"] / df["weight_sum"].where(df["weight_sum"] > 0)
    df["value"] = weighted.fillna(df["value_sum"] / df["count"])
    df["src"] = df["src_site_id"].map(names)
    df["dst"] = df["dst_site_id"].map(names)
    df["count"] = df["count"].astype(np.int64)
    return df[_COLUMNS].sort_values(["src", "dst", "source"], ignore_index=True)


def consolidate(links: pd.DataFrame, precedence: list[str], min_samples: int) -> pd.DataFrame:
    """One value per link: the first source in ``precedence`` with enough samples.

    Parameters
    ----------
    links : DataFrame
        As :func:`link_table` gives.
    precedence : list of str
        Sources, best first; sources not listed are not used.
    min_samples : int
        A source's value counts only with at least this many samples.

    Returns
    -------
    DataFrame
        Columns ``src, dst, source, count, value, last_ts_s``, one row per
        link that has a usable source; ``source`` is its provenance.

    Notes
    -----
    O(r log r) in the rows (one sort).

    Examples
    --------
    >>> links = pd.DataFrame({"src": ["A", "A"], "dst": ["B", "B"],
    ...     "source": ["perfsonar", "fts"], "count": [10, 1],
    ...     "value": [80.0, 30.0], "last_ts_s": [1.0, 2.0]})
    >>> consolidate(links, ["fts", "xrootd", "perfsonar"], 2)[["source", "value"]].values.tolist()
    [['perfsonar', 80.0]]
    """
    rank = {s: i for i, s in enumerate(precedence)}
    usable = links[links["source"].isin(rank) & (links["count"] >= min_samples)].copy()
    if usable.empty:
        return pd.DataFrame(columns=_COLUMNS)
    usable["_rank"] = usable["source"].map(rank)
    best = usable.sort_values(["src", "dst", "_rank"]).drop_duplicates(["src", "dst"])
    return best[_COLUMNS].reset_index(drop=True)


def network_matrix(engine: Engine, kind: MetricKind | str, window: str,
                   source: str = "consolidated", settings: MetricsSettings | None = None,
                   now_s: float | None = None) -> pd.DataFrame:
    """The window's values as a matrix: rows src site, columns dst site.

    Sites are every site with data in the window, ordered by cloud then name
    (so a heatmap groups clouds); a link without a value is NaN (unknown).
    ``source`` is ``consolidated`` or one source's name.
    """
    settings = settings or MetricsSettings()
    kind = MetricKind(kind)
    single = None if source == "consolidated" else MetricSource(source)
    links = link_table(engine, kind, window, settings, now_s, single)
    if single is None:
        links = consolidate(links, settings.precedence_for(kind.value), settings.min_samples)
    order = _site_order(engine, set(links["src"]) | set(links["dst"]))
    matrix = links.pivot(index="src", columns="dst", values="value") if len(links) else None
    out = (matrix if matrix is not None else pd.DataFrame()).reindex(index=order, columns=order)
    out.index.name, out.columns.name = "src", "dst"
    return out.astype(float)


def _site_order(engine: Engine, names: set[str]) -> list[str]:
    with engine.connect() as conn:
        sites = GridDB(conn).list_sites()
    return [s["name"] for s in sites if s["name"] in names]



def link_history(engine: Engine, src: str, dst: str, kind: MetricKind | str,
                 since_s: float, until_s: float | None = None) -> pd.DataFrame:
    """One link's buckets from ``since_s`` to ``until_s`` (default: all after since).

    Columns ``bucket_start_s, source, count, value, last_ts_s``, oldest first.

    Raises
    ------
    UnknownSite
        ``src`` or ``dst`` is not registered.
    """
    with engine.connect() as conn:
        ids = GridDB(conn).site_lookup()["site"]
        for name in (src, dst):
            if name not in ids:
                raise UnknownSite(name)
        rows = MetricsDB(conn).link_history(ids[src][0], ids[dst][0], MetricKind(kind).value,
                                            since_s, until_s)
    columns = ["bucket_start_s", "source", "count", "value", "last_ts_s"]
    if not rows:
        return pd.DataFrame(columns=columns)
    df = pd.DataFrame(rows)
    weighted = df["weighted_value_sum"] / df["weight_sum"].where(df["weight_sum"] > 0)
    df["value"] = weighted.fillna(df["value_sum"] / df["count"])
    return df[columns]


def prune_samples(engine: Engine, settings: MetricsSettings | None = None,
                  now_s: float | None = None) -> int:
    """Delete raw samples older than the raw retention; returns how many.

    The buckets keep their sums, so windows are unaffected.
    """
    settings = settings or MetricsSettings()
    now_s = time.time() if now_s is None else now_s
    with engine.begin() as conn:
        return MetricsDB(conn).prune_samples(now_s - settings.raw_retention_days * 86400)

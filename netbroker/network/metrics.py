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

import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from netbroker.common.config import MetricsSettings
from netbroker.common.errors import UnknownSite
from netbroker.common.metric_kinds import KIND_UNITS, MetricKind, MetricSource
from netbroker.db.engine import begin_immediate
from netbroker.db.grid import GridDB
from netbroker.db.metrics import MetricsDB

__all__ = [
    "KIND_UNITS",
    "MATRIX_KINDS",
    "MATRIX_UNITS",
    "WINDOWS_S",
    "MetricKind",
    "MetricSource",
    "block_closed_buckets",
    "choose_sources",
    "closeness",
    "consolidate",
    "link_history",
    "link_table",
    "link_windows",
    "network_matrix",
    "prune_samples",
    "tier1_links",
    "window_mean",
    "window_start_s",
]


WINDOWS_S = {"1h": 3600, "1d": 86400, "1w": 7 * 86400}

# What a matrix can show: every measured kind, plus two derived views.
# ``latency`` is the one-way delay (perfSONAR's latency tests); ``closeness``
# grades consolidated throughput on CRIC's scale, 0 (best) to 11 (worst).
MATRIX_KINDS = (*(k.value for k in MetricKind), "latency", "closeness")
MATRIX_UNITS = {**{k.value: u for k, u in KIND_UNITS.items()}, "latency": "ms",
                "closeness": "0 (best) .. 11 (worst)"}

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
    One range scan over the window's buckets per source, summed per link:
    O(b) in buckets.
    """
    sources = list(MetricSource) if source is None else [MetricSource(source)]
    frames = [_link_frame(engine, kind, window, settings, now_s, s).assign(source=s.value)
              for s in sources]
    links = pd.concat([f for f in frames if len(f)] or [pd.DataFrame(columns=_COLUMNS)],
                      ignore_index=True)
    names = _site_names(engine)
    links["src"] = names[links["src"].to_numpy(dtype=np.int64)]
    links["dst"] = names[links["dst"].to_numpy(dtype=np.int64)]
    return links[_COLUMNS].sort_values(["src", "dst", "source"], ignore_index=True)


def _link_frame(engine: Engine, kind: MetricKind | str, window: str,
                settings: MetricsSettings | None, now_s: float | None,
                source: MetricSource, src_ids: list[int] | None = None) -> pd.DataFrame:
    """One source's links of the window: src and dst site ids, count, value, last_ts_s."""
    src, dst, count, value, last = _link_arrays(engine, kind, window, settings, now_s, source,
                                                src_ids)
    return pd.DataFrame({"src": src, "dst": dst, "count": count, "value": value,
                         "last_ts_s": last})


def _link_arrays(engine: Engine, kind: MetricKind | str, window: str,
                 settings: MetricsSettings | None, now_s: float | None,
                 source: MetricSource, src_ids: list[int] | None = None
                 ) -> tuple[np.ndarray, ...]:
    """:func:`_link_frame`'s columns as arrays: per link of the window, summed as pandas'
    groupby would (the matrix's sums, to the bit). O(b log b) for b buckets."""
    settings = settings or MetricsSettings()
    now_s = time.time() if now_s is None else now_s
    since = window_start_s(now_s, window, settings.bucket_minutes * 60)
    with engine.connect() as conn:
        rows = MetricsDB(conn).window(MetricKind(kind).value, source.value, since, now_s,
                                      src_ids)
    if not len(rows):
        empty = np.zeros(0, np.int64)
        return empty, empty, empty, np.zeros(0), np.zeros(0)
    src, dst = rows[:, 0].astype(np.int64), rows[:, 1].astype(np.int64)
    span = int(dst.max()) + 1
    # Dense codes in the links' order: arrays over src * span + dst itself would grow
    # with the square of the largest site id (12 GB for site ids near 40,000).
    every, code = np.unique(src * span + dst, return_inverse=True)
    code = np.asarray(code, dtype=np.int64).reshape(-1)
    links, sums = _sum_by_link(code, [rows[:, c] for c in range(2, 6)], len(every))
    last = np.full(len(every), -np.inf)
    np.maximum.at(last, code, rows[:, 6])
    src_of, dst_of = np.divmod(every[links], span)
    return (src_of.astype(np.int64), dst_of.astype(np.int64),
            np.asarray(sums[0]).astype(np.int64),
            window_mean(*(np.array(x, dtype=float) for x in sums)), last[links])


def _site_names(engine: Engine) -> np.ndarray:
    """Site names indexed by site id (an object array; unused ids hold None)."""
    with engine.connect() as conn:
        ids = {sid: name for name, sid in GridDB(conn).site_ids().items()}
    names = np.empty(max(ids, default=0) + 1, dtype=object)
    for sid, name in ids.items():
        names[sid] = name
    return names


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
    if links.empty:
        return pd.DataFrame(columns=_COLUMNS)
    code, _ = pd.MultiIndex.from_arrays([links["src"], links["dst"]]).factorize()
    code = np.asarray(code, dtype=np.int64)
    source = links["source"].to_numpy()
    count = links["count"].to_numpy()
    per_source = [(code[source == s], count[source == s]) for s in precedence]
    chosen = choose_sources(per_source, int(code.max()) + 1, min_samples)
    rank = links["source"].map({s: i for i, s in enumerate(precedence)}).fillna(-2).to_numpy()
    best = links[rank == chosen[code]]
    return best[_COLUMNS].sort_values(["src", "dst"], ignore_index=True)


def choose_sources(per_source: Sequence[tuple[np.ndarray, np.ndarray]], size: int,
                   min_samples: int) -> np.ndarray:
    """The consolidation rule: for each link, the first source in precedence with at
    least ``min_samples`` samples on it.

    Parameters
    ----------
    per_source : sequence of (links, counts)
        One pair of arrays per source, best source first: the links it has in the
        window (ints in ``range(size)``, each at most once) and its sample count on each.
    size : int
        How many links there are.
    min_samples : int
        A source counts on a link only with at least this many samples.

    Returns
    -------
    ndarray of int
        Per link, the index in ``per_source`` of the source chosen, or -1 where
        none has enough samples (the link is unknown).

    Notes
    -----
    O(size + b) for b (link, source) pairs. The matrix, the clouds' Tier-1
    links, brokerage, PD2P, the site graph and a link's page all choose
    through this function.

    Examples
    --------
    >>> fts = (np.array([0, 1]), np.array([1, 5]))        # best first
    >>> perfsonar = (np.array([0, 2]), np.array([10, 1]))
    >>> choose_sources([fts, perfsonar], 3, 2).tolist()  # link 0: FTS has too few
    [1, 0, -1]
    """
    chosen = np.full(size, -1, dtype=np.int64)
    for i, (links, counts) in enumerate(per_source):
        enough = np.asarray(links)[np.asarray(counts) >= min_samples]
        chosen[enough[chosen[enough] < 0]] = i
    return chosen


def closeness(mbytes_per_s: np.ndarray | pd.DataFrame, best: float, worst: float
              ) -> np.ndarray | pd.DataFrame:
    """Grade throughput on CRIC's closeness scale: 0 at ``best`` MB/s or more, 11 at
    ``worst`` or less, log-linear between; unknown (NaN) stays unknown.

    Examples
    --------
    >>> closeness(np.array([500.0, 200.0, 20.0, 0.5, np.nan]), best=200.0, worst=0.5).tolist()
    [0.0, 0.0, 4.0, 11.0, nan]
    """
    span = np.log10(best / worst)
    grade = 11 * np.clip(np.log10(best / np.maximum(mbytes_per_s, 1e-12)) / span, 0, 1)
    return np.round(grade)


def network_matrix(engine: Engine, kind: MetricKind | str, window: str,
                   source: str = "consolidated", settings: MetricsSettings | None = None,
                   now_s: float | None = None) -> pd.DataFrame:
    """The window's values as a matrix: rows src site, columns dst site.

    Sites are every site with data in the window, ordered by cloud then name
    (so a heatmap groups clouds); a link without a value is NaN (unknown).
    ``source`` is ``consolidated`` (the same rule as :func:`consolidate`) or
    one source's name. ``kind`` is any of :data:`MATRIX_KINDS`.

    Notes
    -----
    O(b + n**2) for b buckets in the window and n sites: per source the
    numeric columns a value needs (:meth:`MetricsDB.window_links`), sums per
    link into arrays over the links as stored (at most 4 n**2 of them;
    sparser ids are renumbered to n**2), then the precedence over those
    arrays (:func:`_consolidate_links`). The closed starts the aggregate cycle has
    blocked are read one row each (:func:`block_closed_buckets`), the
    open ones row by row. The values are those of
    :func:`consolidate` over :func:`link_table`, to the last bit: the same
    sums, in the same order, as pandas takes them.
    """
    settings = settings or MetricsSettings()
    if kind == "closeness":
        throughput = network_matrix(engine, MetricKind.THROUGHPUT, window, source, settings,
                                    now_s)
        return closeness(throughput, settings.closeness_best_mbytes_per_s,
                         settings.closeness_worst_mbytes_per_s)
    kind = MetricKind.OWD if kind == "latency" else MetricKind(kind)
    if source == "consolidated":
        sources = [MetricSource(s) for s in settings.precedence_for(kind.value)]
        least = settings.min_samples
    else:
        sources, least = [MetricSource(source)], 1
    now_s = time.time() if now_s is None else now_s
    since = window_start_s(now_s, window, settings.bucket_minutes * 60)
    with engine.connect() as conn:
        order = GridDB(conn).site_order()
        span = max((sid for sid, _ in order), default=0) + 1
        per_source = MetricsDB(conn).window_links(kind.value, [s.value for s in sources],
                                                  since, now_s, span)
    ids = np.fromiter((sid for sid, _ in order), np.int64, len(order))
    # Arrays over the links as stored (src_id * span + dst_id) while the ids are
    # about dense, the usual case; else the links renumbered to the sites' positions.
    side = span if span * span <= 4 * len(ids) ** 2 else len(ids)
    at = ids
    if side != span:
        _renumber_links(per_source, ids, span)
        at = np.arange(len(ids))
    values = np.full(side * side, np.nan)
    usable = np.zeros(side * side, dtype=bool)
    _consolidate_links(per_source, least, values, usable)
    grid = usable.reshape(side, side)
    kept = np.asarray(grid.any(axis=1) | grid.any(axis=0))[at]
    names = [name for (_, name), k in zip(order, kept.tolist(), strict=True) if k]
    rows = at[kept]
    return pd.DataFrame(values.reshape(side, side)[np.ix_(rows, rows)],
                        index=pd.Index(names, name="src"), columns=pd.Index(names, name="dst"))


def _renumber_links(chunks: list[dict[str, np.ndarray]], ids: np.ndarray, span: int) -> None:
    """Renumber each chunk's links ``src_id * span + dst_id`` to ``i * n + j``, src
    and dst being the i-th and j-th of the n ``ids``. O(b) for b buckets."""
    n = len(ids)
    position = np.zeros(span, dtype=np.int64)
    position[ids] = np.arange(n)
    for columns in chunks:
        src, dst = np.divmod(columns["link"], span)
        columns["link"] = position[src] * n + position[dst]


def _consolidate_links(chunks: Sequence[dict[str, np.ndarray]], least: int,
                       values: np.ndarray, usable: np.ndarray) -> None:
    """The rule of :func:`consolidate` on arrays indexed by link, into ``values``
    (NaN where no source is usable) and ``usable`` (whether one was: the first
    with at least ``least`` samples on the link).

    ``chunks`` are :meth:`MetricsDB.window_links`' columns, one per source,
    best first, with ``link`` in ``range(len(values))``. O(b + size) for b
    buckets.
    """
    summed = [_sum_by_link(columns["link"], [columns[c] for c in _SUMMED], len(values))
              for columns in chunks]
    chosen = choose_sources([(links, sums[0]) for links, sums in summed], len(values), least)
    for i, (links, sums) in enumerate(summed):
        taken = chosen[links] == i
        if taken.any():
            values[links[taken]] = window_mean(*(x[taken] for x in sums))
    usable |= chosen >= 0


_SUMMED = ("count", "value_sum", "weight_sum", "weighted_value_sum")


def window_mean(count: np.ndarray, value_sum: np.ndarray, weight_sum: np.ndarray,
                weighted_value_sum: np.ndarray) -> np.ndarray:
    """A window's value per link from its summed buckets: the weighted mean where the
    weights sum above 0 (and it is a number), else the plain mean. The one window
    mean: the matrix, the link tables, the Tier-1 links and a link's history use it.

    >>> window_mean(np.array([2., 2.]), np.array([10., 6.]), np.array([0., 4.]),
    ...             np.array([0., 20.])).tolist()
    [5.0, 5.0]
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = weighted_value_sum / weight_sum
        mean[~(weight_sum > 0)] = np.nan
        plain = np.isnan(mean)
        if plain.any():  # the plain mean only where needed: most links have weights
            mean[plain] = value_sum[plain] / count[plain]
    return mean


def _sum_by_link(link: np.ndarray, columns: list[np.ndarray], size: int
                 ) -> tuple[np.ndarray, list[np.ndarray]]:
    """The links in ``range(size)`` that have rows, and each column's sum per link.

    The sums are pandas' ``groupby().sum()`` to the bit: a link's rows are
    added in their order with Kahan compensation, as pandas adds a group's
    floats, one vectorised step per row rank (the k-th row of every link
    with more than k rows). When no link has two rows, the usual case in a
    short window, the rows are the sums (seen in one pass where the links
    increase, as one bucket start's do). O(b log b + size) for b rows, in as
    many steps as the longest link has rows (at most the window's buckets).
    """
    if len(link) < 2 or bool(np.all(link[1:] > link[:-1])):
        return link, columns  # increasing: one row a link
    rows = np.bincount(link, minlength=size)
    if rows.max(initial=0) <= 1:
        return link, columns
    by_link = np.argsort(link, kind="stable")  # a link's rows together, in their order
    links = np.flatnonzero(rows)
    first = np.concatenate(([0], np.cumsum(rows[links])[:-1]))
    longest = np.argsort(-rows[links], kind="stable")  # so step k works on a prefix
    links, first = links[longest], first[longest]
    length = rows[links]
    sums = [np.zeros(len(links)) for _ in columns]
    lost = [np.zeros(len(links)) for _ in columns]
    for k in range(int(length[0])):
        m = int(np.searchsorted(-length, -k))  # the links with more than k rows
        at = by_link[first[:m] + k]
        for column, total, error in zip(columns, sums, lost, strict=True):
            y = column[at] - error[:m]
            t = total[:m] + y
            e = t - total[:m] - y
            e[np.isnan(e)] = 0.0  # an infinite row: pandas keeps the infinity
            error[:m] = e
            total[:m] = t
    return links, sums


def tier1_links(engine: Engine, kind: MetricKind, window: str, src_ids: list[int],
                settings: MetricsSettings | None = None, now_s: float | None = None
                ) -> list[tuple[int, int, int, float]]:
    """Consolidated links leaving the given sites: (src id, dst id, samples, value).

    The consolidation rule of :func:`consolidate` (precedence, then
    ``min_samples``), on the values :func:`link_table` gives, to the bit.
    Each source's links come in (src, dst) order, the sources in precedence.

    Notes
    -----
    Reads as the matrix does (:meth:`MetricsDB.window_links`): the closed
    starts the aggregate cycle has blocked one row each, the open ones row
    by row, only the links leaving ``src_ids``. O(s + l + b log b) for s
    blocked starts holding l links and b buckets read.
    """
    settings = settings or MetricsSettings()
    now_s = time.time() if now_s is None else now_s
    since = window_start_s(now_s, window, settings.bucket_minutes * 60)
    kind = MetricKind(kind)
    sources = settings.precedence_for(kind.value)
    with engine.connect() as conn:
        chunks = MetricsDB(conn).window_links(kind.value, sources, since, now_s, _SPAN,
                                              src_ids)
    summed = []
    for columns in chunks:
        # Dense codes in the links' order, so the sums run in range(len(every)).
        every, code = np.unique(columns["link"], return_inverse=True)
        links, sums = _sum_by_link(code.astype(np.int64), [columns[c] for c in _SUMMED],
                                   len(every))
        order = np.argsort(links, kind="stable")  # (src, dst) order
        summed.append((every[links[order]], [np.asarray(x, dtype=float)[order] for x in sums]))
    every = np.unique(np.concatenate([links for links, _ in summed])) if summed \
        else np.zeros(0, np.int64)
    codes = [np.searchsorted(every, links) for links, _ in summed]
    chosen = choose_sources([(c, sums[0]) for c, (_, sums) in zip(codes, summed, strict=True)],
                            len(every), settings.min_samples)
    out: list[tuple[int, int, int, float]] = []
    for i, (code, (links, sums)) in enumerate(zip(codes, summed, strict=True)):
        taken = chosen[code] == i
        if not taken.any():
            continue
        src, dst = np.divmod(links[taken], _SPAN)
        out.extend(zip(src.tolist(), dst.tolist(), sums[0][taken].astype(np.int64).tolist(),
                       window_mean(*(x[taken] for x in sums)).tolist(), strict=True))
    return out


_SPAN = 1 << 31  # more than any site id (a 32-bit column): a link is src * _SPAN + dst


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
        ids = GridDB(conn).site_ids()
        for name in (src, dst):
            if name not in ids:
                raise UnknownSite(name)
        rows = MetricsDB(conn).link_history(ids[src], ids[dst], MetricKind(kind).value,
                                            since_s, until_s, [s.value for s in MetricSource])
    columns = ["bucket_start_s", "source", "count", "value", "last_ts_s"]
    if not rows:
        return pd.DataFrame(columns=columns)
    df = pd.DataFrame(rows)
    df["value"] = window_mean(*(df[c].to_numpy(dtype=float) for c in _SUMMED))
    return df[columns]


def link_windows(engine: Engine, src: str, dst: str, kinds: Sequence[str],
                 settings: MetricsSettings | None = None, now_s: float | None = None
                 ) -> list[dict[str, object]]:
    """One link's windows: per kind, window (1h, 1d, 1w) and source with data, the
    sample count, the mean value, the last sample's time and whether consolidation
    uses this source (``chosen``: first in the precedence with ``min_samples``).

    Reads only the link's source site's rows: O(k * w * b) in the buckets of that
    site. Raises ``UnknownSite``.
    """
    settings = settings or MetricsSettings()
    with engine.connect() as conn:
        ids = GridDB(conn).site_ids()
    for name in (src, dst):
        if name not in ids:
            raise UnknownSite(name)
    out: list[dict[str, object]] = []
    for kind in kinds:
        precedence = settings.precedence_for(MetricKind(kind).value)
        for window in WINDOWS_S:
            rows = []
            for source in MetricSource:
                frame = _link_frame(engine, kind, window, settings, now_s, source, [ids[src]])
                for r in frame[frame["dst"] == ids[dst]].to_dict("records"):
                    rows.append({"kind": kind, "window": window, "source": source.value,
                                 "count": int(r["count"]), "value": float(r["value"]),
                                 "last_ts_s": float(r["last_ts_s"])})
            counts = {str(r["source"]): r["count"] for r in rows}
            present = [p for p in precedence if p in counts]  # the one link, as link 0
            chosen = choose_sources([(np.zeros(1, np.int64), np.array([counts[p]]))
                                     for p in present], 1, settings.min_samples)[0]
            best = present[chosen] if chosen >= 0 else None
            out.extend({**r, "chosen": r["source"] == best} for r in rows)
    return out


def prune_samples(engine: Engine, settings: MetricsSettings | None = None,
                  now_s: float | None = None) -> int:
    """Delete raw samples older than the raw retention; returns how many.

    The buckets keep their sums, so windows are unaffected.
    """
    settings = settings or MetricsSettings()
    now_s = time.time() if now_s is None else now_s
    with begin_immediate(engine) as conn:
        return MetricsDB(conn).prune_samples(now_s - settings.raw_retention_days * 86400)


def block_closed_buckets(engine: Engine, settings: MetricsSettings | None = None,
                         now_s: float | None = None) -> dict[str, int]:
    """The aggregate cycle: copy each closed bucket start into its block.

    Per kind and source, every start whose bucket closed at least
    ``block_after_minutes`` ago and is not blocked yet gets its block (one
    row holding the start's links as arrays, ``MetricsDB.block_buckets``);
    blocks older than the longest window and a day are dropped. Returns the
    blocks written per ``kind/source`` (those with any).

    Under the ingestion lock, in one transaction: a batch being ingested
    waits, and sees the new marks (it rebuilds a block it adds to). O(b)
    in the bucket rows of the starts blocked; the first run on a database
    with history blocks its last 8 days, later runs the starts closed since.
    The marks move a bucket width at a time (``through`` is the last start of
    today's width that closed; a start of another width just after it waits
    for the next; the week's first start moves once a width too), so a run
    between two such moves only reads the marks.
    """
    settings = settings or MetricsSettings()
    now_s = time.time() if now_s is None else now_s
    bucket_s = settings.bucket_minutes * 60
    through = int(now_s - settings.block_after_minutes * 60 - bucket_s) // bucket_s * bucket_s
    keep_from = window_start_s(now_s, "1w", bucket_s) - 86400
    written = {}
    with begin_immediate(engine) as conn:
        db = MetricsDB(conn)
        db.lock_for_ingest()
        marks = db.block_marks()
        for kind in MetricKind:
            for source in MetricSource:
                n = db.block_buckets(kind.value, source.value, through, keep_from, marks)
                if n:
                    written[f"{kind.value}/{source.value}"] = n
    return written

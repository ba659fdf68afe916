"""The site graph: sites as nodes, consolidated link metrics on edges (networkx).

Periodic cycles work on arrays; the graph serves the API, explanations and
small what-if questions ("who is close to this Tier-1?"). Node attributes
are the registry's (cloud, tier, status, nucleus); each edge holds, per
kind with a consolidated value, ``{"value", "unit", "source", "count",
"last_ts_s"}`` — the value and where it came from.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterable, Mapping
from typing import Any

import networkx as nx
import pandas as pd
from sqlalchemy.engine import Engine

from netbroker.common.config import MetricsSettings
from netbroker.common.errors import UnknownSite
from netbroker.db.grid import GridDB
from netbroker.network.metrics import KIND_UNITS, MetricKind, consolidate, link_table

__all__ = ["build_site_graph", "site_graph", "widest_path", "widest_path_report"]


def build_site_graph(sites: Iterable[Mapping[str, Any]],
                     links: Mapping[MetricKind, pd.DataFrame]) -> nx.DiGraph:
    """Build the directed site graph from registry rows and consolidated links.

    Parameters
    ----------
    sites : iterable of mappings
        Registry rows with ``name, cloud, tier, status, is_nucleus``.
    links : mapping
        Per kind, consolidated rows ``src, dst, source, count, value, last_ts_s``
        (as :func:`netbroker.network.metrics.consolidate` gives).

    Returns
    -------
    DiGraph
        Every site is a node; an edge exists where some kind has a value.
        Links naming an unknown site are left out.

    Notes
    -----
    O(n + m) in sites and link rows.

    Examples
    --------
    >>> sites = [{"name": "A", "cloud": "DE", "tier": 1, "status": "online",
    ...           "is_nucleus": True}, {"name": "B", "cloud": "DE", "tier": 2,
    ...           "status": "online", "is_nucleus": False}]
    >>> tp = pd.DataFrame({"src": ["A"], "dst": ["B"], "source": ["fts"], "count": [4],
    ...                    "value": [55.0], "last_ts_s": [0.0]})
    >>> g = build_site_graph(sites, {MetricKind.THROUGHPUT: tp})
    >>> g["A"]["B"]["throughput"]["value"], g.nodes["B"]["tier"]
    (55.0, 2)
    """
    graph = nx.DiGraph()
    for s in sites:
        graph.add_node(s["name"], cloud=s["cloud"], tier=s["tier"], status=str(s["status"]),
                       is_nucleus=bool(s["is_nucleus"]))
    for kind, frame in links.items():
        for row in frame.itertuples(index=False):
            if row.src not in graph or row.dst not in graph:
                continue
            attrs = {"value": float(row.value), "unit": KIND_UNITS[kind],
                     "source": row.source, "count": int(row.count),
                     "last_ts_s": float(row.last_ts_s)}
            if graph.has_edge(row.src, row.dst):
                graph[row.src][row.dst][kind.value] = attrs
            else:
                graph.add_edge(row.src, row.dst, **{kind.value: attrs})
    return graph


def site_graph(engine: Engine, window: str = "1d", settings: MetricsSettings | None = None,
               now_s: float | None = None, kinds: Iterable[MetricKind] = tuple(MetricKind)
               ) -> nx.DiGraph:
    """The registry's sites with the consolidated values of ``window`` of each of
    ``kinds`` (default: every kind) on their links."""
    settings = settings or MetricsSettings()
    links = {kind: consolidate(link_table(engine, kind, window, settings, now_s),
                               settings.precedence_for(kind.value), settings.min_samples)
             for kind in kinds}
    with engine.connect() as conn:
        sites = GridDB(conn).list_sites()
    return build_site_graph(sites, links)


def widest_path(graph: nx.DiGraph, src: str, dst: str, kind: str = "throughput"
                ) -> tuple[float, list[str]]:
    """The path from ``src`` to ``dst`` whose slowest link is the fastest.

    The question a transfer asks of the mesh: copying through a third site is
    worth it when its two links are both faster than the direct one.

    Parameters
    ----------
    graph : DiGraph
        As :func:`build_site_graph` gives: edges carry ``{kind: {"value": ...}}``.
    src, dst : str
        Site names (nodes of ``graph``).
    kind : str
        The edge metric to maximise (a rate: larger is better).

    Returns
    -------
    (float, list of str)
        The bottleneck value and the sites on the path, ``src`` first; ``(nan, [])``
        when no path of measured links joins them, ``(inf, [src])`` when
        ``src == dst``.

    Notes
    -----
    Dijkstra with max-min in place of sum: O(m log n) for n sites and m links.

    Examples
    --------
    >>> g = nx.DiGraph()
    >>> g.add_edge("A", "C", throughput={"value": 10.0})
    >>> g.add_edge("A", "B", throughput={"value": 80.0})
    >>> g.add_edge("B", "C", throughput={"value": 50.0})
    >>> widest_path(g, "A", "C")
    (50.0, ['A', 'B', 'C'])
    """
    if src == dst:
        return math.inf, [src]
    best = {src: math.inf}
    came_from: dict[str, str] = {}
    heap = [(-math.inf, src)]
    done: set[str] = set()
    while heap:
        negative, site = heapq.heappop(heap)
        if site in done:
            continue
        done.add(site)
        if site == dst:
            path = [dst]
            while path[-1] != src:
                path.append(came_from[path[-1]])
            return -negative, path[::-1]
        for nxt, edge in graph[site].items():
            if kind not in edge or nxt in done:
                continue
            width = min(-negative, float(edge[kind]["value"]))
            if width > best.get(nxt, -math.inf):
                best[nxt] = width
                came_from[nxt] = site
                heapq.heappush(heap, (-width, nxt))
    return math.nan, []


def widest_path_report(engine: Engine, src: str, dst: str, window: str = "1d",
                       settings: MetricsSettings | None = None, now_s: float | None = None
                       ) -> dict[str, Any]:
    """:func:`widest_path` of consolidated throughput over ``window``, for people: the
    bottleneck (MB/s, None without a path), each hop with its value, source and
    sample count, and the direct link (None when it is not measured).

    Raises ``UnknownSite`` for a site the registry does not have.
    """
    kind = MetricKind.THROUGHPUT
    graph = site_graph(engine, window, settings, now_s, kinds=[kind])
    for name in (src, dst):
        if name not in graph:
            raise UnknownSite(name)
    width, path = widest_path(graph, src, dst, kind.value)

    def hop(a: str, b: str) -> dict[str, Any] | None:
        edge = graph.get_edge_data(a, b, default={}).get(kind.value)
        return None if edge is None else {"src": a, "dst": b, "value": edge["value"],
                                          "source": edge["source"], "count": edge["count"]}

    hops = [hop(a, b) for a, b in itertools.pairwise(path)]
    return {"src": src, "dst": dst, "window": window, "kind": kind.value,
            "unit": KIND_UNITS[kind], "bottleneck": None if math.isnan(width) or len(path) < 2
            else width, "hops": hops, "direct": hop(src, dst)}

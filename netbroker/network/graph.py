"""The site graph: sites as nodes, consolidated link metrics on edges (networkx).

Periodic cycles work on arrays; the graph serves the API, explanations and
small what-if questions ("who is close to this Tier-1?"). Node attributes
are the registry's (cloud, tier, status, nucleus); each edge holds, per
kind with a consolidated value, ``{"value", "unit", "source", "count",
"last_ts_s"}`` — the value and where it came from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import networkx as nx
import pandas as pd
from sqlalchemy.engine import Engine

from netbroker.common.config import MetricsSettings
from netbroker.db.grid import GridDB
from netbroker.network.metrics import KIND_UNITS, MetricKind, consolidate, link_table

__all__ = ["build_site_graph", "site_graph"]


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
               now_s: float | None = None) -> nx.DiGraph:
    """The registry's sites with every kind's consolidated values of ``window``."""
    settings = settings or MetricsSettings()
    links = {kind: consolidate(link_table(engine, kind, window, settings, now_s),
                               settings.precedence_for(kind.value), settings.min_samples)
             for kind in MetricKind}
    with engine.connect() as conn:
        sites = GridDB(conn).list_sites()
    return build_site_graph(sites, links)

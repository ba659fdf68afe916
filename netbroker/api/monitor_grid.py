"""The monitor's grid pages: sites, clouds, datasets and the network.

Sites and a site's page (queues and their jobs, storage endpoints with
space, recent success rate, network links in and out per window, cloud
memberships past and present), clouds and a cloud's page (members, foreign
calculated members with the measurement that admitted them, candidates
refused with the reason, history, datasets on its disks), datasets and a
dataset's page (replicas, popularity, PD2P decisions and their DDM state),
the network matrix as a heatmap with a colour legend (columns by site,
grouped under their cloud, or one per cloud), and a link's page (its
windows with sample counts, and a plot of every measured kind with units).
"""

from __future__ import annotations

import io
import math
import time
from typing import Annotated, Any

import numpy as np
import pandas as pd
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from matplotlib.figure import Figure

from netbroker.api.monitor import filter_choice
from netbroker.api.pages import render
from netbroker.clouds import membership as clouds
from netbroker.common.errors import InvalidFilter
from netbroker.common.units import iso_utc
from netbroker.network import metrics
from netbroker.network.metrics import KIND_UNITS, MetricKind
from netbroker.placement import catalog
from netbroker.registry import activity as site_activity
from netbroker.registry import registry
from netbroker.web.deps import EngineDep, SettingsDep

__all__ = ["router"]

router = APIRouter(prefix="/monitor", tags=["monitor"], include_in_schema=False)
Page = HTMLResponse
KINDS = ("throughput", "packet_loss", "owd", "rtt", "success")
UNITS = {k: KIND_UNITS[MetricKind(k)] for k in KINDS}
LOWER_IS_BETTER = {"packet_loss", "owd", "rtt"}
Days = Annotated[float, Query(gt=0, le=30, description="History shown, days.")]


def _choice(name: str, value: str, allowed: list[str]) -> str:
    """A filter that must be one of ``allowed`` (an empty one is refused too)."""
    if value not in allowed:
        raise InvalidFilter(name, value, allowed)
    return value


def _cloud_filter(engine: Any, value: str) -> str | None:
    """An optional cloud filter: empty, or a registered cloud (else ``InvalidFilter``)."""
    return filter_choice("cloud", value, [c["name"] for c in registry.list_clouds(engine)])


@router.get("/sites", response_class=Page)
def site_list(request: Request, engine: EngineDep, cloud: str = "") -> HTMLResponse:
    chosen = _cloud_filter(engine, cloud)
    queues: dict[str, list[dict[str, Any]]] = {}
    for q in registry.list_queues(engine, cloud=chosen):
        queues.setdefault(q["site"], []).append(q)
    return render(request, "sites.html", sites=registry.list_sites(engine, cloud=chosen),
                  queues=queues, cloud=cloud,
                  clouds=[c["name"] for c in registry.list_clouds(engine)])


@router.get("/sites/{name}", response_class=Page)
def site_page(request: Request, name: str, engine: EngineDep,
              settings: SettingsDep) -> HTMLResponse:
    return render(request, "site.html", a=site_activity.site_activity(
        engine, name, settings.metrics), windows=site_activity.WINDOWS)


@router.get("/clouds", response_class=Page)
def cloud_list(request: Request, engine: EngineDep) -> HTMLResponse:
    return render(request, "clouds.html", clouds=clouds.show_membership(engine),
                  history=clouds.history(engine, limit=200))


@router.get("/clouds/{name}", response_class=Page)
def cloud_page(request: Request, name: str, engine: EngineDep,
               settings: SettingsDep) -> HTMLResponse:
    detail = clouds.cloud_detail(engine, name, settings.clouds, settings.metrics)
    return render(request, "cloud.html", c=detail, settings=settings.clouds,
                  datasets=catalog.list_datasets(engine, cloud=name, limit=100))


@router.get("/datasets", response_class=Page)
def dataset_list(request: Request, engine: EngineDep, q: str = "",
                 cloud: str = "") -> HTMLResponse:
    rows = catalog.list_datasets(engine, q.strip() or None, _cloud_filter(engine, cloud),
                                 limit=500)
    return render(request, "datasets.html", datasets=rows, q=q, cloud=cloud,
                  clouds=[c["name"] for c in registry.list_clouds(engine)])


@router.get("/datasets/{did}", response_class=Page)
def dataset_page(request: Request, did: str, engine: EngineDep) -> HTMLResponse:
    return render(request, "dataset.html", d=catalog.get_dataset(engine, did))


@router.get("/network", response_class=Page)
def network(request: Request, engine: EngineDep, settings: SettingsDep, cloud: str = "",
            kind: str = "throughput", window: str = "1d",
            columns: str = "sites") -> HTMLResponse:
    """The consolidated matrix from one cloud's sites (rows) to every site measured,
    columns by site under their cloud's name, or one column per cloud (the mean of
    its measured sites), with a colour legend in the kind's unit."""
    kind = _choice("kind", kind, list(KINDS))
    window = _choice("window", window, ["1h", "1d", "1w"])
    columns = _choice("columns", columns, ["sites", "clouds"])
    cloud_names = [c["name"] for c in registry.list_clouds(engine)]
    cloud = _choice("cloud", cloud, cloud_names) if cloud else (
        cloud_names[0] if cloud_names else "")
    matrix = metrics.network_matrix(engine, kind, window, settings=settings.metrics)
    cloud_of = registry.site_clouds(engine)
    rows = [s for s in matrix.index if cloud_of.get(s) == cloud]
    sub = matrix.loc[rows] if rows else matrix.iloc[0:0]
    if len(sub):  # only what was measured: rows and columns with a value
        sub = sub.loc[sub.notna().any(axis=1), sub.notna().any(axis=0)]
    if columns == "clouds" and len(sub):
        sub = sub.T.groupby(sub.columns.map(lambda s: cloud_of.get(s, "?"))).mean().T
    values = sub.to_numpy(dtype=float) if len(sub) else np.zeros((0, 0))
    finite = values[np.isfinite(values)]
    top = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    cells = [[_cell(v, top, kind) for v in row] for row in values]
    col_names = [str(c) for c in sub.columns]
    groups = _groups([cloud_of.get(c, "?") for c in col_names]) if columns == "sites" else []
    return render(request, "network.html", rows=list(sub.index), cols=col_names,
                  cells=cells, cloud=cloud, clouds=cloud_names, kind=kind, window=window,
                  columns=columns, groups=groups, unit=UNITS[kind], high=top,
                  legend=[_cell(top * f, top, kind)["color"] for f in np.linspace(0, 1, 6)],
                  better="lower" if kind in LOWER_IS_BETTER else "higher")


def _groups(labels: list[str]) -> list[tuple[str, int]]:
    """Runs of equal labels: (label, length), for a header row spanning each cloud.

    >>> _groups(["DE", "DE", "FR", "DE"])
    [('DE', 2), ('FR', 1), ('DE', 1)]
    """
    runs: list[tuple[str, int]] = []
    for label in labels:
        if runs and runs[-1][0] == label:
            runs[-1] = (label, runs[-1][1] + 1)
        else:
            runs.append((label, 1))
    return runs


def _cell(value: float, top: float, kind: str) -> dict[str, Any]:
    if not math.isfinite(value):
        return {"text": "", "color": "#e4e4e4"}
    share = min(1.0, value / top) if top > 0 else 0.0
    if kind in LOWER_IS_BETTER:
        share = 1.0 - share
    hue = int(120 * share)  # red (bad) to green (good)
    return {"text": f"{value:.3g}", "color": f"hsl({hue}, 70%, 72%)"}


@router.get("/network/link", response_class=Page)
def link(request: Request, engine: EngineDep, settings: SettingsDep, src: str, dst: str,
         days: Days = 7.0) -> HTMLResponse:
    """A link both of whose ends must be registered sites: its windows per kind (value,
    unit, samples, the source chosen) and its history plot."""
    known = registry.site_clouds(engine)
    windows = [{**w, "unit": UNITS[str(w["kind"])]} for w in metrics.link_windows(
        engine, src, dst, KINDS, settings.metrics)]
    return render(request, "link.html", src=src, dst=dst, days=days, windows=windows,
                  src_cloud=known[src], dst_cloud=known[dst])


@router.get("/network/link.png")
def link_plot(engine: EngineDep, settings: SettingsDep, src: str, dst: str,
              days: Days = 7.0) -> Response:
    """One link's history as a PNG: a panel per measured kind (its unit on the y axis,
    a line per source), the samples of each bucket as bars below, the x axis over the
    span of the data (the title says it, and the range asked)."""
    end = time.time()
    history = {kind: metrics.link_history(engine, src, dst, kind, end - days * 86400, end)
               for kind in KINDS}
    measured = {k: h for k, h in history.items() if len(h)}
    bucket_s = settings.metrics.bucket_minutes * 60
    fig = Figure(figsize=(9, 2.0 * (len(measured) + 1) + 0.4), layout="constrained")
    axes = fig.subplots(len(measured) + 1, 1, sharex=True, squeeze=False)[:, 0]
    for ax, (kind, frame) in zip(axes, measured.items(), strict=False):
        for source, group in frame.groupby("source"):
            ax.plot(_times(group["bucket_start_s"] + bucket_s / 2), group["value"],
                    marker="o", markersize=3, label=str(source))
        ax.set_ylabel(f"{kind.replace('_', ' ')}\n({UNITS[kind]})", fontsize=8)
        ax.legend(fontsize=7, loc="upper left", title="source", title_fontsize=7)
        ax.grid(alpha=0.3)
    ax = axes[-1]
    if measured:
        every = pd.concat([h.assign(kind=k) for k, h in measured.items()])
        series = list(every.groupby(["kind", "source"]))
        width = bucket_s / 86400 / max(len(series), 1)  # days, as dates are plotted
        for n, ((kind, source), group) in enumerate(series):
            ax.bar(_times(group["bucket_start_s"] + (n + 0.5) * bucket_s / len(series)),
                   group["count"], width=width, label=f"{kind} ({source})")
        ax.legend(fontsize=7, loc="upper left")
        first = float(every["bucket_start_s"].min())
        last = float(max(every["last_ts_s"].max(), every["bucket_start_s"].max() + bucket_s))
        pad = max((last - first) * 0.05, 1800.0)
        ax.set_xlim(_times(pd.Series([first - pad]))[0], _times(pd.Series([last + pad]))[0])
        span = f"data from {iso_utc(first)} to {iso_utc(last)}"
    else:
        ax.text(0.5, 0.5, "no measurement", ha="center", va="center", transform=ax.transAxes)
        span = "no data"
    ax.set_ylabel("samples\nper bucket", fontsize=8)
    ax.set_xlabel(f"time (UTC), buckets of {settings.metrics.bucket_minutes} min")
    fig.suptitle(f"{src} -> {dst}: {span} (asked: the last {days:g} days)", fontsize=9)
    for label in ax.get_xticklabels():
        label.set_rotation(20)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return Response(buffer.getvalue(), media_type="image/png")


def _times(epoch_s: pd.Series) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(epoch_s, unit="s", utc=True))

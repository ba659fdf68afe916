"""Commands of the network half: ingest records, read the matrix and link histories."""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from collectors import nws
from collectors.ingest import ingest as ingest_batch
from collectors.pull import pull_all
from netbroker import metrics
from netbroker.cli._app import JsonOpt, app, engine_of, err, out, print_json, settings_of
from netbroker.metrics import (
    KIND_UNITS,
    MATRIX_KINDS,
    MATRIX_UNITS,
    WINDOWS_S,
    MetricKind,
    MetricSource,
)

__all__: list[str] = []

network_app = typer.Typer(no_args_is_help=True,
                          help="Network metrics: links, aggregate, prune, NWS.")
app.add_typer(network_app, name="network")


@app.command()
def ingest(
    ctx: typer.Context,
    source: Annotated[MetricSource, typer.Argument(help="Record format of the input.")],
    file: Annotated[str, typer.Argument(help="File of records, or - for standard input.")],
    as_json: JsonOpt = False,
) -> None:
    """Ingest FTS, perfSONAR, XRootD or NWS records; print what was stored and refused."""
    engine = engine_of(ctx)
    data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    columns = (SpinnerColumn(), TextColumn("{task.description}"),
               TextColumn("{task.completed:,} records and samples"), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True, disable=as_json) as progress:
        task = progress.add_task(f"ingesting {len(data):,} bytes of {source.value}", total=None)
        report = ingest_batch(engine, source, data, settings_of(ctx).metrics,
                              on_progress=lambda n: progress.update(task, completed=n))
    if as_json:
        print_json(report.as_dict())
        return
    out.print(f"{source.value}: {report.samples} samples, {report.stored} stored, "
              f"{report.duplicates} duplicates, {len(report.rejected)} records rejected, "
              f"{report.unmapped_samples} unmapped, {report.too_old} too old")
    for r in report.rejected[:20]:
        out.print(f"  rejected at {r.position}: {r.reason}", highlight=False, markup=False)
    for host, n in report.unmapped.most_common(10):
        out.print(f"  unmapped {host}: {n} samples", highlight=False, markup=False)


@app.command()
def collect(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Pull every configured archive once (the service does this every cycle)."""
    settings = settings_of(ctx)
    results = pull_all(engine_of(ctx), settings.collectors, settings.metrics)
    if as_json:
        print_json([r.as_dict() for r in results])
        return
    if not results:
        out.print("no archive configured: set [collectors] *_urls in the config")
    for r in results:
        if r.report is None:
            out.print(f"{r.source} {r.url}: FAILED {r.error}", highlight=False, markup=False)
        else:
            rep = r.report
            out.print(f"{r.source} {r.url}: {rep.stored} stored, {rep.duplicates} duplicates, "
                      f"{len(rep.rejected)} rejected, {rep.unmapped_samples} unmapped",
                      highlight=False, markup=False)


@app.command()
def matrix(
    ctx: typer.Context,
    kind: Annotated[str, typer.Option(help=", ".join(MATRIX_KINDS))] = "throughput",
    window: Annotated[str, typer.Option(help="1h, 1d or 1w.")] = "1d",
    source: Annotated[str, typer.Option(
        help="consolidated, fts, perfsonar, xrootd or nws.")] = "consolidated",
    format: Annotated[str, typer.Option(help="table, csv, json or parquet.")] = "table",
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Also draw a heatmap PNG here.")] = None,
) -> None:
    """The network matrix of a window: rows source site, columns destination site."""
    if window not in WINDOWS_S:
        raise typer.BadParameter(f"window must be one of {', '.join(WINDOWS_S)}")
    if kind not in MATRIX_KINDS:
        raise typer.BadParameter(f"kind must be one of {', '.join(MATRIX_KINDS)}")
    engine = engine_of(ctx)
    values = metrics.network_matrix(engine, kind, window, source, settings_of(ctx).metrics)
    unit = MATRIX_UNITS[kind]
    if plot is not None:
        from netbroker.heatmap import plot_matrix
        from netbroker.registry import site_clouds

        plot_matrix(values, site_clouds(engine), unit,
                    f"{kind} ({source}, {window})", plot)
    if format == "parquet":
        target = output or Path(f"matrix-{kind}-{window}.parquet")
        values.to_parquet(target)
        out.print(f"wrote {target}")
    elif format in ("csv", "json"):
        text = values.to_csv() if format == "csv" else values.to_json(orient="split")
        _write(text, output)
    elif format == "table":
        out.print(_matrix_table(values, f"{kind} [{unit}], {source}, {window}"))
    else:
        raise typer.BadParameter("format must be table, csv, json or parquet")


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        output.write_text(text)


def _matrix_table(values: object, title: str) -> Table:
    import pandas as pd

    assert isinstance(values, pd.DataFrame)
    links = values.stack().dropna().reset_index(name="value").sort_values(["src", "dst"])
    table = Table(title=f"{title}: {len(links)} links")
    for col in ("src", "dst", "value"):
        table.add_column(col, justify="right" if col == "value" else "left")
    for row in links.itertuples(index=False):
        table.add_row(row.src, row.dst, f"{row.value:.3g}")
    return table


@network_app.command("link")
def link(
    ctx: typer.Context,
    src: str,
    dst: str,
    kind: MetricKind = MetricKind.THROUGHPUT,
    days: float = 7.0,
    as_json: JsonOpt = False,
) -> None:
    """One link's history per time bucket and source."""
    history = metrics.link_history(engine_of(ctx), src, dst, kind, time.time() - days * 86400)
    if as_json:
        print_json(history.to_dict(orient="records"))
        return
    table = Table(title=f"{src} -> {dst} {kind.value} [{KIND_UNITS[kind]}]")
    for col in ("bucket (UTC)", "source", "count", "value"):
        table.add_column(col)
    for row in history.itertuples(index=False):
        stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime(row.bucket_start_s))
        table.add_row(stamp, row.source, str(row.count), f"{row.value:.3g}")
    out.print(table)


@network_app.command("prune")
def prune(ctx: typer.Context) -> None:
    """Delete raw samples older than the raw retention (buckets keep their sums)."""
    settings = settings_of(ctx)
    removed = metrics.prune_samples(engine_of(ctx), settings.metrics)
    out.print(f"pruned {removed} samples older than {settings.metrics.raw_retention_days} days")


@network_app.command("aggregate")
def aggregate(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Copy closed bucket starts into their blocks once (the service does it every bucket)."""
    settings = settings_of(ctx)
    written = metrics.block_closed_buckets(engine_of(ctx), settings.metrics)
    if as_json:
        print_json(written)
        return
    if not written:
        out.print("no bucket start to block: every closed one already is")
    for name, n in sorted(written.items()):
        out.print(f"{name}: {n} bucket starts blocked", highlight=False, markup=False)


@network_app.command("nws")
def export_nws(
    ctx: typer.Context,
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """Export the consolidated matrix as an ATLAS NWS document (keyed SRC:DST)."""
    buffer = io.StringIO()
    json.dump(nws.nws_document(engine_of(ctx), settings_of(ctx).metrics), buffer, indent=1,
              sort_keys=True)
    _write(buffer.getvalue(), output)

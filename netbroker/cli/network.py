"""Commands of the network half: ingest records, read the matrix and link histories."""

from __future__ import annotations

import io
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from collectors import esmond, nws
from collectors.ingest import IngestReport
from collectors.ingest import ingest as ingest_batch
from collectors.pull import pull_all
from netbroker.cli._app import JsonOpt, app, engine_of, err, out, print_json, settings_of
from netbroker.common.errors import NetbrokerError
from netbroker.common.units import iso_utc
from netbroker.network import metrics
from netbroker.network.metrics import (
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


TimeOpt = Annotated[str | None, typer.Option(
    help="ISO-8601 (zone-less is UTC; a date is its midnight) or epoch seconds.")]


@app.command()
def ingest(
    ctx: typer.Context,
    source: Annotated[MetricSource, typer.Argument(help="Record format of the input.")],
    file: Annotated[str, typer.Argument(help="File of records, or - for standard input.")],
    backfill: Annotated[bool, typer.Option(
        help="Keep samples however old. The raw retention prunes their raw rows later "
             "(their buckets stay): ingest the same records again only before that, or "
             "they count twice.")] = False,
    since: TimeOpt = None,
    esmond_metadata: Annotated[Path | None, typer.Option(
        help="perfsonar: the esmond archive's metadata answer FILE's points belong to.")] = None,
    esmond_uri: Annotated[str | None, typer.Option(
        help="perfsonar: the base or summary URI FILE's points were fetched from.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Ingest FTS, perfSONAR, XRootD or NWS records in any published shape; report each record.

    Every record read is stored, a duplicate, unmapped, too old, not a link, or
    rejected (with its position and why); the shapes detected are named. Exits
    1 when no record read is in the database (none stored or stored before).
    """
    engine = engine_of(ctx)
    data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    if (esmond_metadata is None) != (esmond_uri is None) or (
            esmond_uri is not None and source is not MetricSource.PERFSONAR):
        raise typer.BadParameter("--esmond-metadata and --esmond-uri go together, with "
                                 "perfsonar")
    if esmond_metadata is not None and esmond_uri is not None:
        try:
            data = esmond.pair_bundle(esmond_metadata.read_bytes(), esmond_uri, data)
        except ValueError as exc:
            raise NetbrokerError(f"{file}: {exc}") from None
    since_s = _time_s(since, "--since")
    columns = (SpinnerColumn(), TextColumn("{task.description}"),
               TextColumn("{task.completed:,} records and samples"), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True, disable=as_json) as progress:
        task = progress.add_task(f"ingesting {len(data):,} bytes of {source.value}", total=None)
        report = ingest_batch(engine, source, data, settings_of(ctx).metrics,
                              on_progress=lambda n: progress.update(task, completed=n),
                              since_s=since_s, backfill=backfill)
    if as_json:
        print_json(report.as_dict())
    else:
        _print_report(report)
    if not report.usable:
        err.print(f"error: nothing usable read from {file}: {_why_unusable(report)}",
                  highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(1)


def _print_report(report: IngestReport) -> None:
    r = report.records
    shapes = ", ".join(f"{shape} {n}" for shape, n in report.shapes.most_common(5)) or "none"
    layout = ", ".join(f"{name} {n}" for name, n in report.layouts.most_common()) or "empty"
    out.print(f"{report.source}: {r.read} records read ({shapes}; layout: {layout}): "
              f"{r.stored} stored, {r.duplicate} duplicates, {r.unmapped} unmapped, "
              f"{r.too_old} too old, {r.not_a_link} not a link, {r.rejected} rejected",
              highlight=False, markup=False)
    out.print(f"{report.source}: {report.samples} samples, {report.stored} stored, "
              f"{report.duplicates} duplicates, {len(report.rejected)} records rejected, "
              f"{report.unmapped_samples} unmapped, {report.too_old} too old",
              highlight=False, markup=False)
    for what, n in report.not_a_link.most_common(10):
        out.print(f"  not a link: {what}: {n}", highlight=False, markup=False)
    for rejected in report.rejected[:20]:
        out.print(f"  rejected at {rejected.position}: {rejected.reason}", highlight=False,
                  markup=False)
    for host, n in report.unmapped.most_common(10):
        out.print(f"  unmapped {host}: {n} samples", highlight=False, markup=False)


def _why_unusable(report: IngestReport) -> str:
    r = report.records
    if not r.read:
        return "no record in it"
    if r.too_old and report.kept_from_s is not None:
        kept = iso_utc(report.kept_from_s)
        return (f"{r.too_old} records older than {kept} (--backfill or --since keeps them), "
                f"{r.read - r.too_old} others not stored")
    return (f"of {r.read} records, {r.unmapped} unmapped, {r.not_a_link} not a link, "
            f"{r.rejected} rejected")


def _time_s(text: str | None, option: str) -> float | None:
    """An option's time as epoch seconds: ISO-8601 (zone-less = UTC) or epoch s (or ms)."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        try:
            when = datetime.fromisoformat(text.strip())
        except ValueError:
            raise typer.BadParameter(f"{option} {text!r} is not an ISO-8601 time or epoch "
                                     "seconds") from None
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    return value / 1000.0 if value > 1e11 else value


@app.command()
def collect(ctx: typer.Context,
            what: Annotated[str, typer.Argument(
                help="archives: pull every configured archive once; stomp: take FTS "
                     "messages from the broker until stopped.")] = "archives",
            since: TimeOpt = None,
            broker: Annotated[list[str] | None, typer.Option(
                help="host:port of a STOMP broker (repeat; default collectors.stomp_brokers)."
            )] = None,
            until_idle: Annotated[float | None, typer.Option(
                help="stomp: stop after this many seconds without a message.")] = None,
            as_json: JsonOpt = False) -> None:
    """Pull every configured archive once (the service does this every cycle), or
    take FTS's messages from its broker (``collect stomp``).

    esmond and pScheduler archives are read from where the last pull stopped;
    ``--since`` reads them from that time instead, keeping old samples (a backfill).
    """
    settings = settings_of(ctx)
    if what == "stomp":
        _collect_stomp(ctx, broker or settings.collectors.stomp_brokers, until_idle, as_json)
        return
    if what != "archives":
        fail(f"collect takes archives or stomp, not {what!r}")
    results = pull_all(engine_of(ctx), settings.collectors, settings.metrics,
                       since_s=_time_s(since, "--since"))
    if as_json:
        print_json([r.as_dict() for r in results])
        return
    if not results:
        out.print("no archive configured: set [collectors] *_urls in the config")
    for r in results:
        if r.report is None:
            out.print(f"{r.source} {r.url}: FAILED {r.error}", highlight=False, markup=False)
            continue
        rec = r.report.records
        out.print(f"{r.source} {r.url}: {rec.read} records: {rec.stored} stored, "
                  f"{rec.duplicate} duplicates, {rec.unmapped} unmapped, {rec.too_old} too "
                  f"old, {rec.not_a_link} not a link, {rec.rejected} rejected "
                  f"({r.requests} requests)", highlight=False, markup=False)
        for problem in r.errors[:10]:
            out.print(f"  not read: {problem}", highlight=False, markup=False)


@app.command()
def matrix(
    ctx: typer.Context,
    kind: Annotated[str, typer.Option(help=", ".join(MATRIX_KINDS))] = "throughput",
    window: Annotated[str, typer.Option(help="1h, 1d or 1w.")] = "1d",
    source: Annotated[str, typer.Option(
        help="consolidated, fts, perfsonar, xrootd or nws.")] = "consolidated",
    at: Annotated[str | None, typer.Option(
        help="The window ending at this time (ISO-8601, zone-less UTC, or epoch s); "
             "default now.")] = None,
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
    at_s = _time_s(at, "--at")
    values = metrics.network_matrix(engine, kind, window, source, settings_of(ctx).metrics,
                                    now_s=at_s)
    unit = MATRIX_UNITS[kind]
    when = "" if at_s is None else f" to {iso_utc(at_s)}"
    if plot is not None:
        from netbroker.plots.heatmap import plot_matrix
        from netbroker.registry.registry import site_clouds

        plot_matrix(values, site_clouds(engine), unit,
                    f"{kind} ({source}, {window}{when})", plot)
    if format == "parquet":
        target = output or Path(f"matrix-{kind}-{window}.parquet")
        values.to_parquet(target)
        out.print(f"wrote {target}")
    elif format in ("csv", "json"):
        text = values.to_csv() if format == "csv" else values.to_json(orient="split")
        _write(text, output)
    elif format == "table":
        out.print(_matrix_table(values, f"{kind} [{unit}], {source}, {window}{when}"))
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
        stamp = iso_utc(row.bucket_start_s)
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


def _collect_stomp(ctx: typer.Context, brokers: list[str], until_idle: float | None,
                   as_json: bool) -> None:
    from collectors.stomp import collect_stomp

    settings = settings_of(ctx)
    c = settings.collectors
    if not brokers:
        fail("no broker: give --broker host:port or set collectors.stomp_brokers")
    pairs = []
    for b in brokers:
        host, _, port = b.rpartition(":")
        if not host or not port.isdigit():
            fail(f"--broker {b!r} is not host:port")
        pairs.append((host, int(port)))

    def progress(report: Any) -> None:
        if not as_json:
            err.print(f"{report.messages} messages, {report.records.stored} records stored, "
                      f"{report.records.duplicate} duplicates, {len(report.malformed)} "
                      "malformed", highlight=False)

    try:
        report = collect_stomp(engine_of(ctx), pairs, c.stomp_destination,
                               c.stomp_subscription, c.stomp_user, c.stomp_password,
                               c.stomp_batch_messages, c.stomp_batch_wait_s, until_idle,
                               settings.metrics, on_batch=progress)
    except KeyboardInterrupt:
        return
    if as_json:
        print_json(report.as_dict())
    else:
        out.print(f"stomp: {report.messages} messages in {report.batches} batches: "
                  f"{report.records.stored} stored, {report.records.duplicate} duplicates, "
                  f"{report.records.rejected} rejected, {len(report.malformed)} malformed",
                  highlight=False)


def fail(message: str) -> NoReturn:
    """One line on stderr, exit 2 (a usage error)."""
    err.print(f"error: {message}", highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(2)

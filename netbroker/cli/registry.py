"""Commands of the registry and the service: db, grid, config, serve, demo."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from netbroker.cli._app import (
    JsonOpt,
    app,
    config_app,
    db_app,
    engine_of,
    err,
    grid_app,
    out,
    print_json,
    print_rows,
    settings_of,
)
from netbroker.common.config import describe_settings, load_settings
from netbroker.common.units import iso_utc
from netbroker.db import (
    create_db_engine,
    current_revision,
    describe_url,
    head_revision,
    schema_drift,
    upgrade,
)
from netbroker.demo.report import fact_rows
from netbroker.registry import registry

__all__ = ["site_table", "summary_table"]


# -- db ------------------------------------------------------------------------

@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Bring the database to the newest schema (creates it when empty)."""
    settings = settings_of(ctx)
    result = upgrade(create_db_engine(settings.database))
    where = describe_url(settings.database.url)
    if result.changed:
        out.print(f"upgraded {where} from {result.before or 'empty'} to {result.after}")
    else:
        out.print(f"{where} already at head ({result.after})")


@db_app.command("current")
def db_current(ctx: typer.Context) -> None:
    """Print the schema revision of the database and the newest one shipped."""
    engine = engine_of(ctx, require_head=False)
    out.print(f"current: {current_revision(engine) or 'empty'}  head: {head_revision()}")


@db_app.command("check")
def db_check(ctx: typer.Context) -> None:
    """Compare the database with the schema the code declares; exit 1 on drift."""
    diffs = schema_drift(engine_of(ctx))
    if diffs:
        for d in diffs:
            err.print(f"drift: {d}")
        raise typer.Exit(1)
    out.print("no drift: the database matches netbroker.db.schema")


# -- grid ----------------------------------------------------------------------

@grid_app.command("import")
def grid_import(
    ctx: typer.Context,
    files: Annotated[list[str] | None, typer.Argument(
        help="Grid documents: CRIC-shaped JSON with sections, or CRIC's bare pandaqueue, "
             "ddmendpoint, site and netsite/netroute dumps, in any order; - for standard "
             "input.")] = None,
    sample: Annotated[bool, typer.Option("--sample", help="Import the shipped sample grid.")]
    = False,
    as_json: JsonOpt = False,
) -> None:
    """Import clouds, sites, queues, endpoints, networks and datasets, all or nothing."""
    engine = engine_of(ctx)
    if sample == bool(files):
        raise typer.BadParameter("give either FILE... or --sample")
    if sample:
        report = registry.import_grid_file(engine, registry.sample_grid_path())
    elif files == ["-"]:
        report = registry.import_grid_document(engine, sys.stdin.buffer.read(), "<stdin>")
    elif "-" in (files or []):
        raise typer.BadParameter("- (standard input) must be the only FILE")
    else:
        report = registry.import_grid_files(engine, [Path(f) for f in files or []])
    if as_json:
        print_json(report.as_dict())
        return
    for source, shape in report.shapes.items():
        out.print(f"read {source} as {shape}")
    table = Table(title=f"imported {report.source}")
    for col in ("records", "inserted", "updated", "unchanged", "deleted"):
        table.add_column(col, justify="left" if col == "records" else "right")
    for kind, c in report.counts.items():
        table.add_row(kind, str(c.inserted), str(c.updated), str(c.unchanged), str(c.deleted))
    out.print(table)
    for line in report.unmapped:
        out.print(f"not stored: {line}")


@grid_app.command("show")
def grid_show(
    ctx: typer.Context,
    cloud: Annotated[str | None, typer.Option(help="List the sites of this cloud.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Summarise the registry per cloud, or list one cloud's sites and queues."""
    engine = engine_of(ctx)
    if cloud is not None:
        rows = registry.list_sites(engine, cloud=cloud)
        queues = registry.list_queues(engine, cloud=cloud)
        if as_json:
            print_json({"sites": rows, "queues": queues})
            return
        out.print(site_table(rows, queues, title=f"cloud {cloud}"))
        return
    summary = registry.grid_summary(engine)
    if as_json:
        print_json(summary)
        return
    out.print(summary_table(summary["clouds"]))
    out.print(", ".join(f"{n} {t}" for t, n in summary["counts"].items()))


def summary_table(clouds: list[dict[str, Any]], title: str = "grid registry") -> Table:
    """One row per cloud: Tier-1, sites per tier, queues, pilot slots, disk total and free."""
    table = Table(title=title)
    table.add_column("cloud", no_wrap=True)
    table.add_column("tier-1", no_wrap=True)
    for col in ("T0/1", "T2", "T3", "queues", "slots", "disk", "free"):
        table.add_column(col, justify="right", no_wrap=True)
    for c in clouds:
        tiers = c["tiers"]
        table.add_row(c["name"], c["tier1"] or "-", str(tiers.get(0, 0) + tiers.get(1, 0)),
                      str(tiers.get(2, 0)), str(tiers.get(3, 0)),
                      str(c["queues"]), f"{c['pilot_slots']:,}",
                      _bytes(c["disk_total_bytes"]), _bytes(c["disk_free_bytes"]))
    return table


def site_table(sites: list[dict[str, Any]], queues: list[dict[str, Any]], title: str) -> Table:
    per_site: dict[str, list[str]] = {}
    for q in queues:
        per_site.setdefault(q["site"], []).append(q["name"])
    table = Table(title=title)
    for col in ("site", "tier", "country", "status", "nucleus", "queues"):
        table.add_column(col)
    for s in sites:
        table.add_row(s["name"], str(s["tier"]), s["country"], s["status"],
                      "yes" if s["is_nucleus"] else "", ", ".join(per_site.get(s["name"], [])))
    return table


def _bytes(n: int) -> str:
    """Human-readable decimal bytes: ``1.2 PB``."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if size < 1000 or unit == "PB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1000
    raise AssertionError("unreachable")


# -- config --------------------------------------------------------------------

@config_app.command("show")
def config_show(
    ctx: typer.Context,
    defaults: Annotated[bool, typer.Option("--defaults", help="Document every setting.")]
    = False,
    as_json: JsonOpt = False,
) -> None:
    """Print the settings in force (or every setting's default and meaning)."""
    if defaults:
        print_rows(describe_settings(),
                   lambda r: (r["key"], r["default"], r["type"], r["description"]),
                   "netbroker settings", ("key", "default", "type", "description"),
                   as_json=as_json)
        return
    data = settings_of(ctx).model_dump(mode="json")
    data["database"]["url"] = describe_url(data["database"]["url"])
    print_json(data)


@config_app.command("check")
def config_check(
    file: Annotated[Path, typer.Argument(help="TOML settings file to check.")],
) -> None:
    """Validate a settings file (with the environment applied) and report."""
    load_settings(file)
    out.print(f"{file}: valid")


# -- serve and demo ------------------------------------------------------------

@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 25080).")] = None,
    workers: Annotated[int | None, typer.Option(help="uvicorn worker processes.")] = None,
) -> None:
    """Run the HTTP service (JSON API, health) under uvicorn."""
    from netbroker.service.serve import run_service

    run_service(settings_of(ctx, **{"service.host": host, "service.port": port,
                                  "service.workers": workers}),
                config_path=ctx.find_root().obj["config"])


@app.command()
def demo(
    db: Annotated[Path, typer.Option(help="SQLite file to (re)create for the demo.")]
    = Path("netbroker-demo.db"),
    pilots: Annotated[int, typer.Option(help="Pilots alive at once, per factory.")] = 6,
    as_json: JsonOpt = False,
) -> None:
    """The whole mission end to end: grid, service, measurements, clouds, tasks, PD2P,
    pilots, a degraded link, and a report (terminal and HTML)."""
    from netbroker.demo import run_demo

    result = run_demo(db, err if as_json else out, max_pilots=pilots)
    if as_json:
        print_json({"facts": result.facts, "report": str(result.report_path),
                    "notes": result.notes, "plan": {k: v for k, v in result.plan.items()
                                                    if k in ("big", "big_t1", "foreign",
                                                             "lossy", "degrading",
                                                             "hot_site")}})
        return
    for note in result.notes:
        out.print(f"  {note}", highlight=False)
    f = result.facts
    table = Table(title="what the demo shows")
    table.add_column("fact")
    table.add_column("count", justify="right")
    for label, value in fact_rows(f):
        table.add_row(label, value)
    out.print(table)
    out.print(f"report: {result.report_path}")
    out.print(f"explore: NETBROKER_DATABASE_URL=sqlite:///{result.db_path} netbroker serve"
              "   (then http://127.0.0.1:25080/api/v1/tasks)")


@app.command()
def cycles(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The periodic cycles: who holds each, their last success and last failure, health."""
    from netbroker.common.enums import utcnow
    from netbroker.db.cycles import CycleDB, cycle_health

    with engine_of(ctx).connect() as conn:
        rows = CycleDB(conn).list_cycles()
    now = utcnow()
    for r in rows:
        r["health"] = cycle_health(r, now)
    if as_json:
        print_json(rows)
        return
    table = Table(title="cycles")
    for col in ("cycle", "health", "holder", "every (s)", "last success", "last failure",
                "runs", "failures", "took (s)", "failure"):
        table.add_column(col)
    for r in rows:
        took = f"{r['last_duration_s']:.2f}" if r["last_duration_s"] is not None else "-"
        every = f"{r['period_s']:g}" if r["period_s"] else "-"
        table.add_row(r["name"], r["health"], r["holder"] or "-", every,
                      _when(r["last_succeeded_at"]), _when(r["last_failed_at"]),
                      str(r["runs"]), str(r["failures"]), took, (r["last_failure"] or "")[:60])
    out.print(table)


def _when(at: Any) -> str:
    return iso_utc(at)


@config_app.command("set")
def config_set(ctx: typer.Context,
               changes: Annotated[list[str], typer.Argument(help="KEY=VALUE, e.g. "
                                                            "clouds.min_mbytes_per_s_from_tier1=3")],
               who: Annotated[str, typer.Option(help="Recorded in the audit log.")] = "cli",
               preview_only: Annotated[bool, typer.Option(
                   "--preview", help="Show the effect, change nothing.")] = False,
               as_json: JsonOpt = False) -> None:
    """Change tunable settings at runtime (validated, audited), or preview the change."""
    from netbroker.workload import runtime_config

    parsed: dict[str, Any] = {}
    for item in changes:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE")
        try:
            parsed[key] = json.loads(value)
        except json.JSONDecodeError:
            parsed[key] = value  # a bare string; validation says if it is wrong
    engine, base = engine_of(ctx), settings_of(ctx)
    if preview_only:
        result = runtime_config.preview(engine, base, parsed)
        if as_json:
            print_json(result)
            return
        for c in result["clouds"]:
            out.print(f"  {c['site']} would {c['change'].removesuffix('ed')} {c['cloud']}: "
                      f"{c['reason']}", highlight=False)
        brokered = result["brokerage"]
        for m in brokered["would_change"]:
            out.print(f"  task {m['task_id']} {escape(m['name'])}: {m['now'] or '-'} -> "
                      f"{m['after'] or '-'}", highlight=False)
        states = ", ".join(f"{n} {s}" for s, n in sorted(brokered["by_status"].items()))
        out.print(f"{len(result['clouds'])} membership changes; "
                  f"{len(brokered['would_change'])} of {brokered['tasks_checked']} recent "
                  f"tasks brokered again would go to another cloud"
                  + (f" ({states})" if states else ""))
        return
    rows = runtime_config.change_settings(engine, base, parsed, who)
    if as_json:
        print_json(rows)
        return
    for r in rows:
        out.print(f"{r['key']}: {r['old']!r} -> {r['new']!r}")


@config_app.command("audit")
def config_audit(ctx: typer.Context, limit: int = 50, as_json: JsonOpt = False) -> None:
    """Runtime setting changes, newest first: when, who, old -> new."""
    from netbroker.workload import runtime_config

    rows = runtime_config.audit_log(engine_of(ctx), limit)
    if as_json:
        print_json(rows)
        return
    table = Table(title="settings changed at runtime")
    for col in ("when (UTC)", "who", "key", "old", "new"):
        table.add_column(col)
    for r in rows:
        table.add_row(iso_utc(r["at"]), r["who"], r["key"], repr(r["old"]),
                      repr(r["new"]))
    out.print(table)


@app.command()
def doctor(ctx: typer.Context,
           stale_hours: Annotated[float, typer.Option(
               help="A metric source is stale past this age of its newest sample, hours.")] = 6,
           pilot_hours: Annotated[float, typer.Option(
               help="Pilots are missing past this long without a word, hours.")] = 24,
           as_json: JsonOpt = False) -> None:
    """Check an installation: database at head, registry, cycles, metrics, pilots, tokens.

    Exits 1 when a check fails (warnings do not).
    """
    from netbroker.ops.doctor import checkup

    checks = checkup(engine_of(ctx), settings_of(ctx), stale_hours, pilot_hours)
    if as_json:
        print_json([c.__dict__ for c in checks])
    else:
        table = Table(title="netbroker doctor")
        for col in ("check", "status", "detail"):
            table.add_column(col)
        colour = {"ok": "green", "warn": "yellow", "fail": "red"}
        for c in checks:
            table.add_row(c.name, f"[{colour[c.status]}]{c.status}[/]", escape(c.detail))
        out.print(table)
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(1)

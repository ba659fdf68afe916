"""Commands of dynamic cloud membership: show, recompute, history, preview, mesh."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from netbroker.cli._app import JsonOpt, app, engine_of, out, print_json, print_rows, settings_of
from netbroker.clouds import membership
from netbroker.clouds.membership import MembershipChange
from netbroker.common.config import load_settings
from netbroker.common.units import iso_utc

__all__: list[str] = []

clouds_app = typer.Typer(no_args_is_help=True, help="Dynamic cloud membership.")
app.add_typer(clouds_app, name="clouds")


def _show_changes(changes: list[MembershipChange], title: str, as_json: bool) -> None:
    if as_json:
        print_json([vars(c) for c in changes])
    else:
        out.print(_changes_table(changes, title))


def _changes_table(changes: list[MembershipChange], title: str) -> Table:
    table = Table(title=f"{title}: {len(changes)} change(s)")
    for col in ("cloud", "site", "change", "MB/s", "loss", "samples", "reason"):
        table.add_column(col)
    for c in changes:
        table.add_row(c.cloud, c.site, c.change,
                      "-" if c.mbytes_per_s is None else f"{c.mbytes_per_s:.3g}",
                      "-" if c.packet_loss_fraction is None else f"{c.packet_loss_fraction:.3g}",
                      str(c.samples), c.reason)
    return table


@clouds_app.command("show")
def show(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Every cloud: its Tier-1, registered sites and foreign calculated members."""
    rows = membership.show_membership(engine_of(ctx))
    print_rows(rows, lambda r: (r["cloud"], r["tier1"] or "-", str(len(r["static"])),
                                ", ".join(m["site"] for m in r["foreign"]) or "-"),
               "clouds", ("cloud", "tier-1", "static", "foreign calculated members"),
               as_json=as_json)


@clouds_app.command("recompute")
def recompute(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Recompute the memberships now (the service does it every recompute_minutes)."""
    settings = settings_of(ctx)
    changes = membership.recompute(engine_of(ctx), settings.clouds, settings.metrics)
    _show_changes(changes, "recomputed", as_json)


@clouds_app.command("preview")
def preview(
    ctx: typer.Context,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="KEY=VALUE, e.g. clouds.min_mbytes_per_s_from_tier1=3")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The joins and leaves a change of thresholds would cause now; nothing is stored."""
    overrides = {}
    for item in set_ or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE")
        overrides[key if "." in key else f"clouds.{key}"] = value
    settings = load_settings(ctx.find_root().obj["config"], overrides=overrides)
    changes = membership.preview(engine_of(ctx), settings.clouds, settings.metrics)
    _show_changes(changes, "preview (not applied)", as_json)


@clouds_app.command("history")
def history(
    ctx: typer.Context,
    cloud: str | None = None,
    site: str | None = None,
    limit: int = 50,
    as_json: JsonOpt = False,
) -> None:
    """Joins and leaves, newest first, with the measurements that decided them."""
    rows = membership.history(engine_of(ctx), cloud, site, limit)
    print_rows(rows, lambda r: (
        iso_utc(r["at"]), r["cloud"], r["site"], r["change"],
        "-" if r["mbytes_per_s"] is None else f"{r['mbytes_per_s']:.3g}", str(r["samples"]),
        r["reason"]), "cloud membership history",
        ("when (UTC)", "cloud", "site", "change", "MB/s", "samples", "reason"), as_json=as_json)


@clouds_app.command("mesh")
def mesh(
    ctx: typer.Context,
    nucleus: Annotated[str | None, typer.Option(help="Only this nucleus.")] = None,
    top: int = 10,
    as_json: JsonOpt = False,
) -> None:
    """Full-mesh mode: for each nucleus, the sites closest by network, no cloud boundary."""
    settings = settings_of(ctx)
    rows = [r for r in membership.mesh_ranking(engine_of(ctx), settings.clouds,
                                               settings.metrics, nucleus) if r["rank"] <= top]
    print_rows(rows, lambda r: (r["nucleus"], str(r["rank"]), r["site"], r["cloud"],
                                f"{r['mbytes_per_s']:.3g}", str(r["closeness"]),
                                str(r["samples"])),
               f"closest sites per nucleus (top {top})",
               ("nucleus", "rank", "site", "cloud", "MB/s", "closeness", "samples"),
               as_json=as_json)

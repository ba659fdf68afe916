"""``netbroker simulate``: the same workload under each brokerage policy, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from netbroker.cli._app import JsonOpt, app, err, out, print_json
from netbroker.sim import POLICIES, compare, load_scenario, reference_scenario, with_jobs
from netbroker.sim.scenario import busy_scenario

__all__: list[str] = []

ROWS = (("jobs", "jobs finished", "{:d}"), ("makespan_h", "makespan (h)", "{:.1f}"),
        ("wait_mean_h", "wait, mean (h)", "{:.2f}"), ("wait_p95_h", "wait, p95 (h)", "{:.2f}"),
        ("turnaround_mean_h", "turnaround, mean (h)", "{:.2f}"),
        ("turnaround_p95_h", "turnaround, p95 (h)", "{:.2f}"),
        ("busy_percent", "slots busy (%)", "{:.1f}"),
        ("held_percent", "slots held (%)", "{:.1f}"),
        ("hours_held_80_percent", "hours with >= 80% held (%)", "{:.1f}"),
        ("held_arrivals_percent", "slots held while tasks arrive (%)", "{:.1f}"),
        ("cpu_tier1_percent", "CPU used, Tier-1 (%)", "{:.1f}"),
        ("cpu_tier2_percent", "CPU used, Tier-2 (%)", "{:.1f}"),
        ("cpu_tier3_percent", "CPU used, Tier-3 (%)", "{:.1f}"),
        ("tb_across_clouds", "TB moved across clouds", "{:.1f}"),
        ("waited_for_data", "jobs that waited for data", "{:d}"),
        ("transfer_wait_mean_h", "their transfer, mean (h)", "{:.2f}"),
        ("jobs_outside_home_cloud", "jobs outside the task's cloud", "{:d}"),
        ("rebrokered", "jobs rebrokered", "{:d}"),
        ("pd2p_replicas", "PD2P replicas", "{:d}"),
        ("tb_pd2p", "TB copied by PD2P", "{:.1f}"),
        ("failed_attempts", "failed attempts", "{:d}"),
        ("jobs_failed", "jobs failed for good", "{:d}"),
        ("wall_s", "simulation took (s)", "{:.1f}"))


@app.command("simulate")
def simulate(
    scenario: Annotated[list[Path] | None, typer.Option(
        help="Scenario TOML; repeat for several (default: the shipped reference and busy "
             "scenarios).")] = None,
    policy: Annotated[list[str] | None, typer.Option(
        help="static, dynamic or full_mesh; repeat for several (default: all three).")] = None,
    jobs: Annotated[int | None, typer.Option(help="Override the scenarios' job count.")]
    = None,
    workers: Annotated[int | None, typer.Option(
        help="Processes running the policies side by side (default: one per policy, at "
             "most one per CPU; 1: one after the other).", min=1)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Simulate scenarios' workloads under each brokerage policy and compare them."""
    chosen = tuple(policy or POLICIES)
    unknown = [p for p in chosen if p not in POLICIES]
    if unknown:
        raise typer.BadParameter(f"unknown policy {unknown}; expected {list(POLICIES)}")
    specs = [with_jobs(load_scenario(path), jobs)
             for path in (scenario or [reference_scenario(), busy_scenario()])]
    tables = []
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  TimeElapsedColumn(), console=err, transient=True) as progress:
        step = progress.add_task("simulating", total=len(chosen) * len(specs))
        for spec in specs:
            progress.update(step, description=f"simulating {spec.name}: "
                            + ", ".join(chosen))
            results = compare(spec, chosen, workers=workers,
                              done=lambda _: progress.advance(step))
            tables.append((spec, results))
    if as_json:
        print_json([{"scenario": spec.name, **r.row()} for spec, results in tables
                    for r in results])
        return
    for spec, results in tables:
        table = Table(title=f"scenario {spec.name}: {results[0].jobs} jobs")
        table.add_column("")
        for r in results:
            table.add_column(r.policy, justify="right")
        rows = [r.row() for r in results]
        for key, label, fmt in ROWS:
            table.add_row(label, *(fmt.format(row[key]) if key in row else "-" for row in rows))
        out.print(table)

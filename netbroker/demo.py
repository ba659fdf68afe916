"""``netbroker demo``: the first thing a new user runs.

For now it builds a fresh SQLite registry from the shipped sample grid (the
CLI prints what is in it); later issues grow it into the end-to-end demo (the
service, collectors, brokerage, pilots and a report).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from netbroker import registry
from netbroker.config import DatabaseSettings
from netbroker.db import create_db_engine, upgrade
from netbroker.registry import ImportReport

__all__ = ["run_demo"]


def run_demo(db_path: Path, console: Console) -> tuple[ImportReport, dict[str, Any]]:
    """Recreate the SQLite file ``db_path`` and import the sample grid into it.

    Shows progress on ``console``; returns the import report and the
    registry summary (:func:`netbroker.registry.grid_summary`).
    """
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{db_path}"
    engine = create_db_engine(DatabaseSettings(url=url))
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        step = progress.add_task("creating the schema", total=2)
        upgrade(engine)
        progress.update(step, advance=1, description="importing the sample grid")
        report = registry.import_grid_file(engine, registry.sample_grid_path())
        progress.update(step, advance=1)
    summary = registry.grid_summary(engine)
    engine.dispose()
    return report, summary

"""What every benchmark shares: a throwaway database with the sample grid, the JSON line."""

from __future__ import annotations

import atexit
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import Engine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netbroker.db import create_db_engine, upgrade  # noqa: E402
from netbroker.registry import registry  # noqa: E402


def scratch_path(name: str) -> Path:
    """A path ``name`` in a fresh folder that is removed when the benchmark exits."""
    folder = tempfile.mkdtemp(prefix="netbroker-bench-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # a million records: GBs
    return Path(folder) / name


def sqlite_grid() -> Engine:
    """A fresh SQLite file at head holding the sample grid."""
    engine = create_db_engine(f"sqlite:///{scratch_path('bench.db')}")
    upgrade(engine)
    registry.import_grid_file(engine, registry.sample_grid_path())
    return engine


def best_of(n: int, run: Callable[[], object]) -> float:
    """The shortest of ``n`` timed runs, in seconds (the least disturbed by the machine)."""
    times = []
    for _ in range(n):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def best_of_pair(n: int, run: Callable[[], object], baseline: Callable[[], object]
                 ) -> tuple[float, float]:
    """The shortest of ``n`` timed runs of each of ``run`` and ``baseline``, taken in turn.

    Alternating them exposes both to the same spells of a shared host's
    slowness, which drift over seconds; timing all of one and then all of
    the other lets a slow spell land on one side only and skew the ratio.
    """
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(n):
        for call, taken in ((run, times[0]), (baseline, times[1])):
            started = time.perf_counter()
            call()
            taken.append(time.perf_counter() - started)
    return min(times[0]), min(times[1])


def emit(bench: str, value: float, unit: str, baseline: float, goal: str) -> None:
    """Print the benchmark's line: value, its in-run baseline, their ratio, the goal."""
    print(json.dumps({"bench": bench, "value": round(value, 3), "unit": unit,
                      "baseline": round(baseline, 3), "ratio": round(value / baseline, 3),
                      "goal": goal}), flush=True)

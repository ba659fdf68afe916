"""The distribution: a wheel holds every package, the migrations and the sample grid,
and netbroker runs from it with no source tree around."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import netbroker
from netbroker.db import create_db_engine, current_revision, head_revision

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    # Build from a copy of the work tree so the checkout gets no build/ or egg-info litter.
    src = build / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "*.egg-info", "__pycache__", "*.db*", ".*_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "-w", str(out), str(src)], check=True, timeout=300)
    (found,) = out.glob("netbroker-*.whl")
    return found


@pytest.mark.slow
def test_wheel_holds_packages_migrations_data_and_scripts(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in ("netbroker/cli/__init__.py", "netbroker/db/schema.py", "collectors/__init__.py",
                 "dispatcher/__init__.py", "pilot/main.py", "sql/env.py",
                 "sql/script.py.mako", "sql/versions/0001_grid_registry.py",
                 "sql/versions/0002_network_metrics_and_cycles.py", "collectors/fts.py",
                 "sql/versions/0004_jobs_and_event_ranges.py", "dispatcher/core.py",
                 "netbroker/data/sample_grid.json"):
        assert path in names, f"{path} missing from {wheel.name}"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "netbroker = netbroker.cli:main" in text
    assert "netbroker-pilot = pilot.main:run" in text


@pytest.mark.slow
def test_installed_wheel_upgrades_an_empty_database(wheel: Path, empty_db_url: str,
                                                     tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(target), str(wheel)], check=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(target), "NETBROKER_DATABASE_URL": empty_db_url}
    # From an empty directory, so only the installed copy can be imported.
    where = subprocess.run([sys.executable, "-c", "import netbroker, sql; "
                            "print(netbroker.__file__); print(sql.__file__)"],
                           env=env, cwd=tmp_path, capture_output=True, text=True, check=True)
    assert all(line.startswith(str(target)) for line in where.stdout.split())
    assert not where.stdout.startswith(str(Path(netbroker.__file__).parent))
    result = subprocess.run([sys.executable, "-m", "netbroker", "db", "upgrade"], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    engine = create_db_engine(empty_db_url)
    assert current_revision(engine) == head_revision()
    engine.dispose()

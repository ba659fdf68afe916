"""netbroker-pilot's node check, run as the pilot would run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def pilot(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pilot.main", *args], capture_output=True,
                          text=True, timeout=60, check=False)


def test_node_check_reports_the_node(tmp_path: Path) -> None:
    result = pilot("check", "--workdir", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["node"]["cores"] >= 1
    assert report["node"]["workdir_free_mb"] > 0


def test_node_short_of_disk_refuses_with_the_reason(tmp_path: Path) -> None:
    result = pilot("check", "--workdir", str(tmp_path), "--min-disk-mb", str(10**12))
    assert result.returncode == 1
    assert "node NOT ok" in result.stdout and "the job needs 1000000000000 MB" in result.stdout


def test_pilot_imports_nothing_of_netbroker() -> None:
    code = ("import sys, pilot.main; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('netbroker', 'collectors', 'dispatcher', 'sql')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"

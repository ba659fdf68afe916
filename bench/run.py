"""Run every benchmark in bench/ and print one table of their JSON lines.

Each ``bench/*.py`` (not this file, not ``_*.py``) ends by printing one JSON object per measure:
``{"bench", "value", "unit", "baseline", "ratio", "goal"}``. No benchmark
is a pass/fail test; this only collects and shows them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table


def main() -> int:
    here = Path(__file__).parent
    scripts = sorted(p for p in here.glob("*.py") if p.name != "run.py" and p.name[0] != "_")
    console = Console()
    if not scripts:
        console.print("no benchmarks yet")
        return 0
    table = Table(title="netbroker benchmarks")
    for col in ("benchmark", "value", "unit", "baseline", "ratio", "goal"):
        table.add_column(col)
    for script in scripts:
        run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                             check=False)
        lines = [ln for ln in run.stdout.splitlines() if ln.startswith("{")]
        if run.returncode != 0 or not lines:
            table.add_row(script.stem, "failed", "", "", "", run.stderr.strip()[-200:])
            continue
        for line in lines:
            m = json.loads(line)
            table.add_row(m["bench"], f"{m['value']:.4g}", m["unit"], f"{m['baseline']:.4g}",
                          f"{m['ratio']:.3g}", m["goal"])
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Every command of the guides (``docs/*.md``, their ``sh`` blocks) runs and exits 0.

They run in order, as a reader would, against one SQLite database holding the
sample grid, a day of FTS transfers and a submitted task; paths under
``/tmp/`` are the test's own folder, and the files the guides ingest are
written there first, in the sources' real formats.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netbroker.cli import app
from netbroker.db import create_db_engine, upgrade
from netbroker.registry import registry
from tests.factories import recent_fts_lines, task_spec
from tests.test_cli import netbroker

pytestmark = pytest.mark.slow
DOCS = Path(__file__).resolve().parent.parent / "docs"


def commands() -> list[tuple[str, str]]:
    """(guide, command) of every ``netbroker`` line of the guides' ``sh`` blocks."""
    out = []
    for guide in sorted(DOCS.glob("*.md")):
        for block in re.findall(r"```sh\n(.*?)```", guide.read_text(), re.S):
            for line in block.splitlines():
                line = line.split("  #")[0].strip()
                if line.startswith("netbroker "):
                    out.append((guide.name, line))
    return out


def test_the_guides_have_commands_to_run() -> None:
    names = {guide for guide, _ in commands()}
    assert {"operators.md", "ddm.md", "analysts.md", "pilots-and-sites.md"} <= names


def test_every_command_of_the_guides_runs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'netbroker.db'}"
    engine = create_db_engine(url)
    upgrade(engine)
    registry.import_grid_file(engine, registry.sample_grid_path())
    engine.dispose()
    fts = tmp_path / "fts.jsonl"
    fts.write_bytes(recent_fts_lines())
    old = [json.loads(line) for line in recent_fts_lines().decode().splitlines()]
    for msg in old:  # the same transfers a year ago, under other ids
        msg["tr_id"] = "old-" + msg["tr_id"]
        for key in ("timestamp_tr_st", "timestamp_tr_comp", "tr_timestamp_start",
                    "tr_timestamp_complete"):
            msg[key] -= 365 * 86400 * 1000
    (tmp_path / "fts-last-year.jsonl").write_text("\n".join(json.dumps(m) for m in old))
    esmond = Path(__file__).parent / "data" / "perfsonar" / "esmond_bundle.json"
    (tmp_path / "esmond.json").write_bytes(esmond.read_bytes())
    assert netbroker("ingest", "fts", str(fts), url=url).returncode == 0
    task = tmp_path / "task.json"
    task.write_text(json.dumps(task_spec(
        name="docs.001", input_dataset="mc23_13p6TeV:mc23_13p6TeV.601229.PhPy8EG_A14_ttbar_"
        "hdamp258p75_SingleLep.simul.HITS.e8514_s4162", cores=1, memory_mb=2000)))
    assert netbroker("submit", str(task), url=url).returncode == 0, "task not submitted"
    # An installed deployment has its pilots' token (netbroker doctor checks it).
    assert netbroker("token", "create", "--role", "pilot", "--name", "site", "--file",
                     str(tmp_path / "site.token"), url=url).returncode == 0
    failed = []
    runner = CliRunner()
    for guide, line in commands():
        args = shlex.split(line.replace("/tmp/", f"{tmp_path}/"))[1:]
        # In this process (a CLI process each would cost seconds of imports apiece).
        done = runner.invoke(app, args, env={"NETBROKER_DATABASE_URL": url, "COLUMNS": "200"})
        if done.exit_code != 0:
            failed.append(f"{guide}: {line}: {done.exit_code} {done.output[-300:]} "
                          f"{done.exception!r}")
    assert failed == [], "\n".join(failed)

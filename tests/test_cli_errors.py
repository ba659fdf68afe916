"""Errors on the command line as a user meets them: one line, a non-zero exit, no traceback
(``netbroker`` and ``netbroker-pilot``, real processes, real databases and a real server);
explanations that put the winner first and say what each column means."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from netbroker.accounts import auth
from netbroker.common.config import Settings
from netbroker.registry import registry
from netbroker.workload import tasks
from tests.conftest import LiveServer
from tests.factories import mini_grid, task_spec
from tests.test_cli import netbroker


def one_line_error(result: subprocess.CompletedProcess[str], code: int, words: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and words in lines[0], lines[0]


@pytest.mark.parametrize(("args", "code", "words"), [
    (("jobs", "--status", "bogus"), 2, "Invalid value for '--status': Value error, 'bogus' is "
                                       "not one of 'defined'"),
    (("tasks", "--status", "bogus"), 2, "'bogus' is not one of 'registered'"),
    (("jobs", "--task", "abc"), 2, "Invalid value for '--task'"),
    (("ingest", "fts", "/nonexistent.json"), 1, "/nonexistent.json: No such file or directory"),
    (("explain", "task", "99"), 1, "unknown task '99'"),
    (("frobnicate",), 2, "No such command 'frobnicate'"),
])
def test_cli_errors_are_one_line_and_non_zero(db_url: str, args: tuple[str, ...], code: int,
                                              words: str) -> None:
    one_line_error(netbroker(*args, url=db_url), code, words)


def test_debug_is_accepted_and_errors_stay_plain(db_url: str) -> None:
    result = netbroker("--debug", "explain", "job", "5", url=db_url)
    one_line_error(result, 1, "unknown job '5'")


def test_explain_task_puts_the_winner_first_and_names_its_columns(engine: Engine,
                                                                  db_url: str) -> None:
    registry.import_grid_document(engine, mini_grid())
    task = tasks.submit(engine, tasks.parse_task(task_spec()), Settings())
    shown = netbroker("explain", "task", str(task["id"]), "--top", "3", url=db_url)
    assert shown.returncode == 0, shown.stderr
    assert "transfer time, s" in shown.stdout and "score (higher wins)" in shown.stdout
    rows = [line for line in shown.stdout.splitlines() if line.startswith("│")]
    assert rows[0].split("│")[1].strip() == f"{task['cloud']} <", shown.stdout
    data = json.loads(netbroker("explain", "task", str(task["id"]), "--json",
                                url=db_url).stdout)
    (decision,) = [d for d in data["decisions"] if d["kind"] == "task"]
    assert ["transfer_s", "transfer time, s (lower is better)"] in decision["columns"]
    scores = [c.get("score") for c in decision["candidates"] if "score" in c]
    assert decision["candidates"][0]["name"] == task["cloud"] == decision["highlight"]
    assert scores[1:] == sorted(scores[1:], reverse=True)


def test_config_preview_counts_the_tasks_it_brokers_again(engine: Engine, db_url: str) -> None:
    registry.import_grid_document(engine, mini_grid())
    for n in range(3):
        tasks.submit(engine, tasks.parse_task(task_spec(name=f"t{n}")), Settings())
    tasks.kill_task(engine, 3)  # a cancelled task is not brokered again
    shown = netbroker("config", "set", "brokerage.weight_data=0", "--preview", url=db_url)
    assert shown.returncode == 0, shown.stderr
    assert "of 2 recent tasks brokered again" in shown.stdout
    assert "2 running" in shown.stdout


def pilot(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pilot.main", *args], capture_output=True,
                          text=True, timeout=120, check=False, env=env)


def test_pilot_prints_the_servers_reason_for_a_bad_token(engine: Engine,
                                                         tmp_path: Path) -> None:
    registry.import_grid_document(engine, mini_grid())
    auth.create_token(engine, "factory", "pilot")
    with LiveServer(engine, auth=True) as server:
        url = server.url
        refused = pilot("run", "--server", url, "--queue", "DESY_UCORE",
                        "--workdir", str(tmp_path), "--token", "not-a-token")
    assert refused.returncode == 1, refused.stderr
    assert "Traceback" not in refused.stderr
    (last,) = [line for line in refused.stderr.splitlines() if "netbroker-pilot:" in line]
    assert f"{url} refused (401): the token is not valid (unknown or revoked)" in last


def test_pilot_says_it_cannot_reach_a_closed_port(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = pilot("run", "--server", f"http://127.0.0.1:{port}", "--queue", "Q",
                   "--workdir", str(tmp_path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert (f"netbroker-pilot: cannot reach http://127.0.0.1:{port}: [Errno 111] Connection "
            "refused") in result.stderr


def test_pilot_makes_its_missing_workdir_or_says_why_it_cannot(tmp_path: Path) -> None:
    missing = tmp_path / "scratch" / "pilot-1"
    result = pilot("run", "--server", "http://127.0.0.1:1", "--queue", "Q",
                   "--workdir", str(missing))
    assert missing.is_dir()  # made, then the server was out of reach
    assert result.returncode == 1 and "Traceback" not in result.stderr
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    result = pilot("run", "--server", "http://127.0.0.1:1", "--queue", "Q",
                   "--workdir", str(blocked / "pilot-1"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"netbroker-pilot: cannot use workdir {blocked / 'pilot-1'}: Not a directory" \
        in result.stderr

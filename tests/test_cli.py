"""The ``netbroker`` command as a user runs it: a real process, real databases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from netbroker.accounts import auth
from netbroker.db import create_db_engine, head_revision
from netbroker.registry import registry
from tests.factories import mini_grid, recent_fts_lines


def netbroker(*args: str, url: str | None = None, cwd: Path | None = None,
              stdin: bytes | None = None, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NETBROKER_")}
    environ["COLUMNS"] = "200"
    if url:
        environ["NETBROKER_DATABASE_URL"] = url
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "netbroker", *args], capture_output=True,
                          env=environ, cwd=cwd, timeout=120, check=False,
                          input=stdin.decode() if stdin else None, text=True)


def test_upgrade_import_and_show_on_an_empty_database(empty_db_url: str) -> None:
    up = netbroker("db", "upgrade", url=empty_db_url)
    assert up.returncode == 0, up.stderr
    assert "upgraded" in up.stdout and f"from empty to {head_revision()}" in up.stdout
    imported = netbroker("grid", "import", "--sample", "--json", url=empty_db_url)
    assert imported.returncode == 0, imported.stderr
    counts = json.loads(imported.stdout)["counts"]
    assert counts["sites"]["inserted"] == 152
    show = netbroker("grid", "show", "--json", url=empty_db_url)
    summary = json.loads(show.stdout)
    assert summary["counts"]["clouds"] == 12
    assert {c["name"]: c["tier1"] for c in summary["clouds"]}["FR"] == "IN2P3-CC"
    table = netbroker("grid", "show", "--cloud", "ND", url=empty_db_url)
    assert "NDGF-T1" in table.stdout
    assert netbroker("db", "check", url=empty_db_url).returncode == 0


def test_import_refuses_a_bad_file_naming_record_and_field(db_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "grid.json"
    bad.write_text(json.dumps({"cloud": {"DE": {"tier1": "FZK-LCG2"}},
                               "site": {"FZK-LCG2": {"cloud": "DE", "tier_level": -1}}}))
    result = netbroker("grid", "import", str(bad), url=db_url)
    assert result.returncode == 1
    assert 'site["FZK-LCG2"].tier_level: Input should be greater than or equal to 0' in (
        result.stderr)
    assert "Traceback" not in result.stderr
    assert json.loads(netbroker("grid", "show", "--json", url=db_url).stdout)["counts"][
        "clouds"] == 0


def test_import_reads_standard_input(db_url: str) -> None:
    raw = registry.sample_grid_path().read_bytes()
    result = netbroker("grid", "import", "-", "--json", url=db_url, stdin=raw)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["source"] == "<stdin>"


def test_commands_refuse_a_database_behind_head(empty_db_url: str) -> None:
    result = netbroker("grid", "show", url=empty_db_url)
    assert result.returncode == 1
    assert "run `netbroker db upgrade` first" in result.stderr


def test_invalid_config_stops_the_command_with_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[service]\nport = -1\n")
    result = netbroker("--config", str(config), "config", "show")
    assert result.returncode == 2
    assert "service.port = -1: Input should be greater than or equal to 1" in result.stderr
    checked = netbroker("config", "check", str(config))
    assert checked.returncode == 2


def test_config_show_defaults_documents_every_setting() -> None:
    rows = json.loads(netbroker("config", "show", "--defaults", "--json").stdout)
    keys = {r["key"] for r in rows}
    assert {"database.url", "clouds.min_mbytes_per_s_from_tier1", "service.port"} <= keys


@pytest.mark.slow
def test_demo_runs_the_whole_mission_from_nothing(tmp_path: Path) -> None:
    result = netbroker("demo", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    shown = json.loads(result.stdout)
    facts = shown["facts"]
    assert set(facts["jobs"]) == {"finished"}, facts
    assert facts["finished_home"] > 0 and facts["finished_foreign"] > 0
    assert facts["decisions_done"] >= 1 and facts["rebrokered_jobs"] >= 1
    assert facts["joined"] >= 2 and facts["left"] >= 1
    assert any("left" in note for note in shown["notes"])
    plan = shown["plan"]
    assert not any(plan["lossy"] in note and "joined" in note for note in shown["notes"])
    report = Path(shown["report"])
    assert report.is_file() and report.read_text().count("data:image/png;base64,") == 3
    page = report.read_text()  # facts for people: labels, no Python dicts or snake_case
    assert "<td>jobs by state</td><td>finished " in page
    assert "{'" not in page and "finished_home" not in page and "+00:00" not in page
    assert (tmp_path / "netbroker-demo.db").exists()


@pytest.mark.slow
def test_serve_answers_on_its_port(tmp_path: Path) -> None:
    import socket
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NETBROKER_")}
    environ["NETBROKER_DATABASE_URL"] = url
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "netbroker", "serve", "--port", str(port)],
                                env=environ, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "netbroker serve did not answer in 30 s"
                time.sleep(0.2)
        assert health.status_code == 200  # serve brought the empty file to head itself
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/clouds", timeout=5).json() == []
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_network_commands_ingest_then_show_the_matrix(db_url: str, tmp_path: Path) -> None:
    assert netbroker("grid", "import", "--sample", url=db_url).returncode == 0
    data = tmp_path / "fts.jsonl"
    data.write_bytes(recent_fts_lines())
    report = json.loads(netbroker("ingest", "fts", str(data), "--json", url=db_url).stdout)
    assert (report["samples"], report["stored"]) == (12, 10)
    assert report["unmapped_hosts"] == {"host:se.unknown-lab.example.org": 2}
    again = netbroker("ingest", "fts", "-", url=db_url, stdin=data.read_bytes())
    assert "0 stored, 10 duplicates" in again.stdout
    bad = netbroker("ingest", "snmp", str(data), url=db_url)
    assert bad.returncode == 2 and "'snmp' is not one of" in bad.stderr
    csv = netbroker("matrix", "--source", "fts", "--window", "1h", "--format", "csv",
                    url=db_url).stdout.splitlines()
    assert csv[0] == "src,CERN-PROD,FZK-LCG2,UKI-NORTHGRID-MAN-HEP,BNL-ATLAS,MWT2"
    assert csv[1] == "CERN-PROD,,75.0,,,"  # (100 MB/s x 2 GB + 25 MB/s x 1 GB) / 3 GB
    png = tmp_path / "m.png"
    netbroker("matrix", "--window", "1h", "--plot", str(png), url=db_url)
    assert png.read_bytes()[:4] == b"\x89PNG"
    link = netbroker("network", "link", "CERN-PROD", "NOWHERE", url=db_url)
    assert link.returncode == 1 and "unknown site 'NOWHERE'" in link.stderr
    nws = json.loads(netbroker("network", "nws", url=db_url).stdout)
    assert nws["CERN-PROD:FZK-LCG2"]["mbps"]["netbroker"]["1h"] == 75.0
    collect = netbroker("collect", url=db_url)
    assert "no archive configured" in collect.stdout
    # The transfers ended a minute ago: no bucket of theirs is closed long enough.
    aggregate = netbroker("network", "aggregate", url=db_url)
    assert aggregate.returncode == 0, aggregate.stderr
    assert "no bucket start to block" in aggregate.stdout
    cycles = netbroker("cycles", "--json", url=db_url)
    assert json.loads(cycles.stdout) == []


def test_submit_explain_boost_and_kill_from_the_command_line(db_url: str,
                                                              tmp_path: Path) -> None:
    grid = tmp_path / "grid.json"
    grid.write_text(mini_grid(queue_memory_mb={"LRZ": 8000}))
    assert netbroker("grid", "import", str(grid), url=db_url).returncode == 0
    task_file = tmp_path / "task.toml"
    task_file.write_text('name = "cli.task"\nuser = "alice"\n'
                         'input_dataset = "data23:data23.AOD"\ntransformation = "run.sh"\n'
                         'parameters = "--in $IN"\ncores = 8\nmemory_mb = 16000\n')
    submitted = netbroker("submit", str(task_file), url=db_url)
    assert submitted.returncode == 0, submitted.stderr
    assert "task 1 cli.task: running, 6 jobs, cloud DE" in submitted.stdout
    again = netbroker("submit", str(task_file), url=db_url)
    assert again.returncode == 1 and "task 'cli.task' already exists (id 1)" in again.stderr
    explained = netbroker("explain", "job", "1", url=db_url)
    assert explained.returncode == 0, explained.stderr
    assert "DESY_UCORE" in explained.stdout and "memory: queue allows 8000 MB" in explained.stdout
    as_json = json.loads(netbroker("explain", "task", "1", "--json", url=db_url).stdout)
    assert [d["kind"] for d in as_json["decisions"]] == ["task", "job"]
    boost = netbroker("priority", "boost", "add", "--value", "300", "--hours", "2", "--user",
                      "alice", "--site", "DESY", url=db_url)
    assert boost.returncode == 0, boost.stderr
    assert netbroker("priority", "recompute", url=db_url).stdout.startswith("6 job priorities")
    jobs = json.loads(netbroker("jobs", "--task", "1", "--json", url=db_url).stdout)
    assert {j["priority"] for j in jobs} == {1300}
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x", "user": "a", "input_dataset": "data23:data23.AOD"}')
    refused = netbroker("submit", str(bad), url=db_url)
    assert refused.returncode == 1
    assert "transformation: Field required" in refused.stderr
    killed = netbroker("kill", "task", "1", url=db_url)
    assert "6 jobs cancelled" in killed.stdout


def test_tokens_and_runtime_settings_from_the_command_line(db_url: str, tmp_path: Path) -> None:
    made = netbroker("token", "create", "--role", "pilot", "--name", "factory-1", url=db_url)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("nb_") and "shown once" in made.stderr
    listed = json.loads(netbroker("token", "list", "--json", url=db_url).stdout)
    assert [(t["name"], t["role"], t["revoked_at"]) for t in listed] == [
        ("factory-1", "pilot", None)]
    assert token not in netbroker("token", "list", url=db_url).stdout  # never shown again
    assert netbroker("token", "revoke", "factory-1", url=db_url).returncode == 0
    # For PanDA Pilot 3: a file holding the token's bytes only, readable by its owner.
    file = tmp_path / "pilot-token"
    made = netbroker("token", "create", "--role", "pilot", "--name", "site-x", "--file",
                     str(file), url=db_url)
    assert made.returncode == 0 and made.stdout == "" and str(file) in made.stderr
    assert file.read_text().startswith("nb_") and file.read_text() == file.read_text().strip()
    assert file.stat().st_mode & 0o777 == 0o600
    engine = create_db_engine(db_url)
    assert auth.authenticate(engine, file.read_text()) == auth.Principal("site-x", "pilot")
    engine.dispose()
    again = netbroker("token", "revoke", "factory-1", url=db_url)
    assert again.returncode == 1 and "unknown token 'factory-1'" in again.stderr

    bad = netbroker("config", "set", "clouds.min_mbytes_per_s_from_tier1=-2", url=db_url)
    assert bad.returncode == 2 and "clouds.min_mbytes_per_s_from_tier1" in bad.stderr
    changed = netbroker("config", "set", "clouds.min_mbytes_per_s_from_tier1=3",
                        "--who", "ops-anna", url=db_url)
    assert changed.returncode == 0, changed.stderr
    assert "clouds.min_mbytes_per_s_from_tier1: 5.0 -> 3" in changed.stdout
    (entry,) = json.loads(netbroker("config", "audit", "--json", url=db_url).stdout)
    assert (entry["who"], entry["old"], entry["new"]) == ("ops-anna", 5.0, 3)

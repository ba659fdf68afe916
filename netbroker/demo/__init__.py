"""``netbroker demo``: the whole mission, end to end, on the embedded default (SQLite).

In about a minute, with real parts only:

1. a fresh SQLite file with the sample grid, and a local HTTP storage server
   standing in for every storage endpoint (the demo's small datasets are
   written there, at Rucio's paths, with their real sizes and Adler-32);
2. the real service (``netbroker serve``) on a free port of 127.0.0.1, with
   tokens required: the demo makes an operator, a DDM and a pilot token;
3. a measurement stream in the sources' own formats, pushed through the
   service's collectors: FTS transfers (fast inside clouds, a few foreign
   sites well connected to the biggest cloud's Tier-1, the rest slow),
   pScheduler packet loss (one well-connected site too lossy to join),
   XRootD cost-matrix reads;
4. the cycles: dynamic cloud membership (foreign sites join), task
   submission through the API (production tasks, one reading data at a
   foreign calculated member; analysis tasks of three users on one dataset at
   a Tier-1 with few pilot slots), PD2P (the analysis dataset is popular: a
   replication decision, which the demo's DDM stand-in acknowledges, copies
   and reports done, after which waiting jobs are rebrokered to the new
   copy), priorities;
5. real ``netbroker-pilot`` processes started by two pilot factories
   (production and analysis), staging inputs over HTTP, running short
   payloads, staging outputs out;
6. a degraded link: a foreign member leaves its cloud;
7. a report: a terminal summary and an HTML page with plots.

An edge: may import the core, ``netbroker.service``, ``netbroker.plots`` and below.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import sqlalchemy as sa
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from sqlalchemy.engine import Engine

from netbroker.accounts.auth import create_token
from netbroker.clouds import membership as clouds
from netbroker.common.config import Settings, load_settings
from netbroker.common.enums import utcnow
from netbroker.db import create_db_engine, upgrade
from netbroker.db.grid import GridDB
from netbroker.db.schema import datasets, files, jobs, queues
from netbroker.demo.report import facts, write_report
from netbroker.demo.storage import Storage
from netbroker.demo.stream import cost_matrix_lines, fts_lines, latency_docs
from netbroker.placement import pd2p
from netbroker.registry import registry
from netbroker.workload import priority
from netbroker.workload.rebrokerage import rebroker
from netbroker.workload.tasks import finish_tasks

__all__ = ["DemoResult", "run_demo"]

STEPS = 9
FILE_BYTES = 256 * 1024
PAYLOAD = "-c 'sleep 1; cat $IN > $OUT; echo processed $IN'"


@dataclass(frozen=True)
class DemoResult:
    """What the demo did: its database, its report, and the facts it counted."""

    db_path: Path
    report_path: Path
    facts: dict[str, Any]
    plan: dict[str, Any]
    notes: list[str]


def run_demo(db_path: Path, console: Console, report_dir: Path | None = None,
             max_pilots: int = 6, pilot_timeout_s: float = 120.0) -> DemoResult:
    """Run the demo into ``db_path`` (recreated) and write the report; see the module doc."""
    db_path = db_path.resolve()
    work = db_path.parent / f"{db_path.stem}-work"
    report_dir = report_dir or db_path.parent / f"{db_path.stem}-report"
    port = _free_port()
    config = _fresh_config(db_path, work, port)
    settings = load_settings(config, environ={})
    notes: list[str] = []
    rng = np.random.default_rng(2026)
    engine = create_db_engine(settings.database)
    storage = Storage(work / "storage")
    service: subprocess.Popen[bytes] | None = None
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                        TimeElapsedColumn(), console=console, transient=False)
    try:
        with progress:
            step = progress.add_task("schema and sample grid", total=STEPS)
            upgrade(engine)
            registry.import_grid_file(engine, registry.sample_grid_path())
            plan = _plan(engine)
            _publish_data(engine, storage, plan, rng)
            tokens = {role: create_token(engine, f"demo-{role}", role)
                      for role in ("operator", "ddm", "pilot")}
            progress.update(step, advance=1, description="starting the service")
            service = _start_service(config, port, work)
            url = f"http://127.0.0.1:{port}"
            # The operator pushes measurements and submits for the users; DDM has its own.
            http = httpx.Client(base_url=url, timeout=60,
                                headers={"Authorization": f"Bearer {tokens['operator']}"})
            ddm = httpx.Client(base_url=url, timeout=60,
                               headers={"Authorization": f"Bearer {tokens['ddm']}"})
            progress.update(step, advance=1, description="measurements through the collectors")
            notes += _feed(http, engine, plan, rng, phase=1)
            progress.update(step, advance=1, description="dynamic clouds")
            joined = clouds.recompute(engine, settings.clouds, settings.metrics)
            notes += [f"{c.site} {c.change} {c.cloud}: {c.reason}" for c in joined]
            progress.update(step, advance=1, description="tasks submitted through the API")
            notes += _submit(http, plan)
            progress.update(step, advance=1, description="PD2P and the DDM feed")
            notes += _pd2p_round(ddm, engine, settings, storage)
            priority.recompute(engine, settings.priority)
            progress.update(step, advance=1, description="pilots running the jobs")
            notes += _run_pilots(engine, url, work, max_pilots, pilot_timeout_s,
                                 tokens["pilot"])
            progress.update(step, advance=1, description="a link degrades")
            notes += _feed(http, engine, plan, rng, phase=2)
            left = clouds.recompute(engine, settings.clouds, settings.metrics)
            notes += [f"{c.site} {c.change} {c.cloud}: {c.reason}" for c in left]
            rebroker(engine, settings)
            finish_tasks(engine)
            progress.update(step, advance=1, description="the report")
            counted = facts(engine)
            report = write_report(engine, report_dir, counted, url, utcnow())
            progress.update(step, advance=1, description="done")
    finally:
        if service is not None:
            _stop(service)
        storage.close()
        engine.dispose()
    return DemoResult(db_path, report, counted, plan, notes)


def _fresh_config(db_path: Path, work: Path, port: int) -> Path:
    """Remove the last run's database, make the work folder, write the service's
    configuration there; its path."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    config = work / "netbroker.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{db_path}"\n\n'
        f'[service]\nport = {port}\nrun_cycles = false\nlog_level = "warning"\n\n'
        "[pd2p]\nmin_waiting_jobs = 15\n\n[rebrokerage]\nmin_wait_minutes = 0.0\n\n"
        # The demo's files are kilobytes, not gigabytes: its transfer times shrink with
        # them, and so does the time at which brokerage starts to care about one.
        "[brokerage]\nnetwork_scale_s = 1.0\n")
    return config


# --- the plan: which sites play which part ---------------------------------------------


def _plan(engine: Engine) -> dict[str, Any]:
    """Pick the sites from the registry: the biggest cloud, foreign candidates from the
    smallest ones, a Tier-1 of another cloud for the popular analysis data."""
    with engine.connect() as conn:
        grid = GridDB(conn)
        summary = {c["name"]: c for c in grid.cloud_summary() if c["tier1"]}
        site_rows = {s["name"]: s for s in grid.list_sites()}
        queues = grid.list_queues(status="online")
        disks: dict[str, Any] = {}
        for e in grid.list_endpoints():
            if e["kind"] == "disk" and e["active"]:
                disks.setdefault(e["site"], e["name"])
        hosts = {s: [h["host"] for h in grid.site_hosts_of(s) if h["role"] == "perfsonar"]
                 for s in site_rows}
    runs = {q["site"] for q in queues if str(q["queue_type"]) in ("unified", "production")
            and q["cores"] >= 1}
    usable = sorted(s for s, row in site_rows.items() if row["status"] == "online"
                    and s in runs and s in disks)
    by_slots = sorted(summary, key=lambda c: -summary[c]["pilot_slots"])
    big, hot_cloud = by_slots[0], by_slots[1]
    small = [c for c in reversed(by_slots) if c not in (big, hot_cloud)]
    foreign = []
    for cloud in small:
        pick = next((s for s in usable if site_rows[s]["cloud"] == cloud
                     and s != summary[cloud]["tier1"] and hosts.get(s)), None)
        if pick:
            foreign.append(pick)
        if len(foreign) == 4:
            break
    members = {c: [s for s in usable if site_rows[s]["cloud"] == c] for c in summary}
    return {"big": big, "big_t1": summary[big]["tier1"], "foreign": foreign[:3],
            "lossy": foreign[3], "degrading": foreign[2], "hot_cloud": hot_cloud,
            "hot_site": summary[hot_cloud]["tier1"],
            "home_t2": next(s for s in members[big] if s != summary[big]["tier1"]),
            "tier1": {c: summary[c]["tier1"] for c in summary}, "members": members,
            "disk": disks, "hosts": hosts,
            "slow": [s for s in usable if site_rows[s]["cloud"] not in (big,)
                     and s not in foreign][:6]}


def _publish_data(engine: Engine, storage: Storage, plan: dict[str, Any],
                  rng: np.random.Generator) -> None:
    """Point every endpoint at the local storage, write the demo datasets there and
    register them; give the popular data's Tier-1 only a few pilot slots."""
    with engine.connect() as conn:
        grid = GridDB(conn)
        endpoints = grid.list_endpoints()
        hot_queues = grid.list_queues(site=plan["hot_site"])
    doc: dict[str, Any] = {"ddmendpoint": {e["name"]: {
        "site": e["site"], "type": e["endpoint_type"], "is_tape": e["kind"] == "tape",
        "se": storage.endpoint_url(e["name"]), "space_total_bytes": e["total_bytes"],
        "space_free_bytes": e["free_bytes"], "state": "ACTIVE" if e["active"] else "DISABLED"}
        for e in endpoints}}
    doc["pandaqueue"] = {q["name"]: {
        "atlas_site": q["site"], "panda_resource": q["panda_resource"],
        "type": str(q["queue_type"]), "status": str(q["status"]), "corecount": q["cores"],
        "maxrss": q["max_memory_mb"], "maxtime": q["max_walltime_s"],
        "maxwdir": q["max_disk_mb"], "pilot_slots": 4} for q in hot_queues}
    disk = plan["disk"]
    datasets = {"demo.home.EVNT": (12, [disk[plan["big_t1"]], disk[plan["home_t2"]]]),
                "demo.foreign.EVNT": (10, [disk[plan["foreign"][0]]]),
                "user.demo.hot.DAOD": (8, [disk[plan["hot_site"]]])}
    doc["dataset"] = []
    for name, (n, where) in datasets.items():
        files = []
        for i in range(1, n + 1):
            lfn = f"{name}._{i:06d}.root"
            data = rng.bytes(FILE_BYTES)
            for endpoint in where:
                storage.put(endpoint, "demo", lfn, data)
            files.append({"name": lfn, "bytes": len(data), "adler32": f"{zlib.adler32(data):08x}",
                          "guid": f"00000000-0000-4000-8000-{zlib.crc32(lfn.encode()):012d}"})
        doc["dataset"].append({"scope": "demo", "name": name, "files": files,
                               "replicas": [{"rse": e, "state": "AVAILABLE"} for e in where]})
    registry.import_grid_document(engine, json.dumps(doc), "demo overlay")


# --- the service -------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_service(config: Path, port: int, work: Path) -> subprocess.Popen[bytes]:
    log = (work / "service.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "netbroker", "--config", str(config),
                                "serve"], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited; see {work / 'service.log'}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    _stop(process)
    raise RuntimeError("the service did not answer /healthz within 60 s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a process this demo started, by its PID."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- measurements ------------------------------------------------------------------------


def _feed(http: httpx.Client, engine: Engine, plan: dict[str, Any], rng: np.random.Generator,
          phase: int) -> list[str]:
    """Push one phase of measurements through the collectors; returns what was stored."""
    now = time.time()
    disk, t1 = plan["disk"], plan["big_t1"]
    if phase == 1:
        links = [(disk[plan["tier1"][c]], disk[s], float(rng.uniform(80, 400)))
                 for c, members in plan["members"].items() for s in members
                 if s != plan["tier1"][c] and plan["tier1"][c] in disk]
        links += [(disk[t1], disk[s], rate) for s, rate in
                  zip([*plan["foreign"], plan["lossy"]], (25.0, 18.0, 12.0, 30.0), strict=True)]
        links += [(disk[t1], disk[s], float(rng.uniform(0.5, 3.0))) for s in plan["slow"]]
        fts = fts_lines(links, 4, now - 3000, now - 1200, rng, "demo1")
        host = plan["hosts"][t1][0] if plan["hosts"].get(t1) else None
        loss = [(host, plan["hosts"][s][0], 0.06 if s == plan["lossy"] else 0.001)
                for s in [*plan["foreign"], plan["lossy"]] if host and plan["hosts"].get(s)]
        tests = "\n".join(latency_docs(loss, now - ago, rng) for ago in (2400, 1800, 1500))
        batches = {"fts": fts, "perfsonar": tests,
                   "xrootd": cost_matrix_lines([(t1, s, float(rng.uniform(50, 200)))
                                                for s in plan["members"][plan["big"]][:5]
                                                if s != t1], now - 1500)}
    else:  # the degrading link: many slow transfers pull its average under the leave mark
        batches = {"fts": fts_lines([(disk[t1], disk[plan["degrading"]], 1.0)], 40, now - 900,
                                    now - 60, rng, "demo2")}
    out = []
    for source, body in batches.items():
        answer = http.post(f"/api/v1/metrics/{source}", content=body.encode(),
                           headers={"Content-Type": "application/x-ndjson"})
        answer.raise_for_status()
        got = answer.json()
        out.append(f"phase {phase} {source}: {got['stored']} samples stored, "
                   f"{got['rejected']} records rejected, {got['unmapped_samples']} unmapped")
    return out


# --- tasks, PD2P, pilots -------------------------------------------------------------------


def _task(name: str, dataset: str, **over: Any) -> dict[str, Any]:
    return {"name": name, "user": "prodsys", "input_dataset": f"demo:{dataset}",
            "transformation": "/bin/sh", "parameters": PAYLOAD, "cores": 1,
            "memory_mb": 1000, "walltime_s": 600, "files_per_job": 1, **over}


def _submit(http: httpx.Client, plan: dict[str, Any]) -> list[str]:
    specs = [_task("demo.prod.home", "demo.home.EVNT", working_group="AP_DEMO"),
             _task("demo.prod.foreign", "demo.foreign.EVNT", priority=900)]
    specs += [_task(f"demo.ana.{user}", "user.demo.hot.DAOD", user=user,
                    processing_type="analysis") for user in ("alice", "bob", "carol")]
    out = []
    for spec in specs:
        answer = http.post("/api/v1/tasks", json=spec)
        answer.raise_for_status()
        task = answer.json()
        out.append(f"task {task['name']}: {task['status']} in {task['cloud']}, "
                   f"{sum(task['jobs'].values())} jobs ({task['reason']})")
    return out


def _pd2p_round(http: httpx.Client, engine: Engine, settings: Settings,
                storage: Storage) -> list[str]:
    """A PD2P cycle, then the DDM stand-in: read the feed, acknowledge, copy, report done."""
    result = pd2p.run_cycle(engine, settings)
    out = [f"PD2P: {d['dataset']} -> {d['target']}: {d['reason']}" for d in result["decisions"]]
    page = http.get("/api/v1/replication/decisions", params={"after": 0}).json()
    for decision in page["decisions"]:
        if decision["state"] != "new":
            continue
        http.post(f"/api/v1/replication/decisions/{decision['id']}/ack").raise_for_status()
        with engine.connect() as conn:
            lfns = list(conn.execute(
                sa.select(files.c.name).join(datasets, files.c.dataset_id == datasets.c.id)
                .where(datasets.c.scope == decision["scope"],
                       datasets.c.name == decision["name"])).scalars())
        storage.copy_dataset(decision["sources"][0]["endpoint"], decision["target"],
                             decision["scope"], lfns)
        done = http.post(f"/api/v1/replication/decisions/{decision['id']}/done")
        done.raise_for_status()
        moved = done.json()["rebrokered"]["moved"]
        out.append(f"DDM: decision {decision['id']} done; {len(moved)} waiting jobs "
                   f"rebrokered to the new copy")
    return out


def _run_pilots(engine: Engine, url: str, work: Path, max_pilots: int,
                timeout_s: float, token: str) -> list[str]:
    """Two pilot factories (production, analysis) until the queues are drained."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(queues.c.name, jobs.c.prod_source_label)
                            .join(jobs, jobs.c.queue_id == queues.c.id)
                            .where(jobs.c.status.in_(["activated", "assigned"]))
                            .distinct()).all()
    factories = []
    for label in ("managed", "user"):
        names = sorted({q for q, lab in rows if lab == label})
        if not names:
            continue
        log = (work / f"factory-{label}.log").open("wb")
        factories.append(subprocess.Popen(
            [sys.executable, "-m", "pilot.main", "factory", "--server", url, "--queues",
             ",".join(names), "--workdir", str(work / "pilots"), "--max-pilots",
             str(max_pilots), "--cycle-s", "1", "--heartbeat-s", "5", "--label", label,
             "--until-idle"], stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "NETBROKER_TOKEN": token}))
    deadline = time.monotonic() + timeout_s
    for factory in factories:
        try:
            factory.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _stop(factory)  # type: ignore[arg-type]
    return [f"pilot factories for {len(rows)} queue(s) finished"]

"""The pilot's job loop: check, acquire, prepare, run, report, clean, repeat."""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import socket
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import requests

from pilot.client import DispatcherClient
from pilot.node import check_node, read_node
from pilot.payload import (
    PILOT_KILLED,
    STAGEIN_FAILED,
    PayloadResult,
    payload_command,
    run_payload,
)
from pilot.staging import StageError, make_log_tarball, stage_in, stage_out

__all__ = ["run_one_job", "run_pilot"]

log = logging.getLogger("netbroker-pilot")


def run_pilot(args: argparse.Namespace) -> int:
    """Run up to ``--max-jobs`` jobs; exit status 0 when all went through the cycle."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s pilot %(message)s")
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.warning("signal %d: killing the payload, reporting, leaving", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    client = DispatcherClient(args.server)
    pilot_id = args.pilot_id or f"{socket.gethostname()}:{args.workdir}"
    for _ in range(args.max_jobs):
        if stop.is_set():
            return 1
        node = read_node(args.workdir)
        problems = check_node(node, min_disk_mb=1)
        if problems:
            log.error("node not fit: %s", "; ".join(problems))
            return 2
        job = client.acquire(args.queue, prod_source_label=args.label, cores=node.cores,
                             memory_mb=node.memory_mb or None, disk_mb=node.workdir_free_mb,
                             node=node.hostname, pilot_id=pilot_id)
        if job is None:
            log.info("no job for queue %s", args.queue)
            return 0
        run_one_job(client, job, args.workdir, args.heartbeat_s, stop)
    return 1 if stop.is_set() else 0


def run_one_job(client: DispatcherClient, job: dict[str, Any], workdir: Path,
                heartbeat_s: float, stop: threading.Event) -> PayloadResult:
    """Take one acquired job through starting, running and its final report."""
    job_id = job["id"]
    jobdir = workdir / f"job-{job_id}"
    jobdir.mkdir(parents=True, exist_ok=True)
    files = job.get("files") or {"inputs": [], "outputs": []}
    written: list[dict[str, Any]] = []
    try:
        client.update(job_id, "starting")
        used = stage_in(files["inputs"], jobdir, client.session, client.timeout_s)
        if used:
            log.info("job %s: staged in %d files", job_id, len(used))
        command = payload_command(_prepare(client, job["transformation"], jobdir),
                                  job["job_pars"])
        log.info("job %s: running %s", job_id, command)
        result = run_payload(
            command, jobdir, job["max_walltime_s"] or float("inf"), heartbeat_s,
            lambda cpu, rss: client.update(job_id, "running", cpu_time_s=cpu, max_rss_kb=rss),
            stop)
        written, result = _stage_out(client, job_id, files["outputs"], jobdir, result)
    except StageError as exc:
        result = PayloadResult(-1, exc.code, str(exc), 0.0, 0)
    except (OSError, requests.RequestException) as exc:
        result = PayloadResult(-1, PILOT_KILLED if stop.is_set() else STAGEIN_FAILED,
                               f"could not run the payload: {exc}", 0.0, 0)
    finally:
        shutil.rmtree(jobdir, ignore_errors=True)
    state = "finished" if result.exit_code == 0 and not result.pilot_error_code else "failed"
    client.update(job_id, state, exit_code=result.exit_code,
                  pilot_error_code=result.pilot_error_code or None,
                  error_diag=result.error_diag or None, cpu_time_s=result.cpu_time_s,
                  max_rss_kb=result.max_rss_kb, files=written or None)
    log.info("job %s: %s (exit %s) %s", job_id, state, result.exit_code, result.error_diag)
    return result


def _stage_out(client: DispatcherClient, job_id: int, outputs: list[dict[str, Any]],
               jobdir: Path, result: PayloadResult
               ) -> tuple[list[dict[str, Any]], PayloadResult]:
    """Pack the log and write the outputs (only the log when the payload failed)."""
    if not outputs:
        return [], result
    for log_file in (o for o in outputs if o["kind"] == "log"):
        make_log_tarball(jobdir, log_file["lfn"])
    ok = result.exit_code == 0 and not result.pilot_error_code
    wanted = outputs if ok else [o for o in outputs if o["kind"] == "log"]
    if ok:
        client.update(job_id, "transferring")
    try:
        written = stage_out(wanted, jobdir, client.session, client.timeout_s)
    except StageError as exc:
        if not ok:  # the payload's own failure is the one to report
            return [], result
        return [], PayloadResult(result.exit_code, exc.code, str(exc), result.cpu_time_s,
                                 result.max_rss_kb)
    log.info("job %s: staged out %d files", job_id, len(written))
    return written, result


def _prepare(client: DispatcherClient, transformation: str, jobdir: Path) -> str:
    """The executable to run: an http(s) transformation is downloaded into the job dir."""
    if not transformation.startswith(("http://", "https://")):
        return transformation
    target = jobdir / (transformation.rstrip("/").rsplit("/", 1)[-1] or "transformation")
    client.download(transformation, str(target))
    target.chmod(0o755)
    return f"./{target.name}"

"""The pilot's job loop: check, acquire, prepare, run, report, clean, repeat."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

import requests

from pilot.client import DispatcherClient
from pilot.node import check_node, read_node
from pilot.payload import (
    KILLED_BY_SERVER,
    PAYLOAD_FAILED,
    PILOT_KILLED,
    STAGEIN_FAILED,
    WALLTIME_EXCEEDED,
    PayloadResult,
    payload_command,
    run_payload,
)
from pilot.staging import StageError, make_log_tarball, stage_in, stage_out
from pilot.stopping import stop_on_signals

__all__ = ["run_one_job", "run_pilot"]

log = logging.getLogger("netbroker-pilot")


def run_pilot(args: argparse.Namespace) -> int:
    """Run up to ``--max-jobs`` jobs; exit status 0 when all went through the cycle."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s pilot %(message)s")
    stop = stop_on_signals(log, logging.WARNING,
                           "signal %d: killing the payload, reporting, leaving")
    client = DispatcherClient(args.server, token=args.token or os.environ.get("NETBROKER_TOKEN"))
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
        run_one_job(client, job, args.workdir, args.heartbeat_s, stop, pilot_id)
    return 1 if stop.is_set() else 0


def run_one_job(client: DispatcherClient, job: dict[str, Any], workdir: Path,
                heartbeat_s: float, stop: threading.Event, pilot_id: str = "") -> PayloadResult:
    """Take one acquired job through starting, running and its final report."""
    job_id = job["id"]
    jobdir = workdir / f"job-{job_id}"
    jobdir.mkdir(parents=True, exist_ok=True)
    files = job.get("files") or {"inputs": [], "outputs": []}
    written: list[dict[str, Any]] = []
    lines = _JobLog()
    log.addHandler(lines)
    tails = ""
    try:
        client.update(job_id, "starting")
        used = stage_in(files["inputs"], jobdir, client.session, client.timeout_s)
        if used:
            log.info("job %s: staged in %d files", job_id, len(used))
        command = payload_command(_prepare(client, job["transformation"], jobdir),
                                  job["job_pars"])
        log.info("job %s: running %s", job_id, command)
        beat = lambda cpu, rss: client.update(  # noqa: E731
            job_id, "running", cpu_time_s=cpu, max_rss_kb=rss)
        walltime = job["max_walltime_s"] or float("inf")
        if job.get("event_service"):
            result = run_event_ranges(client, job_id, command, jobdir, walltime, heartbeat_s,
                                      beat, stop, pilot_id)
        else:
            result = run_payload(command, jobdir, walltime, heartbeat_s, beat, stop)
        written, result = _stage_out(client, job_id, files["outputs"], jobdir, result)
    except StageError as exc:
        result = PayloadResult(-1, exc.code, str(exc), 0.0, 0)
    except (OSError, requests.RequestException) as exc:
        result = PayloadResult(-1, PILOT_KILLED if stop.is_set() else STAGEIN_FAILED,
                               f"could not run the payload: {exc}", 0.0, 0)
    finally:
        tails = _tails(jobdir)
        shutil.rmtree(jobdir, ignore_errors=True)
    state = "finished" if result.exit_code == 0 and not result.pilot_error_code else "failed"
    client.update(job_id, state, exit_code=result.exit_code,
                  pilot_error_code=result.pilot_error_code or None,
                  error_diag=result.error_diag or None, cpu_time_s=result.cpu_time_s,
                  max_rss_kb=result.max_rss_kb, files=written or None)
    log.info("job %s: %s (exit %s) %s", job_id, state, result.exit_code, result.error_diag)
    log.removeHandler(lines)
    try:
        client.upload_log(job_id, "\n".join(lines.lines) + "\n" + tails)
    except requests.RequestException as exc:  # the job is reported; its log is a bonus
        log.warning("job %s: log not uploaded: %s", job_id, exc)
    return result


class _JobLog(logging.Handler):
    """The pilot's log lines while it runs one job."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(asctime)s pilot %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def _tails(jobdir: Path, keep: int = 64 * 1024) -> str:
    """The last ``keep`` bytes of the payload's stdout and stderr, labelled."""
    out = []
    for name in ("payload.stdout", "payload.stderr"):
        path = jobdir / name
        if path.is_file():
            data = path.read_bytes()[-keep:].decode(errors="replace")
            out.append(f"==> {name} <==\n{data}")
    return "\n".join(out)


def run_event_ranges(client: DispatcherClient, job_id: int, command: list[str], jobdir: Path,
                     walltime_s: float, heartbeat_s: float, beat: Any, stop: threading.Event,
                     pilot_id: str) -> PayloadResult:
    """Event-service mode: take one range at a time, run the payload on it, report it.

    The payload finds its range in ``NETBROKER_EVENT_RANGE_ID``,
    ``NETBROKER_FIRST_EVENT`` and ``NETBROKER_LAST_EVENT``. A failed range is
    reported failed (the server retries it, perhaps elsewhere); on a signal
    the range held is given back (``ready``) before the pilot leaves. The job
    ends when no range is left: finished unless a range failed for good.
    """
    started, cpu, peak, done, failed = time.monotonic(), 0.0, 0, 0, 0
    while not stop.is_set():
        ranges = client.event_ranges(job_id, 1, pilot_id)
        if not ranges:
            break
        for rng in ranges:
            env = {"NETBROKER_EVENT_RANGE_ID": str(rng["id"]),
                   "NETBROKER_FIRST_EVENT": str(rng["first_event"]),
                   "NETBROKER_LAST_EVENT": str(rng["last_event"])}
            left = walltime_s - (time.monotonic() - started)
            result = run_payload(command, jobdir, left, heartbeat_s, beat, stop, env=env)
            cpu, peak = cpu + result.cpu_time_s, max(peak, result.max_rss_kb)
            if result.pilot_error_code in (PILOT_KILLED, WALLTIME_EXCEEDED, KILLED_BY_SERVER):
                client.report_ranges([{"range_id": rng["id"], "status": "ready"}])
                return PayloadResult(result.exit_code, result.pilot_error_code,
                                     f"{result.error_diag}; range {rng['id']} given back",
                                     cpu, peak)
            ok = result.exit_code == 0
            (now,) = client.report_ranges([{"range_id": rng["id"],
                                            "status": "finished" if ok else "failed"}])
            # a failed range with attempts left comes back "ready": only "failed" is final
            done, failed = done + ok, failed + (now == "failed")
            log.info("job %s: range %s (%s-%s) %s", job_id, rng["id"], rng["first_event"],
                     rng["last_event"], "finished" if ok else "failed")
    if stop.is_set():
        return PayloadResult(-1, PILOT_KILLED, "pilot killed by a signal", cpu, peak)
    if failed:
        return PayloadResult(1, PAYLOAD_FAILED, f"{failed} of {done + failed} event ranges "
                             "failed", cpu, peak)
    return PayloadResult(0, 0, f"{done} event ranges processed", cpu, peak)


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

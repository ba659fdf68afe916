"""Running a job's payload: a subprocess, watched, heartbeated, bounded by walltime.

The payload is ``<transformation> <jobPars>`` in the job's own directory
(a transformation given as an http(s) URL is downloaded there first). While
it runs, a heartbeat goes to the dispatcher every ``heartbeat_s`` seconds
with its CPU time and peak memory; the answer may tell the pilot to kill it.
A payload over its walltime is killed. Standard library only.
"""

from __future__ import annotations

import os
import resource
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "KILLED_BY_SERVER",
    "PAYLOAD_FAILED",
    "PILOT_KILLED",
    "STAGEIN_FAILED",
    "WALLTIME_EXCEEDED",
    "PayloadResult",
    "payload_command",
    "run_payload",
]

# Pilot error codes netbroker's pilot reports (0: none).
PAYLOAD_FAILED = 1305  # the payload exited non-zero (the code PanDA Pilot 3.7 uses)
WALLTIME_EXCEEDED = 1213
KILLED_BY_SERVER = 1144
PILOT_KILLED = 1201  # the pilot got SIGTERM/SIGINT
STAGEIN_FAILED = 1099  # an input (or the transformation) could not be fetched


@dataclass(frozen=True)
class PayloadResult:
    """How the payload ended."""

    exit_code: int
    pilot_error_code: int
    error_diag: str
    cpu_time_s: float
    max_rss_kb: int


Heartbeat = Callable[[float, int], str]  # (cpu s, max rss kB) -> the server's command


def _usage(pid: int) -> tuple[float, int]:
    """CPU seconds and peak RSS (kB) of a running process, from /proc; zeros elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        status = Path(f"/proc/{pid}/status").read_text()
        rss = next((int(line.split()[1]) for line in status.splitlines()
                    if line.startswith("VmHWM:")), 0)
        return cpu, rss
    except (OSError, IndexError, ValueError):
        return 0.0, 0


def _kill(process: subprocess.Popen[bytes]) -> None:
    """Terminate the payload's whole process group; kill it if it lingers."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_payload(command: list[str], workdir: Path, walltime_s: float, heartbeat_s: float,
                heartbeat: Heartbeat, stop: threading.Event,
                env: dict[str, str] | None = None) -> PayloadResult:
    """Run ``command`` in ``workdir`` until it ends, is killed, or runs out of walltime.

    ``stop`` set by the pilot's signal handler kills the payload at once.
    ``env`` adds variables to the payload's environment. Its stdout and
    stderr are appended to ``payload.stdout`` and ``payload.stderr``.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with (workdir / "payload.stdout").open("ab") as out, \
            (workdir / "payload.stderr").open("ab") as err:
        process = subprocess.Popen(command, cwd=workdir, stdout=out, stderr=err,
                                   start_new_session=True,
                                   env={**os.environ, **env} if env else None)
        started = next_beat = time.monotonic()
        reason, code, peak_kb = "", 0, 0
        while process.poll() is None:
            now = time.monotonic()
            cpu_now, rss_kb = _usage(process.pid)
            peak_kb = max(peak_kb, rss_kb)
            if stop.is_set():
                reason, code = "pilot killed by a signal", PILOT_KILLED
            elif now - started > walltime_s:
                reason, code = f"walltime of {walltime_s:g} s exceeded", WALLTIME_EXCEEDED
            elif now >= next_beat:
                next_beat = now + heartbeat_s
                if heartbeat(cpu_now, peak_kb) == "tobekilled":
                    reason, code = "killed on the server's command", KILLED_BY_SERVER
            if code:
                _kill(process)
                break
            stop.wait(0.1)
        exit_code = process.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if not code and exit_code != 0:
        reason, code = f"payload exited with {exit_code}", PAYLOAD_FAILED
    # Sampled while it ran; a payload too quick to sample falls back on the
    # children's peak (which also covers earlier payloads of this pilot).
    return PayloadResult(exit_code, code, reason, cpu, peak_kb or after.ru_maxrss)


def payload_command(transformation: str, job_pars: str) -> list[str]:
    """The argv of a payload: the transformation, then its shell-split parameters.

    >>> payload_command("./run.sh", "--events 10 --out 'a b.root'")
    ['./run.sh', '--events', '10', '--out', 'a b.root']
    """
    return [transformation, *shlex.split(job_pars)]

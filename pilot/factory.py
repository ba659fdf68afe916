"""A local pilot factory: keep as many pilots running as the dispatcher asks for.

Every cycle, for each queue, the factory asks the dispatcher how many
pilots to submit (``GET /api/v1/queues/{queue}/pilot-demand?pending=N``,
``N`` being its pilots started too recently to have asked for a job) and
starts that many ``netbroker-pilot run`` processes (one job each, in their
own work directories), within ``--max-pilots`` alive at once. Finished
pilots are reaped; SIGTERM/SIGINT stop the factory, which passes the signal
to its own pilots (by PID: each then reports its job and leaves) and waits
for them. With ``--until-idle`` it exits once no queue wants pilots and
none of its pilots is alive. Standard library and requests only.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from pilot.client import checked
from pilot.stopping import stop_on_signals

__all__ = ["Factory", "run_factory"]

log = logging.getLogger("netbroker-pilot-factory")


@dataclass
class Factory:
    """The factory's state: its live pilot processes per queue."""

    server: str
    queues: list[str]
    workdir: Path
    max_pilots: int = 8
    startup_grace_s: float = 15.0
    heartbeat_s: float = 60.0
    label: str = "managed"
    token: str | None = None
    live: dict[str, list[tuple[subprocess.Popen[bytes], float]]] = field(default_factory=dict)
    started: int = 0
    session: requests.Session = field(default_factory=requests.Session)

    def reap(self) -> int:
        """Forget pilots that ended; returns how many did."""
        ended = 0
        for queue, procs in self.live.items():
            alive = [(p, t) for p, t in procs if p.poll() is None]
            ended += len(procs) - len(alive)
            self.live[queue] = alive
        return ended

    def alive(self) -> int:
        return sum(len(p) for p in self.live.values())

    def demand(self, queue: str, now: float) -> int:
        """Pilots the dispatcher wants for ``queue`` now, given the ones still starting."""
        pending = sum(1 for _, t in self.live.get(queue, []) if now - t < self.startup_grace_s)
        params: dict[str, str | int] = {"pending": pending, "label": self.label}
        answer = self.session.get(f"{self.server}/api/v1/queues/{queue}/pilot-demand",
                                  params=params,
                                  timeout=30)
        return int(checked(answer).json()["demand"])

    def submit(self, queue: str, now: float) -> None:
        """Start one pilot for ``queue`` in a fresh work directory."""
        self.started += 1
        jobdir = self.workdir / queue / f"pilot-{self.started}"
        jobdir.mkdir(parents=True, exist_ok=True)
        process = subprocess.Popen(
            [sys.executable, "-m", "pilot.main", "run", "--server", self.server,
             "--queue", queue, "--workdir", str(jobdir), "--max-jobs", "1",
             "--heartbeat-s", str(self.heartbeat_s), "--label", self.label,
             "--pilot-id", f"factory-{self.started}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, **({"NETBROKER_TOKEN": self.token} if self.token else {})})
        self.live.setdefault(queue, []).append((process, now))

    def cycle(self) -> int:
        """One round: reap, ask, submit; returns the pilots submitted."""
        self.reap()
        submitted = 0
        now = time.monotonic()
        for queue in self.queues:
            try:
                wanted = self.demand(queue, now)
            except (requests.RequestException, ValueError, KeyError) as exc:
                log.warning("queue %s: no demand answer: %s", queue, exc)
                continue
            for _ in range(max(0, min(wanted, self.max_pilots - self.alive()))):
                self.submit(queue, now)
                submitted += 1
        return submitted

    def stop(self, timeout_s: float = 60.0) -> None:
        """Pass SIGTERM to our own pilots (by PID) and wait for them to report."""
        for procs in self.live.values():
            for process, _ in procs:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for procs in self.live.values():
            for process, _ in procs:
                try:
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()
        self.reap()


def run_factory(args: argparse.Namespace) -> int:
    """The ``netbroker-pilot factory`` command; exit status 0 on a clean stop."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s factory %(message)s")
    factory = Factory(args.server.rstrip("/"), [q for q in args.queues.split(",") if q],
                      args.workdir, args.max_pilots, heartbeat_s=args.heartbeat_s,
                      label=args.label, token=args.token or os.environ.get("NETBROKER_TOKEN"))
    stop = stop_on_signals(log, logging.INFO, "signal %d: stopping the pilots")
    deadline = time.monotonic() + args.duration_s if args.duration_s else None
    idle = 0
    try:
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            submitted = factory.cycle()
            if submitted:
                log.info("submitted %d pilots (%d alive)", submitted, factory.alive())
            idle = idle + 1 if submitted == 0 and factory.alive() == 0 else 0
            if args.until_idle and idle >= 2:
                log.info("no demand and no pilot alive: done")
                break
            stop.wait(args.cycle_s)
    finally:
        factory.stop()
    log.info("%d pilots started in all", factory.started)
    return 0

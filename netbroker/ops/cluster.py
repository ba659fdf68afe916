"""Several netbroker servers over one database behind HAProxy, on one machine.

The PanDA model: stateless server processes on any number of hosts, one
database, a load balancer in front. :class:`LocalCluster` starts that shape
on 127.0.0.1 for the tests, the drill and ``bench/cluster.py``: ``n``
``netbroker serve`` processes (each with its cycles scheduled; the leases
make one run each cycle) and Debian's ``haproxy`` in front, health-checking
them on ``/healthz``, retrying a request that could not reach a server on
another, and draining a server (its runtime socket) before it is restarted.
The HAProxy configuration it writes is ``deploy/haproxy.cfg``'s, with the
ports filled in.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

from netbroker.ops.drill import start_service

__all__ = ["LocalCluster", "haproxy_config"]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def haproxy_config(front_port: int, servers: dict[str, int], admin_socket: Path) -> str:
    """``deploy/haproxy.cfg`` for ``servers`` (name -> port on 127.0.0.1) behind
    127.0.0.1:``front_port``, its runtime API on ``admin_socket``."""
    template = (DEPLOY / "haproxy.cfg").read_text()
    lines = [f"    server {name} 127.0.0.1:{port} check" for name, port in servers.items()]
    return (template.replace("@FRONT@", f"127.0.0.1:{front_port}")
            .replace("@ADMIN_SOCKET@", str(admin_socket))
            .replace("    @SERVERS@", "\n".join(lines)))


@dataclass
class LocalCluster:
    """``n`` netbroker servers on ``url`` behind HAProxy; a context manager.

    ``settings`` are ``NETBROKER_<GROUP>_<KEY>`` variables for every server
    (cycle periods, say). :attr:`url` is the balancer's; :meth:`kill`,
    :meth:`start` and :meth:`rolling_restart` act on one server by name.
    """

    database_url: str
    work: Path
    n: int = 3
    settings: dict[str, str] = field(default_factory=dict)
    cycles: bool = True
    servers: dict[str, int] = field(init=False, default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(init=False, default_factory=dict)
    front_port: int = field(init=False, default=0)
    haproxy: subprocess.Popen[bytes] | None = field(init=False, default=None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.front_port}"

    @property
    def admin_socket(self) -> Path:
        return self.work / "haproxy.sock"

    def log_of(self, name: str) -> Path:
        return self.work / f"{name}.log"

    def __enter__(self) -> LocalCluster:
        if shutil.which("haproxy") is None:
            raise RuntimeError("haproxy is not installed (Debian: apt-get install haproxy)")
        self.servers = {f"s{i + 1}": free_port() for i in range(self.n)}
        for name in self.servers:
            self.start(name)
        self.front_port = free_port()
        config = self.work / "haproxy.cfg"
        config.write_text(haproxy_config(self.front_port, self.servers, self.admin_socket))
        with (self.work / "haproxy.log").open("ab") as out:
            self.haproxy = subprocess.Popen(["haproxy", "-db", "-f", str(config)],
                                            stdout=out, stderr=subprocess.STDOUT)
        self._wait(lambda: self._up(self.url), 30, "haproxy did not answer")
        self._wait(lambda: self.healthy() == set(self.servers), 30,
                   "haproxy did not see every server healthy")
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None,
                                    TracebackType | None]) -> None:
        if self.haproxy is not None and self.haproxy.poll() is None:
            self.haproxy.terminate()
            self.haproxy.wait(timeout=30)
        for name in list(self.processes):
            self.stop(name)

    def start(self, name: str) -> None:
        """Start server ``name`` (again) on its port; returns once it answers."""
        self.processes[name] = start_service(self.database_url, self.servers[name],
                                             self.log_of(name), cycles=self.cycles,
                                             settings=self.settings)

    def stop(self, name: str) -> None:
        """Stop server ``name`` the graceful way (SIGTERM: in-flight requests end)."""
        process = self.processes.pop(name)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)

    def kill(self, name: str) -> None:
        """SIGKILL server ``name`` (our own child, by PID), as a host dies."""
        process = self.processes.pop(name)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def command(self, line: str) -> str:
        """One command to HAProxy's runtime API; its answer."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.admin_socket))
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def healthy(self) -> set[str]:
        """The servers HAProxy sends requests to now."""
        up = set()
        for row in self.command("show stat").splitlines():
            parts = row.split(",")
            if len(parts) > 17 and parts[0] == "netbroker" and parts[1] in self.servers \
                    and parts[17] == "UP":
                up.add(parts[1])
        return up

    def rolling_restart(self, name: str, drain_timeout_s: float = 30) -> None:
        """Restart ``name`` with no request lost: drained in HAProxy first (no new
        request; those in flight end), stopped, started, made ready again."""
        self.command(f"set server netbroker/{name} state drain")
        self._wait(lambda: self._current_sessions(name) == 0, drain_timeout_s,
                   f"{name} did not drain")
        self.stop(name)
        self.start(name)
        self.command(f"set server netbroker/{name} state ready")
        self._wait(lambda: name in self.healthy(), 30, f"{name} did not come back")

    def _current_sessions(self, name: str) -> int:
        for row in self.command("show stat").splitlines():
            parts = row.split(",")
            if len(parts) > 4 and parts[0] == "netbroker" and parts[1] == name:
                return int(parts[4] or 0)
        return 0

    @staticmethod
    def _up(url: str) -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    @staticmethod
    def _wait(predicate: object, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():  # type: ignore[operator]
                return
            time.sleep(0.1)
        raise RuntimeError(what)

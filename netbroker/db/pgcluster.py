"""A throwaway PostgreSQL cluster for tests, benchmarks and drills.

``initdb`` and ``pg_ctl`` refuse to run as root, so when we are root they run
as the ``postgres`` user (``runuser``), in a fresh directory that user owns.
The cluster listens only on a unix socket inside that directory (no TCP
port to collide with), trusts local connections, and is tuned for
throwaway speed (``fsync=off``): never point it at data you want to keep.

>>> bin_dir = find_postgres_bin()  # None on a machine without PostgreSQL
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PostgresCluster", "find_postgres_bin"]

_SEARCH = ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin", "/usr/pgsql-*/bin")


def find_postgres_bin() -> Path | None:
    """Directory holding ``initdb`` and ``pg_ctl``, newest version first, or None."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    found = [Path(d) for pattern in _SEARCH for d in glob.glob(pattern)]
    found = [d for d in found if (d / "initdb").exists() and (d / "pg_ctl").exists()]
    found.sort(key=lambda d: _version_key(d.parent.name), reverse=True)
    return found[0] if found else None


def _version_key(name: str) -> tuple[int, ...]:
    digits = "".join(ch if ch.isdigit() else " " for ch in name).split()
    return tuple(int(d) for d in digits) or (0,)


@dataclass
class PostgresCluster:
    """One PostgreSQL server in a temporary directory, started and stopped by us.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    :meth:`url` gives a SQLAlchemy URL for a database in it.
    """

    bin_dir: Path
    base: Path = field(init=False)
    _run_as: list[str] = field(init=False, default_factory=list)
    started: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="netbroker-pg-"))
        if os.geteuid() == 0:
            # root may not run initdb: hand the directory to postgres and run as it.
            shutil.chown(self.base, user="postgres", group="postgres")
            os.chmod(self.base, 0o700)
            self._run_as = ["runuser", "-u", "postgres", "--"]

    @property
    def socket_dir(self) -> Path:
        return self.base

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    def _pg(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [*self._run_as, str(self.bin_dir / tool), *args]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)

    def start(self) -> PostgresCluster:
        """Run initdb and start the server; returns self once it accepts connections."""
        self._pg("initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
                 "--encoding=UTF8", "--locale=C", "--no-sync")
        try:
            self._pg("pg_ctl", "-D", str(self.data_dir), "-o", self._options(), "-w", "-t",
                     "60", "-l", str(self.base / "server.log"), "start")
        except subprocess.CalledProcessError as exc:
            log = (self.base / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"PostgreSQL did not start: {exc.stderr}\n{log}") from exc
        self.started = True
        return self

    def _options(self) -> str:
        return (f"-c listen_addresses='' -c unix_socket_directories={self.socket_dir} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=200 -c shared_buffers=128MB")

    def restart(self) -> None:
        """Stop the server (fast: connections are cut) and start it again."""
        self._pg("pg_ctl", "-D", str(self.data_dir), "-o", self._options(), "-m", "fast",
                 "-w", "-t", "60", "-l", str(self.base / "server.log"), "restart")

    def stop(self) -> None:
        """Stop the server (fast) and remove its directory."""
        if self.started:
            self._pg("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")
            self.started = False
        shutil.rmtree(self.base, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of ``database`` on this cluster (over the unix socket)."""
        return f"postgresql+psycopg://postgres@/{database}?host={self.socket_dir}"

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

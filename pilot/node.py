"""What a pilot checks about its worker node before it asks for a job.

Standard library only: cores, memory, free scratch space, load, Python.
A pilot that finds the node short of what its queue promises reports that
instead of taking work it cannot finish.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["NodeReport", "check_node", "read_node"]


@dataclass(frozen=True)
class NodeReport:
    """The node as the pilot sees it. Sizes in MB (2**20 bytes)."""

    hostname: str
    cores: int
    memory_mb: int
    workdir: str
    workdir_free_mb: int
    load_1min: float
    python: str
    platform: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _memory_mb(meminfo: Path = Path("/proc/meminfo")) -> int:
    """Total memory in MB from /proc/meminfo (Linux), else 0 when unknown."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _usable_cores() -> int:
    """Cores this process may run on (the batch slot's, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def read_node(workdir: Path) -> NodeReport:
    """Measure the node; ``workdir`` is where the payload would run."""
    return NodeReport(
        hostname=socket.gethostname(),
        cores=_usable_cores(),
        memory_mb=_memory_mb(),
        workdir=str(workdir),
        workdir_free_mb=shutil.disk_usage(workdir).free // 2**20,
        load_1min=os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0,
        python=sys.version.split()[0],
        platform=platform.platform(),
    )


def check_node(report: NodeReport, min_disk_mb: int = 0, min_memory_mb: int = 0,
               min_cores: int = 1) -> list[str]:
    """Return why the node cannot take a job needing these resources (empty: it can).

    >>> r = NodeReport("wn1", 8, 16000, "/tmp", 5000, 0.5, "3.11.7", "Linux")
    >>> check_node(r, min_disk_mb=6000)
    ['free space in /tmp is 5000 MB, the job needs 6000 MB']
    """
    problems = []
    if report.cores < min_cores:
        problems.append(f"{report.cores} usable cores, the job needs {min_cores}")
    if report.memory_mb and report.memory_mb < min_memory_mb:
        problems.append(f"{report.memory_mb} MB of memory, the job needs {min_memory_mb} MB")
    if report.workdir_free_mb < min_disk_mb:
        problems.append(f"free space in {report.workdir} is {report.workdir_free_mb} MB, "
                        f"the job needs {min_disk_mb} MB")
    return problems

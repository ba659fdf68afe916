"""Every bench script still runs: tiny sizes, one bench line per measure.

The benchmarks reach into the storage layer to load their data fast, so a
change there can break them without breaking anything else; this runs each
at a size of seconds and checks the lines it prints, not the speed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from netbroker.db.pgcluster import find_postgres_bin
from netbroker.ops.brokers import find_activemq

BENCH = Path(__file__).resolve().parent.parent / "bench"

CASES = {
    "ingest.py": (["--records", "3000"], ["ingest.fts", "ingest.perfsonar", "ingest.xrootd"]),
    "matrix.py": (["--sites", "30"], ["matrix.30", "matrix.30.rows"]),
    "clouds.py": (["--sites", "40"], ["clouds.40"]),  # named by its size
    "pd2p.py": (["--datasets", "300", "--sites", "30"], ["pd2p.cycle"]),
    "brokerage.py": (["--sites", "30", "--tasks", "10", "--jobs-per-task", "5"],
                     ["brokerage.jobs", "brokerage.jobs_stored",
                      "brokerage.jobs_stored.postgresql"]),
    "dispatch.py": (["--only", "sqlite", "--jobs", "30000", "--queues", "5", "--seconds", "2",
                     "--rounds", "1", "--min-cycle-runs", "0"],
                    ["dispatch.sqlite", "dispatch.sqlite.p99_ms"]),
    "cluster.py": (["--jobs", "20000", "--queues", "5", "--seconds", "2", "--rounds", "1",
                    "--servers", "1,2"], ["cluster.dispatch.1", "cluster.dispatch.1.db_cpu",
                                          "cluster.dispatch.2", "cluster.dispatch.2.db_cpu"]),
    "broker.py": (["--messages", "300"], ["ingest.stomp"]),
}


@pytest.mark.parametrize("script", list(CASES))
def test_bench_script_prints_its_measures(script: str) -> None:
    args, names = CASES[script]
    if script == "broker.py" and find_activemq() is None:
        if os.environ.get("NETBROKER_REQUIRE_BROKER") == "1":
            pytest.fail("NETBROKER_REQUIRE_BROKER=1 but ActiveMQ (or Java) is missing")
        pytest.skip("ActiveMQ not installed (Debian: activemq)")
    if script == "cluster.py":  # as tests/test_cluster.py: a real balancer, or a failure
        if shutil.which("haproxy") is None:
            pytest.fail("haproxy is needed (Debian: apt-get install haproxy)")
        if find_postgres_bin() is None:
            if os.environ.get("NETBROKER_REQUIRE_POSTGRES") == "1":
                pytest.fail("NETBROKER_REQUIRE_POSTGRES=1 but no PostgreSQL binaries")
            pytest.skip("no PostgreSQL binaries")
    done = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True,
                          text=True, timeout=300, cwd=BENCH)
    assert done.returncode == 0, done.stderr[-3000:]
    if find_postgres_bin() is None:  # the scripts measure PostgreSQL where it is
        names = [name for name in names if "postgresql" not in name]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [line["bench"] for line in lines] == names, done.stdout
    for line in lines:
        assert set(line) >= {"bench", "value", "unit", "baseline", "ratio", "goal"}
        assert line["value"] > 0 and line["baseline"] > 0

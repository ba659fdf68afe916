"""``netbroker ingest`` and ``matrix --at`` as a user runs them on published files (real processes).

The files are tests/data's, a year and more old: read as published, they are too
old for the raw retention, a backfill keeps them, and the matrix of their day is
read with ``--at``.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_cli import netbroker

DATA = Path(__file__).parent / "data"


def test_nothing_usable_exits_1_and_still_prints_the_report(db_url: str) -> None:
    assert netbroker("grid", "import", "--sample", url=db_url).returncode == 0
    done = netbroker("ingest", "perfsonar", str(DATA / "perfsonar" / "esmond_metadata.json"),
                     "--json", url=db_url)
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["records"]["read"] == report["records"]["not_a_link"] == 4
    assert report["shapes"] == {"esmond metadata list": 4}
    assert done.stderr.strip().splitlines()[-1].startswith("error: nothing usable read")
    assert "Traceback" not in done.stderr


def test_old_files_are_refused_as_too_old_then_backfilled_and_read_at_their_time(
        db_url: str) -> None:
    assert netbroker("grid", "import", "--sample", url=db_url).returncode == 0
    path = str(DATA / "fts" / "pretty_printed.json")
    refused = netbroker("ingest", "fts", path, url=db_url)
    assert refused.returncode == 1
    assert "2 too old" in refused.stdout and "--backfill" in refused.stderr
    kept = netbroker("ingest", "fts", path, "--backfill", url=db_url)
    assert kept.returncode == 0, kept.stderr
    assert "2 records read" in kept.stdout and "2 stored" in kept.stdout
    assert "multi-line JSON document 2" in kept.stdout
    csv = netbroker("matrix", "--source", "fts", "--window", "1h", "--format", "csv",
                    "--at", "2025-11-20T10:05:00", url=db_url).stdout.splitlines()
    header, *rows = csv
    columns = header.split(",")
    cern = dict(zip(columns, next(r for r in rows if r.startswith("CERN-PROD,")).split(","),
                    strict=True))
    assert cern["FZK-LCG2"] == "100.0"  # 4e9 bytes in 40 s
    bad = netbroker("matrix", "--at", "last tuesday", url=db_url)
    assert bad.returncode == 2 and "--at 'last tuesday' is not an ISO-8601 time" in bad.stderr


def test_esmond_points_are_read_with_their_metadata_and_uri(db_url: str) -> None:
    assert netbroker("grid", "import", "--sample", url=db_url).returncode == 0
    uri = ("https://ps-archive.example.org/esmond/perfsonar/archive/"
           "a1b2c3d4e5f60718293a4b5c6d7e8f90/throughput/averages/86400")
    done = netbroker("ingest", "perfsonar",
                     str(DATA / "perfsonar" / "esmond_throughput_averages_86400.json"),
                     "--esmond-metadata", str(DATA / "perfsonar" / "esmond_metadata.json"),
                     "--esmond-uri", uri, "--since", "2025-11-01", "--json", url=db_url)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    # 4 points: 3 with a value (desy -> cern), one null
    assert (report["records"]["stored"], report["records"]["rejected"]) == (3, 1)
    assert report["kept_from"] == "2025-11-01T00:00:00+00:00"
    assert report["shapes"] == {"esmond points (throughput averages/86400)": 4}

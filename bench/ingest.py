"""ingest.fts: FTS transfer-completion records per second into SQLite, vs parse-only.

Generates N records (default 1,000,000) in the real FTS message format
between the sample grid's storage endpoints, then measures in the same run
(a) ``json.loads`` of every line alone (the baseline: no validation, no
storage; measured before and after (b), averaged) and (b) the full
ingestion: parse, validate, map hosts to sites, insert samples, fold
buckets (a batch this large is parsed in a second process while the first
writes: ``collectors.parsing``). Prints ``ingest.fts`` with the ratio (b)/(a).

    python bench/ingest.py [--records N]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time

from _common import emit, sqlite_grid

from collectors.ingest import ingest
from netbroker import registry

T0_MS = 1_795_514_400_000


def fts_lines(n: int, seed: int = 1) -> bytes:
    """``n`` FTS messages, one per line, between random disk endpoints of the sample grid."""
    grid = json.loads(registry.sample_grid_path().read_text())
    disks = sorted(name for name, e in grid["ddmendpoint"].items() if not e["is_tape"])
    rng = random.Random(seed)
    base = {"endpnt": "fts3-atlas.cern.ch", "vo": "atlas", "retry": 0, "retry_max": 3,
            "activity": "Production Input", "protocol": "davs", "nstreams": 1,
            "t_error_code": "", "tr_error_category": "", "t__error_message": "",
            "job_metadata": {"issuer": "rucio"}, "throughput": -1}
    lines = []
    for i in range(n):
        src, dst = rng.sample(disks, 2)
        start = T0_MS - rng.randrange(0, 86_400_000)
        size = rng.randrange(10**8, 4 * 10**9)
        ok = rng.random() < 0.9
        lines.append(json.dumps({
            **base, "tr_id": f"2026-11-24-0{i % 10}00__{src}__{dst}__{i}__job{i // 10}",
            "job_id": f"job{i // 10}", "file_id": str(i),
            "src_se": f"davs://{src.lower()}.example", "dst_se": f"davs://{dst.lower()}.example",
            "file_metadata": {"src_rse": src, "dst_rse": dst, "scope": "mc23_13p6TeV",
                              "name": f"EVNT.{i:08d}.pool.root.1", "filesize": size},
            "t_final_transfer_state": "Ok" if ok else "Error",
            "timestamp_tr_st": start, "timestamp_tr_comp": start + rng.randrange(2000, 120_000),
            "file_size": size, "tr_bt_transfered": size if ok else 0}))
    return ("\n".join(lines) + "\n").encode()


def parse_only(data: bytes, n: int) -> float:
    """``json.loads`` of every line: records per second."""
    started = time.perf_counter()
    for line in data.splitlines():
        json.loads(line)
    return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    n = parser.parse_args().records
    data = fts_lines(n)
    before = parse_only(data, n)
    engine = sqlite_grid()
    started = time.perf_counter()
    report = ingest(engine, "fts", data, now_s=T0_MS / 1000 + 3600)
    full = n / (time.perf_counter() - started)
    # The baseline before and after the ingestion, averaged: on these shared hosts
    # the speed of the machine drifts within a minute, and one side alone would
    # carry the drift into the ratio.
    after = parse_only(data, n)
    print(f"parse-only {before:,.0f} and {after:,.0f} records/s; ingest {full:,.0f} records/s",
          file=sys.stderr)
    assert report.stored == report.samples and not report.rejected, report.as_dict(5)
    emit("ingest.fts", full, "records/s", (before + after) / 2, ">= 0.3")


if __name__ == "__main__":
    main()

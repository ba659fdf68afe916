"""ingest.fts, ingest.perfsonar, ingest.xrootd: records per second into SQLite, vs parse-only.

For each source, generates N records (default 1,000,000) in one of its real
published shapes between the sample grid's sites, then measures in the same
run (a) decoding the input with the stdlib ``json`` alone (the baseline: no
validation, no storage; measured before and after (b), averaged) and (b) the
full ingestion: read, validate, map hosts to sites, insert samples, fold
buckets (a batch this large is parsed in a second process while the first
writes: ``collectors.parsing``). Prints one line per measure, with the
ratio (b)/(a).

- ``ingest.fts``: FTS transfer-complete messages, one per line (Rucio's RSEs);
- ``ingest.perfsonar``: esmond bundles as ``netbroker collect`` assembles them
  (metadata, then points by URI): one-way-delay histograms of 600 packets,
  packet-loss rates and throughput, a record a point;
- ``ingest.xrootd``: MONIT/GLED per-file records in their envelopes, one per line.

    python bench/ingest.py [--records N] [--only fts|perfsonar|xrootd]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable

from _common import emit, sqlite_grid

from collectors.ingest import ingest
from netbroker.registry import registry

T0_MS = 1_795_514_400_000
_GRID = json.loads(registry.sample_grid_path().read_text())


def fts_lines(n: int, seed: int = 1) -> bytes:
    """``n`` FTS messages, one per line, between random disk endpoints of the sample grid."""
    disks = sorted(name for name, e in _GRID["ddmendpoint"].items() if not e["is_tape"])
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


def esmond_bundles(n: int, seed: int = 2, points_per_series: int = 1440) -> tuple[bytes, int]:
    """``n`` esmond points in bundles of one metadata object each (as a pull assembles
    them), between the perfSONAR hosts of random site pairs, one JSON document a line.

    Per metadata object: a day of one-minute ``histogram-owdelay`` points (600 packets
    over ~25 buckets of 0.01 ms, as powstream writes) and ``packet-loss-rate`` points;
    every tenth object a throughput test instead (a point every two hours). Returns
    the bundles and the number of points (``n``, or one more when the last object's
    two series split it unevenly).
    """
    hosts = sorted((h, s) for s, site in _GRID["site"].items()
                   for h in site.get("perfsonar_hosts", []))
    rng = random.Random(seed)
    arch = "/esmond/perfsonar/archive"
    lines, made, key = [], 0, 0
    while made < n:
        (src, _), (dst, _) = rng.sample(hosts, 2)
        key += 1
        meta_key = f"{key:032x}"
        throughput = key % 10 == 0
        events = ["throughput"] if throughput else ["histogram-owdelay", "packet-loss-rate"]
        meta = {"metadata-key": meta_key, "source": "192.0.2.1", "destination": "192.0.2.2",
                "input-source": src, "input-destination": dst, "subject-type": "point-to-point",
                "tool-name": "pscheduler/iperf3" if throughput else "pscheduler/powstream",
                "event-types": [{"event-type": e, "base-uri": f"{arch}/{meta_key}/{e}/base",
                                 "summaries": []} for e in events]}
        data = {}
        count = min(12 if throughput else points_per_series, max(1, (n - made) // len(events)))
        t0 = T0_MS // 1000 - 86400
        for event in events:
            step = 7200 if throughput else 60
            data[f"{arch}/{meta_key}/{event}/base"] = [
                {"ts": t0 + step * i, "val": _esmond_value(event, rng)} for i in range(count)]
            made += count
        lines.append(json.dumps({"metadata": [meta], "data": data}))
    return ("\n".join(lines) + "\n").encode(), made


def _esmond_value(event: str, rng: random.Random) -> object:
    if event == "throughput":
        return rng.uniform(1e9, 9.4e9)
    if event == "packet-loss-rate":
        return rng.choice([0.0, 0.0, 0.0, 1 / 600, 2 / 600])
    base = rng.uniform(1.0, 150.0)
    counts = [rng.randrange(1, 60) for _ in range(25)]
    scale = 600 / sum(counts)
    return {f"{base + 0.01 * i:.2f}": max(1, round(c * scale)) for i, c in enumerate(counts)}


def gled_lines(n: int, seed: int = 3) -> bytes:
    """``n`` MONIT/GLED per-file records in their envelopes, one per line: remote reads
    between the storage hosts and the network domains of random site pairs."""
    sites = [(name, site["domains"]) for name, site in sorted(_GRID["site"].items())
             if site.get("domains")]
    rng = random.Random(seed)
    meta = {"event_timestamp": T0_MS, "hostname": "monit-amqsource-fafa51de8d.cern.ch",
            "producer": "xrootd", "topic": "xrootd_raw_gled", "type": "gled",
            "type_prefix": "raw", "version": "003"}
    zeros = {k: 0 for k in ("read_average", "read_max", "read_min", "read_operations",
                            "read_sigma", "read_single_average", "read_single_bytes",
                            "read_single_max", "read_single_min", "read_single_operations",
                            "read_single_sigma", "read_vector_average", "read_vector_bytes",
                            "read_vector_count_average", "read_vector_count_max",
                            "read_vector_count_min", "read_vector_count_sigma",
                            "read_vector_max", "read_vector_min", "read_vector_operations",
                            "read_vector_sigma", "write_average", "write_bytes",
                            "write_bytes_at_close", "write_max", "write_min",
                            "write_operations", "write_sigma")}
    lines = []
    for i in range(n):
        (_, server), (_, client) = rng.sample(sites, 2)
        end = T0_MS - rng.randrange(0, 86_400_000)
        took = rng.randrange(2_000, 900_000)
        size = rng.randrange(10**7, 4 * 10**9)
        lines.append(json.dumps({"data": {
            **zeros, "activity": "r", "app_info": "", "client_domain": client[0],
            "client_host": f"wn{i % 997:03d}", "end_time": end,
            "file_lfn": f"/atlas/rucio/mc23_13p6TeV/{i % 256:02x}/AOD.{i:08d}.pool.root.1",
            "file_size": size, "is_transfer": True, "operation_time": took // 1000,
            "read_bytes": 0, "read_bytes_at_close": size, "remote_access": True,
            "server_domain": server[0], "server_host": f"xrootd{i % 31:02d}",
            "server_username": "", "start_time": end - took,
            "throughput": size / (took / 1000), "unique_id": f"{i:08x}-1d90-11f0-9717-{seed}",
            "user": "", "user_dn": "", "user_fqan": "", "user_role": "", "vo": "atlas"},
            "metadata": meta}))
    return ("\n".join(lines) + "\n").encode()


def parse_only(data: bytes, n: int) -> float:
    """The stdlib ``json`` decoding every line of ``data``: records per second."""
    started = time.perf_counter()
    for line in data.splitlines():
        json.loads(line)
    return n / (time.perf_counter() - started)


def measure(name: str, source: str, data: bytes, n: int,
            check: Callable[[object], None]) -> None:
    """One measure: parse-only before and after the ingestion, averaged, as its baseline."""
    before = parse_only(data, n)
    engine = sqlite_grid()
    started = time.perf_counter()
    report = ingest(engine, source, data, now_s=T0_MS / 1000 + 3600)
    full = n / (time.perf_counter() - started)
    # The baseline before and after the ingestion, averaged: on these shared hosts
    # the speed of the machine drifts within a minute, and one side alone would
    # carry the drift into the ratio.
    after = parse_only(data, n)
    print(f"{name}: parse-only {before:,.0f} and {after:,.0f} records/s; ingest {full:,.0f} "
          f"records/s", file=sys.stderr)
    check(report)
    emit(name, full, "records/s", (before + after) / 2, ">= 0.3")


def _all_stored(n: int) -> Callable[[object], None]:
    def check(report: object) -> None:
        records = report.records  # type: ignore[attr-defined]
        assert records.read == records.stored == n, report.as_dict(5)  # type: ignore[attr-defined]
    return check


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--only", choices=("fts", "perfsonar", "xrootd"))
    args = parser.parse_args()
    n = args.records
    if args.only in (None, "fts"):
        measure("ingest.fts", "fts", fts_lines(n), n, _all_stored(n))
    if args.only in (None, "perfsonar"):
        data, points = esmond_bundles(n)
        measure("ingest.perfsonar", "perfsonar", data, points, _all_stored(points))
    if args.only in (None, "xrootd"):
        measure("ingest.xrootd", "xrootd", gled_lines(n), n, _all_stored(n))


if __name__ == "__main__":
    main()

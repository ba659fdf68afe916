"""The demo's network measurements, written in the sources' own formats.

Each generator returns the text a real source would send: FTS
transfer-completion messages (one JSON object per line, timestamps in ms),
pScheduler latency results as archived to OpenSearch (packet loss as a
fraction, delay in ms buckets), and federated-XRootD cost-matrix reads
(rate in MB/s, timestamps in ms). They go through the service's
``POST /api/v1/metrics/{source}`` like any collector's batch.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

import numpy as np

__all__ = ["Link", "cost_matrix_lines", "fts_lines", "latency_docs"]

Link = tuple[str, str, float]  # (source, destination, MB/s or loss fraction)
GB = 1_000_000_000


def fts_lines(links: Iterable[Link], per_link: int, start_s: float, end_s: float,
              rng: np.random.Generator, tag: str) -> str:
    """``per_link`` finished FTS transfers per (src RSE, dst RSE, MB/s), spread in time.

    File sizes vary from 0.5 to 4 GB; each transfer's rate scatters 10%
    around the link's.

    >>> text = fts_lines([("A_DATADISK", "B_DATADISK", 50.0)], 2, 0.0, 600.0,
    ...                  np.random.default_rng(0), "t")
    >>> [json.loads(line)["file_metadata"]["dst_rse"] for line in text.splitlines()]
    ['B_DATADISK', 'B_DATADISK']
    """
    out = []
    for src, dst, rate in links:
        ends = np.sort(rng.uniform(start_s, end_s, per_link))
        for i, end in enumerate(ends):
            size = int(rng.uniform(0.5, 4.0) * GB)
            mbps = max(0.05, rate * rng.normal(1.0, 0.1))
            duration_ms = max(1, round(size / (mbps * 1e6) * 1000))
            end_ms = int(end * 1000)
            out.append(json.dumps({
                "tr_id": f"{tag}__{src}__{dst}__{i}__{end_ms}", "vo": "atlas",
                "endpnt": "fts3-demo.example.org", "t_final_transfer_state": "Ok",
                "src_se": f"davs://{src.lower()}.example", "dst_se": f"davs://{dst.lower()}.example",
                "file_metadata": {"src_rse": src, "dst_rse": dst, "activity": "Demo"},
                "timestamp_tr_st": end_ms - duration_ms, "timestamp_tr_comp": end_ms,
                "file_size": size, "tr_bt_transfered": size, "throughput": -1}))
    return "\n".join(out)


def latency_docs(links: Iterable[Link], at_s: float, rng: np.random.Generator) -> str:
    """One pScheduler ``latency`` result per (src host, dst host, loss fraction), as
    OpenSearch stores it (JSON lines)."""
    out = []
    stamp = datetime.fromtimestamp(at_s, UTC).isoformat().replace("+00:00", "Z")
    for src, dst, loss in links:
        sent = 600
        lost = round(loss * sent)
        out.append(json.dumps({
            "@timestamp": stamp, "meta": {"source": {"hostname": src},
                                          "destination": {"hostname": dst}},
            "pscheduler": {"end_time": stamp, "tool": "owping",
                           "run_id": str(uuid.UUID(int=int(rng.integers(0, 2**63))))},
            "test": {"type": "latencybg", "spec": {"source": src, "dest": dst}},
            "result": {"succeeded": True,
                       "packets": {"sent": sent, "lost": lost, "loss": lost / sent},
                       "latency": {"median": float(rng.uniform(5, 40))}}}))
    return "\n".join(out)


def cost_matrix_lines(links: Iterable[Link], at_s: float) -> str:
    """One federated-XRootD cost-matrix read per (src site, dst site, MB/s)."""
    return "\n".join(json.dumps({"source": src, "destination": dst, "rate": f"{rate:.4f}",
                                 "timestamp": int(at_s * 1000)}) for src, dst, rate in links)

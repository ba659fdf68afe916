"""Test data made on the fly, in the sources' real formats."""

from __future__ import annotations

import json
import time
from pathlib import Path

DATA = Path(__file__).parent / "data"
LAST_FTS_END_MS = 1795514580000  # the latest timestamp_tr_comp in transfer_complete.jsonl


def recent_fts_lines(ended_s_ago: float = 60.0) -> bytes:
    """The FTS test messages moved so that the last ended ``ended_s_ago`` seconds ago.

    Ingestion refuses samples older than the raw retention, counted from the
    real clock; tests that go through the API or the CLI use these.
    """
    shift = int((time.time() - ended_s_ago) * 1000) - LAST_FTS_END_MS
    out = []
    for line in (DATA / "fts" / "transfer_complete.jsonl").read_text().splitlines():
        msg = json.loads(line)
        for key in ("timestamp_tr_st", "timestamp_tr_comp", "tr_timestamp_start",
                    "tr_timestamp_complete"):
            msg[key] += shift
        out.append(json.dumps(msg))
    return "\n".join(out).encode()


def fts_transfers(src_rse: str, dst_rse: str, mbytes_per_s: float, n: int, end_s: float,
                  tag: str = "t") -> str:
    """``n`` finished FTS transfers of 1 GB at ``mbytes_per_s``, ending a minute apart
    up to ``end_s``: JSON lines in the transfer-complete format, Rucio RSEs named."""
    size = 1_000_000_000
    duration_ms = round(size / (mbytes_per_s * 1e6) * 1000)
    lines = []
    for i in range(n):
        end_ms = int((end_s - 60 * i) * 1000)
        lines.append(json.dumps({
            "tr_id": f"{tag}-{src_rse}-{dst_rse}-{end_ms}-{i}", "vo": "atlas",
            "endpnt": "fts3-atlas.cern.ch", "src_se": "davs://src.example",
            "dst_se": "davs://dst.example", "t_final_transfer_state": "Ok",
            "file_metadata": {"src_rse": src_rse, "dst_rse": dst_rse},
            "timestamp_tr_st": end_ms - duration_ms, "timestamp_tr_comp": end_ms,
            "file_size": size, "tr_bt_transfered": size, "throughput": -1}))
    return "\n".join(lines)

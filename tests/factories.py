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

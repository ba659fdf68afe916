"""ingest.stomp: FTS messages taken from a real ActiveMQ, against the same messages from a file.

Starts a throwaway ActiveMQ (Debian's ``activemq``, ``netbroker.ops.brokers``),
publishes N FTS transfer-completion messages (persistent, to the topic FTS
publishes to, for a durable subscription made first), then times, in the same
run, (a) ``collectors.stomp.collect_stomp`` taking, ingesting and
acknowledging all of them (the default batches) into a SQLite database and
(b) the baseline: ``collectors.ingest.ingest`` of the same messages as one
JSON lines file into another. Prints ``ingest.stomp`` in records/s with the
ratio (a)/(b). No goal: the ratio is the broker path's share (receiving each
frame and acknowledging each message, in stomp.py's Python loop).

    python bench/broker.py [--messages N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from _common import emit, sqlite_grid

from collectors.ingest import ingest
from collectors.stomp import FTS_TOPIC, collect_stomp
from netbroker.common.config import CollectorSettings
from netbroker.ops.brokers import ActiveMQ, find_activemq


def messages(n: int) -> list[bytes]:
    end_ms = int(time.time() * 1000) - 120_000
    return [json.dumps({
        "tr_id": f"bench-stomp-{i}", "vo": "atlas", "t_final_transfer_state": "Ok",
        "file_metadata": {"src_rse": "FZK-LCG2_DATADISK", "dst_rse": "DESY-HH_DATADISK"},
        "timestamp_tr_st": end_ms - 20_000 - i, "timestamp_tr_comp": end_ms - i,
        "file_size": 2_000_000_000, "tr_bt_transfered": 2_000_000_000}).encode() + b" "
        for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20_000)
    n = parser.parse_args().messages
    if find_activemq() is None:
        print("ingest.stomp: ActiveMQ not installed (Debian: activemq)", file=sys.stderr)
        sys.exit(1)
    import stomp

    bodies = messages(n)
    with ActiveMQ() as broker:
        brokers = [("127.0.0.1", broker.port)]
        engine = sqlite_grid()
        collect_stomp(engine, brokers, until_idle_s=1)  # the durable subscription
        conn = stomp.Connection(brokers, auto_decode=False)
        conn.connect(wait=True)
        for body in bodies:
            conn.send(FTS_TOPIC, body, headers={"persistent": "true"})
        conn.disconnect()
        started = time.perf_counter()
        settings = CollectorSettings()
        report = collect_stomp(engine, brokers, batch_messages=settings.stomp_batch_messages,
                               batch_wait_s=settings.stomp_batch_wait_s, until_idle_s=1.0)
        # The wait for the broker to say it has nothing more is not ingestion.
        took = time.perf_counter() - started - 1.0
    assert report.records.stored == n, report.as_dict()
    baseline_engine = sqlite_grid()
    started = time.perf_counter()
    file_report = ingest(baseline_engine, "fts", b"\n".join(bodies))
    file_took = time.perf_counter() - started
    assert file_report.records.stored == n
    emit("ingest.stomp", n / took, "records/s", n / file_took, "none (the broker's share)")


if __name__ == "__main__":
    main()

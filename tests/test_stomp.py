"""FTS messages from a real ActiveMQ (Debian's), as FTS publishes them, through
``netbroker collect stomp``: nothing lost and nothing counted twice when the
collector is killed mid-stream and the broker restarted; a malformed message
reported and acknowledged, never delivered again. Both backends.

The collector runs as its own process (as deployed), so it can be SIGKILLed;
the durable subscription keeps what is published while it is away.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from collectors.stomp import FTS_TOPIC
from netbroker.db.schema import metric_samples
from netbroker.ops.brokers import ActiveMQ, find_activemq

pytestmark = [pytest.mark.broker, pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def broker() -> Iterator[ActiveMQ]:
    if find_activemq() is None:
        if os.environ.get("NETBROKER_REQUIRE_BROKER") == "1":
            pytest.fail("NETBROKER_REQUIRE_BROKER=1 but ActiveMQ (or Java) is missing")
        pytest.skip("ActiveMQ not installed (Debian: activemq)")
    with ActiveMQ() as amq:
        yield amq


def fts_message(i: int, end_s: float) -> dict[str, Any]:
    end_ms = int(end_s * 1000) - i
    return {"tr_id": f"stomp-{i}", "vo": "atlas", "t_final_transfer_state": "Ok",
            "src_se": "davs://atlaswebdav-kit.gridka.de", "dst_se": "root://se.desy.de",
            "file_metadata": {"src_rse": "FZK-LCG2_DATADISK", "dst_rse": "DESY-HH_DATADISK"},
            "timestamp_tr_st": end_ms - 20_000, "timestamp_tr_comp": end_ms,
            "file_size": 2_000_000_000, "tr_bt_transfered": 2_000_000_000, "throughput": -1}


def bodies(first: int, n: int) -> tuple[list[bytes], set[str], int]:
    """``n`` message bodies in FTS's forms; the valid transfer ids; how many are bad.

    Every 7th is not JSON at all (its id never stored); every 11th is JSON but
    no transfer FTS could send (no file size: rejected by ingestion)."""
    out, valid, bad = [], set(), 0
    end_s = time.time() - 120
    for i in range(first, first + n):
        msg = fts_message(i, end_s)
        if i % 7 == 0:
            out.append(b'{"tr_id": "stomp-%d", "vo": "atlas", truncated' % i)
            bad += 1
            continue
        if i % 11 == 0:
            del msg["file_size"]
            bad += 1
        else:
            valid.add(msg["tr_id"])
        text = json.dumps(msg, indent=2 if i % 3 == 0 else None).encode()
        out.append(text + (b"\x04" if i % 2 else b" "))  # EOT (old FTS) or a space (>= 3.6)
    return out, valid, bad


def publish(port: int, messages: list[bytes]) -> None:
    import stomp

    conn = stomp.Connection([("127.0.0.1", port)], auto_decode=False)
    conn.connect(wait=True)
    for body in messages:
        conn.send(FTS_TOPIC, body, headers={"persistent": "true"})
    conn.disconnect()


def collector(db_url: str, port: int, until_idle_s: float) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETBROKER_")}
    env["NETBROKER_DATABASE_URL"] = db_url
    env["NETBROKER_COLLECTORS_STOMP_BATCH_MESSAGES"] = "50"
    env["NETBROKER_COLLECTORS_STOMP_BATCH_WAIT_S"] = "0.5"
    return subprocess.Popen([sys.executable, "-m", "netbroker", "collect", "stomp",
                             "--broker", f"127.0.0.1:{port}", "--until-idle",
                             str(until_idle_s), "--json"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def stored_ids(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return {o.rsplit(":", 1)[0] for o in conn.execute(
            sa.select(metric_samples.c.origin_id).where(
                metric_samples.c.origin_id.like("stomp-%"))).scalars()}


def test_killed_collector_and_restarted_broker_lose_and_double_nothing(
        grid_engine: Engine, db_url: str, broker: ActiveMQ) -> None:
    # First contact makes the durable subscription; nothing to read yet.
    first = collector(db_url, broker.port, 1)
    out, errors = first.communicate(timeout=120)
    assert first.returncode == 0, errors
    assert json.loads(out)["messages"] == 0
    early, valid_a, _ = bodies(1, 400)
    publish(broker.port, early)
    running = collector(db_url, broker.port, 60)
    deadline = time.monotonic() + 120
    while len(stored_ids(grid_engine)) < 80 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(running.pid, signal.SIGKILL)  # our own child, mid-stream
    running.communicate(timeout=30)
    taken = stored_ids(grid_engine)
    assert 80 <= len(taken) < len(valid_a)  # killed with work left
    broker.restart()
    late, valid_b, _ = bodies(401, 200)
    publish(broker.port, late)
    last = collector(db_url, broker.port, 3)
    out, errors = last.communicate(timeout=300)
    assert last.returncode == 0, errors
    report = json.loads(out)
    # Every valid transfer stored once: two samples each (throughput and success).
    assert stored_ids(grid_engine) == valid_a | valid_b
    with grid_engine.connect() as conn:
        samples = conn.execute(sa.select(sa.func.count()).select_from(metric_samples)
                               .where(metric_samples.c.origin_id.like("stomp-%"))).scalar()
    assert samples == 2 * len(valid_a | valid_b)
    # The last run took what the killed one had not acknowledged, and the rest: its
    # messages add up (records read, and the bodies that were no JSON document).
    assert report["messages"] == report["acknowledged"]
    assert report["records"]["read"] + len(report["malformed"]) == report["messages"]
    assert report["records"]["read"] == sum(
        report["records"][k] for k in ("stored", "duplicate", "unmapped", "too_old",
                                       "not_a_link", "rejected"))
    assert all("not a JSON document" in m["reason"] for m in report["malformed"])
    assert len(report["malformed"]) >= sum(1 for i in range(401, 601) if i % 7 == 0)
    # Nothing is left at the broker: acknowledged, malformed ones included.
    again = collector(db_url, broker.port, 2)
    out, errors = again.communicate(timeout=120)
    assert again.returncode == 0, errors
    assert json.loads(out)["messages"] == 0

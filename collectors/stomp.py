"""FTS transfer-completion messages from a message broker (STOMP), as ATLAS takes them.

FTS publishes one message per finished transfer to the topic
``transfer.fts_monitoring_complete``. :func:`collect_stomp` subscribes with
stomp.py (a durable subscription, so messages published while netbroker is
down wait for it; or a queue), takes the messages in batches, ingests each
batch through the same ingestion as files (``collectors.ingest``), and
acknowledges every message of a batch only once its samples are committed
(``client-individual``). So delivery is at least once and ingestion
idempotent (the transfer id is the key): a message redelivered after a crash
or a broker restart is counted a duplicate, never stored twice. A message that
is not a JSON document is rejected, said with its message id, and
acknowledged too: it would never become readable by being delivered again.

Bodies arrive as FTS sends them: a JSON object, possibly pretty-printed,
possibly ending with one extra space (FTS >= 3.6) or an EOT byte (older).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy.engine import Engine

from collectors.ingest import IngestReport, RecordCounts, ingest
from netbroker.common.config import MetricsSettings

__all__ = ["FTS_TOPIC", "StompReport", "collect_stomp", "fts_records"]

log = logging.getLogger(__name__)

FTS_TOPIC = "/topic/transfer.fts_monitoring_complete"


@dataclass
class StompReport:
    """What a run took: messages received and acknowledged, the records they made
    (as ingestion counted them, summed over the batches), and the bodies that
    were no JSON document (message id, why). ``records.read`` plus ``malformed``
    is every message taken."""

    messages: int = 0
    acknowledged: int = 0
    batches: int = 0
    reconnects: int = 0
    records: RecordCounts = field(default_factory=RecordCounts)
    samples_stored: int = 0
    malformed: list[tuple[str, str]] = field(default_factory=list)

    def add(self, report: IngestReport) -> None:
        for name in vars(self.records):
            setattr(self.records, name, getattr(self.records, name)
                    + getattr(report.records, name))
        self.samples_stored += report.stored

    def as_dict(self) -> dict[str, Any]:
        return {"messages": self.messages, "acknowledged": self.acknowledged,
                "batches": self.batches, "reconnects": self.reconnects,
                "records": vars(self.records), "samples_stored": self.samples_stored,
                "malformed": [{"message_id": m, "reason": r} for m, r in self.malformed]}


def fts_records(bodies: list[tuple[str, bytes]]) -> tuple[bytes, list[tuple[str, str]]]:
    """The batch's bodies as JSON lines for ingestion, and the malformed ones.

    Each body loses one trailing space or EOT byte (and surrounding white
    space) and must be one JSON document; it is written again compact, one
    a line, so one bad body cannot swallow its neighbours.

    >>> lines, bad = fts_records([("m1", b'{"tr_id": "a"}\\x04'), ("m2", b"{oops"),
    ...                           ("m3", b'{\\n  "tr_id": "b"\\n} ')])
    >>> lines
    b'{"tr_id":"a"}\\n{"tr_id":"b"}'
    >>> [(message_id, why.split(":")[0]) for message_id, why in bad]
    [('m2', 'not a JSON document')]
    """
    lines, bad = [], []
    for message_id, body in bodies:
        text = body.rstrip(b"\x04").strip()
        try:
            lines.append(orjson.dumps(orjson.loads(text)))
        except orjson.JSONDecodeError as exc:
            bad.append((message_id, f"not a JSON document: {exc}"))
    return b"\n".join(lines), bad


class _Listener:
    """stomp.py's listener: messages into a queue, disconnections flagged."""

    def __init__(self) -> None:
        self.messages: queue.Queue[tuple[str, str, bytes]] = queue.Queue()
        self.connected = threading.Event()

    def on_connected(self, frame: Any) -> None:
        self.connected.set()

    def on_disconnected(self) -> None:
        self.connected.clear()

    def on_message(self, frame: Any) -> None:
        body = frame.body if isinstance(frame.body, bytes) else str(frame.body).encode()
        self.messages.put((frame.headers["message-id"], frame.headers["subscription"], body))

    def on_error(self, frame: Any) -> None:
        log.error("broker error: %s %s", frame.headers.get("message", ""), frame.body)


def collect_stomp(engine: Engine, brokers: list[tuple[str, int]],
                  destination: str = FTS_TOPIC, subscription: str = "netbroker",
                  user: str = "", password: str = "", batch_messages: int = 1000,
                  batch_wait_s: float = 2.0, until_idle_s: float | None = None,
                  settings: MetricsSettings | None = None,
                  on_batch: Callable[[StompReport], None] | None = None) -> StompReport:
    """Take FTS messages from ``destination`` until stopped (or idle ``until_idle_s``).

    Parameters
    ----------
    engine : Engine
    brokers : list of (host, port)
        STOMP endpoints of the broker (tried in turn).
    destination : str
        ``/topic/...`` (a durable subscription named ``subscription``) or
        ``/queue/...``.
    batch_messages, batch_wait_s
        A batch is ingested when it holds this many messages, or this long
        after its first arrived.
    until_idle_s : float, optional
        Return after this many seconds without a message (None: never).
    on_batch : callable, optional
        Called with the running report after each batch is acknowledged.

    Notes
    -----
    A lost connection (the broker restarted) is reconnected with backoff;
    messages received but not yet acknowledged are delivered again by the
    broker, and ingesting them again stores nothing new.
    """
    import stomp

    report, listener = StompReport(), _Listener()
    durable = destination.startswith("/topic/")
    conn = stomp.Connection(brokers, heartbeats=(10_000, 10_000), auto_decode=False,
                            reconnect_attempts_max=1)
    conn.set_listener("netbroker", listener)

    def connect() -> None:
        headers = {"client-id": subscription} if durable else {}
        conn.connect(user, password, wait=True, headers=headers)
        sub = {"activemq.subscriptionName": subscription} if durable else {}
        conn.subscribe(destination, id=subscription, ack="client-individual",
                       headers={**sub, "activemq.prefetchSize": str(2 * batch_messages)})

    idle_since, pause = time.monotonic(), 0.5
    try:
        while True:
            if not listener.connected.is_set():
                _drop(listener.messages)  # unacknowledged: the broker delivers them again
                try:
                    connect()
                    pause = 0.5
                except stomp.exception.ConnectFailedException:
                    log.warning("broker %s not reachable; again in %.1f s", brokers, pause)
                    time.sleep(pause)
                    pause = min(2 * pause, 10.0)
                    report.reconnects += 1
                    if until_idle_s is not None and time.monotonic() - idle_since > max(
                            until_idle_s, 60):
                        break
                    continue
            batch = _take(listener.messages, batch_messages, batch_wait_s)
            if not batch:
                if until_idle_s is not None and time.monotonic() - idle_since > until_idle_s:
                    break
                continue
            idle_since = time.monotonic()
            try:
                _ingest_batch(engine, conn, batch, report, settings)
            except stomp.exception.NotConnectedException:
                # Lost between the commit and the acks: delivered again, and then
                # counted duplicates by the idempotent ingestion.
                log.warning("connection lost before the acks of a batch; it will come again")
                listener.connected.clear()
                continue
            if on_batch is not None:
                on_batch(report)
    finally:
        if conn.is_connected():
            conn.disconnect()
    return report


def _drop(messages: queue.Queue[tuple[str, str, bytes]]) -> None:
    while True:
        try:
            messages.get_nowait()
        except queue.Empty:
            return


def _take(messages: queue.Queue[tuple[str, str, bytes]], most: int, wait_s: float
          ) -> list[tuple[str, str, bytes]]:
    """Up to ``most`` messages: the first within a second, the rest within ``wait_s``."""
    try:
        batch = [messages.get(timeout=1.0)]
    except queue.Empty:
        return []
    deadline = time.monotonic() + wait_s
    while len(batch) < most:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            batch.append(messages.get(timeout=left))
        except queue.Empty:
            break
    return batch


def _ingest_batch(engine: Engine, conn: Any, batch: list[tuple[str, str, bytes]],
                  report: StompReport, settings: MetricsSettings | None) -> None:
    """Ingest one batch, then acknowledge each of its messages (never before)."""
    lines, bad = fts_records([(message_id, body) for message_id, _, body in batch])
    for message_id, reason in bad:
        log.warning("message %s refused: %s", message_id, reason)
    if lines:
        report.add(ingest(engine, "fts", lines, settings=settings))
    report.malformed += bad
    report.messages += len(batch)
    report.batches += 1
    for message_id, subscription, _ in batch:
        conn.ack(message_id, subscription)
        report.acknowledged += 1

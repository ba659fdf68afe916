"""FTS3 transfer-completion messages -> throughput and success samples.

The message is the one FTS publishes on ``transfer.fts_monitoring_complete``
(keys defined in cern-fts/fts3 ``src/activemq/msg-ifce.cpp``, values set in
``src/url-copy/LegacyReporter.cpp``). Input is any JSON layout
(``collectors.layout``): one JSON object per line, pretty-printed messages,
a JSON array of them, or the broker's stream, messages separated by EOT
(``\\x04``); a message may end with one extra space or EOT, and archives
wrap it as ``{"data": {...}, "metadata": {...}}``. The optimizer's
per-link message (``transfer.fts_monitoring_queue_state``: ``source_se``,
``dest_se``, ``throughput``, ``success_rate``) is an aggregate of the
transfers read one by one here: it is counted as not a link, not stored.

Messages are decoded with orjson (the hot path: a million a day is
ordinary). Fields read: ``tr_id`` (else ``job_id``, ``file_id``, ``retry``) for the
origin id; ``file_metadata.src_rse``/``dst_rse`` (Rucio's), else ``src_se``/
``dst_se`` (``scheme://host``), else ``src_hostname``/``dst_hostname`` for the
link ends; ``t_final_transfer_state`` (``Ok``/``Error``/``Abort``);
``timestamp_tr_st``/``timestamp_tr_comp`` (data copy start/end, epoch ms;
else ``tr_timestamp_start``/``tr_timestamp_complete``); ``file_size`` (else
``f_size``) and ``tr_bt_transfered`` (bytes); ``throughput`` (bytes/s, FTS >=
3.12, -1 when unknown).

A finished transfer gives a throughput sample (MB/s, weighted by its bytes)
and a success sample of 1; a failed one only a success sample of 0: it
counts toward the link's failure rate, never its throughput.
"""

from __future__ import annotations

import json
import mmap
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

from collectors.layout import JsonDocuments, Unreadable, envelope, json_type
from collectors.mapping import rse_ref
from collectors.records import HostRef, NotALink, Outcome, ParsedSample, Record, Rejected, flatten
from netbroker.common.metric_kinds import MetricKind
from netbroker.common.metric_kinds import MetricSource as Source

__all__ = ["MESSAGE", "MONIT_MESSAGE", "OPTIMIZER", "parse", "read", "split_messages"]

MESSAGE = "FTS transfer-complete message"
MONIT_MESSAGE = "FTS transfer-complete message in a MONIT envelope"
OPTIMIZER = "FTS optimizer queue-state message"
_NOT_JSON = "not JSON"

_STATES = {"ok": True, "error": False, "abort": False}


class _Bad(ValueError):
    """A field that cannot be used; the message names it."""


def split_messages(data: bytes | str | mmap.mmap, first_position: int = 1
                   ) -> Iterator[tuple[int, bytes]]:
    """Yield (1-based position, message bytes) from lines or an EOT-separated stream.

    ``data`` may also be a read-only ``mmap`` (the parsing process reads
    a large batch so, page by page, instead of copying it whole first).
    ``first_position`` is the position of its first piece: another than 1
    where ``data`` is a later part of a batch split at a line's end.

    >>> list(split_messages(b'{"a": 1}\\x04{"a": 2} \\x04'))
    [(1, b'{"a": 1}'), (2, b'{"a": 2}')]
    """
    raw = data.encode() if isinstance(data, str) else data
    if raw.find(b"\x04") >= 0:
        parts: Iterable[bytes] = _pieces(raw, b"\x04")
    elif raw.find(b"\r") >= 0:
        parts = raw[:].splitlines()  # \r alone ends a line too
    else:
        parts = _pieces(raw, b"\n")
    for position, part in enumerate(parts, start=first_position):
        part = part.strip()
        if part:
            yield position, part


def _pieces(raw: bytes | mmap.mmap, separator: bytes) -> Iterator[bytes]:
    """``raw.split(separator)`` one piece at a time, without a trailing empty piece.

    Lazily: a batch of a million messages would otherwise be copied into a
    list of a million pieces before the first is parsed (page faults, not
    parsing, before its first chunk).

    >>> list(_pieces(b"a\\nb\\n\\nc\\n", b"\\n"))
    [b'a', b'b', b'', b'c']
    """
    start, end = 0, len(raw)
    while start < end:
        stop = raw.find(separator, start)
        if stop < 0:
            stop = end
        yield raw[start:stop]
        start = stop + 1


def read(data: bytes | str | mmap.mmap, first_position: int = 1) -> Iterator[Outcome]:
    """Read FTS messages: one outcome per message, then the input's framing.

    Parameters
    ----------
    data : bytes, str or mmap
        Messages in any JSON layout (``collectors.layout``).
    first_position : int
        The position of the first line (or message) of ``data`` in its
        batch, for rejections: a batch split in parts (``collectors.parsing``)
        gives its later parts theirs.

    Returns
    -------
    iterator of Record, Rejected, NotALink, then one Framing
        Per transfer-complete message a Record with two samples (throughput,
        success) when it finished, one (success = 0) when it failed; per
        optimizer message a NotALink; a Rejected naming the field (and the
        message expected) per unusable one. A JSON array that opens the input,
        or one of objects anywhere, holds one message per element.

    Notes
    -----
    O(n) in the input size; one ``orjson.loads`` per message. Messages in
    the usual shape take a shortcut that decides nothing on its own
    (``_usual_samples``): every rejection and its reason come from the one
    careful path.

    Examples
    --------
    >>> msg = ('{"tr_id": "t1", "src_se": "davs://se.a.org", "dst_se": "root://se.b.org",'
    ...        ' "t_final_transfer_state": "Ok", "timestamp_tr_st": 1000,'
    ...        ' "timestamp_tr_comp": 3000, "file_size": 20000000}')
    >>> record, framing = read(msg)
    >>> record.shape, [(s.kind.value, s.value) for s in record.samples], framing.layouts
    ('FTS transfer-complete message', [('throughput', 10.0), ('success', 1.0)], \
{'JSON line': 1})
    """
    rses: dict[Any, HostRef] = {}  # one HostRef per RSE and URL of the batch
    docs = JsonDocuments(data, first_position)
    for position, msg in docs:
        usual = _usual_samples(msg, rses) if type(msg) is dict else None
        if usual is not None:
            yield _new_record(Record, (position, MESSAGE, usual))
        else:
            yield from _unusual(position, msg, docs.opening)
    yield docs.framing()


def parse(data: bytes | str | mmap.mmap, first_position: int = 1
          ) -> Iterator[ParsedSample | Rejected]:
    """Parse FTS transfer-completion messages: :func:`read` flattened to samples.

    Parameters
    ----------
    data : bytes, str or mmap
        As for :func:`read`.
    first_position : int
        As for :func:`read`.

    Returns
    -------
    iterator of ParsedSample or Rejected
        Two samples (throughput, success) per finished transfer, one (success
        = 0) per failed one, a Rejected naming the field for each unusable
        message (what is not a link is left out: :func:`read` counts it).

    Examples
    --------
    >>> msg = ('{"tr_id": "t1", "src_se": "davs://se.a.org", "dst_se": "root://se.b.org",'
    ...        ' "t_final_transfer_state": "Ok", "timestamp_tr_st": 1000,'
    ...        ' "timestamp_tr_comp": 3000, "file_size": 20000000}')
    >>> [(s.kind.value, s.value, s.dst.value) for s in parse(msg)]
    [('throughput', 10.0, 'se.b.org'), ('success', 1.0, 'se.b.org')]
    """
    return flatten(read(data, first_position))


def _unusual(position: int, msg: Any, opening: bool) -> Iterator[Outcome]:
    """The outcomes of a document that is not a message in the usual shape."""
    if type(msg) is Unreadable:
        yield Rejected(position, msg.reason, shape=_NOT_JSON)
    elif type(msg) is list and (opening or (msg and all(type(m) is dict for m in msg))):
        for index, item in enumerate(msg, start=1):  # an array of messages
            yield _message(index if opening else position, item,
                           "" if opening else f"item {index}: ")
    else:
        yield _message(position, msg, "")


def _message(position: int, msg: Any, prefix: str) -> Outcome:
    """One message's outcome by the careful path."""
    inner, wrapped = envelope(msg)
    if type(inner) is dict and _is_optimizer(inner):
        return NotALink(position, "FTS optimizer queue-state message: an aggregate of the "
                        "transfers, each read from its own transfer-complete message", OPTIMIZER)
    shape = MONIT_MESSAGE if wrapped else MESSAGE
    try:
        return Record(position, shape, tuple(_samples(msg)))
    except _Bad as exc:
        origin = _origin(inner) if isinstance(inner, dict) else None
        return Rejected(position, prefix + str(exc), origin, shape)


def _is_optimizer(msg: dict[str, Any]) -> bool:
    return ("source_se" in msg and "dest_se" in msg and "tr_id" not in msg
            and "job_id" not in msg)


_NUMBER = (int, float)  # the types orjson gives a JSON number; bool is neither
_new_sample = tuple.__new__  # ParsedSample without its Python-level __new__: half the cost
_new_record = tuple.__new__  # and Record likewise


def _usual_samples(msg: dict[str, Any],
                   rses: dict[Any, HostRef]) -> tuple[ParsedSample, ...] | None:
    """The samples of a message in the usual shape, or None for :func:`_samples` to decide.

    The usual shape: a string ``tr_id``, ``file_metadata`` an object naming
    both RSEs, the state exactly ``Ok``/``Error``/``Abort``, the first-choice
    timestamps, size and counters plain numbers. It reads the same fields
    and computes the same values as :func:`_samples` at about 60% of the
    cost, and never rejects: anything it is not sure of (a wrapper, a field
    missing or a string, a value :func:`_samples` would refuse) goes back to
    :func:`_samples`, so accept/reject decisions and reasons come from one
    place. ``rses`` caches the RSE host references. ``tests/test_collector_fts.py``
    checks the two agree.
    """
    origin = msg.get("tr_id")
    meta = msg.get("file_metadata")
    if type(origin) is not str or not origin or type(meta) is not dict or "metadata" in msg:
        return None
    start = msg.get("timestamp_tr_st")
    end = msg.get("timestamp_tr_comp")
    src_rse = meta.get("src_rse")
    dst_rse = meta.get("dst_rse")
    if (type(start) not in _NUMBER or type(end) not in _NUMBER or type(src_rse) is not str
            or not src_rse or type(dst_rse) is not str or not dst_rse):
        return None
    # Keyed by RSE and storage URL: an RSE the registry does not know falls back
    # to the URL's host (collectors.mapping.rse_ref).
    src_se, dst_se = _text_or_none(msg.get("src_se")), _text_or_none(msg.get("dst_se"))
    src = rses.get((src_rse, src_se))
    if src is None:
        src = rses[(src_rse, src_se)] = rse_ref(src_rse, src_se)
    dst = rses.get((dst_rse, dst_se))
    if dst is None:
        dst = rses[(dst_rse, dst_se)] = rse_ref(dst_rse, dst_se)
    start, end = float(start), float(end)  # type: ignore[arg-type]  # numbers, checked above
    state = msg.get("t_final_transfer_state")
    if state == "Ok":
        size = msg.get("file_size")
        moved = msg.get("tr_bt_transfered")
        reported = msg.get("throughput")
        if (type(size) not in _NUMBER or size < 0 or end <= start  # type: ignore[operator]
                or not (moved is None or (type(moved) in _NUMBER and moved >= 0))
                or not (reported is None or type(reported) in _NUMBER)):
            return None
        moved = float(moved) if moved else float(size)  # type: ignore[arg-type]  # checked
        if reported and reported > 0:
            rate, unit = float(reported), "bytes/s"
        else:
            rate, unit = moved / ((end - start) / 1000.0), "bytes/(ms/1000)"
        ts = end / 1000.0
        return (_new_sample(ParsedSample, (Source.FTS, f"{origin}:throughput", src, dst,
                                           MetricKind.THROUGHPUT, rate / 1e6, ts, moved, unit)),
                _new_sample(ParsedSample, (Source.FTS, f"{origin}:success", src, dst,
                                           MetricKind.SUCCESS, 1.0, ts, 1.0, "transfer")))
    if state != "Error" and state != "Abort":
        return None
    ts = end if end > 0 else start
    if ts <= 0:
        return None
    return (_new_sample(ParsedSample, (Source.FTS, f"{origin}:success", src, dst,
                                       MetricKind.SUCCESS, 0.0, ts / 1000.0, 1.0, "transfer")),)


def _samples(msg: Any) -> Iterator[ParsedSample]:
    if isinstance(msg, dict) and isinstance(msg.get("data"), dict) and "metadata" in msg:
        msg = msg["data"]  # MONIT archive wrapper
    if not isinstance(msg, dict):
        raise _Bad(f"message must be a JSON object (an FTS transfer-complete message), "
                   f"got {json_type(msg)}")
    origin = _origin(msg)
    if origin is None:
        raise _Bad("missing tr_id (and job_id/file_id)")
    state = str(msg.get("t_final_transfer_state", "")).strip().lower()
    if state not in _STATES:
        raise _Bad(f"t_final_transfer_state {msg.get('t_final_transfer_state')!r} "
                   "is not Ok, Error or Abort")
    meta = _file_metadata(msg.get("file_metadata"))
    src = _end(msg, meta, "src")
    dst = _end(msg, meta, "dst")
    finished = _STATES[state]
    start = _number(msg, "timestamp_tr_st", "tr_timestamp_start", required=finished)
    end = _number(msg, "timestamp_tr_comp", "tr_timestamp_complete", required=finished)
    if not finished:
        ts = end if end is not None and end > 0 else start
        if ts is None or ts <= 0:
            raise _Bad("no completion or start timestamp")
        yield ParsedSample(Source.FTS, f"{origin}:success", src, dst, MetricKind.SUCCESS, 0.0,
                           ts / 1000.0, 1.0, "transfer")
        return
    assert start is not None and end is not None  # required above
    size = _number(msg, "file_size", "f_size", required=True)
    assert size is not None
    if size < 0:
        raise _Bad(f"file_size {size} is negative")
    if end <= start:
        raise _Bad(f"timestamp_tr_comp {end:.0f} is not after timestamp_tr_st {start:.0f}")
    bytes_moved = _number(msg, "tr_bt_transfered", required=False)
    if bytes_moved is not None and bytes_moved < 0:
        raise _Bad(f"tr_bt_transfered {bytes_moved} is negative")
    moved = bytes_moved if bytes_moved else size
    reported = _number(msg, "throughput", required=False)
    rate = reported if reported and reported > 0 else moved / ((end - start) / 1000.0)
    unit = "bytes/s" if reported and reported > 0 else "bytes/(ms/1000)"
    ts = end / 1000.0
    yield ParsedSample(Source.FTS, f"{origin}:throughput", src, dst, MetricKind.THROUGHPUT,
                       rate / 1e6, ts, float(moved), unit)
    yield ParsedSample(Source.FTS, f"{origin}:success", src, dst, MetricKind.SUCCESS, 1.0, ts,
                       1.0, "transfer")


def _origin(msg: dict[str, Any]) -> str | None:
    if msg.get("tr_id"):
        return str(msg["tr_id"])
    if msg.get("job_id") and msg.get("file_id") not in (None, ""):
        return f"{msg['job_id']}__{msg['file_id']}__{msg.get('retry', 0)}"
    return None


def _file_metadata(raw: Any) -> dict[str, Any]:
    # Rucio puts a JSON object here; some FTS versions send it as a string.
    if isinstance(raw, str) and raw.strip().startswith("{"):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            return {}
    return raw if isinstance(raw, dict) else {}


_END_KEYS = {side: (f"{side}_rse", f"{side}_se", f"{side}_hostname") for side in ("src", "dst")}


def _end(msg: dict[str, Any], meta: dict[str, Any], side: str) -> HostRef:
    """The link end: Rucio's RSE, else the storage element's host, else the host name."""
    rse_key, se_key, host_key = _END_KEYS[side]
    rse = meta.get(rse_key)
    if rse and isinstance(rse, str):
        return rse_ref(rse, _text_or_none(msg.get(se_key)))
    se = msg.get(se_key)
    if se and isinstance(se, str):
        host = urlsplit(se if "://" in se else f"//{se}").hostname
        if host:
            return HostRef("host", host.lower())
    host = msg.get(host_key)
    if isinstance(host, str) and host.strip():
        return HostRef("host", host.strip().lower())
    raise _Bad(f"missing {se_key} and {host_key} (no {rse_key} in file_metadata)")


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _number(msg: dict[str, Any], *keys: str, required: bool) -> float | None:
    """The first of ``keys`` present, as a number; numbers often arrive as strings."""
    for key in keys:
        raw = msg.get(key)
        if type(raw) is int or type(raw) is float:  # the usual case, first
            return float(raw)
        if raw is None or raw == "":
            continue
        if isinstance(raw, bool):
            raise _Bad(f"{key} must be a number, got {raw!r}")
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise _Bad(f"{key} must be a number, got {raw!r}") from None
    if required:
        raise _Bad(f"missing {' or '.join(keys)}")
    return None

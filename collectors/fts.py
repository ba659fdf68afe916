"""FTS3 transfer-completion messages -> throughput and success samples.

The message is the one FTS publishes on ``transfer.fts_monitoring_complete``
(keys defined in cern-fts/fts3 ``src/activemq/msg-ifce.cpp``, values set in
``src/url-copy/LegacyReporter.cpp``). Input is either one JSON object per
line or the broker's stream, messages separated by EOT (``\\x04``); a
message may end with one extra space or EOT, and archives wrap it as
``{"data": {...}, "metadata": {...}}``.

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

import orjson

from collectors.records import HostRef, MetricKind, ParsedSample, Rejected, Source

__all__ = ["parse", "split_messages"]

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
    list of a million pieces before the first is parsed (for a parsing
    process, ~2 s of page faults on these hosts before its first chunk).

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


def parse(data: bytes | str, first_position: int = 1) -> Iterator[ParsedSample | Rejected]:
    """Parse FTS transfer-completion messages.

    Parameters
    ----------
    data : bytes or str
        JSON lines, or messages separated by EOT.
    first_position : int
        The position of the first message (or line) of ``data`` in its
        batch, for rejections: a batch split in parts (``collectors.parsing``)
        gives its later parts theirs.

    Returns
    -------
    iterator of ParsedSample or Rejected
        Two samples (throughput, success) per finished transfer, one (success
        = 0) per failed one, a Rejected naming the field for each unusable
        message.

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
    >>> [(s.kind.value, s.value, s.dst.value) for s in parse(msg)]
    [('throughput', 10.0, 'se.b.org'), ('success', 1.0, 'se.b.org')]
    """
    rses: dict[str, HostRef] = {}  # one HostRef per RSE of the batch, not two per message
    for position, text in split_messages(data, first_position):
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            yield Rejected(position, f"not JSON: {exc}")
            continue
        usual = _usual_samples(msg, rses) if type(msg) is dict else None
        if usual is not None:
            yield from usual
            continue
        try:
            yield from _samples(msg)
        except _Bad as exc:
            yield Rejected(position, str(exc), _origin(msg) if isinstance(msg, dict) else None)


_NUMBER = (int, float)  # the types orjson gives a JSON number; bool is neither
_new_sample = tuple.__new__  # ParsedSample without its Python-level __new__: half the cost


def _usual_samples(msg: dict[str, Any],
                   rses: dict[str, HostRef]) -> tuple[ParsedSample, ...] | None:
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
    src = rses.get(src_rse)
    if src is None:
        src = rses[src_rse] = HostRef("rse", src_rse)
    dst = rses.get(dst_rse)
    if dst is None:
        dst = rses[dst_rse] = HostRef("rse", dst_rse)
    start, end = float(start), float(end)
    state = msg.get("t_final_transfer_state")
    if state == "Ok":
        size = msg.get("file_size")
        moved = msg.get("tr_bt_transfered")
        reported = msg.get("throughput")
        if (type(size) not in _NUMBER or size < 0 or end <= start
                or not (moved is None or (type(moved) in _NUMBER and moved >= 0))
                or not (reported is None or type(reported) in _NUMBER)):
            return None
        moved = float(moved) if moved else float(size)
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
        raise _Bad(f"message must be a JSON object, got {type(msg).__name__}")
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
        return HostRef("rse", rse)
    se = msg.get(se_key)
    if se and isinstance(se, str):
        host = urlsplit(se if "://" in se else f"//{se}").hostname
        if host:
            return HostRef("host", host.lower())
    host = msg.get(host_key)
    if isinstance(host, str) and host.strip():
        return HostRef("host", host.strip().lower())
    raise _Bad(f"missing {se_key} and {host_key} (no {rse_key} in file_metadata)")


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

"""Properties of every reader: nothing raises, every record gets one outcome, fast paths agree.

Hypothesis over arbitrary JSON, arbitrary framings, broken packets; strategies
from tests/strategies.py.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from collectors import fts, nws, perfsonar, psfields, xrootd
from collectors.layout import JsonDocuments
from collectors.records import Framing, MetricKind, NotALink, Record, Rejected
from tests.strategies import json_values

READERS = [fts.read, perfsonar.read, xrootd.read, nws.read]
DATA = Path(__file__).parent / "data"


def _sane(record: Record) -> bool:
    if not record.samples:
        return False
    for s in record.samples:
        if not (math.isfinite(s.value) and s.value >= 0 and s.ts_s > 0 and s.weight >= 0):
            return False
        if s.kind in (MetricKind.PACKET_LOSS, MetricKind.SUCCESS) and s.value > 1:
            return False
        if len(s.source_unit) > 32:  # the column's width
            return False
    return True


def _check(outcomes: list[Any]) -> None:
    *records, framing = outcomes
    assert isinstance(framing, Framing)
    for item in records:
        assert isinstance(item, Record | Rejected | NotALink), item
        assert not isinstance(item, Record) or _sane(item), item


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(READERS), st.one_of(json_values, st.text(max_size=60)))
def test_any_input_gives_outcomes_and_never_raises(read: Any, value: Any) -> None:
    text = value if isinstance(value, str) else json.dumps(value)
    _check(list(read(text)))


# Records in the shapes each reader knows, whose fields may then be anything.
SHAPED = {
    fts.read: [json.loads(line) for line in
               (DATA / "fts" / "transfer_complete.jsonl").read_text().splitlines()],
    perfsonar.read: json.loads((DATA / "perfsonar" / "pscheduler_runs.json").read_text())
    + [json.loads(line) for line in
       (DATA / "perfsonar" / "pscheduler_archived.jsonl").read_text().splitlines()],
    xrootd.read: [json.loads(line) for line in
                  (DATA / "xrootd" / "gled_records.jsonl").read_text().splitlines()],
}


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(list(SHAPED)), st.data(), st.text(min_size=1, max_size=20),
       json_values)
def test_any_field_of_a_known_shape_gives_one_outcome(read: Any, data: st.DataObject,
                                                      field: str, value: Any) -> None:
    record = dict(data.draw(st.sampled_from(SHAPED[read])))
    inner = record.get("data") if isinstance(record.get("data"), dict) else record
    key = data.draw(st.sampled_from([*inner, field]))
    inner[key] = value
    outcomes = list(read(json.dumps(record)))
    _check(outcomes)
    assert len(outcomes) == 2  # one record read: one outcome, and the framing


# JSON within 64-bit integers: orjson reads the integers past them as floats.
json_64 = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4), max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(st.text(max_size=6), json_64, min_size=1, max_size=4),
                min_size=1, max_size=6),
       st.lists(st.sampled_from(["line", "pretty", "eot"]), min_size=6, max_size=6))
def test_any_framing_of_documents_gives_them_back_in_order(docs: list[dict[str, Any]],
                                                           framings: list[str]) -> None:
    if "eot" in framings[:len(docs)]:
        text = "\x04".join(json.dumps(d, indent=2 if f == "pretty" else None) + " "
                           for d, f in zip(docs, framings, strict=False))
    else:
        text = "\n".join(json.dumps(d, indent=2 if f == "pretty" else None)
                         for d, f in zip(docs, framings, strict=False))
    assert [value for _, value in JsonDocuments(text)] == docs


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: f"{v:.4g}"),
                       st.integers(0, 10**6), min_size=1, max_size=30))
def test_the_usual_histogram_path_agrees_with_the_careful_one(hist: dict[str, int]) -> None:
    careful = sorted(psfields._bucket(key, count) for key, count in hist.items())
    total = sum(count for _, count in careful)
    fast = psfields._plain_median(hist)
    if total == 0:
        assert fast is None
        return
    expected = (psfields._value_at(careful, (total + 1) // 2) / 2
                + psfields._value_at(careful, total // 2 + 1) / 2)
    assert fast == expected
    assert psfields.histogram_median(hist) == expected


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("f=udirtgx?"), st.binary(max_size=120),
                          st.booleans()), min_size=1, max_size=6), st.text(max_size=20))
def test_any_forwarded_packets_give_outcomes_and_never_raise(
        packets: list[tuple[str, bytes, bool]], remote: str) -> None:
    """Packets with a header that holds (or, now and then, a wrong length) and any body."""
    lines = []
    for code, body, honest in packets:
        size = 8 + len(body) if honest else len(body)
        packet = struct.pack(">BBHi", ord(code), 0, size % 65536, 1763600000) + body
        lines.append(json.dumps({"remote": remote or "192.0.2.1:1",
                                 "data": base64.b64encode(packet).decode()}))
    _check(list(xrootd.read("\n".join(lines))))

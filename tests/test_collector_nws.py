"""The ATLAS NWS document: import (pure parsing) and its malformed entries."""

from __future__ import annotations

import json

import pytest

from collectors import nws
from collectors.records import HostRef, MetricKind, ParsedSample, Rejected

STAMP = "2026-11-24T09:50:00"
GOOD = {"CERN-PROD:BNL-ATLAS": {
    "mbps": {"fts": {"1h": 310.5, "1d": 280.0, "1w": 250.2, "timestamp": STAMP},
             "dashb": {"1d": "95.5", "timestamp": STAMP}},
    "files": {"done": {"Production Input": {"1h": 120, "6h": 700, "timestamp": STAMP}}},
    "latency": {"latest": 43.2, "timestamp": STAMP},
    "packetloss": {"latest": 0.0004, "timestamp": STAMP}}}


def test_each_system_gives_its_freshest_window_and_latency_and_loss_come_along() -> None:
    samples = [s for s in nws.parse(json.dumps(GOOD)) if isinstance(s, ParsedSample)]
    got = {(s.kind, s.origin_id.split(":")[3] if s.kind is MetricKind.THROUGHPUT else ""):
           s.value for s in samples}
    assert got == {(MetricKind.THROUGHPUT, "dashb"): 95.5, (MetricKind.THROUGHPUT, "fts"): 310.5,
                   (MetricKind.OWD, ""): 43.2, (MetricKind.PACKET_LOSS, ""): 0.0004}
    assert {s.src for s in samples} == {HostRef("site", "CERN-PROD")}
    assert {s.ts_s for s in samples} == {1795513800.0}  # 09:50:00 UTC, no zone means UTC


MALFORMED = {
    "key without colon": ({"CERN-PROD": {}}, "key must be 'SRC_SITE:DST_SITE'"),
    "value not an object": ({"A:B": 5}, "value must be an object"),
    "mbps not an object": ({"A:B": {"mbps": [1]}}, "mbps must be an object"),
    "rate not a number": ({"A:B": {"mbps": {"fts": {"1h": "fast", "timestamp": STAMP}}}},
                          "mbps.fts must be a number, got 'fast'"),
    "negative rate": ({"A:B": {"mbps": {"fts": {"1h": -3, "timestamp": STAMP}}}},
                      "mbps.fts -3.0 is negative"),
    "no timestamp": ({"A:B": {"mbps": {"fts": {"1h": 3}}}}, "missing mbps.fts.timestamp"),
    "bad timestamp": ({"A:B": {"mbps": {"fts": {"1h": 3, "timestamp": "yesterday"}}}},
                      "is not %Y-%m-%dT%H:%M:%S"),
    "loss above one": ({"A:B": {"packetloss": {"latest": 1.5, "timestamp": STAMP}}},
                       "packetloss.latest 1.5 is out of range"),
    "latency without latest": ({"A:B": {"latency": {"timestamp": STAMP}}},
                               "latency must be an object with 'latest'"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_entries_are_rejected_and_the_rest_kept(case: str) -> None:
    bad, reason = MALFORMED[case]
    out = list(nws.parse(json.dumps({**GOOD, **bad})))
    rejected = [r for r in out if isinstance(r, Rejected)]
    assert len(rejected) == 1 and rejected[0].position == 2
    assert reason in rejected[0].reason, rejected[0].reason
    assert sum(isinstance(s, ParsedSample) for s in out) == 4


def test_a_document_that_is_not_an_object_is_one_rejection() -> None:
    assert [r.reason for r in nws.parse("[1, 2]")] == [
        "document must be an object keyed 'SRC:DST', got list"]
    assert nws.parse("{").__next__().reason.startswith("not JSON")

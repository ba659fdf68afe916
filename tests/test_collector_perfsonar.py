"""perfSONAR records: esmond bundles and archived pScheduler results (pure parsing).

Expected values are worked out by hand from the data files (see their README),
not from the parser.
"""

from __future__ import annotations

import calendar
import copy
import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors import esmond, perfsonar
from collectors.perfsonar import histogram_median, parse, parse_esmond, parse_pscheduler
from collectors.records import (
    Framing,
    HostRef,
    MetricKind,
    NotALink,
    ParsedSample,
    Record,
    Rejected,
    Source,
)
from tests.strategies import json_values

DATA = Path(__file__).parent / "data" / "perfsonar"
ESMOND_TEXT = (DATA / "esmond_bundle.json").read_text()
ESMOND = json.loads(ESMOND_TEXT)
PS_LINES = (DATA / "pscheduler_results.jsonl").read_text()
PS_DOCS = [json.loads(line) for line in PS_LINES.splitlines()]
SEARCH_TEXT = (DATA / "pscheduler_search.json").read_text()
ARCH = "/esmond/perfsonar/archive"
KEY_TP, KEY_TP6, KEY_LAT, KEY_RTT = (m["metadata-key"] for m in ESMOND["metadata"][:4])


def samples(items: Any) -> list[ParsedSample]:
    return [s for s in items if isinstance(s, ParsedSample)]


def rejected(items: Any) -> list[Rejected]:
    return [r for r in items if isinstance(r, Rejected)]


def of(items: list[ParsedSample], key: str, kind: MetricKind) -> list[ParsedSample]:
    return [s for s in items if s.origin_id.startswith(key) and s.kind == kind]


def utc(*fields: int) -> float:
    return float(calendar.timegm((*fields, 0, 0, 0)))


def test_public_names_are_pinned() -> None:
    assert perfsonar.__all__ == ["histogram_median", "parse", "parse_esmond", "parse_pscheduler",
                                 "read"]


# --- esmond ---------------------------------------------------------------------------------


def test_esmond_throughput_bits_per_second_become_mbytes_per_second() -> None:
    tp = of(samples(parse_esmond(ESMOND_TEXT)), KEY_TP, MetricKind.THROUGHPUT)
    # 9,412,000,000 / 8e6; 8,446,270,000 / 8e6; 7,016,320,000 / 8e6
    assert [s.value for s in tp] == [1176.5, 1055.78375, 877.04]
    assert [s.ts_s for s in tp] == [1763632805.0, 1763654405.0, 1763676005.0]
    assert {(s.source, s.weight, s.source_unit) for s in tp} == {(Source.PERFSONAR, 1.0, "bits/s")}
    assert tp[0].src == HostRef("host", "perfsonar-bw.desy.de")
    assert tp[0].dst == HostRef("host", "ps-bandwidth.grid.surfsara.nl")
    assert tp[0].origin_id == f"{KEY_TP}:throughput:1763632805"


def test_esmond_numbers_sent_as_strings_read_like_numbers() -> None:
    # point 2 of the first metadata object is {"ts": "1763654405", "val": "8446270000"}
    (second,) = [s for s in samples(parse_esmond(ESMOND_TEXT)) if s.ts_s == 1763654405.0]
    assert second.origin_id == f"{KEY_TP}:throughput:1763654405"
    assert second.value == 1055.78375


def test_esmond_ip_literal_and_upper_case_host_names_are_normalised() -> None:
    (tp,) = of(samples(parse_esmond(ESMOND_TEXT)), KEY_TP6, MetricKind.THROUGHPUT)
    assert tp.src == HostRef("host", "ps-bandwidth.cern.ch")  # "PS-Bandwidth.CERN.ch"
    assert tp.dst == HostRef("ip", "2001:db8:2::20")          # "2001:DB8:2:0:0:0:0:20"
    assert tp.value == 600.0                                  # 4.8e9 bits/s


def test_esmond_one_way_delay_is_the_histogram_median_in_ms() -> None:
    owd = of(samples(parse_esmond(ESMOND_TEXT)), KEY_LAT, MetricKind.OWD)
    # 600 packets: 310 at 4.12 covers ranks 300 and 301 -> 4.12
    # 600 packets: 300 at 4.1, 300 at 4.3 -> ranks 300, 301 straddle -> (4.1 + 4.3) / 2
    # 599 packets: 299 at 4.11, 2 at 4.15, 298 at 10.5 -> rank 300 is 4.15
    assert [s.value for s in owd] == pytest.approx([4.12, 4.2, 4.15])
    assert {s.source_unit for s in owd} == {"ms"}
    assert owd[0].dst == HostRef("host", "ps-latency.grid.surfsara.nl")


def test_esmond_packet_loss_rate_stays_a_fraction() -> None:
    loss = of(samples(parse_esmond(ESMOND_TEXT)), KEY_LAT, MetricKind.PACKET_LOSS)
    assert [s.value for s in loss] == [0.0, 0.005, 1 / 600]
    assert [s.origin_id for s in loss][1] == f"{KEY_LAT}:packet-loss-rate:1763632920"


def test_esmond_rtt_without_input_source_falls_back_to_the_ips() -> None:
    (rtt,) = of(samples(parse_esmond(ESMOND_TEXT)), KEY_RTT, MetricKind.RTT)
    assert rtt.value == 89.1  # 10 pings: 3 at 88.9, 4 at 89.1 -> ranks 5 and 6 both 89.1
    assert (rtt.src, rtt.dst) == (HostRef("ip", "192.0.2.30"), HostRef("ip", "203.0.113.40"))


def test_esmond_event_types_we_do_not_measure_are_skipped_not_rejected() -> None:
    out = list(parse_esmond(ESMOND_TEXT))
    assert rejected(out) == []
    # 3 + 1 throughput, 3 owd + 3 loss, 1 rtt; nothing from retransmits, failures,
    # histogram-ttl, packet-count-sent, -bidir, packet-trace, or base-uris without points
    assert len(out) == 11
    assert {s.origin_id.split(":")[1] for s in samples(out)} == {
        "throughput", "histogram-owdelay", "packet-loss-rate", "histogram-rtt"}


@pytest.mark.parametrize(("hist", "median"), [
    ({"5": 1}, 5.0),
    ({"20": 1, "10": 1}, 15.0),           # even: mean of the 1st and 2nd observation
    ({"1": 1, "2": 2, "9": 2}, 2.0),      # odd: the 3rd of 5
    ({"1": 2, "3": 2}, 2.0),              # even: 2nd (1) and 3rd (3)
    ({"34.4": "506", "34.5": 85}, 34.4),  # counts as strings
    ({"-0.2": 1, "0.4": 0, "0.6": 3}, 0.6),
])
def test_histogram_median_takes_the_middle_observation(hist: dict[str, Any],
                                                       median: float) -> None:
    assert histogram_median(hist) == pytest.approx(median)


@pytest.mark.parametrize(("hist", "problem"), [
    ({}, "histogram is empty"),
    ({"4.1": 0}, "histogram is empty"),
    ({"4.1": -3}, "count -3"),
    ({"4.1": 2.5}, "count 2.5"),
    ({"4.1": True}, "count True"),
    ({"fast": 3}, "bucket 'fast' is not a number"),
    ({"nan": 3}, "bucket 'nan' is not finite"),
    ([4.1, 4.2], "must be an object"),
])
def test_histogram_median_refuses_what_is_not_a_histogram(hist: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        histogram_median(hist)


# --- pScheduler -----------------------------------------------------------------------------


def ps_samples(index: int) -> list[ParsedSample]:
    """The samples of document ``index`` (0-based line) of the JSON Lines file."""
    return samples(parse_pscheduler(json.dumps(PS_DOCS[index])))


def test_pscheduler_throughput_in_mbytes_per_second_at_the_run_end() -> None:
    (tp,) = ps_samples(0)
    assert (tp.kind, tp.value, tp.source_unit) == (MetricKind.THROUGHPUT, 1176.5, "bits/s")
    assert tp.ts_s == utc(2025, 11, 20, 10, 0, 36)  # pscheduler.end_time, not @timestamp
    assert tp.src == HostRef("host", "perfsonar-bw.desy.de")
    assert tp.dst == HostRef("host", "ps-bandwidth.grid.surfsara.nl")
    # no _id on a bare document: SHA-1 of test type, ends and time
    key = "throughput|host:perfsonar-bw.desy.de|host:ps-bandwidth.grid.surfsara.nl|1763632836"
    assert tp.origin_id == hashlib.sha1(key.encode()).hexdigest() + ":throughput"


def test_pscheduler_reverse_throughput_flows_from_dest_to_source() -> None:
    (tp,) = ps_samples(1)
    assert tp.src == HostRef("host", "perfsonar-de-kit.gridka.de")
    assert tp.dst == HostRef("host", "ps-bandwidth.cern.ch")
    assert tp.value == 600.0
    assert tp.origin_id == "kQy5aJQBx7cR2m1pL0vN:throughput"  # the hit's _id


def test_pscheduler_latency_median_is_scaled_by_the_bucket_width() -> None:
    owd, loss = ps_samples(2)
    assert (owd.kind, loss.kind) == (MetricKind.OWD, MetricKind.PACKET_LOSS)
    assert owd.value == pytest.approx(4.12)  # 41.2 buckets x 0.0001 s = 4.12 ms
    assert loss.value == 3 / 600
    assert [owd.origin_id, loss.origin_id] == ["b7Tq9ZQBx7cR2m1pM4aZ:owd",
                                               "b7Tq9ZQBx7cR2m1pM4aZ:packet_loss"]
    assert owd.ts_s == loss.ts_s == utc(2025, 11, 20, 10, 1, 0)


def test_pscheduler_total_loss_gives_a_loss_sample_and_no_delay() -> None:
    (loss,) = ps_samples(3)
    assert (loss.kind, loss.value) == (MetricKind.PACKET_LOSS, 1.0)
    assert loss.dst == HostRef("host", "perfsonar-lat.bnl.gov")


def test_pscheduler_rtt_is_the_median_round_trip_in_ms() -> None:
    (rtt,) = ps_samples(4)
    # 9 answered probes sorted: 88.9 88.9 89.0 89.0 [89.1] 89.1 89.2 89.4 92.7; one lost
    assert (rtt.kind, rtt.value) == (MetricKind.RTT, pytest.approx(89.1))
    assert rtt.source_unit == "ISO-8601 duration"


def test_pscheduler_rtt_without_meta_or_round_trips_uses_spec_hosts_mean_and_utc() -> None:
    (rtt,) = ps_samples(5)
    assert rtt.value == pytest.approx(7.1)  # result.rtt.mean 0.0071 s
    assert rtt.src == HostRef("host", "perfsonar-lat.desy.de")  # test.spec.source
    assert rtt.dst == HostRef("host", "ps-latency.grid.surfsara.nl")
    assert rtt.ts_s == utc(2025, 11, 20, 10, 35, 10)  # "2025-11-20T10:35:10", no zone: UTC


def test_pscheduler_failed_test_is_rejected_with_its_error() -> None:
    out = list(parse_pscheduler(PS_LINES))
    (failed,) = rejected(out)
    assert failed.position == 7
    assert failed.reason.startswith("test failed, result.error: iperf3 returned an error")
    assert "Connection refused" in failed.reason
    assert failed.origin_id is not None  # the run is still named
    assert not any(s.dst == HostRef("host", "perfsonar-bw.bnl.gov") for s in samples(out))


def test_pscheduler_epoch_milliseconds_time_is_read_as_seconds() -> None:
    owd, loss = ps_samples(8)
    assert owd.ts_s == 1763636400.0  # "@timestamp": 1763636400000
    assert (owd.value, loss.value) == (9.87, 0.0)  # default 1 ms buckets: keys are ms


def test_pscheduler_tests_we_do_not_measure_are_skipped() -> None:
    assert list(parse_pscheduler(json.dumps(PS_DOCS[7]))) == []  # trace


def test_pscheduler_file_gives_every_expected_sample() -> None:
    out = list(parse_pscheduler(PS_LINES))
    kinds = [s.kind.value for s in samples(out)]
    assert kinds == ["throughput", "throughput", "owd", "packet_loss", "packet_loss", "rtt",
                     "rtt", "owd", "packet_loss"]
    assert len(rejected(out)) == 1


def test_search_response_array_and_lines_give_the_same_samples() -> None:
    from_search = samples(parse_pscheduler(SEARCH_TEXT))
    from_lines = samples(parse_pscheduler(PS_LINES))
    assert from_search == from_lines[1:4]  # documents 2 and 3, with their _id
    assert samples(parse_pscheduler(json.dumps(PS_DOCS))) == from_lines
    assert samples(parse_pscheduler(PS_LINES.encode())) == from_lines


# --- both -----------------------------------------------------------------------------------


def test_parse_detects_the_form() -> None:
    assert list(parse(ESMOND_TEXT)) == list(parse_esmond(ESMOND_TEXT))
    assert list(parse(PS_LINES)) == list(parse_pscheduler(PS_LINES))
    assert list(parse(SEARCH_TEXT.encode())) == list(parse_pscheduler(SEARCH_TEXT))


@pytest.mark.parametrize("text", [ESMOND_TEXT, PS_LINES, SEARCH_TEXT])
def test_ids_are_stable_across_parses_and_unique(text: str) -> None:
    first = [s.origin_id for s in samples(parse(text))]
    assert first == [s.origin_id for s in samples(parse(text))]
    assert len(set(first)) == len(first)  # (source, origin_id) is unique in storage


def test_not_json_at_all_is_one_rejection_at_position_one() -> None:
    for parser in (parse, parse_esmond, parse_pscheduler):
        (only,) = list(parser(b"perfSONAR says hello"))
        assert only.position == 1
        assert isinstance(only, Rejected) and only.reason.startswith("not JSON")
    (broken_array,) = list(parse_pscheduler("[\n{\"test\": \n"))
    assert isinstance(broken_array, Rejected) and broken_array.position == 1


def test_esmond_input_of_the_wrong_shape_is_one_rejection() -> None:
    (only,) = list(parse_esmond(json.dumps(ESMOND["metadata"])))
    assert isinstance(only, Rejected) and "'metadata' list" in only.reason


# --- malformed records among good ones ------------------------------------------------------


def _esmond_extra(event_type: str, points: Any, **meta: Any) -> str:
    """The good bundle plus a 7th metadata object with one event type and its points."""
    bundle = copy.deepcopy(ESMOND)
    key = "7a7a7a7a7a7a47a7a7a7a7a7a7a7a7a7"
    extra = {"metadata-key": key, "source": "192.0.2.10", "destination": "198.51.100.20",
             "input-source": "perfsonar-bw.desy.de",
             "input-destination": "ps-bandwidth.grid.surfsara.nl", "subject-type": "point-to-point",
             "event-types": [{"event-type": event_type, "summaries": [],
                              "base-uri": f"{ARCH}/{key}/{event_type}/base"}]}
    for field, value in meta.items():
        if value is None:
            extra.pop(field.replace("_", "-"), None)
        else:
            extra[field.replace("_", "-")] = value
    bundle["metadata"].append(extra)
    bundle["data"][f"{ARCH}/{key}/{event_type}/base"] = points
    return json.dumps(bundle)


GOOD_TP = {"ts": 1763700000, "val": 1e9}
GOOD_HIST = {"ts": 1763700000, "val": {"4.1": 600}}
# name -> (bundle, reason, samples of the extra metadata object still yielded)
ESMOND_MALFORMED: dict[str, tuple[str, str, int]] = {
    "negative throughput": (_esmond_extra("throughput", [GOOD_TP, {"ts": 1763700060, "val": -1}]),
                            "throughput point 2: val -1 bits/s is negative", 1),
    "throughput not a number": (_esmond_extra("throughput", [GOOD_TP, {"ts": 1, "val": "fast"}]),
                                "throughput point 2: val must be a number, got 'fast'", 1),
    "loss above one": (_esmond_extra("packet-loss-rate", [{"ts": 1763700000, "val": 1.5}]),
                       "packet-loss-rate point 1: val 1.5 is outside 0..1", 0),
    "empty histogram": (_esmond_extra("histogram-owdelay", [GOOD_HIST, {"ts": 5, "val": {}}]),
                        "histogram-owdelay point 2: val: histogram is empty", 1),
    "histogram negative count": (
        _esmond_extra("histogram-rtt", [GOOD_HIST, {"ts": 5, "val": {"4.1": -3}}]),
        "histogram-rtt point 2: val: histogram count -3 of bucket '4.1'", 1),
    "histogram not an object": (
        _esmond_extra("histogram-owdelay", [{"ts": 5, "val": 4.1}]),
        "histogram-owdelay point 1: val: histogram must be an object", 0),
    "missing ts": (_esmond_extra("throughput", [GOOD_TP, {"val": 1e9}]),
                   "throughput point 2: missing ts", 1),
    "unreadable ts": (_esmond_extra("throughput", [{"ts": "yesterday", "val": 1e9}, GOOD_TP]),
                      "throughput point 1: ts must be a number, got 'yesterday'", 1),
    "point not an object": (_esmond_extra("throughput", [[1763700000, 1e9]]),
                            "throughput point 1: point must be an object", 0),
    "no source at all": (_esmond_extra("throughput", [GOOD_TP], input_source=None, source=None),
                         "missing input-source and source", 0),
    "source not a host": (_esmond_extra("throughput", [GOOD_TP], input_source="perf sonar"),
                          "input-source 'perf sonar' is not a host name or IP", 0),
    "no metadata-key": (_esmond_extra("throughput", [GOOD_TP], metadata_key=None),
                        "missing metadata-key", 0),
    "event-types not a list": (_esmond_extra("throughput", [GOOD_TP], event_types={}),
                               "event-types must be a list, got object", 0),
    "points not a list": (_esmond_extra("throughput", {"ts": 1, "val": 2}),
                          "must be a list of points, got object", 0),
}


@pytest.mark.parametrize("case", list(ESMOND_MALFORMED))
def test_malformed_esmond_records_are_rejected_and_good_ones_kept(case: str) -> None:
    text, reason, kept = ESMOND_MALFORMED[case]
    out = list(parse_esmond(text))
    (bad,) = rejected(out)
    assert bad.position == 7
    assert reason in bad.reason, bad.reason
    assert len(samples(out)) == 11 + kept


def test_metadata_that_is_not_an_object_is_rejected_in_place() -> None:
    bundle = copy.deepcopy(ESMOND)
    bundle["metadata"].insert(0, "psmetadata")
    out = list(parse_esmond(json.dumps(bundle)))
    assert rejected(out) == [Rejected(1, "metadata object must be a JSON object, got string")]
    assert len(samples(out)) == 11


def test_a_bad_point_names_its_origin_when_its_time_is_known() -> None:
    (bad,) = rejected(parse_esmond(ESMOND_MALFORMED["negative throughput"][0]))
    assert bad.origin_id == "7a7a7a7a7a7a47a7a7a7a7a7a7a7a7a7:throughput:1763700060"


def _ps_changed(index: int, change: Callable[[dict[str, Any]], None]) -> str:
    doc = copy.deepcopy(PS_DOCS[index])
    change(doc)
    return json.dumps(doc)


PS_MALFORMED: dict[str, tuple[str, str]] = {
    "not json": ("{test: throughput", "not JSON: Expecting property name"),
    "not an object": ("[1, 2]", "document must be a JSON object, got array"),
    "no test type": (_ps_changed(0, lambda d: d["test"].pop("type")), "missing test.type"),
    "no result": (_ps_changed(0, lambda d: d.pop("result")), "missing result"),
    "negative throughput": (_ps_changed(0, lambda d: d["result"].update(throughput=-1)),
                            "result.throughput -1 bits/s is negative"),
    "throughput not a number": (
        _ps_changed(0, lambda d: d["result"].update(throughput="9.4 Gbps")),
        "result.throughput must be a number, got '9.4 Gbps'"),
    "throughput missing": (_ps_changed(0, lambda d: d["result"].pop("throughput")),
                           "missing result.throughput"),
    "loss above one": (_ps_changed(2, lambda d: d["_source"]["result"]["packets"].update(loss=1.5)),
                       "result.packets.loss 1.5 is outside 0..1"),
    "no delay and no loss": (_ps_changed(3, lambda d: d["result"].pop("packets")),
                             "missing result.latency.median and result.packets.loss"),
    "bucket width out of range": (
        _ps_changed(2, lambda d: d["_source"]["test"]["spec"].update({"bucket-width": 2})),
        "test.spec.bucket-width 2 s is outside (0, 1)"),
    "no destination": (_ps_changed(0, lambda d: (d.pop("meta"), d["test"]["spec"].pop("dest"))),
                       "missing meta.destination.hostname, meta.destination.ip and test.spec.dest"),
    "no time": (_ps_changed(0, lambda d: (d.pop("@timestamp"), d.pop("pscheduler"))),
                "missing pscheduler.end_time, @timestamp and pscheduler.start_time"),
    "unreadable time": (_ps_changed(0, lambda d: d["pscheduler"].update(end_time="yesterday")),
                        "pscheduler.end_time 'yesterday' is not an ISO-8601 or Unix time"),
    "failed without error": (_ps_changed(0, lambda d: d["result"].update(succeeded=False)),
                             "result.succeeded is false"),
    "bad round trip duration": (
        _ps_changed(4, lambda d: d["result"]["packets"]["json"][0].update(rtt="PT1M2X")),
        "result.packets.json[].rtt 'PT1M2X' is not an ISO-8601 duration"),
    "rtt beyond float range in ms": (
        _ps_changed(5, lambda d: d["result"]["rtt"].update(mean=1e308)),
        "result gives rtt inf, out of range"),
}


@pytest.mark.parametrize("case", list(PS_MALFORMED))
def test_malformed_pscheduler_documents_are_rejected_and_good_ones_kept(case: str) -> None:
    text, reason = PS_MALFORMED[case]
    good = json.dumps(PS_DOCS[0])
    out = list(parse_pscheduler(f"{good}\n{text}\n\n{good}\n"))
    (bad,) = rejected(out)
    assert bad.position == 2
    assert reason in bad.reason, bad.reason
    assert len(samples(out)) == 2  # the good lines around it still count


# --- properties -----------------------------------------------------------------------------


def _sane(sample: ParsedSample) -> bool:
    if not (math.isfinite(sample.value) and sample.value >= 0 and sample.ts_s > 0):
        return False
    return sample.kind != MetricKind.PACKET_LOSS or sample.value <= 1


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values, st.text(max_size=40)))
def test_any_input_is_parsed_or_rejected_never_raises(value: Any) -> None:
    text = value if isinstance(value, str) else json.dumps(value)
    for item in parse(text):
        assert isinstance(item, ParsedSample | Rejected)
        assert not isinstance(item, ParsedSample) or _sane(item)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(esmond.EVENT_KINDS)), st.lists(
    st.fixed_dictionaries({"ts": json_values, "val": json_values}), max_size=4))
def test_any_esmond_point_gives_a_sane_sample_or_a_rejection(event_type: str,
                                                             points: list[Any]) -> None:
    out = list(parse_esmond(_esmond_extra(event_type, points)))
    extra = [s for s in out if isinstance(s, Rejected) or s.origin_id.startswith("7a7a")]
    assert len(extra) == len(points)  # one answer per point
    assert all(_sane(s) for s in samples(out))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(range(len(PS_DOCS))), st.sampled_from(
    ["result", "test", "meta", "pscheduler", "@timestamp"]), json_values)
def test_any_pscheduler_field_value_gives_sane_samples_or_one_rejection(
        index: int, field: str, value: Any) -> None:
    doc = copy.deepcopy(PS_DOCS[index])
    (doc.get("_source") or doc)[field] = value
    out = list(parse_pscheduler(json.dumps(doc)))
    assert len(rejected(out)) <= 1
    assert all(_sane(s) for s in samples(out))


# --- every published shape ------------------------------------------------------------------

SUMMARIES = (DATA / "esmond_summaries_bundle.json").read_text()
METADATA = (DATA / "esmond_metadata.json").read_text()
AVERAGES = (DATA / "esmond_throughput_averages_86400.json").read_text()
RUNS = (DATA / "pscheduler_runs.json").read_text()
ARCHIVED = (DATA / "pscheduler_archived.jsonl").read_text()
WLCG = (DATA / "wlcg_documents.jsonl").read_text()
KEY_A, KEY_B, KEY_C = ("a1b2c3d4e5f60718293a4b5c6d7e8f90", "b2c3d4e5f60718293a4b5c6d7e8f90a1",
                       "c3d4e5f60718293a4b5c6d7e8f90a1b2")


def outcomes(text: str) -> list[Any]:
    return [item for item in perfsonar.read(text) if not isinstance(item, Framing)]


def records(text: str, shape: str) -> list[Record]:
    return [item for item in outcomes(text) if isinstance(item, Record) and item.shape == shape]


def test_a_throughput_average_keyed_by_the_fetched_url_is_read() -> None:
    (avg,) = [s for r in records(SUMMARIES, "esmond points (throughput averages/86400)")
              for s in r.samples]
    assert avg.value == 1200.0  # 9.6e9 bits/s / 8e6
    assert avg.ts_s == 1763596800.0  # the window's start, as esmond writes it
    assert avg.weight == 0.0  # a summary: stands in where no base point is
    assert avg.origin_id == f"{KEY_A}:throughput:average/86400:1763596800"
    assert avg.source_unit == "bits/s avg/86400"


def test_statistics_summaries_give_their_median_else_their_mean() -> None:
    stats = [s for r in records(SUMMARIES, "esmond points (histogram-owdelay statistics/300)")
             for s in r.samples]
    assert [(s.kind, s.value) for s in stats] == [(MetricKind.OWD, 4.2), (MetricKind.OWD, 5.5)]
    (zero,) = [s for r in records(SUMMARIES, "esmond points (histogram-owdelay statistics/0)")
               for s in r.samples]
    # window 0 is the base point transformed: its id and weight are the base point's
    assert (zero.value, zero.weight, zero.origin_id) == (
        4.3, 1.0, f"{KEY_B}:histogram-owdelay:1763632860")
    reasons = [r.reason for r in outcomes(SUMMARIES) if isinstance(r, Rejected)
               and r.shape == "esmond points (histogram-owdelay statistics/300)"]
    assert reasons == ["histogram-owdelay statistics/300 point 3: val is null: no measurement "
                       "at this ts", "histogram-owdelay statistics/300 point 4: missing val.mean"]


def test_an_aggregated_histogram_gives_its_median() -> None:
    (agg,) = [s for r in records(SUMMARIES, "esmond points (histogram-owdelay aggregations/3600)")
              for s in r.samples]
    # 600 packets: 100 at 4.1, 200 at 4.2, 300 at 4.4; ranks 300 (4.2) and 301 (4.4)
    assert agg.value == pytest.approx(4.3)


def test_loss_comes_from_lost_over_sent_at_the_same_ts() -> None:
    pairs = [s for r in records(SUMMARIES, "esmond points (packet-count-lost/sent "
                                           "aggregations/86400)") for s in r.samples]
    assert [(s.ts_s, s.value) for s in pairs] == [(1763596800.0, 36 / 86400),
                                                  (1763683200.0, 0.0)]
    # the same id as packet-loss-rate's: one measurement in two forms is stored once
    assert pairs[0].origin_id == f"{KEY_B}:packet-loss-rate:aggregation/86400:1763596800"
    lost_alone = [r for r in outcomes(SUMMARIES) if isinstance(r, Rejected)
                  and "packet-count-lost point 3" in r.reason]
    assert len(lost_alone) == 1 and "no packet-count-sent point at ts 1763769600" in (
        lost_alone[0].reason)
    sent_alone = [n for n in outcomes(SUMMARIES) if isinstance(n, NotALink)
                  and "packet-count-sent point without" in n.what]
    assert len(sent_alone) == 1


def test_a_throughput_aggregation_is_refused_as_a_sum_of_rates() -> None:
    (bad,) = [r for r in outcomes(SUMMARIES) if isinstance(r, Rejected)
              and r.shape == "esmond points (throughput aggregations/3600)"]
    assert "(2 points): throughput aggregations are sums of rates" in bad.reason


def test_every_point_of_the_summaries_bundle_is_accounted_for() -> None:
    found = outcomes(SUMMARIES)
    kinds = [type(item).__name__ for item in found]
    # 12 points give a sample (1 + 2 + 1 + 1 + 2 loss rates + 2 pairs + 1 rtt + 2
    # throughput of an unregistered host); 5 rejected (the aggregation series, 2
    # statistics points, the unpaired lost count, the series of an unknown key);
    # 2 not a link (histogram-ttl, the unpaired sent count)
    assert (kinds.count("Record"), kinds.count("Rejected"), kinds.count("NotALink")) == (12, 5, 2)


def test_a_metadata_list_alone_is_metadata_not_a_link() -> None:
    found = outcomes(METADATA)
    assert [(type(n).__name__, n.position) for n in found] == [("NotALink", i) for i in
                                                               range(1, 5)]
    assert {n.shape for n in found} == {"esmond metadata list"}
    assert "holds none of its points" in found[0].what


def test_a_points_list_alone_is_one_rejection_saying_what_to_give() -> None:
    (only,) = outcomes(AVERAGES)
    assert isinstance(only, Rejected) and only.position == 1
    assert only.shape == "esmond points list without its metadata"
    assert "(4 points" in only.reason and "--esmond-metadata" in only.reason
    assert "missing test.type" not in only.reason


def test_a_points_list_with_its_metadata_and_uri_is_read() -> None:
    from collectors.esmond import pair_bundle

    uri = f"/esmond/perfsonar/archive/{KEY_A}/throughput/averages/86400"
    found = outcomes(pair_bundle(METADATA, uri, AVERAGES).decode())
    values = [(s.ts_s, s.value) for r in found if isinstance(r, Record) for s in r.samples]
    # 8e9 and "7200000000.0" bits/s; the third is null; the fourth's ts is epoch ms
    assert values == [(1763596800.0, 1000.0), (1763683200.0, 900.0), (1763856000.0, 800.0)]
    (null,) = [r for r in found if isinstance(r, Rejected)]
    assert null.reason == ("throughput averages/86400 point 3: val is null: no measurement at "
                           "this ts")


def test_a_rest_run_gives_its_samples_with_ends_from_the_task_spec() -> None:
    tp, lat, rtt, reverse = records(RUNS, "pScheduler REST run")
    (s,) = tp.samples
    assert (s.value, s.src.value, s.dst.value, s.ts_s) == (
        1176.5, "perfsonar-bw.desy.de", "ps-bandwidth.cern.ch", utc(2025, 11, 20, 10, 0, 36))
    assert s.origin_id == "2a1b0001-dddd-4eee-9fff-000000000001:throughput"
    owd, loss = lat.samples
    # 597 packets: 100 at 41, 300 at 42 -> rank 299 is 42 buckets of 0.0001 s = 4.2 ms
    assert owd.value == pytest.approx(4.2) and loss.value == 3 / 600
    assert owd.src == HostRef("host", "perfsonar-lat.desy.de")  # no spec source: participant
    (trip,) = rtt.samples
    assert trip.value == pytest.approx(89.1)  # median of 89.1, 88.9 and 92.7 ms (one lost)
    assert trip.src == HostRef("host", "perfsonar-lat.bnl.gov")  # source-node, port dropped
    (back,) = reverse.samples  # reverse: the dest sent; "4.8e9" bits/s as a string
    assert (back.src.value, back.dst.value, back.value) == (
        "ps-bandwidth.cern.ch", "perfsonar-bw.bnl.gov", 600.0)


def test_runs_that_measured_nothing_say_why() -> None:
    found = outcomes(RUNS)
    reasons = {item.position: item.reason for item in found if isinstance(item, Rejected)}
    assert reasons[4] == "run failed: Run failed: iperf3 server is busy"
    assert reasons[5].startswith("a pScheduler run without its task names no link")
    assert reasons[7] == "run state 'pending': no result (only finished runs have one)"
    (trace,) = [n for n in found if isinstance(n, NotALink)]
    assert (trace.position, trace.what) == (6, "pScheduler trace test: no metric netbroker "
                                               "keeps")


def test_archived_results_and_a_bare_result() -> None:
    found = outcomes(ARCHIVED)
    tp, lat = [r for r in found if isinstance(r, Record)]
    (s,) = tp.samples  # inside the archiver's envelope; ends at schedule.start + duration
    assert (s.value, s.ts_s, s.src.value) == (300.0, utc(2025, 11, 20, 11, 0, 20),
                                              "perfsonar-de-kit.gridka.de")
    owd, loss = lat.samples  # 50 at 4.10, 50 at 4.30 (default 1 ms buckets): (4.1 + 4.3) / 2
    assert (owd.value, loss.value) == (pytest.approx(4.2), 0.0)
    bare = [r for r in found if isinstance(r, Rejected) and r.shape == "bare pScheduler result"]
    assert len(bare) == 1 and "names no link" in bare[0].reason
    assert "missing test.type" not in bare[0].reason
    (task,) = [n for n in found if isinstance(n, NotALink)]
    assert task.shape == "pScheduler task"


def test_wlcg_message_bus_and_index_documents() -> None:
    found = outcomes(WLCG)
    bus = [s for r in found if isinstance(r, Record) and r.shape == "esmond message-bus record"
           for s in r.samples]
    assert [(s.kind, s.value, s.ts_s) for s in bus] == [
        (MetricKind.THROUGHPUT, 1200.0, 1763632805.0), (MetricKind.THROUGHPUT, 1000.0,
                                                        1763654405.0),
        (MetricKind.PACKET_LOSS, 0.01, 1763632920.0)]
    assert bus[0].origin_id == "e5f60718293a4b5c6d7e8f90a1b2c3d4:throughput:1763632805"
    docs = [s for r in found if isinstance(r, Record) and r.shape == "WLCG ps_* index document"
            for s in r.samples]
    assert [(s.kind, s.value, s.ts_s) for s in docs] == [
        (MetricKind.THROUGHPUT, 500.0, 1763632805.0), (MetricKind.OWD, 4.25, 1763632920.0)]
    assert isinstance(found[-1], NotALink)  # a message without datapoints


def test_an_unknown_record_names_the_shapes_expected() -> None:
    (only,) = outcomes('{"hello": "world"}')
    assert isinstance(only, Rejected)
    assert only.reason.startswith("unknown perfSONAR record (keys hello); expected an esmond "
                                  "bundle")


def test_shapes_may_be_mixed_in_one_input_and_each_is_read_as_itself() -> None:
    mixed = "\n".join([json.dumps(PS_DOCS[0]), json.dumps(json.loads(RUNS)[0]),
                       json.dumps(json.loads(ARCHIVED.splitlines()[1]))])
    shapes = [r.shape for r in outcomes(mixed)]
    assert shapes == ["pScheduler result in OpenSearch", "pScheduler REST run",
                      "pScheduler archived result"]

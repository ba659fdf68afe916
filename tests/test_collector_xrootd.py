"""Federated-XRootD records: FAX cost matrix and per-file reads, parsed (pure, no database)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pytest

from collectors import xrootd
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

DATA = Path(__file__).parent / "data" / "xrootd"
COST_LINES = (DATA / "cost_matrix.jsonl").read_text()
COST_DOCS = [json.loads(line) for line in COST_LINES.splitlines() if line.strip()]
SEARCH = (DATA / "cost_matrix_search.json").read_text()
FILE_LINES = (DATA / "file_records.jsonl").read_text()
FILE_RECORDS = [json.loads(line) for line in FILE_LINES.splitlines()]
TEST_FILE_MB = 90.4414399  # the probe's rate is this over the copy time in seconds


def samples(out: Iterable[ParsedSample | Rejected]) -> list[ParsedSample]:
    return [s for s in out if isinstance(s, ParsedSample)]


def rejected(out: Iterable[ParsedSample | Rejected]) -> list[Rejected]:
    return [r for r in out if isinstance(r, Rejected)]


def test_public_names_are_pinned() -> None:
    assert sorted(xrootd.__all__) == ["parse", "parse_cost_matrix", "parse_file_records", "read"]


# -- FAX cost matrix -----------------------------------------------------------------------

def test_cost_matrix_read_gives_throughput_in_mbytes_per_second_and_a_success() -> None:
    tp, ok = samples(xrootd.parse_cost_matrix(json.dumps(COST_DOCS[0])))
    assert (tp.kind, ok.kind) == (MetricKind.THROUGHPUT, MetricKind.SUCCESS)
    assert tp.value == pytest.approx(TEST_FILE_MB / 2.0)  # copied in 2.0 s
    assert (tp.weight, tp.source_unit, ok.value, ok.weight) == (1.0, "MB/s", 1.0, 1.0)
    # the probe runs at the destination and reads from the source's door
    assert tp.src == ok.src == HostRef("site", "CERN-PROD")
    assert tp.dst == ok.dst == HostRef("site", "MWT2")
    assert tp.ts_s == ok.ts_s == 1795514400.0
    assert tp.source == Source.XROOTD
    assert tp.origin_id == "CERN-PROD:MWT2:1795514400000:throughput"
    assert ok.origin_id == "CERN-PROD:MWT2:1795514400000:success"


def test_cost_matrix_numbers_sent_as_text_read_like_numbers() -> None:
    tp, _ = samples(xrootd.parse_cost_matrix(json.dumps(COST_DOCS[2])))
    assert tp.value == pytest.approx(TEST_FILE_MB / 5.0)
    assert tp.ts_s == 1795514520.0
    assert tp.origin_id == "BNL-ATLAS:MWT2:1795514520000:throughput"
    as_numbers = dict(COST_DOCS[2], rate=18.08828798, timestamp=1795514520000)
    assert samples(xrootd.parse_cost_matrix(json.dumps(as_numbers)))[0] == tp


def test_failed_cost_matrix_read_counts_only_as_a_failure() -> None:
    for doc in (COST_DOCS[3], COST_DOCS[4]):
        out = list(xrootd.parse_cost_matrix(json.dumps(doc)))
        assert [(s.kind, s.value, s.weight) for s in samples(out)] == [
            (MetricKind.SUCCESS, 0.0, 1.0)]
        assert rejected(out) == []
    (failure,) = samples(xrootd.parse_cost_matrix(json.dumps(COST_DOCS[3])))
    assert (failure.src, failure.dst) == (HostRef("site", "DESY-HH"), HostRef("site", "CERN-PROD"))
    assert failure.origin_id == "DESY-HH:CERN-PROD:1795514580000:success"


def test_cost_matrix_null_rate_is_a_failure_too() -> None:
    doc = dict(COST_DOCS[0], rate=None)
    assert [(s.kind, s.value) for s in samples(xrootd.parse_cost_matrix(json.dumps(doc)))] == [
        (MetricKind.SUCCESS, 0.0)]


def test_cost_matrix_zero_rate_is_a_success_without_throughput() -> None:
    (only,) = samples(xrootd.parse_cost_matrix(json.dumps(COST_DOCS[5])))
    assert (only.kind, only.value) == (MetricKind.SUCCESS, 1.0)


def test_cost_matrix_file_gives_two_samples_per_read_and_one_per_failure() -> None:
    out = list(xrootd.parse_cost_matrix(COST_LINES))
    assert rejected(out) == []
    tp, ok = MetricKind.THROUGHPUT, MetricKind.SUCCESS
    # lines 1-3 read, 4 and 6 failed, 7 read with no rate; line 5 is blank
    assert [(s.kind, s.value > 0) for s in samples(out)] == [
        (tp, True), (ok, True), (tp, True), (ok, True), (tp, True), (ok, True),
        (ok, False), (ok, False), (ok, True)]


def test_search_response_gives_the_documents_and_the_last_copy_repeats_their_ids() -> None:
    found = samples(xrootd.parse_cost_matrix(SEARCH))
    first = samples(xrootd.parse_cost_matrix(json.dumps(COST_DOCS[0])))
    failure = samples(xrootd.parse_cost_matrix(json.dumps(COST_DOCS[3])))
    assert found == first + first + failure  # the "last" copy dedupes on ingest


def test_search_hit_without_source_is_rejected_at_its_index() -> None:
    response = json.loads(SEARCH)
    del response["hits"]["hits"][1]["_source"]
    out = list(xrootd.parse(json.dumps(response)))
    assert rejected(out) == [Rejected(2, "search hit has no _source object", "CERN-PROD_MWT2")]
    assert len(samples(out)) == 3


# -- per-file transfer records -------------------------------------------------------------

def test_file_read_gives_byte_weighted_rate_from_server_site_to_client_domain() -> None:
    tp, ok = samples(xrootd.parse_file_records(json.dumps(FILE_RECORDS[0])))
    assert tp.value == pytest.approx(1_200_000_000 / 60 / 1e6)  # 20 MB/s over 60 s
    assert (tp.kind, tp.weight) == (MetricKind.THROUGHPUT, 1_200_000_000)
    assert (ok.kind, ok.value, ok.weight) == (MetricKind.SUCCESS, 1.0, 1.0)
    assert tp.src == ok.src == HostRef("site", "MWT2")
    assert tp.dst == ok.dst == HostRef("domain", "uchicago.edu")
    assert tp.ts_s == ok.ts_s == 1795514460.0  # end_time, epoch seconds in the shoveler
    uid = FILE_RECORDS[0]["unique_id"]
    assert (tp.origin_id, ok.origin_id) == (f"{uid}:throughput", f"{uid}:success")


def test_millisecond_clock_and_archive_wrapper_give_the_same_rate() -> None:
    wrapped = samples(xrootd.parse_file_records(json.dumps(FILE_RECORDS[1])))
    bare = samples(xrootd.parse_file_records(json.dumps(FILE_RECORDS[1]["data"])))
    assert wrapped == bare
    tp = wrapped[0]
    assert tp.value == pytest.approx(750_000_000 / 25 / 1e6)  # 30 MB/s over 25 000 ms
    assert tp.ts_s == 1795514525.0
    assert tp.src == HostRef("site", "BNL-ATLAS")
    assert tp.dst == HostRef("domain", "cern.ch")
    assert "ms" in tp.source_unit


def test_unknown_server_site_falls_back_to_host_and_bare_client_to_its_address() -> None:
    tp, _ = samples(xrootd.parse_file_records(json.dumps(FILE_RECORDS[2])))
    assert tp.src == HostRef("host", "dcache-door-atlas19.desy.de")
    assert tp.dst == HostRef("ip", "2001:db8:85a3::8a2e:370:7334")
    assert tp.value == pytest.approx(100_000_000 / 40 / 1e6)


def test_split_server_name_is_joined_with_its_domain_and_text_numbers_read() -> None:
    tp, _ = samples(xrootd.parse_file_records(json.dumps(FILE_RECORDS[3])))
    assert tp.src == HostRef("host", "f01-123-145.gridka.de")
    assert tp.dst == HostRef("domain", "desy.de")
    assert tp.value == pytest.approx(400_000_000 / 8 / 1e6)  # 50 MB/s
    assert tp.weight == 400_000_000


def test_writes_and_reads_of_nothing_are_skipped_without_rejection() -> None:
    for record in (FILE_RECORDS[4], FILE_RECORDS[5]):
        assert list(xrootd.parse_file_records(json.dumps(record))) == []


def test_server_host_is_lower_cased_and_client_host_used_without_domain() -> None:
    record = dict(FILE_RECORDS[0], server_site="", server_host="XRootD.MWT2.org",
                  client_domain="", client_host="UCT2-C417.mwt2.org")
    tp, _ = samples(xrootd.parse_file_records(json.dumps(record)))
    assert (tp.src, tp.dst) == (HostRef("host", "xrootd.mwt2.org"),
                                HostRef("host", "uct2-c417.mwt2.org"))


# -- framing, detection, ids ---------------------------------------------------------------

def test_ids_are_stable_across_parses_and_unique_per_kind() -> None:
    for parse, text in ((xrootd.parse_cost_matrix, COST_LINES),
                        (xrootd.parse_file_records, FILE_LINES)):
        first = [s.origin_id for s in samples(parse(text))]
        assert first == [s.origin_id for s in samples(parse(text))]
        assert len(first) == len(set(first))
    ids = [s.origin_id for s in samples(xrootd.parse(COST_LINES + FILE_LINES))]
    assert len(ids) == len(set(ids)) == 9 + 8


def test_parse_tells_the_two_forms_apart_per_record() -> None:
    mixed = "\n".join(json.dumps(r) for r in (COST_DOCS[0], FILE_RECORDS[0], COST_DOCS[3]))
    expected = (samples(xrootd.parse_cost_matrix(json.dumps(COST_DOCS[0])))
                + samples(xrootd.parse_file_records(json.dumps(FILE_RECORDS[0])))
                + samples(xrootd.parse_cost_matrix(json.dumps(COST_DOCS[3]))))
    assert list(xrootd.parse(mixed)) == expected


def test_form_specific_parser_rejects_the_other_form() -> None:
    out = list(xrootd.parse_cost_matrix(json.dumps(FILE_RECORDS[0])))
    assert out == [Rejected(1, "missing source", FILE_RECORDS[0]["unique_id"])]
    (bad,) = xrootd.parse_file_records(json.dumps(COST_DOCS[0]))
    assert isinstance(bad, Rejected) and bad.reason == "missing unique_id"


def test_json_array_positions_are_record_indexes() -> None:
    array = json.dumps([COST_DOCS[0], {"source": "MWT2", "destination": ""}, FILE_RECORDS[0]])
    out = list(xrootd.parse(array))
    assert [(r.position, r.reason) for r in rejected(out)] == [(2, "missing destination")]
    assert len(samples(out)) == 4


def test_single_record_keeps_its_line_number_and_bytes_may_carry_a_bom() -> None:
    text = "\n\n" + json.dumps({"source": "MWT2", "destination": "CERN-PROD"}) + "\n"
    assert list(xrootd.parse(text.encode("utf-8-sig"))) == [
        Rejected(3, "missing timestamp")]
    assert list(xrootd.parse(b"")) == list(xrootd.parse("  \n")) == []


def _cost(**change: object) -> str:
    return json.dumps({**COST_DOCS[1], **change})


def _file(**change: object) -> str:
    record = dict(FILE_RECORDS[0])
    for key, value in change.items():
        if value is None:
            record.pop(key, None)
        else:
            record[key] = value
    return json.dumps(record)


MALFORMED = {
    "not json": ('{"source": "CERN-PROD", rate: 3}', "not JSON"),
    "not an object": ("[1, 2]", "record must be a JSON object, got list"),
    "unknown form": ('{"site": "MWT2", "mbps": 12}', "unknown record form: keys mbps, site"),
    "missing destination": (_cost(destination=""), "missing destination"),
    "site not text": (_cost(source=42), "source must be a string, got 42"),
    "missing timestamp": (_cost(timestamp=None), "missing timestamp"),
    "timestamp not a number": (_cost(timestamp="2026-11-25T10:00:00"),
                               "timestamp must be a number, got '2026-11-25T10:00:00'"),
    "timestamp not positive": (_cost(timestamp=-5), "timestamp -5 is not a positive epoch time"),
    "negative rate": (_cost(rate="-3.5"), "rate -3.5 is negative"),
    "rate not a number": (_cost(rate=[1]), "rate must be a number, got [1]"),
    "rate not finite": (_cost(rate="inf"), "rate must be a finite number, got 'inf'"),
    "missing unique_id": (_file(unique_id=None), "missing unique_id"),
    "missing read_bytes": (_file(read_bytes=None, operation="read"), "missing read_bytes"),
    "negative read_bytes": (_file(read_bytes=-100), "read_bytes -100 is negative"),
    "read_bytes not a number": (_file(read_bytes="lots"),
                                "read_bytes must be a number, got 'lots'"),
    "boolean bytes": (_file(read_bytes=True), "read_bytes must be a number, got True"),
    "missing start": (_file(start_time=None), "missing start_time"),
    "end before start": (_file(end_time=1795514300),
                         "end_time 1795514300 is before start_time 1795514400"),
    "zero duration": (_file(end_time=1795514400), "zero duration"),
    "span of a server's uptime": (_file(start_time=1790000000),
                                  "longer than 604800 s: not a file read's duration"),
    "no server": (_file(server_site="UNKNOWN", server_host="unknown"),
                  "missing server_site and server_host"),
    "no client": (_file(client_domain="", client_host=None),
                  "missing client_domain and client_host"),
    "operation not text": (_file(operation=1), "operation must be a string, got 1"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_records_are_rejected_with_reason_and_valid_ones_kept(case: str) -> None:
    text, reason = MALFORMED[case]
    good_cost, good_file = json.dumps(COST_DOCS[0]), json.dumps(FILE_RECORDS[1])
    out = list(xrootd.parse(f"{good_cost}\n{text}\n\n{good_file}"))
    (bad,) = rejected(out)
    assert bad.position == 2
    assert reason in bad.reason, bad.reason
    assert len(samples(out)) == 4  # both good records still give their two samples


def test_rejection_carries_the_record_key_when_it_has_one() -> None:
    (bad,) = rejected(xrootd.parse(_file(read_bytes=-1)))
    assert bad.origin_id == FILE_RECORDS[0]["unique_id"]
    (bad,) = rejected(xrootd.parse(_cost(rate=-1)))
    assert bad.origin_id == "FZK-LCG2:DESY-HH:1795514460000"


# -- MONIT/GLED records, summary monitoring, shoveler packets ----------------------------------

GLED = (DATA / "gled_records.jsonl").read_text()
SUMMARY_XML = (DATA / "summary.xml").read_text()
SHOVELER = (DATA / "shoveler.jsonl").read_text()


def outcomes(data: str) -> list[object]:
    return [item for item in xrootd.read(data) if not isinstance(item, Framing)]


def test_gled_bytes_at_close_give_the_rate_when_read_bytes_is_zero() -> None:
    first = outcomes(GLED)[0]
    assert isinstance(first, Record) and first.shape == "MONIT/GLED per-file transfer record"
    tp, ok = first.samples
    # read_bytes 0, read_bytes_at_close 600,000,000 over 30 s (ms clock): 20 MB/s
    assert (tp.value, tp.weight, tp.ts_s) == (20.0, 6e8, 1763632830.0)
    assert tp.src == HostRef("host", "p05799459u51457.cern.ch")  # host joined to its domain
    assert tp.dst == HostRef("domain", "cc.in2p3.fr")
    assert (ok.kind, ok.value) == (MetricKind.SUCCESS, 1.0)


def test_gled_numbers_as_strings_read_like_numbers() -> None:
    fifth = outcomes(GLED)[4]
    assert isinstance(fifth, Record)
    # "250000000" bytes at close between "1763632900000" and "1763632910000" ms: 25 MB/s
    assert fifth.samples[0].value == 25.0
    assert fifth.samples[0].src == HostRef("host", "dcache-door-atlas19.desy.de")


def test_local_empty_and_write_records_are_counted_with_their_reason() -> None:
    local, empty, write = outcomes(GLED)[1:4]
    assert isinstance(local, NotALink) and "remote_access false" in local.what
    assert isinstance(empty, NotALink) and "read of no bytes" in empty.what
    assert isinstance(write, NotALink) and "write" in write.what
    bad = outcomes(GLED)[5]
    assert isinstance(bad, Rejected) and bad.position == 6
    assert bad.reason == "end_time 1763632800000 is before start_time 1763632900000"


def test_a_read_within_one_domain_is_local() -> None:
    record = dict(FILE_RECORDS[0], server_site="", server_domain="mwt2.org",
                  client_domain="MWT2.org.")
    (only,) = outcomes(json.dumps(record))
    assert isinstance(only, NotALink) and "one domain" in only.what


def test_summary_xml_is_counted_one_document_each_never_line_by_line() -> None:
    found = outcomes(SUMMARY_XML)
    assert [type(o).__name__ for o in found] == ["NotALink", "NotALink", "NotALink",
                                                 "Rejected"]
    pretty_lines = SUMMARY_XML.split("\n<statistics", 1)[0].count("\n") + 1
    # the pretty-printed first document spans lines 1 .. pretty_lines; the others one each
    assert [o.position for o in found] == [1, pretty_lines + 1, pretty_lines + 2,
                                           pretty_lines + 3]
    assert "server's load" in found[0].what and "not a link" in found[0].what
    assert found[3].reason.startswith("not XML: mismatched tag")
    assert list(xrootd.read(SUMMARY_XML))[-1] == Framing({"XML document": 4})


def test_shoveler_packets_decode_into_a_read_rate_from_server_to_client() -> None:
    found = outcomes(SHOVELER)
    (read,) = [o for o in found if isinstance(o, Record)]
    tp, ok = read.samples
    assert (ok.kind, ok.value) == (MetricKind.SUCCESS, 1.0)
    # fileid 201: opened in the window from 10:00:00, closed in the one ending 10:02:00;
    # read 1,000,000,000 + readv 200,000,000 bytes in 120 s: 10 MB/s
    assert (tp.value, tp.weight, tp.ts_s) == (10.0, 1.2e9, 1763632920.0)
    assert tp.src == HostRef("host", "xrd01.cern.ch")  # the '=' map's host
    assert tp.dst == HostRef("host", "wn042.cc.in2p3.fr")  # the 'u' map's host
    assert tp.origin_id == "xrdmon:192.0.2.50:1763600000:201:throughput"
    assert read.position == 5


def test_every_shoveler_packet_is_accounted_for() -> None:
    found = outcomes(SHOVELER)
    kinds = [(type(o).__name__, o.position) for o in found]
    assert kinds == [("NotALink", 1), ("NotALink", 2), ("NotALink", 3), ("NotALink", 4),
                     ("Record", 5), ("NotALink", 5), ("Rejected", 5), ("Rejected", 5),
                     ("NotALink", 6), ("NotALink", 7), ("Rejected", 8), ("Rejected", 9),
                     ("NotALink", 10)]
    reasons = [o.reason for o in found if isinstance(o, Rejected)]
    assert "dictid 999: its open is not in the batch" in reasons[0]
    assert "no user map ('u') for user dictid 999" in reasons[1]
    assert "Only base64 data is allowed" in reasons[2]
    assert reasons[3] == "XRootD packet: header plen 100 but the packet has 35 bytes"
    assert found[-1].shape == "XRootD summary monitoring (xrd.report)"  # forwarded XML


def test_a_shoveler_line_without_its_maps_cannot_name_the_client() -> None:
    lines = SHOVELER.splitlines()
    found = outcomes("\n".join([lines[0], lines[3], lines[4]]))  # no 'u' map
    (no_user,) = [o for o in found if isinstance(o, Rejected) and "dictid 201" in o.reason]
    assert "no user map" in no_user.reason

"""Every record read ends in exactly one outcome, for every published shape (both backends).

Each case is a test data file in one of the shapes of ``/work/shared/formats.md``
("As published") and what its records must become, counted by hand from the
file and its README: stored, duplicate, unmapped, too old, not a link, rejected.
Ingested with ``backfill=True`` (the data is older than the raw retention: see
tests/test_ingest_history.py for what the retention does), each into a fresh
database holding the sample grid.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from collectors.ingest import ingest

DATA = Path(__file__).parent / "data"
FIELDS = ("read", "stored", "duplicate", "unmapped", "too_old", "not_a_link", "rejected")

# file -> (source, outcome counts in FIELDS order, shapes read)
CASES: dict[str, tuple[str, tuple[int, ...], dict[str, int]]] = {
    # 7 messages; the 7th's host is in no site
    "fts/transfer_complete.jsonl": ("fts", (7, 6, 0, 1, 0, 0, 0),
                                    {"FTS transfer-complete message": 7}),
    # 3 messages separated by EOT, one in a MONIT envelope
    "fts/transfer_complete.stream": ("fts", (3, 3, 0, 0, 0, 0, 0),
                                     {"FTS transfer-complete message": 2,
                                      "FTS transfer-complete message in a MONIT envelope": 1}),
    # two pretty-printed messages, the second in a MONIT envelope (a failure)
    "fts/pretty_printed.json": ("fts", (2, 2, 0, 0, 0, 0, 0),
                                {"FTS transfer-complete message": 1,
                                 "FTS transfer-complete message in a MONIT envelope": 1}),
    # an array: a transfer, an optimizer message, a state that is no state
    "fts/messages_array.json": ("fts", (3, 1, 0, 0, 0, 1, 1),
                                {"FTS transfer-complete message": 2,
                                 "FTS optimizer queue-state message": 1}),
    # 11 points measured: 9 between registered hosts, the IPv6 throughput point and the
    # rtt point between IPs; 10 points of event types not kept (failures 1,
    # retransmits 3, histogram-ttl 1, packet-count-sent without lost 3, -bidir 1, trace 1)
    "perfsonar/esmond_bundle.json": ("perfsonar", (21, 9, 0, 2, 0, 10, 0), {}),
    # see test_collector_perfsonar: 12 points measured (2 of an unregistered host), 5
    # rejected, 2 not a link
    "perfsonar/esmond_summaries_bundle.json": ("perfsonar", (19, 10, 0, 2, 0, 2, 5), {}),
    # the archive's answer alone: 4 metadata objects
    "perfsonar/esmond_metadata.json": ("perfsonar", (4, 0, 0, 0, 0, 4, 0),
                                       {"esmond metadata list": 4}),
    # a points answer alone: one list, unusable without its metadata
    "perfsonar/esmond_throughput_averages_86400.json": (
        "perfsonar", (1, 0, 0, 0, 0, 0, 1), {"esmond points list without its metadata": 1}),
    # 9 OpenSearch documents: a failed test, a trace, 7 measured
    "perfsonar/pscheduler_results.jsonl": ("perfsonar", (9, 7, 0, 0, 0, 1, 1),
                                           {"pScheduler result in OpenSearch": 9}),
    # a search answer holding 2 documents
    "perfsonar/pscheduler_search.json": ("perfsonar", (2, 2, 0, 0, 0, 0, 0),
                                         {"pScheduler result in OpenSearch": 2}),
    # 8 REST runs: 4 measured; failed, without task, pending; a trace
    "perfsonar/pscheduler_runs.json": ("perfsonar", (8, 4, 0, 0, 0, 1, 3),
                                       {"pScheduler REST run": 8}),
    # 2 archived results measured, a bare result, a task, a failed test
    "perfsonar/pscheduler_archived.jsonl": ("perfsonar", (5, 2, 0, 0, 0, 1, 2),
                                            {"pScheduler archived result": 3,
                                             "bare pScheduler result": 1,
                                             "pScheduler task": 1}),
    # 3 datapoints of 2 messages, 2 index documents, a message without datapoints
    "perfsonar/wlcg_documents.jsonl": ("perfsonar", (6, 5, 0, 0, 0, 1, 0),
                                       {"esmond message-bus record": 4,
                                        "WLCG ps_* index document": 2}),
    # 6 documents (line 5 is blank)
    "xrootd/cost_matrix.jsonl": ("xrootd", (6, 6, 0, 0, 0, 0, 0),
                                 {"FAX cost-matrix document": 6}),
    # a search answer: a document, its "last" copy (the same ids: a duplicate), a failure
    "xrootd/cost_matrix_search.json": ("xrootd", (3, 2, 1, 0, 0, 0, 0),
                                       {"FAX cost-matrix document": 3}),
    # 6 records: a write, a read of nothing; the IPv6 client is in no site
    "xrootd/file_records.jsonl": ("xrootd", (6, 3, 0, 1, 0, 2, 0),
                                  {"WLCG per-file transfer record": 6}),
    # 6 GLED records: 2 reads; local, empty, write; end before start
    "xrootd/gled_records.jsonl": ("xrootd", (6, 2, 0, 0, 0, 3, 1),
                                  {"MONIT/GLED per-file transfer record": 6}),
    # 4 summary documents, the last broken
    "xrootd/summary.xml": ("xrootd", (4, 0, 0, 0, 0, 3, 1),
                           {"XRootD summary monitoring (xrd.report)": 4}),
    # 10 packets: 3 maps, an f-stream of opens, one of 4 closes (a read, a write, two
    # that cannot be timed or placed), one of a disconnect, a redirect, bad base64, a
    # wrong length, a forwarded summary
    "xrootd/shoveler.jsonl": ("xrootd", (13, 1, 0, 0, 0, 8, 4),
                              {"XRootD detailed monitoring packet (shoveler)": 12,
                               "XRootD summary monitoring (xrd.report)": 1}),
}


@pytest.mark.parametrize("path", list(CASES))
def test_every_record_read_has_exactly_one_outcome(grid_engine: Engine, path: str) -> None:
    source, expected, shapes = CASES[path]
    data = (DATA / path).read_bytes()
    report = ingest(grid_engine, source, data, backfill=True)
    counts = asdict(report.records)
    assert tuple(counts[f] for f in FIELDS) == expected
    assert counts["read"] == sum(counts[f] for f in FIELDS[1:])  # they add up
    assert sum(report.shapes.values()) == counts["read"]  # every record named by its shape
    for shape, n in shapes.items():
        assert report.shapes[shape] == n
    assert len(report.rejected) == counts["rejected"]
    assert sum(report.not_a_link.values()) == counts["not_a_link"]
    assert report.usable == (counts["stored"] > 0)


@pytest.mark.parametrize("path", [p for p, (_, counts, _) in CASES.items() if counts[1]])
def test_reading_a_file_again_stores_nothing_and_counts_its_records_as_duplicates(
        grid_engine: Engine, path: str) -> None:
    source, expected, _ = CASES[path]
    data = (DATA / path).read_bytes()
    ingest(grid_engine, source, data, backfill=True)
    again = ingest(grid_engine, source, data, backfill=True)
    assert (again.records.stored, again.records.duplicate) == (0, expected[1] + expected[2])
    assert again.stored == 0 and again.usable


def test_a_record_some_of_whose_samples_were_stored_before_counts_as_stored(
        grid_engine: Engine) -> None:
    """A transfer first seen failed (one success sample), then finished: its throughput
    sample is new, its success sample a duplicate; the record is stored."""
    import json

    message = json.loads((DATA / "fts/pretty_printed.json").read_text().split("\n}\n")[0] + "}")
    failed = dict(message, t_final_transfer_state="Error")
    first = ingest(grid_engine, "fts", json.dumps(failed), backfill=True)
    assert (first.records.stored, first.stored) == (1, 1)
    second = ingest(grid_engine, "fts", json.dumps(message), backfill=True)
    assert (second.records.stored, second.records.duplicate) == (1, 0)
    assert (second.stored, second.duplicates) == (1, 1)


def test_the_report_names_the_shape_layout_and_outcomes_for_scripts(grid_engine: Engine) -> None:
    data = (DATA / "xrootd/gled_records.jsonl").read_bytes()
    report = ingest(grid_engine, "xrootd", data, backfill=True).as_dict()
    assert report["records"] == {"read": 6, "stored": 2, "duplicate": 0, "unmapped": 0,
                                 "too_old": 0, "not_a_link": 3, "rejected": 1}
    assert report["shapes"] == {"MONIT/GLED per-file transfer record": 6}
    assert report["layout"] == {"JSON line": 6, "MONIT envelope": 6}
    assert report["not_a_link"] == {
        "XRootD local read (remote_access false): no link between sites": 1,
        "XRootD read of no bytes (read_bytes 0): no rate": 1,
        "XRootD write: its span is no read rate": 1}
    assert report["rejections"] == [{
        "position": 6, "reason": "end_time 1763632800000 is before start_time 1763632900000",
        "origin_id": "0a1b2c3d-1d90-11f0-9717-47f48e80beef-0006",
        "shape": "MONIT/GLED per-file transfer record"}]
    assert report["kept_from"] is None and report["usable"] is True

"""FTS transfer-completion messages: parsing (pure) and ingestion (both backends)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from collectors import fts
from collectors.ingest import ingest
from collectors.records import Framing, HostRef, MetricKind, NotALink, ParsedSample, Rejected
from netbroker.db.metrics import MetricsDB
from netbroker.db.schema import metric_buckets
from netbroker.network import metrics

KINDS = ("throughput", "success")

DATA = Path(__file__).parent / "data" / "fts"
LINES = (DATA / "transfer_complete.jsonl").read_text()
MESSAGES = [json.loads(line) for line in LINES.splitlines()]
NOW_S = 1795514400 + 3600  # an hour after the first transfer started


def samples(data: bytes | str) -> list[ParsedSample]:
    return [s for s in fts.parse(data) if isinstance(s, ParsedSample)]


def test_finished_transfer_gives_throughput_in_mbytes_per_second_and_a_success() -> None:
    first = samples(json.dumps(MESSAGES[0]))
    # 2,000,000,000 bytes copied between timestamp_tr_st and timestamp_tr_comp, 20 s apart
    assert [(s.kind, s.value, s.weight) for s in first] == [
        (MetricKind.THROUGHPUT, 100.0, 2e9), (MetricKind.SUCCESS, 1.0, 1.0)]
    # The RSE, carrying the storage URL's host for when the registry does not know it.
    assert first[0].src == HostRef("rse+host", "CERN-PROD_DATADISK eosatlas.cern.ch")
    assert first[0].dst == HostRef("rse+host", "FZK-LCG2_DATADISK atlaswebdav-kit.gridka.de")
    assert first[0].ts_s == 1795514420.0
    assert first[0].origin_id == MESSAGES[0]["tr_id"] + ":throughput"


def test_reported_throughput_wins_over_the_derived_one() -> None:
    (tp, _) = samples(json.dumps(MESSAGES[2]))
    assert tp.value == 12.5  # "throughput": 12500000 bytes/s; size/time would say 10
    assert tp.source_unit == "bytes/s"
    assert tp.src == HostRef("host", "atlaswebdav-kit.gridka.de")


def test_failed_and_aborted_transfers_count_only_as_failures() -> None:
    for msg in (MESSAGES[4], MESSAGES[5]):
        (only,) = samples(json.dumps(msg))
        assert (only.kind, only.value, only.weight) == (MetricKind.SUCCESS, 0.0, 1.0)


def test_broker_stream_with_eot_space_and_archive_wrapper_parses_like_lines() -> None:
    stream = (DATA / "transfer_complete.stream").read_bytes()
    parsed = samples(stream)
    by_lines = samples("\n".join(json.dumps(MESSAGES[i]) for i in (0, 3, 4)))
    assert parsed == by_lines
    assert len(parsed) == 5


@pytest.mark.parametrize("raw", [
    b'{"a": 1}\n{"a": 2}\n', b'{"a": 1}\r\n\r\n{"a": 2}', b'{"a": 1}\r{"a": 2}\r',
    b'{"a": 1}\x04 {"a": 2}\x04\x04{"a": 3}\n', b"\n\n x \n", b"", b"\x04"],
    ids=["lf", "crlf", "cr", "eot", "blank", "empty", "eot-only"])
def test_messages_and_positions_are_those_of_splitting_the_whole_batch(
        raw: bytes, tmp_path: Path) -> None:
    """Split lazily, from bytes or from a read-only mapping of them (the parsing
    process's), the messages and their positions are those of ``split``/``splitlines``."""
    import mmap

    parts = raw.split(b"\x04") if b"\x04" in raw else raw.splitlines()
    expected = [(i, p.strip()) for i, p in enumerate(parts, start=1) if p.strip()]
    assert list(fts.split_messages(raw)) == expected
    assert list(fts.split_messages(raw.decode())) == expected
    if raw:
        path = tmp_path / "batch"
        path.write_bytes(raw)
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            assert list(fts.split_messages(mapped)) == expected


def test_ids_are_stable_across_parses() -> None:
    assert [s.origin_id for s in samples(LINES)] == [s.origin_id for s in samples(LINES)]


def _bad(**change: object) -> str:
    msg = dict(MESSAGES[3])
    for key, value in change.items():
        if value is None:
            msg.pop(key, None)
        else:
            msg[key] = value
    return json.dumps(msg)


MALFORMED = {
    "not json": ("{tr_id: 1", "not JSON"),
    "not an object": ("[1, 2]", "must be a JSON object"),
    "no id": (_bad(tr_id=None, job_id=None), "missing tr_id"),
    "unknown state": (_bad(t_final_transfer_state="Maybe"), "t_final_transfer_state 'Maybe'"),
    "missing end": (_bad(timestamp_tr_comp=None, tr_timestamp_complete=None),
                    "missing timestamp_tr_comp or tr_timestamp_complete"),
    "end before start": (_bad(timestamp_tr_comp=1795514404000),
                         "timestamp_tr_comp 1795514404000 is not after timestamp_tr_st"),
    "negative size": (_bad(file_size=-5, f_size=-5), "file_size -5.0 is negative"),
    "negative bytes": (_bad(tr_bt_transfered=-1), "tr_bt_transfered -1.0 is negative"),
    "size not a number": (_bad(file_size="big"), "file_size must be a number, got 'big'"),
    "no source": (_bad(src_se=None, src_hostname=None), "missing src_se and src_hostname"),
    "missing size": (_bad(file_size=None, f_size=None), "missing file_size or f_size"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_messages_are_rejected_with_reason_and_position(case: str) -> None:
    text, reason = MALFORMED[case]
    good = json.dumps(MESSAGES[0])
    out = list(fts.parse(f"{good}\n{text}\n{good}"))
    rejected = [r for r in out if isinstance(r, Rejected)]
    assert len(rejected) == 1
    assert rejected[0].position == 2
    assert reason in rejected[0].reason, rejected[0].reason
    assert sum(isinstance(s, ParsedSample) for s in out) == 4  # the good ones still count


def test_ingest_stores_mapped_samples_and_counts_unmapped_hosts(grid_engine: Engine) -> None:
    report = ingest(grid_engine, "fts", LINES, now_s=NOW_S)
    # 5 finished transfers x 2 samples + 2 failures; message 7's host is unknown
    assert (report.samples, report.stored, report.duplicates) == (12, 10, 0)
    assert report.unmapped_samples == 2
    assert report.unmapped == {"host:se.unknown-lab.example.org": 2}
    assert report.rejected == []
    with grid_engine.connect() as conn:
        assert MetricsDB(conn).count_samples("fts") == 10


def test_reingesting_the_same_records_changes_nothing(grid_engine: Engine) -> None:
    ingest(grid_engine, "fts", LINES, now_s=NOW_S)
    before = {k: metrics.link_table(grid_engine, k, "1d", now_s=NOW_S) for k in KINDS}
    again = ingest(grid_engine, "fts", LINES + LINES, now_s=NOW_S)
    assert (again.stored, again.duplicates) == (0, 20)
    for kind in KINDS:
        pd.testing.assert_frame_equal(metrics.link_table(grid_engine, kind, "1d", now_s=NOW_S),
                                      before[kind])


def test_a_partly_new_batch_stores_and_counts_only_the_new_records(grid_engine: Engine) -> None:
    lines = LINES.splitlines()
    ingest(grid_engine, "fts", "\n".join(lines[:2]), now_s=NOW_S)
    # the new batch repeats the two stored transfers, and one new transfer twice
    report = ingest(grid_engine, "fts", "\n".join([*lines[:4], lines[3]]), now_s=NOW_S)
    assert (report.stored, report.duplicates) == (4, 6)
    links = metrics.link_table(grid_engine, "throughput", "1d", now_s=NOW_S)
    counts = {(r.src, r.dst): r.count for r in links.itertuples()}
    assert counts == {("CERN-PROD", "FZK-LCG2"): 2, ("FZK-LCG2", "UKI-NORTHGRID-MAN-HEP"): 1,
                      ("BNL-ATLAS", "MWT2"): 1}


def test_bad_records_are_reported_and_good_ones_of_the_batch_stored(grid_engine: Engine) -> None:
    batch = "\n".join([LINES.splitlines()[0], "{broken", _bad(file_size=-1, f_size=-1)])
    report = ingest(grid_engine, "fts", batch, now_s=NOW_S)
    assert report.stored == 2
    assert [r.position for r in report.rejected] == [2, 3]


def test_samples_older_than_the_raw_retention_are_not_stored(grid_engine: Engine) -> None:
    report = ingest(grid_engine, "fts", LINES, now_s=NOW_S + 30 * 86400)
    assert (report.stored, report.too_old) == (0, 10)


def test_concurrent_ingests_of_one_batch_store_it_once(grid_engine: Engine) -> None:
    """Two collectors pushing the same records at the same moment: counted once."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        reports = list(pool.map(lambda _: ingest(grid_engine, "fts", LINES, now_s=NOW_S),
                                range(4)))
    assert sorted(r.stored for r in reports) == [0, 0, 0, 10]
    assert sum(r.duplicates for r in reports) == 30
    links = metrics.link_table(grid_engine, "success", "1d", now_s=NOW_S)
    assert int(links["count"].sum()) == 6  # six mapped transfers, each once


# Values a field of a usual message may be replaced by: the usual kinds, and
# every kind the careful path turns down or reads otherwise.
_FIELD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 4 * 10**12),
    st.floats(allow_nan=False, allow_infinity=False, width=64), st.sampled_from(
        ["", " ", "Ok", "ok ", "Error", "Abort", "Maybe", "12.5", "big", "-1",
         "davs://se.b.org", "se.a.org", "CERN-PROD_DATADISK"]),
    st.just({}), st.just({"src_rse": "A", "dst_rse": "B"}), st.just([1]))
_FIELDS = ["tr_id", "job_id", "file_id", "t_final_transfer_state", "file_metadata",
           "timestamp_tr_st", "timestamp_tr_comp", "tr_timestamp_start",
           "tr_timestamp_complete", "file_size", "f_size", "tr_bt_transfered", "throughput",
           "src_se", "dst_se", "src_hostname", "dst_hostname", "metadata", "data"]


@given(base=st.sampled_from(MESSAGES), changes=st.dictionaries(
    st.sampled_from(_FIELDS), _FIELD_VALUES | st.just("<drop>"), max_size=4),
    rse=st.sampled_from([None, "src_rse", "dst_rse"]), rse_value=_FIELD_VALUES)
@settings(max_examples=400, deadline=None)
def test_usual_message_path_agrees_with_the_careful_one(
        base: dict[str, Any], changes: dict[str, Any], rse: str | None,
        rse_value: Any) -> None:
    """The shortcut for the usual message shape accepts only what the careful path
    accepts, with the same samples; whatever else it leaves to the careful path."""
    msg = dict(base)
    for key, value in changes.items():
        if value == "<drop>":
            msg.pop(key, None)
        else:
            msg[key] = value
    if rse is not None and isinstance(msg.get("file_metadata"), dict):
        msg["file_metadata"] = {**msg["file_metadata"], rse: rse_value}
    usual = fts._usual_samples(msg, {})
    try:
        careful: list[ParsedSample] | str = list(fts._samples(msg))
    except fts._Bad as exc:
        careful = str(exc)
    if usual is not None:
        assert list(usual) == careful
    out = list(fts.parse(json.dumps(msg)))  # and through the public parser
    if isinstance(careful, str):
        assert [(r.position, r.reason) for r in out if isinstance(r, Rejected)] == [(1, careful)]
    else:
        assert out == careful


def test_every_usual_message_of_the_test_data_takes_the_shortcut() -> None:
    usual = [m for m in MESSAGES if fts._usual_samples(m, {}) is not None]
    assert usual, "the shortcut must cover the messages Rucio's FTS sends"
    for msg in usual:
        assert list(fts._usual_samples(msg, {}) or ()) == list(fts._samples(msg))


def test_of_two_records_with_one_id_the_first_in_the_batch_is_stored(
        grid_engine: Engine) -> None:
    """Rows go in sorted by their key; the first of two rows with one key still wins."""
    first = dict(MESSAGES[0], t_final_transfer_state="Error")
    second = dict(MESSAGES[0])  # the same tr_id, finished: its success sample is a duplicate
    report = ingest(grid_engine, "fts", f"{json.dumps(first)}\n{json.dumps(second)}",
                    now_s=NOW_S)
    assert (report.samples, report.stored, report.duplicates) == (3, 2, 1)
    assert _buckets(grid_engine, "success") == [(1, 0.0)]  # the failure, not the success
    assert _buckets(grid_engine, "throughput") == [(1, 100.0)]  # the second's new sample


def _buckets(engine: Engine, kind: str) -> list[tuple[int, float]]:
    t = metric_buckets
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            sa.select(t.c.count, t.c.value_sum).where(t.c.kind == kind))]


def test_bucket_sums_are_the_fold_of_the_samples_in_input_order(grid_engine: Engine) -> None:
    """Many transfers of one link in one bucket: the stored sums are exactly those
    a plain left-to-right addition of the samples gives."""
    lines, expected = [], {"count": 0, "value_sum": 0.0, "weight_sum": 0.0, "wv": 0.0}
    for i in range(300):
        msg = dict(MESSAGES[0], tr_id=f"fold-{i}", file_size=10**9 + 7919 * i,
                   tr_bt_transfered=10**9 + 7919 * i,
                   timestamp_tr_comp=MESSAGES[0]["timestamp_tr_st"] + 3000 + 37 * i)
        (tp, _) = samples(json.dumps(msg))
        expected["count"] += 1
        expected["value_sum"] += tp.value
        expected["weight_sum"] += tp.weight
        expected["wv"] += tp.value * tp.weight
        lines.append(json.dumps(msg))
    ingest(grid_engine, "fts", "\n".join(lines), now_s=NOW_S)
    with grid_engine.connect() as conn:
        rows = conn.execute(sa.select(metric_buckets).where(
            metric_buckets.c.kind == "throughput")).mappings().all()
    assert len(rows) == 1
    assert (rows[0]["count"], rows[0]["value_sum"], rows[0]["weight_sum"],
            rows[0]["weighted_value_sum"]) == (expected["count"], expected["value_sum"],
                                               expected["weight_sum"], expected["wv"])


def test_the_page_cache_is_back_to_its_size_after_a_batch(grid_engine: Engine) -> None:
    if grid_engine.dialect.name != "sqlite":
        pytest.skip("the batch page cache is a SQLite pragma; PostgreSQL has no such thing")
    with grid_engine.connect() as conn:
        before = conn.exec_driver_sql("PRAGMA cache_size").scalar_one()
    ingest(grid_engine, "fts", LINES, now_s=NOW_S)
    with grid_engine.connect() as conn:  # the pool hands back the connection ingest used
        assert conn.exec_driver_sql("PRAGMA cache_size").scalar_one() == before


# --- every published layout (collectors.layout) ---------------------------------------------

PRETTY = (DATA / "pretty_printed.json").read_text()
ARRAY = (DATA / "messages_array.json").read_text()


def outcomes(data: str) -> list[Any]:
    return [item for item in fts.read(data) if not isinstance(item, Framing)]


def test_a_pretty_printed_message_is_one_record_not_one_rejection_per_line() -> None:
    first, second = outcomes(PRETTY)
    assert (first.position, first.shape) == (1, fts.MESSAGE)
    # 4,000,000,000 bytes between timestamp_tr_st and timestamp_tr_comp, 40 s apart
    assert [(s.kind, s.value, s.weight) for s in first.samples] == [
        (MetricKind.THROUGHPUT, 100.0, 4e9), (MetricKind.SUCCESS, 1.0, 1.0)]
    # the second document, in a MONIT envelope, opens on the first's last line + 1
    assert second.position == PRETTY.splitlines().index("{", 1) + 1
    assert second.shape == fts.MONIT_MESSAGE
    (failure,) = second.samples  # failed: counts toward the failure rate only
    assert (failure.kind, failure.value, failure.ts_s) == (MetricKind.SUCCESS, 0.0, 1763632900.0)
    assert failure.src == HostRef("host", "eosatlas.cern.ch")  # no file_metadata: the SE's host


def test_a_json_array_of_messages_numbers_them_by_index() -> None:
    transfer, optimizer, bad = outcomes(ARRAY)
    # numbers as strings; throughput "25000000" bytes/s reported wins; RSEs from a string
    assert [(s.kind, s.value) for s in transfer.samples] == [
        (MetricKind.THROUGHPUT, 25.0), (MetricKind.SUCCESS, 1.0)]
    assert transfer.samples[0].src == HostRef("rse+host",
                                              "DESY-HH_DATADISK dcache-se-atlas.desy.de")
    assert isinstance(optimizer, NotALink) and optimizer.position == 2
    assert optimizer.shape == fts.OPTIMIZER
    assert isinstance(bad, Rejected) and bad.position == 3
    assert "t_final_transfer_state 'Maybe'" in bad.reason


def test_read_says_how_the_input_was_framed() -> None:
    assert list(fts.read(PRETTY))[-1] == Framing({"multi-line JSON document": 2})
    assert list(fts.read(LINES))[-1] == Framing({"JSON line": len(MESSAGES)})
    stream = (DATA / "transfer_complete.stream").read_bytes()
    assert list(fts.read(stream))[-1] == Framing({"EOT-separated message": 3})


def test_pretty_printed_messages_ingest_with_every_record_accounted(grid_engine: Engine) -> None:
    report = ingest(grid_engine, "fts", PRETTY + ARRAY, now_s=1763632800 + 7200)
    r = report.records
    # 5 records: 2 transfers, 1 from the array, the optimizer, the bad state
    assert (r.read, r.stored, r.duplicate, r.unmapped, r.too_old, r.not_a_link,
            r.rejected) == (5, 3, 0, 0, 0, 1, 1)
    assert report.shapes == {fts.MESSAGE: 3, fts.MONIT_MESSAGE: 1, fts.OPTIMIZER: 1}
    assert report.layouts == {"multi-line JSON document": 3}


def test_an_rse_the_registry_does_not_know_maps_by_its_storage_urls_host(
        grid_engine: Engine) -> None:
    """RSE names are compared case-insensitively; an RSE the registry does not know
    at all falls back to the host of the message's storage URL (``src_se`` /
    ``dst_se``), here DESY-HH's and FZK-LCG2's storage hosts in the sample grid."""
    message = {**MESSAGES[0], "tr_id": "rse-fallback-1",
               "src_se": "root://se.desy.de", "dst_se": "davs://atlaswebdav-kit.gridka.de",
               "file_metadata": {"src_rse": "RENAMED-DESY_DATADISK",
                                 "dst_rse": "fzk-lcg2_datadisk"}}
    report = ingest(grid_engine, "fts", json.dumps(message), now_s=NOW_S)
    assert report.stored == 2, report.as_dict()
    with grid_engine.connect() as conn:
        sites = {r for r in conn.execute(sa.text(
            "SELECT s.name, d.name FROM metric_samples m JOIN sites s ON s.id = m.src_site_id "
            "JOIN sites d ON d.id = m.dst_site_id WHERE m.origin_id LIKE 'rse-fallback-1%'"))}
    assert sites == {("DESY-HH", "FZK-LCG2")}

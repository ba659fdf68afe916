"""Large batches parse in a second process (``collectors.parsing``): same outcome, nothing lost.

The batch mixes what a real day's FTS stream holds: finished and failed
transfers, malformed messages, unknown hosts, transfers older than the raw
retention, and transfers repeated in the batch and from an earlier batch.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from hashlib import blake2b
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from collectors import parsing
from collectors.ingest import ingest
from collectors.parsing import ChunkJob, parsed_elsewhere, parsed_here
from collectors.records import Source
from netbroker.db.grid import GridDB
from netbroker.db.metrics import MetricsDB, origin_key
from netbroker.db.schema import metric_buckets, metric_samples

DATA = Path(__file__).parent / "data" / "fts"
MESSAGES = [json.loads(line) for line in
            (DATA / "transfer_complete.jsonl").read_text().splitlines()]
NOW_S = 1795514400 + 3600
DAY_MS = 86_400_000


def mixed_batch(n: int) -> str:
    """``n`` lines: the sample messages varied (new ids, times spread over a day), one in
    50 malformed, one in 40 a repeat of an earlier line, one in 60 older than the retention."""
    lines: list[str] = []
    for i in range(n):
        if i % 50 == 7:
            lines.append('{"tr_id": "broken", "t_final_transfer_state": ' if i % 100 == 7
                         else json.dumps({**MESSAGES[0], "file_size": -i}))
            continue
        if i % 40 == 11 and lines:
            lines.append(lines[i // 2])
            continue
        msg = dict(MESSAGES[i % len(MESSAGES)])
        shift = -(i * 7919 % DAY_MS) - (40 * DAY_MS if i % 60 == 13 else 0)
        for key in ("timestamp_tr_st", "timestamp_tr_comp"):
            if isinstance(msg.get(key), int) and msg[key] > 0:
                msg[key] += shift
        msg["tr_id"] = f"{msg.get('tr_id') or 'tr'}-{i}"
        lines.append(json.dumps(msg))
    return "\n".join(lines) + "\n"


def stored(engine: Engine) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every sample row (without its id) and every bucket, in key order."""
    columns = [c for c in metric_samples.c if c.name != "id"]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(*columns).order_by(metric_samples.c.origin_key)).all()
        buckets = conn.execute(sa.select(metric_buckets)
                               .order_by(*metric_buckets.primary_key)).all()
    return [tuple(r) for r in rows], [tuple(b) for b in buckets]


def wipe(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.delete(metric_samples))
        conn.execute(sa.delete(metric_buckets))


def job_for(engine: Engine, data: Any, chunk: int) -> ChunkJob:
    with engine.connect() as conn:
        lookup = GridDB(conn).site_lookup()
    return ChunkJob(Source.FTS, data, lookup, NOW_S - 7 * 86400, 600, chunk)


def test_origin_key_is_the_blake2b_of_source_and_id() -> None:
    """Stored rows are deduplicated by this key: its definition may never drift."""
    for source, origin in (("fts", "t1:throughput"), ("xrootd", "é/ü"), ("perfsonar", "")):
        digest = blake2b(f"{source}\x00{origin}".encode(), digest_size=8).digest()
        assert origin_key(source, origin) == int.from_bytes(digest, "big", signed=True)


def test_the_child_sends_the_chunks_and_counts_parsing_here_makes(grid_engine: Engine) -> None:
    job = job_for(grid_engine, mixed_batch(400), chunk=37)
    with parsed_here(job) as here:
        expected = list(here.chunks)
        expected_counts = here.counts()
    with parsed_elsewhere(job) as there:
        assert there.pid is not None and there.pid != os.getpid()
        got = list(there.chunks)
        got_counts = there.counts()
    assert len(expected) > 10  # many chunks, each with its running count
    assert got == expected
    assert got_counts == expected_counts
    assert got_counts.rejected and got_counts.too_old and got_counts.samples > 600


def test_the_parsing_process_starts_without_the_database_layer() -> None:
    """What the child imports (collectors.parsing, the parser of a stream source,
    netbroker.common.sample_rows) needs no SQLAlchemy or numpy: it starts in ~0.05 s rather
    than ~0.5 s, while the writer waits for its first chunk. (collectors.nws also
    exports matrices, with pandas; its documents are one matrix, seldom large.)"""
    import subprocess
    import sys

    probe = ("import sys, collectors.parsing, collectors.fts, collectors.perfsonar, "
             "collectors.xrootd; "
             "print(sorted(m for m in ('sqlalchemy', 'numpy', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(("source", "path"), [
    (Source.PERFSONAR, Path("perfsonar/pscheduler_results.jsonl")),
    (Source.XROOTD, Path("xrootd/file_records.jsonl")),
    (Source.FTS, Path("fts/transfer_complete.stream"))], ids=["perfsonar", "xrootd", "fts-eot"])
def test_other_sources_reach_the_child_intact(grid_engine: Engine, source: Source,
                                              path: Path) -> None:
    """The child reads FTS batches mapped and the others' bytes: either way the
    chunks and counts are those parsing here makes."""
    data = (DATA.parent / path).read_bytes()
    with grid_engine.connect() as conn:
        lookup = GridDB(conn).site_lookup()
    job = ChunkJob(source, data, lookup, 0.0, 600, 2)
    with parsed_here(job) as here:
        expected, expected_counts = list(here.chunks), here.counts()
    with parsed_elsewhere(job) as there:
        assert list(there.chunks) == expected
        assert there.counts() == expected_counts
    assert expected and expected_counts.samples


@pytest.mark.parametrize("repeat", [False, True], ids=["new", "again"])
def test_ingest_in_two_processes_stores_and_reports_what_one_does(
        grid_engine: Engine, repeat: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # Chunks of 1,000 rows: a dozen of them. "again": half the records were stored
    # by an earlier batch, made the same way as the one compared.
    monkeypatch.setattr("collectors.ingest.CHUNK", 1_000)
    data = mixed_batch(4_000)
    half = "".join(data.splitlines(keepends=True)[::2])
    if repeat:
        ingest(grid_engine, "fts", half, now_s=NOW_S, parallel=False)
    one = ingest(grid_engine, "fts", data, now_s=NOW_S, parallel=False).as_dict(10**6)
    one_stored = stored(grid_engine)
    wipe(grid_engine)
    if repeat:
        ingest(grid_engine, "fts", half, now_s=NOW_S, parallel=True)
    seen: list[int] = []
    two = ingest(grid_engine, "fts", data, now_s=NOW_S, parallel=True,
                 on_progress=seen.append).as_dict(10**6)
    assert two == one
    assert stored(grid_engine) == one_stored
    assert one["rejected"] and one["too_old"] and one["unmapped_samples"]
    assert one["duplicates"] > (1_000 if repeat else 0)
    assert len(seen) >= 3 and seen == sorted(seen)
    assert seen[-1] == one["samples"] + one["rejected"]


def _children() -> list[int]:
    pid = os.getpid()
    found: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            found += [int(p) for p in f.read().split()]
    return found


def test_a_parser_killed_mid_batch_fails_the_batch_and_stores_nothing(
        grid_engine: Engine) -> None:
    ingest(grid_engine, "fts", mixed_batch(50), now_s=NOW_S)
    before = stored(grid_engine)
    already = set(_children())
    victims: list[int] = []

    def kill_the_parser(_: int) -> None:
        if not victims:  # after the first chunk is written: the child is ours, by PID
            victims.extend(p for p in _children() if p not in already)
            for pid in victims:
                os.kill(pid, signal.SIGKILL)

    with pytest.raises(RuntimeError, match=r"parsing process \(pid \d+\) ended"):
        ingest(grid_engine, "fts", mixed_batch(30_000), now_s=NOW_S, parallel=True,
               on_progress=kill_the_parser)
    assert len(victims) == 1
    assert stored(grid_engine) == before


def test_an_error_in_the_child_is_raised_in_the_writer(grid_engine: Engine) -> None:
    job = job_for(grid_engine, 12345, chunk=10)  # not bytes: the parser fails on it
    with pytest.raises(TypeError, match="int"), parsed_elsewhere(job) as there:
        list(there.chunks)


def test_leaving_early_stops_the_child(grid_engine: Engine) -> None:
    job = job_for(grid_engine, mixed_batch(5_000), chunk=10)
    with parsed_elsewhere(job) as there:
        next(there.chunks)
        pid = there.pid
    assert pid is not None and pid not in _children()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped: no such process


def test_small_batches_parse_here_and_large_ones_elsewhere(grid_engine: Engine,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    used: list[str] = []
    for name in ("parsed_here", "parsed_elsewhere"):
        real = getattr(parsing, name)
        monkeypatch.setattr("collectors.ingest." + name,
                            lambda job, real=real, name=name: used.append(name) or real(job))
    monkeypatch.setattr("collectors.ingest.PARALLEL_MIN_BYTES", 10_000)
    ingest(grid_engine, "fts", mixed_batch(3), now_s=NOW_S)
    ingest(grid_engine, "fts", mixed_batch(200), now_s=NOW_S)
    assert used == ["parsed_here", "parsed_elsewhere"]
    with grid_engine.connect() as conn:
        assert MetricsDB(conn).count_samples("fts") > 200


@pytest.mark.parametrize("repeat", [False, True], ids=["new", "again"])
def test_staged_chunks_store_what_tuple_chunks_store(
        grid_engine: Engine, repeat: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """On SQLite chunks travel as staged databases (MetricsDB.stages); the rows, the
    buckets to the bit and the report are those of the tuple chunks PostgreSQL takes."""
    if grid_engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL takes tuple chunks only")
    monkeypatch.setattr("collectors.ingest.CHUNK", 700)
    data = mixed_batch(3_000)
    half = "".join(data.splitlines(keepends=True)[1::2])
    outcomes = []
    for staged in (True, False):
        monkeypatch.setattr(MetricsDB, "stages", lambda self, staged=staged: staged)
        if repeat:
            ingest(grid_engine, "fts", half, now_s=NOW_S)
        report = ingest(grid_engine, "fts", data, now_s=NOW_S, parallel=staged)
        outcomes.append((report.as_dict(10**6), stored(grid_engine)))
        wipe(grid_engine)
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0]["duplicates"] > (700 if repeat else 0)


def test_a_large_fts_batch_is_split_at_a_line_end_and_numbered_on() -> None:
    """split_job: halves cut after the line crossing the middle, the second half's
    records numbered from the first's line count (blank lines count, as lines do);
    EOT and CR streams, NWS documents, shoveler packets and small batches stay whole."""
    data = b'{"a": 1}\n\n{"b": 22}\n{"c": 333}\n{"d": 4}\n'
    job = ChunkJob(Source.FTS, data, {}, 0.0, 600, 10)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(parsing, "SPLIT_MIN_BYTES", 10)
        (first, a), (second, b) = parsing.split_job(job)
        assert bytes(a) + bytes(b) == data and bytes(a).endswith(b"\n")
        assert (first.first_position, second.first_position) == (1, 1 + bytes(a).count(b"\n"))
        from collectors.fts import split_messages
        whole = list(split_messages(data))
        halves = [*split_messages(bytes(a)), *split_messages(bytes(b), second.first_position)]
        assert halves == whole
        for other in (data.replace(b"\n", b"\x04"), data.replace(b"\n", b"\r\n")):
            assert len(parsing.split_job(job._replace(data=other))) == 1
        assert len(parsing.split_job(job._replace(source=Source.NWS))) == 1  # one document
        assert len(parsing.split_job(job._replace(source=Source.XROOTD))) == 2
        packets = data.replace(b'{"a": 1}', b'{"remote": "192.0.2.1:1", "data": ""}')
        assert len(parsing.split_job(job._replace(source=Source.XROOTD, data=packets))) == 1
    assert len(parsing.split_job(job)) == 1  # below SPLIT_MIN_BYTES


def test_a_batch_parsed_in_two_processes_stores_and_reports_what_one_does(
        grid_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two children, each half of the lines, their chunks written in turn: the same
    report (rejections at the same positions), the same rows; bucket sums the same
    but for rounding (chunks cut elsewhere add them in other groups)."""
    monkeypatch.setattr("collectors.ingest.CHUNK", 500)
    data = mixed_batch(3_000)
    one = ingest(grid_engine, "fts", data, now_s=NOW_S, parallel=False).as_dict(10**6)
    one_rows, one_buckets = stored(grid_engine)
    wipe(grid_engine)
    monkeypatch.setattr(parsing, "SPLIT_MIN_BYTES", 1_000)
    pids: list[tuple[int, ...]] = []
    real = parsing.parsed_elsewhere

    @contextlib.contextmanager
    def watched(job: ChunkJob) -> Any:
        with real(job) as parsed:
            pids.append(parsed.pids)
            yield parsed

    monkeypatch.setattr("collectors.ingest.parsed_elsewhere", watched)
    seen: list[int] = []
    two = ingest(grid_engine, "fts", data, now_s=NOW_S, parallel=True,
                 on_progress=seen.append).as_dict(10**6)
    two_rows, two_buckets = stored(grid_engine)
    assert len(pids[0]) == 2
    assert two == one and two_rows == one_rows
    assert [b[:6] for b in two_buckets] == [b[:6] for b in one_buckets]  # key and count
    for got, expected in zip(two_buckets, one_buckets, strict=True):
        assert got[6:] == pytest.approx(expected[6:], rel=1e-12)
    assert seen == sorted(seen) and seen[-1] == one["samples"] + one["rejected"]
    assert one["rejected"] and one["duplicates"] > 1  # repeats across the halves too


def test_of_two_records_with_one_id_in_two_halves_the_one_written_first_is_stored(
        grid_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks come in turn from the halves: a record early in the second half is
    written before one late in the first, and of two with one origin id that one is
    stored, once; the counts are those of one process, but for which of the two
    records is the stored one and which the duplicate."""
    monkeypatch.setattr("collectors.ingest.CHUNK", 500)
    lines = mixed_batch(3_000).splitlines()
    late = next(i for i in range(1_450, 0, -1) if lines[i].startswith("{")
                and json.loads(lines[i]).get("t_final_transfer_state") == "Ok")
    original = json.loads(lines[late])
    lines.insert(1_560, json.dumps({**original, "t_final_transfer_state": "Error"}))
    data = "\n".join(lines) + "\n"
    assert data.index(lines[late]) < len(data) // 2 < data.index(lines[1_560])
    one = ingest(grid_engine, "fts", data, now_s=NOW_S, parallel=False).as_dict(10**6)
    wipe(grid_engine)
    monkeypatch.setattr(parsing, "SPLIT_MIN_BYTES", 1_000)
    two = ingest(grid_engine, "fts", data, now_s=NOW_S, parallel=True).as_dict(10**6)
    one_records, two_records = one.pop("records"), two.pop("records")
    assert two == one
    # One process: the finished record went first, the failed one's success sample was
    # the duplicate. Two: the failed one went first, and the finished one still stored
    # its throughput: both records stored.
    assert (two_records["stored"], two_records["duplicate"]) == (
        one_records["stored"] + 1, one_records["duplicate"] - 1)
    assert {k: v for k, v in two_records.items() if k not in ("stored", "duplicate")} == {
        k: v for k, v in one_records.items() if k not in ("stored", "duplicate")}
    with grid_engine.connect() as conn:
        success = conn.execute(sa.select(metric_samples.c.value).where(
            metric_samples.c.origin_id == f"{original['tr_id']}:success")).scalars().all()
    assert success == [0.0]  # the failed one, from the second half's earlier chunk

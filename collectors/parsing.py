"""A batch's records made into sample chunks ready to write, here or in a second process.

All of an ingestion that needs no database (read the records, map hosts
to sites, build the rows, sort and fold them with
``netbroker.common.sample_rows.prepare_chunk``, or stage them for a SQLite writer
with ``stage_chunk``) is one generator,
:func:`prepared_chunks`. It accounts for every record read
(``collectors.records``): a record whose samples go into a chunk is
*written* (the writer then tells stored from duplicate), or it is unmapped,
too old, not a link, or rejected; each chunk carries how many rows each of
its records has, so that the writer can tell which records it stored.
:func:`parsed_here` runs it in this process; :func:`parsed_elsewhere` runs
it in a child process started for the batch (two, each half of the lines,
for a large batch: :func:`split_job`),
which sends each chunk back through a pipe while the caller writes the one
before. Either way the caller gets the same counts, and from one child the
same chunks in the same order (``tests/test_ingest_parallel.py`` checks it).

Why a process: on SQLite the writer is one connection, and the parsing
half of a large batch (about 40% of an FTS batch's time, more of a perfSONAR
or XRootD one's) would wait for the GIL in a thread. The child is a fresh
interpreter (safe to start from a threaded server), gets the input once,
and blocks on the pipe once it has one chunk ready, so it is never more
than a chunk ahead and memory stays bounded.
If the writer fails, the child is stopped and joined; if the child fails,
its exception is raised in the writer, whose transaction then rolls back.
"""

from __future__ import annotations

import contextlib
import importlib
import mmap
import os
import subprocess
import sys
import traceback
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, NamedTuple

from collectors.mapping import SiteResolver
from collectors.records import Framing, NotALink, Outcome, ParsedSample, Record, Rejected
from netbroker.common.metric_kinds import MetricKind
from netbroker.common.metric_kinds import MetricSource as Source
from netbroker.common.sample_rows import (
    SampleChunk,
    StagedChunk,
    origin_key,
    prepare_chunk,
    stage_chunk,
)

__all__ = ["CHUNK", "PARSERS", "SPLIT_MIN_BYTES", "ChunkJob", "ParseCounts", "Parsed",
           "parsed_elsewhere", "parsed_here", "parser_for", "prepared_chunks", "reader_for",
           "split_job", "work_bytes"]

Parser = Callable[[bytes | str], Iterator[ParsedSample | Rejected]]
Reader = Callable[..., Iterator[Outcome]]
# What a chunk travels with: the chunk, the items parsed so far, and the rows of
# each of its records in turn (so the writer can tell which records it stored).
ChunkOut = tuple[SampleChunk | StagedChunk, int, array]

CHUNK = 20_000  # samples per round trip of inserts: bounded memory on large files
# Batches this large parse in two processes, each half of the lines (~300,000 FTS
# records and up): one parsing process makes ~12 us of work an FTS record for the
# writer's ~11-13 us, and the writer waited on it; perfSONAR and XRootD records
# cost their parser more than their writer still (split_job says which stay whole).
SPLIT_MIN_BYTES = 256 * 2**20
# Parsing work per byte of input, FTS's being 1: an esmond point is a fifth of an FTS
# message's bytes but a histogram median to read, about 4x the work a byte. Both
# thresholds (here and collectors.ingest.PARALLEL_MIN_BYTES) weigh a batch by it.
_WORK_PER_BYTE = {Source.PERFSONAR: 4}

# Each source's module has a ``read`` (and ``parse``, its samples and rejections);
# a batch imports only the one it needs.
PARSERS: dict[Source, str] = {
    Source.FTS: "collectors.fts",
    Source.PERFSONAR: "collectors.perfsonar",
    Source.XROOTD: "collectors.xrootd",
    Source.NWS: "collectors.nws",
}

# Enum member -> its plain string, for rows: a dict look-up costs less than ``.value``.
_PLAIN: dict[Source | MetricKind, str] = {m: m.value for m in (*Source, *MetricKind)}
_STOP_S = 10  # how long a child that should be finishing is waited for before it is killed


def work_bytes(source: Source, size: int) -> int:
    """A batch of ``size`` bytes of ``source`` as the bytes of FTS messages of as much
    parsing work: what the parallel and split thresholds are compared with.

    >>> work_bytes(Source.FTS, 1000), work_bytes(Source.PERFSONAR, 1000)
    (1000, 4000)
    """
    return size * _WORK_PER_BYTE.get(source, 1)


def parser_for(source: Source) -> Parser:
    """The ``parse`` function of ``source``'s collector module."""
    parse: Parser = importlib.import_module(PARSERS[source]).parse
    return parse


def reader_for(source: Source) -> Reader:
    """The ``read`` function of ``source``'s collector module: one outcome per record."""
    read: Reader = importlib.import_module(PARSERS[source]).read
    return read


class ChunkJob(NamedTuple):
    """What parsing a batch needs: all of it plain data, so a child process can have it."""

    source: Source
    data: bytes | str
    lookup: Mapping[str, Mapping[str, list[int]]]  # ``GridDB.site_lookup()``
    oldest_s: float  # records all of whose samples are before this are too old to store
    bucket_s: int
    chunk: int = CHUNK  # rows per chunk
    staged: bool = False  # StagedChunk (for a SQLite writer: MetricsDB.stages) or SampleChunk
    first_position: int = 1  # of ``data``'s first record in the batch (a later part of it)


@dataclass
class ParseCounts:
    """What parsing found that is not a row to store, and what each record read became.

    Samples: ``samples`` (all those of records that measured a link), ``unmapped_samples``
    and ``unmapped`` (per host), ``too_old``. Records: ``written`` (their rows
    went to chunks: stored or duplicates, as the writer finds), ``unmapped_records``,
    ``too_old_records``, ``not_a_link`` (per what they are), ``rejected``;
    ``shapes`` counts every record read by the shape it was read as, and
    ``layouts`` the documents by their framing.
    """

    samples: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    unmapped: Counter[str] = field(default_factory=Counter)
    unmapped_samples: int = 0
    too_old: int = 0
    written: int = 0
    unmapped_records: int = 0
    too_old_records: int = 0
    not_a_link: Counter[str] = field(default_factory=Counter)
    shapes: Counter[str] = field(default_factory=Counter)
    layouts: Counter[str] = field(default_factory=Counter)

    @property
    def items(self) -> int:
        """Samples and rejections: the items parsed."""
        return self.samples + len(self.rejected)

    @property
    def records(self) -> int:
        """The records read: written, unmapped, too old, not a link or rejected."""
        return (self.written + self.unmapped_records + self.too_old_records
                + sum(self.not_a_link.values()) + len(self.rejected))

    def add(self, other: ParseCounts) -> None:
        """Add the counts of a later part of the same batch."""
        self.samples += other.samples
        self.rejected.extend(other.rejected)
        self.unmapped.update(other.unmapped)
        self.unmapped_samples += other.unmapped_samples
        self.too_old += other.too_old
        self.written += other.written
        self.unmapped_records += other.unmapped_records
        self.too_old_records += other.too_old_records
        self.not_a_link.update(other.not_a_link)
        self.shapes.update(other.shapes)
        self.layouts.update(other.layouts)


@dataclass
class Parsed:
    """Chunks with the count of items parsed so far; ``counts`` once they are all taken."""

    chunks: Iterator[ChunkOut]
    _counts: Callable[[], ParseCounts]
    pid: int | None = None  # the (first) parsing process, when it is not this one
    pids: tuple[int, ...] = ()  # all of them

    def counts(self) -> ParseCounts:
        return self._counts()


def prepared_chunks(job: ChunkJob, counts: ParseCounts) -> Iterator[ChunkOut]:
    """Chunks of about ``job.chunk`` rows to store, each with the items parsed so far
    and the rows of each of its records.

    Counts what is not stored into ``counts`` on the way (rejections, records
    that are not a link, unmapped hosts, records too old). A record is
    unmapped when an end of one of its samples maps to no site, too old when
    all its samples are older than ``job.oldest_s``; otherwise all its rows
    go into one chunk (a chunk ends after the record that fills it). A record
    repeated in the batch is left to the database: its second insert
    conflicts and counts as a duplicate. The loop runs once per sample
    (millions a batch), hence the local names and counters: ``counts`` is
    brought up to date before each chunk is yielded. O(n) in the samples,
    plus each chunk's sort.
    """
    resolve, key_of, plain = SiteResolver(job.lookup).resolve, origin_key, _PLAIN
    oldest_s, bucket_s, chunk = job.oldest_s, job.bucket_s, job.chunk
    prepare = stage_chunk if job.staged else prepare_chunk
    rows: list[tuple[Any, ...]] = []
    sizes = array("H")
    samples = unmapped = too_old = written = unmapped_records = too_old_records = 0
    src_ref = dst_ref = src = dst = None
    shapes: dict[str, int] = {}
    read = reader_for(job.source)
    items = (read(job.data) if job.first_position == 1
             else read(job.data, first_position=job.first_position))
    for item in items:
        if type(item) is not Record:
            _count_other(item, counts)
            continue
        _, shape, record = item
        shapes[shape] = shapes.get(shape, 0) + 1
        n = len(record)
        if not n:  # readers give none such; counted, should one ever come
            counts.not_a_link[f"{shape} without samples"] += 1
            continue
        samples += n
        start, newest, mapped = len(rows), 0.0, True
        for source, origin_id, item_src, item_dst, kind, value, ts_s, weight, unit in record:
            if item_src is not src_ref or item_dst is not dst_ref:  # a record's share them
                src_ref, dst_ref = item_src, item_dst
                src, dst = resolve(src_ref), resolve(dst_ref)
            if src is None or dst is None:
                mapped = False
                for ref, site in ((src_ref, src), (dst_ref, dst)):
                    if site is None:
                        counts.unmapped[f"{ref.by}:{ref.value}"] += 1
            if ts_s > newest:
                newest = ts_s
            name = plain[source]
            rows.append((key_of(name, origin_id), name, origin_id, src, dst, plain[kind],
                         value, ts_s, weight, unit))  # SAMPLE_COLUMNS order
        if not mapped:
            del rows[start:]
            unmapped_records += 1
            unmapped += n
            continue
        if newest < oldest_s:
            del rows[start:]
            too_old_records += 1
            too_old += n
            continue
        written += 1
        sizes.append(n)
        if len(rows) >= chunk:
            _add_counts(counts, shapes, samples, unmapped, too_old, written, unmapped_records,
                        too_old_records)
            samples = unmapped = too_old = written = unmapped_records = too_old_records = 0
            shapes = {}
            yield prepare(rows, bucket_s), counts.samples + len(counts.rejected), sizes
            rows, sizes = [], array("H")
    _add_counts(counts, shapes, samples, unmapped, too_old, written, unmapped_records,
                too_old_records)
    if rows:
        yield prepare(rows, bucket_s), counts.samples + len(counts.rejected), sizes


def _count_other(item: Outcome, counts: ParseCounts) -> None:
    """Count an outcome that is not a Record: a rejection, not a link, or the framing."""
    if type(item) is Rejected:
        counts.rejected.append(item)
        counts.shapes[item.shape or "unknown"] += 1
    elif type(item) is NotALink:
        counts.not_a_link[item.what] += 1
        counts.shapes[item.shape] += 1
    elif type(item) is Framing:
        counts.layouts.update(item.layouts)
    else:
        raise TypeError(f"a reader yielded {type(item).__name__}, not an outcome")


def _add_counts(counts: ParseCounts, shapes: dict[str, int], samples: int, unmapped: int,
                too_old: int, written: int, unmapped_records: int,
                too_old_records: int) -> None:
    counts.samples += samples
    counts.unmapped_samples += unmapped
    counts.too_old += too_old
    counts.written += written
    counts.unmapped_records += unmapped_records
    counts.too_old_records += too_old_records
    counts.shapes.update(shapes)


@contextlib.contextmanager
def parsed_here(job: ChunkJob) -> Iterator[Parsed]:
    """:func:`prepared_chunks` in this process."""
    counts = ParseCounts()
    yield Parsed(prepared_chunks(job, counts), lambda: counts)


def split_job(job: ChunkJob) -> list[tuple[ChunkJob, memoryview]]:
    """The parts of ``job`` its parsing processes take: its data's bytes, whole or halved.

    A batch of :data:`SPLIT_MIN_BYTES` or more (weighed by :func:`work_bytes`)
    is cut at the first line past
    its middle that opens a document at column 0 (every line of JSON lines;
    the first line of a pretty-printed document), so no document is cut in
    two; the second part's records are numbered on from the first's
    (``first_position``: one more than the first part's line ends). Whole
    stay: NWS batches (one document), XRootD batches holding shoveler packets
    (a file's close is read with its open and its user's map, earlier in the
    batch), a batch that is one JSON array or XML, and streams cut by EOT or
    ``\r`` (whose pieces ``collectors.layout`` counts otherwise). O(n) in the
    bytes (a few C scans, no copy).
    """
    raw = job.data.encode() if isinstance(job.data, str) else job.data
    whole = [(job, memoryview(raw))]
    if (job.source not in _SPLITS or work_bytes(job.source, len(raw)) < SPLIT_MIN_BYTES
            or raw.find(b"\x04") >= 0 or raw.find(b"\r") >= 0
            or raw[:4096].lstrip()[:1] in (b"[", b"<")
            or (job.source is Source.XROOTD and raw.find(b'"remote"') >= 0)):
        return whole
    middle = len(raw) // 2
    cuts = [i for i in (raw.find(b"\n{", middle), raw.find(b"\n[", middle)) if i >= 0]
    cut = min(cuts) + 1 if cuts else 0
    if not 0 < cut < len(raw):
        return whole
    later = job._replace(first_position=job.first_position + raw.count(b"\n", 0, cut))
    return [(job, memoryview(raw)[:cut]), (later, memoryview(raw)[cut:])]


_SPLITS = frozenset({Source.FTS, Source.PERFSONAR, Source.XROOTD})


@contextlib.contextmanager
def parsed_elsewhere(job: ChunkJob) -> Iterator[Parsed]:
    """:func:`prepared_chunks` in child processes, each one chunk ahead of the caller.

    One child per part of :func:`split_job`. The caller takes their chunks
    in turn, one of each part, so that the writer and the two parsing
    processes all stay busy to the end (taking the first part's chunks
    before the second's would leave the writer alone with the second half's
    parser). Progress and counts
    are the batch's as one process would give them: rejections at their
    positions in the batch, in order. What the turns change is which of two
    records with one origin id in different halves is written first, and
    so stored: the one in the earlier chunk in turn, not always the earlier
    in the batch. See :func:`_child` for how a child starts and stops;
    leaving the block stops them all. Raises a child's exception if parsing
    failed there, or RuntimeError if a child died without a word.
    """
    with contextlib.ExitStack() as stack:
        children = [stack.enter_context(_child(part, data)) for part, data in split_job(job)]
        finished: list[ParseCounts] = []

        def chunks() -> Iterator[ChunkOut]:
            parsed = [0] * len(children)  # items each part has parsed so far
            streams = [(i, child.chunks()) for i, child in enumerate(children)]
            while streams:
                for entry in list(streams):
                    i, stream = entry
                    item = next(stream, None)
                    if item is None:
                        streams.remove(entry)
                        continue
                    chunk, parsed[i], sizes = item
                    yield chunk, sum(parsed), sizes
            total = ParseCounts()
            for child in children:
                total.add(child.counts())
            finished.append(total)

        def counts() -> ParseCounts:
            if not finished:
                raise RuntimeError("the counts are known once every chunk has been taken")
            return finished[0]

        yield Parsed(chunks(), counts, children[0].pid, tuple(c.pid for c in children))


class _Child(NamedTuple):
    pid: int
    chunks: Callable[[], Iterator[ChunkOut]]
    counts: Callable[[], ParseCounts]


@contextlib.contextmanager
def _child(job: ChunkJob, data: memoryview) -> Iterator[_Child]:
    """A child process running :func:`prepared_chunks` of ``job`` over ``data``.

    The child is a fresh interpreter (this one's executable and ``sys.path``)
    running :func:`_child_main`, joined by two pipes (the job out, the chunks
    back) and given the bytes in an unnamed file (:func:`_shared_file`,
    written while the child starts); it imports no ``__main__``, so callers
    need no ``if __name__ == "__main__"`` guard (as ``multiprocessing``'s
    spawn would). It blocks on the pipe once it has one chunk ready, so it
    is never more than a chunk ahead and memory stays bounded. Leaving the
    block stops it: it is waited for when it has finished, killed (by its PID,
    ours to kill) when the caller leaves early.
    """
    data_fd = _shared_file()
    job_r, job_w = os.pipe()
    out_r, out_w = os.pipe()
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", "import sys; from collectors.parsing import _child_main; "
             "_child_main(*map(int, sys.argv[1:]))", str(job_r), str(out_w), str(data_fd)],
            pass_fds=(job_r, out_w, data_fd), stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
    except BaseException:
        for fd in (job_r, job_w, out_r, out_w, data_fd):
            os.close(fd)
        raise
    os.close(job_r)  # the child's ends: with them closed here, a dead child reads as EOF
    os.close(out_w)
    to_child, from_child = Connection(job_w, readable=False), Connection(out_r, writable=False)
    done: list[ParseCounts] = []

    def chunks() -> Iterator[ChunkOut]:
        while True:
            try:
                kind, payload = from_child.recv()
            except (EOFError, OSError):  # OSError: it died in the middle of a message
                code = child.wait(_STOP_S)
                raise RuntimeError(f"the parsing process (pid {child.pid}) ended without "
                                   f"finishing, exit code {code}") from None
            if kind == "chunk":
                yield payload
            elif kind == "done":
                done.append(payload)
                return
            else:
                raise payload

    def counts() -> ParseCounts:
        if not done:
            raise RuntimeError("the counts are known once every chunk has been taken")
        return done[0]

    try:
        # Written while the child starts; the job tells it the data is all there.
        _write_all(data_fd, data)
        to_child.send(job._replace(data=b""))
        to_child.close()
        yield _Child(child.pid, chunks, counts)
    finally:
        os.close(data_fd)  # the child has its own; the memory goes when it closes that
        to_child.close()
        from_child.close()  # a child still sending gets a broken pipe and ends
        try:
            child.wait(_STOP_S if done else 0.5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _child_main(job_fd: int, out_fd: int, data_fd: int) -> None:
    """The child's side: read the job, send each chunk, then the counts (or the error)."""
    conn_in, conn = Connection(job_fd, writable=False), Connection(out_fd, readable=False)
    try:
        job = conn_in.recv()
        job = job._replace(data=_read_shared(data_fd, job.source))
        conn_in.close()
        counts = ParseCounts()
        for item in prepared_chunks(job, counts):
            conn.send(("chunk", item))
        conn.send(("done", counts))
    except (BrokenPipeError, EOFError, ConnectionResetError):
        pass  # the writer has gone: nothing to tell
    except BaseException as exc:  # every failure goes back to the writer
        with contextlib.suppress(OSError):
            try:
                conn.send(("error", exc))
            except Exception:  # an exception that does not pickle
                conn.send(("error", RuntimeError(traceback.format_exc())))
    finally:
        conn.close()


def _shared_file() -> int:
    """A file descriptor of a new unnamed file, for :func:`_write_all`.

    How the batch reaches the child: one copy into memory the kernel
    shares, which the child reads back, rather than pickling hundreds of MB
    through a pipe, which keeps the writer idle until the first chunk comes
    (``bench/ingest.py`` measures both). ``memfd_create`` on Linux, an unlinked temporary file
    elsewhere.
    """
    if hasattr(os, "memfd_create"):
        return os.memfd_create("netbroker-ingest")  # close-on-exec: only pass_fds passes it
    import tempfile  # pragma: no cover - not Linux

    with tempfile.TemporaryFile() as f:  # pragma: no cover
        return os.dup(f.fileno())


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_shared(fd: int, source: Source) -> bytes | mmap.mmap:
    """The data in :func:`_shared_file`'s file ``fd``, which is closed.

    For FTS, whose parser reads a buffer piece by piece, the file mapped:
    copying a GB batch first would cost the child its page faults before its
    first chunk. For the others, the bytes, read.
    """
    try:
        size = os.fstat(fd).st_size
        if not size:
            return b""
        if source is Source.FTS:
            return mmap.mmap(fd, size, access=mmap.ACCESS_READ)
        parts, offset = [], 0
        while offset < size:
            part = os.pread(fd, min(size - offset, 1 << 30), offset)
            if not part:
                raise EOFError(f"the batch ends at byte {offset} of {size}")
            parts.append(part)
            offset += len(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)
    finally:
        os.close(fd)

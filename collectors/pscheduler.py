"""pScheduler results -> perfSONAR samples: REST runs, archived results, OpenSearch documents.

Three published forms of one result (perfsonar/pscheduler):

**A run as the REST API serves it**, ``GET /pscheduler/tasks/<uuid>/runs/<uuid>``
(``api-server/pschedulerapiserver/runs.py``, ``database/run.sql``
``run_json``): ``href``, ``start-time``, ``end-time`` (ISO-8601), ``state``
(``finished``, ``failed``, ``pending``, ...), ``participants``,
``result`` (this participant's), ``result-merged``, ``result-full``, and the
``task`` it ran (``{"test": {"type", "spec"}, "tool", ...}``), which holds
the ends: the spec's ``source``/``dest``, else ``source-node``/``dest-node``;
a spec naming only ``dest`` (latency, rtt) was run from the lead
participant, the run's first. A run fetched without its task names no
link: it is rejected saying so (``netbroker collect`` fetches both).

**A result as archivers get it** (``daemons/archiver``): ``{"id",
"schedule": {"start", "duration"}, "test", "tool", "participants", "run",
"task", "result"}``, possibly inside the archiver's envelope ``{"result":
{...}, "data", "attempts"}``.

In both the result is the test's own (each test's ``validate.py``):
throughput ``summary.summary["throughput-bits"]`` (bits/s; with ``reverse``
the data flowed dest -> source); latency/latencybg ``histogram-latency``
(keys are latency / ``bucket-width``, default 0.001 s, so ms) and
``packets-lost`` / ``packets-sent``; rtt ``roundtrips[].rtt`` (ISO
durations), else ``mean``. A bare result (no task, no test) names no link:
rejected, saying what to give.

**As perfSONAR 5 archives it in OpenSearch** (perfsonar/logstash
``pipeline/02-pscheduler_common.conf``, ``06-result_*.conf``,
``ruby/pscheduler_normalize_endpoints.rb``): ``test.type``, ``meta.source``
and ``meta.destination`` ``{ip, hostname}`` (else ``test.spec.source``/
``dest``), ``pscheduler.end_time`` (else ``@timestamp``, else
``pscheduler.start_time``), and the reshaped ``result``:
``result.throughput`` (bits/s), ``result.latency.median`` (buckets of
``test.spec.bucket-width``) and ``result.packets.loss``, rtt's
``result.packets.json[].rtt`` round trips, else ``result.rtt.mean`` (s).

Throughput, latency, latencybg and rtt give samples (MB/s; OWD and RTT
median ms; loss a fraction); other tests (trace, dns, http, ...) are not a
link netbroker keeps. A failed test or run is rejected with its error.
rtt's loss is round-trip loss, not the directed loss PACKET_LOSS means: not
read. Origin id: ``"<id>:<kind>"``, the id being the hit's ``_id``, the
run's UUID, else a SHA-1 of test type, ends and time.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import statistics
from typing import Any
from urllib.parse import urlsplit

from collectors import psfields as f
from collectors.layout import json_type
from collectors.records import HostRef, NotALink, Outcome, ParsedSample, Record, Rejected
from netbroker.common.metric_kinds import MetricKind
from netbroker.common.metric_kinds import MetricSource as Source

__all__ = ["ARCHIVED", "BARE", "DOCUMENT", "RUN", "TASK", "read_archived", "read_bare",
           "read_document", "read_run", "read_task"]

DOCUMENT = "pScheduler result in OpenSearch"
RUN = "pScheduler REST run"
ARCHIVED = "pScheduler archived result"
BARE = "bare pScheduler result"
TASK = "pScheduler task"

MEASURED = frozenset({"throughput", "latency", "latencybg", "rtt"})
_DEFAULT_BUCKET_S = 0.001  # latency's default bucket-width: keys are ms
_FINAL = {"finished", "failed"}


# --- the forms ------------------------------------------------------------------------------


def read_document(position: int, doc: Any, doc_id: str | None) -> Outcome:
    """One OpenSearch document (or hit's ``_source``): its samples, whole or not at all."""
    try:
        test_type = _test_type(doc, "test.type", "an OpenSearch document {test, result, meta}")
        if test_type not in MEASURED:
            return _not_measured(position, test_type, DOCUMENT)
        result = doc.get("result")
        failure = _failure(result) if isinstance(result, dict) else "missing result"
        if failure:
            with contextlib.suppress(f.Bad):  # name the run if it can be: it is still a record
                doc_id = _identify(test_type, *_document_ends(doc, test_type),
                                   _document_ts(doc), doc_id)
            raise f.Bad(failure, doc_id)
        src, dst = _document_ends(doc, test_type)
        ts = _document_ts(doc)
        base = _identify(test_type, src, dst, ts, doc_id)
        values = _reshaped_values(test_type, doc, result)
        return Record(position, DOCUMENT, _samples(values, src, dst, ts, base))
    except f.Bad as exc:
        return Rejected(position, str(exc), exc.origin_id or doc_id, DOCUMENT)


def read_run(position: int, run: dict[str, Any]) -> Outcome:
    """A REST run with its task: its samples, or why there are none."""
    uuid = _last_path_part(run.get("href"))
    try:
        task = run.get("task")
        if not isinstance(task, dict):
            href = run.get("task-href")
            raise f.Bad("a pScheduler run without its task names no link: give the run with "
                        "its task (GET " + (f"{href}" if isinstance(href, str) else
                                             "/pscheduler/tasks/<uuid>") + ") in its 'task' "
                        "field, or let netbroker collect fetch both", uuid)
        test = task.get("test")
        test_type = _test_type(task, "task.test.type", "a task {test: {type, spec}}")
        if test_type not in MEASURED:
            return _not_measured(position, test_type, RUN)
        _final_state(run, uuid)
        result = _run_result(run)
        return _raw_record(position, RUN, test_type, test, result, run.get("participants"),
                           _run_ts(run), uuid, run.get("href"))
    except f.Bad as exc:
        return Rejected(position, str(exc), exc.origin_id or uuid, RUN)


def read_archived(position: int, archived: dict[str, Any]) -> Outcome:
    """A result as pScheduler hands it to archivers: test, schedule, participants, result."""
    run = archived.get("run")
    if not isinstance(run, dict):
        run = {}
    uuid = archived.get("id") if isinstance(archived.get("id"), str) else None
    try:
        test = archived.get("test")
        test_type = _test_type(archived, "test.type", "an archived result {test, schedule, "
                               "result}")
        if test_type not in MEASURED:
            return _not_measured(position, test_type, ARCHIVED)
        result = archived.get("result")
        if run.get("end-time"):
            ts = f.time_s(run["end-time"], "run.end-time")
        else:
            start = f.time_s(f.get(archived, "schedule", "start"), "schedule.start")
            ts = start + f.seconds(f.get(archived, "schedule", "duration") or 0,
                                   "schedule.duration")
        return _raw_record(position, ARCHIVED, test_type, test, result,
                           archived.get("participants"), ts, uuid, run.get("href"))
    except f.Bad as exc:
        return Rejected(position, str(exc), exc.origin_id or uuid, ARCHIVED)


def read_bare(position: int, result: dict[str, Any]) -> Rejected:
    """A result without its test or task: nothing to key a link on."""
    return Rejected(position, "a bare pScheduler result (no task, no test, no endpoints) "
                              "names no link: give the run with its task (GET /pscheduler/"
                              "tasks/<uuid>/runs/<uuid> and the task), or the archived result "
                              "{test, schedule, participants, result}", shape=BARE)


def read_task(position: int) -> NotALink:
    """A task alone: what to measure, not a measurement."""
    return NotALink(position, "pScheduler task: a test's spec, no run's result (fetch its "
                              "runs)", TASK)


# --- raw results (runs and archived) --------------------------------------------------------


def _raw_record(position: int, shape: str, test_type: str, test: Any, result: Any,
                participants: Any, ts: float, uuid: str | None, href: Any) -> Record:
    if not isinstance(result, dict):
        raise f.Bad(f"missing result (the run's result-merged or result), got "
                    f"{json_type(result)}", uuid)
    failure = _failure(result)
    if failure:
        raise f.Bad(failure, uuid)
    spec = test.get("spec") if isinstance(test, dict) else None
    if not isinstance(spec, dict):
        raise f.Bad("missing test.spec (the test's source and dest)", uuid)
    src, dst = _spec_ends(spec, test_type, participants, href)
    base = _identify(test_type, src, dst, ts, uuid)
    return Record(position, shape, _samples(_raw_values(test_type, spec, result), src, dst,
                                            ts, base))


def _spec_ends(spec: dict[str, Any], test_type: str, participants: Any,
               href: Any) -> tuple[HostRef, HostRef]:
    """The ends from the spec; a missing source is the lead participant (the run's host)."""
    dst = _spec_end(spec, "dest", "dest-node", "destination")
    if dst is None:
        raise f.Bad("missing test.spec.dest (and dest-node)")
    src = _spec_end(spec, "source", "source-node")
    if src is None:
        lead = participants[0] if isinstance(participants, list) and participants else None
        if lead in (None, ""):
            lead = urlsplit(href).hostname if isinstance(href, str) else None
        if lead in (None, ""):
            raise f.Bad("missing test.spec.source, and no participant or href to run it from")
        src = f.host_ref(lead, "participants[0]")
    if test_type == "throughput" and spec.get("reverse") in (True, "true"):
        return dst, src  # the server (dest) sent
    return src, dst


def _spec_end(spec: dict[str, Any], *fields: str) -> HostRef | None:
    for field in fields:
        raw = spec.get(field)
        if raw not in (None, ""):
            return f.host_ref(raw, f"test.spec.{field}")
    return None


def _raw_values(test_type: str, spec: dict[str, Any],
                result: dict[str, Any]) -> list[tuple[MetricKind, float, str]]:
    if test_type == "throughput":
        bits = f.get(result, "summary", "summary", "throughput-bits")
        field = "result.summary.summary.throughput-bits"
        if bits is None and "throughput" in result:  # a reshaped result, leniently
            bits, field = result["throughput"], "result.throughput"
        return [(MetricKind.THROUGHPUT, f.mbytes_per_s(f.number(bits, field), field),
                 "bits/s")]
    if test_type == "rtt":
        trips = result.get("roundtrips")
        rtts = [f.seconds(trip["rtt"], "result.roundtrips[].rtt") for trip in trips
                if isinstance(trip, dict) and trip.get("rtt") not in (None, "")
                ] if isinstance(trips, list) else []
        if rtts:  # lost probes carry no rtt
            return [(MetricKind.RTT, statistics.median(rtts) * 1000.0, "ISO-8601 duration")]
        if result.get("mean") in (None, ""):
            raise f.Bad("missing result.roundtrips[].rtt and result.mean")
        return [(MetricKind.RTT, f.seconds(result["mean"], "result.mean") * 1000.0,
                 "ISO-8601 duration")]
    values = []
    hist = result.get("histogram-latency")
    if isinstance(hist, dict) and hist:
        width = _bucket_width_s(spec, "test.spec.bucket-width")
        values.append((MetricKind.OWD, f.median_ms(hist, "result.histogram-latency",
                                                   width * 1000.0),
                       "ms" if width == _DEFAULT_BUCKET_S else f"{width:g} s buckets"))
    sent, lost = result.get("packets-sent"), result.get("packets-lost")
    if sent not in (None, "") and lost not in (None, ""):
        n_sent, n_lost = f.number(sent, "result.packets-sent"), f.number(lost,
                                                                         "result.packets-lost")
        if n_sent <= 0 or not 0 <= n_lost <= n_sent:
            raise f.Bad(f"result.packets-lost {n_lost:g} of packets-sent {n_sent:g} is no "
                        "loss fraction")
        values.append((MetricKind.PACKET_LOSS, n_lost / n_sent, "packets lost / sent"))
    if not values:
        raise f.Bad("missing result.histogram-latency and result.packets-sent/-lost")
    return values


def _final_state(run: dict[str, Any], uuid: str | None) -> None:
    state = run.get("state")
    if state is None or state == "finished":
        return
    if state == "failed":
        errors = run.get("errors") or f.get(run, "result-merged", "error") or "no errors given"
        raise f.Bad(f"run failed: {str(errors).strip()[:200]}", uuid)
    raise f.Bad(f"run state {f.show(state)}: no result (only finished runs have one)", uuid)


def _run_result(run: dict[str, Any]) -> Any:
    for field in ("result-merged", "result"):
        if isinstance(run.get(field), dict):
            return run[field]
    full = run.get("result-full")
    if isinstance(full, list):
        return next((r for r in full if isinstance(r, dict)), None)
    return None


def _run_ts(run: dict[str, Any]) -> float:
    if run.get("end-time") not in (None, ""):
        return f.time_s(run["end-time"], "end-time")
    start = f.time_s(run.get("start-time"), "start-time")
    return start + f.seconds(run.get("duration") or 0, "duration")


# --- OpenSearch documents -------------------------------------------------------------------


def _document_ends(doc: dict[str, Any], test_type: str) -> tuple[HostRef, HostRef]:
    src = _meta_end(doc, "source", "source")
    dst = _meta_end(doc, "destination", "dest")
    if test_type == "throughput" and f.get(doc, "test", "spec", "reverse") in (True, "true"):
        return dst, src  # iperf -R: the server (dest) sends
    return src, dst


def _meta_end(doc: dict[str, Any], side: str, spec_key: str) -> HostRef:
    for path in (("meta", side, "hostname"), ("meta", side, "ip"), ("test", "spec", spec_key)):
        raw = f.get(doc, *path)
        if raw not in (None, ""):
            return f.host_ref(raw, ".".join(path))
    raise f.Bad(f"missing meta.{side}.hostname, meta.{side}.ip and test.spec.{spec_key}")


def _document_ts(doc: dict[str, Any]) -> float:
    for path in (("pscheduler", "end_time"), ("@timestamp",), ("pscheduler", "start_time")):
        raw = f.get(doc, *path)
        if raw not in (None, ""):
            return f.time_s(raw, ".".join(path))
    raise f.Bad("missing pscheduler.end_time, @timestamp and pscheduler.start_time")


def _reshaped_values(test_type: str, doc: dict[str, Any],
                     result: dict[str, Any]) -> list[tuple[MetricKind, float, str]]:
    if test_type == "throughput":
        bits = f.number(result.get("throughput"), "result.throughput")
        return [(MetricKind.THROUGHPUT, f.mbytes_per_s(bits, "result.throughput"), "bits/s")]
    if test_type == "rtt":
        return [(MetricKind.RTT, *_reshaped_rtt_ms(result))]
    values = []
    median = f.get(result, "latency", "median")
    if median is not None:
        width = _bucket_width_s(f.get(doc, "test", "spec") or {}, "test.spec.bucket-width")
        delay = f.number(median, "result.latency.median") * width * 1000.0
        if delay < 0:
            raise f.Bad(f"result.latency.median {delay:g} ms is negative")
        unit = "ms" if width == _DEFAULT_BUCKET_S else f"{width:g} s buckets"
        values.append((MetricKind.OWD, delay, unit))
    loss = f.get(result, "packets", "loss")
    if loss is not None:
        values.append((MetricKind.PACKET_LOSS, f.fraction(f.number(loss, "result.packets.loss"),
                                                          "result.packets.loss"), "fraction"))
    if not values:
        raise f.Bad("missing result.latency.median and result.packets.loss")
    return values


def _reshaped_rtt_ms(result: dict[str, Any]) -> tuple[float, str]:
    trips = f.get(result, "packets", "json")
    if isinstance(trips, list):
        rtts = [f.seconds(trip["rtt"], "result.packets.json[].rtt") for trip in trips
                if isinstance(trip, dict) and trip.get("rtt") not in (None, "")]
        if rtts:  # lost probes carry no rtt
            return statistics.median(rtts) * 1000.0, "ISO-8601 duration"
    mean = f.get(result, "rtt", "mean")
    if mean is None:
        raise f.Bad("missing result.packets.json round trips and result.rtt.mean")
    return f.seconds(mean, "result.rtt.mean") * 1000.0, "s"


# --- shared ---------------------------------------------------------------------------------


def _test_type(holder: Any, field: str, expected: str) -> str:
    if not isinstance(holder, dict):
        raise f.Bad(f"must be a JSON object ({expected}), got {json_type(holder)}")
    test_type = f.get(holder, "test", "type")
    if not isinstance(test_type, str) or not test_type:
        raise f.Bad(f"missing {field} ({expected})")
    return test_type


def _not_measured(position: int, test_type: str, shape: str) -> NotALink:
    return NotALink(position, f"pScheduler {test_type} test: no metric netbroker keeps", shape)


def _failure(result: dict[str, Any]) -> str | None:
    """Why the test did not happen: it produced no measurement, which says nothing of the link."""
    succeeded, error = result.get("succeeded"), result.get("error")
    if error not in (None, "", False):
        return f"test failed, result.error: {str(error).strip()[:200]}"
    if succeeded is False or str(succeeded).lower() == "false":
        return "test failed: result.succeeded is false (no result.error)"
    return None


def _bucket_width_s(spec: dict[str, Any], field: str) -> float:
    raw = spec.get("bucket-width") if isinstance(spec, dict) else None
    if raw is None:
        return _DEFAULT_BUCKET_S
    width = f.number(raw, field)
    if not 0.0 < width < 1.0:
        raise f.Bad(f"{field} {width:g} s is outside (0, 1)")
    return width


def _identify(test_type: str, src: HostRef, dst: HostRef, ts: float,
              doc_id: str | None) -> str:
    """The id: ``_id`` or the run's UUID, else a hash of what names the run."""
    return doc_id or hashlib.sha1(
        f"{test_type}|{src.by}:{src.value}|{dst.by}:{dst.value}|{f.ts_text(ts)}".encode()
    ).hexdigest()


def _samples(values: list[tuple[MetricKind, float, str]], src: HostRef, dst: HostRef,
             ts: float, base: str) -> tuple[ParsedSample, ...]:
    for kind, value, _ in values:
        if not math.isfinite(value):  # finite inputs scaled to ms can still overflow
            raise f.Bad(f"result gives {kind.value} {value}, out of range", base)
    return tuple(ParsedSample(Source.PERFSONAR, f"{base}:{kind.value}", src, dst, kind, value,
                              ts, 1.0, unit) for kind, value, unit in values)


def _last_path_part(href: Any) -> str | None:
    if not isinstance(href, str) or not href.strip():
        return None
    parts = [p for p in urlsplit(href.strip()).path.split("/") if p]
    return parts[-1] if parts else None

"""The PanDA wire under bad input: a clear 4xx naming what was wrong, nothing stored
changed, the connection kept; never a 5xx. Both backends, a real server.

Each case is a request as a broken or hostile pilot would send it, with the
answer expected and what the job must look like afterwards (unchanged, or,
for free text, stored cleaned the same way on both backends).
"""

from __future__ import annotations

import gzip
import http.client
import json
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from netbroker.db.jobs import JobDB
from netbroker.db.schema import jobs
from tests.conftest import LiveServer
from tests.test_dispatcher import add_jobs

pytestmark = pytest.mark.reliability
FORM = {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"}
JSON_GZ = {"Accept": "application/json", "Content-Type": "application/json"}


class Wire:
    """One keep-alive HTTP/1.1 connection to the service, as a pilot's curl holds it."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        self.conn.connect()
        self.sock = self.conn.sock

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        self.conn.request("POST", path, body=body, headers=headers)
        answer = self.conn.getresponse()
        data = answer.read()
        assert answer.getheader("connection", "").lower() != "close", "connection dropped"
        assert self.conn.sock is self.sock, "the connection was reopened"
        return answer.status, json.loads(data)


def form(**fields: Any) -> bytes:
    from urllib.parse import urlencode

    return urlencode(fields).encode()


def snapshot(engine: Engine) -> tuple[list[tuple[Any, ...]], int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(jobs.c.id, jobs.c.status, jobs.c.node, jobs.c.pilot_id,
                                      jobs.c.error_diag, jobs.c.cpu_time_s, jobs.c.exit_code)
                            .order_by(jobs.c.id)).all()
        changes = len(JobDB(conn).state_changes())
    return [tuple(r) for r in rows], changes


@pytest.fixture
def wire(grid_engine: Engine) -> Iterator[tuple[Wire, Engine, int]]:
    """A sent job (taken by a pilot on DESY-HH) and a connection to the service."""
    add_jobs(grid_engine, 2)
    with LiveServer(grid_engine) as server:
        pilot = Wire(server.url)
        status, job = pilot.post("/server/panda/getJob",
                                 form(computingElement="DESY-HH", diskSpace="50000"), FORM)
        assert status == 200 and job["StatusCode"] == 0
        yield pilot, grid_engine, int(job["PandaID"])
        pilot.conn.close()


def _big_bomb() -> bytes:
    """A gzip stream of 0.2 MiB inflating to 200 MiB of zeros."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(2**20)
    return b"".join(packer.compress(chunk) for _ in range(200)) + packer.flush()


REFUSED = [
    # (id, path, body, headers, status, words in errorDialog)
    ("disk-inf", "getJob", form(computingElement="DESY-HH", diskSpace="inf"), FORM, 400,
     ["diskSpace", "finite"]),
    ("mem-inf", "getJob", form(computingElement="DESY-HH", mem="inf"), FORM, 400,
     ["mem", "finite"]),
    ("mem-nan", "getJob", form(computingElement="DESY-HH", mem="nan"), FORM, 400, ["mem"]),
    ("disk-negative", "getJob", form(computingElement="DESY-HH", diskSpace="-1"), FORM, 400,
     ["diskSpace", "greater than or equal to 0"]),
    ("disk-huge", "getJob", form(computingElement="DESY-HH", diskSpace="1e300"), FORM, 400,
     ["diskSpace", "less than or equal"]),
    ("queue-nul", "getJob", form(computingElement="DESY-HH\x00"), FORM, 400,
     ["computingElement", "control character"]),
    ("label-control", "getJob", form(computingElement="DESY-HH", prodSourceLabel="man\naged"),
     FORM, 400, ["prodSourceLabel", "control character"]),
    ("queue-bad-escape", "getJob", b"computingElement=DESY%FF", FORM, 400,
     ["computingElement"]),
    ("gzip-magic-garbage", "getJob", b"\x1f\x8bnot gzip at all", JSON_GZ, 400,
     ["not valid gzip"]),
    ("gzip-truncated", "getJob", gzip.compress(b'{"computingElement": "DESY-HH"}')[:-12],
     JSON_GZ, 400, ["not valid gzip"]),
    ("gzip-trailing-garbage", "getJob", gzip.compress(b'{"computingElement": "DESY-HH"}')
     + b"junk", JSON_GZ, 400, ["not valid gzip"]),
    ("not-utf8", "getJob", b"computingElement=DESY-HH&node=\xff\xfe", FORM, 400, ["UTF-8"]),
    ("json-nan", "getJob", b'{"computingElement": "DESY-HH", "diskSpace": NaN}', JSON_GZ,
     400, ["NaN"]),
    ("json-infinity", "getJob", gzip.compress(
        b'{"computingElement": "DESY-HH", "mem": Infinity}'), JSON_GZ, 400, ["Infinity"]),
    ("json-deep", "getJob", b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", JSON_GZ, 400,
     ["nested too deeply"]),
    ("json-broken", "getJob", b'{"computingElement": "DESY-HH"', JSON_GZ, 400,
     ["not JSON"]),
    ("too-many-fields", "getJob", "&".join(f"f{i}=1" for i in range(5000)).encode()
     + b"&computingElement=DESY-HH", FORM, 413, ["form fields"]),
    ("gzip-bomb", "getJob", _big_bomb(), JSON_GZ, 413, ["inflates past"]),
    ("cpu-inf", "updateJob", None, FORM, 400, ["cpuConsumptionTime", "finite"]),
    ("job-id-huge", "updateJob", form(jobId=str(2**70), state="running"), FORM, 400,
     ["jobId"]),
    ("state-bogus", "updateJob", None, FORM, 400, ["state"]),
    ("xml-not-json", "updateJob", None, FORM, 400, ["xml is not JSON"]),
    ("xml-fsize-inf", "updateJob", None, FORM, 400, ["xml"]),
    ("to-activated", "updateJob", None, FORM, 409, ["is sent: it cannot become activated"]),
    ("to-assigned", "updateJob", None, FORM, 409, ["cannot become assigned"]),
    ("to-defined", "updateJob", None, FORM, 409, ["cannot become defined"]),
    ("to-cancelled", "updateJob", None, FORM, 409, ["cannot become cancelled"]),
    ("to-closed", "updateJob", None, FORM, 409, ["cannot become closed"]),
]


def _update_body(case: str, job_id: int) -> bytes:
    """The updateJob bodies that need the job's id."""
    fields: dict[str, str] = {"jobId": str(job_id), "state": "running"}
    if case == "cpu-inf":
        fields.update(state="failed", cpuConsumptionTime="inf", transExitCode="1")
    elif case == "state-bogus":
        fields["state"] = "exploded"
    elif case == "xml-not-json":
        fields.update(state="finished", transExitCode="0", xml="{not json")
    elif case == "xml-fsize-inf":
        fields.update(state="finished", transExitCode="0", xml=json.dumps(
            {"out.root": {"fsize": float("inf"), "adler32": "0a0b0c0d"}}))
    elif case.startswith("to-"):
        fields["state"] = case.removeprefix("to-")
    return form(**fields)


@pytest.mark.parametrize(("case", "path", "body", "headers", "status", "words"),
                         REFUSED, ids=[c[0] for c in REFUSED])
def test_bad_input_is_refused_naming_it_and_changes_nothing(
        wire: tuple[Wire, Engine, int], case: str, path: str, body: bytes | None,
        headers: dict[str, str], status: int, words: list[str]) -> None:
    pilot, engine, job_id = wire
    before = snapshot(engine)
    body = body if body is not None else _update_body(case, job_id)
    got, answer = pilot.post(f"/server/panda/{path}", body, headers)
    assert (got, answer["StatusCode"]) == (status, 30), answer
    for word in words:
        assert word in answer["errorDialog"], answer
    assert snapshot(engine) == before
    # The same connection serves the next call: the job is still the pilot's to run.
    got, answer = pilot.post("/server/panda/updateJob",
                             form(jobId=str(job_id), state="running"), FORM)
    assert (got, answer) == (200, {"StatusCode": 0, "command": "NULL"})


def test_free_text_keeps_its_characters_less_nul_and_lone_surrogates(
        wire: tuple[Wire, Engine, int]) -> None:
    """node, pilotID and the error diagnostics are free text: a NUL is removed and a
    lone surrogate (a JSON escape, or a form's bad %-escape) becomes U+FFFD, the same
    on both backends, so a pilot can always report its job's end."""
    pilot, engine, job_id = wire
    got, job = pilot.post("/server/panda/getJob", form(
        computingElement="DESY-HH", diskSpace="50000", node="wn\x0007.desy.de",
        pilotID="pilot\x00-1"), FORM)
    assert (got, job["StatusCode"]) == (200, 0)
    second = int(job["PandaID"])
    got, answer = pilot.post("/server/panda/updateJob", gzip.compress(json.dumps(
        {"jobId": job_id, "state": "failed", "transExitCode": 1, "pilotErrorCode": 1305,
         "pilotErrorDiag": "stage-out \x00failed \udc80 here"}).encode()), JSON_GZ)
    assert (got, answer) == (200, {"StatusCode": 0, "command": "NULL"})
    got, answer = pilot.post("/server/panda/updateJob", b"jobId=%d&state=failed&"
                             b"transExitCode=2&pilotErrorDiag=bad%%FF%%00byte" % second, FORM)
    assert (got, answer) == (200, {"StatusCode": 0, "command": "NULL"})
    with engine.connect() as conn:
        stored = {r.id: r for r in conn.execute(sa.select(jobs).where(
            jobs.c.id.in_([job_id, second])))}
    assert stored[job_id].error_diag == "stage-out failed \ufffd here"
    assert (stored[second].node, stored[second].pilot_id) == ("wn07.desy.de", "pilot-1")
    assert stored[second].error_diag == "bad\ufffdbyte"
    assert stored[job_id].status == stored[second].status == "failed"


def test_a_body_past_the_limit_is_413_before_it_is_read(grid_engine: Engine) -> None:
    """A declared length past ``dispatcher.max_request_bytes`` is refused from its
    header; a body streamed without one is refused as it passes the limit."""
    from netbroker.common.config import DispatcherSettings, Settings

    settings = Settings(dispatcher=DispatcherSettings(max_request_bytes=64 * 1024))
    add_jobs(grid_engine, 1)
    with LiveServer(grid_engine, settings) as server:
        pilot = Wire(server.url)
        big = form(computingElement="DESY-HH", node="x" * 100_000)
        got, answer = pilot.post("/server/panda/getJob", big, FORM)
        assert got == 413 and "over the 65536 allowed" in answer["errorDialog"]
        got, answer = pilot.post("/server/panda/getJob", form(computingElement="NOPE"), FORM)
        assert got == 404  # the same connection, past the unread body

        def chunks() -> Iterator[bytes]:
            yield b"computingElement=DESY-HH&node="
            for _ in range(20):
                yield b"y" * 8192

        pilot.conn.request("POST", "/server/panda/getJob", body=chunks(),
                           headers={**FORM, "Transfer-Encoding": "chunked"},
                           encode_chunked=True)
        answer = pilot.conn.getresponse()
        assert answer.status == 413 and b"over the 65536 bytes" in answer.read()
        got, job = pilot.post("/server/panda/getJob", form(computingElement="DESY-HH"), FORM)
        assert (got, job["StatusCode"]) == (200, 0)
        pilot.conn.close()


def test_a_job_whose_answer_cannot_be_made_goes_back_to_the_queue(engine: Engine) -> None:
    """getJob took a task job, then reading its files failed (here: a table the
    read needs is gone, as on a database whose schema fell behind): the pilot is
    answered 503 and the job is activated again at once, not left sent to nobody
    until the watchdog's start timeout."""
    from netbroker.common.config import Settings
    from netbroker.registry import registry
    from netbroker.workload import tasks
    from tests.factories import mini_grid, task_spec

    registry.import_grid_document(engine, mini_grid(files=1, file_bytes=1000))
    task = tasks.submit(engine, tasks.parse_task(task_spec(cores=1, memory_mb=2000)),
                        Settings())
    assert task["jobs"] == {"activated": 1}
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE file_replicas")
    with LiveServer(engine) as server:
        pilot = Wire(server.url)
        got, answer = pilot.post("/server/panda/getJob",
                                 form(computingElement="DESY_UCORE", diskSpace="50000"), FORM)
        pilot.conn.close()
    # 503 on SQLite (an OperationalError), 500 on PostgreSQL (an undefined table),
    # either in the shape the pilot reads.
    assert got in (500, 503) and answer["StatusCode"] == 30 and answer["errorDialog"]
    with engine.connect() as conn:
        states = [str(s) for s in conn.execute(sa.select(jobs.c.status)).scalars()]
        log = [str(s) for _, s, _ in JobDB(conn).state_changes()]
    assert states == ["activated"] and log[-2:] == ["sent", "activated"]

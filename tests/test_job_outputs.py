"""A job's outputs, as its pilot reports them over the PanDA wire, become files of
their datasets with replicas where they were written, so an output dataset is the
next task's input. Both backends; the pilot's reports are Pilot 3's shape
(``xml``: lfn -> guid, fsize, adler32, surl)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from netbroker.common.config import Settings
from netbroker.db.schema import datasets, endpoints, file_replicas, files, replicas
from netbroker.registry import registry
from netbroker.registry.datasets import pfn
from netbroker.workload import tasks
from tests.conftest import LiveServer
from tests.factories import mini_grid, task_spec

JSON = {"Accept": "application/json"}


@pytest.fixture
def wire(engine: Engine) -> Iterator[httpx.Client]:
    registry.import_grid_document(engine, mini_grid(files=2, file_bytes=1_000_000))
    with LiveServer(engine) as server, httpx.Client(base_url=server.url) as client:
        yield client


def take(client: httpx.Client, queue: str) -> dict:
    job = client.post("/server/panda/getJob", headers=JSON,
                      data={"computingElement": queue, "diskSpace": "500000"}).json()
    assert job["StatusCode"] == 0, job
    return job


def finish(client: httpx.Client, job: dict, written: dict[str, dict]) -> None:
    answer = client.post("/server/panda/updateJob", headers=JSON, data={
        "jobId": str(job["PandaID"]), "state": "finished", "transExitCode": "0",
        "pilotErrorCode": "0", "xml": json.dumps(written)})
    assert answer.json() == {"StatusCode": 0, "command": "NULL"}, answer.text


def replica_states(engine: Engine, name: str) -> dict[str, str]:
    with engine.connect() as conn:
        return {e: str(s) for e, s in conn.execute(
            sa.select(endpoints.c.name, replicas.c.state)
            .join(replicas, replicas.c.endpoint_id == endpoints.c.id)
            .join(datasets, datasets.c.id == replicas.c.dataset_id)
            .where(datasets.c.name == name))}


def test_outputs_become_replicas_where_they_were_written_and_feed_the_next_task(
        engine: Engine, wire: httpx.Client) -> None:
    settings = Settings()
    task = tasks.submit(engine, tasks.parse_task(task_spec(name="reco.1", cores=1,
                                                           memory_mb=2000)), settings)
    assert task["jobs"] == {"activated": 2}
    first, second = take(wire, "DESY_UCORE"), take(wire, "DESY_UCORE")
    out1, log1 = first["outFiles"].split(",")
    assert log1 == first["logFile"] and first["ddmEndPointOut"].split(",")[0] == "DESY_DATADISK"
    scope = first["scopeOut"]
    desy, lrz = "davs://se.desy.example:443", "davs://se.lrz.example:443"
    # The first job's files at DESY, where the dispatcher said; no GUID given (as 3.7).
    finish(wire, first, {
        out1: {"guid": "", "fsize": 1234, "adler32": "0a0b0c0d",
               "surl": pfn(desy, scope, out1)},
        log1: {"guid": "", "fsize": 99, "adler32": "00000abc", "surl": pfn(desy, scope, log1)}})
    with engine.connect() as conn:
        stored = {r.name: r for r in conn.execute(sa.select(files))}
    assert (stored[out1].bytes, stored[out1].adler32) == (1234, "0a0b0c0d")
    assert stored[out1].guid == str(uuid.uuid5(uuid.NAMESPACE_URL, f"{scope}:{out1}"))
    assert (stored[log1].bytes, stored[log1].adler32) == (99, "00000abc")
    assert replica_states(engine, "reco.1.output") == {"DESY_DATADISK": "available"}
    assert replica_states(engine, "reco.1.log") == {"DESY_DATADISK": "available"}
    # The second job wrote to LRZ's storage (its URL says so): the output dataset now
    # lies in two pieces, complete nowhere.
    out2, log2 = second["outFiles"].split(",")
    guid = "4a6b1c2d-0000-4000-8000-000000000002"
    finish(wire, second, {
        out2: {"guid": guid, "fsize": 2000, "adler32": "11223344", "surl": pfn(lrz, scope, out2)},
        log2: {"guid": "", "fsize": 98, "adler32": "00000abd", "surl": pfn(desy, scope, log2)}})
    assert replica_states(engine, "reco.1.output") == {"DESY_DATADISK": "pending",
                                                       "LRZ_DATADISK": "pending"}
    assert replica_states(engine, "reco.1.log") == {"DESY_DATADISK": "available"}
    with engine.connect() as conn:
        copies = {(f, e, u) for f, e, u in conn.execute(
            sa.select(files.c.name, endpoints.c.name, file_replicas.c.url)
            .join(file_replicas, file_replicas.c.file_id == files.c.id)
            .join(endpoints, endpoints.c.id == file_replicas.c.endpoint_id))}
        assert conn.execute(sa.select(files.c.guid).where(files.c.name == out2)).scalar() == guid
    assert (out2, "LRZ_DATADISK", pfn(lrz, scope, out2)) in copies
    assert (out1, "DESY_DATADISK", pfn(desy, scope, out1)) in copies
    # The next task reads the output dataset: each job is told where its file is.
    nxt = tasks.submit(engine, tasks.parse_task(task_spec(
        name="ana.1", input_dataset=f"{scope}:reco.1.output", cores=1, memory_mb=2000)),
        settings)
    # Its files lie at DESY and LRZ, each site a source of half: brought, not waited for.
    assert nxt["jobs"] == {"activated": 2}, (nxt["reason"], nxt["jobs"])
    sources = {}
    for queue in ("DESY_UCORE", "LRZ_UCORE", "FZK_UCORE", "RAL_UCORE", "MAN_UCORE", "CC_UCORE"):
        while True:
            job = wire.post("/server/panda/getJob", headers=JSON, data={
                "computingElement": queue, "diskSpace": "500000"}).json()
            if job["StatusCode"] != 0:
                break
            sources[job["inFiles"]] = job["ddmEndPointIn"]
    assert sources == {out1: "DESY_DATADISK", out2: "LRZ_DATADISK"}


def test_a_reported_file_that_is_not_the_jobs_is_not_registered(
        engine: Engine, wire: httpx.Client) -> None:
    tasks.submit(engine, tasks.parse_task(task_spec(name="reco.2", cores=1, memory_mb=2000)),
                 Settings())
    job = take(wire, "DESY_UCORE")
    finish(wire, job, {"stray.root": {"guid": "", "fsize": 5, "adler32": "00000001",
                                      "surl": "davs://se.desy.example:443/x/stray.root"}})
    with engine.connect() as conn:
        assert conn.execute(sa.select(files.c.name).where(files.c.name == "stray.root")
                            ).first() is None

"""The event service: ranges handed out once, reported, retried, recovered; both backends."""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import timedelta

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dispatcher.events import (
    RangeReport,
    define_event_ranges,
    get_event_ranges,
    release_silent_ranges,
    report_event_ranges,
)
from netbroker.common.config import DispatcherSettings
from netbroker.common.enums import utcnow
from netbroker.db.events import EventDB
from netbroker.db.schema import event_ranges
from tests.conftest import LiveServer
from tests.test_dispatcher import add_jobs

SETTINGS = DispatcherSettings()


def counts(engine: Engine, job_id: int) -> dict[str, int]:
    with engine.connect() as conn:
        return EventDB(conn).counts(job_id)


def test_concurrent_pilots_never_share_a_range(grid_engine: Engine) -> None:
    (job_id,) = add_jobs(grid_engine, 1)
    assert define_event_ranges(grid_engine, job_id, 1000, 5) == 200
    taken: list[int] = []

    def pilot(name: str) -> None:
        while rows := get_event_ranges(grid_engine, job_id, 7, name):
            taken.extend(r["id"] for r in rows)

    threads = [threading.Thread(target=pilot, args=(f"p{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(taken) == 200 and max(Counter(taken).values()) == 1
    assert counts(grid_engine, job_id) == {"running": 200}


def test_reports_finish_and_retry_failed_ranges(grid_engine: Engine) -> None:
    (job_id,) = add_jobs(grid_engine, 1)
    define_event_ranges(grid_engine, job_id, 10, 5)
    a, b = get_event_ranges(grid_engine, job_id, 2)
    assert (a["first_event"], a["last_event"], b["first_event"], b["last_event"]) == (0, 4, 5, 9)
    results = report_event_ranges(grid_engine, [RangeReport(range_id=a["id"], status="finished"),
                                                RangeReport(range_id=b["id"], status="failed")],
                                  SETTINGS)
    assert results == ["finished", "ready"]  # the failed one waits for another attempt
    assert report_event_ranges(grid_engine, [RangeReport(range_id=a["id"], status="failed")],
                               SETTINGS) == [None]  # not running any more: refused
    (again,) = get_event_ranges(grid_engine, job_id, 5)
    assert (again["id"], again["attempt"]) == (b["id"], 2)
    for _ in range(2):  # attempts 2 and 3 fail: then it stays failed
        report_event_ranges(grid_engine, [RangeReport(range_id=b["id"], status="failed")],
                            SETTINGS)
        get_event_ranges(grid_engine, job_id, 5)
    assert counts(grid_engine, job_id) == {"finished": 1, "failed": 1}


def test_ranges_of_a_vanished_pilot_go_back_to_ready(grid_engine: Engine) -> None:
    (job_id,) = add_jobs(grid_engine, 1)
    define_event_ranges(grid_engine, job_id, 30, 10)
    held = get_event_ranges(grid_engine, job_id, 2, "preempted-pilot")
    assert release_silent_ranges(grid_engine, SETTINGS) == 0  # not silent long enough yet
    with grid_engine.begin() as conn:
        conn.execute(sa.update(event_ranges).values(updated_at=utcnow() - timedelta(hours=2))
                     .where(event_ranges.c.status == "running"))
    assert release_silent_ranges(grid_engine, SETTINGS) == 2
    assert counts(grid_engine, job_id) == {"ready": 3}
    retaken = get_event_ranges(grid_engine, job_id, 3)
    assert {r["id"] for r in held} <= {r["id"] for r in retaken}


def test_event_ranges_over_the_panda_wire(grid_engine: Engine) -> None:
    (job_id,) = add_jobs(grid_engine, 1)
    define_event_ranges(grid_engine, job_id, 8, 4)
    headers = {"Accept": "application/json"}
    with LiveServer(grid_engine) as server, httpx.Client(base_url=server.url) as client:
        got = client.post("/server/panda/getEventRanges", headers=headers,
                          data={"pandaID": str(job_id), "nRanges": "5", "jobsetID": "0"}).json()
        ranges = json.loads(got["eventRanges"])
        assert [(r["startEvent"], r["lastEvent"]) for r in ranges] == [(0, 3), (4, 7)]
        update = [{"eventRangeID": ranges[0]["eventRangeID"], "eventStatus": "finished"},
                  {"eventRangeID": "0-999999-1", "eventStatus": "finished"}]
        answer = client.post("/server/panda/updateEventRanges", headers=headers,
                             data={"eventRanges": json.dumps(update)}).json()
        assert answer == {"StatusCode": 0, "Returns": [True, False]}
        bad = client.post("/server/panda/updateEventRanges", headers=headers,
                          data={"eventRanges": "[{\"eventStatus\": \"finished\"}]"})
        assert bad.status_code == 400 and "eventRanges" in bad.json()["errorDialog"]
        assert client.post("/server/panda/getEventRanges", headers=headers,
                           data={"pandaID": "999999"}).status_code == 404
        json_api = client.post(f"/api/v1/pilot/jobs/{job_id}/event-ranges", json={"n": 5})
        assert json_api.json() == {"ranges": []}  # both ranges are held already

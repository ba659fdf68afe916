"""Importing grid documents: the sample grid, updates, and refusals that change nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from netbroker import registry
from netbroker.db.grid import GridDB
from netbroker.errors import InvalidGridDocument

SAMPLE = json.loads(registry.sample_grid_path().read_text())


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every registry table, sorted: what 'unchanged' means."""
    from netbroker.db.schema import metadata

    with engine.connect() as conn:
        return {name: sorted(map(tuple, conn.execute(sa.select(table)).all()), key=repr)
                for name, table in metadata.tables.items()}


def test_sample_grid_imports_whole(engine: Engine) -> None:
    report = registry.import_grid_file(engine, registry.sample_grid_path())
    assert report.counts["clouds"].inserted == 12
    assert report.counts["sites"].inserted == len(SAMPLE["site"])
    assert report.counts["queues"].inserted == len(SAMPLE["pandaqueue"])
    assert report.counts["endpoints"].inserted == len(SAMPLE["ddmendpoint"])
    assert report.counts["datasets"].inserted == len(SAMPLE["dataset"])
    assert report.counts["files"].inserted == sum(len(d["files"]) for d in SAMPLE["dataset"])
    clouds = {c["name"]: c for c in registry.list_clouds(engine)}
    assert set(clouds) == {"CERN", "DE", "FR", "IT", "ND", "NL", "UK", "US", "CA", "ES",
                           "TW", "RU"}
    assert clouds["DE"]["tier1"] == "FZK-LCG2"
    assert clouds["CERN"]["tier1"] == "CERN-PROD"
    assert sum(c["sites"] for c in clouds.values()) == len(SAMPLE["site"])


def test_sample_site_keeps_its_fields(grid_engine: Engine) -> None:
    site = registry.get_site(grid_engine, "DESY-HH")
    assert (site["cloud"], site["tier"], site["country"], site["status"]) == (
        "DE", 2, "Germany", "online")
    assert site["is_nucleus"] is True
    assert {"host": "perfsonar-bw.desy.de", "role": "perfsonar"} in site["hosts"]
    queue = next(q for q in site["queues"] if q["name"] == "DESY-HH")
    assert (queue["cores"], queue["max_memory_mb"], queue["max_walltime_s"],
            queue["pilot_slots"]) == (8, 24000, 86400, 1278)
    disk = next(e for e in site["endpoints"] if e["name"] == "DESY-HH_DATADISK")
    raw = SAMPLE["ddmendpoint"]["DESY-HH_DATADISK"]
    assert disk["total_bytes"] == raw["space_total_bytes"]
    assert disk["kind"] == "disk"
    assert disk["updated_at"].tzinfo is not None


def test_reimporting_the_same_document_changes_nothing(grid_engine: Engine) -> None:
    before = snapshot(grid_engine)
    report = registry.import_grid_file(grid_engine, registry.sample_grid_path())
    assert all(c.inserted == 0 and c.updated == 0 for c in report.counts.values())
    assert report.counts["sites"].unchanged == len(SAMPLE["site"])
    assert snapshot(grid_engine) == before


def test_changed_records_are_updated_and_new_ones_added(grid_engine: Engine) -> None:
    doc = {
        "site": {"DESY-HH": {**SAMPLE["site"]["DESY-HH"], "status": "brokeroff"}},
        "pandaqueue": {"DESY-HH_HIMEM": {
            "atlas_site": "DESY-HH", "status": "online", "corecount": "8",
            "maxrss": "64000", "maxtime": "172800", "pilot_slots": 20}},
    }
    report = registry.import_grid_document(grid_engine, json.dumps(doc))
    assert (report.counts["sites"].updated, report.counts["queues"].inserted) == (1, 1)
    assert registry.get_site(grid_engine, "DESY-HH")["status"] == "brokeroff"
    queue = registry.list_queues(grid_engine, site="DESY-HH", status="online")
    himem = next(q for q in queue if q["name"] == "DESY-HH_HIMEM")
    assert (himem["max_memory_mb"], himem["cloud"], himem["panda_resource"]) == (
        64000, "DE", "DESY-HH_HIMEM")


def test_moving_a_tier1_counts_as_a_cloud_update(grid_engine: Engine) -> None:
    doc = {"cloud": {"DE": {"tier1": "DESY-HH"}}}
    report = registry.import_grid_document(grid_engine, json.dumps(doc))
    assert report.counts["clouds"].updated == 1
    clouds = {c["name"]: c for c in registry.list_clouds(grid_engine)}
    assert clouds["DE"]["tier1"] == "DESY-HH"


def _with(section: str, key: str, record: dict[str, Any]) -> dict[str, Any]:
    return {section: {key: record}}


BAD_DOCUMENTS = {
    "missing field": (
        _with("site", "NEW-SITE", {"cloud": "DE"}),
        'site["NEW-SITE"].tier_level', "Field required"),
    "unknown cloud": (
        _with("site", "NEW-SITE", {"cloud": "XX", "tier_level": 2}),
        'site["NEW-SITE"].cloud', "unknown cloud 'XX'"),
    "negative size": (
        _with("ddmendpoint", "DESY-HH_NEWDISK", {
            "site": "DESY-HH", "type": "DATADISK", "space_total_bytes": -1,
            "space_free_bytes": 0}),
        'ddmendpoint["DESY-HH_NEWDISK"].space_total_bytes', "greater than or equal to 0"),
    "free above total": (
        _with("ddmendpoint", "DESY-HH_NEWDISK", {
            "site": "DESY-HH", "type": "DATADISK", "space_total_bytes": 10,
            "space_free_bytes": 11}),
        'ddmendpoint["DESY-HH_NEWDISK"]', "exceeds space_total_bytes"),
    "wrong type": (
        _with("pandaqueue", "NEWQ", {"atlas_site": "DESY-HH", "status": "online",
                                     "maxrss": "lots", "maxtime": 3600}),
        'pandaqueue["NEWQ"].maxrss', "valid integer"),
    "unknown status": (
        _with("pandaqueue", "NEWQ", {"atlas_site": "DESY-HH", "status": "sleeping",
                                     "maxrss": 2000, "maxtime": 3600}),
        'pandaqueue["NEWQ"].status', "'online', 'offline', 'test' or 'brokeroff'"),
    "queue at unknown site": (
        _with("pandaqueue", "NEWQ", {"atlas_site": "NOWHERE", "status": "online",
                                     "maxrss": 2000, "maxtime": 3600}),
        'pandaqueue["NEWQ"].atlas_site', "unknown site 'NOWHERE'"),
    "tier-1 of another cloud": (
        {"cloud": {"FR": {"tier1": "DESY-HH"}}},
        'cloud["FR"].tier1', "belongs to cloud 'DE'"),
    "key differs from name": (
        _with("site", "A-SITE", {"name": "B-SITE", "cloud": "DE", "tier_level": 2}),
        'site["A-SITE"].name', "differs from its key"),
    "replica at unknown endpoint": (
        {"dataset": [{"scope": "user.jdoe", "name": "user.jdoe.test", "files": [],
                      "replicas": [{"rse": "NOWHERE_DATADISK"}]}]},
        'dataset["user.jdoe:user.jdoe.test"].replicas.rse', "unknown storage endpoint"),
    "perfsonar host of another site": (
        _with("site", "NEW-SITE", {"cloud": "DE", "tier_level": 3,
                                   "perfsonar_hosts": ["perfsonar-bw.desy.de"]}),
        'site["NEW-SITE"].perfsonar_hosts', "already belongs to site 'DESY-HH'"),
    "unknown section": (
        {"sites": {}}, "document.sites", "unknown section"),
}


@pytest.mark.parametrize("case", list(BAD_DOCUMENTS))
def test_malformed_document_is_refused_and_changes_nothing(
        grid_engine: Engine, case: str) -> None:
    doc, where, why = BAD_DOCUMENTS[case]
    # A valid new site rides along: it must not be stored either.
    doc = {**doc, "site": {**doc.get("site", {}),
                           "VALID-NEW-SITE": {"cloud": "DE", "tier_level": 3}}}
    before = snapshot(grid_engine)
    with pytest.raises(InvalidGridDocument) as info:
        registry.import_grid_document(grid_engine, json.dumps(doc), source="bad.json")
    problems = [str(p) for p in info.value.problems]
    assert any(p.startswith(where) and why in p for p in problems), problems
    assert "bad.json" in str(info.value)
    assert snapshot(grid_engine) == before


def test_duplicate_site_names_are_refused(grid_engine: Engine) -> None:
    raw = ('{"site": {"NEW-SITE": {"cloud": "DE", "tier_level": 2},'
           ' "NEW-SITE": {"cloud": "FR", "tier_level": 2}}}')
    before = snapshot(grid_engine)
    with pytest.raises(InvalidGridDocument, match=r'site\["NEW-SITE"\]: duplicate site name'):
        registry.import_grid_document(grid_engine, raw)
    assert snapshot(grid_engine) == before


def test_every_record_problem_is_reported_at_once(grid_engine: Engine) -> None:
    doc = {"site": {"S1": {"cloud": "XX", "tier_level": 2}, "S2": {"cloud": "DE"},
                    "S3": {"cloud": "DE", "tier_level": 7}}}
    with pytest.raises(InvalidGridDocument) as info:
        registry.import_grid_document(grid_engine, json.dumps(doc))
    # record checks come first and refuse before references are looked at
    assert {p.record for p in info.value.problems} == {'site["S2"]', 'site["S3"]'}


def test_not_json_is_refused(engine: Engine) -> None:
    with pytest.raises(InvalidGridDocument, match="not JSON"):
        registry.import_grid_document(engine, b"{site: ")


def test_a_failure_while_writing_rolls_the_whole_import_back(grid_engine: Engine) -> None:
    """The write itself is one transaction: fail its last statement, nothing stays."""
    doc = {"site": {"ROLLBACK-SITE": {"cloud": "DE", "tier_level": 3}},
           "pandaqueue": {"ROLLBACK-Q": {"atlas_site": "ROLLBACK-SITE", "status": "online",
                                         "maxrss": 2000, "maxtime": 3600}}}
    before = snapshot(grid_engine)

    def fail_on_queue_insert(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        if statement.startswith("INSERT INTO queues"):
            raise sa.exc.DataError(statement, None, Exception("injected failure"))

    sa.event.listen(grid_engine, "before_cursor_execute", fail_on_queue_insert)
    try:
        with pytest.raises(InvalidGridDocument, match="injected failure"):
            registry.import_grid_document(grid_engine, json.dumps(doc))
    finally:
        sa.event.remove(grid_engine, "before_cursor_execute", fail_on_queue_insert)
    assert snapshot(grid_engine) == before
    with grid_engine.connect() as conn:
        assert "ROLLBACK-SITE" not in GridDB(conn).site_clouds()

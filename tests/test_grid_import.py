"""Importing grid documents: the sample grid, CRIC's dumps as served, updates, and
refusals that change nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from netbroker.common.enums import PROTOCOL_ACTIVITIES
from netbroker.common.errors import InvalidGridDocument
from netbroker.db.grid import GridDB
from netbroker.db.schema import site_subnets, sites
from netbroker.registry import registry

SAMPLE = json.loads(registry.sample_grid_path().read_text())
CRIC = Path(__file__).parent / "data" / "cric"
DUMPS = ["pandaqueue.json", "ddmendpoint.json", "site.json", "rcsite_netroutes.json",
         "netsite.json"]


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
    "protocol endpoint not a URL": (
        _with("ddmendpoint", "DESY-HH_NEWDISK", {
            "site": "DESY-HH", "type": "DATADISK",
            "arprotocols": {"write_lan": [{"endpoint": "se.desy.de", "path": "/x"}]}}),
        'ddmendpoint["DESY-HH_NEWDISK"].arprotocols.write_lan[0].endpoint', "not a URL"),
    "protocol priority not a number": (
        _with("ddmendpoint", "DESY-HH_NEWDISK", {
            "site": "DESY-HH", "type": "DATADISK",
            "aprotocols": {"r": [["root://se.desy.de:1094", "high", "/atlas"]]}}),
        'ddmendpoint["DESY-HH_NEWDISK"].aprotocols.r', "priority must be a number"),
    "endpoint naming no site": (
        _with("ddmendpoint", "DESY-HH_NEWDISK", {"site": "", "rc_site": None,
                                                 "type": "DATADISK"}),
        'ddmendpoint["DESY-HH_NEWDISK"]', "names no site"),
    "endpoint name differing from a registered one only in case": (
        _with("ddmendpoint", "desy-hh_datadisk", {"site": "DESY-HH", "type": "DATADISK"}),
        'ddmendpoint["desy-hh_datadisk"].name', "differs only in case from 'DESY-HH_DATADISK'"),
    "astorages naming an unknown endpoint": (
        _with("pandaqueue", "NEWQ", {"atlas_site": "DESY-HH", "status": "online",
                                     "maxrss": 2000, "astorages": {"pw": ["DESY-HH_NODISK"]}}),
        'pandaqueue["NEWQ"].astorages.pw', "unknown storage endpoint 'DESY-HH_NODISK'"),
    "negative maxtime": (
        _with("pandaqueue", "NEWQ", {"atlas_site": "DESY-HH", "status": "online",
                                     "maxrss": 2000, "maxtime": "-60"}),
        'pandaqueue["NEWQ"].maxtime', "must be 0 (no limit) or a number of seconds"),
    "queue naming no site": (
        _with("pandaqueue", "NEWQ", {"atlas_site": "", "site": None, "status": "online",
                                     "maxrss": 2000}),
        'pandaqueue["NEWQ"]', "names no site (atlas_site, site or rc_site)"),
    "queue at an unknown resource centre": (
        _with("pandaqueue", "NEWQ", {"site": "OSG", "rc_site": "NOWHERE-RC",
                                     "status": "online", "maxrss": 2000}),
        'pandaqueue["NEWQ"].site', "unknown site 'OSG'"),
    "network not an address block": (
        {"netsite": {"DESY-NET": {"rcsite": "DESY-HH",
                                  "networks": {"ipv4": ["131.169.0.0/16", "131.169.300.0/24"]}}}},
        'netsite["DESY-NET"].networks.ipv4[1]', "not an IPv4/IPv6 network: '131.169.300.0/24'"),
    "record of another kind in a bare dump": (
        {"NEWQ": {"atlas_site": "DESY-HH", "status": "online", "maxrss": 2000, "maxtime": 60},
         "NEWQ2": {"atlas_site": "DESY-HH", "status": "online", "maxrss": 2000, "maxtime": 60},
         "DESY-HH_X": {"site": "DESY-HH", "type": "DATADISK", "is_tape": False}},
        'pandaqueue["DESY-HH_X"]', "looks like a ddmendpoint record, not a pandaqueue"),
}


BARE_DUMPS = {"record of another kind in a bare dump"}  # no section a site could ride in


@pytest.mark.parametrize("case", list(BAD_DOCUMENTS))
def test_malformed_document_is_refused_and_changes_nothing(
        grid_engine: Engine, case: str) -> None:
    doc, where, why = BAD_DOCUMENTS[case]
    if case not in BARE_DUMPS:
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


# --- CRIC's dumps as served (tests/data/cric, see its README) -------------------------


def import_dumps(engine: Engine, order: list[str] = DUMPS) -> registry.ImportReport:
    return registry.import_grid_files(engine, [CRIC / name for name in order])


def protocol_rows(engine: Engine, endpoint: str) -> list[tuple[Any, ...]]:
    """(id, url, path, flavour, read_lan, read_wan, write_lan, write_wan, delete_lan,
    delete_wan) of an endpoint's protocols, in their order."""
    with engine.connect() as conn:
        rows = GridDB(conn).endpoint_protocols([endpoint]).get(endpoint, [])
    return [(r["protocol_id"], r["url"], r["path"], r["flavour"],
             *[r[a] for a in PROTOCOL_ACTIVITIES]) for r in rows]


@pytest.mark.parametrize("order", [DUMPS, list(reversed(DUMPS))], ids=["queues-first",
                                                                          "networks-first"])
def test_cric_dumps_import_as_served_from_several_files_in_any_order(
        grid_engine: Engine, order: list[str]) -> None:
    report = import_dumps(grid_engine, order)
    assert report.shapes == {str(CRIC / "pandaqueue.json"): "pandaqueue dump",
                             str(CRIC / "ddmendpoint.json"): "ddmendpoint dump",
                             str(CRIC / "site.json"): "site dump",
                             str(CRIC / "rcsite_netroutes.json"): "rcsite dump (netroutes)",
                             str(CRIC / "netsite.json"): "netroute dump"}
    counted = {k: (c.inserted, c.updated) for k, c in report.counts.items()}
    assert counted["sites"] == (3, 0) and counted["endpoints"] == (6, 0)
    assert counted["queues"] == (4, 0)
    # 3 + 1 + 1 + 1 + 2 protocols; astorages 3+2+1+2 entries (1 twice in UCORE);
    # subnets 4 (DE) + 2 + 2 (US) + 2 (T3)
    assert (counted["protocols"], counted["queue_storages"], counted["subnets"]) == (
        (8, 0), (9, 0), (10, 0))
    assert report.unmapped == ['netsite["NO-SITE-NET"]: names no site',
                               'netsite["USCMS-NOT-ATLAS-LHCONE"]: site \'USCMS-NOT-ATLAS\' '
                               'not registered']


def test_cric_sites_keep_their_resource_centre_and_lenient_fields(grid_engine: Engine) -> None:
    import_dumps(grid_engine)
    t2, t3 = registry.get_site(grid_engine, "CRIC-DE-T2"), registry.get_site(grid_engine,
                                                                              "CRIC-DE-T3")
    assert (t2["cloud"], t2["tier"], t2["country"], t2["is_nucleus"]) == ("DE", 2, "Germany",
                                                                          True)
    assert (t3["tier"], t3["country"], t3["is_nucleus"], t3["status"]) == (3, "", False,
                                                                          "online")
    with grid_engine.connect() as conn:
        assert GridDB(conn).site_rc_sites()["CRIC-DE-T3"] == "CRIC-DE-T3-RC"


def test_cric_endpoints_have_no_space_until_reported_and_keep_their_protocols(
        grid_engine: Engine) -> None:
    import_dumps(grid_engine)
    with grid_engine.connect() as conn:
        eps = {e["name"]: e for e in GridDB(conn).list_endpoints() if e["name"].startswith("CRIC")}
    assert all(e["total_bytes"] is None and e["free_bytes"] is None for e in eps.values())
    got = {n: (e["site"], e["kind"], e["active"], e["url"], e["host"]) for n, e in eps.items()}
    assert got == {
        "CRIC-DE-T2_DATADISK": ("CRIC-DE-T2", "disk", True, "davs://webdav.cric-de.example:443",
                                "webdav.cric-de.example"),
        # no "se": the first WAN write protocol, its path appended
        "CRIC-DE-T2_SCRATCHDISK": ("CRIC-DE-T2", "disk", True,
                                   "root://xrootd.cric-de.example:1094/atlas/scratch/",
                                   "xrootd.cric-de.example"),
        "CRIC-DE-T2_DATATAPE": ("CRIC-DE-T2", "tape", True,
                                "srm://srm.cric-de.example:8443/srm/managerv2?SFN="
                                "/pnfs/cric-de.example/atlas/tape/", "srm.cric-de.example"),
        # "site" empty: its rc_site is CRIC-DE-T3's; state null is ACTIVE
        "CRIC-DE-T3_LOCALGROUPDISK": ("CRIC-DE-T3", "disk", True,
                                      "root://t3.cric-de.example:1094/localgroup/",
                                      "t3.cric-de.example"),
        "CRIC-US-T2_DATADISK": ("CRIC-US-T2", "disk", True, "davs://dav.cric-us.example:443"
                                "/atlas/rucio/", "dav.cric-us.example"),
        "CRIC-US-T2_NOPROTO": ("CRIC-US-T2", "disk", False, "", ""),
    }
    dpm = "/dpm/cric-de.example/home/atlas/atlasdatadisk/rucio"
    # rprotocols decide (they carry activities); aprotocols add the root door they
    # alone list, unused, numbered after CRIC's ids; third-party copy is not kept
    assert protocol_rows(grid_engine, "CRIC-DE-T2_DATADISK") == [
        (5101, "davs://webdav.cric-de.example:443", dpm + "/", "WEBDAV", 2, 1, 2, 1, 0, 1),
        (5102, "file://localhost", dpm + "/", "POSIX", 1, 0, 1, 0, 0, 0),
        (5103, "root://xrootd.cric-de.example:1094", dpm, "", 0, 0, 0, 0, 0, 0)]
    # protocols: r/w/d are LAN and WAN both; the priority "2" a string
    assert protocol_rows(grid_engine, "CRIC-DE-T2_SCRATCHDISK") == [
        (1, "root://xrootd.cric-de.example:1094", "/atlas/scratch/", "", 1, 1, 1, 1, 2, 2)]
    assert protocol_rows(grid_engine, "CRIC-DE-T2_DATATAPE") == [
        (1, "token:ATLASDATATAPE:srm://srm.cric-de.example:8443/srm/managerv2?SFN=",
         "/pnfs/cric-de.example/atlas/tape/", "", 1, 1, 1, 1, 0, 0)]
    # rprotocols with Rucio-style domains, the id from the key
    assert protocol_rows(grid_engine, "CRIC-DE-T3_LOCALGROUPDISK") == [
        (5301, "root://t3.cric-de.example:1094", "/localgroup/", "XROOTD", 1, 1, 1, 0, 1, 0)]
    # arprotocols: the rank in each list is the priority; ids given as strings
    assert protocol_rows(grid_engine, "CRIC-US-T2_DATADISK") == [
        (6101, "root://xrd.cric-us.example:1094", "/atlas/rucio/", "XROOTD", 1, 0, 0, 0, 0, 0),
        (6102, "davs://dav.cric-us.example:443", "/atlas/rucio/", "WEBDAV", 2, 1, 1, 1, 0, 0)]
    assert protocol_rows(grid_engine, "CRIC-US-T2_NOPROTO") == []


def test_cric_queues_resolve_their_site_and_keep_storages_and_copytools(
        grid_engine: Engine) -> None:
    import_dumps(grid_engine)
    with grid_engine.connect() as conn:
        db = GridDB(conn)
        got = {q["name"]: (q["site"], q["cores"], q["max_memory_mb"], q["max_walltime_s"],
                           q["max_disk_mb"], q["hs06_per_core"], q["panda_resource"],
                           q["copytools"], q["acopytools"])
               for q in db.list_queues() if "CRIC" in q["name"]}
        storages = {name: db.queue_storages(db.queue(name)["id"]) for name in got}
    assert got == {
        "CRIC-DE-T2_UCORE": ("CRIC-DE-T2", 8, 16000, 172800, 32768, 10.4, "CRIC-DE-T2_UCORE",
                             '{"rucio": {"setup": ""}, "xrdcp": {"setup": ""}}',
                             '{"read_lan": ["rucio"], "write_lan": ["rucio"]}'),
        # maxtime 0: no limit; corecount null: 1; corepower "": unknown
        "ANALY_CRIC-DE-T2": ("CRIC-DE-T2", 1, 2000, None, 16000, None, "ANALY_CRIC-DE-T2",
                             None, None),
        # its "site" is the grid, OSG: atlas_site names the site; numbers as strings
        "CRIC-OSG_QUEUE": ("CRIC-US-T2", 1, 2000, 86400, 0, None, "CRIC-OSG_QUEUE", None, None),
        # named only by rc_site; copytools a list, acopytools a name
        "CRIC-DE-T3": ("CRIC-DE-T3", 1, 4000, None, 0, None, "CRIC-DE-T3", '{"mv": {}}',
                       '{"pw": ["mv"]}'),
    }
    assert storages == {
        "CRIC-DE-T2_UCORE": {"es_events": ["CRIC-DE-T2_SCRATCHDISK"],
                             "read_lan": ["CRIC-DE-T2_DATADISK", "CRIC-DE-T2_SCRATCHDISK"],
                             "write_lan": ["CRIC-DE-T2_DATADISK"]},
        # RSE names in another case are the registered ones
        "ANALY_CRIC-DE-T2": {"read_lan": ["CRIC-DE-T2_DATADISK"],
                             "write_lan": ["CRIC-DE-T2_SCRATCHDISK"]},
        "CRIC-OSG_QUEUE": {"pw": ["CRIC-US-T2_DATADISK"]},
        "CRIC-DE-T3": {"read_lan": ["CRIC-DE-T3_LOCALGROUPDISK"],
                       "write_lan": ["CRIC-DE-T3_LOCALGROUPDISK"]},
    }


def test_cric_networks_are_stored_per_site_in_normal_form(grid_engine: Engine) -> None:
    import_dumps(grid_engine)
    with grid_engine.connect() as conn:
        rows = conn.execute(sa.select(sites.c.name, site_subnets.c.cidr, site_subnets.c.family,
                                      site_subnets.c.netroute).join(sites)
                            .where(sites.c.name.like("CRIC%"))).all()
    assert sorted(map(tuple, rows)) == sorted([
        ("CRIC-DE-T2", "198.51.100.0/25", 4, "CRIC-DE-RC-LHCONE"),
        ("CRIC-DE-T2", "203.0.113.64/26", 4, "CRIC-DE-RC-LHCONE"),
        ("CRIC-DE-T2", "2001:db8:100::/48", 6, "CRIC-DE-RC-LHCONE"),
        ("CRIC-DE-T2", "198.51.100.128/25", 4, "CRIC-DE-RC-P2P"),
        ("CRIC-US-T2", "198.51.0.0/16", 4, "CRIC-US-RC-LHCONE"),
        ("CRIC-US-T2", "203.0.113.0/26", 4, "CRIC-US-RC-LHCONE"),
        ("CRIC-US-T2", "198.51.7.0/24", 4, "CRIC-US-T2-EXTRA"),
        ("CRIC-US-T2", "2001:db8:200::/40", 6, "CRIC-US-T2-EXTRA"),
        ("CRIC-DE-T3", "203.0.113.192/27", 4, "DE-CRIC-T3"),
        ("CRIC-DE-T3", "2001:db8:300::/48", 6, "DE-CRIC-T3")])


def test_reimporting_cric_dumps_changes_nothing(grid_engine: Engine) -> None:
    import_dumps(grid_engine)
    before = snapshot(grid_engine)
    report = import_dumps(grid_engine, list(reversed(DUMPS)))
    assert all(c.inserted == c.updated == c.deleted == 0 for c in report.counts.values())
    assert snapshot(grid_engine) == before


def test_a_record_that_leaves_fields_out_keeps_what_is_stored(grid_engine: Engine) -> None:
    """CRIC gives no space, a site dump no hosts: a re-import of the registered endpoint
    without space or protocols, and of the site without hosts, keeps them."""
    before = snapshot(grid_engine)
    registry.import_grid_document(grid_engine, json.dumps({
        "DESY-HH_DATADISK": {"site": "DESY-HH", "type": "DATADISK", "token": "ATLASDATADISK",
                             "is_tape": False, "se": "root://se.desy.de:1094"}}))
    registry.import_grid_document(grid_engine, json.dumps({
        "DESY-HH": {"cloud": "DE", "tier_level": 2, "country": "Germany",
                    "datapolicies": ["Nucleus"], "ddmendpoints": {}, "rc_site": "DESY-HH"}}))
    assert snapshot(grid_engine) == before


def test_protocols_given_replace_those_stored(grid_engine: Engine) -> None:
    doc = {"DESY-HH_DATADISK": {"site": "DESY-HH", "type": "DATADISK", "is_tape": False,
                                "se": "root://se.desy.de:1094",
                                "protocols": {"davs://dcache.desy.de:2880": [
                                    ["w", 1, "/pnfs/desy.de/atlas/"]]}}}
    report = registry.import_grid_document(grid_engine, json.dumps(doc))
    assert (report.counts["protocols"].inserted, report.counts["protocols"].deleted) == (1, 3)
    assert protocol_rows(grid_engine, "DESY-HH_DATADISK") == [
        (1, "davs://dcache.desy.de:2880", "/pnfs/desy.de/atlas/", "", 0, 0, 1, 1, 0, 0)]
    raw = SAMPLE["ddmendpoint"]["DESY-HH_DATADISK"]
    assert registry.get_site(grid_engine, "DESY-HH")["endpoints"][0]["total_bytes"] == raw[
        "space_total_bytes"]


def test_a_queue_given_no_maxtime_or_maxtime_zero_has_no_walltime_limit(
        grid_engine: Engine) -> None:
    from netbroker.common.config import Settings
    from netbroker.workload.gridview import load_grid_view

    registry.import_grid_document(grid_engine, json.dumps({"pandaqueue": {
        "DESY-HH_LONG": {"atlas_site": "DESY-HH", "status": "online", "maxrss": 2000,
                         "maxtime": 0},
        "DESY-HH_NOTIME": {"atlas_site": "DESY-HH", "status": "online", "maxrss": 2000}}}))
    queues = {q["name"]: q for q in registry.list_queues(grid_engine, site="DESY-HH")}
    assert queues["DESY-HH_LONG"]["max_walltime_s"] is None
    assert queues["DESY-HH_NOTIME"]["max_walltime_s"] is None
    view, _ = load_grid_view(grid_engine, Settings(), [])
    walltime = dict(zip(view.queues, view.queue_walltime_s, strict=True))
    assert walltime["DESY-HH_LONG"] == float("inf") and walltime["DESY-HH"] == 86400


def test_unknown_space_counts_as_room_not_as_full(grid_engine: Engine) -> None:
    from netbroker.common.config import Settings
    from netbroker.workload.gridview import load_grid_view

    registry.import_grid_document(grid_engine, json.dumps({"ddmendpoint": {
        "DESY-HH_DATADISK": {"site": "DESY-HH", "type": "DATADISK", "space_total_bytes": None,
                             "space_free_bytes": None}}}))
    view, _ = load_grid_view(grid_engine, Settings(), [])
    free = dict(zip(view.sites, view.site_disk_free, strict=True))
    assert free["DESY-HH"] == float("inf")
    raw = SAMPLE["ddmendpoint"]
    assert free["FZK-LCG2"] == raw["FZK-LCG2_DATADISK"]["space_free_bytes"] + raw[
        "FZK-LCG2_SCRATCHDISK"]["space_free_bytes"]


def test_a_record_in_two_files_is_refused_naming_both(grid_engine: Engine, tmp_path: Path
                                                       ) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"NEW-SITE": {"cloud": "DE", "tier_level": 3}}))
    b.write_text(json.dumps({"site": {"NEW-SITE": {"cloud": "FR", "tier_level": 3}}}))
    before = snapshot(grid_engine)
    with pytest.raises(InvalidGridDocument, match=rf'site\["NEW-SITE"\]: given in both {a} '
                                                  rf'and {b}'):
        registry.import_grid_files(grid_engine, [a, b])
    assert snapshot(grid_engine) == before


def test_problems_of_several_files_say_which_file(grid_engine: Engine, tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"NEWQ": {"atlas_site": "DESY-HH", "status": "online",
                                      "maxrss": "lots", "maxtime": 60}}))
    b.write_text(json.dumps({"X_DATADISK": {"site": "DESY-HH", "type": "DATADISK",
                                            "is_tape": False, "space_total_bytes": -5}}))
    with pytest.raises(InvalidGridDocument) as info:
        registry.import_grid_files(grid_engine, [a, b])
    assert {str(p) for p in info.value.problems} == {
        f'{a}: pandaqueue["NEWQ"].maxrss: Input should be a valid integer, unable to parse '
        "string as an integer (got 'lots')",
        f'{b}: ddmendpoint["X_DATADISK"].space_total_bytes: Input should be greater than or '
        "equal to 0 (got -5)"}


def test_a_resource_centre_of_several_sites_does_not_name_one(grid_engine: Engine) -> None:
    registry.import_grid_document(grid_engine, json.dumps({"site": {
        "RC-A": {"cloud": "DE", "tier_level": 3, "rc_site": "SHARED-RC"},
        "RC-B": {"cloud": "DE", "tier_level": 3, "rc_site": "SHARED-RC"}}}))
    with pytest.raises(InvalidGridDocument, match="resource centre 'SHARED-RC' has several "
                                                  "sites \\(RC-A, RC-B\\): name the site"):
        registry.import_grid_document(grid_engine, json.dumps({"pandaqueue": {
            "RCQ": {"rc_site": "SHARED-RC", "status": "online", "maxrss": 1000}}}))


def test_upgrade_to_0014_keeps_registered_rows_and_their_references(grid_engine: Engine
                                                                     ) -> None:
    """0014 rebuilds endpoints and queues on SQLite while replicas and jobs refer to
    them: down to 0013 and up again, every row and reference stays."""
    from alembic import command

    from netbroker.db import upgrade
    from netbroker.db.migrate import alembic_config
    from tests.test_dispatcher import add_jobs

    add_jobs(grid_engine, 3)
    kept = ("clouds", "sites", "site_hosts", "datasets", "files", "replicas", "jobs")

    def rows() -> dict[str, Any]:
        shot = snapshot(grid_engine)
        with grid_engine.connect() as conn:
            ep = conn.execute(sa.text("SELECT id, name, site_id, total_bytes, free_bytes "
                                      "FROM endpoints ORDER BY id")).all()
            qs = conn.execute(sa.text("SELECT id, name, site_id, cores FROM queues "
                                      "ORDER BY id")).all()
        return {**{k: shot[k] for k in kept if k != "sites"}, "endpoints": ep, "queues": qs,
                "sites": [r[:8] for r in shot["sites"]]}

    before = rows()
    cfg = alembic_config()
    with grid_engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0013")
    assert upgrade(grid_engine).changed
    assert rows() == before
    if grid_engine.dialect.name == "sqlite":
        with grid_engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []


def test_readers_of_space_treat_unknown_as_unknown(grid_engine: Engine) -> None:
    """Taking bytes off an unknown free space leaves it unknown; a job's output goes to
    the endpoint with the most known free space, one of unknown space after it."""
    from netbroker.db.pd2p import Pd2pDB
    from netbroker.db.schema import endpoints, queues
    from netbroker.db.tasks import TaskDB

    registry.import_grid_document(grid_engine, json.dumps({"ddmendpoint": {
        "DESY-HH_SCRATCHDISK": {"site": "DESY-HH", "type": "SCRATCHDISK",
                                "space_total_bytes": None, "space_free_bytes": None}}}))
    with grid_engine.begin() as conn:
        ids = GridDB(conn).ids(endpoints)
        Pd2pDB(conn).use_space(ids["DESY-HH_SCRATCHDISK"], 10**9)
        Pd2pDB(conn).use_space(ids["DESY-HH_DATADISK"], 10**9)
        free = dict(conn.execute(sa.select(endpoints.c.name, endpoints.c.free_bytes)
                                 .where(endpoints.c.site_id == GridDB(conn).ids(sites)[
                                     "DESY-HH"])).all())
        out = TaskDB(conn).output_endpoint(GridDB(conn).ids(queues)["DESY-HH"])
    raw = SAMPLE["ddmendpoint"]["DESY-HH_DATADISK"]["space_free_bytes"]
    assert free == {"DESY-HH_DATADISK": raw - 10**9, "DESY-HH_SCRATCHDISK": None}
    assert out is not None and out["name"] == "DESY-HH_DATADISK"


def test_public_names_are_pinned() -> None:
    from netbroker.registry import cric, grid_document

    assert cric.__all__ == ["PROTOCOL_FIELDS", "Network", "Protocol",
                            "classify_record", "parse_networks", "parse_protocols", "url_parts",
                            "without_token"]
    assert grid_document.__all__ == ["GridDocument", "KnownNames", "Resolution",
                                     "check_references", "merge_documents",
                                     "parse_grid_document", "resolve_references",
                                     "site_host_pairs"]
    assert registry.__all__ == ["ImportReport", "get_site", "grid_summary",
                                "import_grid_document", "import_grid_documents",
                                "import_grid_file", "import_grid_files", "list_clouds",
                                "list_queues", "list_sites", "sample_grid_path", "site_clouds"]


def test_the_cli_imports_several_dumps_and_says_what_it_read(db_url: str) -> None:
    from tests.test_cli import netbroker

    assert netbroker("grid", "import", "--sample", url=db_url).returncode == 0
    files = [str(CRIC / n) for n in ("netsite.json", "site.json", "rcsite_netroutes.json")]
    shown = netbroker("grid", "import", *files, url=db_url)
    assert shown.returncode == 0, shown.stderr
    assert f"read {CRIC / 'site.json'} as site dump" in shown.stdout
    assert 'not stored: netsite["NO-SITE-NET"]: names no site' in shown.stdout
    again = netbroker("grid", "import", *files, "--json", url=db_url)
    report = json.loads(again.stdout)
    assert report["shapes"][str(CRIC / "netsite.json")] == "netroute dump"
    assert report["counts"]["subnets"] == {"inserted": 0, "updated": 0, "unchanged": 10,
                                           "deleted": 0}
    mixed = netbroker("grid", "import", "-", files[0], url=db_url)
    assert mixed.returncode != 0 and "must be the only FILE" in mixed.stderr
    assert "Traceback" not in mixed.stderr

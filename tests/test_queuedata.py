"""The pilot's documents made from the registry (dispatcher.queuedata).

The structures are asserted as written by hand from the CRIC dumps of
``tests/data/cric`` and the sample grid. Then the real PanDA Pilot 3 (3.7 from
``.interop/src``, 3.11 from ``/work/shared/vendor``) reads them: in a
subprocess with only the pilot's own code on its path (the repository has a
``pilot`` package of its own), its ``QueueData``, ``StorageData``,
``StageOutClient.prepare_destinations``, ``prepare_inputddms``,
``require_protocols`` (stage-out) and ``resolve_protocols``/``resolve_protocol``
(stage-in) must find a protocol for every copy tool of every activity; with
the empty ``arprotocols`` served before, ``require_protocols`` fails.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from dispatcher import queuedata
from netbroker.db.grid import GridDB
from netbroker.db.schema import endpoints
from netbroker.registry import registry

CRIC = Path(__file__).parent / "data" / "cric"
ROOT = Path(__file__).resolve().parent.parent
PILOT_37 = ROOT / ".interop" / "src"
PILOT_311 = Path("/work/shared/vendor/pilot3-3.11.5.1.tar.gz")
DPM = "/dpm/cric-de.example/home/atlas/atlasdatadisk/rucio/"
DAVS, FILE = "davs://webdav.cric-de.example:443", "file://localhost"


@pytest.fixture
def cric(grid_engine: Engine) -> Engine:
    """The sample grid with the CRIC dumps of tests/data/cric imported over it."""
    registry.import_grid_files(grid_engine, [CRIC / n for n in (
        "site.json", "ddmendpoint.json", "pandaqueue.json")])
    return grid_engine


def description(engine: Engine, queue: str) -> dict[str, Any]:
    with engine.connect() as conn:
        found = GridDB(conn).queue_description(queue)
    assert found is not None
    return found


def storage_list(engine: Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        return queuedata.ddmendpoints(GridDB(conn).ddm_endpoints())


def endpoint_id(engine: Engine, name: str) -> int:
    with engine.connect() as conn:
        return GridDB(conn).ids(endpoints)[name]


# --- /cache/ddmendpoints.json ---------------------------------------------------------


def test_an_endpoint_lists_its_protocols_per_activity_first_choice_first(cric: Engine) -> None:
    davs = {"endpoint": DAVS, "path": DPM, "flavour": "WEBDAV", "id": 5101}
    posix = {"endpoint": FILE, "path": DPM, "flavour": "POSIX", "id": 5102}
    root = "root://xrootd.cric-de.example:1094"
    assert storage_list(cric)["CRIC-DE-T2_DATADISK"] == {
        "name": "CRIC-DE-T2_DATADISK", "id": endpoint_id(cric, "CRIC-DE-T2_DATADISK"),
        "type": "DATADISK", "token": "", "state": "ACTIVE", "site": "CRIC-DE-T2",
        "rc_site": "CRIC-DE-RC", "is_deterministic": True, "is_tape": False, "resource": {},
        "arprotocols": {"read_lan": [posix, davs], "read_wan": [davs],
                        "write_lan": [posix, davs], "write_wan": [davs], "delete_wan": [davs]},
        "rprotocols": {
            "5101": {**_pilot(davs), "activities": [["read_lan", 2], ["read_wan", 1],
                                                    ["write_lan", 2], ["write_wan", 1],
                                                    ["delete_wan", 1]], "settings": {}},
            "5102": {**_pilot(posix), "activities": [["read_lan", 1], ["write_lan", 1]],
                     "settings": {}},
            "5103": {"id": 5103, "endpoint": root, "path": DPM.rstrip("/"), "flavour": "",
                     "activities": [], "settings": {}}},
        # the better of LAN and WAN; equal priorities in the endpoint's order
        "aprotocols": {"r": [[DAVS, 1, DPM], [FILE, 1, DPM]],
                       "w": [[DAVS, 1, DPM], [FILE, 1, DPM]], "d": [[DAVS, 1, DPM]]},
    }


def _pilot(entry: dict[str, Any]) -> dict[str, Any]:
    return {"id": entry["id"], "endpoint": entry["endpoint"], "path": entry["path"],
            "flavour": entry["flavour"]}


def test_a_disabled_endpoint_without_protocols_says_so(cric: Engine) -> None:
    entry = storage_list(cric)["CRIC-US-T2_NOPROTO"]
    assert (entry["state"], entry["rc_site"], entry["arprotocols"], entry["rprotocols"],
            entry["aprotocols"]) == ("DISABLED", "CRIC-US-RC", {}, {}, {})


# --- /cache/schedconfig/<Q>.all.json --------------------------------------------------


def test_a_cric_queue_keeps_its_copytools_named_for_both_pilot_versions(cric: Engine) -> None:
    got = queuedata.schedconfig(description(cric, "CRIC-DE-T2_UCORE"))
    data, scratch = "CRIC-DE-T2_DATADISK", "CRIC-DE-T2_SCRATCHDISK"
    scratch_root = {"ddmendpoint": scratch, "endpoint": "root://xrootd.cric-de.example:1094",
                    "path": "/atlas/scratch/", "flavour": "", "id": 1}
    read = [{"ddmendpoint": data, **_pilot({"endpoint": FILE, "path": DPM, "flavour": "POSIX",
                                            "id": 5102})},
            {"ddmendpoint": data, **_pilot({"endpoint": DAVS, "path": DPM, "flavour": "WEBDAV",
                                            "id": 5101})},
            scratch_root]
    write = read[:2]
    assert got == {
        "nickname": "CRIC-DE-T2_UCORE", "panda_resource": "CRIC-DE-T2_UCORE",
        "site": "CRIC-DE-T2", "atlas_site": "CRIC-DE-T2", "cloud": "DE", "state": "ACTIVE",
        "status": "online", "type": "unified", "catchall": "", "environ": "", "cmtconfig": "",
        "appdir": "", "container_type": "", "container_options": "",
        "copytools": {"rucio": {"setup": ""}, "xrdcp": {"setup": ""}},
        "acopytools": {k: ["rucio"] for k in ("read_lan", "write_lan", "pr", "pw", "pl",
                                              "default")},
        "astorages": {"read_lan": [data, scratch], "write_lan": [data], "es_events": [scratch],
                      "pr": [data, scratch], "pw": [data], "pl": [data]},
        "aprotocols": {"read_lan": read, "pr": read, "write_lan": write, "pw": write,
                       "pl": write},
        "acopytools_schemas": {}, "params": {}, "maxwdir": 32768, "maxrss": 16000,
        "maxtime": 172800, "maxinputsize": 32768, "timefloor": 0, "corecount": 8,
        "pledgedcpu": 0, "is_cvmfs": False, "direct_access_lan": False,
        "direct_access_wan": False, "allow_lan": True, "allow_wan": False, "use_pcache": False,
    }


def test_copytools_not_given_follow_the_schemes_of_the_storages_protocols(cric: Engine
                                                                          ) -> None:
    got = queuedata.schedconfig(description(cric, "ANALY_CRIC-DE-T2"))
    # reads DATADISK: LAN file (mv) then davs (gfal); writes SCRATCHDISK: root (xrdcp)
    assert got["acopytools"] == {"default": ["xrdcp", "mv", "gfal"], "pr": ["mv", "gfal"],
                                 "read_lan": ["mv", "gfal"], "pw": ["xrdcp"], "pl": ["xrdcp"],
                                 "write_lan": ["xrdcp"]}
    assert got["copytools"] == {"xrdcp": {"setup": ""}, "mv": {"setup": ""},
                                "gfal": {"setup": ""}}
    assert got["maxtime"] == 0  # CRIC's maxtime 0: no limit, as the pilot reads it
    assert got["astorages"]["pw"] == ["CRIC-DE-T2_SCRATCHDISK"]


def test_copytools_given_for_one_activity_are_named_for_every_activity(cric: Engine) -> None:
    got = queuedata.schedconfig(description(cric, "CRIC-DE-T3"))
    assert got["copytools"] == {"mv": {"setup": ""}}
    assert got["acopytools"] == {k: ["mv"] for k in ("pw", "pl", "write_lan", "default", "pr",
                                                     "read_lan")}
    assert (got["site"], got["status"]) == ("CRIC-DE-T3", "test")


def test_a_queue_without_storages_reads_and_writes_its_sites_disks(cric: Engine) -> None:
    registry.import_grid_document(cric, json.dumps({"pandaqueue": {"CRIC-DE-T2_PLAIN": {
        "atlas_site": "CRIC-DE-T2", "status": "online", "maxrss": 2000, "maxtime": 3600}}}))
    got = queuedata.schedconfig(description(cric, "CRIC-DE-T2_PLAIN"))
    disks = ["CRIC-DE-T2_DATADISK", "CRIC-DE-T2_SCRATCHDISK"]  # the tape is no disk
    assert got["astorages"] == {"read_lan": disks, "write_lan": disks, "pr": disks,
                                "pw": disks, "pl": disks}
    assert got["acopytools"]["pw"] == ["mv", "gfal", "xrdcp"]


def test_the_sample_grids_queues_describe_their_storages(grid_engine: Engine) -> None:
    got = queuedata.schedconfig(description(grid_engine, "DESY-HH"))
    local = ["DESY-HH_DATADISK", "DESY-HH_SCRATCHDISK"]
    assert {k: got["astorages"][k] for k in ("read_lan", "pr", "write_lan", "pw", "pl")} == {
        "read_lan": local, "pr": local, "write_lan": local[:1], "pw": local[:1],
        "pl": local[:1]}
    # DESY's disks: POSIX first on the LAN, then its root door, then davs for reading
    assert got["acopytools"]["pr"] == ["mv", "xrdcp", "gfal"]
    assert got["acopytools"]["pw"] == ["mv", "xrdcp"]
    assert got["maxtime"] == 86400
    hpc = queuedata.schedconfig(description(grid_engine, "NERSC_Perlmutter"))
    assert (hpc["maxtime"], hpc["copytools"], hpc["acopytools"]["write_lan"]) == (
        0, {"mv": {"setup": ""}}, ["mv"])


def test_an_unknown_queue_has_no_description(grid_engine: Engine) -> None:
    with grid_engine.connect() as conn:
        assert GridDB(conn).queue_description("NOPE") is None


# --- what the real pilot makes of them ------------------------------------------------

# Run with the pilot's source first on sys.path. The pilot's InfoService is stood in
# for by the two things its staging clients ask of it (queuedata, resolve_storage_data);
# everything else is the pilot's own code, called as its control/data.py calls it.
_PROBE = r'''
import json, sys
sys.path.insert(0, sys.argv[1])
from pilot.api.data import StageInClient, StageOutClient
from pilot.info.filespec import FileSpec
from pilot.info.queuedata import QueueData
from pilot.info.storagedata import StorageData

class Infosys:
    def __init__(self, queuedata, storages):
        self.queuedata, self.storages = queuedata, storages
    def resolve_storage_data(self, ddmendpoints=None):
        return self.storages

doc = json.load(sys.stdin)
info = Infosys(QueueData(doc["schedconfig"]),
               {n: StorageData(d) for n, d in doc["ddmendpoints"].items()})
out = {}
for label, (activities, destinations) in doc["stageout"].items():
    client = StageOutClient(info, trace_report={"probe": True})
    tools = next(client.acopytools[a] for a in activities + ["default"]
                 if client.acopytools.get(a))
    results = []
    for name in tools:
        module = __import__("pilot.copytool." + client.copytool_modules[name]["module_name"],
                            fromlist=["copytool"])
        files = [FileSpec(filetype="output", lfn="out.root", scope="user.probe", ddmendpoint=d)
                 for d in doc["outputs"]]
        if destinations:
            client.prepare_destinations(files, activities)
        client.prepare_inputddms(files)
        for f in files:  # as StagingClient.transfer sets it for stage-out
            f.ddm_activity = [a for a in ["write_lan" if f.ddmendpoint in f.inputddms else None,
                                          "write_wan"] if a]
        if not getattr(module, "require_protocols", True):
            results.append({"copytool": name, "needs": "no protocol"})
            continue
        try:
            client.require_protocols(files, module, activities)
            results.append({"copytool": name, "turls": [f.turl for f in files]})
        except Exception as exc:
            results.append({"copytool": name, "error": f"{type(exc).__name__}: {exc}"})
    out[label] = results
for label, activity in doc["stagein"].items():
    client = StageInClient(info, trace_report={"probe": True})
    tools = client.acopytools.get(activity) or client.acopytools["default"]
    files = [FileSpec(filetype="input", lfn="in.root", scope="user.probe", ddmendpoint=d)
             for d in doc["inputs"]]
    client.prepare_inputddms(files)
    for f in files:
        f.ddm_activity = [a for a in ["read_lan" if f.ddmendpoint in f.inputddms else None,
                                      "read_wan"] if a]
    client.resolve_protocols(files)
    results = []
    for name in tools:
        module = __import__("pilot.copytool." + client.copytool_modules[name]["module_name"],
                            fromlist=["copytool"])
        found = [client.resolve_protocol(f, getattr(module, "allowed_schemas", None))
                 for f in files]
        results.append({"copytool": name, "first": [p[0]["endpoint"] if p else None
                                                    for p in found]})
    out[label] = results
print(json.dumps(out))
'''

# Activities as each version's pilot/control/data.py passes them: (copytool and
# astorages activities, whether prepare_destinations runs: 3.7 not on unified queues).
VERSIONS = {
    "3.7": {"stagein": "pr", "out": ["pw", "w"], "log": ["pl", "pw", "w"], "unified_dest": False},
    "3.11": {"stagein": "read_lan", "out": ["write_lan", "w"], "log": ["pl", "write_lan", "w"],
             "unified_dest": True},
}


@pytest.fixture(scope="module")
def pilot_sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    found = {}
    if (PILOT_37 / "pilot" / "api" / "data.py").exists():
        found["3.7"] = PILOT_37
    if PILOT_311.exists():
        where = tmp_path_factory.mktemp("pilot311")
        with tarfile.open(PILOT_311) as tar:
            tar.extractall(where, filter="data")
        found["3.11"] = next(where.glob("*/pilot/api/data.py")).parent.parent.parent
    return found


def probe(source: Path, schedconfig: dict[str, Any], storages: dict[str, Any],
          version: str, outputs: list[str], inputs: list[str], cwd: Path) -> dict[str, Any]:
    v = VERSIONS[version]
    dest = schedconfig["type"] != "unified" or v["unified_dest"]
    doc = {"schedconfig": schedconfig, "ddmendpoints": storages, "outputs": outputs,
           "inputs": inputs, "stagein": {"in": v["stagein"]},
           "stageout": {"out": [v["out"], dest], "log": [v["log"], dest]}}
    run = subprocess.run([sys.executable, "-c", _PROBE, str(source)], input=json.dumps(doc),
                         capture_output=True, text=True, timeout=120, cwd=cwd, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def rucio_path(scope: str, lfn: str) -> str:
    """Where the pilot puts a file under a protocol's path (StagingClient.get_path)."""
    md5 = hashlib.md5(f"{scope}:{lfn}".encode()).hexdigest()
    return "/".join([*scope.split("."), md5[0:2], md5[2:4], lfn])


@pytest.mark.parametrize("version", list(VERSIONS))
@pytest.mark.parametrize(("queue", "outputs", "inputs"), [
    ("DESY-HH", ["DESY-HH_DATADISK"], ["DESY-HH_DATADISK", "FZK-LCG2_DATADISK"]),
    ("ANALY_FZK-LCG2", ["FZK-LCG2_SCRATCHDISK"], ["FZK-LCG2_DATADISK"]),
    ("NERSC_Perlmutter", ["NERSC_DATADISK"], ["NERSC_SCRATCHDISK"]),
    ("ANALY_CRIC-DE-T2", ["CRIC-DE-T2_SCRATCHDISK"], ["CRIC-DE-T2_DATADISK"]),
    ("CRIC-DE-T2_UCORE", ["CRIC-DE-T2_DATADISK"], ["CRIC-DE-T2_SCRATCHDISK"]),
])
def test_the_real_pilot_finds_a_protocol_for_every_copytool_and_activity(
        cric: Engine, pilot_sources: dict[str, Path], tmp_path: Path, version: str,
        queue: str, outputs: list[str], inputs: list[str]) -> None:
    if version not in pilot_sources:
        pytest.skip(f"PanDA Pilot {version} source not here (make interop; /work/shared/vendor)")
    config = queuedata.schedconfig(description(cric, queue))
    storages = storage_list(cric)
    got = probe(pilot_sources[version], config, storages, version, outputs, inputs, tmp_path)
    for label in ("out", "log"):
        assert got[label], got
        for result in got[label]:
            assert "error" not in result, (label, result)
            if "turls" in result:  # under the protocol the copy tool took, at Rucio's path
                assert all(t.endswith(rucio_path("user.probe", "out.root"))
                           for t in result["turls"]), result
    assert got["in"] and all(None not in r["first"] for r in got["in"]), got["in"]


def test_the_real_pilot_resolves_the_sample_protocols_it_should(
        grid_engine: Engine, pilot_sources: dict[str, Path], tmp_path: Path) -> None:
    """By hand: DESY-HH writes DESY-HH_DATADISK over the LAN (it is in read_lan), mv
    takes the POSIX mount, xrdcp the root door; reading FZK-LCG2_DATADISK (not local)
    goes over the WAN: mv the first WAN protocol, gfal the davs one."""
    if not pilot_sources:
        pytest.skip("no PanDA Pilot source here")
    version, source = next(iter(pilot_sources.items()))
    config = queuedata.schedconfig(description(grid_engine, "DESY-HH"))
    got = probe(source, config, storage_list(grid_engine), version, ["DESY-HH_DATADISK"],
                ["DESY-HH_DATADISK", "FZK-LCG2_DATADISK"], tmp_path)
    path = "/pnfs/desy.de/atlas/datadisk/rucio/" + rucio_path("user.probe", "out.root")
    assert got["out"] == [{"copytool": "mv", "turls": ["file://localhost" + path]},
                          {"copytool": "xrdcp", "turls": ["root://se.desy.de:1094" + path]}]
    assert got["in"] == [
        {"copytool": "mv", "first": ["file://localhost", "davs://atlaswebdav-kit.gridka.de:2880"]},
        {"copytool": "xrdcp", "first": ["root://se.desy.de:1094",
                                        "root://atlaswebdav-kit.gridka.de:1094"]},
        {"copytool": "gfal", "first": ["davs://se.desy.de:443",
                                       "davs://atlaswebdav-kit.gridka.de:2880"]}]


def test_the_real_pilot_fails_on_the_empty_protocols_served_before(
        grid_engine: Engine, pilot_sources: dict[str, Path], tmp_path: Path) -> None:
    """The document as served before: acopytools all mv, no astorages, empty arprotocols.
    The pilot's require_protocols then takes the first of no protocols (pilot error 1137)."""
    if not pilot_sources:
        pytest.skip("no PanDA Pilot source here")
    version, source = next(iter(pilot_sources.items()))
    config = {**queuedata.schedconfig(description(grid_engine, "DESY-HH")),
              "copytools": {"mv": {"setup": ""}}, "astorages": {}, "aprotocols": {},
              "acopytools": {k: ["mv"] for k in ("default", "pr", "pw", "pl", "read_lan",
                                                 "write_lan")}}
    storages = {n: {**e, "arprotocols": {}, "rprotocols": {}}
                for n, e in storage_list(grid_engine).items()}
    got = probe(source, config, storages, version, ["DESY-HH_DATADISK"], ["DESY-HH_DATADISK"],
                tmp_path)
    assert got["out"][0]["copytool"] == "mv"
    assert got["out"][0]["error"].startswith("IndexError")


def test_public_names_are_pinned() -> None:
    assert queuedata.__all__ == ["acopytools", "aprotocols", "arprotocols", "ddmendpoint_entry",
                                 "ddmendpoints", "queue_astorages", "rprotocols", "schedconfig"]

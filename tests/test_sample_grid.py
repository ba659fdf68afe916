"""The shipped sample grid: reproducible from its generator, and a believable grid."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

from netbroker.registry import registry
from netbroker.registry.grid_document import check_references, parse_grid_document

RAW = registry.sample_grid_path().read_text()
DOC = json.loads(RAW)


def test_shipped_json_is_what_the_generator_prints() -> None:
    result = subprocess.run([sys.executable, "-m", "netbroker.data.make_sample_grid"],
                            capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout == RAW


def test_sample_grid_parses_with_no_problem() -> None:
    doc = parse_grid_document(RAW, "sample")
    assert check_references(doc) == []
    assert doc.counts() == {"clouds": 12, "sites": 152, "endpoints": 271, "queues": 226,
                            "datasets": 40, "networks": 304}


def test_every_cloud_has_its_real_tier1_and_nucleus() -> None:
    tier1 = {name: c["tier1"] for name, c in DOC["cloud"].items()}
    assert tier1 == {"CERN": "CERN-PROD", "DE": "FZK-LCG2", "FR": "IN2P3-CC",
                     "IT": "INFN-T1", "ND": "NDGF-T1", "NL": "SARA-MATRIX", "UK": "RAL-LCG2",
                     "US": "BNL-ATLAS", "CA": "TRIUMF-LCG2", "ES": "pic", "TW": "Taiwan-LCG2",
                     "RU": "RRC-KI-T1"}
    for site in tier1.values():
        assert DOC["site"][site]["tier_level"] == (0 if site == "CERN-PROD" else 1)
        assert "Nucleus" in DOC["site"][site]["datapolicies"]


def test_sites_span_tiers_and_statuses() -> None:
    tiers = Counter(s["tier_level"] for s in DOC["site"].values())
    assert tiers[0] == 1 and tiers[1] == 11 and tiers[2] > 50 and tiers[3] > 20
    statuses = Counter(s["status"] for s in DOC["site"].values())
    assert (statuses["offline"], statuses["test"], statuses["brokeroff"]) == (3, 2, 2)


def test_tier1s_have_tape_and_some_disks_are_nearly_full() -> None:
    tape_sites = {e["site"] for e in DOC["ddmendpoint"].values() if e["is_tape"]}
    assert tape_sites == {c["tier1"] for c in DOC["cloud"].values()}
    nearly_full = [n for n, e in DOC["ddmendpoint"].items()
                   if not e["is_tape"] and e["space_free_bytes"] < 0.005 * e["space_total_bytes"]]
    assert len(nearly_full) >= 2


def test_every_endpoint_has_protocols_in_cric_shape() -> None:
    for name, e in DOC["ddmendpoint"].items():
        ar = e["arprotocols"]
        if e["is_tape"]:  # tapes are reached from elsewhere only
            assert set(ar) == {"read_wan", "write_wan", "delete_wan"}, name
        else:  # disks: a POSIX mount first on the LAN, the door first on the WAN
            assert ar["write_lan"][0]["endpoint"] == "file://localhost", name
            assert ar["write_wan"][0]["endpoint"].split("://")[0] in ("root", "davs"), name
        assert all(set(p) == {"endpoint", "path", "flavour", "id"}
                   for ps in ar.values() for p in ps), name
        ids = {p["id"] for ps in ar.values() for p in ps}
        assert len(ids) == len({p["endpoint"] for ps in ar.values() for p in ps}), name


def test_queues_read_every_local_disk_and_write_to_one() -> None:
    for name, q in DOC["pandaqueue"].items():
        local = {e for e, rec in DOC["ddmendpoint"].items()
                 if rec["site"] == q["atlas_site"] and not rec["is_tape"]}
        assert set(q["astorages"]["read_lan"]) == local, name
        assert len(q["astorages"]["write_lan"]) == 1, name
        assert q["astorages"]["write_lan"][0] in local, name
    hpc = [q for q in DOC["pandaqueue"].values() if "copytools" in q]
    assert len(hpc) == 4 and all(q["maxtime"] == 0 for q in hpc)


def test_every_site_has_a_network_route_of_its_own() -> None:
    routes = DOC["netsite"]
    assert sorted(r["rcsite"] for r in routes.values()) == sorted(DOC["site"])
    blocks = [b for r in routes.values() for fam in ("ipv4", "ipv6") for b in r["networks"][fam]]
    assert len(blocks) == len(set(blocks)) == 2 * len(DOC["site"])

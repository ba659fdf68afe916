"""Host -> site mapping against the sample grid's registry: by name, by domain, by
address (CRIC's subnets), RSEs in any case or by the host of their URL."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy.engine import Engine

from collectors.mapping import SiteResolver, rse_ref
from collectors.records import HostRef
from netbroker.db.grid import GridDB
from netbroker.registry import registry


def resolver(engine: Engine) -> tuple[SiteResolver, dict[str, int]]:
    with engine.connect() as conn:
        lookup = GridDB(conn).site_lookup()
    return SiteResolver(lookup), {name: ids[0] for name, ids in lookup["site"].items()}


def test_names_hosts_and_domains_map_to_their_sites(grid_engine: Engine) -> None:
    r, site = resolver(grid_engine)
    assert r.resolve(HostRef("site", "MWT2")) == site["MWT2"]
    assert r.resolve(HostRef("rse", "FZK-LCG2_DATADISK")) == site["FZK-LCG2"]
    assert r.resolve(HostRef("host", "atlaswebdav-kit.gridka.de")) == site["FZK-LCG2"]
    assert r.resolve(HostRef("host", "perfsonar-bw.desy.de")) == site["DESY-HH"]
    # a worker node: no registered host, but its domain belongs to one site
    assert r.resolve(HostRef("host", "wn0042.farm.gridka.de")) == site["FZK-LCG2"]


def test_unknown_or_shared_names_stay_unmapped(grid_engine: Engine) -> None:
    r, _ = resolver(grid_engine)
    assert r.resolve(HostRef("host", "se.unknown-lab.example.org")) is None
    assert r.resolve(HostRef("site", "NOWHERE")) is None
    assert r.resolve(HostRef("ip", "192.0.2.10")) is None  # no site's subnet holds it
    assert r.resolve(HostRef("ip", "not-an-address")) is None
    assert r.resolve(HostRef("domain", "org")) is None  # a bare top-level domain never maps


# --- by address, RSE names in any case, unknown RSEs by their URL's host --------------

CRIC = Path(__file__).parent / "data" / "cric"


def test_rse_names_are_compared_case_insensitively(grid_engine: Engine) -> None:
    r, site = resolver(grid_engine)
    assert r.resolve(HostRef("rse", "TAIWAN-LCG2_DATADISK")) == site["Taiwan-LCG2"]
    assert r.resolve(HostRef("rse", "fzk-lcg2_datadisk")) == site["FZK-LCG2"]


def test_an_unknown_rse_falls_back_to_the_host_of_its_url(grid_engine: Engine) -> None:
    r, site = resolver(grid_engine)
    unknown = rse_ref("FZK-LCG2_NEWDISK", "davs://atlaswebdav-kit.gridka.de:2880/pnfs/x")
    assert unknown == HostRef("rse+host", "FZK-LCG2_NEWDISK atlaswebdav-kit.gridka.de")
    assert r.resolve(unknown) == site["FZK-LCG2"]
    # a known RSE is its endpoint's site, whatever host it was reached at
    assert r.resolve(rse_ref("desy-hh_datadisk", "davs://atlaswebdav-kit.gridka.de")) == site[
        "DESY-HH"]
    assert r.resolve(rse_ref("NOWHERE_DATADISK", "root://se.unknown-lab.example.org")) is None
    assert r.resolve(rse_ref("NOWHERE_DATADISK")) is None


def test_sample_grid_hosts_map_by_address_when_their_names_do_not(grid_engine: Engine) -> None:
    r, site = resolver(grid_engine)
    # the sample gives the i-th site of its table 198.18.i.0/24 and 2001:db8:a00i::/48
    assert r.resolve(HostRef("ip", "198.18.0.7")) == site["CERN-PROD"]
    assert r.resolve(HostRef("ip", "2001:db8:a001::1:2")) == site["CERN-P1"]
    assert r.resolve(HostRef("host", "198.18.2.200")) == site["FZK-LCG2"]


def test_hosts_map_by_the_longest_subnet_holding_their_address(grid_engine: Engine) -> None:
    registry.import_grid_files(grid_engine, [CRIC / n for n in (
        "site.json", "ddmendpoint.json", "rcsite_netroutes.json", "netsite.json")])
    r, site = resolver(grid_engine)
    de, us, t3 = site["CRIC-DE-T2"], site["CRIC-US-T2"], site["CRIC-DE-T3"]
    cases = {
        "198.51.100.5": de,        # DE's /25 inside US's 198.51.0.0/16
        "198.51.100.200": de,      # DE's other /25
        "198.51.7.7": us,          # US's netroute /24
        "198.51.200.1": us,        # only US's /16 holds it
        "203.0.113.70": de,        # 203.0.113.64/26
        "203.0.113.10": us,        # 203.0.113.0/26
        "203.0.113.200": t3,       # 203.0.113.192/27, a netsite's comma separated subnets
        "2001:db8:100::1": de,     # given upper case in the dump
        "2001:db8:2ff:ffff::1": us,  # inside 2001:db8:200::/40
        "2001:db8:300::5": t3,
        "::ffff:198.51.100.5": de,  # IPv4-mapped IPv6
        "203.0.113.128": None,     # between the blocks
        "198.19.250.1": None,      # a resource centre no registered site belongs to
        "198.19.251.1": None,      # a netsite that names no site
    }
    assert {a: r.resolve(HostRef("ip", a)) for a in cases} == cases
    assert r.resolve(HostRef("host", "[2001:db8:300::5]")) == t3  # an address given as host
    # a protocol's host (only in arprotocols) maps like a storage host
    assert r.resolve(HostRef("host", "xrd.cric-us.example")) == us


def test_a_subnet_two_sites_share_maps_to_neither(grid_engine: Engine) -> None:
    registry.import_grid_document(grid_engine, json.dumps({"netsite": {
        "SHARED": {"sites": ["DESY-HH", "DESY-ZN"], "subnets": "192.0.2.0/28"},
        "DESY-HH-ONLY": {"rcsite": "DESY-HH", "networks": ["192.0.2.0/24"]}}}))
    r, site = resolver(grid_engine)
    assert r.resolve(HostRef("ip", "192.0.2.3")) is None  # the /28 is DESY-HH's and DESY-ZN's
    assert r.resolve(HostRef("ip", "192.0.2.30")) == site["DESY-HH"]


def test_public_names_are_pinned() -> None:
    from collectors import mapping

    assert mapping.__all__ == ["RSE_WITH_HOST", "SiteResolver", "rse_ref"]

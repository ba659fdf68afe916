"""Host -> site mapping against the sample grid's registry."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from collectors.mapping import SiteResolver
from collectors.records import HostRef
from netbroker.db.grid import GridDB


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
    assert r.resolve(HostRef("ip", "192.0.2.10")) is None
    assert r.resolve(HostRef("domain", "org")) is None  # a bare top-level domain never maps

"""Hypothesis strategies: arbitrary JSON, and small valid grid documents."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

names = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=1, max_size=12)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)

# Documents that look like grid documents but may be wrong anywhere.
section_like = st.dictionaries(
    st.sampled_from(["cloud", "site", "ddmendpoint", "pandaqueue", "dataset", "other"]),
    st.dictionaries(names, st.dictionaries(
        st.sampled_from(["name", "cloud", "tier_level", "tier1", "site", "type", "status",
                         "maxrss", "maxtime", "space_total_bytes", "space_free_bytes",
                         "atlas_site", "corecount", "domains"]), json_values, max_size=6),
        max_size=3) | json_values,
    max_size=5)


@st.composite
def grid_documents(draw: st.DrawFn, prefix: str) -> dict[str, Any]:
    """A valid grid document: 1-3 clouds, each with a Tier-1 and 0-4 more sites,
    a queue and a disk endpoint per site. Names start with ``prefix``."""
    doc: dict[str, Any] = {"cloud": {}, "site": {}, "pandaqueue": {}, "ddmendpoint": {}}
    n_clouds = draw(st.integers(1, 3))
    for c in range(n_clouds):
        cloud = f"{prefix}C{c}"
        n_sites = draw(st.integers(1, 5))
        for s in range(n_sites):
            site = f"{cloud}-S{s}"
            doc["site"][site] = {"cloud": cloud, "tier_level": 1 if s == 0 else
                                 draw(st.integers(2, 3)),
                                 "status": draw(st.sampled_from(["online", "offline", "test",
                                                                 "brokeroff"]))}
            total = draw(st.integers(0, 10**16))
            doc["ddmendpoint"][f"{site}_DATADISK"] = {
                "site": site, "type": "DATADISK", "space_total_bytes": total,
                "space_free_bytes": draw(st.integers(0, total))}
            doc["pandaqueue"][f"{site}_Q"] = {
                "atlas_site": site, "status": "online", "corecount": draw(st.integers(0, 128)),
                "maxrss": draw(st.integers(0, 10**6)), "maxtime": draw(st.integers(0, 10**6)),
                "pilot_slots": draw(st.integers(0, 10**4))}
        doc["cloud"][cloud] = {"tier1": f"{cloud}-S0"}
    return doc

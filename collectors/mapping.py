"""Which site a measured host belongs to, from the grid registry.

A :class:`SiteResolver` is built once per batch from
``GridDB.site_lookup()`` and answers for each :class:`HostRef`: a site name
maps directly; an RSE maps through its endpoint, compared case-insensitively
(``TAIWAN-LCG2_DATADISK`` is ``Taiwan-LCG2_DATADISK``); an RSE given with the
URL it was reached at (:func:`rse_ref`) falls back to that URL's host when
the registry does not know the RSE. A host name maps through the storage
endpoint, protocol and perfSONAR hosts, else through the longest registered
network domain it ends with, and an address (an ``ip`` reference, or a host
that is an IPv4/IPv6 literal) through the longest registered subnet that
holds it. A domain maps through the registered domains the same way. A
name that matches nothing, or only a domain or subnet shared by several
sites, is unmapped: the caller counts it and moves on.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from collectors.records import HostRef

__all__ = ["RSE_WITH_HOST", "SiteResolver", "rse_ref"]

_UNSEEN = object()
# HostRef.by of an RSE with the host of the URL it was reached at: "<rse> <host>".
RSE_WITH_HOST = "rse+host"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def rse_ref(rse: str, url: str | None = None) -> HostRef:
    """The reference to an RSE, carrying the host of ``url`` for when the RSE is unknown.

    >>> rse_ref("TAIWAN-LCG2_DATADISK", "davs://f-dpm000.grid.sinica.edu.tw:443/dpm")
    HostRef(by='rse+host', value='TAIWAN-LCG2_DATADISK f-dpm000.grid.sinica.edu.tw')
    >>> rse_ref("CERN-PROD_DATADISK", "")
    HostRef(by='rse', value='CERN-PROD_DATADISK')
    """
    host = ""
    if url:
        try:
            host = urlsplit(url if "://" in url else f"//{url}").hostname or ""
        except ValueError:
            host = ""
    return HostRef(RSE_WITH_HOST, f"{rse} {host.lower()}") if host else HostRef("rse", rse)


@dataclass
class SiteResolver:
    """Resolve host references to site ids.

    Parameters
    ----------
    lookup : mapping
        ``{"site": {...}, "rse": {...}, "host": {...}, "domain": {...},
        "subnet": {...}}``, each mapping a name (an RSE lower-case, a subnet in
        CIDR form) to the site ids it may mean; ``subnet`` may be absent.

    Examples
    --------
    >>> r = SiteResolver({"site": {"DESY-HH": [7]}, "rse": {"desy-hh_datadisk": [7]},
    ...                   "host": {}, "domain": {"desy.de": [7, 8], "gridka.de": [3]},
    ...                   "subnet": {"131.169.0.0/16": [7], "2001:638:700::/48": [7],
    ...                              "131.169.98.0/24": [8]}})
    >>> r.resolve(HostRef("host", "f01-080-123.gridka.de")), r.resolve(HostRef("domain", "desy.de"))
    (3, None)
    >>> r.resolve(HostRef("rse", "DESY-HH_DataDisk")), r.resolve(HostRef("ip", "131.169.5.1"))
    (7, 7)
    >>> r.resolve(HostRef("ip", "131.169.98.7")), r.resolve(HostRef("host", "2001:638:700::1"))
    (8, 7)
    """

    lookup: Mapping[str, Mapping[str, list[int]]]
    _cache: dict[HostRef, object] = field(default_factory=dict, repr=False)
    _nets: dict[int, list[tuple[int, dict[int, list[int]]]]] = field(
        default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._nets = _subnet_table(self.lookup.get("subnet", {}))

    def resolve(self, ref: HostRef) -> int | None:
        """The site id ``ref`` names, or None when unknown or ambiguous.

        O(labels of the name), or O(distinct prefix lengths) for an address.
        """
        found = self._cache.get(ref, _UNSEEN)
        if found is _UNSEEN:
            found = self._cache[ref] = self._resolve(ref)
        return found  # type: ignore[return-value]

    def _resolve(self, ref: HostRef) -> int | None:
        by, value = ref
        if by == "site":
            return _unique(self.lookup["site"].get(value))
        if by == "rse":
            return _unique(self.lookup["rse"].get(value.lower()))
        if by == RSE_WITH_HOST:
            rse, _, host = value.partition(" ")
            ids = self.lookup["rse"].get(rse.lower())
            return _unique(ids) if ids else self._by_host(host)
        if by == "host":
            return self._by_host(value)
        if by == "domain":
            return self._by_domain(value)
        if by == "ip":
            return self._by_address(value)
        return None

    def _by_host(self, name: str) -> int | None:
        name = name.lower()
        exact = self.lookup["host"].get(name)
        if exact:
            return _unique(exact)
        if _address(name) is not None:
            return self._by_address(name)
        return self._by_domain(name.split(".", 1)[1] if "." in name else "")

    def _by_domain(self, name: str) -> int | None:
        """Longest registered domain that ``name`` is or ends with."""
        labels = name.split(".")
        for i in range(len(labels) - 1):  # never a bare top-level domain
            ids = self.lookup["domain"].get(".".join(labels[i:]))
            if ids:
                return _unique(ids)
        return None

    def _by_address(self, text: str) -> int | None:
        """The sites of the longest registered subnet holding the address."""
        address = _address(text)
        if address is None:
            return None
        bits = address.max_prefixlen
        number = int(address)
        for length, networks in self._nets.get(address.version, []):
            ids = networks.get(number >> (bits - length))
            if ids:
                return _unique(ids)
        return None


def _address(text: str) -> Address | None:
    """An IPv4/IPv6 address (brackets and IPv4-mapped IPv6 allowed), or None."""
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _subnet_table(subnets: Mapping[str, list[int]]
                  ) -> dict[int, list[tuple[int, dict[int, list[int]]]]]:
    """Per IP version, (prefix length, {network bits: site ids}), longest prefix first."""
    by_length: dict[int, dict[int, dict[int, list[int]]]] = {4: {}, 6: {}}
    for cidr, ids in subnets.items():
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            continue  # stored networks are checked at import; nothing to map by
        bits, length = net.max_prefixlen, net.prefixlen
        key = int(net.network_address) >> (bits - length)
        by_length[net.version].setdefault(length, {}).setdefault(key, []).extend(ids)
    return {v: sorted(t.items(), key=lambda item: -item[0]) for v, t in by_length.items()}


def _unique(ids: list[int] | None) -> int | None:
    if not ids:
        return None
    distinct = set(ids)
    return distinct.pop() if len(distinct) == 1 else None

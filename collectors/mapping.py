"""Which site a measured host belongs to, from the grid registry.

A :class:`SiteResolver` is built once per batch from
``GridDB.site_lookup()`` and answers for each :class:`HostRef`: a site name
or an RSE maps directly; a host name maps through the storage endpoint and
perfSONAR hosts, else through the longest registered network domain it ends
with; a domain maps through the registered domains the same way. A name
that matches nothing, or only a domain shared by several sites, is
unmapped: the caller counts it and moves on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from collectors.records import HostRef

__all__ = ["SiteResolver"]

_UNSEEN = object()


@dataclass
class SiteResolver:
    """Resolve host references to site ids.

    Parameters
    ----------
    lookup : mapping
        ``{"site": {...}, "rse": {...}, "host": {...}, "domain": {...}}``, each
        mapping a name to the site ids it may mean.

    Examples
    --------
    >>> r = SiteResolver({"site": {"DESY-HH": [7]}, "rse": {}, "host": {},
    ...                   "domain": {"desy.de": [7, 8], "gridka.de": [3]}})
    >>> r.resolve(HostRef("host", "f01-080-123.gridka.de")), r.resolve(HostRef("domain", "desy.de"))
    (3, None)
    """

    lookup: Mapping[str, Mapping[str, list[int]]]
    _cache: dict[HostRef, object] = field(default_factory=dict, repr=False)

    def resolve(self, ref: HostRef) -> int | None:
        """The site id ``ref`` names, or None when unknown or ambiguous. O(labels of the name)."""
        found = self._cache.get(ref, _UNSEEN)
        if found is _UNSEEN:
            found = self._cache[ref] = self._resolve(ref)
        return found  # type: ignore[return-value]

    def _resolve(self, ref: HostRef) -> int | None:
        by, value = ref
        if by in ("site", "rse"):
            return _unique(self.lookup[by].get(value))
        if by == "host":
            exact = self.lookup["host"].get(value)
            if exact:
                return _unique(exact)
            return self._by_domain(value.split(".", 1)[1] if "." in value else "")
        if by == "domain":
            return self._by_domain(value)
        return None  # IPs: the registry holds no addresses yet

    def _by_domain(self, name: str) -> int | None:
        """Longest registered domain that ``name`` is or ends with."""
        labels = name.split(".")
        for i in range(len(labels) - 1):  # never a bare top-level domain
            ids = self.lookup["domain"].get(".".join(labels[i:]))
            if ids:
                return _unique(ids)
        return None


def _unique(ids: list[int] | None) -> int | None:
    if not ids:
        return None
    distinct = set(ids)
    return distinct.pop() if len(distinct) == 1 else None

"""CRIC's records as served: which dump a mapping is, storage protocols, networks.

CRIC serves bare ``{name: record}`` mappings (``/api/atlas/pandaqueue/query/?json``,
``/api/atlas/ddmendpoint/query/?json``, ``/api/atlas/site/query/?json``,
``/api/core/rcsite/query/?json``, netsites and netroutes), with no word of
which one they are: :func:`classify_record` tells by a record's keys.

A storage endpoint gives its protocols in up to four shapes, often several
at once for the same protocols::

    protocols   {"davs://se.example:443": [["r", 1, "/atlas/"], ["w", 1, "/atlas/"]]}
    aprotocols  {"r": [["davs://se.example:443", 1, "/atlas/"]], "w": [...], "d": [...]}
    arprotocols {"read_lan": [{"endpoint": "davs://se.example:443", "path": "/atlas/",
                               "flavour": "WEBDAV", "id": 7}], "write_wan": [...]}
    rprotocols  {"7": {"id": 7, "endpoint": ..., "path": ..., "flavour": ...,
                       "activities": [["read_lan", 1], ...]  # or {"read_lan": 1}, or
                       "domains": {"lan": {"read": 1, ...}, "wan": {...}}}}

:func:`parse_protocols` reads them into one list of :class:`Protocol`, one per
protocol, with a priority per activity (1 first choice, 0 not used). The
most detailed shape present decides the priorities (rprotocols with
activities, then arprotocols, aprotocols, protocols); the others add the
protocols it does not list and fill in ids and flavours. Short activity
names (``r``, ``w``, ``d``, ``read``, ...) mean LAN and WAN both; activities
the pilot does not use (third-party copy) are not kept.

Networks come as a netsite or netroute record with ``networks``
(``{"ipv4": [...], "ipv6": [...]}``) or ``subnets`` (a list or a comma
separated string), naming its site by ``rcsite``/``rc_site``/``site``/``sites``,
or as an rcsite record whose ``netroutes`` hold them: :func:`parse_networks`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from netbroker.common.enums import PROTOCOL_ACTIVITIES

__all__ = [
    "PROTOCOL_FIELDS",
    "Network",
    "Protocol",
    "classify_record",
    "parse_networks",
    "parse_protocols",
    "url_parts",
    "without_token",
]

# What a record of each dump has that the others lack, strongest kinds first
# (a queue also has tier_level and cloud; an endpoint also has site and type).
_MARKERS: dict[str, frozenset[str]] = {
    "pandaqueue": frozenset({"panda_resource", "nickname", "maxtime", "maxrss", "maxwdir",
                             "corecount", "corepower", "astorages", "acopytools", "copytools",
                             "pilot_slots", "timefloor", "maxinputsize", "catchall"}),
    "ddmendpoint": frozenset({"token", "is_tape", "is_deterministic", "protocols", "aprotocols",
                              "rprotocols", "arprotocols", "space_total_bytes",
                              "space_free_bytes", "se"}),
    "netsite": frozenset({"networks", "subnets", "netroutes", "ipv4", "ipv6", "asn"}),
    "site": frozenset({"tier_level", "datapolicies", "ddmendpoints", "presources",
                       "perfsonar_hosts", "domains", "rc_tier_level"}),
    "cloud": frozenset({"tier1"}),
}
PROTOCOL_FIELDS = ("rprotocols", "arprotocols", "aprotocols", "protocols")

# The longest of each a protocol row holds (the columns of ``endpoint_protocols``).
_LONGEST = {"path": 512, "flavour": 32, "scheme": 16, "host": 255}
_SHORT = {"r": "read", "w": "write", "d": "delete", "read": "read", "write": "write",
          "delete": "delete"}
_SCHEME = re.compile(r"^(?:token:[^:]*:)?([A-Za-z][A-Za-z0-9+.-]*)://")


def classify_record(record: Any) -> str | None:
    """The dump a record belongs to, by the keys only that dump's records have.

    >>> classify_record({"atlas_site": "X", "maxtime": 0, "tier_level": 2})
    'pandaqueue'
    >>> classify_record({"site": "X", "type": "DATADISK", "is_tape": False})
    'ddmendpoint'
    >>> classify_record({"site": "X"}) is None
    True
    """
    if not isinstance(record, Mapping):
        return None
    keys = set(record)
    best, hits = None, 0
    for kind, markers in _MARKERS.items():
        n = len(keys & markers)
        if n > hits:  # strictly more: ties go to the stronger kind, listed first
            best, hits = kind, n
    return best


@dataclass(frozen=True)
class Protocol:
    """One storage protocol of an endpoint: CRIC's endpoint URL, path prefix, flavour,
    its id (when CRIC gave one) and a priority per activity (1 first, 0 not used)."""

    url: str
    path: str = ""
    flavour: str = ""
    protocol_id: int | None = None
    priorities: Mapping[str, int] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return self.url, self.path.rstrip("/")


def url_parts(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a protocol's endpoint URL; CRIC's ``token:NAME:`` prefix
    of SRM endpoints is skipped.

    >>> url_parts("token:ATLASDATADISK:srm://srm.example.org:8443/srm/managerv2?SFN=")
    ('srm', 'srm.example.org', 8443)
    >>> url_parts("file://localhost")
    ('file', 'localhost', None)
    """
    found = _SCHEME.match(url)
    if not found:
        raise ValueError(f"not a URL (scheme://host[:port]): {url!r}")
    parts = urlsplit(url[found.start(1):])
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"bad port in {url!r}") from None
    return found.group(1).lower(), (parts.hostname or "").lower(), port


def without_token(url: str) -> str:
    """A protocol's endpoint URL without CRIC's ``token:NAME:`` prefix (SRM's space token).

    >>> without_token("token:ATLASDATATAPE:srm://srm.example.org:8443/srm/managerv2?SFN=")
    'srm://srm.example.org:8443/srm/managerv2?SFN='
    """
    found = _SCHEME.match(url)
    return url[found.start(1):] if found else url


def parse_protocols(record: Mapping[str, Any]
                    ) -> tuple[list[Protocol] | None, list[tuple[str, str]]]:
    """An endpoint record's protocols, from whichever of the four shapes it gives.

    Returns
    -------
    protocols : list of Protocol, or None
        In the order the deciding shape lists them; None when the record gives
        none of the shapes (its stored protocols stay as they are).
    problems : list of (field, message)
        Each entry that cannot be read, by its path (``arprotocols.read_lan[0].endpoint``).

    Notes
    -----
    O(p * a) for p protocol entries and a activities.
    """
    given = [f for f in PROTOCOL_FIELDS if f in record]
    if not given:
        return None, []
    problems: list[tuple[str, str]] = []
    shapes = [_combined(_readable(_entries(f, record[f], problems), problems))
              for f in given]  # most detailed first
    deciding = next((s for s in shapes if any(p.priorities for p in s)), shapes[0])
    merged = list(deciding)
    for shape in shapes:
        if shape is deciding:
            continue
        for proto in shape:
            i = _match(merged, proto)
            if i is None:
                merged.append(replace(proto, priorities={}))
            else:
                merged[i] = _filled(merged[i], proto, with_priorities=False)
    return _numbered(merged), problems


def _readable(entries: Iterator[tuple[str, Protocol]], problems: list[tuple[str, str]]
              ) -> Iterator[Protocol]:
    """The entries the registry can keep; the others go to ``problems``."""
    for where, proto in entries:
        try:
            scheme, host, _ = url_parts(proto.url)
        except ValueError as exc:
            problems.append((f"{where}.endpoint", str(exc)))
            continue
        values = {"path": proto.path, "flavour": proto.flavour, "scheme": scheme, "host": host}
        too_long = [(f, n) for f, n in _LONGEST.items() if len(values[f]) > n]
        if too_long:
            problems += [(f"{where}.{f}", f"longer than {n} characters") for f, n in too_long]
            continue
        yield proto


def _combined(entries: Iterator[Protocol]) -> list[Protocol]:
    """One Protocol per protocol of a shape (arprotocols lists one per activity)."""
    out: list[Protocol] = []
    for proto in entries:
        i = _match(out, proto)
        if i is None:
            out.append(proto)
        else:
            out[i] = _filled(out[i], proto, with_priorities=True)
    return out


def _match(protocols: list[Protocol], proto: Protocol) -> int | None:
    """The index of the protocol ``proto`` describes again: same id, else same URL and path."""
    for i, p in enumerate(protocols):
        if p.protocol_id is not None and proto.protocol_id is not None:
            if p.protocol_id == proto.protocol_id:
                return i
        elif p.key == proto.key:
            return i
    return None


def _filled(old: Protocol, new: Protocol, with_priorities: bool) -> Protocol:
    """``old`` with what it lacks taken from ``new`` (and its priorities, when asked)."""
    priorities = dict(old.priorities)
    if with_priorities:
        for activity, value in new.priorities.items():
            _set(priorities, activity, value)
    return Protocol(old.url, old.path or new.path, old.flavour or new.flavour,
                    old.protocol_id if old.protocol_id is not None else new.protocol_id,
                    priorities)


def _numbered(protocols: list[Protocol]) -> list[Protocol]:
    """Every protocol with an id: CRIC's, or the next free one of the endpoint."""
    taken = {p.protocol_id for p in protocols if p.protocol_id is not None}
    nxt = max(taken, default=0)
    out = []
    for p in protocols:
        if p.protocol_id is None:
            nxt += 1
            p = replace(p, protocol_id=nxt)
        out.append(replace(p, priorities={a: int(p.priorities.get(a, 0))
                                          for a in PROTOCOL_ACTIVITIES}))
    return out


def _entries(shape: str, body: Any, problems: list[tuple[str, str]]
             ) -> Iterator[tuple[str, Protocol]]:
    """(where, Protocol) for each entry of one shape; unreadable ones go to ``problems``."""
    if body is None:
        return
    if shape in ("rprotocols", "protocols") and isinstance(body, list):
        body = dict(enumerate(body))
    if not isinstance(body, Mapping):
        problems.append((shape, f"must be an object, got {type(body).__name__}"))
        return
    for key, value in body.items():
        where = f"{shape}.{key}"
        try:
            if shape == "rprotocols" or (shape == "protocols" and isinstance(value, Mapping)):
                yield where, _detailed(key, value)
            elif shape == "arprotocols":
                yield from _ranked(where, str(key), value)
            elif shape == "aprotocols":
                yield from _triples(where, str(key), value, url_first=True)
            else:
                yield from _triples(where, str(key), value, url_first=False)
        except ValueError as exc:
            problems.append((where, str(exc)))


def _detailed(key: Any, entry: Any) -> Protocol:
    """An rprotocols entry: a full description, activities included."""
    if not isinstance(entry, Mapping):
        raise ValueError("must be an object")
    pid = _int_or_none(entry.get("id"))
    if pid is None:
        pid = _int_or_none(key)
    priorities: dict[str, int] = {}
    activities = entry.get("activities")
    if isinstance(activities, Mapping):
        for name, value in activities.items():
            _set(priorities, str(name), _priority(value))
    elif isinstance(activities, list):
        for item in activities:
            if isinstance(item, list | tuple) and item:
                _set(priorities, str(item[0]), _priority(item[1] if len(item) > 1 else 1))
            elif isinstance(item, str):
                _set(priorities, item, 1)
    domains = entry.get("domains")
    if isinstance(domains, Mapping):
        for domain in ("lan", "wan"):
            ops = domains.get(domain)
            for op, value in (ops.items() if isinstance(ops, Mapping) else ()):
                if op in ("read", "write", "delete"):
                    _set(priorities, f"{op}_{domain}", _priority(value))
    return Protocol(_url(entry.get("endpoint")), _text(entry.get("path")),
                    _text(entry.get("flavour")), pid, priorities)


def _ranked(where: str, activity: str, entries: Any) -> Iterator[tuple[str, Protocol]]:
    """An arprotocols activity: its protocols in order, the first the first choice."""
    if not isinstance(entries, list):
        raise ValueError("must be a list of protocols")
    for rank, entry in enumerate(entries, start=1):
        if not isinstance(entry, Mapping):
            raise ValueError(f"[{rank - 1}] must be an object")
        priorities: dict[str, int] = {}
        _set(priorities, activity, rank)
        try:
            url = _url(entry.get("endpoint"))
        except ValueError as exc:
            raise ValueError(f"[{rank - 1}].endpoint: {exc}") from None
        yield f"{where}[{rank - 1}]", Protocol(url, _text(entry.get("path")),
                                              _text(entry.get("flavour")),
                                              _int_or_none(entry.get("id")), priorities)


def _triples(where: str, key: str, rows: Any, url_first: bool
             ) -> Iterator[tuple[str, Protocol]]:
    """aprotocols (``activity: [[url, priority, path]]``) or protocols
    (``url: [[activity, priority, path]]``)."""
    if not isinstance(rows, list):
        raise ValueError("must be a list of [endpoint, priority, path]" if url_first
                         else "must be a list of [activity, priority, path]")
    for i, row in enumerate(rows):
        if not isinstance(row, list | tuple) or len(row) < 2:
            raise ValueError(f"[{i}] must be a list of 2 or 3 items, got {row!r}")
        path = _text(row[2]) if len(row) > 2 else ""
        activity, url = (key, row[0]) if url_first else (str(row[0]), key)
        priorities: dict[str, int] = {}
        _set(priorities, activity, _priority(row[1]))
        yield f"{where}[{i}]", Protocol(_url(url), path, "", None, priorities)


def _set(priorities: dict[str, int], activity: str, value: int) -> None:
    """Give ``activity`` (long or short name) its priority; the best one seen wins."""
    name = activity.strip().lower()
    if name in PROTOCOL_ACTIVITIES:
        targets: tuple[str, ...] = (name,)
    elif name in _SHORT:
        targets = (f"{_SHORT[name]}_lan", f"{_SHORT[name]}_wan")
    else:
        return  # third-party copy and the like: FTS's, not the pilot's
    for t in targets:
        current = priorities.get(t, 0)
        if value and (not current or value < current):
            priorities[t] = value
        else:
            priorities.setdefault(t, value)


def _priority(value: Any) -> int:
    """A priority as CRIC writes it: a number or a numeric string, 0 for not used."""
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise ValueError(f"priority must be a number, got {value!r}")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ValueError(f"priority must be a number, got {value!r}") from None
    if number < 0 or number > 32767:
        raise ValueError(f"priority must be between 0 and 32767, got {number}")
    return number


def _url(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"endpoint must be a URL, got {value!r}")
    if len(value) > 512:
        raise ValueError("endpoint longer than 512 characters")
    return value.strip()


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        return None
    return number if 0 <= number < 2**31 else None


@dataclass(frozen=True)
class Network:
    """A subnet and the names of the sites (ATLAS or resource centre) it belongs to."""

    cidr: str
    family: int
    sites: tuple[str, ...]
    netroute: str
    where: str


_SITE_FIELDS = ("rcsite", "rc_site", "site", "atlas_site", "sites", "rcsites")


def parse_networks(key: str, record: Any
                   ) -> tuple[list[Network], list[tuple[str, str]], list[str]]:
    """The subnets of a netsite, netroute or rcsite record.

    Returns
    -------
    networks : list of Network
        Each CIDR in normal form (``2001:db8::/32``), with the site names it names.
    problems : list of (field, message)
        Entries that are no IPv4/IPv6 network.
    siteless : list of str
        Routes that name no site at all (counted, not stored).
    """
    if not isinstance(record, Mapping):
        return [], [("", "must be an object")], []
    problems: list[tuple[str, str]] = []
    out: list[Network] = []
    siteless: list[str] = []
    routes = record.get("netroutes")
    if isinstance(routes, Mapping):
        for route, body in routes.items():
            sites = _site_names(body) or _site_names(record) or (key,)
            out += _subnets(f"netroutes.{route}", body, sites, str(route), problems)
    elif routes is not None:
        problems.append(("netroutes", "must be an object keyed by route name"))
    sites = _site_names(record)
    own = _subnets("", record, sites, key, problems)
    if own and not sites:
        siteless.append(key)
    elif sites:
        out += own
    return out, problems, siteless


def _site_names(record: Any) -> tuple[str, ...]:
    if not isinstance(record, Mapping):
        return ()
    names: list[str] = []
    for f in _SITE_FIELDS:
        value = record.get(f)
        values = value if isinstance(value, list) else [value]
        names += [str(v).strip() for v in values if isinstance(v, str) and v.strip()]
    return tuple(dict.fromkeys(names))


def _subnets(prefix: str, body: Any, sites: tuple[str, ...], route: str,
             problems: list[tuple[str, str]]) -> list[Network]:
    if not isinstance(body, Mapping):
        return []
    found: list[Network] = []
    for f in ("networks", "subnets", "ipv4", "ipv6"):
        where = f"{prefix}.{f}" if prefix else f
        for sub, value in _cidr_values(where, body.get(f), problems):
            try:
                net = ipaddress.ip_network(value, strict=False)
            except ValueError:
                problems.append((sub, f"not an IPv4/IPv6 network: {value!r}"))
                continue
            found.append(Network(net.compressed, net.version, sites, route[:128], sub))
    return found


def _cidr_values(where: str, value: Any, problems: list[tuple[str, str]]
                 ) -> Iterator[tuple[str, str]]:
    """(where, text) of each address block in a value: a string (comma or space
    separated), a list, or ``{"ipv4": [...], "ipv6": [...]}``."""
    if value is None:
        return
    if isinstance(value, str):
        for i, part in enumerate(p for p in re.split(r"[,\s]+", value) if p):
            yield f"{where}[{i}]", part
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, str):
                if item.strip():
                    yield f"{where}[{i}]", item.strip()
            elif item is not None:
                problems.append((f"{where}[{i}]", f"not an IPv4/IPv6 network: {item!r}"))
    elif isinstance(value, Mapping):
        for family, items in value.items():
            yield from _cidr_values(f"{where}.{family}", items, problems)
    else:
        problems.append((where, f"must be a list of networks, got {type(value).__name__}"))

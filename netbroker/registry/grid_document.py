"""Grid documents: parse CRIC-shaped JSON, check it, or refuse it whole.

A grid document is either a JSON object of sections::

    {"cloud":       {"DE": {"tier1": "FZK-LCG2"}},
     "site":        {"FZK-LCG2": {"cloud": "DE", "tier_level": 1, ...}},
     "ddmendpoint": {"FZK-LCG2_DATADISK": {"site": "FZK-LCG2", "type": "DATADISK", ...}},
     "pandaqueue":  {"FZK-LCG2": {"atlas_site": "FZK-LCG2", "corecount": 8, ...}},
     "netsite":     {"DE-KIT": {"sites": ["FZK-LCG2"], "networks": {"ipv4": [...]}}},
     "dataset":     [{"scope": ..., "name": ..., "files": [...], "replicas": [...]}]}

or one of CRIC's dumps as served, a bare ``{name: record}`` mapping, whose
kind its records' keys tell (``netbroker.registry.cric.classify_record``). Every
section is optional, so a document may carry only queues whose sites are
registered already, and several documents (files) combine into one import
(:func:`merge_documents`). Extensions CRIC does not have: an endpoint's
space (``space_total_bytes``, ``space_free_bytes``), a queue's
``pilot_slots``, a site's ``domains`` and ``perfsonar_hosts``.

:func:`parse_grid_document` checks each record on its own (types, ranges,
required fields, duplicate names); :func:`resolve_references` resolves the
names records use against each other and against what is registered: a
queue's site by ``atlas_site``, ``site`` or ``rc_site``, storage endpoints
case-insensitively. Both collect every problem, each naming its record and
field, before refusing.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from netbroker.common.errors import GridProblem, InvalidGridDocument
from netbroker.registry.cric import (
    PROTOCOL_FIELDS,
    Network,
    classify_record,
    parse_networks,
    parse_protocols,
)
from netbroker.registry.datasets import DatasetRecord
from netbroker.registry.sites import CloudRecord, EndpointRecord, QueueRecord, SiteRecord

__all__ = [
    "GridDocument",
    "KnownNames",
    "Resolution",
    "check_references",
    "merge_documents",
    "parse_grid_document",
    "resolve_references",
    "site_host_pairs",
]

_KEYED: dict[str, type[BaseModel]] = {
    "cloud": CloudRecord, "site": SiteRecord, "ddmendpoint": EndpointRecord,
    "pandaqueue": QueueRecord}
# The field holding a record's own name, under the name the document uses.
_NAME_FIELD = {"cloud": "name", "site": "name", "ddmendpoint": "name", "pandaqueue": "nickname"}
SECTIONS = (*_KEYED, "netsite", "dataset")

R = TypeVar("R", bound=BaseModel)


@dataclass(frozen=True)
class GridDocument:
    """A parsed grid document: every record valid on its own.

    ``shapes`` says, per source, what was read (``"pandaqueue dump"``,
    ``"sections: cloud, site"``); ``siteless`` names network routes that
    name no site at all.
    """

    clouds: list[CloudRecord] = field(default_factory=list)
    sites: list[SiteRecord] = field(default_factory=list)
    endpoints: list[EndpointRecord] = field(default_factory=list)
    queues: list[QueueRecord] = field(default_factory=list)
    datasets: list[DatasetRecord] = field(default_factory=list)
    networks: list[Network] = field(default_factory=list)
    siteless: list[str] = field(default_factory=list)
    shapes: tuple[tuple[str, str], ...] = ()

    def counts(self) -> dict[str, int]:
        """Number of records per kind."""
        return {"clouds": len(self.clouds), "sites": len(self.sites),
                "endpoints": len(self.endpoints), "queues": len(self.queues),
                "datasets": len(self.datasets), "networks": len(self.networks)}


@dataclass(frozen=True)
class KnownNames:
    """What is registered already, which a partial document may refer to.

    ``site_clouds`` maps each registered site to its cloud, ``site_rc_sites``
    to its resource centre (when known); ``hosts`` maps each registered
    perfSONAR (host, role) pair to the site that owns it.
    """

    clouds: frozenset[str] = frozenset()
    site_clouds: Mapping[str, str] = field(default_factory=dict)
    endpoints: frozenset[str] = frozenset()
    hosts: Mapping[tuple[str, str], str] = field(default_factory=dict)
    site_rc_sites: Mapping[str, str] = field(default_factory=dict)


class _Object(dict[str, Any]):
    """A JSON object that remembers the keys it saw more than once."""

    duplicates: list[str]


def _object_pairs(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    obj.duplicates = [k for k, n in Counter(k for k, _ in pairs).items() if n > 1]
    return obj


def parse_grid_document(raw: str | bytes, source: str | None = None) -> GridDocument:
    """Parse and check every record of a grid document on its own.

    Parameters
    ----------
    raw : str or bytes
        The JSON text: sections, or one bare CRIC dump.
    source : str, optional
        Where it came from (a file name), for messages.

    Returns
    -------
    GridDocument
        The records, in document order, and the shape that was read.

    Raises
    ------
    InvalidGridDocument
        Not JSON, not an object, an unknown section, a record with a missing
        or invalid field, a key that differs from the record's name, a record
        of another kind in a bare dump, or a name given twice. Every problem
        is listed, each naming its record (``site["DESY-HH"]``) and field
        (``tier_level``).

    Notes
    -----
    O(r) in the number r of records. References between records are
    checked by :func:`resolve_references`.

    Examples
    --------
    >>> doc = parse_grid_document('{"cloud": {"DE": {"tier1": "FZK-LCG2"}}}')
    >>> doc.clouds[0].name, doc.clouds[0].tier1, doc.shapes
    ('DE', 'FZK-LCG2', (('<input>', 'sections: cloud'),))
    >>> parse_grid_document('{"X_DATADISK": {"site": "X", "type": "DATADISK", '
    ...                     '"is_tape": false}}').shapes
    (('<input>', 'ddmendpoint dump'),)
    """
    try:
        data = json.loads(raw, object_pairs_hook=_object_pairs)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidGridDocument([GridProblem("document", "", f"not JSON: {exc}")],
                                  source) from None
    if not isinstance(data, dict):
        raise InvalidGridDocument(
            [GridProblem("document", "", f"must be a JSON object, got {type(data).__name__}")],
            source,
        )
    problems: list[GridProblem] = []
    kind = None if all(k in SECTIONS for k in data) else _bare_kind(data)
    if kind is None:
        sections, shape = data, "sections: " + (", ".join(k for k in data if k in SECTIONS)
                                                or "none")
        problems += [GridProblem("document", k, "unknown section; expected one of "
                                 + ", ".join(SECTIONS) + ", or a bare CRIC dump")
                     for k in data if k not in SECTIONS]
        problems += [GridProblem("document", k, "section given twice")
                     for k in getattr(data, "duplicates", [])]
    else:
        sections, shape = {kind: data}, _dump_shape(kind, data)
    parsed = {section: _parse_section(section, sections.get(section), problems, kind)
              for section in _KEYED}
    networks, siteless = _parse_networks(sections.get("netsite"), problems)
    datasets = _parse_datasets(sections.get("dataset"), problems)
    if problems:
        raise InvalidGridDocument(problems, source)
    return GridDocument(parsed["cloud"], parsed["site"], parsed["ddmendpoint"],
                        parsed["pandaqueue"], datasets, networks, siteless,
                        ((source or "<input>", shape),))


def _bare_kind(data: Mapping[str, Any]) -> str | None:
    """The dump a bare mapping is: the kind most of its records are, or None."""
    kinds = Counter(k for k in map(classify_record, data.values()) if k is not None)
    return kinds.most_common(1)[0][0] if kinds else None


def _dump_shape(kind: str, data: Mapping[str, Any]) -> str:
    if kind != "netsite":
        return f"{kind} dump"
    records = [r for r in data.values() if isinstance(r, Mapping)]
    if any("netroutes" in r for r in records):
        return "rcsite dump (netroutes)"
    if any(k in r for r in records for k in ("rcsite", "rc_site", "site", "netsite")):
        return "netroute dump"
    return "netsite dump"


def _parse_section(section: str, body: Any, problems: list[GridProblem],
                   dump: str | None) -> list[Any]:
    """Validate ``{name: record}``; the key names the record when it omits its name."""
    if body is None:
        return []
    if not isinstance(body, dict):
        problems.append(GridProblem(section, "", "must be an object keyed by name"))
        return []
    model, name_field = _KEYED[section], _NAME_FIELD[section]
    problems += [GridProblem(f"{section}[{json.dumps(k)}]", "", f"duplicate {section} name")
                 for k in getattr(body, "duplicates", [])]
    records: list[Any] = []
    for key, raw in body.items():
        where = f"{section}[{json.dumps(key)}]"
        if not isinstance(raw, dict):
            problems.append(GridProblem(where, "", "must be an object"))
            continue
        other = classify_record(raw) if dump else None
        if other not in (None, section):
            problems.append(GridProblem(where, "", f"looks like a {other} record, not a "
                                        f"{section}: a dump holds records of one kind"))
            continue
        if str(raw.get(name_field, key)) != key:
            problems.append(GridProblem(where, name_field,
                                        f"{raw[name_field]!r} differs from its key {key!r}"))
            continue
        values = {**raw, name_field: key}
        if section == "ddmendpoint":
            values = _with_protocols(values, where, problems)
        record = _validate(model, values, where, problems)
        if record is not None:
            records.append(record)
    return records


def _with_protocols(raw: dict[str, Any], where: str, problems: list[GridProblem]
                    ) -> dict[str, Any]:
    """An endpoint's fields with its protocols, whichever CRIC shapes gave them, as one."""
    protocols, bad = parse_protocols(raw)
    problems += [GridProblem(where, path, message) for path, message in bad]
    values = {k: v for k, v in raw.items() if k not in PROTOCOL_FIELDS}
    if protocols is not None:
        values["protocols"] = tuple(protocols)
    return values


def _parse_networks(body: Any, problems: list[GridProblem]) -> tuple[list[Network], list[str]]:
    if body is None:
        return [], []
    if not isinstance(body, dict):
        problems.append(GridProblem("netsite", "", "must be an object keyed by name"))
        return [], []
    problems += [GridProblem(f"netsite[{json.dumps(k)}]", "", "duplicate netsite name")
                 for k in getattr(body, "duplicates", [])]
    networks: list[Network] = []
    siteless: list[str] = []
    for key, raw in body.items():
        found, bad, none = parse_networks(str(key), raw)
        problems += [GridProblem(f"netsite[{json.dumps(key)}]", path, message)
                     for path, message in bad]
        networks += found
        siteless += none
    return networks, siteless


def _parse_datasets(body: Any, problems: list[GridProblem]) -> list[DatasetRecord]:
    if body is None:
        return []
    if not isinstance(body, list):
        problems.append(GridProblem("dataset", "", "must be a list of datasets"))
        return []
    records = []
    for i, raw in enumerate(body):
        where = f"dataset[{i}]"
        if isinstance(raw, dict) and "scope" in raw and "name" in raw:
            where = f'dataset["{raw["scope"]}:{raw["name"]}"]'
        record = _validate(DatasetRecord, raw, where, problems)
        if record is None:
            continue
        records.append(record)
        for name, n in Counter(f.name for f in record.files).items():
            if n > 1:
                problems.append(GridProblem(where, "files", f"file {name!r} listed {n} times"))
        for rse, n in Counter(r.rse for r in record.replicas).items():
            if n > 1:
                problems.append(GridProblem(where, "replicas", f"replica at {rse!r} listed "
                                            f"{n} times"))
    for did, n in Counter(r.did for r in records).items():
        if n > 1:
            problems.append(GridProblem(f'dataset["{did}"]', "", f"listed {n} times"))
    return records


def _validate(model: type[R], raw: Any, where: str, problems: list[GridProblem]) -> R | None:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            path = ".".join(str(p) for p in err["loc"])
            got = "" if err["type"] == "missing" else f" (got {err['input']!r})"
            message = err["msg"].removeprefix("Value error, ")
            problems.append(GridProblem(where, path, f"{message}{got}" if path else message))
        return None


def merge_documents(docs: Sequence[GridDocument]) -> tuple[GridDocument, list[GridProblem]]:
    """Several documents (files, in any order) as one; a name given in two is a problem.

    >>> a = parse_grid_document('{"site": {"S": {"cloud": "C", "tier_level": 2}}}', "a")
    >>> b = parse_grid_document('{"S": {"cloud": "C", "tier_level": 3}}', "b")
    >>> [str(p) for p in merge_documents([a, b])[1]]
    ['site["S"]: given in both a and b']
    """
    out: dict[str, list[Any]] = {k: [] for k in ("clouds", "sites", "endpoints", "queues",
                                                  "datasets", "networks", "siteless")}
    seen: dict[tuple[str, str], str] = {}
    problems = []
    for doc in docs:
        source = doc.shapes[0][0] if doc.shapes else "<input>"
        for attr, kind, name_of in _NAMED:
            for record in getattr(doc, attr):
                key = (kind, name_of(record))
                if key in seen:
                    problems.append(GridProblem(f"{kind}[{json.dumps(key[1])}]", "",
                                                f"given in both {seen[key]} and {source}"))
                    continue
                seen[key] = source
                out[attr].append(record)
        out["networks"] += doc.networks
        out["siteless"] += doc.siteless
    shapes = tuple(s for doc in docs for s in doc.shapes)
    return GridDocument(**out, shapes=shapes), problems


_NAMED = (("clouds", "cloud", lambda r: r.name), ("sites", "site", lambda r: r.name),
          ("endpoints", "ddmendpoint", lambda r: r.name.lower()),
          ("queues", "pandaqueue", lambda r: r.name), ("datasets", "dataset", lambda r: r.did))


@dataclass(frozen=True)
class Resolution:
    """The names a document's records use, resolved, and what could not be.

    ``queue_sites`` and ``endpoint_sites`` map each record to its registered
    site; ``endpoint_names`` maps every endpoint name, lower-case, to its
    spelling (RSE names are compared case-insensitively); ``network_sites``
    gives each network its sites; ``unmapped`` says which networks name no
    registered site (counted and reported, not refused).
    """

    problems: list[GridProblem]
    queue_sites: dict[str, str] = field(default_factory=dict)
    endpoint_sites: dict[str, str] = field(default_factory=dict)
    endpoint_names: dict[str, str] = field(default_factory=dict)
    network_sites: list[tuple[Network, tuple[str, ...]]] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)

    def endpoint(self, name: str) -> str:
        """The registered spelling of an endpoint name, however it is cased."""
        return self.endpoint_names.get(name.lower(), name)


class _Sites:
    """Site names as records give them: a site's own name, else its resource centre's."""

    def __init__(self, site_clouds: Mapping[str, str], rc_sites: Mapping[str, str]) -> None:
        self.clouds = site_clouds
        self.by_rc: dict[str, list[str]] = {}
        for site, rc in sorted(rc_sites.items()):
            if rc:
                self.by_rc.setdefault(rc, []).append(site)

    def resolve(self, candidates: Sequence[str]) -> tuple[str | None, str]:
        """(the site, '') or (None, why not)."""
        for name in candidates:
            if name in self.clouds:
                return name, ""
        for name in candidates:
            sites = self.by_rc.get(name, [])
            if len(sites) == 1:
                return sites[0], ""
            if sites:
                return None, (f"resource centre {name!r} has several sites "
                              f"({', '.join(sites)}): name the site")
        others = "".join(f"; nor is {n!r} a site or resource centre" for n in candidates[1:])
        return None, _unknown("site", candidates[0] if candidates else "", self.clouds) + others


def resolve_references(doc: GridDocument, known: KnownNames = KnownNames()) -> Resolution:
    """Resolve every name a record uses against the document and what is registered.

    Problems: an unknown cloud, site or endpoint; a cloud whose Tier-1 is not
    one of its sites; a queue whose cloud (when given) is not its site's; two
    endpoint names equal but for case; a perfSONAR host another site owns.
    A network whose sites are not registered is not a problem: it is
    ``unmapped``. O(r) in the number of records, with set look-ups.
    """
    clouds = set(known.clouds) | {c.name for c in doc.clouds}
    site_clouds = {**known.site_clouds, **{s.name: s.cloud for s in doc.sites}}
    rc_sites = {**known.site_rc_sites, **{s.name: s.rc_site for s in doc.sites if s.rc_site}}
    sites = _Sites(site_clouds, rc_sites)
    problems = [GridProblem(f"site[{json.dumps(s.name)}]", "cloud", _unknown("cloud", s.cloud,
                clouds)) for s in doc.sites if s.cloud not in clouds]
    problems += _tier1_problems(doc, site_clouds)
    names, name_problems = _endpoint_names(doc.endpoints, known.endpoints)
    res = Resolution(problems + name_problems, endpoint_names=names)
    for e in doc.endpoints:
        site, why = sites.resolve(e.site_candidates)
        if site is None:
            res.problems.append(GridProblem(f"ddmendpoint[{json.dumps(e.name)}]",
                                            _site_field(e, ("site", "atlas_site", "rc_site")),
                                            why))
        else:
            res.endpoint_sites[e.name] = site
    for q in doc.queues:
        res.problems.extend(_queue_problems(q, sites, res))
    res.problems.extend(_host_problems(doc.sites, known.hosts))
    for d in doc.datasets:
        res.problems.extend(GridProblem(f'dataset["{d.did}"]', "replicas.rse",
                                        _unknown("storage endpoint", r.rse, names.values()))
                            for r in d.replicas if r.rse.lower() not in names)
    _resolve_networks(doc, sites, res)
    return res


def check_references(doc: GridDocument, known: KnownNames = KnownNames()) -> list[GridProblem]:
    """Every reference problem of a document; see :func:`resolve_references`."""
    return resolve_references(doc, known).problems


def _tier1_problems(doc: GridDocument, site_clouds: Mapping[str, str]) -> list[GridProblem]:
    problems = []
    for c in doc.clouds:
        where = f"cloud[{json.dumps(c.name)}]"
        if c.tier1 not in site_clouds:
            problems.append(GridProblem(where, "tier1", _unknown("site", c.tier1, site_clouds)))
        elif site_clouds[c.tier1] != c.name:
            problems.append(GridProblem(where, "tier1", f"site {c.tier1!r} belongs to cloud "
                                        f"{site_clouds[c.tier1]!r}, not {c.name!r}"))
    return problems


def _endpoint_names(records: Sequence[EndpointRecord], registered: Iterable[str]
                    ) -> tuple[dict[str, str], list[GridProblem]]:
    """lower-case name -> spelling, and the names that differ from another only in case."""
    names: dict[str, str] = {}
    for name in sorted(registered):
        names.setdefault(name.lower(), name)
    problems = []
    spelt: dict[str, str] = {}
    for e in records:
        lower = e.name.lower()
        other = spelt.get(lower) or names.get(lower)
        if other is not None and other != e.name:
            where = "in the document" if lower in spelt else "registered"
            problems.append(GridProblem(f"ddmendpoint[{json.dumps(e.name)}]", "name",
                                        f"differs only in case from {other!r} ({where}); "
                                        "RSE names are compared case-insensitively"))
            continue
        spelt[lower] = names[lower] = e.name
    return names, problems


def _queue_problems(q: QueueRecord, sites: _Sites, res: Resolution) -> list[GridProblem]:
    where = f"pandaqueue[{json.dumps(q.name)}]"
    site, why = sites.resolve(q.site_candidates)
    if site is None:
        return [GridProblem(where, _site_field(q, ("atlas_site", "site", "rc_site")), why)]
    res.queue_sites[q.name] = site
    problems = []
    if q.cloud is not None and q.cloud != sites.clouds[site]:
        problems.append(GridProblem(where, "cloud", f"{q.cloud!r} but its site {site!r} is "
                                    f"in cloud {sites.clouds[site]!r}"))
    for role, names in (q.astorages or {}).items():
        problems += [GridProblem(where, f"astorages.{role}",
                                 _unknown("storage endpoint", n, res.endpoint_names.values()))
                     for n in names if n.lower() not in res.endpoint_names]
    return problems


def _site_field(record: Any, fields: Sequence[str]) -> str:
    """The first of ``fields`` the record gave: where an unknown site is reported."""
    return next((f for f in fields if getattr(record, f)), fields[0])


def _resolve_networks(doc: GridDocument, sites: _Sites, res: Resolution) -> None:
    """Each network's registered sites; the rest is unmapped, with the reason."""
    res.unmapped.extend(f"netsite[{json.dumps(n)}]: names no site" for n in doc.siteless)
    missed: dict[str, set[str]] = {}
    for net in doc.networks:
        found = []
        for name in net.sites:
            site, _ = sites.resolve([name])
            if site is None:
                missed.setdefault(net.netroute, set()).add(name)
            else:
                found.append(site)
        if found:
            res.network_sites.append((net, tuple(dict.fromkeys(found))))
    res.unmapped.extend(f"netsite[{json.dumps(route)}]: site {', '.join(map(repr, sorted(n)))} "
                        "not registered" for route, n in missed.items())


def site_host_pairs(site: SiteRecord) -> set[tuple[str, str]]:
    """The (host, role) pairs a site claims: its domains and perfSONAR hosts, lower-case."""
    return ({(d.lower(), "domain") for d in site.domains}
            | {(h.lower(), "perfsonar") for h in site.perfsonar_hosts})


def _host_problems(doc_sites: list[SiteRecord],
                   known: Mapping[tuple[str, str], str]) -> list[GridProblem]:
    """A perfSONAR host belongs to one site; sites that list hosts replace their own.

    Domains may be shared between sites and are not checked here.
    """
    renewed = {s.name for s in doc_sites if s.gives_hosts}
    owner = {pair: site for pair, site in known.items() if site not in renewed}
    problems = []
    for s in doc_sites:
        for pair in sorted(p for p in site_host_pairs(s) if p[1] == "perfsonar"):
            if pair in owner and owner[pair] != s.name:
                problems.append(GridProblem(f"site[{json.dumps(s.name)}]", "perfsonar_hosts",
                                            f"host {pair[0]!r} already belongs to site "
                                            f"{owner[pair]!r}"))
            owner.setdefault(pair, s.name)
    return problems


def _unknown(kind: str, name: str, known: Iterable[str]) -> str:
    names = sorted(known)
    hint = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    return f"unknown {kind} {name!r}" + (f" (known: {hint})" if names else f" (no {kind}s known)")

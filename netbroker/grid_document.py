"""Grid documents: parse a CRIC-shaped JSON file, check it, or refuse it whole.

A grid document is a JSON object in the shape of ATLAS CRIC's dumps::

    {"cloud":       {"DE": {"tier1": "FZK-LCG2"}},
     "site":        {"FZK-LCG2": {"cloud": "DE", "tier_level": 1, ...}},
     "ddmendpoint": {"FZK-LCG2_DATADISK": {"site": "FZK-LCG2", "type": "DATADISK", ...}},
     "pandaqueue":  {"FZK-LCG2": {"atlas_site": "FZK-LCG2", "corecount": 8, ...}},
     "dataset":     [{"scope": ..., "name": ..., "files": [...], "replicas": [...]}]}

Every section is optional, so a document may carry only queues whose sites
are registered already. Two extensions CRIC does not have: an endpoint's
space (``space_total_bytes``, ``space_free_bytes``) and a queue's
``pilot_slots``.

:func:`parse_grid_document` checks each record on its own (types, ranges,
required fields, duplicate names); :func:`check_references` checks the
names records use against each other and against what is registered. Both
collect every problem, each naming its record and field, before refusing.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from netbroker.datasets import DatasetRecord
from netbroker.errors import GridProblem, InvalidGridDocument
from netbroker.sites import CloudRecord, EndpointRecord, QueueRecord, SiteRecord

__all__ = [
    "GridDocument",
    "KnownNames",
    "check_references",
    "parse_grid_document",
    "site_host_pairs",
]

_KEYED = {"cloud": CloudRecord, "site": SiteRecord, "ddmendpoint": EndpointRecord,
          "pandaqueue": QueueRecord}
# The field holding a record's own name, under the name the document uses.
_NAME_FIELD = {"cloud": "name", "site": "name", "ddmendpoint": "name", "pandaqueue": "nickname"}
SECTIONS = (*_KEYED, "dataset")

R = TypeVar("R", bound=BaseModel)


@dataclass(frozen=True)
class GridDocument:
    """A parsed grid document: every record valid on its own."""

    clouds: list[CloudRecord] = field(default_factory=list)
    sites: list[SiteRecord] = field(default_factory=list)
    endpoints: list[EndpointRecord] = field(default_factory=list)
    queues: list[QueueRecord] = field(default_factory=list)
    datasets: list[DatasetRecord] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Number of records per kind."""
        return {"clouds": len(self.clouds), "sites": len(self.sites),
                "endpoints": len(self.endpoints), "queues": len(self.queues),
                "datasets": len(self.datasets)}


@dataclass(frozen=True)
class KnownNames:
    """What is registered already, which a partial document may refer to.

    ``site_clouds`` maps each registered site to its cloud; ``hosts`` maps
    each registered perfSONAR (host, role) pair to the site that owns it.
    """

    clouds: frozenset[str] = frozenset()
    site_clouds: Mapping[str, str] = field(default_factory=dict)
    endpoints: frozenset[str] = frozenset()
    hosts: Mapping[tuple[str, str], str] = field(default_factory=dict)


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
        The JSON text.
    source : str, optional
        Where it came from (a file name), for messages.

    Returns
    -------
    GridDocument
        The records, in document order.

    Raises
    ------
    InvalidGridDocument
        Not JSON, not an object, an unknown section, a record with a missing
        or invalid field, a key that differs from the record's name, or a
        name given twice. Every problem is listed, each naming its record
        (``site["DESY-HH"]``) and field (``tier_level``).

    Notes
    -----
    O(r) in the number r of records. References between records are
    checked by :func:`check_references`.

    Examples
    --------
    >>> doc = parse_grid_document('{"cloud": {"DE": {"tier1": "FZK-LCG2"}}}')
    >>> doc.clouds[0].name, doc.clouds[0].tier1
    ('DE', 'FZK-LCG2')
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
    problems = [GridProblem("document", k, "unknown section; expected one of "
                            + ", ".join(SECTIONS)) for k in data if k not in SECTIONS]
    problems += [GridProblem("document", k, "section given twice") for k in data.duplicates]
    parsed = {section: _parse_section(section, data.get(section), problems)
              for section in _KEYED}
    datasets = _parse_datasets(data.get("dataset"), problems)
    if problems:
        raise InvalidGridDocument(problems, source)
    return GridDocument(parsed["cloud"], parsed["site"], parsed["ddmendpoint"],
                        parsed["pandaqueue"], datasets)


def _parse_section(section: str, body: Any, problems: list[GridProblem]) -> list[Any]:
    """Validate ``{name: record}``; the key names the record when it omits its name."""
    if body is None:
        return []
    if not isinstance(body, dict):
        problems.append(GridProblem(section, "", "must be an object keyed by name"))
        return []
    model, name_field = _KEYED[section], _NAME_FIELD[section]
    problems += [GridProblem(f"{section}[{json.dumps(k)}]", "", f"duplicate {section} name")
                 for k in getattr(body, "duplicates", [])]
    records = []
    for key, raw in body.items():
        where = f"{section}[{json.dumps(key)}]"
        if not isinstance(raw, dict):
            problems.append(GridProblem(where, "", "must be an object"))
            continue
        if str(raw.get(name_field, key)) != key:
            problems.append(GridProblem(where, name_field,
                                        f"{raw[name_field]!r} differs from its key {key!r}"))
            continue
        record = _validate(model, {**raw, name_field: key}, where, problems)
        if record is not None:
            records.append(record)
    return records


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
            problems.append(GridProblem(where, path, f"{err['msg']}{got}"))
        return None


def check_references(doc: GridDocument, known: KnownNames = KnownNames()) -> list[GridProblem]:
    """Check every name a record uses against the document and what is registered.

    Parameters
    ----------
    doc : GridDocument
        The parsed document.
    known : KnownNames
        Names in the database already.

    Returns
    -------
    list of GridProblem
        Empty when every cloud, site and endpoint referred to exists, each
        cloud's Tier-1 is one of its own sites, and each queue's cloud (when
        given) is its site's cloud.

    Notes
    -----
    O(r) in the number of records, with set look-ups.
    """
    clouds = set(known.clouds) | {c.name for c in doc.clouds}
    site_clouds = {**known.site_clouds, **{s.name: s.cloud for s in doc.sites}}
    endpoints = set(known.endpoints) | {e.name for e in doc.endpoints}
    problems = [GridProblem(f"site[{json.dumps(s.name)}]", "cloud", _unknown("cloud", s.cloud,
                clouds)) for s in doc.sites if s.cloud not in clouds]
    for c in doc.clouds:
        where = f"cloud[{json.dumps(c.name)}]"
        if c.tier1 not in site_clouds:
            problems.append(GridProblem(where, "tier1", _unknown("site", c.tier1, site_clouds)))
        elif site_clouds[c.tier1] != c.name:
            problems.append(GridProblem(where, "tier1", f"site {c.tier1!r} belongs to cloud "
                                        f"{site_clouds[c.tier1]!r}, not {c.name!r}"))
    for e in doc.endpoints:
        if e.site not in site_clouds:
            problems.append(GridProblem(f"ddmendpoint[{json.dumps(e.name)}]", "site",
                                        _unknown("site", e.site, site_clouds)))
    for q in doc.queues:
        problems += _queue_problems(q, site_clouds, endpoints)
    problems += _host_problems(doc.sites, known.hosts)
    for d in doc.datasets:
        problems += [GridProblem(f'dataset["{d.did}"]', "replicas.rse",
                                 _unknown("storage endpoint", r.rse, endpoints))
                     for r in d.replicas if r.rse not in endpoints]
    return problems


def _queue_problems(q: QueueRecord, site_clouds: Mapping[str, str],
                    endpoints: set[str]) -> list[GridProblem]:
    where = f"pandaqueue[{json.dumps(q.name)}]"
    if q.site not in site_clouds:
        return [GridProblem(where, "atlas_site", _unknown("site", q.site, site_clouds))]
    problems = []
    if q.cloud is not None and q.cloud != site_clouds[q.site]:
        problems.append(GridProblem(where, "cloud", f"{q.cloud!r} but its site {q.site!r} is "
                                    f"in cloud {site_clouds[q.site]!r}"))
    for role, names in q.astorages.items():
        problems += [GridProblem(where, f"astorages.{role}",
                                 _unknown("storage endpoint", n, endpoints))
                     for n in names if n not in endpoints]
    return problems


def site_host_pairs(site: SiteRecord) -> set[tuple[str, str]]:
    """The (host, role) pairs a site claims: its domains and perfSONAR hosts, lower-case."""
    return ({(d.lower(), "domain") for d in site.domains}
            | {(h.lower(), "perfsonar") for h in site.perfsonar_hosts})


def _host_problems(doc_sites: list[SiteRecord],
                   known: Mapping[tuple[str, str], str]) -> list[GridProblem]:
    """A perfSONAR host belongs to one site; the document's sites replace their own hosts.

    Domains may be shared between sites and are not checked here.
    """
    renewed = {s.name for s in doc_sites}
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

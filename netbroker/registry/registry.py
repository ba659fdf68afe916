"""The grid registry's use cases: import a grid document, read the registry.

Each function opens one transaction, reads what it needs, decides with the
pure functions of ``netbroker.registry.grid_document`` and writes through
``netbroker.db.grid.GridDB``. The API, the CLI and the demo call these.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.resources import files as package_files
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, IntegrityError

from netbroker.common.enums import PROTOCOL_ACTIVITIES, utcnow
from netbroker.common.errors import GridProblem, InvalidGridDocument, UnknownCloud, UnknownSite
from netbroker.db.engine import begin_immediate
from netbroker.db.grid import GridDB, UpsertCount
from netbroker.registry.cric import url_parts, without_token
from netbroker.registry.datasets import DatasetRecord
from netbroker.registry.grid_document import (
    GridDocument,
    KnownNames,
    Resolution,
    merge_documents,
    parse_grid_document,
    resolve_references,
    site_host_pairs,
)
from netbroker.registry.sites import EndpointRecord, QueueRecord

__all__ = [
    "ImportReport",
    "get_site",
    "grid_summary",
    "import_grid_document",
    "import_grid_documents",
    "import_grid_file",
    "import_grid_files",
    "list_clouds",
    "list_queues",
    "list_sites",
    "sample_grid_path",
    "site_clouds",
]


@dataclass(frozen=True)
class ImportReport:
    """What an import did, per kind of record.

    ``shapes`` says what each source was read as (``"pandaqueue dump"``,
    ``"sections: cloud, site"``); ``unmapped`` names the networks not stored
    because no registered site is theirs, and why.
    """

    source: str
    counts: dict[str, UpsertCount] = field(default_factory=dict)
    shapes: dict[str, str] = field(default_factory=dict)
    unmapped: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "shapes": dict(self.shapes),
                "counts": {k: vars(v) for k, v in self.counts.items()},
                "unmapped": list(self.unmapped)}


def sample_grid_path() -> Path:
    """The sample grid shipped with netbroker: 12 clouds, about 150 sites."""
    return Path(str(package_files("netbroker") / "data" / "sample_grid.json"))


def import_grid_file(engine: Engine, path: str | Path) -> ImportReport:
    """Import a grid document from a file; see :func:`import_grid_document`."""
    return import_grid_files(engine, [path])


def import_grid_files(engine: Engine, paths: Sequence[str | Path]) -> ImportReport:
    """Import several files (CRIC dumps, in any order) as one document.

    Raises
    ------
    InvalidGridDocument
        A file cannot be read, or see :func:`import_grid_documents`.
    """
    raws = []
    for path in map(Path, paths):
        try:
            raws.append((path.read_bytes(), str(path)))
        except OSError as exc:
            raise InvalidGridDocument([GridProblem("document", "", f"cannot read: {exc}")],
                                      str(path)) from None
    return import_grid_documents(engine, raws)


def import_grid_document(engine: Engine, raw: str | bytes, source: str = "<input>"
                         ) -> ImportReport:
    """Check a grid document whole, then insert or update its records in one transaction.

    Records already registered under the same name are updated when they
    differ and left alone when equal, so importing the same document twice
    changes nothing the second time. Records not in the document stay, and
    so do the fields a record leaves out (see ``netbroker.registry.sites``).

    Raises
    ------
    InvalidGridDocument
        Any record is invalid or refers to an unknown name; the database is
        left exactly as it was.
    """
    return import_grid_documents(engine, [(raw, source)])


def import_grid_documents(engine: Engine, raws: Sequence[tuple[str | bytes, str]]
                          ) -> ImportReport:
    """Import several documents ``(raw, source)`` as one, in one transaction.

    A record may name a record of another document (a queue the endpoint of
    another file); a name given in two documents is refused.

    Raises
    ------
    InvalidGridDocument
        Any document is not valid on its own, or together they are not; every
        problem of every document is listed and nothing is stored.
    """
    source = ", ".join(src for _, src in raws) or "<input>"
    parts, problems = [], []
    for raw, src in raws:
        try:
            parts.append(parse_grid_document(raw, src))
        except InvalidGridDocument as exc:
            problems += [_in(src, p) for p in exc.problems] if len(raws) > 1 else exc.problems
    if problems:
        raise InvalidGridDocument(problems, source)
    doc, problems = merge_documents(parts)
    if problems:
        raise InvalidGridDocument(problems, source)
    with begin_immediate(engine) as conn:  # reads names, then writes: the lock first
        db = GridDB(conn)
        known = KnownNames(db.cloud_names(), db.site_clouds(), db.endpoint_names(),
                           db.host_owners(), db.site_rc_sites())
        resolved = resolve_references(doc, known)
        if resolved.problems:
            raise InvalidGridDocument(resolved.problems, source)
        try:
            counts = _write(db, doc, known, resolved)
        except (IntegrityError, DataError) as exc:
            # Checked above; reaching this means a rule the checks do not know.
            raise InvalidGridDocument([GridProblem("document", "", "refused by the database: "
                                                   f"{exc.orig}")], source) from None
    return ImportReport(source, counts, dict(doc.shapes), resolved.unmapped)


def _in(source: str, problem: GridProblem) -> GridProblem:
    """A problem of one of several documents, saying which."""
    return GridProblem(f"{source}: {problem.record}", problem.field, problem.message)


def _write(db: GridDB, doc: GridDocument, known: KnownNames, res: Resolution
           ) -> dict[str, UpsertCount]:
    now = utcnow()
    counts = {"clouds": db.upsert_clouds([{"name": c.name, "updated_at": now}
                                           for c in doc.clouds])}
    cloud_ids = db.cloud_ids()
    stored_sites = db.stored_sites([s.name for s in doc.sites])
    counts["sites"] = db.upsert_sites([
        {"name": s.name, "cloud_id": cloud_ids[s.cloud], "tier": s.tier, "country": s.country,
         "status": s.status.value, "is_nucleus": s.is_nucleus, "updated_at": now,
         "rc_site": s.rc_site or stored_sites.get(s.name, {}).get("rc_site")}
        for s in doc.sites])
    site_ids = db.site_ids()
    retargeted = db.set_tier1s({cloud_ids[c.name]: site_ids[c.tier1] for c in doc.clouds})
    # A cloud row holds only its name; a new Tier-1 is what updates an existing cloud.
    moved = sum(1 for c in doc.clouds
                if c.name in known.clouds and cloud_ids[c.name] in retargeted)
    counts["clouds"] += UpsertCount(0, moved, -moved)
    db.replace_site_hosts({site_ids[s.name]: site_host_pairs(s) for s in doc.sites
                           if s.gives_hosts})
    counts.update(_write_endpoints(db, doc.endpoints, site_ids, res, now))
    counts.update(_write_queues(db, doc.queues, site_ids, res, now))
    counts["subnets"] = db.replace_site_subnets(_subnet_rows(res, site_ids))
    counts.update(_write_datasets(db, doc.datasets, res, now))
    return counts


def _write_endpoints(db: GridDB, records: list[EndpointRecord], site_ids: dict[Any, int],
                     res: Resolution, now: Any) -> dict[str, UpsertCount]:
    """Endpoints, and the protocols of those that give them; what a record leaves out stays."""
    stored = db.stored_endpoints([e.name for e in records])
    rows = []
    for e in records:
        old = stored.get(e.name, {})
        url = e.url if e.gives_url else _protocol_url(e) or old.get("url", "")
        rows.append({
            "name": e.name, "site_id": site_ids[res.endpoint_sites[e.name]],
            "endpoint_type": e.endpoint_type, "kind": e.kind, "url": url,
            "host": _host(url), "active": e.active, "updated_at": now,
            "total_bytes": e.total_bytes if e.gives_space else old.get("total_bytes"),
            "free_bytes": e.free_bytes if e.gives_space else old.get("free_bytes")})
    out = {"endpoints": db.upsert_endpoints(rows)}
    ids = db.endpoint_ids()
    out["protocols"] = db.replace_endpoint_protocols({
        ids[e.name]: [_protocol_row(i, p) for i, p in enumerate(e.protocols)]
        for e in records if e.protocols is not None})
    return out


def _protocol_url(e: EndpointRecord) -> str:
    """Where an endpoint without an ``se`` is: its first WAN (the door other sites
    reach) write, else read, protocol; else its first LAN one."""
    for activity in ("write_wan", "read_wan", "write_lan", "read_lan"):
        ranked = sorted((p.priorities[activity], i, p) for i, p in enumerate(e.protocols or ())
                        if p.priorities.get(activity))
        if ranked:
            p = ranked[0][2]
            url = without_token(p.url)
            return (url.rstrip("/") + "/" + p.path.lstrip("/")) if p.path else url
    return ""


def _host(url: str) -> str:
    try:
        return url_parts(url)[1] if url else ""
    except ValueError:
        return ""


def _protocol_row(position: int, p: Any) -> dict[str, Any]:
    scheme, host, port = url_parts(p.url)
    return {"protocol_id": p.protocol_id, "position": position, "url": p.url,
            "scheme": scheme, "host": host, "port": port, "path": p.path,
            "flavour": p.flavour, **{a: p.priorities[a] for a in PROTOCOL_ACTIVITIES}}


def _write_queues(db: GridDB, records: list[QueueRecord], site_ids: dict[Any, int],
                  res: Resolution, now: Any) -> dict[str, UpsertCount]:
    """Queues, and the astorages of those that give them; copy tools and catchall kept
    when not given."""
    stored = db.stored_queues([q.name for q in records])
    out = {"queues": db.upsert_queues([
        {"name": q.name, "site_id": site_ids[res.queue_sites[q.name]],
         "panda_resource": q.panda_resource,
         "queue_type": q.queue_type.value, "status": q.status.value, "cores": q.cores,
         "max_memory_mb": q.max_memory_mb, "max_walltime_s": q.max_walltime_s,
         "max_disk_mb": q.max_disk_mb, "pilot_slots": q.pilot_slots,
         "hs06_per_core": q.hs06_per_core, "updated_at": now,
         "copytools": _json(q.copytools, stored.get(q.name, {}).get("copytools")),
         "acopytools": _json(q.acopytools, stored.get(q.name, {}).get("acopytools")),
         "catchall": q.catchall if q.catchall is not None
         else stored.get(q.name, {}).get("catchall")}
        for q in records])}
    queue_ids, endpoint_ids = db.queue_ids(), db.endpoint_ids()
    out["queue_storages"] = db.replace_queue_storages({
        queue_ids[q.name]: [{"activity": role, "position": i,
                             "endpoint_id": endpoint_ids[res.endpoint(n)]}
                            for role, names in q.astorages.items()
                            for i, n in enumerate(dict.fromkeys(names))]
        for q in records if q.astorages is not None})
    return out


def _json(given: Any, stored: str | None) -> str | None:
    return stored if given is None else json.dumps(given, sort_keys=True)


def _subnet_rows(res: Resolution, site_ids: dict[Any, int]) -> dict[int, list[dict[str, Any]]]:
    """The networks of every site a network record names, each CIDR once per site."""
    rows: dict[int, dict[str, dict[str, Any]]] = {}
    for net, names in res.network_sites:
        for name in names:
            rows.setdefault(site_ids[name], {}).setdefault(
                net.cidr, {"cidr": net.cidr, "family": net.family, "netroute": net.netroute})
    return {sid: list(by_cidr.values()) for sid, by_cidr in rows.items()}


def _write_datasets(db: GridDB, records: list[DatasetRecord], res: Resolution, now: Any
                    ) -> dict[str, UpsertCount]:
    out = {"datasets": db.upsert_datasets([{"scope": d.scope, "name": d.name,
                                            "created_at": now} for d in records])}
    if not records:
        return out
    ids = db.dataset_ids()
    endpoint_ids = db.endpoint_ids()
    out["files"] = db.upsert_files([
        {"dataset_id": ids[(d.scope, d.name)], "name": f.name, "guid": f.guid,
         "bytes": f.bytes, "adler32": f.adler32.lower()}
        for d in records for f in d.files])
    out["replicas"] = db.upsert_replicas([
        {"dataset_id": ids[(d.scope, d.name)], "endpoint_id": endpoint_ids[res.endpoint(r.rse)],
         "state": r.state.value, "updated_at": now}
        for d in records for r in d.replicas])
    return out


def list_clouds(engine: Engine) -> list[dict[str, Any]]:
    """Every cloud with its Tier-1 and number of sites."""
    with engine.connect() as conn:
        return GridDB(conn).list_clouds()


def list_sites(engine: Engine, cloud: str | None = None, tier: int | None = None,
               status: str | None = None) -> list[dict[str, Any]]:
    """Sites, filtered by cloud, tier and status.

    Raises
    ------
    UnknownCloud
        ``cloud`` is given and not registered.
    """
    with engine.connect() as conn:
        db = GridDB(conn)
        if cloud is not None and cloud not in db.cloud_names():
            raise UnknownCloud(cloud)
        return db.list_sites(cloud, tier, status)


def get_site(engine: Engine, name: str) -> dict[str, Any]:
    """One site with its hosts, queues and storage endpoints.

    Raises
    ------
    UnknownSite
    """
    with engine.connect() as conn:
        db = GridDB(conn)
        found = db.list_sites(name=name)
        if not found:
            raise UnknownSite(name)
        return {**found[0], "hosts": db.site_hosts_of(name),
                "queues": db.list_queues(site=name), "endpoints": db.list_endpoints(site=name)}


def list_queues(engine: Engine, site: str | None = None, cloud: str | None = None,
                status: str | None = None) -> list[dict[str, Any]]:
    """Queues, filtered by site, cloud and status.

    Raises
    ------
    UnknownSite, UnknownCloud
        A filter names something not registered.
    """
    with engine.connect() as conn:
        db = GridDB(conn)
        if site is not None and site not in db.site_clouds():
            raise UnknownSite(site)
        if cloud is not None and cloud not in db.cloud_names():
            raise UnknownCloud(cloud)
        return db.list_queues(site, cloud, status)


def site_clouds(engine: Engine) -> dict[str, str]:
    """Map each site name to its cloud's name."""
    with engine.connect() as conn:
        return GridDB(conn).site_clouds()


def grid_summary(engine: Engine) -> dict[str, Any]:
    """Per-cloud summary rows plus the row count of every registry table."""
    with engine.connect() as conn:
        db = GridDB(conn)
        return {"clouds": db.cloud_summary(), "counts": db.table_counts()}


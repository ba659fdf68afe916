"""The grid registry's use cases: import a grid document, read the registry.

Each function opens one transaction, reads what it needs, decides with the
pure functions of ``netbroker.grid_document`` and writes through
``netbroker.db.grid.GridDB``. The API, the CLI and the demo call these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.resources import files as package_files
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from netbroker.datasets import DatasetRecord
from netbroker.db.grid import GridDB, UpsertCount
from netbroker.db.schema import clouds, datasets, endpoints, files, queues, replicas, sites, utcnow
from netbroker.errors import GridProblem, InvalidGridDocument, UnknownCloud, UnknownSite
from netbroker.grid_document import (
    GridDocument,
    KnownNames,
    check_references,
    parse_grid_document,
    site_host_pairs,
)

__all__ = [
    "ImportReport",
    "get_site",
    "grid_summary",
    "import_grid_document",
    "import_grid_file",
    "list_clouds",
    "list_queues",
    "list_sites",
    "sample_grid_path",
    "site_clouds",
]


@dataclass(frozen=True)
class ImportReport:
    """What an import did, per kind of record."""

    source: str
    counts: dict[str, UpsertCount] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source,
                "counts": {k: vars(v) for k, v in self.counts.items()}}


def sample_grid_path() -> Path:
    """The sample grid shipped with netbroker: 12 clouds, about 150 sites."""
    return Path(str(package_files("netbroker") / "data" / "sample_grid.json"))


def import_grid_file(engine: Engine, path: str | Path) -> ImportReport:
    """Import a grid document from a file; see :func:`import_grid_document`."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidGridDocument([GridProblem("document", "", f"cannot read: {exc}")],
                                  str(path)) from None
    return import_grid_document(engine, raw, source=str(path))


def import_grid_document(engine: Engine, raw: str | bytes, source: str = "<input>"
                         ) -> ImportReport:
    """Check a grid document whole, then insert or update its records in one transaction.

    Records already registered under the same name are updated when they
    differ and left alone when equal, so importing the same document twice
    changes nothing the second time. Records not in the document stay.

    Raises
    ------
    InvalidGridDocument
        Any record is invalid or refers to an unknown name; the database is
        left exactly as it was.
    """
    doc = parse_grid_document(raw, source)
    with engine.begin() as conn:
        db = GridDB(conn)
        known = KnownNames(db.cloud_names(), db.site_clouds(), db.endpoint_names(),
                           db.host_owners())
        problems = check_references(doc, known)
        if problems:
            raise InvalidGridDocument(problems, source)
        try:
            counts = _write(db, doc, known)
        except (sa.exc.IntegrityError, sa.exc.DataError) as exc:
            # Checked above; reaching this means a rule the checks do not know.
            raise InvalidGridDocument([GridProblem("document", "", "refused by the database: "
                                                   f"{exc.orig}")], source) from None
    return ImportReport(source, counts)


def _write(db: GridDB, doc: GridDocument, known: KnownNames) -> dict[str, UpsertCount]:
    now = utcnow()
    counts = {"clouds": db.upsert(clouds, [{"name": c.name, "updated_at": now}
                                           for c in doc.clouds])}
    cloud_ids = db.ids(clouds)
    counts["sites"] = db.upsert(sites, [
        {"name": s.name, "cloud_id": cloud_ids[s.cloud], "tier": s.tier, "country": s.country,
         "status": s.status.value, "is_nucleus": s.is_nucleus, "updated_at": now}
        for s in doc.sites])
    site_ids = db.ids(sites)
    retargeted = db.set_tier1s({cloud_ids[c.name]: site_ids[c.tier1] for c in doc.clouds})
    # A cloud row holds only its name; a new Tier-1 is what updates an existing cloud.
    moved = sum(1 for c in doc.clouds
                if c.name in known.clouds and cloud_ids[c.name] in retargeted)
    counts["clouds"] += UpsertCount(0, moved, -moved)
    db.replace_site_hosts({site_ids[s.name]: site_host_pairs(s) for s in doc.sites})
    counts["endpoints"] = db.upsert(endpoints, [
        {"name": e.name, "site_id": site_ids[e.site], "endpoint_type": e.endpoint_type,
         "kind": e.kind, "url": e.url, "host": e.host, "total_bytes": e.total_bytes,
         "free_bytes": e.free_bytes, "active": e.active, "updated_at": now}
        for e in doc.endpoints])
    counts["queues"] = db.upsert(queues, [
        {"name": q.name, "site_id": site_ids[q.site], "panda_resource": q.panda_resource,
         "queue_type": q.queue_type.value, "status": q.status.value, "cores": q.cores,
         "max_memory_mb": q.max_memory_mb, "max_walltime_s": q.max_walltime_s,
         "max_disk_mb": q.max_disk_mb, "pilot_slots": q.pilot_slots,
         "hs06_per_core": q.hs06_per_core, "updated_at": now}
        for q in doc.queues])
    counts.update(_write_datasets(db, doc.datasets, now))
    return counts


def _write_datasets(db: GridDB, records: list[DatasetRecord], now: Any
                    ) -> dict[str, UpsertCount]:
    key = ("scope", "name")
    out = {"datasets": db.upsert(datasets, [{"scope": d.scope, "name": d.name,
                                             "created_at": now} for d in records],
                                 keys=key, volatile=(), keep=("created_at",))}
    if not records:
        return out
    ids = db.ids(datasets, key)
    endpoint_ids = db.ids(endpoints)
    out["files"] = db.upsert(files, [
        {"dataset_id": ids[(d.scope, d.name)], "name": f.name, "guid": f.guid,
         "bytes": f.bytes, "adler32": f.adler32.lower()}
        for d in records for f in d.files], keys=("dataset_id", "name"), volatile=())
    out["replicas"] = db.upsert(replicas, [
        {"dataset_id": ids[(d.scope, d.name)], "endpoint_id": endpoint_ids[r.rse],
         "state": r.state.value, "updated_at": now}
        for d in records for r in d.replicas], keys=("dataset_id", "endpoint_id"))
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


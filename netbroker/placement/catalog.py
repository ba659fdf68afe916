"""The replica catalogue for people: which datasets there are, where each lies, how popular.

:func:`list_datasets` lists datasets with their size and replica counts;
:func:`get_dataset` gives one with its replicas (and, for a dataset jobs
wrote in pieces, how many of its files each endpoint holds), its files,
popularity, the PD2P decisions about it with their DDM state, and the
tasks that read it. The monitor's dataset pages and the CLI read these.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from netbroker.common.errors import UnknownCloud, UnknownDataset
from netbroker.db.catalog import CatalogDB
from netbroker.db.grid import GridDB
from netbroker.placement import pd2p
from netbroker.registry.datasets import did

__all__ = ["get_dataset", "list_datasets", "split_did"]


def split_did(name: str) -> tuple[str, str]:
    """``scope:name`` as (scope, name). Raises ``UnknownDataset`` when it is not one.

    >>> split_did("data23:data23.AOD")
    ('data23', 'data23.AOD')
    """
    scope, colon, rest = name.partition(":")
    if not colon or not scope or not rest:
        raise UnknownDataset(name)
    return scope, rest


def list_datasets(engine: Engine, contains: str | None = None, cloud: str | None = None,
                  limit: int = 500) -> list[dict[str, Any]]:
    """Datasets by scope and name, with ``did``, files, bytes and replicas (available,
    all); ``contains`` a piece of the ``scope:name``, ``cloud`` only those on disk or
    tape at one of the cloud's registered sites. Raises ``UnknownCloud``."""
    with engine.connect() as conn:
        site_ids = None
        if cloud is not None:
            grid = GridDB(conn)
            if cloud not in grid.cloud_names():
                raise UnknownCloud(cloud)
            ids = grid.site_ids()
            site_ids = [ids[s["name"]] for s in grid.list_sites(cloud=cloud)]
        rows = CatalogDB(conn).datasets(contains, site_ids, limit)
    return [{**r, "did": did(r["scope"], r["name"])} for r in rows]


def get_dataset(engine: Engine, name: str, max_files: int = 200) -> dict[str, Any]:
    """One dataset (``scope:name``): its size, replicas, first ``max_files`` files,
    popularity, PD2P decisions and reading tasks. Raises ``UnknownDataset``."""
    scope, rest = split_did(name)
    with engine.connect() as conn:
        db = CatalogDB(conn)
        row = db.dataset(scope, rest)
        if row is None:
            raise UnknownDataset(name)
        n_files, nbytes = db.size(row["id"])
        replicas = db.replicas(row["id"])
        files = db.files(row["id"], max_files)
        decisions = db.decisions(row["id"])
        readers = db.readers(row["id"])
    return {"did": did(scope, rest), "scope": scope, "name": rest,
            "created_at": row["created_at"], "files": n_files, "bytes": nbytes,
            "replicas": replicas, "file_list": files, "decisions": decisions,
            "tasks": readers, "popularity": pd2p.popularity(engine, did(scope, rest))[0]}

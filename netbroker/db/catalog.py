"""CatalogDB: the replica catalogue as people read it, on one open connection.

Datasets with their size and replicas, one dataset's files, replicas (with
how many of its files each endpoint holds), the PD2P decisions about it and
the tasks that read it. Writes to the catalogue live with their use cases
(``GridDB`` imports, ``TaskDB`` job outputs, ``Pd2pDB`` PD2P replicas).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from netbroker.common.enums import ReplicaState
from netbroker.db.schema import (
    clouds,
    datasets,
    endpoints,
    file_replicas,
    files,
    replicas,
    replication_decisions,
    sites,
    tasks,
)

__all__ = ["CatalogDB"]


class CatalogDB:
    """Reads ``datasets``, ``files``, ``replicas``, ``file_replicas`` and the decisions."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def datasets(self, contains: str | None = None, site_ids: Collection[int] | None = None,
                 limit: int = 500) -> list[dict[str, Any]]:
        """Datasets by scope and name: files, bytes, available and pending replicas.

        ``contains``: a piece of the ``scope:name``; ``site_ids``: only datasets with
        an available replica at one of those sites.
        """
        sizes = (sa.select(files.c.dataset_id, sa.func.count().label("files"),
                           sa.cast(sa.func.sum(files.c.bytes), sa.BigInteger).label("bytes"))
                 .group_by(files.c.dataset_id).subquery())
        available = sa.cast(sa.func.sum(sa.case((replicas.c.state == ReplicaState.AVAILABLE,
                                                 1), else_=0)), sa.Integer)
        held = (sa.select(replicas.c.dataset_id, available.label("available"),
                          sa.func.count().label("replicas"))
                .group_by(replicas.c.dataset_id).subquery())
        stmt = (sa.select(datasets.c.id, datasets.c.scope, datasets.c.name,
                          datasets.c.created_at,
                          sa.func.coalesce(sizes.c.files, 0).label("files"),
                          sa.func.coalesce(sizes.c.bytes, 0).label("bytes"),
                          sa.func.coalesce(held.c.available, 0).label("available"),
                          sa.func.coalesce(held.c.replicas, 0).label("replicas"))
                .outerjoin(sizes, sizes.c.dataset_id == datasets.c.id)
                .outerjoin(held, held.c.dataset_id == datasets.c.id)
                .order_by(datasets.c.scope, datasets.c.name).limit(limit))
        if contains:
            pattern = "%" + contains.replace("\\", "\\\\").replace("%", "\\%").replace(
                "_", "\\_") + "%"
            stmt = stmt.where((datasets.c.scope + ":" + datasets.c.name).like(pattern,
                                                                              escape="\\"))
        if site_ids is not None:
            at = (sa.select(replicas.c.dataset_id)
                  .join(endpoints, replicas.c.endpoint_id == endpoints.c.id)
                  .where(endpoints.c.site_id.in_(list(site_ids)),
                         replicas.c.state == ReplicaState.AVAILABLE))
            stmt = stmt.where(datasets.c.id.in_(at))
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

    def dataset(self, scope: str, name: str) -> dict[str, Any] | None:
        row = self.conn.execute(sa.select(datasets).where(
            datasets.c.scope == scope, datasets.c.name == name)).mappings().first()
        return dict(row) if row is not None else None

    def size(self, dataset_id: int) -> tuple[int, int]:
        """The dataset's files and their bytes."""
        files_n, nbytes = self.conn.execute(
            sa.select(sa.func.count(), sa.cast(sa.func.coalesce(sa.func.sum(files.c.bytes), 0),
                                               sa.BigInteger))
            .where(files.c.dataset_id == dataset_id)).one()
        return int(files_n), int(nbytes)

    def replicas(self, dataset_id: int) -> list[dict[str, Any]]:
        """The dataset's replicas: endpoint, its site and cloud, kind, state, origin,
        expiry, and the files of the dataset reported written there (``copies``)."""
        copies = (sa.select(file_replicas.c.endpoint_id, sa.func.count().label("copies"))
                  .join(files, files.c.id == file_replicas.c.file_id)
                  .where(files.c.dataset_id == dataset_id)
                  .group_by(file_replicas.c.endpoint_id).subquery())
        stmt = (sa.select(endpoints.c.name.label("endpoint"), sites.c.name.label("site"),
                          clouds.c.name.label("cloud"), endpoints.c.kind, replicas.c.state,
                          replicas.c.origin, replicas.c.expires_at, replicas.c.updated_at,
                          sa.func.coalesce(copies.c.copies, 0).label("copies"))
                .join(endpoints, replicas.c.endpoint_id == endpoints.c.id)
                .join(sites, endpoints.c.site_id == sites.c.id)
                .join(clouds, sites.c.cloud_id == clouds.c.id)
                .outerjoin(copies, copies.c.endpoint_id == endpoints.c.id)
                .where(replicas.c.dataset_id == dataset_id)
                .order_by(replicas.c.state, endpoints.c.name))
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

    def files(self, dataset_id: int, limit: int) -> list[dict[str, Any]]:
        """The dataset's files by name, with the copies reported of each."""
        copies = (sa.select(file_replicas.c.file_id, sa.func.count().label("copies"))
                  .group_by(file_replicas.c.file_id).subquery())
        stmt = (sa.select(files.c.name, files.c.bytes, files.c.adler32, files.c.guid,
                          sa.func.coalesce(copies.c.copies, 0).label("copies"))
                .outerjoin(copies, copies.c.file_id == files.c.id)
                .where(files.c.dataset_id == dataset_id).order_by(files.c.name).limit(limit))
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

    def decisions(self, dataset_id: int) -> list[dict[str, Any]]:
        """PD2P's decisions about the dataset, newest first, with their target."""
        d = replication_decisions
        stmt = (sa.select(d.c.id, d.c.state, d.c.bytes, d.c.reason, d.c.failure_reason,
                          d.c.created_at, d.c.updated_at, d.c.expires_at,
                          endpoints.c.name.label("target"))
                .join(endpoints, d.c.target_endpoint_id == endpoints.c.id)
                .where(d.c.dataset_id == dataset_id).order_by(d.c.id.desc()))
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

    def readers(self, dataset_id: int) -> list[dict[str, Any]]:
        """The tasks whose input the dataset is, newest first."""
        stmt = (sa.select(tasks.c.id, tasks.c.name, tasks.c.user_name, tasks.c.status,
                          tasks.c.created_at)
                .where(tasks.c.dataset_id == dataset_id).order_by(tasks.c.id.desc()))
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

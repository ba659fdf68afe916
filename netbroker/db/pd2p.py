"""Pd2pDB: dataset accesses, replication decisions and PD2P's replicas, on one connection.

Decisions are the DDM teams' feed, read by id cursor: a reader must never
see id N+1 committed while N is still to come. So decisions are only ever
inserted under a table lock that other writers of decisions wait for (on
PostgreSQL ``SHARE ROW EXCLUSIVE``, which readers do not notice; on SQLite
the writer's ``BEGIN IMMEDIATE``): ids are handed out and committed in order.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from netbroker.common.enums import ReplicaState
from netbroker.db.jobs import WAITING
from netbroker.db.schema import (
    dataset_accesses,
    datasets,
    endpoints,
    files,
    jobs,
    queues,
    replicas,
    replication_decisions,
    sites,
    tasks,
)

__all__ = ["OPEN_STATES", "Pd2pDB"]

OPEN_STATES = ("new", "acknowledged")
D = replication_decisions


class Pd2pDB:
    """Reads and writes ``dataset_accesses``, ``replication_decisions`` and PD2P replicas."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # --- popularity --------------------------------------------------------------------
    def record_accesses(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self.conn.execute(sa.insert(dataset_accesses), list(rows))

    def popularity(self, day: datetime, week: datetime,
                   dataset_ids: Collection[int] | None = None) -> pd.DataFrame:
        """Per dataset: jobs brokered on it in the last day and week, distinct users in
        the week. Columns ``dataset_id, accesses_1d, accesses_1w, users_1w``."""
        a = dataset_accesses
        stmt = (sa.select(a.c.dataset_id,
                          sa.func.sum(sa.case((a.c.at >= day, a.c.jobs), else_=0))
                          .label("accesses_1d"),
                          sa.func.sum(a.c.jobs).label("accesses_1w"),
                          sa.func.count(sa.distinct(a.c.user_name)).label("users_1w"))
                .where(a.c.at >= week).group_by(a.c.dataset_id))
        if dataset_ids is not None:
            stmt = stmt.where(a.c.dataset_id.in_(list(dataset_ids)))
        result = self.conn.execute(stmt)
        return pd.DataFrame(result.fetchall(), columns=list(result.keys()))

    def waiting_jobs(self, dataset_ids: Collection[int] | None = None) -> dict[int, int]:
        """Waiting (defined, assigned, activated) jobs per input dataset."""
        stmt = (sa.select(tasks.c.dataset_id, sa.func.count())
                .join(jobs, jobs.c.task_id == tasks.c.id)
                .where(jobs.c.status.in_(list(WAITING))).group_by(tasks.c.dataset_id))
        if dataset_ids is not None:
            stmt = stmt.where(tasks.c.dataset_id.in_(list(dataset_ids)))
        return dict(self.conn.execute(stmt).all())  # type: ignore[arg-type]

    def datasets(self, dataset_ids: Collection[int]) -> dict[int, dict[str, Any]]:
        """Scope, name and total bytes of the given datasets."""
        stmt = (sa.select(datasets.c.id, datasets.c.scope, datasets.c.name,
                          sa.func.coalesce(sa.func.sum(files.c.bytes), 0).label("bytes"))
                .outerjoin(files, files.c.dataset_id == datasets.c.id)
                .where(datasets.c.id.in_(list(dataset_ids)))
                .group_by(datasets.c.id, datasets.c.scope, datasets.c.name))
        # PostgreSQL sums BIGINT to NUMERIC: back to int
        return {r["id"]: {**r, "bytes": int(r["bytes"])}
                for r in self.conn.execute(stmt).mappings()}

    def dataset_id(self, scope: str, name: str) -> int | None:
        return self.conn.execute(sa.select(datasets.c.id).where(
            datasets.c.scope == scope, datasets.c.name == name)).scalar()

    def replicas_of(self, dataset_ids: Collection[int]) -> list[dict[str, Any]]:
        """Every replica of the datasets with its endpoint's kind, site and activity."""
        stmt = (sa.select(replicas.c.dataset_id, replicas.c.endpoint_id, replicas.c.state,
                          endpoints.c.kind, endpoints.c.site_id, endpoints.c.active,
                          endpoints.c.name.label("endpoint"))
                .join(endpoints, replicas.c.endpoint_id == endpoints.c.id)
                .where(replicas.c.dataset_id.in_(list(dataset_ids))))
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

    def endpoints(self) -> pd.DataFrame:
        """Every endpoint with its site's status and tier.

        Columns ``id, name, site_id, kind, active, free_bytes, site_status, tier``.
        """
        stmt = (sa.select(endpoints.c.id, endpoints.c.name, endpoints.c.site_id,
                          endpoints.c.kind, endpoints.c.active, endpoints.c.free_bytes,
                          sites.c.status.label("site_status"), sites.c.tier)
                .join(sites, endpoints.c.site_id == sites.c.id).order_by(endpoints.c.id))
        result = self.conn.execute(stmt)
        return pd.DataFrame(result.fetchall(), columns=list(result.keys()))

    def free_slots_by_site(self) -> dict[int, int]:
        """Free pilot slots of each site's online queues (slots less jobs queued or held)."""
        busy = (sa.select(jobs.c.queue_id, sa.func.count().label("n"))
                .where(jobs.c.status.in_(["assigned", "activated", "sent", "starting",
                                          "running", "transferring"]))
                .group_by(jobs.c.queue_id).subquery())
        stmt = (sa.select(queues.c.site_id,
                          sa.func.sum(queues.c.pilot_slots - sa.func.coalesce(busy.c.n, 0)))
                .outerjoin(busy, busy.c.queue_id == queues.c.id)
                .where(queues.c.status == "online").group_by(queues.c.site_id))
        return {s: max(0, int(n or 0)) for s, n in self.conn.execute(stmt)}

    # --- decisions ---------------------------------------------------------------------
    def decided(self, dataset_ids: Collection[int], cooldown_since: datetime
                ) -> dict[int, str]:
        """Datasets with an open decision ("open") or one failed or expired since
        ``cooldown_since`` ("cooldown")."""
        stmt = (sa.select(D.c.dataset_id, D.c.state, D.c.updated_at)
                .where(D.c.dataset_id.in_(list(dataset_ids)),
                       sa.or_(D.c.state.in_(OPEN_STATES),
                              sa.and_(D.c.state.in_(("failed", "expired")),
                                      D.c.updated_at >= cooldown_since))))
        out: dict[int, str] = {}
        for dataset_id, state, _ in self.conn.execute(stmt):
            if state in OPEN_STATES or dataset_id not in out:
                out[dataset_id] = "open" if state in OPEN_STATES else "cooldown"
        return out

    def failed_targets(self, dataset_ids: Collection[int]) -> dict[int, set[int]]:
        """Endpoints where a decision for the dataset failed: not tried again."""
        stmt = sa.select(D.c.dataset_id, D.c.target_endpoint_id).where(
            D.c.dataset_id.in_(list(dataset_ids)), D.c.state == "failed")
        out: dict[int, set[int]] = {}
        for d, e in self.conn.execute(stmt):
            out.setdefault(d, set()).add(e)
        return out

    def reserved_bytes(self) -> dict[int, int]:
        """Bytes promised to each endpoint by open decisions."""
        stmt = (sa.select(D.c.target_endpoint_id, sa.func.sum(D.c.bytes))
                .where(D.c.state.in_(OPEN_STATES)).group_by(D.c.target_endpoint_id))
        return {e: int(b) for e, b in self.conn.execute(stmt)}

    def bytes_sent_by_site(self, since: datetime) -> dict[int, int]:
        """Bytes of decisions created since ``since`` per target site (failed ones excluded)."""
        stmt = (sa.select(endpoints.c.site_id, sa.func.sum(D.c.bytes))
                .join(endpoints, D.c.target_endpoint_id == endpoints.c.id)
                .where(D.c.created_at >= since, D.c.state != "failed")
                .group_by(endpoints.c.site_id))
        return {s: int(b) for s, b in self.conn.execute(stmt)}

    def decisions_since(self, since: datetime) -> int:
        return int(self.conn.execute(sa.select(sa.func.count()).where(
            D.c.created_at >= since)).scalar_one())

    def add_decisions(self, rows: Sequence[dict[str, Any]]) -> list[int]:
        """Insert decisions in id order under the feed's lock (see the module docstring)."""
        if not rows:
            return []
        if self.conn.dialect.name == "postgresql":
            self.conn.exec_driver_sql(
                "LOCK TABLE replication_decisions IN SHARE ROW EXCLUSIVE MODE")
        return [r[0] for r in self.conn.execute(
            sa.insert(D).returning(D.c.id, sort_by_parameter_order=True), list(rows))]

    def _select(self) -> sa.Select[Any]:
        return (sa.select(D, datasets.c.scope, datasets.c.name.label("dataset_name"),
                          endpoints.c.name.label("target"))
                .join(datasets, D.c.dataset_id == datasets.c.id)
                .join(endpoints, D.c.target_endpoint_id == endpoints.c.id))

    def feed(self, after: int, limit: int) -> list[dict[str, Any]]:
        """Decisions with an id above ``after``, in id order, at most ``limit``."""
        stmt = self._select().where(D.c.id > after).order_by(D.c.id).limit(limit)
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

    def latest(self, limit: int) -> list[dict[str, Any]]:
        """The ``limit`` newest decisions, newest first."""
        stmt = self._select().order_by(D.c.id.desc()).limit(limit)
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

    def decision(self, decision_id: int) -> dict[str, Any] | None:
        row = self.conn.execute(self._select().where(D.c.id == decision_id)).mappings().first()
        return dict(row) if row is not None else None

    def set_state(self, decision_id: int, sources: Collection[str], state: str, now: datetime,
                  **values: Any) -> bool:
        """Move a decision to ``state`` if it is in one of ``sources``."""
        result = self.conn.execute(
            sa.update(D).where(D.c.id == decision_id, D.c.state.in_(list(sources)))
            .values(state=state, updated_at=now, **values))
        return result.rowcount == 1

    def expire(self, now: datetime) -> list[int]:
        """Open decisions past their expiry become expired; returns their ids."""
        return list(self.conn.execute(
            sa.update(D).where(D.c.state.in_(OPEN_STATES), D.c.expires_at < now)
            .values(state="expired", updated_at=now).returning(D.c.id)).scalars())

    # --- replicas ----------------------------------------------------------------------
    def add_replica(self, dataset_id: int, endpoint_id: int, expires_at: datetime,
                    now: datetime) -> None:
        """Make an available PD2P replica (an existing row becomes available)."""
        exists = self.conn.execute(sa.select(replicas.c.state).where(
            replicas.c.dataset_id == dataset_id, replicas.c.endpoint_id == endpoint_id)).first()
        values = {"state": ReplicaState.AVAILABLE, "updated_at": now, "origin": "pd2p",
                  "expires_at": expires_at}
        if exists is None:
            self.conn.execute(sa.insert(replicas).values(dataset_id=dataset_id,
                                                         endpoint_id=endpoint_id, **values))
        else:
            self.conn.execute(sa.update(replicas).where(
                replicas.c.dataset_id == dataset_id, replicas.c.endpoint_id == endpoint_id)
                .values(**values))

    def pd2p_replicas(self) -> list[dict[str, Any]]:
        """Replicas PD2P made, with their dataset and endpoint names."""
        stmt = (sa.select(replicas.c.dataset_id, replicas.c.expires_at, datasets.c.scope,
                          datasets.c.name.label("dataset_name"),
                          endpoints.c.name.label("endpoint"))
                .join(datasets, replicas.c.dataset_id == datasets.c.id)
                .join(endpoints, replicas.c.endpoint_id == endpoints.c.id)
                .where(replicas.c.origin == "pd2p").order_by(replicas.c.expires_at))
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

    def use_space(self, endpoint_id: int, nbytes: int) -> None:
        """Take ``nbytes`` off an endpoint's free space (never below zero; unknown stays)."""
        free = endpoints.c.free_bytes
        self.conn.execute(sa.update(endpoints).where(endpoints.c.id == endpoint_id,
                                                     free.is_not(None)).values(
            free_bytes=sa.case((free > nbytes, free - nbytes), else_=0)))

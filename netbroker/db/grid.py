"""GridDB: reads and writes the grid registry tables on one open connection.

The caller opens the transaction (``with engine.begin() as conn``) and hands
the connection in; every method here runs inside it, so an import either
lands whole or not at all. Rows go in and come out as plain dicts. The
reads at the end (:meth:`GridDB.queue_description`, :meth:`GridDB.ddm_endpoints`)
give what the pilot's queue description and storage list are made of.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from netbroker.db.filters import where_given
from netbroker.db.schema import (
    clouds,
    datasets,
    endpoint_protocols,
    endpoints,
    files,
    queue_storages,
    queues,
    replicas,
    site_hosts,
    site_subnets,
    sites,
)

__all__ = ["GridDB", "UpsertCount"]

_CHUNK = 500


@dataclass(frozen=True)
class UpsertCount:
    """How many rows a write inserted, changed, found already equal, and deleted."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0

    def __add__(self, other: UpsertCount) -> UpsertCount:
        return UpsertCount(self.inserted + other.inserted, self.updated + other.updated,
                           self.unchanged + other.unchanged, self.deleted + other.deleted)


class GridDB:
    """The grid registry's storage: clouds, sites, hosts, queues, endpoints, datasets."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # -- writes ---------------------------------------------------------------

    def upsert(
        self,
        table: sa.Table,
        rows: Sequence[Mapping[str, Any]],
        keys: Sequence[str] = ("name",),
        volatile: Collection[str] = ("updated_at",),
        keep: Collection[str] = (),
    ) -> UpsertCount:
        """Insert new rows and update changed ones, matched on ``keys``.

        Parameters
        ----------
        table : Table
        rows : sequence of mappings
            Every row has the same columns, ``keys`` included.
        keys : sequence of str
            The natural key columns.
        volatile : collection of str
            Columns written but not compared (timestamps), so re-writing
            equal data counts as unchanged.
        keep : collection of str
            Columns written on insert only (``created_at``).

        Notes
        -----
        Two queries per 500 rows to read, then one executemany insert and one
        executemany update: O(n) rows moved.
        """
        if not rows:
            return UpsertCount()
        existing = self._existing(table, keys, [tuple(r[k] for k in keys) for r in rows])
        compared = [c for c in rows[0] if c not in keys and c not in volatile and c not in keep]
        new, changed, same = [], [], 0
        for row in rows:
            old = existing.get(tuple(row[k] for k in keys))
            if old is None:
                new.append(dict(row))
            elif any(old[c] != row[c] for c in compared):
                changed.append(dict(row))
            else:
                same += 1
        if new:
            self.conn.execute(sa.insert(table), new)
        if changed:
            self._update(table, keys, [c for c in rows[0] if c not in keys and c not in keep],
                         changed)
        return UpsertCount(len(new), len(changed), same)

    def _existing(self, table: sa.Table, keys: Sequence[str],
                  wanted: list[tuple[Any, ...]]) -> dict[tuple[Any, ...], Mapping[str, Any]]:
        cols = [table.c[k] for k in keys]
        found: dict[tuple[Any, ...], Any] = {}  # row mappings
        for i in range(0, len(wanted), _CHUNK):
            chunk = wanted[i:i + _CHUNK]
            cond = (cols[0].in_([w[0] for w in chunk]) if len(cols) == 1
                    else sa.tuple_(*cols).in_(chunk))
            for row in self.conn.execute(sa.select(table).where(cond)).mappings():
                found[tuple(row[k] for k in keys)] = row
        return found

    def _update(self, table: sa.Table, keys: Sequence[str], columns: Sequence[str],
                rows: list[dict[str, Any]]) -> None:
        stmt = (sa.update(table)
                .where(*[table.c[k] == sa.bindparam(f"k_{k}") for k in keys])
                .values({c: sa.bindparam(c) for c in columns}))
        params = [{**{c: r[c] for c in columns}, **{f"k_{k}": r[k] for k in keys}}
                  for r in rows]
        self.conn.execute(stmt, params)

    def rows_by_name(self, table: sa.Table, names: Collection[str]) -> dict[str, dict[str, Any]]:
        """The stored rows of ``table`` with these names (what a record leaves out keeps)."""
        found = self._existing(table, ("name",), [(n,) for n in names])
        return {key[0]: dict(row) for key, row in found.items()}

    def replace_owned(self, table: sa.Table, owner: str,
                      rows_by_owner: Mapping[int, Sequence[Mapping[str, Any]]],
                      keys: Sequence[str]) -> UpsertCount:
        """Make the rows of each owner (an endpoint's protocols, a site's subnets) exactly these.

        Rows are matched on ``keys`` within their owner; only what differs is
        deleted and inserted, so writing the same rows again changes nothing.
        Owners not in ``rows_by_owner`` keep theirs. O(n) rows, a query per
        500 owners to read, one executemany each to delete and insert.
        """
        if not rows_by_owner:
            return UpsertCount()
        key_cols = [owner, *keys]
        old: dict[tuple[Any, ...], dict[str, Any]] = {}
        owners = list(rows_by_owner)
        for i in range(0, len(owners), _CHUNK):
            stmt = sa.select(table).where(table.c[owner].in_(owners[i:i + _CHUNK]))
            for found in self.conn.execute(stmt).mappings():
                old[tuple(found[k] for k in key_cols)] = dict(found)
        new: dict[tuple[Any, ...], dict[str, Any]] = {}
        for o, rows in rows_by_owner.items():
            for r in rows:
                row = {**r, owner: o}
                new[tuple(row[k] for k in key_cols)] = row
        added = [k for k in new if k not in old]
        changed = [k for k in new if k in old and any(old[k][c] != v for c, v in new[k].items())]
        gone = [k for k in old if k not in new]
        if gone or changed:
            drop = sa.delete(table).where(*[table.c[k] == sa.bindparam(f"k_{k}")
                                            for k in key_cols])
            self.conn.execute(drop, [{f"k_{c}": v for c, v in zip(key_cols, k, strict=True)}
                                     for k in (*gone, *changed)])
        if added or changed:
            self.conn.execute(sa.insert(table), [new[k] for k in (*changed, *added)])
        return UpsertCount(len(added), len(changed), len(new) - len(added) - len(changed),
                           len(gone))

    def ids(self, table: sa.Table, keys: Sequence[str] = ("name",)) -> dict[Any, int]:
        """Map natural key -> id for every row of ``table`` (a bare value for one key)."""
        cols = [table.c[k] for k in keys]
        result = self.conn.execute(sa.select(table.c.id, *cols))
        if len(keys) == 1:
            return {row[1]: row[0] for row in result}
        return {tuple(row[1:]): row[0] for row in result}

    def cloud_ids(self) -> dict[str, int]:
        """Map every cloud's name to its id."""
        return self.ids(clouds)

    def site_ids(self) -> dict[str, int]:
        """Map every site's name to its id."""
        return self.ids(sites)

    def queue_ids(self) -> dict[str, int]:
        """Map every queue's name to its id."""
        return self.ids(queues)

    def endpoint_ids(self) -> dict[str, int]:
        """Map every storage endpoint's (RSE's) name to its id."""
        return self.ids(endpoints)

    def dataset_ids(self) -> dict[tuple[str, str], int]:
        """Map every dataset's (scope, name) to its id."""
        return self.ids(datasets, ("scope", "name"))

    # The registry import's writes, one per table, over :meth:`upsert` and
    # :meth:`replace_owned`.

    def stored_sites(self, names: Collection[str]) -> dict[str, dict[str, Any]]:
        """The stored rows of the sites with these names."""
        return self.rows_by_name(sites, names)

    def stored_endpoints(self, names: Collection[str]) -> dict[str, dict[str, Any]]:
        """The stored rows of the storage endpoints with these names."""
        return self.rows_by_name(endpoints, names)

    def stored_queues(self, names: Collection[str]) -> dict[str, dict[str, Any]]:
        """The stored rows of the queues with these names."""
        return self.rows_by_name(queues, names)

    def upsert_clouds(self, rows: Sequence[Mapping[str, Any]]) -> UpsertCount:
        """Insert or update cloud rows by name; returns what changed."""
        return self.upsert(clouds, rows)

    def upsert_sites(self, rows: Sequence[Mapping[str, Any]]) -> UpsertCount:
        """Insert or update site rows by name; returns what changed."""
        return self.upsert(sites, rows)

    def upsert_endpoints(self, rows: Sequence[Mapping[str, Any]]) -> UpsertCount:
        """Insert or update storage endpoint rows by name; returns what changed."""
        return self.upsert(endpoints, rows)

    def upsert_queues(self, rows: Sequence[Mapping[str, Any]]) -> UpsertCount:
        """Insert or update queue rows by name; returns what changed."""
        return self.upsert(queues, rows)

    def upsert_datasets(self, rows: Sequence[Mapping[str, Any]]) -> UpsertCount:
        """Insert datasets by (scope, name), their creation time kept; returns what changed."""
        return self.upsert(datasets, rows, keys=("scope", "name"), volatile=(),
                           keep=("created_at",))

    def upsert_files(self, rows: Sequence[Mapping[str, Any]]) -> UpsertCount:
        """Insert or update dataset files by (dataset, name); returns what changed."""
        return self.upsert(files, rows, keys=("dataset_id", "name"), volatile=())

    def upsert_replicas(self, rows: Sequence[Mapping[str, Any]]) -> UpsertCount:
        """Insert or update dataset replicas by (dataset, endpoint); returns what changed."""
        return self.upsert(replicas, rows, keys=("dataset_id", "endpoint_id"))

    def replace_endpoint_protocols(self, rows_by_endpoint_id: Mapping[int, Sequence[Mapping[
            str, Any]]]) -> UpsertCount:
        """Make these endpoints' protocols exactly these (by protocol id); returns what changed."""
        return self.replace_owned(endpoint_protocols, "endpoint_id", rows_by_endpoint_id,
                                  ("protocol_id",))

    def replace_queue_storages(self, rows_by_queue_id: Mapping[int, Sequence[Mapping[
            str, Any]]]) -> UpsertCount:
        """Make these queues' astorages exactly these (by activity, position); returns what
        changed."""
        return self.replace_owned(queue_storages, "queue_id", rows_by_queue_id,
                                  ("activity", "position"))

    def replace_site_subnets(self, rows_by_site_id: Mapping[int, Sequence[Mapping[
            str, Any]]]) -> UpsertCount:
        """Make these sites' networks exactly these (by CIDR); returns what changed."""
        return self.replace_owned(site_subnets, "site_id", rows_by_site_id, ("cidr",))

    def set_tier1s(self, tier1_by_cloud_id: Mapping[int, int]) -> set[int]:
        """Point clouds at their Tier-1 sites; returns the ids of clouds that changed."""
        current = dict(self.conn.execute(sa.select(clouds.c.id, clouds.c.tier1_site_id)).all())
        changed = {c for c, s in tier1_by_cloud_id.items() if current.get(c) != s}
        if changed:
            stmt = (sa.update(clouds).where(clouds.c.id == sa.bindparam("cid"))
                    .values(tier1_site_id=sa.bindparam("sid")))
            self.conn.execute(stmt, [{"cid": c, "sid": tier1_by_cloud_id[c]} for c in changed])
        return changed

    def replace_site_hosts(self, hosts_by_site_id: Mapping[int, Iterable[tuple[str, str]]]) -> int:
        """Make the (host, role) pairs of the given sites exactly these; returns rows written."""
        if not hosts_by_site_id:
            return 0
        ids = list(hosts_by_site_id)
        for i in range(0, len(ids), _CHUNK):
            self.conn.execute(sa.delete(site_hosts).where(
                site_hosts.c.site_id.in_(ids[i:i + _CHUNK])))
        rows = [{"host": h, "role": r, "site_id": s}
                for s, pairs in hosts_by_site_id.items() for h, r in pairs]
        if rows:
            self.conn.execute(sa.insert(site_hosts), rows)
        return len(rows)

    # -- reads ----------------------------------------------------------------

    def cloud_names(self) -> frozenset[str]:
        return frozenset(self.conn.execute(sa.select(clouds.c.name)).scalars())

    def site_clouds(self) -> dict[str, str]:
        """Map every site name to its cloud's name."""
        stmt = sa.select(sites.c.name, clouds.c.name).join(clouds, sites.c.cloud_id == clouds.c.id)
        return {s: c for s, c in self.conn.execute(stmt)}

    def endpoint_names(self) -> frozenset[str]:
        return frozenset(self.conn.execute(sa.select(endpoints.c.name)).scalars())

    def host_owners(self, role: str = "perfsonar") -> dict[tuple[str, str], str]:
        """Map (host, role) -> site name for the registered hosts of one role."""
        stmt = (sa.select(site_hosts.c.host, site_hosts.c.role, sites.c.name).join(sites)
                .where(site_hosts.c.role == role))
        return {(h, r): s for h, r, s in self.conn.execute(stmt)}

    def site_rc_sites(self) -> dict[str, str]:
        """Map every site that has one to its resource centre (CRIC's rc_site)."""
        stmt = sa.select(sites.c.name, sites.c.rc_site).where(sites.c.rc_site.is_not(None))
        return {s: rc for s, rc in self.conn.execute(stmt)}

    def site_lookup(self) -> dict[str, dict[str, list[int]]]:
        """Every name that identifies a site, mapped to the site ids it may mean.

        Keys of the result: ``site`` (site names), ``rse`` (endpoint names,
        lower-case: RSE names are compared case-insensitively), ``host``
        (storage endpoint, storage protocol and perfSONAR hosts), ``domain``
        (network domains, which sites may share), ``subnet`` (IPv4/IPv6
        networks in CIDR form). Host names and domains are lower-case.
        """
        out: dict[str, dict[str, list[int]]] = {"site": {}, "rse": {}, "host": {}, "domain": {},
                                                "subnet": {}}
        for name, sid in self.conn.execute(sa.select(sites.c.name, sites.c.id)):
            out["site"].setdefault(name, []).append(sid)
        for name, host, sid in self.conn.execute(
                sa.select(endpoints.c.name, endpoints.c.host, endpoints.c.site_id)):
            out["rse"].setdefault(name.lower(), []).append(sid)
            if host:
                out["host"].setdefault(host.lower(), []).append(sid)
        protocol_hosts = (sa.select(endpoint_protocols.c.host, endpoints.c.site_id).distinct()
                          .join(endpoints)
                          .where(endpoint_protocols.c.host.not_in(["", "localhost"])))
        for host, sid in self.conn.execute(protocol_hosts):
            ids = out["host"].setdefault(host.lower(), [])
            if sid not in ids:
                ids.append(sid)
        for host, role, sid in self.conn.execute(
                sa.select(site_hosts.c.host, site_hosts.c.role, site_hosts.c.site_id)):
            key = "domain" if role == "domain" else "host"
            out[key].setdefault(host.lower(), []).append(sid)
        for cidr, sid in self.conn.execute(sa.select(site_subnets.c.cidr, site_subnets.c.site_id)):
            out["subnet"].setdefault(cidr, []).append(sid)
        return out

    def list_clouds(self) -> list[dict[str, Any]]:
        """Clouds with their Tier-1's name and their number of sites, by name."""
        tier1 = sites.alias("tier1")
        n_sites = (sa.select(sa.func.count()).where(sites.c.cloud_id == clouds.c.id)
                   .scalar_subquery())
        stmt = (sa.select(clouds.c.name, tier1.c.name.label("tier1"), n_sites.label("sites"),
                          clouds.c.updated_at)
                .outerjoin(tier1, clouds.c.tier1_site_id == tier1.c.id)
                .order_by(clouds.c.name))
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

    def list_sites(self, cloud: str | None = None, tier: int | None = None,
                   status: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        """Sites, optionally of one cloud, tier, status or name, ordered by cloud and name."""
        stmt = (sa.select(sites.c.name, clouds.c.name.label("cloud"), sites.c.tier,
                          sites.c.country, sites.c.status, sites.c.is_nucleus,
                          sites.c.updated_at)
                .join(clouds, sites.c.cloud_id == clouds.c.id)
                .order_by(clouds.c.name, sites.c.name))
        stmt = where_given(stmt, {clouds.c.name: cloud, sites.c.tier: tier,
                                  sites.c.status: status, sites.c.name: name})
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

    def site_order(self) -> list[tuple[int, str]]:
        """(id, name) of every site, in :meth:`list_sites`' order: cloud, then name."""
        stmt = (sa.select(sites.c.id, sites.c.name)
                .join(clouds, sites.c.cloud_id == clouds.c.id)
                .order_by(clouds.c.name, sites.c.name))
        return [(int(sid), name) for sid, name in self.conn.execute(stmt)]

    def site_hosts_of(self, site: str) -> list[dict[str, str]]:
        stmt = (sa.select(site_hosts.c.host, site_hosts.c.role).join(sites)
                .where(sites.c.name == site).order_by(site_hosts.c.role, site_hosts.c.host))
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

    def list_queues(self, site: str | None = None, cloud: str | None = None,
                    status: str | None = None) -> list[dict[str, Any]]:
        """Queues with their site and cloud names, ordered by name."""
        cols = [c for c in queues.c if c.name not in ("id", "site_id")]
        stmt = (sa.select(*cols, sites.c.name.label("site"), clouds.c.name.label("cloud"))
                .join(sites, queues.c.site_id == sites.c.id)
                .join(clouds, sites.c.cloud_id == clouds.c.id)
                .order_by(queues.c.name))
        stmt = where_given(stmt, {sites.c.name: site, clouds.c.name: cloud,
                                  queues.c.status: status})
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

    def queue(self, name: str) -> dict[str, Any] | None:
        """One queue (with its id, site and cloud names), or None."""
        cols = [c for c in queues.c if c.name != "site_id"]
        stmt = (sa.select(*cols, sites.c.name.label("site"), clouds.c.name.label("cloud"))
                .join(sites, queues.c.site_id == sites.c.id)
                .join(clouds, sites.c.cloud_id == clouds.c.id).where(queues.c.name == name))
        row = self.conn.execute(stmt).mappings().first()
        return dict(row) if row is not None else None

    def list_endpoints(self, site: str | None = None) -> list[dict[str, Any]]:
        """Storage endpoints with their site name, ordered by name."""
        cols = [c for c in endpoints.c if c.name not in ("id", "site_id")]
        stmt = (sa.select(*cols, sites.c.name.label("site"))
                .join(sites, endpoints.c.site_id == sites.c.id).order_by(endpoints.c.name))
        stmt = where_given(stmt, {sites.c.name: site})
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

    def cloud_summary(self) -> list[dict[str, Any]]:
        """Per cloud: sites by tier, queues, pilot slots and disk bytes (total, free)."""
        out = {c["name"]: {**c, "tiers": {}, "queues": 0, "pilot_slots": 0,
                           "disk_total_bytes": 0, "disk_free_bytes": 0}
               for c in self.list_clouds()}
        by_tier = (sa.select(clouds.c.name, sites.c.tier, sa.func.count())
                   .join(sites, sites.c.cloud_id == clouds.c.id)
                   .group_by(clouds.c.name, sites.c.tier))
        for cloud, tier, n in self.conn.execute(by_tier):
            out[cloud]["tiers"][tier] = n
        q = (sa.select(clouds.c.name, sa.func.count(), sa.func.coalesce(
                sa.func.sum(queues.c.pilot_slots), 0))
             .join(sites, sites.c.cloud_id == clouds.c.id)
             .join(queues, queues.c.site_id == sites.c.id).group_by(clouds.c.name))
        for cloud, n, slots in self.conn.execute(q):
            out[cloud].update(queues=n, pilot_slots=int(slots))
        d = (sa.select(clouds.c.name, sa.func.sum(endpoints.c.total_bytes),
                       sa.func.sum(endpoints.c.free_bytes))
             .join(sites, sites.c.cloud_id == clouds.c.id)
             .join(endpoints, endpoints.c.site_id == sites.c.id)
             .where(endpoints.c.kind == "disk").group_by(clouds.c.name))
        for cloud, total, free in self.conn.execute(d):
            out[cloud].update(disk_total_bytes=int(total or 0), disk_free_bytes=int(free or 0))
        return list(out.values())

    def disk_free_by_site(self) -> list[tuple[int, int | None, int]]:
        """(site id, free bytes summed, disks of unknown space) over active disk endpoints."""
        stmt = (sa.select(endpoints.c.site_id, sa.func.sum(endpoints.c.free_bytes),
                          sa.func.count() - sa.func.count(endpoints.c.free_bytes))
                .where(endpoints.c.kind == "disk", endpoints.c.active)
                .group_by(endpoints.c.site_id))
        return [(sid, free, unknown) for sid, free, unknown in self.conn.execute(stmt)]

    def table_counts(self) -> dict[str, int]:
        """Row count of every registry table (what an import must leave unchanged)."""
        tables = (clouds, sites, site_hosts, site_subnets, queues, queue_storages, endpoints,
                  endpoint_protocols, datasets, files, replicas)
        return {t.name: self.conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                for t in tables}

    # -- what the pilot's documents are made of ------------------------------

    def endpoint_protocols(self, names: Collection[str] | None = None
                           ) -> dict[str, list[dict[str, Any]]]:
        """Each endpoint's protocols (all endpoints, or those named), in their order.

        A protocol: ``protocol_id, position, url, scheme, host, port, path,
        flavour`` and a priority per activity of ``PROTOCOL_ACTIVITIES``.
        """
        cols = [c for c in endpoint_protocols.c if c.name != "endpoint_id"]
        stmt = (sa.select(endpoints.c.name.label("endpoint"), *cols).join(endpoints)
                .order_by(endpoints.c.name, endpoint_protocols.c.position))
        out: dict[str, list[dict[str, Any]]] = {}
        wanted = None if names is None else sorted(set(names))
        chunks = [None] if wanted is None else [wanted[i:i + _CHUNK]
                                                for i in range(0, len(wanted), _CHUNK)]
        for chunk in chunks:
            query = stmt if chunk is None else stmt.where(endpoints.c.name.in_(chunk))
            for row in self.conn.execute(query).mappings():
                entry = dict(row)
                out.setdefault(entry.pop("endpoint"), []).append(entry)
        return out

    def queue_storages(self, queue_id: int) -> dict[str, list[str]]:
        """A queue's astorages: per activity, its endpoints' names in order."""
        stmt = (sa.select(queue_storages.c.activity, endpoints.c.name).join(endpoints)
                .where(queue_storages.c.queue_id == queue_id)
                .order_by(queue_storages.c.activity, queue_storages.c.position))
        out: dict[str, list[str]] = {}
        for activity, name in self.conn.execute(stmt):
            out.setdefault(activity, []).append(name)
        return out

    def queue_site_names(self, queue_id: int) -> tuple[str, str] | None:
        """(queue name, site name) of the queue with this id, or None."""
        stmt = (sa.select(queues.c.name, sites.c.name)
                .join(sites, queues.c.site_id == sites.c.id).where(queues.c.id == queue_id))
        row = self.conn.execute(stmt).first()
        return None if row is None else (row[0], row[1])

    def queue_description(self, name: str) -> dict[str, Any] | None:
        """Everything a queue's schedconfig object is made of, or None for no such queue.

        Returns
        -------
        dict
            ``queue``: the queue row (:meth:`queue`), its ``copytools`` and
            ``acopytools`` decoded (None when not given); ``astorages``:
            :meth:`queue_storages`; ``site_endpoints``: the names of its site's
            active disk endpoints, most free space first (unknown space last);
            ``protocols``: :meth:`endpoint_protocols` of all those endpoints.
        """
        queue = self.queue(name)
        if queue is None:
            return None
        for key in ("copytools", "acopytools"):
            queue[key] = None if queue[key] is None else json.loads(queue[key])
        astorages = self.queue_storages(queue["id"])
        stmt = (sa.select(endpoints.c.name).join(sites)
                .where(sites.c.name == queue["site"], endpoints.c.kind == "disk",
                       endpoints.c.active)
                .order_by(endpoints.c.free_bytes.desc().nulls_last(), endpoints.c.name))
        site_endpoints = list(self.conn.execute(stmt).scalars())
        named = {n for ns in astorages.values() for n in ns} | set(site_endpoints)
        return {"queue": queue, "astorages": astorages, "site_endpoints": site_endpoints,
                "protocols": self.endpoint_protocols(named)}

    def ddm_endpoints(self) -> list[dict[str, Any]]:
        """Every storage endpoint with its id, site and ``protocols``, by name.

        What ``/cache/ddmendpoints.json`` is made of. O(e + p) for e endpoints
        and p protocols, two queries.
        """
        stmt = (sa.select(endpoints.c.id, endpoints.c.name, endpoints.c.endpoint_type,
                          endpoints.c.kind, endpoints.c.active, endpoints.c.url,
                          endpoints.c.host, sites.c.name.label("site"),
                          sites.c.rc_site)
                .join(sites, endpoints.c.site_id == sites.c.id).order_by(endpoints.c.name))
        protocols = self.endpoint_protocols()
        return [{**row, "protocols": protocols.get(row["name"], [])}
                for row in self.conn.execute(stmt).mappings()]

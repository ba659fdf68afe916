"""CloudDB: foreign calculated cloud members and their history, on one open connection."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from netbroker.db.schema import cloud_members, cloud_membership_history, clouds, sites

__all__ = ["CloudDB"]


class CloudDB:
    """Reads and writes ``cloud_members`` and ``cloud_membership_history``."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def foreign_members(self) -> dict[tuple[int, int], int]:
        """Map (cloud id, site id) -> stale cycles for every foreign member."""
        t = cloud_members
        rows = self.conn.execute(sa.select(t.c.cloud_id, t.c.site_id, t.c.stale_cycles))
        return {(c, s): n for c, s, n in rows}

    def foreign_member_names(self) -> list[tuple[str, str, datetime]]:
        """(cloud, site, joined_at) of every foreign member, by cloud and site."""
        t = cloud_members
        stmt = (sa.select(clouds.c.name, sites.c.name, t.c.joined_at)
                .join(clouds, t.c.cloud_id == clouds.c.id)
                .join(sites, t.c.site_id == sites.c.id).order_by(clouds.c.name, sites.c.name))
        return [tuple(r) for r in self.conn.execute(stmt)]  # type: ignore[misc]

    def replace_members(self, members: Sequence[dict[str, Any]], now: datetime,
                        changes: Sequence[dict[str, Any]]) -> None:
        """Make the foreign members exactly ``members`` and append ``changes`` to history.

        Members kept keep their ``joined_at``; new ones get ``now``. Only the rows
        that differ are written (a recompute that changes nothing writes nothing):
        those gone deleted, the new inserted, a kept one's ``stale_cycles`` updated.
        """
        t = cloud_members
        stored = self.foreign_members()
        wanted = {(m["cloud_id"], m["site_id"]): m["stale_cycles"] for m in members}
        gone = [{"p_cloud": c, "p_site": s} for c, s in stored.keys() - wanted.keys()]
        new = [{"cloud_id": c, "site_id": s, "stale_cycles": n, "joined_at": now}
               for (c, s), n in wanted.items() if (c, s) not in stored]
        stale = [{"p_cloud": c, "p_site": s, "p_stale": n} for (c, s), n in wanted.items()
                 if (c, s) in stored and stored[c, s] != n]
        key = (t.c.cloud_id == sa.bindparam("p_cloud"), t.c.site_id == sa.bindparam("p_site"))
        if gone:
            self.conn.execute(sa.delete(t).where(*key), gone)
        if new:
            self.conn.execute(sa.insert(t), new)
        if stale:
            self.conn.execute(sa.update(t).where(*key)
                              .values(stale_cycles=sa.bindparam("p_stale")), stale)
        if changes:
            self.conn.execute(sa.insert(cloud_membership_history), list(changes))

    def history(self, cloud: str | None, site: str | None, limit: int) -> list[dict[str, Any]]:
        h = cloud_membership_history
        stmt = (sa.select(clouds.c.name.label("cloud"), sites.c.name.label("site"), h.c.change,
                          h.c.at, h.c.mbytes_per_s, h.c.packet_loss_fraction, h.c.samples,
                          h.c.reason)
                .join(clouds, h.c.cloud_id == clouds.c.id).join(sites, h.c.site_id == sites.c.id)
                .order_by(h.c.at.desc(), h.c.id.desc()).limit(limit))
        if cloud is not None:
            stmt = stmt.where(clouds.c.name == cloud)
        if site is not None:
            stmt = stmt.where(sites.c.name == site)
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

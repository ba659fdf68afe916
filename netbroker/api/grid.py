"""Read routes of the grid registry: clouds, sites, queues."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from netbroker.api.models import (
    CloudMembersOut,
    CloudOut,
    MembershipEventOut,
    QueueOut,
    SiteDetail,
    SiteOut,
)
from netbroker.clouds import membership as clouds
from netbroker.common.enums import SiteStatus
from netbroker.common.errors import UnknownCloud
from netbroker.registry import registry
from netbroker.web.deps import EngineDep

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["grid"])


@router.get("/clouds", response_model=list[CloudOut])
def list_clouds(engine: EngineDep) -> list[dict[str, object]]:
    """Every cloud with its Tier-1 and its number of registered sites."""
    return registry.list_clouds(engine)


@router.get("/clouds/{name}", response_model=list[SiteOut])
def list_cloud_sites(name: str, engine: EngineDep) -> list[dict[str, object]]:
    """The sites registered in one cloud."""
    return registry.list_sites(engine, cloud=name)


@router.get("/sites", response_model=list[SiteOut])
def list_sites(
    engine: EngineDep,
    cloud: str | None = None,
    tier: Annotated[int | None, Query(ge=0, le=3)] = None,
    status: SiteStatus | None = None,
) -> list[dict[str, object]]:
    """Sites, optionally of one cloud, tier and status."""
    return registry.list_sites(engine, cloud, tier, status.value if status else None)


@router.get("/sites/{name}", response_model=SiteDetail)
def get_site(name: str, engine: EngineDep) -> dict[str, object]:
    """One site with its hosts, queues and storage endpoints."""
    return registry.get_site(engine, name)


@router.get("/queues", response_model=list[QueueOut])
def list_queues(
    engine: EngineDep,
    site: str | None = None,
    cloud: str | None = None,
    status: SiteStatus | None = None,
) -> list[dict[str, object]]:
    """Compute queues, optionally of one site or cloud and of one status."""
    return registry.list_queues(engine, site, cloud, status.value if status else None)




@router.get("/clouds/{name}/members", response_model=CloudMembersOut)
def get_cloud_members(name: str, engine: EngineDep) -> dict[str, object]:
    """A cloud's Tier-1, its registered sites and its foreign calculated members."""
    for row in clouds.show_membership(engine):
        if row["cloud"] == name:
            return row
    raise UnknownCloud(name)


@router.get("/clouds/{name}/history", response_model=list[MembershipEventOut])
def get_cloud_history(
    name: str, engine: EngineDep,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[dict[str, object]]:
    """The cloud's joins and leaves, newest first, with the measurements that decided them."""
    if name not in {c["name"] for c in registry.list_clouds(engine)}:
        raise UnknownCloud(name)
    return clouds.history(engine, cloud=name, limit=limit)

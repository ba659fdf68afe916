"""The grid registry's records: clouds, sites, storage endpoints, queues.

They are parsed from a grid document (``netbroker.grid_document``) and
written by ``netbroker.db.grid``. Each record uses CRIC's field names as
aliases, so a CRIC dump validates as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from netbroker.db.schema import QueueType, SiteStatus

__all__ = ["CloudRecord", "EndpointRecord", "QueueRecord", "SiteRecord"]


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


class _Record(BaseModel):
    # CRIC records carry many fields we do not use; ignore them, do not refuse.
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class CloudRecord(_Record):
    """A cloud: a Tier-1 (or the Tier-0) and the sites registered around it."""

    name: str = Field(min_length=1, max_length=64)
    tier1: str = Field(min_length=1, description="Name of the cloud's Tier-1 site.")


class SiteRecord(_Record):
    """A site: where queues run and endpoints store data."""

    name: str = Field(min_length=1, max_length=128)
    cloud: str = Field(min_length=1)
    tier: int = Field(alias="tier_level", ge=0, le=3)
    country: str = ""
    status: Annotated[SiteStatus, BeforeValidator(_lower)] = SiteStatus.ONLINE
    datapolicies: list[str] = Field(default_factory=list)
    domains: list[str] = Field(default_factory=list)
    perfsonar_hosts: list[str] = Field(default_factory=list)

    @property
    def is_nucleus(self) -> bool:
        """Nuclei may host a task's output (CRIC's ``Nucleus`` data policy)."""
        return "Nucleus" in self.datapolicies


class EndpointRecord(_Record):
    """A storage endpoint (DDM endpoint, Rucio RSE) of a site."""

    name: str = Field(min_length=1, max_length=128)
    site: str = Field(min_length=1)
    endpoint_type: str = Field(alias="type", min_length=1, max_length=32)
    is_tape: bool = False
    state: str = "ACTIVE"
    url: str = Field("", alias="se", max_length=512)
    total_bytes: int = Field(alias="space_total_bytes", ge=0)
    free_bytes: int = Field(alias="space_free_bytes", ge=0)

    @model_validator(mode="after")
    def _free_within_total(self) -> EndpointRecord:
        if self.free_bytes > self.total_bytes:
            raise ValueError(
                f"space_free_bytes {self.free_bytes} exceeds space_total_bytes {self.total_bytes}"
            )
        return self

    @property
    def kind(self) -> str:
        return "tape" if self.is_tape else "disk"

    @property
    def host(self) -> str:
        """Host name of the endpoint's URL (``se``), lower-case, or ''."""
        return (urlsplit(self.url).hostname or "") if self.url else ""

    @property
    def active(self) -> bool:
        return self.state.upper() == "ACTIVE"


def _corecount(value: object) -> object:
    # CRIC leaves corecount empty or 0 for single-core queues; the pilot reads it as 1.
    return 1 if value in (None, "", 0, "0") else value


class QueueRecord(_Record):
    """A compute queue (PanDA queue) of a site."""

    name: str = Field(alias="nickname", min_length=1, max_length=128)
    panda_resource: str = ""
    site: str = Field(min_length=1)
    cloud: str | None = None
    queue_type: Annotated[QueueType, BeforeValidator(_lower)] = Field(
        QueueType.UNIFIED, alias="type"
    )
    status: Annotated[SiteStatus, BeforeValidator(_lower)]
    cores: Annotated[int, BeforeValidator(_corecount)] = Field(1, alias="corecount", ge=1)
    max_memory_mb: int = Field(alias="maxrss", ge=0)
    max_walltime_s: int = Field(alias="maxtime", ge=0)
    max_disk_mb: int = Field(0, alias="maxwdir", ge=0)
    pilot_slots: int = Field(0, ge=0)
    hs06_per_core: float | None = Field(None, alias="corepower", ge=0)
    astorages: dict[str, list[str]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _site_alias(cls, data: Any) -> Any:
        # CRIC names the site atlas_site (older dumps: site); either will do.
        if isinstance(data, Mapping) and "atlas_site" in data and "site" not in data:
            data = {**data, "site": data["atlas_site"]}
        return data

    @model_validator(mode="after")
    def _resource_defaults_to_name(self) -> QueueRecord:
        if not self.panda_resource:
            object.__setattr__(self, "panda_resource", self.name)
        return self

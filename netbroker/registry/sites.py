"""The grid registry's records: clouds, sites, storage endpoints, queues.

They are parsed from a grid document (``netbroker.registry.grid_document``) and
written by ``netbroker.db.grid``. Each record uses CRIC's field names as
aliases, so a CRIC dump validates as it is: numbers may come as strings,
empty strings and nulls mean "not given".

A record names its site as CRIC does (a queue by ``atlas_site``, ``site`` or
``rc_site``; an endpoint by ``site`` or ``rc_site``); which registered site
that is, ``netbroker.registry.grid_document.resolve_references`` decides. Fields a
record leaves out (an endpoint's space and protocols, a queue's storages and
copy tools, a site's hosts and resource centre) leave what is stored alone:
``model_fields_set`` tells which were given.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from netbroker.common.enums import QueueType, SiteStatus
from netbroker.registry.cric import Protocol

__all__ = ["CloudRecord", "EndpointRecord", "QueueRecord", "SiteRecord"]


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _blank_is_none(value: object) -> object:
    """CRIC writes "not known" as null or an empty string."""
    return None if isinstance(value, str) and not value.strip() else value


def _text(value: object) -> object:
    """A name or a note: null is empty, surrounding blanks go."""
    if value is None:
        return ""
    return value.strip() if isinstance(value, str) else value


Name = Annotated[str, BeforeValidator(_text), Field(max_length=128)]


def _names(value: object) -> object:
    """A list of names (endpoints, copy tools): one name alone, null and blanks tolerated."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        return [v.strip() if isinstance(v, str) else v for v in value
                if v is not None and not (isinstance(v, str) and not v.strip())]
    return value


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
    country: Annotated[str, BeforeValidator(_text)] = ""
    status: Annotated[SiteStatus, BeforeValidator(
        lambda v: "online" if v in (None, "") else _lower(v))] = SiteStatus.ONLINE
    datapolicies: Annotated[list[str], BeforeValidator(_names)] = Field(default_factory=list)
    domains: Annotated[list[str], BeforeValidator(_names)] = Field(default_factory=list)
    perfsonar_hosts: Annotated[list[str], BeforeValidator(_names)] = Field(
        default_factory=list)
    rc_site: Name = ""

    @property
    def is_nucleus(self) -> bool:
        """Nuclei may host a task's output (CRIC's ``Nucleus`` data policy)."""
        return "Nucleus" in self.datapolicies

    @property
    def gives_hosts(self) -> bool:
        """Whether the record lists its hosts (CRIC's own site dumps do not)."""
        return bool({"domains", "perfsonar_hosts"} & self.model_fields_set)


Bytes = Annotated[Annotated[int, Field(ge=0)] | None, BeforeValidator(_blank_is_none)]


class EndpointRecord(_Record):
    """A storage endpoint (DDM endpoint, Rucio RSE) of a site.

    Space is unknown (None) until a report gives it; ``protocols`` is None
    when the record gives none of CRIC's protocol shapes.
    """

    name: str = Field(min_length=1, max_length=128)
    site: Name = ""
    atlas_site: Name = ""
    rc_site: Name = ""
    endpoint_type: str = Field(alias="type", min_length=1, max_length=32)
    is_tape: Annotated[bool, BeforeValidator(lambda v: False if v in (None, "") else v)] = False
    state: Annotated[str, BeforeValidator(lambda v: "ACTIVE" if v in (None, "") else v)] = (
        "ACTIVE")
    url: Annotated[str, BeforeValidator(_text)] = Field("", alias="se", max_length=512)
    total_bytes: Bytes = Field(None, alias="space_total_bytes")
    free_bytes: Bytes = Field(None, alias="space_free_bytes")
    protocols: tuple[Protocol, ...] | None = None

    @model_validator(mode="after")
    def _named_site_and_space(self) -> EndpointRecord:
        if not (self.site or self.atlas_site or self.rc_site):
            raise ValueError("names no site (site, atlas_site or rc_site)")
        if (self.free_bytes is not None and self.total_bytes is not None
                and self.free_bytes > self.total_bytes):
            raise ValueError(
                f"space_free_bytes {self.free_bytes} exceeds space_total_bytes {self.total_bytes}"
            )
        return self

    @property
    def site_candidates(self) -> tuple[str, ...]:
        """The names the endpoint gives its site by, in the order they are tried."""
        return tuple(n for n in (self.site, self.atlas_site, self.rc_site) if n)

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

    @property
    def gives_space(self) -> bool:
        return bool({"total_bytes", "free_bytes"} & self.model_fields_set)

    @property
    def gives_url(self) -> bool:
        return "url" in self.model_fields_set and bool(self.url)


def _corecount(value: object) -> object:
    # CRIC leaves corecount empty or 0 for single-core queues; the pilot reads it as 1.
    return 1 if value in (None, "", 0, "0") else value


def _no_limit(value: object) -> object:
    """CRIC's maxtime 0 (or nothing) means the queue sets no wall-time limit."""
    if value in (None, "", 0, "0"):
        return None
    if isinstance(value, int | str) and str(value).strip().lstrip("-").isdigit() \
            and int(value) < 0:
        raise ValueError(f"must be 0 (no limit) or a number of seconds, got {value!r}")
    return value


def _copytools(value: object) -> object:
    """CRIC's ``{"tool": {"setup": ...}}``, or just the tools' names."""
    if isinstance(value, str | list):
        names = _names(value)
        if isinstance(names, list) and all(isinstance(n, str) for n in names):
            return {n: {} for n in names}
        return value  # not names: the validation says what it is
    if isinstance(value, dict):
        return {k: v if isinstance(v, dict) else {} for k, v in value.items()}
    return value


Names = Annotated[list[Annotated[str, Field(min_length=1, max_length=128)]],
                  BeforeValidator(_names)]


class QueueRecord(_Record):
    """A compute queue (PanDA queue) of a site.

    ``max_walltime_s`` is None for no limit. ``astorages``, ``copytools``,
    ``acopytools`` and ``catchall`` are None when the record does not give them.
    """

    name: str = Field(alias="nickname", min_length=1, max_length=128)
    panda_resource: Annotated[str, BeforeValidator(_text)] = ""
    atlas_site: Name = ""
    site: Name = ""
    rc_site: Name = ""
    cloud: Annotated[str | None, BeforeValidator(_blank_is_none)] = None
    queue_type: Annotated[QueueType, BeforeValidator(_lower)] = Field(
        QueueType.UNIFIED, alias="type"
    )
    status: Annotated[SiteStatus, BeforeValidator(_lower)]
    cores: Annotated[int, BeforeValidator(_corecount)] = Field(1, alias="corecount", ge=1)
    max_memory_mb: int = Field(alias="maxrss", ge=0)
    max_walltime_s: Annotated[int | None, BeforeValidator(_no_limit)] = Field(
        None, alias="maxtime", ge=1)
    max_disk_mb: Annotated[int, BeforeValidator(lambda v: 0 if v in (None, "") else v)] = Field(
        0, alias="maxwdir", ge=0)
    pilot_slots: int = Field(0, ge=0)
    hs06_per_core: Annotated[float | None, BeforeValidator(_blank_is_none)] = Field(
        None, alias="corepower", ge=0)
    astorages: Annotated[dict[Annotated[str, Field(min_length=1, max_length=32)], Names] | None,
                         BeforeValidator(lambda v: {} if v is None else v)] = None
    copytools: Annotated[dict[str, dict[str, Any]] | None, BeforeValidator(_copytools)] = None
    acopytools: dict[str, Names] | None = None
    catchall: Annotated[str | None, BeforeValidator(_blank_is_none)] = Field(
        None, max_length=1024)

    @model_validator(mode="after")
    def _named_site_and_resource(self) -> QueueRecord:
        if not self.site_candidates:
            raise ValueError("names no site (atlas_site, site or rc_site)")
        if not self.panda_resource:
            object.__setattr__(self, "panda_resource", self.name)
        return self

    @property
    def site_candidates(self) -> tuple[str, ...]:
        """The names the queue gives its site by, in the order they are tried: CRIC's
        ``site`` may be a grid (``OSG``) where ``atlas_site`` is the site."""
        return tuple(n for n in (self.atlas_site, self.site, self.rc_site) if n)

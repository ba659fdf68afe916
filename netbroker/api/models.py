"""Response models of the JSON API: what ``/api/v1`` answers, in the OpenAPI spec."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict

from netbroker.common.enums import QueueType, SiteStatus

__all__ = [
    "CloudMembersOut",
    "CloudOut",
    "EndpointOut",
    "Health",
    "HostOut",
    "IngestOut",
    "LinkPoint",
    "MatrixOut",
    "MembershipEventOut",
    "QueueOut",
    "RejectedOut",
    "SiteDetail",
    "SiteOut",
]



class _Out(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Health(_Out):
    status: str
    database: str
    schema_revision: str | None
    head_revision: str | None


class CloudOut(_Out):
    name: str
    tier1: str | None
    sites: int
    updated_at: AwareDatetime


class SiteOut(_Out):
    name: str
    cloud: str
    tier: int
    country: str
    status: SiteStatus
    is_nucleus: bool
    updated_at: AwareDatetime


class QueueOut(_Out):
    name: str
    site: str
    cloud: str
    panda_resource: str
    queue_type: QueueType
    status: SiteStatus
    cores: int
    max_memory_mb: int
    max_walltime_s: int | None  # None: no limit
    max_disk_mb: int
    pilot_slots: int
    hs06_per_core: float | None
    updated_at: AwareDatetime


class EndpointOut(_Out):
    name: str
    site: str
    endpoint_type: str
    kind: str
    url: str
    host: str
    total_bytes: int | None  # None: not reported yet
    free_bytes: int | None
    active: bool
    updated_at: AwareDatetime


class HostOut(_Out):
    host: str
    role: str


class SiteDetail(SiteOut):
    hosts: list[HostOut]
    queues: list[QueueOut]
    endpoints: list[EndpointOut]


class RejectedOut(_Out):
    position: int
    reason: str
    origin_id: str | None


class IngestOut(_Out):
    source: str
    samples: int
    stored: int
    duplicates: int
    rejected: int
    unmapped_samples: int
    too_old: int
    unmapped_hosts: dict[str, int]
    rejections: list[RejectedOut]


class MatrixOut(_Out):
    kind: str
    unit: str
    window: str
    source: str
    sources: list[str]
    destinations: list[str]
    values: list[list[float | None]]


class LinkPoint(_Out):
    bucket_start_s: int
    source: str
    count: int
    value: float
    last_ts_s: float


class PathHop(_Out):
    src: str
    dst: str
    value: float
    source: str
    count: int


class PathOut(_Out):
    src: str
    dst: str
    window: str
    kind: str
    unit: str
    bottleneck: float | None
    hops: list[PathHop]
    direct: PathHop | None


class ForeignMemberOut(_Out):
    site: str
    joined_at: AwareDatetime


class CloudMembersOut(_Out):
    cloud: str
    tier1: str | None
    static: list[str]
    foreign: list[ForeignMemberOut]


class MembershipEventOut(_Out):
    cloud: str
    site: str
    change: str
    at: AwareDatetime
    mbytes_per_s: float | None
    packet_loss_fraction: float | None
    samples: int
    reason: str

"""Routes of runtime settings: read, change (audited), preview a change's effect."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from netbroker.accounts.auth import Principal
from netbroker.common.config import Settings
from netbroker.web.auth import require, roles_doc
from netbroker.web.deps import EngineDep, base_settings
from netbroker.workload import runtime_config

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["config"])


class ChangeIn(BaseModel):
    """Dotted keys of the tunable groups and their new values."""

    model_config = ConfigDict(extra="forbid")

    changes: dict[str, Any] = Field(min_length=1, examples=[
        {"clouds.min_mbytes_per_s_from_tier1": 3.0}])


Base = Annotated[Settings, Depends(base_settings)]


@router.get("/config")
def get_config(engine: EngineDep, base: Base) -> dict[str, Any]:
    """The tunable settings in force, and which of them operators have overridden."""
    current = runtime_config.effective_settings(engine, base)
    return {"settings": {g: getattr(current, g).model_dump() for g in runtime_config.TUNABLE},
            "overrides": runtime_config.overrides(engine, fresh=True)}


@router.put("/config", openapi_extra=roles_doc("operator"),
            responses={422: {"description": "a value was refused; nothing changed"}})
def put_config(change: ChangeIn, engine: EngineDep, base: Base,
               caller: Annotated[Principal, Depends(require("operator"))]) -> dict[str, Any]:
    """Change settings now, validated as a whole; each change goes to the audit log."""
    return {"changed": runtime_config.change_settings(engine, base, change.changes,
                                                      caller.name)}


@router.post("/config/preview", openapi_extra=roles_doc("operator", "analyst"),
             dependencies=[Depends(require("operator", "analyst"))])
def preview_config(change: ChangeIn, engine: EngineDep, base: Base) -> dict[str, Any]:
    """What a change would do now (cloud joins and leaves, tasks brokered elsewhere);
    nothing is stored."""
    return runtime_config.preview(engine, base, change.changes)


@router.get("/config/audit")
def config_audit(engine: EngineDep,
                 limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> list[dict[str, Any]]:
    """Who changed what, when: old -> new, newest first."""
    return runtime_config.audit_log(engine, limit)

"""Routes of PD2P: the DDM teams' replication feed, dataset popularity, clean-up proposals.

Thin: ``netbroker.placement.pd2p`` does the work. The feed is read by id cursor
(``after``) in id order: a page never repeats or skips a decision, even while
new ones are being added.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from netbroker.placement import pd2p
from netbroker.web.auth import require, roles_doc
from netbroker.web.deps import EngineDep, IdPath, SettingsDep

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["pd2p"])
DDM = roles_doc("ddm")


class FailureIn(BaseModel):
    """Why DDM could not make the replica."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=1024)


@router.get("/replication/decisions", responses={400: {"description": "malformed cursor"}})
def list_decisions(engine: EngineDep, settings: SettingsDep,
                   after: Annotated[str | None, Query(description="Last id seen; 0: start.")]
                   = None, limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
                   fmt: Annotated[Literal["json", "rucio"], Query(alias="format")] = "json"
                   ) -> dict[str, Any]:
    """Decisions with an id above ``after``, oldest first; ``next`` is the cursor to pass on."""
    return pd2p.feed(engine, pd2p.parse_cursor(after), limit, fmt, settings.pd2p)


@router.get("/replication/decisions/{decision_id}")
def get_decision(decision_id: IdPath, engine: EngineDep) -> dict[str, Any]:
    """One decision with its sources, candidates and reason."""
    return pd2p.get_decision(engine, decision_id)


@router.post("/replication/decisions/{decision_id}/ack", openapi_extra=DDM,
             dependencies=[Depends(require("ddm"))],
             responses={404: {}, 409: {"description": "not new"}})
def acknowledge(decision_id: IdPath, engine: EngineDep) -> dict[str, Any]:
    """DDM has taken the decision."""
    return pd2p.mark_acknowledged(engine, decision_id)


@router.post("/replication/decisions/{decision_id}/done", openapi_extra=DDM,
             dependencies=[Depends(require("ddm"))],
             responses={404: {}, 409: {"description": "already done, failed or expired"}})
def done(decision_id: IdPath, engine: EngineDep, settings: SettingsDep) -> dict[str, Any]:
    """The replica exists: it enters the catalogue and the waiting jobs are rebrokered."""
    return pd2p.mark_done(engine, decision_id, settings)


@router.post("/replication/decisions/{decision_id}/failed", openapi_extra=DDM,
             dependencies=[Depends(require("ddm"))],
             responses={404: {}, 409: {"description": "already done, failed or expired"}})
def failed(decision_id: IdPath, failure: FailureIn, engine: EngineDep) -> dict[str, Any]:
    """DDM could not make the replica; after the cooldown PD2P may place it elsewhere."""
    return pd2p.mark_failed(engine, decision_id, failure.reason)


@router.get("/replication/cleanup")
def cleanup(engine: EngineDep, settings: SettingsDep) -> list[dict[str, Any]]:
    """PD2P replicas proposed for deletion: lifetime over or no longer popular."""
    return pd2p.cleanup_proposals(engine, settings.pd2p)


@router.get("/datasets/{did}/popularity")
def dataset_popularity(did: str, engine: EngineDep) -> dict[str, Any]:
    """Jobs brokered on a dataset (``scope:name``) over 1 and 7 days, users, waiting jobs."""
    return pd2p.popularity(engine, did)[0]

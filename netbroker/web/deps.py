"""Dependencies shared by the routers: the engine and the settings of the app."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from netbroker.common.config import Settings
from netbroker.workload import runtime_config

__all__ = ["EngineDep", "IdPath", "SettingsDep", "SmallIdPath", "base_settings"]

# Ids beyond the column's range are refused with a 422, never sent to the database:
# jobs, decisions and event ranges have 64-bit ids, tasks and boosts 32-bit ones.
IdPath = Annotated[int, Path(ge=1, le=2**63 - 1)]
SmallIdPath = Annotated[int, Path(ge=1, le=2**31 - 1)]


# The dependencies are coroutines: FastAPI runs a plain ``def`` dependency in its
# thread pool, a hop that costs more than the little these do on a cache hit.
async def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def base_settings(request: Request) -> Settings:
    """The settings the service started with (file and environment)."""
    settings: Settings = request.app.state.settings
    return settings


async def _settings(request: Request) -> Settings:
    """The settings in force: the start-up ones with the operators' runtime changes.

    The overrides are cached per process for a few seconds; only a stale cache
    reads the database, in the thread pool. The merged settings are kept on
    the app for as long as the same overrides are.
    """
    state = request.app.state
    stored = runtime_config.cached_overrides(state.engine)
    if stored is None:
        stored = await run_in_threadpool(runtime_config.overrides, state.engine)
    memo = getattr(state, "settings_in_force", None)
    if memo is None or memo[0] is not stored:
        memo = (stored, runtime_config.apply_overrides(state.settings, stored))
        state.settings_in_force = memo
    settings: Settings = memo[1]
    return settings


EngineDep = Annotated[Engine, Depends(_engine)]
SettingsDep = Annotated[Settings, Depends(_settings)]

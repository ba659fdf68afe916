"""Dependencies shared by the routers: the engine and the settings of the app."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from sqlalchemy.engine import Engine

from netbroker.config import Settings
from netbroker.runtime_config import effective_settings

__all__ = ["EngineDep", "IdPath", "SettingsDep", "SmallIdPath", "base_settings"]

# Ids beyond the column's range are refused with a 422, never sent to the database:
# jobs, decisions and event ranges have 64-bit ids, tasks and boosts 32-bit ones.
IdPath = Annotated[int, Path(ge=1, le=2**63 - 1)]
SmallIdPath = Annotated[int, Path(ge=1, le=2**31 - 1)]


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def base_settings(request: Request) -> Settings:
    """The settings the service started with (file and environment)."""
    settings: Settings = request.app.state.settings
    return settings


def _settings(request: Request) -> Settings:
    """The settings in force: the start-up ones with the operators' runtime changes."""
    return effective_settings(request.app.state.engine, base_settings(request))


EngineDep = Annotated[Engine, Depends(_engine)]
SettingsDep = Annotated[Settings, Depends(_settings)]

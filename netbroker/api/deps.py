"""Dependencies shared by the routers: the engine and the settings of the app."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.engine import Engine

from netbroker.config import Settings
from netbroker.runtime_config import effective_settings

__all__ = ["EngineDep", "SettingsDep", "base_settings"]


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

"""The HTTP service: FastAPI app, routers, error mapping."""

from netbroker.api.app import create_app, create_app_from_settings

__all__ = ["create_app", "create_app_from_settings"]

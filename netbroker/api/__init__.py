"""The HTTP service: the FastAPI app, its routers, the monitor's pages, error mapping.

An edge: may import the core, ``netbroker.web``, ``dispatcher`` (whose routers it
mounts) and ``collectors`` (ingestion over HTTP).
"""

from netbroker.api.app import create_app, create_app_from_settings

__all__ = ["create_app", "create_app_from_settings"]

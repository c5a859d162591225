"""Versions: the registry of model versions, the verified hot swap, promote and rollback.

The slice's face for the app: its ``router`` and ``start_engine``, the lifespan step that
starts the serving engines with the serving version (:mod:`server.versions.boot`).
"""

from server.versions.boot import start_engine
from server.versions.routes import router

__all__ = ["router", "start_engine"]

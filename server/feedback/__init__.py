"""Feedback: wire models, validation and acceptance into the store, and its routes.

The slice's face for the app: its ``router`` and ``start``, the lifespan step that builds the
feedback service on the store's ingest sink.
"""

from server.feedback.routes import router
from server.feedback.service import start

__all__ = ["router", "start"]

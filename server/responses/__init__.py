"""OpenAI's Responses API (``/v1/responses``), served by translating to the chat engine.

The slice's face for the app: its ``router`` and ``start``, the lifespan step that builds the
responses service over the chat service.
"""

from server.responses.routes import router
from server.responses.service import start

__all__ = ["router", "start"]

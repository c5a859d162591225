"""Chat: the OpenAI wire models, the chat service that relays to the engine, and its routes.

The slice's face for the app: its ``router`` and ``start``, the lifespan step that builds the
chat service once the engine serves.
"""

from fastapi import FastAPI

from server.chat.recorder import StoreRecorder
from server.chat.routes import router
from server.chat.service import ChatService, NullRecorder

__all__ = ["router", "start"]


def start(app: FastAPI) -> None:
    """``app.state.chat`` over the engine; it records each interaction into the store unless
    ``PERENNIAL_LOG_INTERACTIONS=false``."""
    settings = app.state.settings
    recorder = StoreRecorder(app.state.ingest) if settings.log_interactions else NullRecorder()
    state = app.state
    state.chat = ChatService(settings, state.engine, state.served, state.metrics, recorder)

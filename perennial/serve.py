"""The gateway process: ``perennial serve [--host H] [--port P] [--data-dir D]``.

The composition root of the embedded default: the gateway app (``server``) with the learner
(``learner``) plugged in as a lifespan component, two layers that never import each other.
``PERENNIAL_LEARNER_MODE`` picks what is plugged in: ``embedded`` runs rounds and their
schedule in this process; ``external`` only queues rounds for a ``perennial learner`` process;
``off`` answers that the learner is off.

Refuses to start open (no API keys) on a host other than loopback unless
``PERENNIAL_ALLOW_OPEN=true`` (``Settings.open_to_network``). Binds the listening socket first
(so ``--port 0`` resolves to a real port), runs the app's lifespan (model preparation, engine
start, learner), then prints where it listens.
"""

from __future__ import annotations

import logging
import socket
import sys
from contextlib import AsyncExitStack

import uvicorn
from fastapi import FastAPI

from learner.service import LearnerService
from learner.settings import LearnerSettings
from learner.suites_store import register_builtin_suites
from perennial.logs import configure_logging
from perennial.rounds import LearnerRounds
from server.app import create_app
from server.settings import Settings
from server.versions.service import VersionService

log = logging.getLogger(__name__)


async def start_learner(app: FastAPI, stack: AsyncExitStack) -> None:
    """Lifespan component: the built-in suites, the round queue, and the embedded learner."""
    settings: Settings = app.state.settings
    learner_settings = LearnerSettings(
        data_dir=settings.data_dir, database_url=settings.database_url, model_dir=settings.model_dir
    )
    await register_builtin_suites(app.state.db)  # listed by /admin/suites in every mode
    service = None
    if learner_settings.learner_mode == "embedded":
        versions: VersionService = app.state.versions

        async def promote(version_id: str, reason: str) -> dict:
            return await versions.promote(version_id, who="learner", reason=reason)

        def chats_in_flight() -> int:  # the chat service starts after this component
            chat = getattr(app.state, "chat", None)
            return chat.in_flight if chat is not None else 0

        service = LearnerService(
            app.state.db, learner_settings, app.state.model_dir, promote, chats_in_flight=chats_in_flight
        )
        await service.start()
        stack.push_async_callback(service.stop)
    if learner_settings.learner_mode != "off":
        app.state.rounds = LearnerRounds(app.state.db, learner_settings, service)


class _AnnouncingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, url: str):
        super().__init__(config)
        self.url = url

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            app = self.config.loaded_app
            served = getattr(getattr(app, "state", None), "served", None)
            model = f" serving {served.name} (version {served.version})" if served else ""
            print(f"Perennial listening on {self.url}{model}", flush=True)


def serve(settings: Settings) -> None:
    if (refusal := settings.open_to_network()) is not None:
        print(f"error: {refusal}", file=sys.stderr, flush=True)
        sys.exit(2)
    configure_logging(settings.log_level)
    sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    sock.set_inheritable(True)
    port = sock.getsockname()[1]
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    app = create_app(settings, components=[start_learner])
    config = uvicorn.Config(
        app,
        log_level=settings.log_level.lower(),
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=30,
    )
    server = _AnnouncingServer(config, f"http://{host}:{port}")
    server.run(sockets=[sock])

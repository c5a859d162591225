"""Entry point of the gateway process: ``perennial serve [--host H] [--port P] [--data-dir D]``.

Binds the listening socket first (so ``--port 0`` resolves to a real port), runs the app's
lifespan (model preparation, engine start), then prints where it listens.
"""

from __future__ import annotations

import logging
import socket

import uvicorn

from server.app import create_app
from server.settings import Settings

log = logging.getLogger(__name__)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # httpx logs every engine call at INFO; that belongs in metrics, not the log.
    logging.getLogger("httpx").setLevel(logging.WARNING)


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
    configure_logging(settings.log_level)
    sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    sock.set_inheritable(True)
    port = sock.getsockname()[1]
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    app = create_app(settings)
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

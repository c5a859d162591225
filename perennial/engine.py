"""The serving engine process on its own: ``perennial engine [--port 8100] [--data-dir D]``.

For deployments where the gateway attaches to the engine (``PERENNIAL_ENGINE_URL``), e.g. the
docker-compose file: the engine listens on 127.0.0.1 only and the gateway shares its network
namespace, so the engine's weight endpoints stay unreachable from any other host. The gateway
loads the version the registry says serves when it attaches.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from perennial.logs import configure_logging
from server.settings import Settings
from server.versions.boot import build_engine
from weights.prep import default_model_name, resolve_model_dir

log = logging.getLogger(__name__)


async def run(settings: Settings) -> None:
    base_dir = resolve_model_dir(settings.model_dir, settings.models_dir)
    name = settings.model_name or default_model_name(base_dir)
    engine = build_engine(settings, name, base_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await engine.start(settings.engine_start_timeout_s)
    print(f"Perennial engine ready on {engine.client.base_url} serving {name}", flush=True)
    try:
        await stop.wait()
    finally:
        await engine.stop()


def main(settings: Settings) -> None:
    configure_logging(settings.log_level)
    asyncio.run(run(settings))

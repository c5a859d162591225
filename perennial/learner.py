"""The learner process of a production deployment: ``perennial learner [--data-dir D]``.

Runs the round runner and the scheduler (exactly one such process per database) with its
own learner engine, reading feedback from the shared database and writing snapshots into the
shared versions directory. A passing candidate is promoted through the gateway's admin API
(``PERENNIAL_GATEWAY_URL`` + ``PERENNIAL_ADMIN_KEY``): the gateway owns the serving engine
and performs the verified hot swap. The gateway runs with ``PERENNIAL_LEARNER_MODE=external``
so that it queues rounds but does not run them.
"""

from __future__ import annotations

import asyncio
import logging
import signal

import httpx

from learner.service import LearnerService
from learner.settings import LearnerSettings
from perennial.logs import configure_logging
from store.db import Database, safe_url
from weights.prep import resolve_model_dir

log = logging.getLogger(__name__)


class GatewayPromoter:
    """Promote through ``POST /admin/versions/{id}/promote`` of the gateway."""

    def __init__(self, url: str, admin_key: str, timeout_s: float = 600.0):
        self.url = url.rstrip("/")
        self.headers = {"authorization": f"Bearer {admin_key}"}
        self.timeout_s = timeout_s

    async def __call__(self, version_id: str, reason: str) -> dict:
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            response = await client.post(
                f"{self.url}/admin/versions/{version_id}/promote",
                json={"reason": reason},
                headers=self.headers,
            )
        if response.status_code != 200:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:300]
            raise RuntimeError(f"the gateway refused to promote {version_id}: {message}")
        return response.json()


async def run(settings: LearnerSettings) -> None:
    if not settings.gateway_url or settings.admin_key is None:
        raise SystemExit("perennial learner needs PERENNIAL_GATEWAY_URL and PERENNIAL_ADMIN_KEY")
    db = Database.connect(settings.resolved_database_url)
    await db.migrate()
    log.info("learner: store %s", safe_url(db.url))
    base_dir = resolve_model_dir(settings.model_dir, settings.models_dir)
    promote = GatewayPromoter(settings.gateway_url, settings.admin_key.get_secret_value())
    service = LearnerService(db, settings, base_dir, promote)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await service.start()
    print(f"Perennial learner running (base {base_dir}, gateway {settings.gateway_url})", flush=True)
    try:
        await stop.wait()
    finally:
        await service.stop()
        await db.close()


def main(settings: LearnerSettings) -> None:
    configure_logging("info")
    asyncio.run(run(settings))

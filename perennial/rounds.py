"""The learner as the gateway sees it: :class:`server.rounds.Rounds`, implemented by the learner.

The composition root's adapter between the two layers that never import each other: it queues
rounds with the learner's own validation (``learner.service.enqueue_round``), whose errors both
layers know (``store.rounds.RoundBusy``, ``weights.config.ConfigError``).
"""

from __future__ import annotations

from typing import Any

from learner import service as learner_service
from learner.service import LearnerService
from learner.settings import LearnerSettings
from store.db import Database
from store.models import Round


class LearnerRounds:
    """Rounds for the gateway; ``service`` is the embedded learner (None: it runs elsewhere)."""

    def __init__(self, db: Database, settings: LearnerSettings, service: LearnerService | None):
        self.db = db
        self.settings = settings
        self.service = service
        self.mode = settings.learner_mode

    async def enqueue(self, overrides: dict[str, Any], trigger: str) -> Round:
        return await learner_service.enqueue_round(self.db, self.settings, overrides, trigger)

    def status(self) -> dict[str, Any]:
        service = self.service
        if service is None:
            return {"running": None, "engine": None}
        engine, body = service.engine, {"running": service.running, "engine": None}
        if engine is not None and engine.supervisor is not None:
            sup = engine.supervisor
            body["engine"] = {"state": sup.state.value, "pid": sup.pid, "url": engine.base_url}
        return body

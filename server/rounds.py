"""The gateway's view of the learner: queue a round, say what the learner is doing.

The gateway never imports the learner. ``perennial serve`` (the composition root) plugs an
implementation of :class:`Rounds` into :func:`server.app.create_app`; the admin routes
(``/admin/learner``) use only this interface. Without one (``PERENNIAL_LEARNER_MODE=off``, or
an app built without a learner) the routes answer that the learner is off.
"""

from __future__ import annotations

from typing import Any, Protocol

from store.models import Round


class Rounds(Protocol):
    """What the gateway can ask of the learner, wherever it runs."""

    mode: str  # embedded | external | off

    async def enqueue(self, overrides: dict[str, Any], trigger: str) -> Round:
        """Queue a round; raise :class:`store.rounds.RoundBusy` while one is queued or running,
        :class:`weights.config.ConfigError` (naming the field) for an invalid override."""
        ...

    def status(self) -> dict[str, Any]:
        """``{"running": run id or None, "engine": {...} or None}`` (embedded mode)."""
        ...

"""The gateway's view of the learner: queue a round, say what the learner is doing.

The gateway never imports the learner. ``perennial serve`` (the composition root) plugs an
implementation of :class:`Rounds` into :func:`server.app.create_app`; the admin routes
(``/admin/learner``) use only this interface. Without one (``PERENNIAL_LEARNER_MODE=off``, or
an app built without a learner) the routes answer that the learner is off.
"""

from __future__ import annotations

from typing import Any, Protocol

from store.models import Round


class RoundBusy(Exception):
    """A round is queued or running already."""

    def __init__(self, run: Round):
        super().__init__(f"round {run.id} is {run.status}")
        self.run = run


class InvalidRound(ValueError):
    """An override of the round's ES or gate settings is invalid; ``field`` names it.

    The message names the field too (``"sigma: must be > 0"``).
    """

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class Rounds(Protocol):
    """What the gateway can ask of the learner, wherever it runs."""

    mode: str  # embedded | external | off

    async def enqueue(self, overrides: dict[str, Any], trigger: str) -> Round:
        """Queue a round; raise :class:`RoundBusy` or :class:`InvalidRound`."""
        ...

    def status(self) -> dict[str, Any]:
        """``{"running": run id or None, "engine": {...} or None}`` (embedded mode)."""
        ...

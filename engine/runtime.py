"""The gateway's view of its serving engine: a supervised child process or an external URL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from engine.client import EngineClient
from engine.supervisor import EngineState, EngineSupervisor

log = logging.getLogger(__name__)


class EngineRuntime:
    """Readiness and a client for the serving engine, whoever runs it.

    With a supervisor, readiness is the supervisor's state. With an external engine
    (``PERENNIAL_ENGINE_URL``), a background probe checks ``/health`` every couple of seconds.
    """

    def __init__(self, client: EngineClient, supervisor: EngineSupervisor | None = None):
        self.client = client
        self.supervisor = supervisor
        self._external_ok = False
        self._probe: asyncio.Task | None = None
        # Awaited when an external engine answers again after being down (it restarted and
        # holds its start-up weights): the gateway puts the serving version back.
        self.on_recovered: list[Callable[[], Awaitable[object]]] = []

    @property
    def ready(self) -> bool:
        if self.supervisor is not None:
            return self.supervisor.state == EngineState.READY
        return self._external_ok

    async def wait_ready(self, timeout_s: float) -> bool:
        """Wait until the engine is ready (e.g. restarting after a crash); False on timeout."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not self.ready:
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.5)
        return True

    async def start(self, timeout_s: float) -> None:
        if self.supervisor is not None:
            await self.supervisor.start()
            return
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not await self.client.healthy():
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"engine at {self.client.base_url} not healthy")
            await asyncio.sleep(1.0)
        self._external_ok = True
        self._probe = asyncio.create_task(self._watch_external(), name="engine-probe")

    async def _watch_external(self) -> None:
        while True:
            await asyncio.sleep(2.0)
            ok = await self.client.healthy()
            if ok != self._external_ok:
                log.warning("external engine is %s", "back" if ok else "unreachable")
            if ok and not self._external_ok:
                for callback in self.on_recovered:
                    try:
                        await callback()
                    except Exception:  # noqa: BLE001 - keep probing; the next recovery retries
                        log.exception("restoring the serving version on the engine failed")
            self._external_ok = ok

    async def stop(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        if self.supervisor is not None:
            await self.supervisor.stop()
        await self.client.aclose()

    def status(self) -> dict:
        if self.supervisor is not None:
            sup = self.supervisor
            return {
                "state": sup.state.value,
                "url": self.client.base_url,
                "supervised": True,
                "pid": sup.pid,
                "restarts": sup.restarts,
                "last_error": sup.last_error,
            }
        state = "ready" if self._external_ok else "unreachable"
        return {"state": state, "url": self.client.base_url, "supervised": False}

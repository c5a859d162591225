"""Hot swap: change the serving engine's weights without a restart, verify, or restore.

    pause (mode=wait: in-flight requests finish, new ones queue in the engine)
      -> reload weights in place from the snapshot directory (our worker extension)
      -> reset the prefix cache (KV computed under the old weights must not be reused)
      -> set the engine's weight version and the gateway's served version
      -> resume
      -> verify: weight checksum (against the one recorded for that version, when known) and a
         greedy smoke prompt
    On any failure the previous weights are loaded back the same way and the engine resumed.

The served version changes while the engine is paused, so every response is attributed to the
weights that produced it (see serving.py). One swap at a time (a lock).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engine.client import EngineClient
from engine.runtime import EngineRuntime
from server.chat.serving import ServedModel
from weights.prep import weights_sha256

log = logging.getLogger(__name__)

SMOKE_PROMPT = [{"role": "user", "content": "What is the capital of France?"}]


class SwapError(RuntimeError):
    """A swap failed; the previous version is serving again (``restored``) or not."""

    def __init__(self, message: str, *, restored: bool):
        super().__init__(message)
        self.restored = restored


@dataclass
class SwapTarget:
    """A version to serve: its id, its snapshot directory, and what it must hash to if known.

    ``checksum`` is the engine-side weight checksum recorded when the version last served;
    ``sha256`` the checksum of its safetensors files recorded when the snapshot was written.
    """

    version: str
    path: Path
    checksum: str | None = None
    sha256: str | None = None


@dataclass
class SwapReport:
    version: str
    previous: str
    checksum: str
    pause_to_resume_s: float
    drain_s: float
    load_s: float
    smoke_reply: str
    load_via: str = ""  # "direct" (the proven kernel loader) or "reload" (vLLM's reload_weights)
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


class HotSwapper:
    """Swaps the weights of one serving engine; remembers what it serves now."""

    def __init__(self, engine: EngineRuntime, served: ServedModel, current: SwapTarget):
        self.engine = engine
        self.served = served
        self.current = current
        self._lock = asyncio.Lock()

    @property
    def client(self) -> EngineClient:
        return self.engine.client

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    async def swap(self, target: SwapTarget) -> SwapReport:
        """Serve ``target``; on failure restore the previous version and raise SwapError."""
        async with self._lock:
            previous = self.current
            await self._check_files(target)
            t0 = time.perf_counter()
            await self.client.pause(mode="wait")
            t_paused = time.perf_counter()
            try:
                loaded = await self._load(target)
            except Exception as exc:  # noqa: BLE001 - restore before anyone sees the weights
                log.error("swap to %s failed: %s; restoring %s", target.version, exc, previous.version)
                restored = await self._load_quietly(previous)
                await self.client.resume()
                raise SwapError(f"swap to {target.version} failed: {exc}", restored=restored) from exc
            await self.client.resume()
            t_resumed = time.perf_counter()
            try:
                # Verified after resuming (hashing the weights takes ~0.5 s; the file sha256 was
                # checked before pausing): a mismatch restores the previous version at once.
                checksum = await self._verify(target)
                smoke = await self._smoke()
            except Exception as exc:  # noqa: BLE001
                log.error("verifying %s failed: %s; restoring %s", target.version, exc, previous.version)
                await self.client.pause(mode="wait")
                restored = await self._load_quietly(previous)
                await self.client.resume()
                raise SwapError(f"{target.version} failed verification: {exc}", restored=restored) from exc
            self.current = SwapTarget(target.version, target.path, checksum, target.sha256)
            self._remember_for_restarts(target.path)
            return SwapReport(
                version=target.version,
                previous=previous.version,
                checksum=checksum,
                pause_to_resume_s=t_resumed - t0,
                drain_s=t_paused - t0,
                load_s=loaded["load_seconds"],
                smoke_reply=smoke,
                load_via=loaded.get("via", ""),
                timings={"verify_s": time.perf_counter() - t_resumed},
            )

    async def _verify(self, target: SwapTarget) -> str:
        """The engine's weight checksum; it must equal the one recorded for the version."""
        checksum = (await self.client.rpc("perennial_weights_checksum"))["checksum"]
        if target.checksum and checksum != target.checksum:
            raise ValueError(f"weight checksum {checksum[:12]} != recorded {target.checksum[:12]}")
        return checksum

    async def reapply(self) -> SwapReport | None:
        """Load the current version again if the engine does not hold it (it restarted)."""
        if await self.client.weight_version() == self.current.version:
            return None
        log.warning("engine does not hold %s; loading it again", self.current.version)
        return await self.swap(self.current)

    async def _check_files(self, target: SwapTarget) -> None:
        """Before pausing: the snapshot exists and its files hash to the recorded sha256."""
        if not any(Path(target.path).glob("*.safetensors")):
            raise SwapError(f"snapshot {target.path} holds no safetensors weights", restored=True)
        if target.sha256:
            actual = await asyncio.to_thread(weights_sha256, Path(target.path))
            if actual != target.sha256:
                raise SwapError(
                    f"snapshot {target.path} sha256 {actual[:12]} != recorded {target.sha256[:12]}",
                    restored=True,
                )

    async def _load(self, target: SwapTarget) -> dict:
        """While paused: load, drop cached KV, set the version."""
        loaded = await self.client.rpc("perennial_load_weights", path=str(target.path))
        await self.client.reset_prefix_cache()
        await self.client.update_weight_version(target.version)
        self.served.version = target.version
        return loaded

    async def _load_quietly(self, target: SwapTarget) -> bool:
        try:
            await self._load(target)
            return True
        except Exception:  # noqa: BLE001
            log.exception("restoring %s failed too", target.version)
            return False

    async def _smoke(self) -> str:
        reply = await self.client.chat(
            {"model": self.served.name, "messages": SMOKE_PROMPT, "temperature": 0, "max_tokens": 16}
        )
        text = reply["choices"][0]["message"]["content"] or ""
        if not text.strip():
            raise ValueError("smoke prompt got an empty reply")
        return text

    def _remember_for_restarts(self, path: Path) -> None:
        # A supervised engine that dies restarts from the version it was serving, not the base.
        supervisor = self.engine.supervisor
        if supervisor is not None:
            supervisor.spec.model_dir = Path(path)

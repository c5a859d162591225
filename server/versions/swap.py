"""Hot swap: change the serving replicas' weights without a restart, one replica at a time.

For each replica in turn (a *rolling* swap):

    take it out of rotation and let its requests finish (when another replica serves;
      a lone replica stays in rotation and new requests queue in its engine during the pause)
    -> pause (mode=wait) -> reload weights in place from the snapshot directory (our worker
       extension) -> reset the prefix cache (KV computed under the old weights must not be
       reused) -> set the engine's weight version and the replica's version -> resume
    -> verify: weight checksum (against the one recorded for that version, or else against the
       first replica's) and a greedy smoke prompt -> back into rotation

A replica that fails is restored to the previous weights the same way, and every replica
already swapped is swapped back: a rolling swap ends with all replicas on the new version or all on
the previous one. During a rolling swap both versions serve, each reply stamped with the version of
the replica that produced it (see ``engine.replicas``). One rolling swap at a time (``coordination``:
this process, or every gateway sharing Redis).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from engine.replicas import Replica, ReplicaSet
from server.chat.service import ServedModel
from server.versions.coordination import LocalCoordination, SwapCoordination
from weights.prep import weights_sha256

log = logging.getLogger(__name__)

SMOKE_PROMPT = [{"role": "user", "content": "What is the capital of France?"}]
ENGINE_WAIT_S = 300.0  # how long a rolling swap waits for a restarting replica


class SwapError(RuntimeError):
    """A swap failed; the previous version is serving again (``restored``) or not.

    ``rolled_back``: the replicas that had taken the new version and were swapped back.
    """

    def __init__(self, message: str, *, restored: bool, rolled_back: list[str] | None = None):
        super().__init__(message)
        self.restored = restored
        self.rolled_back = rolled_back or []


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
    """One replica's swap, or a whole rolling swap (then the slowest replica's times, and ``replicas``)."""

    version: str
    previous: str
    checksum: str
    pause_to_resume_s: float
    drain_s: float
    load_s: float
    smoke_reply: str
    load_via: str = ""  # "direct" (the proven kernel loader) or "reload" (vLLM's reload_weights)
    timings: dict[str, float] = field(default_factory=dict)
    replicas: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def rolling_report(reports: list[SwapReport], started: float) -> SwapReport:
    first = reports[0]
    if len(reports) == 1:
        return first
    return replace(
        first,
        pause_to_resume_s=max(r.pause_to_resume_s for r in reports),
        drain_s=max(r.drain_s for r in reports),
        load_s=max(r.load_s for r in reports),
        timings={"rolling_s": time.perf_counter() - started},
        replicas=[r.to_json() for r in reports],
    )


class HotSwapper:
    """Swaps the weights of the serving replicas; remembers what each holds."""

    def __init__(
        self,
        engine: ReplicaSet,
        served: ServedModel,
        current: SwapTarget,
        *,
        coordination: SwapCoordination | None = None,
        drain_timeout_s: float = 60.0,
        settle_s: float = 0.0,
    ):
        self.engine = engine
        self.served = served
        self.current = current
        self.coordination = coordination or LocalCoordination()
        self.drain_timeout_s = drain_timeout_s
        self.settle_s = settle_s
        self.held: dict[str, SwapTarget] = {r.name: current for r in engine.replicas}
        for replica in engine.replicas:
            replica.version = current.version
        self.coordination.attach(self)

    @property
    def busy(self) -> bool:
        return self.coordination.busy

    async def swap(
        self, target: SwapTarget, *, on_served: Callable[[SwapReport], Awaitable[None]] | None = None
    ) -> SwapReport:
        """Serve ``target`` on every replica; on failure restore the previous version and raise SwapError.

        ``on_served(report)`` runs once every replica holds ``target``, still inside the rolling swap
        (e.g. recording the served version, so that no other gateway reads the old one after
        the lock is free). Raises SwapBusy when another rolling swap holds the lock.
        """
        async with self.coordination.hold():
            started = time.perf_counter()
            previous = self.current
            reports: list[SwapReport] = []
            done: list[Replica] = []
            swapping: tuple[Replica, SwapTarget] | None = None
            try:
                for i, replica in enumerate(self.engine.replicas):
                    if i and self.settle_s:
                        await asyncio.sleep(self.settle_s)
                    swapping = (replica, self.held[replica.name])
                    report = await self._swap_replica(replica, target)
                    swapping = None
                    reports.append(report)
                    done.append(replica)
                    # the replicas after the first must hold exactly the same weights
                    target = replace(target, checksum=target.checksum or report.checksum)
            except Exception as raised:  # noqa: BLE001 - whatever failed, what was swapped goes back
                exc = raised
                if not isinstance(raised, SwapError):
                    msg = f"rolling swap of {target.version} failed: {type(raised).__name__}: {raised}"
                    exc = SwapError(msg, restored=True)
                if swapping is not None and self.held[swapping[0].name] is not swapping[1]:
                    done.append(swapping[0])  # it took the target before the failure (its event)
                if not done:
                    if exc is raised:
                        raise
                    raise exc from raised
                names = [r.name for r in done]
                log.error(
                    "rolling swap of %s failed; swapping %s back to %s",
                    target.version,
                    names,
                    previous.version,
                )
                restored = await self._undo(done, previous) and exc.restored
                raise SwapError(
                    f"{exc}; {', '.join(names)} swapped back to {previous.version}",
                    restored=restored,
                    rolled_back=names,
                ) from exc
            self.adopt(replace(target, checksum=reports[0].checksum))
            report = rolling_report(reports, started)
            if on_served is not None:
                await on_served(report)
            await self.coordination.finished(self.current)
            return report

    def adopt(self, target: SwapTarget) -> None:
        """``target`` is the served version (after this or another gateway's rolling swap)."""
        self.current = target
        self.served.version = target.version

    def adopt_replica(self, replica: Replica, target: SwapTarget) -> None:
        """``replica`` holds ``target`` now (another gateway swapped it)."""
        self.held[replica.name] = target
        replica.version = target.version

    async def _undo(self, replicas: list[Replica], previous: SwapTarget) -> bool:
        ok = True
        for replica in reversed(replicas):
            try:
                await self._swap_replica(replica, previous)
            except Exception:  # noqa: BLE001 - try every replica; the caller reports it
                log.exception("swapping %s back to %s failed", replica.name, previous.version)
                ok = False
        return ok

    async def _swap_replica(self, replica: Replica, target: SwapTarget) -> SwapReport:
        await self._check_files(target)
        if not await replica.runtime.wait_ready(ENGINE_WAIT_S):
            raise SwapError(f"{replica.name} is not ready; it kept {replica.version}", restored=True)
        previous = self.held[replica.name]
        client = replica.client
        t0 = time.perf_counter()
        # Out of rotation only while another replica serves: a lone replica queues instead.
        rotate = any(r.serving for r in self.engine.replicas if r is not replica)
        restored, paused, touched = True, False, False
        try:
            if rotate:
                replica.in_rotation = False
                await self.coordination.draining(replica)
                if not await replica.drained(self.drain_timeout_s):
                    log.warning(
                        "%s still busy after %.0f s; pausing it anyway", replica.name, self.drain_timeout_s
                    )
            t_drained = time.perf_counter()
            paused = True  # from here on a failure may leave it paused
            await client.pause(mode="wait")
            t_paused = time.perf_counter()
            try:
                touched = True
                loaded = await self._load(replica, target)
            except Exception as exc:  # noqa: BLE001 - restore before anyone sees the weights
                log.error(
                    "swap of %s to %s failed: %s; restoring %s",
                    replica.name,
                    target.version,
                    exc,
                    previous.version,
                )
                restored = await self._load_quietly(replica, previous)
                await client.resume()
                raise SwapError(
                    f"swap of {replica.name} to {target.version} failed: {exc}", restored=restored
                ) from exc
            await client.resume()
            t_resumed = time.perf_counter()
            try:
                # Verified after resuming (hashing the weights takes ~0.5 s; the file sha256 was
                # checked before pausing): a mismatch restores the previous version at once.
                checksum = await self._verify(client, target)
                smoke = await self._smoke(client)
            except Exception as exc:  # noqa: BLE001
                log.error(
                    "verifying %s on %s failed: %s; restoring %s",
                    target.version,
                    replica.name,
                    exc,
                    previous.version,
                )
                await client.pause(mode="wait")
                restored = await self._load_quietly(replica, previous)
                await client.resume()
                raise SwapError(
                    f"{target.version} failed verification on {replica.name}: {exc}", restored=restored
                ) from exc
        except SwapError:
            raise
        except Exception as exc:  # noqa: BLE001 - the engine or the coordination failed around the load
            # (pause / resume refused, the engine died, Redis down): the caller swaps back what it
            # swapped and audits it, never a bare 500. Its weights are known only if no load began.
            restored = not touched
            if paused:
                with contextlib.suppress(Exception):  # a live engine is never left paused
                    await client.resume()
            raise SwapError(
                f"swap of {replica.name} to {target.version} failed: {type(exc).__name__}: {exc}",
                restored=restored,
            ) from exc
        finally:
            if rotate and restored:  # a replica whose weights are unknown stays out
                replica.in_rotation = True
        self.held[replica.name] = replace(target, checksum=checksum)
        self._remember_for_restarts(replica, target.path)
        await self.coordination.swapped(replica, self.held[replica.name])
        return SwapReport(
            version=target.version,
            previous=previous.version,
            checksum=checksum,
            pause_to_resume_s=t_resumed - t_drained,
            drain_s=t_paused - t0,
            load_s=loaded["load_seconds"],
            smoke_reply=smoke,
            load_via=loaded.get("via", ""),
            timings={"verify_s": time.perf_counter() - t_resumed, "replica": replica.name},
        )

    @staticmethod
    async def _verify(client, target: SwapTarget) -> str:
        """The engine's weight checksum; it must equal the one recorded for the version."""
        checksum = (await client.rpc("perennial_weights_checksum"))["checksum"]
        if target.checksum and checksum != target.checksum:
            raise ValueError(f"weight checksum {checksum[:12]} != recorded {target.checksum[:12]}")
        return checksum

    async def restore_held(self, replica: Replica) -> None:
        """A replica that came back (restarted) holds what it held before, before it serves.

        A supervised replica restarts from the snapshot it last held (``_remember_for_restarts``):
        only its version label is set. An attached engine restarted on whatever it was started
        with: the held snapshot is loaded again if it reports another version.
        """
        held = self.held[replica.name]
        client = replica.client
        if replica.runtime.supervisor is None and await client.weight_version() != held.version:
            log.warning("%s does not hold %s; loading it again", replica.name, held.version)
            await client.rpc("perennial_load_weights", path=str(held.path))
            await client.reset_prefix_cache()
        await client.update_weight_version(held.version)
        replica.version = held.version
        if not self.busy:  # a replica a failed swap left out comes back once its weights are known
            replica.in_rotation = True

    def restorer(self, replica: Replica):
        return functools.partial(self.restore_held, replica)

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

    @staticmethod
    async def _load(replica: Replica, target: SwapTarget) -> dict:
        """While paused: load, drop cached KV, set the version."""
        client = replica.client
        loaded = await client.rpc("perennial_load_weights", path=str(target.path))
        await client.reset_prefix_cache()
        await client.update_weight_version(target.version)
        replica.version = target.version
        return loaded

    async def _load_quietly(self, replica: Replica, target: SwapTarget) -> bool:
        try:
            await self._load(replica, target)
            return True
        except Exception:  # noqa: BLE001
            log.exception("restoring %s on %s failed too", target.version, replica.name)
            return False

    async def _smoke(self, client) -> str:
        reply = await client.chat(
            {"model": self.served.name, "messages": SMOKE_PROMPT, "temperature": 0, "max_tokens": 16}
        )
        text = reply["choices"][0]["message"]["content"] or ""
        if not text.strip():
            raise ValueError("smoke prompt got an empty reply")
        return text

    @staticmethod
    def _remember_for_restarts(replica: Replica, path: Path) -> None:
        # A supervised replica that dies restarts from the version it was serving, not the base.
        supervisor = replica.runtime.supervisor
        if supervisor is not None:
            supervisor.spec.model_dir = Path(path)

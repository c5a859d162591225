"""The learner service: runs queued rounds one at a time; a scheduler queues them.

* A round is asked for by inserting a ``queued`` run (``enqueue_round``: the admin API, or the
  scheduled check when enough new feedback arrived). The runner loop claims queued runs in
  order while holding the ``round`` lock in the database, so rounds never overlap, even across
  processes; a heartbeat renews the lock while a round runs.
* The scheduler is APScheduler's ``AsyncIOScheduler`` with an interval or cron trigger,
  coalescing, one instance at a time, calling this service's ``check_feedback``. Its job lives
  in memory: it is re-created at every start (a persisted job was replaced at start anyway),
  and our database's schema stays Alembic's alone. Exactly one process runs it:
  ``perennial serve`` in the embedded default, ``perennial learner`` in production; the
  round lock keeps rounds from overlapping even if two did.
* The learner engine (a second vLLM engine, prefix caching off) starts with the first round
  and stays up; if it died, the next round starts a new one.
* A round that raises is marked ``failed`` with its error; one whose process died is marked
  ``failed`` at the next start. Neither touches the served version.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from engine.supervisor import reap_stale
from evals.suites import load_probes, split_looks, trim
from learner.engines import ESEngine, LocalLearnerEngine
from learner.gate_eval import cached_suite_scores, load_dir
from learner.round import Promote, RoundContext, room_for_candidate, run_round
from learner.settings import LearnerSettings
from learner.suites_store import enabled_suites, register_builtin_suites
from learner.yielding import ChatGuard, ChatYield
from store.db import Database
from store.models import Round, utcnow
from store.rounds import (
    RoundBusy,
    acquire_lock,
    active_round,
    add_round,
    count_feedback_after,
    fail_interrupted,
    feedback_cursor,
    list_rounds,
    next_queued,
    release_lock,
    update_round,
)
from store.versions import BASE, serving_version
from weights.config import ConfigError

log = logging.getLogger(__name__)

LOCK = "round"
JOB_ID = "perennial-learner-round-check"


def validate_overrides(settings: LearnerSettings, overrides: dict[str, Any]) -> None:
    """Raise ConfigError (naming the field) if the round's ES or gate overrides are invalid."""
    settings.es_config(0, overrides.get("es"))
    try:
        settings.thresholds(overrides.get("gate"))
    except (TypeError, ValueError) as exc:
        raise ConfigError("gate", str(exc)) from exc


async def enqueue_round(
    db: Database, settings: LearnerSettings, overrides: dict[str, Any], trigger: str
) -> Round:
    """Queue a round; raise RoundBusy if one is queued or running, ConfigError if invalid."""
    validate_overrides(settings, overrides)
    async with db.sessions() as session:
        busy = await active_round(session)
        if busy is not None:
            raise RoundBusy(busy)
        run = await add_round(session, config={"trigger": trigger, "overrides": overrides})
        await session.commit()
        return run


class LearnerService:
    """Owns the runner loop, the scheduler and the learner engine of one process."""

    def __init__(
        self,
        db: Database,
        settings: LearnerSettings,
        base_dir: Path,
        promote: Promote,
        *,
        schedule: bool = True,
        chats_in_flight: Callable[[], int] | None = None,
    ):
        """A learner for one process.

        Args:
            db: the store.
            settings: the learner's settings.
            base_dir: theta0's model directory (the AWD anchor).
            promote: how a passing candidate is served (the gateway's verified hot swap).
            schedule: run the scheduled feedback check (False: only queued rounds run).
            chats_in_flight: the gateway's count of chats being served, when the learner
                shares the machine with it (embedded mode); with ``learner_yield_max_s`` > 0
                each member waits for it to reach 0, up to that long (:mod:`learner.yielding`).
        """
        self.db = db
        self.settings = settings
        self.base_dir = base_dir
        self.promote = promote
        self.schedule = schedule
        self.chats_in_flight = chats_in_flight
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.engine: ESEngine | None = None
        self.running: int | None = None
        self._loop_task: asyncio.Task | None = None
        self._scheduler: Any = None
        self._probes = load_probes()
        self.engine_log = settings.logs_dir / "learner-engine.log"

    async def start(self) -> None:
        async with self.db.sessions() as session:
            failed = await fail_interrupted(session, reason="interrupted: the learner stopped mid-round")
            await session.commit()
        if failed:
            log.warning("marked %d interrupted round(s) failed", failed)
        # A learner that was killed leaves its engine (GBs of memory, spinning threads) behind;
        # clean it up now rather than at the next round's engine start.
        reap_stale(self.engine_log.with_suffix(".pgid"))
        await register_builtin_suites(self.db)
        self._loop_task = asyncio.create_task(self._loop(), name="learner-loop")
        if self.schedule and (self.settings.learner_interval_s or self.settings.learner_cron):
            self._start_scheduler()

    def _start_scheduler(self) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        s = self.settings
        scheduler = AsyncIOScheduler()
        trigger = (
            CronTrigger.from_crontab(s.learner_cron)
            if s.learner_cron
            else IntervalTrigger(seconds=s.learner_interval_s)
        )
        scheduler.add_job(
            self.check_feedback,
            trigger,
            id=JOB_ID,
            replace_existing=True,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=max(60, int(s.learner_interval_s or 60)),
        )
        scheduler.start()
        self._scheduler = scheduler
        log.info("learner schedule: %s", s.learner_cron or f"every {s.learner_interval_s:.0f} s")

    async def check_feedback(self) -> Round | None:
        """The scheduled check: queue a round if enough new feedback arrived and none is active."""
        async with self.db.sessions() as session:
            if await active_round(session) is not None:
                return None
            last = (await list_rounds(session, limit=1) or [None])[0]
            backoff = timedelta(seconds=self.settings.learner_failure_backoff_s)
            if (
                last is not None
                and last.status == "failed"
                and last.finished_at
                and utcnow() - last.finished_at < backoff
            ):
                return None  # a failing learner must not retry on every tick
            new = await count_feedback_after(session, after_seq=await feedback_cursor(session))
        if new < self.settings.learner_min_feedback:
            log.info(
                "scheduled check: %d new feedback < %d; no round", new, self.settings.learner_min_feedback
            )
            return None
        with contextlib.suppress(RoundBusy):
            return await enqueue_round(self.db, self.settings, {}, trigger="schedule")
        return None

    async def _loop(self) -> None:
        if self.settings.learner_prepare:
            await self.prepare()
        while True:
            try:
                await self._run_next()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the loop must survive anything
                log.exception("learner loop error")
            await asyncio.sleep(self.settings.learner_poll_s)

    async def prepare(self) -> None:
        """While no round runs: start the learner engine and cache the gate's suite scores of
        the base and of the serving version, so that the first round pays for neither.

        A round that is queued meanwhile waits (the loop runs one thing at a time); a failure is
        logged and left to the round, which starts the engine and scores what is missing itself.
        """
        started = time.perf_counter()
        try:
            engine = await self._ensure_engine()
            suites = trim(await enabled_suites(self.db), self.settings.gate_suite_max_items)
            async with self.db.sessions() as session:
                serving = await serving_version(session)
            async with self._chat_guard(engine):
                for part in split_looks(suites, self.settings.gate_looks):  # cached as the gate reads them
                    await cached_suite_scores(self.db, engine, part, BASE, load=engine.load_base)
                    if serving is not None and serving.id != BASE:
                        await cached_suite_scores(
                            self.db,
                            engine,
                            part,
                            serving.id,
                            load=load_dir(engine, Path(serving.snapshot_path)),
                        )
            log.info(
                "learner prepared in %.0f s (engine up, gate scores of the served versions cached)",
                time.perf_counter() - started,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the first round will do it
            log.warning(
                "learner preparation failed (the first round will redo it): %s: %s", type(exc).__name__, exc
            )

    async def _run_next(self) -> None:
        async with self.db.sessions() as session:
            run = await next_queued(session)
            if run is None:
                return
            if not await acquire_lock(
                session, name=LOCK, holder=self.holder, ttl_s=self.settings.learner_lock_ttl_s
            ):
                return
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            await self._execute(run)
        finally:
            heartbeat.cancel()
            async with self.db.sessions() as session:
                await release_lock(session, name=LOCK, holder=self.holder)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.learner_lock_ttl_s / 3)
            async with self.db.sessions() as session:
                await acquire_lock(
                    session, name=LOCK, holder=self.holder, ttl_s=self.settings.learner_lock_ttl_s
                )

    async def _execute(self, run: Round) -> None:
        self.running = run.id
        async with self.db.sessions() as session:
            await update_round(session, round_id=run.id, status="running", started_at=utcnow())
            await session.commit()
        values: dict[str, Any]
        try:
            await room_for_candidate(self.db, self.settings)  # a full disk fails before any work
            engine = await self._ensure_engine()
            ctx = RoundContext(
                self.db,
                engine,
                self.settings,
                self.base_dir,
                lambda: enabled_suites(self.db),
                self._probes,
                self.promote,
                before_member=self._chat_yield(),
            )
            async with self._chat_guard(engine) as guard:
                outcome = await run_round(ctx, run.id, (run.config or {}).get("overrides") or {})
            if guard is not None:
                log.info(
                    "round %d: learner paused %d times for chats, %.1f s in all",
                    run.id,
                    guard.pauses,
                    guard.paused_s,
                )
            values = {"status": "succeeded", "decision": outcome.decision}
            log.info("round %d: %s %s", run.id, outcome.decision, outcome.candidate)
        except asyncio.CancelledError:
            values = {"status": "failed", "error": "cancelled: the learner is shutting down"}
            raise
        except Exception as exc:  # noqa: BLE001 - a failed round leaves serving untouched
            log.exception("round %d failed", run.id)
            values = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:4000]}
        finally:
            self.running = None
            async with self.db.sessions() as session:
                await update_round(session, round_id=run.id, finished_at=utcnow(), **values)
                await session.commit()

    def _chat_yield(self) -> ChatYield | None:
        if self.chats_in_flight is None or self.settings.learner_yield_max_s <= 0:
            return None
        return ChatYield(self.chats_in_flight, max_wait_s=self.settings.learner_yield_max_s)

    def _chat_guard(self, engine: ESEngine) -> contextlib.AbstractAsyncContextManager[ChatGuard | None]:
        """Pause the learner engine while chats are served (embedded learner, one engine only)."""
        s = self.settings
        if self.chats_in_flight is None or s.learner_chat_pause_max_s <= 0 or not engine.pausable:
            return contextlib.nullcontext()
        return ChatGuard(
            self.chats_in_flight,
            engine.client,
            max_pause_s=s.learner_chat_pause_max_s,
            min_run_s=s.learner_chat_pause_min_run_s,
        )

    async def _ensure_engine(self) -> ESEngine:
        from engine.chat_format import chat_format

        engine = self.engine
        if engine is not None and engine.degraded:
            # one engine that died, or a learner on Ray that lost an actor: a full set again
            log.warning("the learner engine died; starting a new one")
            await engine.close()
            engine = None
        if engine is None:
            s = self.settings
            options = dict(
                base_dir=self.base_dir,
                # the template and tool parser of serving: members see prompts as clients do
                extra_args=chat_format(s, self.base_dir).args() + s.learner_engine_args,
                cpu_threads=s.learner_cpu_threads,
                prefix_cache=s.learner_prefix_cache,
                dtype=s.engine_dtype,  # members are judged in the numerics that serve them
                nice=s.learner_nice,
                start_timeout_s=s.learner_engine_start_timeout_s,
                snapshot_root=s.versions_dir,  # a round's candidate: the only place it writes
            )
            if s.learner_ray:
                from learner.distributed import RayLearnerEngine

                engine = await RayLearnerEngine.start(
                    self.base_dir,
                    address=s.learner_ray,
                    actors=s.learner_ray_actors,
                    cpus_per_actor=s.learner_ray_cpus_per_actor,
                    gpus_per_actor=s.learner_ray_gpus_per_actor,
                    log_dir=self.engine_log.parent / "learner-ray",
                    **options,
                )
            else:
                engine = await LocalLearnerEngine.start(self.base_dir, log_file=self.engine_log, **options)
            self.engine = engine
        return engine

    async def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self.engine is not None:
            await self.engine.close()

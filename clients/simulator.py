"""Simulated users: chat with a running Perennial and give feedback, at a set rate and volume.

Each simulated user asks a task's prompts through the official ``openai`` client and answers
the reply through the feedback API (plain HTTP), the way a real user of the deployment would:

* ``reference``: the user knows the right answer and sends it with its verifier (the learner
  then scores its own candidates with that verifier);
* ``thumbs``: up or down, from the user's hidden judgement (a verifier or a style preference);
* ``reward``: the same judgement as a scalar in [-1, 1]; ``both``: reference and thumbs;
* ``auto``: ``reference`` for tasks with answers, ``thumbs`` for style preferences.

Everything random (which prompts, which chats get feedback, which user) is drawn from ``seed``
before the first request, so a run is reproducible whatever the server's timing. Arrivals are
open-loop at ``rate`` per second (bounded by ``concurrency`` in flight). Errors are counted and
sampled in the report, never raised per request.

    perennial simulate --url http://127.0.0.1:8000 --api-key sk-... --task addition --count 200 --rate 4

    report = run_simulation(builtin_task("addition"), SimulationConfig(url, api_key, count=50))
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import httpx
from openai import APIError, AsyncOpenAI

from clients.sim_tasks import Ask, Task

FeedbackMode = Literal["auto", "reference", "thumbs", "reward", "both", "none"]
MAX_ERRORS_KEPT = 5


class SimulationError(RuntimeError):
    """The simulation cannot start (no model to talk to, a mode the task cannot give)."""


@dataclass(frozen=True)
class SimulationConfig:
    """How many users chat, how fast, and how they give feedback."""

    url: str  # the gateway, e.g. http://127.0.0.1:8000 (a trailing /v1 is accepted)
    api_key: str | None = None
    count: int = 100  # chats in all
    rate: float | None = None  # chats started per second; None: as fast as concurrency allows
    concurrency: int = 8
    feedback: FeedbackMode = "auto"
    feedback_fraction: float = 1.0  # share of chats that get feedback
    users: int = 4
    seed: int = 0
    model: str | None = None  # None: the first model the server lists
    max_tokens: int = 32
    temperature: float = 0.0
    timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if self.count < 0 or self.concurrency < 1 or self.users < 1:
            raise SimulationError("count must be >= 0, concurrency and users >= 1")
        if self.rate is not None and self.rate <= 0:
            raise SimulationError("rate must be > 0 (or None for unpaced)")
        if not 0.0 <= self.feedback_fraction <= 1.0:
            raise SimulationError("feedback_fraction must be in [0, 1]")

    @property
    def root(self) -> str:
        return self.url.rstrip("/").removesuffix("/v1")


@dataclass
class SimulationReport:
    """What the simulation sent and what came back."""

    task: str
    model: str
    chats: int = 0
    chat_errors: int = 0
    feedback_sent: int = 0
    feedback_errors: int = 0
    feedback_kinds: Counter = field(default_factory=Counter)
    judged: list[float] = field(default_factory=list)  # the users' hidden scores of the replies
    versions: Counter = field(default_factory=Counter)  # x-perennial-model-version of replies
    latencies_s: list[float] = field(default_factory=list)
    completion_ids: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    def error(self, text: str) -> None:
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(text[:300])

    @property
    def mean_score(self) -> float | None:
        return statistics.fmean(self.judged) if self.judged else None

    def to_json(self) -> dict[str, Any]:
        """Counts and summaries (not the per-chat lists, except completion ids)."""
        lat = sorted(self.latencies_s)
        out = {k: v for k, v in asdict(self).items() if k not in ("judged", "latencies_s")}
        out.update(
            feedback_kinds=dict(self.feedback_kinds),
            versions=dict(self.versions),
            mean_score=self.mean_score,
            judged=len(self.judged),
            latency_p50_s=lat[len(lat) // 2] if lat else None,
            latency_p95_s=lat[int(len(lat) * 0.95)] if lat else None,
            rate_achieved=self.chats / self.wall_s if self.wall_s else None,
        )
        return out

    def summary(self) -> str:
        score = "n/a" if self.mean_score is None else f"{self.mean_score:.3f}"
        return (
            f"{self.task}: {self.chats} chats ({self.chat_errors} errors), {self.feedback_sent} "
            f"feedback ({self.feedback_errors} errors) {dict(self.feedback_kinds)}, users' score "
            f"{score}, versions {dict(self.versions)}, {self.wall_s:.1f} s"
        )


@dataclass(frozen=True)
class Planned:
    """One chat of the plan: what is asked, by whom, when, and whether feedback follows."""

    index: int
    ask: Ask
    user: str
    start_s: float
    give_feedback: bool


def plan(task: Task, config: SimulationConfig) -> list[Planned]:
    """The whole run, drawn from ``config.seed`` before any request (reproducible)."""
    rng = random.Random(config.seed)
    asks = task.asks(rng, config.count)
    gives = [rng.random() < config.feedback_fraction for _ in asks]
    step = 0.0 if config.rate is None else 1.0 / config.rate
    return [
        Planned(i, ask, f"sim-{config.seed}-{i % config.users}", i * step, give)
        for i, (ask, give) in enumerate(zip(asks, gives, strict=True))
    ]


def resolve_mode(task: Task, mode: FeedbackMode) -> FeedbackMode:
    if mode == "auto":
        return "reference" if task.verifiable else "thumbs"
    if mode in ("reference", "both") and not task.verifiable:
        raise SimulationError(f"task {task.name!r} has no reference answers; use thumbs or reward")
    return mode


def feedback_body(
    completion_id: str, planned: Planned, judged: float | None, mode: FeedbackMode, seed: int
) -> dict[str, Any] | None:
    """The feedback a user sends for one reply (None: nothing to say in this mode)."""
    ask = planned.ask
    body: dict[str, Any] = {
        "completion_id": completion_id,
        "task": ask.task,
        "metadata": {"simulator": "perennial", "user": planned.user, "seed": seed},
    }
    if mode in ("reference", "both"):
        body.update(reference=ask.reference, verifier=ask.verifier)
    if mode in ("thumbs", "both") and judged is not None:
        body["label"] = "up" if judged >= 1.0 else "down"
    if mode == "reward" and judged is not None:
        body["reward"] = round(2.0 * judged - 1.0, 6)
    return body if len(body) > 3 else None


class _Session:
    """The clients and counters of one run."""

    def __init__(
        self, task: Task, config: SimulationConfig, model: str, oai: AsyncOpenAI, http: httpx.AsyncClient
    ):
        self.task, self.config, self.model, self.oai, self.http = task, config, model, oai, http
        self.mode = resolve_mode(task, config.feedback)
        self.report = SimulationReport(task.name, model)
        self.sem = asyncio.Semaphore(config.concurrency)

    async def one(self, planned: Planned, t0: float) -> None:
        await asyncio.sleep(max(0.0, t0 + planned.start_s - time.perf_counter()))
        async with self.sem:
            reply = await self.chat(planned)
            if reply is None:
                return
            completion_id, text = reply
            judged = self.task.judge(planned.ask, text)
            if judged is not None:
                self.report.judged.append(judged)
            if planned.give_feedback and self.mode != "none":
                body = feedback_body(completion_id, planned, judged, self.mode, self.config.seed)
                if body is not None:
                    await self.send(body)

    async def chat(self, planned: Planned) -> tuple[str, str] | None:
        report, started = self.report, time.perf_counter()
        try:
            raw = await self.oai.chat.completions.with_raw_response.create(
                model=self.model,
                messages=list(planned.ask.messages),
                user=planned.user,
                max_tokens=self.config.max_tokens,
                temperature=self.config.temperature,
            )
            completion = raw.parse()
        except APIError as exc:
            report.chat_errors += 1
            report.error(f"chat: {type(exc).__name__}: {exc}")
            return None
        report.chats += 1
        report.latencies_s.append(time.perf_counter() - started)
        report.versions[raw.headers.get("x-perennial-model-version", "unknown")] += 1
        report.completion_ids.append(completion.id)
        return completion.id, completion.choices[0].message.content or ""

    async def send(self, body: dict[str, Any]) -> None:
        report = self.report
        try:
            response = await self.http.post("/v1/feedback", json=body)
        except httpx.HTTPError as exc:
            report.feedback_errors += 1
            report.error(f"feedback: {type(exc).__name__}: {exc}")
            return
        if response.status_code in (200, 201, 202):
            report.feedback_sent += 1
            report.feedback_kinds.update(k for k in ("reference", "label", "reward") if k in body)
        else:
            report.feedback_errors += 1
            report.error(f"feedback: HTTP {response.status_code}: {response.text}")


async def simulate(task: Task, config: SimulationConfig) -> SimulationReport:
    """Run the simulated users against ``config.url`` and report what was sent.

    Args:
        task: what the users ask and how they judge (see ``clients.sim_tasks``).
        config: volume, rate, concurrency, feedback mode, seed, credentials.
    Returns:
        A :class:`SimulationReport`. Raises SimulationError only if nothing can start (the
        server lists no model, or the mode does not fit the task).
    """
    headers = {"authorization": f"Bearer {config.api_key}"} if config.api_key else {}
    resolve_mode(task, config.feedback)
    async with (
        AsyncOpenAI(
            base_url=config.root + "/v1",
            api_key=config.api_key or "none",
            max_retries=0,
            timeout=config.timeout_s,
        ) as oai,
        httpx.AsyncClient(base_url=config.root, headers=headers, timeout=config.timeout_s) as http,
    ):
        model = config.model or await first_model(oai)
        session = _Session(task, config, model, oai, http)
        t0 = time.perf_counter()
        await asyncio.gather(*(session.one(p, t0) for p in plan(task, config)))
        session.report.wall_s = time.perf_counter() - t0
        return session.report


async def first_model(oai: AsyncOpenAI) -> str:
    try:
        models = await oai.models.list()
    except APIError as exc:
        raise SimulationError(f"cannot list the server's models: {exc}") from exc
    if not models.data:
        raise SimulationError("the server lists no model")
    return models.data[0].id


def run_simulation(task: Task, config: SimulationConfig) -> SimulationReport:
    """Synchronous :func:`simulate` (for scripts and the CLI)."""
    return asyncio.run(simulate(task, config))

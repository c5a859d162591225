"""Start real ``perennial serve`` and ``perennial ingest`` subprocesses; the model they serve."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from engine.supervisor import _die_with_parent

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".data" / "test-cache"
# The model id the shared serving engine serves the prepared SmolLM2 under.
SERVED_MODEL = "smollm2-135m-instruct"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shared_model_dir() -> Path:
    """The bundled model, converted once per machine into .data/test-cache (reused by runs)."""
    from weights.prep import prepare_bundled_model

    return prepare_bundled_model(CACHE / "models")


@dataclass
class RunningServer:
    url: str
    data_dir: Path
    log_file: Path
    proc: subprocess.Popen
    env: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_server(data_dir: Path, env: dict[str, str], *, timeout: float = 400) -> RunningServer:
    """Run ``perennial serve`` with ``env`` on a free port; return once /health says ok."""
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_file = data_dir / "serve.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PERENNIAL_")}
    # A server's learner engine starts with its first round, not at boot, unless the test asks:
    # most test servers never run a round, and several run side by side on a 2-core machine.
    full_env["PERENNIAL_LEARNER_PREPARE"] = "false"
    full_env.update(env)
    full_env["PYTHONUNBUFFERED"] = "1"
    cmd = [sys.executable, "-m", "perennial.cli", "serve", "--port", str(port), "--data-dir", str(data_dir)]
    with open(log_file, "ab") as log:
        # Dies with the test process even when it is killed before fixture teardown; its
        # engine follows (the supervisor gives the engine the same parent-death signal).
        proc = subprocess.Popen(
            cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, preexec_fn=_die_with_parent
        )
    server = RunningServer(f"http://127.0.0.1:{port}", data_dir, log_file, proc, env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"perennial serve exited ({proc.returncode}):\n{server.log_tail()}")
        try:
            if httpx.get(server.url + "/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(1)
    server.stop()
    raise TimeoutError(f"perennial serve not healthy after {timeout} s:\n{server.log_tail()}")


def start_ingest_worker(env: dict[str, str], log_file: Path) -> subprocess.Popen:
    """``perennial ingest`` with ``env`` (PERENNIAL_* only from it); stop it with SIGTERM."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("PERENNIAL_")} | env
    with open(log_file, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "perennial.cli", "ingest"],
            env=full,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

"""Engine supervisor pieces that need no engine."""

from __future__ import annotations


def test_reap_stale_kills_a_recorded_engine_group_and_only_that(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from engine.supervisor import reap_stale

    # A stand-in "engine" in its own process group, named like vLLM's processes.
    child = subprocess.Popen(
        [sys.executable, "-c", "import time, sys; sys.argv[0]='vllm'; time.sleep(60)", "vllm-stand-in"],
        start_new_session=True,
    )
    import time
    from pathlib import Path

    deadline = time.monotonic() + 5  # /proc shows the command line a moment after the spawn
    while not Path(f"/proc/{child.pid}/cmdline").read_bytes() and time.monotonic() < deadline:
        time.sleep(0.01)
    pid_file = tmp_path / "engine.pgid"
    pid_file.write_text(f"{child.pid}\n")
    try:
        assert reap_stale(pid_file) is True
        assert child.wait(timeout=10) == -signal.SIGKILL
        assert not pid_file.exists()
        pid_file.write_text(f"{os.getpgid(0)}\n")  # never our own group
        assert reap_stale(pid_file) is False
        assert reap_stale(tmp_path / "missing.pgid") is False
    finally:
        if child.poll() is None:
            child.kill()


def test_an_engine_started_nice_runs_at_that_cpu_priority_and_so_do_its_children(tmp_path):
    import functools
    import os
    import subprocess
    import sys

    from engine.supervisor import EngineSpec, _start_child

    code = "import os, subprocess, sys; print(os.nice(0), subprocess.check_output([sys.executable, '-c', 'import os; print(os.nice(0))']).decode().strip())"
    base = os.nice(0)
    out = subprocess.check_output([sys.executable, "-c", code], preexec_fn=functools.partial(_start_child, 7))
    assert out.split() == [str(base + 7).encode(), str(base + 7).encode()]
    assert EngineSpec(model_dir=tmp_path, served_name="m", log_file=tmp_path / "log").nice == 0  # serving


def test_sleep_when_idle_shortens_the_queue_readers_poll_and_says_so(monkeypatch):
    from vllm.distributed.device_communicators.shm_broadcast import SpinCondition

    from engine.idle import IDLE_SPIN_ENV, idle_spin, sleep_when_idle

    default = SpinCondition.__init__.__defaults__
    try:
        monkeypatch.delenv(IDLE_SPIN_ENV, raising=False)
        assert sleep_when_idle() == {"idle_spin_s": None, "patched_queues": 0}  # not an engine
        assert idle_spin() == 1.0  # vLLM's own: a second of polling after every step
        monkeypatch.setenv(IDLE_SPIN_ENV, "0.005")
        assert sleep_when_idle()["idle_spin_s"] == 0.005 and idle_spin() == 0.005
    finally:
        SpinCondition.__init__.__defaults__ = default


def test_the_serving_engines_idle_poll_comes_from_its_setting(tmp_path, monkeypatch):
    """PERENNIAL_ENGINE_IDLE_SPIN_S reaches the serving engine (default 50 ms); empty: vLLM's own."""
    from engine.idle import IDLE_SPIN_ENV
    from server.settings import Settings
    from server.versions.boot import build_engine

    def spin(value: str | None) -> str | None:
        if value is None:
            monkeypatch.delenv("PERENNIAL_ENGINE_IDLE_SPIN_S", raising=False)
        else:
            monkeypatch.setenv("PERENNIAL_ENGINE_IDLE_SPIN_S", value)
        runtime = build_engine(Settings(data_dir=tmp_path), "m", tmp_path)
        return runtime.supervisor.spec.environment().get(IDLE_SPIN_ENV)

    monkeypatch.delenv(IDLE_SPIN_ENV, raising=False)
    assert spin(None) == "0.05"
    assert spin("0.005") == "0.005"
    assert spin("") is None  # vLLM's own second of polling


async def _supervise(tmp_path, monkeypatch, *, lives_s: float, deaths: int):
    """A supervisor whose "engine" is ``sleep lives_s`` (ready at once), watched until it has
    died ``deaths`` times or the supervisor gave up."""
    import asyncio

    from engine.supervisor import EngineSpec, EngineState, EngineSupervisor

    class Spec(EngineSpec):
        def command(self, port: int) -> list[str]:
            return ["sleep", str(lives_s)]

    async def healthy(proc) -> None:
        return None

    spec = Spec(model_dir=tmp_path, served_name="m", log_file=tmp_path / "engine.log")
    sup = EngineSupervisor(spec, max_restarts=3, healthy_reset_s=0.5)
    sup.poll_s = 0.01
    monkeypatch.setattr(sup, "_wait_healthy", healthy)
    await sup.start()
    try:
        for _ in range(1000):
            if sup.restarts >= deaths or sup.state == EngineState.FAILED:
                break
            await asyncio.sleep(0.02)
        return sup.state, sup.restarts
    finally:
        await sup.stop(grace_s=1)


async def test_an_engine_that_recovers_between_crashes_is_always_restarted(tmp_path, monkeypatch):
    """Six crashes in a process's life, each after a healthy spell: never FAILED (was: the 6th)."""
    from engine.supervisor import EngineState

    state, restarts = await _supervise(tmp_path, monkeypatch, lives_s=0.7, deaths=6)
    assert restarts == 6 and state != EngineState.FAILED


async def test_a_crash_loop_stops_after_max_restarts_consecutive_failures(tmp_path, monkeypatch):
    from engine.supervisor import EngineState

    state, restarts = await _supervise(tmp_path, monkeypatch, lives_s=0, deaths=10)
    assert state == EngineState.FAILED and restarts == 3

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
    from server.app import build_engine
    from server.settings import Settings

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

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

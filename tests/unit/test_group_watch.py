"""engine.group_watch: an engine's processes end when the group's leader (the API server) is gone."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

from engine.group_watch import leader_alive, watch_group_leader

REPO = Path(__file__).resolve().parents[2]

# The "engine core": a member of the leader's group that runs the watch, as a worker does.
MEMBER = "from engine.group_watch import watch_group_leader; import time; watch_group_leader(0.05, force=True); time.sleep(120)"
# The "API server": leads a new group, starts the member, prints its pid, then waits.
LEADER = textwrap.dedent(
    f"""
    import subprocess, sys, time
    member = subprocess.Popen([sys.executable, "-c", {MEMBER!r}])
    print(member.pid, flush=True)
    time.sleep(120)
    """
)


def spawn_group(member_code: str = MEMBER) -> tuple[subprocess.Popen, int]:
    leader_code = LEADER.replace(repr(MEMBER), repr(member_code))
    leader = subprocess.Popen(
        [sys.executable, "-c", leader_code],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    return leader, int(leader.stdout.readline())


def wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while leader_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not leader_alive(pid)


def test_a_sigkilled_leader_takes_the_members_with_it():
    leader, member = spawn_group()
    try:
        time.sleep(1.0)  # the member's watch is running
        assert leader_alive(member)
        leader.kill()  # SIGKILL: the API server cannot stop its children
        leader.wait(timeout=10)
        assert wait_gone(member, 10)
    finally:
        subprocess.run(["kill", "-9", str(leader.pid)], capture_output=True)


def test_without_the_watch_the_member_outlives_its_leader():
    """What the watch fixes (and proof this test can fail): a plain member stays."""
    leader, member = spawn_group("import time; time.sleep(120)")
    try:
        leader.kill()
        leader.wait(timeout=10)
        assert not wait_gone(member, 1.5)
    finally:
        subprocess.run(["kill", "-9", str(member)], capture_output=True)


def test_the_watch_starts_only_in_engine_processes_and_never_in_the_leader(monkeypatch):
    monkeypatch.delenv("ENGINE_GROUP_WATCH", raising=False)
    assert watch_group_leader() is None
    code = "import os; os.setpgid(0, 0); from engine.group_watch import watch_group_leader as w; print(w(force=True))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "None"

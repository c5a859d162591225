"""An engine's processes end together: its worker ends the process group once the leader is gone.

The supervisor starts vLLM's API server as the leader of a new process group, and it dies with
the supervisor (``PR_SET_PDEATHSIG``). The API server's engine core and workers do not: when the
API server was SIGKILLed (its supervisor was, or Ray killed a learner actor and the processes it
started), the engine core lived on with several GB of memory. So each worker runs a thread
that polls the group leader once a second; when the leader has exited, it kills the group,
itself included.

The watch starts only in engine processes (``GROUP_WATCH_ENV`` set by the supervisor) and never
in the leader itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

GROUP_WATCH_ENV = "ENGINE_GROUP_WATCH"  # not PERENNIAL_*: none of our settings reach an engine


def leader_alive(pgid: int) -> bool:
    """Whether process ``pgid`` runs (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        status = Path(f"/proc/{pgid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def _watch(pgid: int, interval_s: float) -> None:
    while leader_alive(pgid):
        time.sleep(interval_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def watch_group_leader(interval_s: float = 1.0, *, force: bool = False) -> threading.Thread | None:
    """Start the watch in this process (an engine's worker); None where it does not apply."""
    if not (force or os.environ.get(GROUP_WATCH_ENV) == "1"):
        return None
    pgid = os.getpgid(0)
    if pgid == os.getpid():
        return None  # the leader itself
    thread = threading.Thread(target=_watch, args=(pgid, interval_s), name="engine-group-watch", daemon=True)
    thread.start()
    return thread

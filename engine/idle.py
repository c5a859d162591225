"""Optionally make an idle engine worker wait on a socket instead of polling its queue.

vLLM's worker reads each step's input from a shared-memory queue. After every read it keeps
polling that queue in a ``sched_yield`` loop for ``busy_loop_s`` (1 s in vllm 0.32) before it
falls back to waiting on a notification socket. On a 2-core machine shared by a serving engine
and a learner engine that poll takes part in deciding who gets the cores, so it was a suspect
for slow chats beside a learner. ``EngineSpec.idle_spin_s`` (passed to the worker as
``ENGINE_IDLE_SPIN_S``) shortens it. Measured with ``bench/es_throughput.py`` (a closed-loop
chat client beside a learner), and over whole default rounds (``bench/round_time.py``), what
matters is whether the worker sleeps between the steps of one chat:

* both workers sleeping after 5 ms (setup ``all``) against vLLM's poll (``all+spin``): the
  chats' p50 went from 1.08x to 2.42x of idle (the serving worker, woken at every decode step,
  waited for the busy cores), the learner's speed stayed within 5%;
* with the learner at nice 19 (``learner_nice``), a sleeping learner worker (``all+nice+sleep``)
  ran 5.3 members/min against 13.7 polling (``all+nice``), at the same chat p50 (1.07x);
* over a whole default round (``bench/round_time.py --arms after+serving_sleep``: eager bf16,
  the learner at nice 19, a chat every ~4.5 s) the serving worker sleeping after 5 ms
  (``PERENNIAL_ENGINE_IDLE_SPIN_S=0.005``) gave the learner the core it spins on after each
  chat: the round took 449 s instead of 575 s, and the chats' p50 went to 2.41x of idle;
* the same with 50 ms (``--arms after``), longer than the gap between two steps of one chat:
  ES iterations took 26.8 s against 34.2 s with vLLM's poll, and the chats' p50 stayed at
  1.11x of idle (1.09x with vLLM's poll).

So the serving engine sleeps after 50 ms by default (``PERENNIAL_ENGINE_IDLE_SPIN_S``; empty
restores vLLM's poll), and the learner engine keeps vLLM's poll.

The patch sets the default of ``SpinCondition``'s ``busy_loop_s`` when the worker imports our
extension, which vLLM does before it builds the worker's message queues, and sets it on any
reader that exists already (``patched_queues`` counts those).
"""

from __future__ import annotations

import gc
import inspect
import logging
import os

log = logging.getLogger(__name__)

IDLE_SPIN_ENV = "ENGINE_IDLE_SPIN_S"  # not PERENNIAL_*: none of our settings reach an engine
IDLE_SPIN_S = 0.005  # the value measured: longer than a busy worker's ~1-5 ms between two steps


def sleep_when_idle(spin_s: float | None = None) -> dict[str, object]:
    """Make this process's vLLM queue readers spin at most ``spin_s`` (default: from the env).

    Returns what was done: ``{"idle_spin_s": s or None, "patched_queues": n}``; None and 0
    where it does not apply (no env setting, or a vLLM without this mechanism).
    """
    if spin_s is None:
        raw = os.environ.get(IDLE_SPIN_ENV)
        if not raw:
            return {"idle_spin_s": None, "patched_queues": 0}
        spin_s = float(raw)
    try:
        from vllm.distributed.device_communicators.shm_broadcast import SpinCondition
    except ImportError:
        return {"idle_spin_s": None, "patched_queues": 0}
    init = SpinCondition.__init__
    names = list(inspect.signature(init).parameters)
    if not names or names[-1] != "busy_loop_s" or not init.__defaults__:
        log.warning("vLLM's SpinCondition changed (%s); workers keep spinning when idle", names)
        return {"idle_spin_s": None, "patched_queues": 0}
    init.__defaults__ = (*init.__defaults__[:-1], float(spin_s))
    patched = 0
    for obj in gc.get_objects():  # readers built before this call
        if isinstance(obj, SpinCondition) and getattr(obj, "is_reader", False):
            obj.busy_loop_s = float(spin_s)
            patched += 1
    return {"idle_spin_s": float(spin_s), "patched_queues": patched}


def idle_spin() -> float | None:
    """This process's reader spin time as now set (None outside vLLM)."""
    try:
        from vllm.distributed.device_communicators.shm_broadcast import SpinCondition
    except ImportError:
        return None
    return float(SpinCondition.__init__.__defaults__[-1])

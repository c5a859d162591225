"""CPU thread plans: which cores an engine's OpenMP threads run on (vLLM's CPU build only).

vLLM's CPU backend binds its OpenMP threads itself, from two environment variables of the
engine process: ``VLLM_CPU_OMP_THREADS_BIND`` and ``VLLM_CPU_NUM_OF_RESERVED_CPU``. A plan is
one of:

* ``auto``   vLLM's default: one core is reserved for the engine's scheduler and OpenMP is
             bound to the others (on a 2-core machine: one core computes, one mostly idles);
* ``all``    OpenMP on every core this process may use, none reserved;
* ``nobind`` no binding: the OS places the threads;
* a core list such as ``0-1`` or ``0,2-3``: OpenMP bound to exactly those cores, none reserved.

>>> plan_environment("0-1")
{'VLLM_CPU_OMP_THREADS_BIND': '0-1', 'VLLM_CPU_NUM_OF_RESERVED_CPU': '0'}
>>> plan_environment("auto")
{}
"""

from __future__ import annotations

import os
import re
from typing import Annotated

from pydantic import AfterValidator

PLANS = ("auto", "all", "nobind")
_CORE_LIST = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


def check_plan(plan: str) -> str:
    """``plan`` if it is a valid thread plan; ValueError naming the forms otherwise."""
    if plan in PLANS or _CORE_LIST.match(plan):
        return plan
    raise ValueError(f"thread plan {plan!r}: one of {', '.join(PLANS)} or a core list like 0-1")


# A settings field holding a plan, validated where it is read (both engines' settings use it).
ThreadPlan = Annotated[str, AfterValidator(check_plan)]


def check_replica_plans(value: str) -> str:
    """One plan for every replica, or one per replica separated by ``;`` (``0;1``)."""
    for plan in value.split(";"):
        check_plan(plan.strip())
    return value


# The serving engines' field: several replicas may each get their own plan.
ReplicaPlans = Annotated[str, AfterValidator(check_replica_plans)]


def replica_plans(value: str, count: int, available: list[int] | None = None) -> list[str]:
    """The thread plan of each of ``count`` replicas.

    ``a;b``: one plan per replica (exactly ``count`` of them). ``all`` with several replicas:
    the cores this process may use, split into contiguous shares, one per replica (OpenMP
    threads of two engines bound to the same cores spin against each other: p99 latency 8x
    worse on 2 cores in ``bench/hot_swap.py``). Anything else: the same plan for every replica.

    >>> replica_plans("all", 2, [0, 1])
    ['0', '1']
    >>> replica_plans("all", 2, [0, 1, 2, 3, 4])
    ['0-1', '2-4']
    >>> replica_plans("0-1;2-3", 2)
    ['0-1', '2-3']
    >>> replica_plans("auto", 3)
    ['auto', 'auto', 'auto']
    """
    if ";" in value:
        plans = [check_plan(p.strip()) for p in value.split(";")]
        if len(plans) != count:
            raise ValueError(f"{len(plans)} thread plans ({value!r}) for {count} replicas")
        return plans
    check_plan(value)
    if value != "all" or count == 1:
        return [value] * count
    usable = sorted(available if available is not None else os.sched_getaffinity(0))
    if len(usable) < count:
        raise ValueError(f"{count} replicas on {len(usable)} cores: give each replica a plan (a;b;...)")
    bounds = [len(usable) * i // count for i in range(count + 1)]
    return [_as_ranges(usable[bounds[i] : bounds[i + 1]]) for i in range(count)]


def cores(plan: str) -> list[int] | None:
    """The cores a plan binds OpenMP to (None: vLLM or the OS decides)."""
    check_plan(plan)
    if plan == "all":
        return sorted(os.sched_getaffinity(0))
    if plan in PLANS:
        return None
    out: list[int] = []
    for part in plan.split(","):
        low, _, high = part.partition("-")
        out.extend(range(int(low), int(high or low) + 1))
    return sorted(set(out))


def plan_environment(plan: str) -> dict[str, str]:
    """The engine process's environment variables for ``plan`` (empty for ``auto``)."""
    check_plan(plan)
    if plan == "auto":
        return {}
    if plan == "nobind":
        return {"VLLM_CPU_OMP_THREADS_BIND": "nobind"}
    bound = cores(plan) or []
    return {"VLLM_CPU_OMP_THREADS_BIND": _as_ranges(bound), "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}


def _as_ranges(values: list[int]) -> str:
    """Sorted cores as vLLM's list syntax: ``[0, 1, 3]`` -> ``0-1,3``."""
    runs: list[list[int]] = []
    for value in values:
        if runs and value == runs[-1][1] + 1:
            runs[-1][1] = value
        else:
            runs.append([value, value])
    return ",".join(f"{low}-{high}" if high != low else str(low) for low, high in runs)


def worker_threads() -> dict[str, object]:
    """What the calling engine worker runs with: its OpenMP thread count and cores.

    Called inside an engine worker. vLLM sets ``OMP_NUM_THREADS`` and the cores there before the
    worker starts, as ``OMP_PLACES`` (``{0,1}``), ``GOMP_CPU_AFFINITY`` (``0 1``) or
    ``KMP_AFFINITY`` (``...proclist=[0,1]``), depending on the OpenMP runtime; ``omp_cores``
    is the list in any of them (empty: not bound).
    """
    import torch

    kmp = os.environ.get("KMP_AFFINITY", "")
    places = (
        os.environ.get("OMP_PLACES")
        or os.environ.get("GOMP_CPU_AFFINITY")
        or (kmp.partition("proclist=")[2] if "proclist=" in kmp else "")
    )
    return {
        "omp_threads": torch.get_num_threads(),
        "omp_cores": sorted({int(n) for n in re.findall(r"\d+", places)}),
        "affinity": sorted(os.sched_getaffinity(0)),
    }

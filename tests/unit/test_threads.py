"""CPU thread plans (engine.threads) and the learner's yield to chats (learner.yielding)."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from pydantic import ValidationError

from engine.supervisor import EngineSpec
from engine.threads import check_plan, cores, plan_environment, replica_plans
from learner.settings import LearnerSettings
from learner.yielding import ChatYield
from server.settings import Settings


@pytest.mark.parametrize(
    ("plan", "env"),
    [
        ("auto", {}),
        ("nobind", {"VLLM_CPU_OMP_THREADS_BIND": "nobind"}),
        ("0-1", {"VLLM_CPU_OMP_THREADS_BIND": "0-1", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}),
        ("3,0-1", {"VLLM_CPU_OMP_THREADS_BIND": "0-1,3", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}),
        ("1", {"VLLM_CPU_OMP_THREADS_BIND": "1", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}),
    ],
)
def test_plans_become_vllm_environment(plan, env):
    assert plan_environment(plan) == env


def test_all_binds_every_core_this_process_may_use():
    assert cores("all") == sorted(os.sched_getaffinity(0))
    assert plan_environment("all")["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"


@pytest.mark.parametrize("plan", ["", "most", "0-", "a-b", "0;1"])
def test_bad_plans_are_refused(plan):
    with pytest.raises(ValueError, match="thread plan"):
        check_plan(plan)
    if ";" not in plan:  # the serving engines take one plan per replica, the learner one
        with pytest.raises(ValidationError):
            Settings(engine_cpu_threads=plan)
    with pytest.raises(ValidationError):
        LearnerSettings(learner_cpu_threads=plan)


def test_replicas_get_their_own_cores():
    assert replica_plans("all", 1, [0, 1]) == ["all"]
    assert replica_plans("all", 2, [0, 1]) == ["0", "1"]
    assert replica_plans("all", 3, [0, 1, 2, 3, 4, 5, 6]) == ["0-1", "2-3", "4-6"]
    assert replica_plans("0-1;2-3", 2) == ["0-1", "2-3"]
    assert replica_plans("nobind", 2) == ["nobind", "nobind"]
    with pytest.raises(ValueError, match="for 3 replicas"):
        replica_plans("0;1", 3)
    with pytest.raises(ValueError, match="2 cores"):
        replica_plans("all", 3, [0, 1])
    with pytest.raises(ValidationError):
        Settings(engine_cpu_threads="0;most")
    assert Settings(engine_cpu_threads="0;1").engine_cpu_threads == "0;1"


def test_the_engine_spec_applies_the_plan_and_auto_leaves_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("VLLM_CPU_NUM_OF_RESERVED_CPU", "1")
    spec = EngineSpec(model_dir=tmp_path, served_name="m", log_file=tmp_path / "e.log", cpu_threads="0")
    env = spec.environment()
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "0" and env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"
    auto = EngineSpec(model_dir=tmp_path, served_name="m", log_file=tmp_path / "e.log").environment()
    assert auto["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "1"  # the operator's own vLLM setting stands


def test_yield_waits_while_chats_run_and_gives_up_at_the_cap():
    counts = iter([2, 1, 1, 0, 0])
    hook = ChatYield(lambda: next(counts), max_wait_s=5.0, poll_s=0.001)
    assert asyncio.run(hook()) is True
    busy = ChatYield(lambda: 1, max_wait_s=0.05, poll_s=0.001)
    started = time.perf_counter()
    assert asyncio.run(busy()) is False
    assert 0.05 <= time.perf_counter() - started < 1.0 and busy.waited_s >= 0.05
    idle = ChatYield(lambda: 0, max_wait_s=5.0)
    assert asyncio.run(idle()) is True and idle.waited_s < 0.05

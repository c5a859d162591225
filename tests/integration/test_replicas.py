"""Two serving replicas behind one gateway (real vLLM engines on a tiny model the test writes).

Rolling swaps under concurrent load (streamed and not): 0 failed requests, and every reply's
reported version is the version whose weights produced it (each version's greedy replies are
known and differ). A replica killed mid-load is restarted and comes back at the serving
version, with 0 failed requests (the gateway retries what the dead replica had not answered).
A swap that fails on the second replica swaps the first one back.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from harness.processes import start_server
from harness.stores import PG_SERVER, REDIS_URL, create_database, delete_prefix, drop_database
from tests.conftest import ADMIN_KEY
from tests.support.tiny_model import write_tiny_model
from tests.support.versions import insert_version
from weights.prep import weights_sha256

pytestmark = pytest.mark.integration

MODEL = "tiny"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
PROMPTS = [f"Tell me about item {i}." for i in range(12)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, model_dir):
    """The base and two other versions: same tiny architecture, other random weights."""
    root = tmp_path_factory.mktemp("tiny")
    return {
        name: write_tiny_model(root / name, model_dir, seed=seed)
        for name, seed in (("base", 0), ("rv1", 1), ("rv2", 2))
    }


@pytest.fixture(scope="module")
def shared_state():
    """A database and a Redis prefix of this module: what gateways over the same replicas share."""
    name = f"perennial_t_{uuid.uuid4().hex[:12]}"
    prefix = f"ptest-{uuid.uuid4().hex[:10]}"
    env = {
        "PERENNIAL_DATABASE_URL": create_database(PG_SERVER, name),
        "PERENNIAL_REDIS_URL": REDIS_URL,
        "PERENNIAL_REDIS_PREFIX": prefix,
        "PERENNIAL_SWAP_COORDINATION": "redis",
    }
    yield env
    drop_database(PG_SERVER, name)
    delete_prefix(REDIS_URL, prefix)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, tiny, shared_state):
    env = {
        **shared_state,
        "PERENNIAL_MODEL_DIR": str(tiny["base"]),
        "PERENNIAL_MODEL_NAME": MODEL,
        "PERENNIAL_ADMIN_KEY": ADMIN_KEY,
        "PERENNIAL_ENGINE_REPLICAS": "2",
        # no torch.compile: a tiny model starts in seconds without it
        "PERENNIAL_ENGINE_ARGS": "--enforce-eager",
        "PERENNIAL_ENGINE_START_TIMEOUT_S": "900",
        "PERENNIAL_LEARNER_MODE": "off",
        # a window between the replicas, for the failed-rolling swap and second-gateway tests to act
        # in: long enough that a loaded CI machine's second gateway hears engine-0's swap and
        # asks for its own before the first gateway has finished (2 s was not, in CI)
        "PERENNIAL_SWAP_SETTLE_S": "6",
    }
    running = start_server(tmp_path_factory.mktemp("replicas"), env, timeout=960)
    yield running
    running.stop()


def admin(gateway, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(method, gateway.url + path, headers=ADMIN, timeout=300, **kwargs)


def replicas(gateway) -> list[dict]:
    return admin(gateway, "GET", "/admin/engine").json()["replicas"]


def chat(http: httpx.Client, prompt: str, *, stream: bool = False) -> tuple[str, str]:
    """(reply text, reported version) of one greedy chat."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": 8,
    }
    if not stream:
        response = http.post("/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text
        reply = response.json()
        assert reply["system_fingerprint"] == f"perennial:{response.headers['x-perennial-model-version']}"
        return reply["choices"][0]["message"]["content"], response.headers["x-perennial-model-version"]
    import json

    parts = []
    with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        version = response.headers["x-perennial-model-version"]
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                event = json.loads(line[6:])
                assert "error" not in event, event
                assert event["system_fingerprint"] == f"perennial:{version}"
                parts += [c["delta"].get("content") or "" for c in event["choices"]]
    return "".join(parts), version


def greedy_all(gateway) -> dict[str, str]:
    with httpx.Client(base_url=gateway.url, timeout=120) as http:
        return {p: chat(http, p)[0] for p in PROMPTS}


class Load:
    """Closed-loop clients chatting (streamed and not) until stopped; every reply kept."""

    def __init__(self, gateway, clients: int = 4, *, streams: bool = True):
        self.gateway = gateway
        self.clients = clients
        self.streams = streams
        self.replies: list[tuple[str, str, str, float]] = []  # prompt, text, version, end time
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(clients)
        self._futures = []

    def _run(self, k: int) -> None:
        with httpx.Client(base_url=self.gateway.url, timeout=120) as http:
            i = k
            while not self._stop.is_set():
                prompt = PROMPTS[i % len(PROMPTS)]
                try:
                    text, version = chat(http, prompt, stream=self.streams and i % 3 == 0)
                    self.replies.append((prompt, text, version, time.monotonic()))
                except Exception as exc:  # noqa: BLE001 - counted, the test asserts there are none
                    self.failures.append(f"{prompt}: {exc!r}")
                i += self.clients

    def __enter__(self) -> Load:
        self._futures = [self._pool.submit(self._run, k) for k in range(self.clients)]
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for future in self._futures:
            future.result()
        self._pool.shutdown()


def wait_for(predicate, timeout: float = 300, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def expected(gateway, tiny):
    """Each version's greedy reply to every prompt, measured with the version serving alone."""
    base = greedy_all(gateway)
    insert_version(gateway, "rv1", tiny["rv1"], promote=True)
    assert admin(gateway, "POST", "/admin/versions/rv1/promote").status_code == 200
    rv1 = greedy_all(gateway)
    assert admin(gateway, "POST", "/admin/rollback", json={"to": "base"}).status_code == 200
    assert greedy_all(gateway) == base
    assert all(base[p] != rv1[p] for p in PROMPTS), "the versions must answer every prompt differently"
    return {"base": base, "rv1": rv1}


def test_two_replicas_share_the_load_and_report_each(gateway, expected):
    status = replicas(gateway)
    assert [r["name"] for r in status] == ["engine-0", "engine-1"]
    assert len({r["url"] for r in status}) == 2 and len({r["pid"] for r in status}) == 2
    assert all(r["serving"] and r["version"] == "base" for r in status)
    before = {r["name"]: r["requests"] for r in status}
    with Load(gateway):
        time.sleep(4)
    after = {r["name"]: r["requests"] for r in replicas(gateway)}
    assert all(after[n] > before[n] for n in after), (before, after)  # both took requests

    health = httpx.get(gateway.url + "/health").json()
    assert health["status"] == "ok" and [r["version"] for r in health["replicas"]] == ["base", "base"]
    metrics = httpx.get(gateway.url + "/metrics").text
    assert 'perennial_replica_up{replica="engine-1"} 1.0' in metrics


def test_rolling_swap_under_load_fails_nothing_and_attributes_every_reply(gateway, expected):
    with Load(gateway) as load:
        time.sleep(1)
        started = time.monotonic()
        promoted = admin(gateway, "POST", "/admin/versions/rv1/promote")
        ended = time.monotonic()
        time.sleep(1)
    assert promoted.status_code == 200, promoted.text
    assert load.failures == []
    report = promoted.json()["swap"]
    assert [r["timings"]["replica"] for r in report["replicas"]] == ["engine-0", "engine-1"]
    wrong = [(p, v, t) for p, t, v, _ in load.replies if t != expected[v][p]]
    assert wrong == [], wrong[:5]  # every reply came from the weights of the version it reports
    during = {v for _, _, v, end in load.replies if started < end < ended}
    assert during and during <= {"base", "rv1"}, during  # replies kept coming during the rolling swap
    assert [r["version"] for r in replicas(gateway)] == ["rv1", "rv1"]


def test_a_killed_replica_is_restarted_at_the_serving_version_without_failed_requests(gateway, expected):
    if admin(gateway, "GET", "/admin/versions").json()["serving"] != "rv1":
        assert admin(gateway, "POST", "/admin/versions/rv1/promote").status_code == 200
    victim = replicas(gateway)[1]
    # Not streamed: a stream the dead replica had started can only end in an error event (the
    # client already has part of it); a request not yet answered is retried on the other replica.
    with Load(gateway, streams=False) as load:
        time.sleep(1)
        os.killpg(victim["pid"], signal.SIGKILL)
        killed_at = len(load.replies)
        time.sleep(5)  # the gateway keeps answering on engine-0 meanwhile
    assert load.failures == []
    assert len(load.replies) > killed_at
    # the restart is waited for without load: an engine starting beside a saturated one on
    # two cores takes minutes
    back = wait_for(
        lambda: next(
            (
                r
                for r in replicas(gateway)
                if r["name"] == "engine-1" and r["serving"] and r["restarts"] > victim["restarts"]
            ),
            None,
        ),
        timeout=600,
        what="engine-1 to restart",
    )
    assert back["restarts"] == victim["restarts"] + 1 and back["pid"] != victim["pid"]
    assert back["version"] == "rv1"
    wrong = [(p, v, t) for p, t, v, _ in load.replies if t != expected[v][p]]
    assert wrong == [] and {v for _, _, v, _ in load.replies} == {"rv1"}
    assert greedy_all(gateway) == expected["rv1"]  # the restarted replica serves rv1's weights


def test_a_swap_that_fails_on_the_second_replica_swaps_the_first_back(gateway, expected, tiny, tmp_path):
    if admin(gateway, "GET", "/admin/versions").json()["serving"] != "rv1":
        assert admin(gateway, "POST", "/admin/versions/rv1/promote").status_code == 200
    snapshot = tmp_path / "rv2"
    snapshot.mkdir()
    for item in tiny["rv2"].iterdir():
        (snapshot / item.name).write_bytes(item.read_bytes())
    insert_version(gateway, "rv2", snapshot, promote=True, sha256=weights_sha256(snapshot))

    result: dict = {}
    promote = threading.Thread(
        target=lambda: result.update(response=admin(gateway, "POST", "/admin/versions/rv2/promote"))
    )
    with Load(gateway) as load:
        promote.start()
        # engine-0 took rv2; in the settle window before engine-1, its files change under it
        wait_for(lambda: replicas(gateway)[0]["version"] == "rv2", what="engine-0 to take rv2")
        weights = next(snapshot.glob("*.safetensors"))
        data = bytearray(weights.read_bytes())
        data[-16:] = bytes(16)
        weights.write_bytes(bytes(data))
        promote.join(timeout=300)
        time.sleep(1)
    response = result["response"]
    assert response.status_code == 502 and response.json()["error"]["code"] == "swap_failed", response.text
    assert load.failures == []
    assert [r["version"] for r in replicas(gateway)] == ["rv1", "rv1"]
    assert all(r["serving"] for r in replicas(gateway))
    assert admin(gateway, "GET", "/admin/versions").json()["serving"] == "rv1"
    assert greedy_all(gateway) == expected["rv1"]
    entry = admin(gateway, "GET", "/admin/audit").json()["data"][0]
    assert entry["action"] == "promote_failed" and entry["target"] == "rv2"
    assert entry["details"]["rolled_back"] == ["engine-0"] and entry["details"]["restored"] is True
    wrong = [(p, v, t) for p, t, v, _ in load.replies if v not in expected or t != expected[v][p]]
    # rv2 served for a moment on engine-0: its replies carry rv2; all others match their version
    assert all(v == "rv2" for _, v, _ in wrong), wrong[:5]


def test_a_second_gateway_over_the_same_replicas_follows_a_rolling_swap_and_never_runs_its_own_beside_it(
    gateway, expected, shared_state, tmp_path
):
    """Gateway b attaches to gateway a's two engines (same database and Redis prefix): a
    rolling swap through a drains b's requests too, b stamps every reply right, and a promotion on
    b while a rolls out is refused."""
    urls = ",".join(r["url"] for r in replicas(gateway))
    env = {
        **shared_state,
        "PERENNIAL_ENGINE_URLS": urls,
        "PERENNIAL_MODEL_NAME": MODEL,
        "PERENNIAL_MODEL_DIR": gateway.env["PERENNIAL_MODEL_DIR"],
        "PERENNIAL_ADMIN_KEY": ADMIN_KEY,
        "PERENNIAL_LEARNER_MODE": "off",
    }
    b = start_server(tmp_path / "b", env, timeout=300)
    try:
        serving = admin(gateway, "GET", "/admin/versions").json()["serving"]
        assert admin(b, "GET", "/admin/versions").json()["serving"] == serving
        assert [r["version"] for r in replicas(b)] == [serving, serving]
        target = "base" if serving != "base" else "rv1"

        result: dict = {}
        on_b = threading.Thread(
            target=lambda: result.update(b=admin(b, "POST", "/admin/rollback", json={"to": target}))
        )
        with Load(b) as load:  # the load goes through b; the rolling swap through a
            time.sleep(1)
            promote = threading.Thread(
                target=lambda: result.update(a=admin(gateway, "POST", "/admin/rollback", json={"to": target}))
            )
            promote.start()
            wait_for(lambda: replicas(b)[0]["version"] == target, what="b to hear engine-0 swapped")
            on_b.start()  # the same change, during a's settle window: a holds the rolling swap lock
            promote.join(timeout=300)
            on_b.join(timeout=300)
            time.sleep(1)
        assert result["a"].status_code == 200, result["a"].text
        assert result["b"].status_code == 409, result["b"].text
        assert result["b"].json()["error"]["code"] == "swap_in_progress"
        assert load.failures == []
        wrong = [(p, v, t) for p, t, v, _ in load.replies if t != expected[v][p]]
        assert wrong == [], wrong[:5]  # b's replies carry the version that produced them
        assert {v for _, _, v, _ in load.replies} == {serving, target}
        assert [r["version"] for r in replicas(b)] == [target, target]
        assert admin(b, "GET", "/admin/versions").json()["serving"] == target
        assert httpx.get(b.url + "/health").json()["version"] == target
    finally:
        b.stop()

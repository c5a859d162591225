"""Fake serving engines for the pure logic of routing and rolling swaps (named as fakes).

``FakeEngineClient`` answers like one engine's client: it holds a snapshot's weights (the
snapshot directory's name), a weight version, and can refuse connections (``dead``) or fail a
load. Several :class:`~engine.replicas.ReplicaSet` built over the same clients are several
gateways over the same engines.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from engine.client import EngineUnavailable
from engine.replicas import Replica, ReplicaSet


class FakeEngineClient:
    """Answers like one engine: holds a path's weights; ``dead`` refuses connections."""

    def __init__(self, name: str, log: list):
        self.base_url = f"http://{name}"
        self.name = name
        self.log = log
        self.weights = "base"
        self.version = "base"
        self.dead = False
        self.fail_load: str | None = None  # a path whose load fails on this engine
        self.delay = 0.0

    async def post(self, path, body):
        if self.dead:
            raise EngineUnavailable("connection refused")
        await asyncio.sleep(self.delay)
        return {"choices": [{"message": {"content": self.weights}}], "engine": self.name}

    async def healthy(self):
        return not self.dead

    async def pause(self, mode="wait"):
        self.log.append((self.name, "pause"))

    async def resume(self):
        self.log.append((self.name, "resume"))

    async def rpc(self, method, **kwargs):
        if method == "perennial_load_weights":
            if kwargs["path"] == self.fail_load:
                raise RuntimeError("load failed")
            self.weights = Path(kwargs["path"]).name
            self.log.append((self.name, "load", self.weights))
            return {"load_seconds": 0.0, "via": "direct"}
        if method == "perennial_weights_checksum":
            return {"checksum": f"sum-{self.weights}"}
        raise AssertionError(method)

    async def reset_prefix_cache(self):
        return None

    async def update_weight_version(self, version):
        self.version = version

    async def weight_version(self):
        return self.version

    async def chat(self, body):
        return {"choices": [{"message": {"content": "Paris"}}]}


class FakeRuntime:
    def __init__(self, client):
        self.client = client
        self.supervisor = None

    @property
    def ready(self):
        return not self.client.dead

    async def wait_ready(self, timeout_s):
        return self.ready

    def status(self):
        return {"state": "ready" if self.ready else "unreachable", "url": self.client.base_url}


def fleet(n: int, log: list) -> ReplicaSet:
    return ReplicaSet([Replica(f"engine-{i}", FakeRuntime(FakeEngineClient(f"e{i}", log))) for i in range(n)])


def snapshot(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir(exist_ok=True)
    (path / "model.safetensors").write_bytes(b"x")
    return path


def gateway_view(clients: list[FakeEngineClient]) -> ReplicaSet:
    """Another gateway's replica set over the same engines."""
    return ReplicaSet([Replica(f"engine-{i}", FakeRuntime(c)) for i, c in enumerate(clients)])

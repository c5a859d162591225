"""HTTP client of one vLLM OpenAI server: the OpenAI routes and the dev (weight) routes.

One pooled ``httpx.AsyncClient`` per engine, created in the gateway's lifespan. Connection
failures surface as :class:`EngineUnavailable`, which the gateway turns into a 503.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from engine.rpc import rpc_result


class EngineUnavailable(Exception):
    """The engine cannot be reached (starting, restarting, or down).

    ``retryable``: the connection was refused or dropped, so another replica may take the
    request; False for a timeout (the engine is slow, not gone: trying elsewhere doubles the wait).
    """

    def __init__(self, message: str, *, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable


class EngineHTTPError(Exception):
    """The engine answered with an error status; carries its status and parsed body."""

    def __init__(self, status: int, body: Any):
        super().__init__(f"engine answered {status}")
        self.status = status
        self.body = body


def _parse_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return {"error": {"message": response.text[:500]}}


class EngineClient:
    """Talks to one engine at ``base_url`` over a pooled connection."""

    def __init__(self, base_url: str, *, timeout_s: float = 300.0, max_connections: int = 256):
        self.base_url = base_url
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout_s, connect=5.0),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise EngineUnavailable(str(exc) or type(exc).__name__) from exc
        except httpx.TimeoutException as exc:
            raise EngineUnavailable(f"engine timed out: {type(exc).__name__}", retryable=False) from exc
        if response.status_code >= 400:
            raise EngineHTTPError(response.status_code, _parse_body(response))
        return response

    async def healthy(self) -> bool:
        try:
            return (await self._http.get("/health", timeout=2.0)).status_code == 200
        except httpx.HTTPError:
            return False

    async def post(self, path: str, body: dict) -> dict:
        """``POST`` a JSON body to an OpenAI route of the engine; its parsed reply."""
        return (await self._request("POST", path, json=body)).json()

    async def chat(self, body: dict) -> dict:
        return await self.post("/v1/chat/completions", body)

    async def completions(self, body: dict) -> dict:
        """``POST /v1/completions`` (the learner reads ``prompt_logprobs`` from it)."""
        return (await self._request("POST", "/v1/completions", json=body)).json()

    async def tokenize(self, body: dict) -> dict:
        """vLLM's ``POST /tokenize``: a prompt or chat ``messages`` -> ``{"tokens": [...]}``."""
        return (await self._request("POST", "/tokenize", json=body)).json()

    async def chat_stream(self, body: dict) -> AsyncIterator[dict]:
        return await self.stream("/v1/chat/completions", body)

    async def stream(self, path: str, body: dict) -> AsyncIterator[dict]:
        """Yield the parsed SSE events of a streaming completion at ``path``, ``[DONE]`` excluded.

        Raises EngineHTTPError / EngineUnavailable before the first event if the engine
        refuses or cannot be reached, so the caller can still answer with a proper status.
        """
        request = self._http.build_request("POST", path, json=body)
        try:
            response = await self._http.send(request, stream=True)
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise EngineUnavailable(str(exc) or type(exc).__name__) from exc
        except httpx.TimeoutException as exc:
            raise EngineUnavailable(f"engine timed out: {type(exc).__name__}", retryable=False) from exc
        if response.status_code >= 400:
            await response.aread()
            await response.aclose()
            raise EngineHTTPError(response.status_code, _parse_body(response))
        return self._events(response)

    @staticmethod
    async def _events(response: httpx.Response) -> AsyncIterator[dict]:
        try:
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                yield json.loads(data)
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise EngineUnavailable(f"engine stream broke: {exc}") from exc
        except httpx.TimeoutException as exc:  # an engine that hangs mid-stream (read timeout)
            raise EngineUnavailable(
                f"engine stream timed out: {type(exc).__name__}", retryable=False
            ) from exc
        finally:
            await response.aclose()

    # --- dev routes (loopback only): weights and pausing -------------------------------------

    async def collective_rpc(self, method: str, *, timeout: float | None = None, **kwargs: Any):
        """Call ``method`` of our worker extension on every worker; return their results.

        vLLM's HTTP route passes kwargs through as given; we send strings (JSON-encoded where
        not already a string) and the worker methods parse them.
        """
        payload = {
            "method": method,
            "kwargs": {k: v if isinstance(v, str) else json.dumps(v) for k, v in kwargs.items()},
        }
        if timeout is not None:
            payload["timeout"] = timeout
        response = await self._request("POST", "/collective_rpc", json=payload)
        return response.json().get("results") if response.content else None

    async def rpc(self, method: str, *, timeout: float | None = None, **kwargs: Any) -> dict:
        """Call a :func:`engine.rpc.worker_method`; its result, or :class:`EngineRPCError`."""
        return rpc_result(await self.collective_rpc(method, timeout=timeout, **kwargs))

    async def pause(self, mode: str = "wait") -> None:
        await self._request("POST", "/pause", params={"mode": mode})

    async def resume(self) -> None:
        await self._request("POST", "/resume")

    async def is_paused(self) -> bool:
        return bool((await self._request("GET", "/is_paused")).json()["is_paused"])

    async def reset_prefix_cache(self, *, attempts: int = 5) -> None:
        """Drop every cached KV block; raise :class:`EngineHTTPError` if the engine would not.

        vLLM refuses (``{"success": false}``) while blocks are still held, e.g. by a request
        that is finishing; that is retried a few times. After a weight change a stale block
        would give replies computed partly with the old weights, so failure is an error.
        """
        for attempt in range(attempts):
            response = await self._request("POST", "/reset_prefix_cache")
            body = _parse_body(response)
            if not isinstance(body, dict) or body.get("success", True):
                return
            await asyncio.sleep(0.05 * (attempt + 1))
        raise EngineHTTPError(409, {"error": "the engine did not reset its prefix cache"})

    async def update_weight_version(self, version: str) -> None:
        await self._request("POST", "/update_weight_version", json={"new_version": version})

    async def weight_version(self) -> str | None:
        return (await self._request("GET", "/weight_info")).json().get("weight_version")

"""An engine that stops answering mid-stream: the stream ends with EngineUnavailable, never hangs
or raises an httpx error the gateway's relays do not know (real HTTP, a hanging local server)."""

from __future__ import annotations

import asyncio

from engine.client import EngineClient, EngineUnavailable


async def _hanging_engine(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
    event = b'data: {"choices": [{"index": 0, "delta": {"content": "Hi"}}]}\n\n'
    writer.write(b"%x\r\n%s\r\n" % (len(event), event))
    await writer.drain()
    await asyncio.sleep(30)  # then silence: the engine hangs


async def _one_event_then_timeout() -> tuple[list[dict], BaseException | None]:
    server = await asyncio.start_server(_hanging_engine, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = EngineClient(f"http://127.0.0.1:{port}", timeout_s=0.5)
    got, error = [], None
    try:
        events = await client.stream("/v1/chat/completions", {"stream": True})
        try:
            async for event in events:
                got.append(event)
        except Exception as exc:  # noqa: BLE001 - what the relay sees is the point
            error = exc
    finally:
        await client.aclose()
        server.close()
    return got, error


def test_a_read_timeout_mid_stream_is_engine_unavailable():
    got, error = asyncio.run(asyncio.wait_for(_one_event_then_timeout(), 20))
    assert got == [{"choices": [{"index": 0, "delta": {"content": "Hi"}}]}]
    assert isinstance(error, EngineUnavailable), repr(error)
    assert "timed out" in str(error)

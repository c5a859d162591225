"""Operations: health and Prometheus metrics (no key: meant for probes and scrapers)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from server.deps import Chat, Engine, Metrics, Served

router = APIRouter()


@router.get("/health")
async def health(engine: Engine, served: Served) -> JSONResponse:
    ok = engine.ready and await engine.client.healthy()
    body = {
        "status": "ok" if ok else "degraded",
        "gateway": "ok",
        "engine": "ok" if ok else engine.status()["state"],
        "model": served.name,
        "version": served.version,
    }
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/metrics")
async def metrics(m: Metrics, engine: Engine, chat: Chat) -> Response:
    m.engine_up.set(1 if engine.ready else 0)
    m.chats_in_flight.set(chat.in_flight)
    m.engine_restarts.set(engine.status().get("restarts", 0))
    return Response(m.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

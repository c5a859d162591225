"""Operations: health and Prometheus metrics (no key: meant for probes and scrapers)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from server.engine.runtime import EngineRuntime
from server.metrics import GatewayMetrics

router = APIRouter()


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    engine: EngineRuntime = request.app.state.engine
    ok = engine.ready and await engine.client.healthy()
    served = request.app.state.served
    body = {
        "status": "ok" if ok else "degraded",
        "gateway": "ok",
        "engine": "ok" if ok else engine.status()["state"],
        "model": served.name,
        "version": served.version,
    }
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    m: GatewayMetrics = request.app.state.metrics
    engine: EngineRuntime = request.app.state.engine
    m.engine_up.set(1 if engine.ready else 0)
    m.engine_restarts.set(engine.status().get("restarts", 0))
    return Response(m.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

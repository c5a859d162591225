"""Operations: health and Prometheus metrics (no key: meant for probes and scrapers)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from server.chat.service import Chat, Served
from server.deps import AppSettings, Engine, Metrics
from server.openapi import PROMETHEUS, doc
from store.retention import disk_free

router = APIRouter()


HEALTH = {
    200: {"description": "Gateway and engine serve (at least one replica)."},
    503: {"description": "Degraded: no replica is serving (same body, `status: degraded`)."},
}


@router.get("/health", responses=HEALTH)
async def health(engine: Engine, served: Served, settings: AppSettings) -> JSONResponse:
    ok = engine.ready and await engine.healthy()
    free = disk_free(settings.data_dir)["free_bytes"]
    body = {
        "status": "ok" if ok else "degraded",
        "gateway": "ok",
        "engine": "ok" if ok else engine.status()["state"],
        "model": served.name,
        "version": served.version,
        "replicas": [
            {k: r[k] for k in ("name", "state", "serving", "version", "outstanding")}
            for r in engine.status()["replicas"]
        ],
        # below min_free_disk_gb rounds fail before writing a snapshot; serving goes on
        "disk": {
            "free_bytes": free,
            "min_free_bytes": int(settings.min_free_disk_gb * 1e9),
            "low": free < settings.min_free_disk_gb * 1e9,
        },
    }
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/metrics", response_class=Response, **doc(responses=PROMETHEUS))
async def metrics(m: Metrics, engine: Engine, chat: Chat, settings: AppSettings) -> Response:
    m.engine_up.set(1 if engine.ready else 0)
    m.disk_free.set(disk_free(settings.data_dir)["free_bytes"])
    m.chats_in_flight.set(chat.in_flight)
    status = engine.status()
    m.engine_restarts.set(status.get("restarts") or 0)
    for r in status["replicas"]:
        m.replica_up.labels(r["name"]).set(1 if r["serving"] else 0)
        m.replica_outstanding.labels(r["name"]).set(r["outstanding"])
        m.replica_requests.labels(r["name"]).set(r["requests"])
        m.replica_retried_away.labels(r["name"]).set(r["retried_away"])
    return Response(m.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

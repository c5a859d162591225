"""Admin route (admin key) for the serving engine: ``GET /admin/engine``, its state."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from server.auth import admin_caller
from server.chat.service import Served
from server.deps import Engine

router = APIRouter(prefix="/admin", dependencies=[Depends(admin_caller)])


@router.get("/engine")
async def engine_status(engine: Engine, served: Served) -> dict:
    """The serving engine's state: one replica as before, several as an aggregate; ``replicas`` lists each."""
    return {**engine.status(), "model": served.name}

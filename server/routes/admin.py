"""Admin routes (admin key): engine state. Versions, learner and suites join in later modules."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from server.deps import admin_caller

router = APIRouter(prefix="/admin", dependencies=[Depends(admin_caller)])


@router.get("/engine")
async def engine_status(request: Request) -> dict:
    """The serving engine's state."""
    return {**request.app.state.engine.status(), "model": request.app.state.served.name}

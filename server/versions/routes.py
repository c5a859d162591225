"""Admin routes for versions: list, inspect, promote (gated unless forced), rebuild, roll back, audit."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from server.auth import Admin, admin_caller
from server.chat.service import Served
from server.deps import DB
from server.errors import APIError
from server.openapi import doc
from server.versions.rebuild import rebuild_chain
from server.versions.service import Versions, version_json
from store.versions import audit_entries, get_version, latest_decision, list_versions

router = APIRouter(prefix="/admin", dependencies=[Depends(admin_caller)])
# promote and rollback: no such version, not servable now, the swap failed or the engine is away
SWAP_ERRORS = (404, 409, 502, 503)


class PromoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    force: bool = False
    reason: str | None = Field(None, max_length=2000)


class RollbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str | None = Field(None, max_length=64, description="Version id; default: the previous one.")
    reason: str | None = Field(None, max_length=2000)


@router.get("/versions")
async def versions_list(db: DB, served: Served, limit: int = Query(200, ge=1, le=1000)) -> dict:
    async with db.sessions() as session:
        rows = await list_versions(session, limit=limit)
        data = [version_json(v, await latest_decision(session, version_id=v.id)) for v in rows]
    return {"object": "list", "serving": served.version, "data": data}


@router.get("/versions/{version_id}", **doc(errors=(404,)))
async def versions_get(db: DB, version_id: str) -> dict:
    async with db.sessions() as session:
        version = await get_version(session, version_id=version_id)
        if version is None:
            raise APIError(404, f"no version {version_id!r}", param="version", code="version_not_found")
        return version_json(version, await latest_decision(session, version_id=version_id))


@router.post("/versions/{version_id}/promote", **doc(errors=SWAP_ERRORS))
async def versions_promote(
    versions: Versions, version_id: str, who: Admin, body: PromoteBody | None = None
) -> dict:
    body = body or PromoteBody()
    return await versions.promote(version_id, who=who, reason=body.reason, force=body.force)


@router.post("/versions/{version_id}/rebuild", status_code=202, **doc(errors=(404, 409)))
async def versions_rebuild(versions: Versions, version_id: str, who: Admin) -> dict:
    """Rebuild a version's dropped snapshot from its seed log, in the background."""
    await rebuild_chain(versions.db, version_id)  # 404 / 409 now, not in the job
    job = versions.rebuilder.start(version_id, who=who)
    return {"object": "rebuild", **job}


@router.get("/versions/{version_id}/rebuild", **doc(errors=(404,)))
async def versions_rebuild_status(versions: Versions, version_id: str) -> dict:
    """Progress of the running (or last) rebuild of a version."""
    job = versions.rebuilder.status(version_id)
    if job is None:
        raise APIError(404, f"no rebuild of {version_id!r} since the gateway started", code="no_rebuild")
    return {"object": "rebuild", **job}


@router.post("/rollback", **doc(errors=SWAP_ERRORS))
async def rollback(versions: Versions, who: Admin, body: RollbackBody | None = None) -> dict:
    body = body or RollbackBody()
    return await versions.rollback(who=who, to=body.to, reason=body.reason)


@router.get("/audit")
async def audit_log(db: DB, limit: int = Query(100, ge=1, le=1000)) -> dict:
    async with db.sessions() as session:
        entries = await audit_entries(session, limit=limit)
    return {
        "object": "list",
        "data": [
            {
                "id": e.id,
                "who": e.who,
                "action": e.action,
                "target": e.target,
                "reason": e.reason,
                "details": e.details,
                "created_at": e.created_at.isoformat(),
            }
            for e in entries
        ],
    }

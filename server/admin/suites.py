"""Admin routes for the prior-capability suites the gate scores: list, upload, remove."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from evals.suites import SuiteError, parse_suite_jsonl
from server.auth import admin_caller
from server.deps import DB
from server.errors import APIError
from server.openapi import doc
from store.suites import get_suite, list_suites, scores_for_version, upsert_suite

router = APIRouter(prefix="/admin/suites", dependencies=[Depends(admin_caller)])
MAX_SUITE_BYTES = 5_000_000


class SuiteUpload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=64, description="Default: the file's header name.")
    version: int | None = Field(None, ge=1, description="Default: the header's, else 1.")
    content: str = Field(..., min_length=1, max_length=MAX_SUITE_BYTES, description="The JSONL.")


def suite_json(row) -> dict:
    return {
        "name": row.name,
        "version": row.version,
        "skill": row.skill,
        "source": row.source,
        "items": row.n_items,
        "sha256": row.sha256,
        "enabled": row.enabled,
        "created_at": row.created_at.isoformat() if row.created_at else None,
    }


@router.get("")
async def suites(db: DB, model_version: str | None = Query(None, max_length=64)) -> dict:
    """Every registered suite; with ``model_version``, that version's cached scores too."""
    async with db.sessions() as session:
        data = [suite_json(r) for r in await list_suites(session)]
        if model_version:
            scores = {
                (s.suite, s.suite_version): s.score
                for s in await scores_for_version(session, model_version=model_version)
            }
            for item in data:
                item["score"] = scores.get((item["name"], item["version"]))
    return {"object": "list", "data": data}


@router.post("", status_code=201, **doc(errors=(409,)))
async def upload(db: DB, body: SuiteUpload) -> dict:
    """Add an operator suite (JSONL; errors name the line and field)."""
    try:
        suite = parse_suite_jsonl(body.content, name=body.name, version=body.version, source="upload")
    except SuiteError as exc:
        raise APIError(400, str(exc), param=exc.param, code="invalid_suite") from exc
    async with db.sessions() as session:
        existing = await get_suite(session, name=suite.name, version=str(suite.version))
        if existing is not None and existing.sha256 != suite.sha256:
            raise APIError(
                409,
                f"{suite.name} v{suite.version} exists with other content; upload it as a new version",
                code="suite_exists",
            )
        row = await upsert_suite(
            session,
            name=suite.name,
            version=str(suite.version),
            skill=suite.skill,
            source="operator",
            sha256=suite.sha256,
            n_items=len(suite.items),
            content=suite.to_jsonl(),
        )
        row.enabled = True
        await session.commit()
        return suite_json(row)


@router.delete("/{name}", **doc(errors=(404,)))
async def remove(db: DB, name: str, version: str | None = Query(None)) -> dict:
    """Stop scoring a suite (every version, or one): it is disabled, its scores kept."""
    async with db.sessions() as session:
        rows = [r for r in await list_suites(session) if r.name == name and version in (None, r.version)]
        if not rows:
            raise APIError(404, f"no suite {name!r}", param="name", code="suite_not_found")
        for row in rows:
            row.enabled = False
        await session.commit()
        return {"object": "list", "data": [suite_json(r) for r in rows]}

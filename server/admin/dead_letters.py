"""Admin ingest dead-letter routes (admin key): see what the database refused, delete it.

    GET    /admin/ingest/dead-letters?limit=&after=
        one page, newest first: {"object": "list", "data": [...], "first_id", "last_id",
        "has_more", "total"}; each item: ``id``, ``kind``, ``error``, ``sqlstate``, ``created``
        (UNIX seconds), ``entry_chars`` and ``entry_preview`` (the first 500 characters of the
        entry's JSON text: an entry may be as large as the request that made it)
    DELETE /admin/ingest/dead-letters/{id}
        -> {"object": "ingest.dead_letter.deleted", "id", "deleted": true}; audited

An entry lands here when the database refuses it on its own (``store.ingest``), so the rest of
its batch and everything behind it is stored. The table is bounded by
``PERENNIAL_INGEST_DEAD_LETTERS_KEEP`` rows and ``PERENNIAL_INGEST_DEAD_LETTERS_MAX_AGE_DAYS``
(``store.dead_letters``, pruned hourly by the ingest sink).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError

from server.auth import Admin, admin_caller
from server.deps import DB
from server.errors import APIError
from server.feedback.service import unavailable
from server.openapi import doc
from store.dead_letters import (
    ERROR_CHARS,
    PREVIEW_CHARS,
    count_dead_letters,
    delete_dead_letter,
    get_dead_letter,
    list_dead_letters,
)
from store.models import IngestDeadLetter
from store.versions import audit

router = APIRouter(prefix="/admin/ingest/dead-letters", dependencies=[Depends(admin_caller)])
LetterId = Annotated[str, Path(min_length=1, max_length=64, description="A dead letter's id (sha256 hex).")]


class DeadLetter(BaseModel):
    """An ingest entry the database refused, with its error (the entry itself only previewed)."""

    object: Literal["ingest.dead_letter"] = "ingest.dead_letter"
    id: str = Field(description="sha256 of the entry: a redelivered entry is kept once.")
    kind: str = Field(description="interaction, feedback, or undecodable (a stream entry that was not JSON).")
    error: str = Field(description=f"The database's error (its first {ERROR_CHARS} characters).")
    sqlstate: str | None = Field(description="The SQLSTATE when the driver gave one (23514: a CHECK).")
    created: int = Field(description="When it was dead-lettered (UNIX seconds).")
    entry_chars: int = Field(description="Length of the entry's JSON text.")
    entry_preview: str = Field(description=f"The entry's JSON text, its first {PREVIEW_CHARS} characters.")

    @classmethod
    def of(cls, row: IngestDeadLetter) -> DeadLetter:
        return cls(
            id=row.id,
            kind=row.kind,
            error=row.error[:ERROR_CHARS],
            sqlstate=row.sqlstate,
            created=int(row.created_at.timestamp()),
            entry_chars=len(row.entry),
            entry_preview=row.entry[:PREVIEW_CHARS],
        )


class DeadLetterList(BaseModel):
    object: Literal["list"] = "list"
    data: list[DeadLetter]
    has_more: bool
    first_id: str | None
    last_id: str | None
    total: int = Field(description="Dead letters stored now.")


class DeadLetterDeleted(BaseModel):
    object: Literal["ingest.dead_letter.deleted"] = "ingest.dead_letter.deleted"
    id: str
    deleted: bool


@router.get("", response_model=DeadLetterList, **doc(errors=(404, 503)))
async def dead_letters_list(
    db: DB,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    after: Annotated[str | None, Query(max_length=64, description="The last id of the page before.")] = None,
) -> DeadLetterList:
    """Ingest entries the database refused, newest first (entries previewed, never whole)."""
    try:
        async with db.sessions() as session:
            last = await get_dead_letter(session, letter_id=after) if after is not None else None
            if after is not None and last is None:
                raise APIError(
                    404, f"after: no dead letter {after!r}", param="after", code="dead_letter_not_found"
                )
            rows, has_more = await list_dead_letters(session, limit=limit, after=last)
            total = await count_dead_letters(session)
    except (SQLAlchemyError, OSError) as exc:
        raise unavailable(exc) from exc
    data = [DeadLetter.of(row) for row in rows]
    return DeadLetterList(
        data=data,
        has_more=has_more,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        total=total,
    )


@router.delete("/{letter_id}", response_model=DeadLetterDeleted, **doc(errors=(404, 503)))
async def dead_letter_delete(db: DB, who: Admin, letter_id: LetterId) -> DeadLetterDeleted:
    """Delete one dead letter for good (fixed at its source, or not worth keeping); audited."""
    try:
        async with db.sessions() as session:
            row = await get_dead_letter(session, letter_id=letter_id)
            if row is None:
                raise APIError(
                    404, f"no dead letter {letter_id!r}", param="letter_id", code="dead_letter_not_found"
                )
            details = {"kind": row.kind, "sqlstate": row.sqlstate, "error": row.error[:300]}
            await delete_dead_letter(session, letter_id=letter_id)
            await audit(session, who=who, action="dead_letter_delete", target=letter_id, details=details)
            await session.commit()
    except (SQLAlchemyError, OSError) as exc:
        raise unavailable(exc) from exc
    return DeadLetterDeleted(id=letter_id, deleted=True)

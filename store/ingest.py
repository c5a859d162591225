"""What travels from the gateway to the database, and the idempotent write of a batch of it.

An ``Entry`` is one unit of ingest: a finished interaction, or one accepted feedback request (one
or many feedback items plus its idempotency record). Entries are JSON-ready dicts so the same
value goes through a Redis stream or an in-process queue. ``persist`` writes any batch of entries
in one transaction with insert-or-ignore on the natural keys (completion id, feedback id,
(caller, idempotency key)): writing a batch twice, which is what a redelivered stream entry
does, changes nothing. Timestamps travel as UNIX seconds (floats).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic_core import from_json, to_json
from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.models import Feedback, IdempotencyKey, Interaction

INTERACTION = "interaction"
FEEDBACK = "feedback"


@dataclass(frozen=True)
class Entry:
    """One unit of ingest: ``kind`` is "interaction" or "feedback"; ``data`` is JSON-ready.

    interaction: the ``interactions`` row (``created_at`` as UNIX seconds).
    feedback: ``{"items": [feedback rows], "idempotency": {caller, key, request_hash,
    response} | None}``.
    """

    kind: str
    data: dict[str, Any]

    def encode(self) -> dict[str, str | bytes]:
        """Stream fields: ``k`` (kind) and ``d`` (JSON, UTF-8 bytes).

        pydantic-core's Rust JSON codec: ~5x faster than the json module on these rows, and
        this runs once per request on the hot path.
        """
        return {"k": self.kind, "d": to_json(self.data)}

    @classmethod
    def decode(cls, fields: dict[bytes | str, bytes | str]) -> Entry:
        norm = {(k.decode() if isinstance(k, bytes) else k): v for k, v in fields.items()}
        kind = norm["k"].decode() if isinstance(norm["k"], bytes) else norm["k"]
        return cls(kind, from_json(norm["d"]))


def from_unix(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _rows(entries: list[Entry]) -> tuple[list[dict], list[dict], list[dict]]:
    """Interaction, feedback and idempotency rows, deduplicated by key (first one wins)."""
    interactions: dict[str, dict] = {}
    feedback: dict[str, dict] = {}
    idempotency: dict[tuple[str, str], dict] = {}
    stored_at = datetime.now(UTC)
    for entry in entries:
        if entry.kind == INTERACTION:
            # "kind" is absent from entries queued by a gateway older than migration 0004
            row = {"kind": "chat", **entry.data, "created_at": from_unix(entry.data["created_at"])}
            interactions.setdefault(row["id"], {**row, "stored_at": stored_at})
        elif entry.kind == FEEDBACK:
            for item in entry.data["items"]:
                row = {**item, "created_at": from_unix(item["created_at"]), "stored_at": stored_at}
                feedback.setdefault(row["id"], row)
            idem = entry.data.get("idempotency")
            if idem:
                row = {**idem, "created_at": from_unix(idem["created_at"])}
                idempotency.setdefault((row["caller"], row["key"]), row)
        else:
            raise ValueError(f"unknown ingest entry kind {entry.kind!r}")
    return list(interactions.values()), list(feedback.values()), list(idempotency.values())


def insert_ignore(session: AsyncSession, table: Table, keys: list[str]):
    """``INSERT ... ON CONFLICT (keys) DO NOTHING`` for the session's dialect."""
    dialect = session.bind.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing(index_elements=keys)


async def persist(sessions: async_sessionmaker[AsyncSession], entries: list[Entry]) -> None:
    """Write a batch of entries in one transaction, ignoring rows already stored.

    Args:
        sessions: the database's session factory.
        entries: any mix of interaction and feedback entries (redeliveries included).

    Raises:
        sqlalchemy.exc.SQLAlchemyError / OSError: the database refused or is unreachable;
        nothing of the batch is written, and the caller retries the whole batch.
    """
    interactions, feedback, idempotency = _rows(entries)
    # Core inserts on the tables: rows are keyed by column names (``metadata``, not ``meta``).
    async with sessions.begin() as session:
        if interactions:
            table = Interaction.__table__
            await session.execute(insert_ignore(session, table, ["id"]), interactions)
        if feedback:
            await session.execute(insert_ignore(session, Feedback.__table__, ["id"]), feedback)
        if idempotency:
            table = IdempotencyKey.__table__
            await session.execute(insert_ignore(session, table, ["caller", "key"]), idempotency)


def is_data_error(exc: BaseException) -> bool:
    """The database refused the rows themselves (retrying the same rows cannot help)."""
    return isinstance(exc, IntegrityError | DataError)


async def persist_isolating(sessions: async_sessionmaker[AsyncSession], entries: list[Entry]) -> list[Entry]:
    """Persist entry by entry after a batch was refused as invalid data.

    Returns:
        The entries the database refuses on their own (poison entries); the rest are written.

    Raises:
        Any error that is not a data error (the database is unreachable): retry later.
    """
    refused = []
    for entry in entries:
        try:
            await persist(sessions, [entry])
        except Exception as exc:
            if not is_data_error(exc):
                raise
            refused.append(entry)
    return refused

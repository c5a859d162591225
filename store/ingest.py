"""What travels from the gateway to the database, and the idempotent write of a batch of it.

An ``Entry`` is one unit of ingest: a finished interaction, or one accepted feedback request (one
or many feedback items plus its idempotency record). Entries are JSON-ready dicts so the same
value goes through a Redis stream or an in-process queue. ``persist`` writes any batch of entries
in one transaction with insert-or-ignore on the natural keys (completion id, feedback id,
(caller, idempotency key)): writing a batch twice, which is what a redelivered stream entry
does, changes nothing. Timestamps travel as UNIX seconds (floats).

Bad data never stalls ingest (``persist_batch``): a batch the database refuses as data (SQLSTATE
class 22 or 23, whatever the driver's exception type) is written entry by entry, and each entry
refused on its own goes to ``ingest_dead_letters`` with its error; everything behind it is
stored. Postgres cannot hold U+0000 in text or jsonb (JSON accepts ``\\u0000`` anywhere), so on
Postgres every U+0000 in a string, key or value, is stored as U+2400 (SYMBOL FOR NULL, "␀"): the
row and all of its other content are kept; SQLite stores U+0000 as it is.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic_core import from_json, to_json
from sqlalchemy import Table, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.models import Feedback, IdempotencyKey, IngestDeadLetter, Interaction

log = logging.getLogger(__name__)

INTERACTION = "interaction"
FEEDBACK = "feedback"
NUL, NUL_STORED = "\x00", "\u2400"  # Postgres text and jsonb refuse U+0000
DATA_SQLSTATE_CLASSES = ("22", "23")  # data exception, integrity constraint violation


class InvalidEntry(ValueError):
    """An entry that cannot become rows (unknown kind, missing fields, undecodable)."""


@dataclass(frozen=True)
class Entry:
    """One unit of ingest: ``kind`` is "interaction" or "feedback"; ``data`` is JSON-ready.

    interaction: the ``interactions`` row (``created_at`` as UNIX seconds).
    feedback: ``{"items": [feedback rows], "idempotency": {caller, key, request_hash,
    response (what a replay needs: ``{"created": ...}``), created_at} | None}``.
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
    """Interaction, feedback and idempotency rows, deduplicated by key (first one wins).

    Raises:
        InvalidEntry: an entry of an unknown kind or without the fields its rows need.
    """
    try:
        return _rows_of(entries)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise InvalidEntry(f"invalid ingest entry: {type(exc).__name__}: {exc}") from exc


def _rows_of(entries: list[Entry]) -> tuple[list[dict], list[dict], list[dict]]:
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
        if session.bind.dialect.name == "postgresql":
            interactions, feedback, idempotency = (
                _without_nul(interactions),
                _without_nul(feedback),
                _without_nul(idempotency),
            )
        if interactions:
            table = Interaction.__table__
            await session.execute(insert_ignore(session, table, ["id"]), interactions)
        if feedback:
            await session.execute(insert_ignore(session, Feedback.__table__, ["id"]), feedback)
        if idempotency:
            table = IdempotencyKey.__table__
            await session.execute(insert_ignore(session, table, ["caller", "key"]), idempotency)


async def prune_idempotency(session: AsyncSession, *, before: datetime) -> int:
    """Delete the Idempotency-Key records created before ``before``; returns how many."""
    table = IdempotencyKey.__table__
    result = await session.execute(delete(table).where(table.c.created_at < before))
    return result.rowcount or 0


def _without_nul(rows: list[dict]) -> list[dict]:
    """``rows`` with every U+0000 in their strings (keys included) as U+2400, for Postgres.

    One fast scan of each row's JSON first: rows without U+0000 are returned as they are.
    """
    out = []
    for row in rows:
        if b"\\u0000" in to_json(row):
            log.warning("row %s: U+0000 stored as U+2400 (Postgres refuses U+0000)", row.get("id"))
            row = _replace_nul(row)
        out.append(row)
    return out


def _replace_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace(NUL, NUL_STORED)
    if isinstance(value, dict):
        return {_replace_nul(k): _replace_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_replace_nul(v) for v in value]
    return value


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error, whichever driver raised it (asyncpg: ``sqlstate``,
    psycopg: ``sqlstate`` / ``pgcode``), also when SQLAlchemy wraps it (``exc.orig``)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        err = todo.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        for attr in ("sqlstate", "pgcode"):
            code = getattr(err, attr, None)
            if isinstance(code, str) and len(code) == 5:
                return code
        todo += [getattr(err, "orig", None), err.__cause__]
    return None


def is_data_error(exc: BaseException) -> bool:
    """The database refused the rows themselves (retrying the same rows cannot help): SQLSTATE
    class 22 or 23, SQLAlchemy's DataError / IntegrityError (SQLite), an entry that cannot become
    rows, or a value a column type refused to bind."""
    if isinstance(exc, IntegrityError | DataError | InvalidEntry):
        return True
    code = sqlstate(exc)
    if code is not None:
        return code[:2] in DATA_SQLSTATE_CLASSES
    return isinstance(exc, StatementError) and isinstance(exc.orig, ValueError | TypeError)


@dataclass(frozen=True)
class DeadLetter:
    """An entry the database refused on its own, with why."""

    entry: Entry
    error: str
    sqlstate: str | None = None

    def row(self) -> dict[str, Any]:
        data = self.entry.encode()["d"]
        digest = hashlib.sha256(self.entry.kind.encode() + b"\0" + data).hexdigest()
        return {
            "id": digest,
            "kind": self.entry.kind[:16],
            "entry": data.decode(errors="replace"),
            "error": self.error,
            "sqlstate": self.sqlstate,
            "created_at": datetime.now(UTC),
        }


def _dead_letter(entry: Entry, exc: BaseException) -> DeadLetter:
    orig = getattr(exc, "orig", None) or exc
    return DeadLetter(entry, f"{type(orig).__name__}: {orig}"[:2000], sqlstate(exc))


async def persist_isolating(
    sessions: async_sessionmaker[AsyncSession], entries: list[Entry]
) -> list[DeadLetter]:
    """Persist entry by entry after a batch was refused as invalid data.

    Returns:
        The entries the database refuses on their own (poison entries), with the error; the
        rest are written.

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
            refused.append(_dead_letter(entry, exc))
    return refused


async def store_dead_letters(sessions: async_sessionmaker[AsyncSession], letters: list[DeadLetter]) -> None:
    """Keep refused entries in ``ingest_dead_letters`` (once each, however often redelivered)."""
    if not letters:
        return
    rows = list({row["id"]: row for row in (letter.row() for letter in letters)}.values())
    async with sessions.begin() as session:
        await session.execute(insert_ignore(session, IngestDeadLetter.__table__, ["id"]), rows)


async def persist_batch(sessions: async_sessionmaker[AsyncSession], entries: list[Entry]) -> list[DeadLetter]:
    """Write a batch; if the database refuses it as data, write what it takes entry by entry and
    dead-letter the rest (``ingest_dead_letters``). The batch's own error never repeats forever.

    Returns:
        The dead letters (empty when the batch was written whole).

    Raises:
        Any error that is not a data error (the database is unreachable): retry the batch later
        (every write here is idempotent).
    """
    try:
        await persist(sessions, entries)
        return []
    except Exception as exc:
        if not is_data_error(exc):
            raise
    letters = await persist_isolating(sessions, entries)
    for letter in letters:
        log.error("ingest: the database refused an entry; dead-lettered: %s", letter.error[:300])
    await store_dead_letters(sessions, letters)
    return letters

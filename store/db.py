"""Database engines and sessions (SQLite via aiosqlite, Postgres via asyncpg) and migrations.

One URL configures both: ``sqlite:///path/perennial.db`` or ``postgresql://user@host/db``
(``postgres://`` and explicit drivers are accepted). The async engine serves the application;
Alembic runs with the matching sync driver (sqlite3 / psycopg), in a thread at start.

    db = Database.connect("postgresql://postgres@127.0.0.1/test")
    await db.migrate()                      # alembic upgrade head
    async with db.sessions() as session: ...
    await db.close()
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"
ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
SYNC_DRIVERS = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg"}


def _backend(url: URL) -> str:
    backend = url.get_backend_name()
    backend = "postgresql" if backend in ("postgres", "postgresql") else backend
    if backend not in ASYNC_DRIVERS:
        raise ValueError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")
    return backend


def async_url(url: str | URL) -> URL:
    """The URL with the async driver of its backend (aiosqlite or asyncpg)."""
    parsed = make_url(url) if isinstance(url, str) else url
    return parsed.set(drivername=ASYNC_DRIVERS[_backend(parsed)])


def sync_url(url: str | URL) -> URL:
    """The URL with the sync driver of its backend (sqlite3 or psycopg), for Alembic."""
    parsed = make_url(url) if isinstance(url, str) else url
    return parsed.set(drivername=SYNC_DRIVERS[_backend(parsed)])


def safe_url(url: str | URL) -> str:
    """The URL for logs: password hidden."""
    parsed = make_url(url) if isinstance(url, str) else url
    return parsed.render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL: readers (admin routes, the learner process) never block the single writer.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def create_engine(url: str | URL, *, pool_size: int = 5) -> AsyncEngine:
    """An async engine for ``url`` (driver normalised), with SQLite pragmas when needed.

    Args:
        url: any accepted database URL.
        pool_size: Postgres connection pool size (SQLite uses its default pool).

    Returns:
        The engine; dispose it with ``await engine.dispose()``.
    """
    target = async_url(url)
    if target.get_backend_name() == "sqlite":
        if target.database and target.database != ":memory:":
            Path(target.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(target)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # pre_ping: a Postgres restart leaves dead pooled connections behind.
    return create_async_engine(target, pool_size=pool_size, max_overflow=5, pool_pre_ping=True)


def alembic_config(url: str | URL):
    """An Alembic ``Config`` for our migrations against ``url`` (sync driver)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["url"] = sync_url(url)
    return config


def upgrade(url: str | URL, revision: str = "head") -> None:
    """``alembic upgrade <revision>`` (blocking; Postgres runs it under an advisory lock)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | URL, revision: str) -> None:
    """``alembic downgrade <revision>`` (blocking)."""
    from alembic import command

    command.downgrade(alembic_config(url), revision)


@dataclass
class Database:
    """The application's engine and session factory for one database URL."""

    url: URL
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    @classmethod
    def connect(cls, url: str | URL, *, pool_size: int = 5) -> Database:
        engine = create_engine(url, pool_size=pool_size)
        return cls(async_url(url), engine, async_sessionmaker(engine, expire_on_commit=False))

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    async def migrate(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` (Alembic, in a worker thread)."""
        log.info("migrating %s to %s", safe_url(self.url), revision)
        await asyncio.to_thread(upgrade, self.url, revision)

    async def close(self) -> None:
        await self.engine.dispose()

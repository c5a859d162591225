"""An admin router on a database of its own, over in-process HTTP: for tests of one admin slice
that must not share the session's Postgres database (they delete or scan every row)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from server.auth import KeyRing
from server.errors import install_error_handlers
from store.db import Database


@contextlib.asynccontextmanager
async def own_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated database for ``request.param`` ("sqlite" or "postgres": a fresh Postgres one)."""
    url = request.getfixturevalue("fresh_pg_url") if request.param == "postgres" else None
    database = Database.connect(url or f"sqlite:///{tmp_path / 'own.db'}")
    await database.migrate()
    try:
        yield database
    finally:
        await database.close()


@contextlib.asynccontextmanager
async def admin_client(db: Database, router: APIRouter, admin_key: str) -> AsyncIterator[httpx.AsyncClient]:
    """``router`` mounted on an app holding ``db``, with only ``admin_key`` and the error envelope."""
    app = FastAPI()
    app.state.db, app.state.keys = db, KeyRing([], admin_key)
    install_error_handlers(app)
    app.include_router(router)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        yield client

"""Fixtures of the store tests: real PostgreSQL and Redis on 127.0.0.1, and SQLite files.

Every test run gets its own Postgres database (``perennial_t_<hex>`` on the shared server,
dropped at the end) and every test its own Redis key prefix (keys deleted at the end), so runs
and engineers never see each other's rows. Fault tests use private instances (services.py).
"""

from __future__ import annotations

import os
import uuid

import httpx
import psycopg
import pytest
import redis

from store.db import upgrade
from tests.conftest import ADMIN_KEY
from tests.store.services import PrivatePostgres, PrivateRedis

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
REDIS_URL = "redis://127.0.0.1:6379/0"


def create_database(server: str, name: str) -> str:
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"


def drop_database(server: str, name: str) -> None:
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def delete_prefix(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(scope="session")
def pg_url():
    """A migrated Postgres database for this test session."""
    name = f"perennial_t_{uuid.uuid4().hex[:10]}"
    url = create_database(PG_SERVER, name)
    upgrade(url)
    yield url
    drop_database(PG_SERVER, name)


@pytest.fixture
def fresh_pg_url():
    """An empty (not migrated) Postgres database for one test."""
    name = f"perennial_t_{uuid.uuid4().hex[:10]}"
    yield create_database(PG_SERVER, name)
    drop_database(PG_SERVER, name)


@pytest.fixture
def sqlite_url(tmp_path):
    """A migrated SQLite file for one test."""
    url = f"sqlite:///{tmp_path / 'perennial.db'}"
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    """The same test on SQLite and on Postgres (both migrated)."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def redis_prefix():
    """A Redis key prefix of this test on the shared Redis; its keys are deleted afterwards."""
    prefix = f"ptest-{uuid.uuid4().hex[:10]}"
    yield prefix
    delete_prefix(REDIS_URL, prefix)


@pytest.fixture
def private_redis():
    server = PrivateRedis().start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def private_postgres():
    """A private cluster for the module; tests stop/start it. Migrated ``postgres`` database."""
    server = PrivatePostgres().init()
    server.start()
    upgrade(server.url)
    yield server
    server.close()


@pytest.fixture(scope="session")
def engine_url(request) -> str:
    """The shared serving engine (started by the root ``server`` fixture), or, to iterate on
    these tests without an engine start per run, the vLLM server at
    ``PERENNIAL_TEST_ENGINE_URL`` (e.g. the engine of a ``perennial serve`` kept running)."""
    given = os.environ.get("PERENNIAL_TEST_ENGINE_URL")
    if given:
        return given
    server = request.getfixturevalue("server")
    status = httpx.get(server.url + "/admin/engine", headers={"authorization": f"Bearer {ADMIN_KEY}"})
    return status.json()["url"]

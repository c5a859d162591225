"""Shared PostgreSQL and Redis on 127.0.0.1 for the integration tests and the benches: names and
clean-up helpers.

Every test run gets its own Postgres database (``perennial_t_<hex>`` on the shared server,
dropped at the end) and every test its own Redis key prefix (keys deleted at the end); see the
fixtures in ``tests/integration/conftest.py``.
"""

from __future__ import annotations

import psycopg
import redis

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

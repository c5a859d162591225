"""Migrations: upgrade -> downgrade -> upgrade on SQLite and Postgres; the head revision matches
the models exactly; concurrent upgrades (gateways starting together) serialise on Postgres."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from store.db import downgrade, sync_url, upgrade
from store.models import Base

REPO = Path(__file__).resolve().parents[2]
TABLES = {t.name for t in Base.metadata.sorted_tables}


def _tables(url: str) -> set[str]:
    engine = create_engine(sync_url(url))
    with engine.connect() as conn:
        names = set(inspect(conn).get_table_names())
    engine.dispose()
    return names


def _diff(url: str) -> list:
    engine = create_engine(sync_url(url))
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    return diff


def _insert_and_count(url: str) -> int:
    engine = create_engine(sync_url(url))
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO audit_log (who, action, details, created_at) "
                "VALUES ('t', 'round-trip', '{}', CURRENT_TIMESTAMP)"
            )
        )
        count = conn.execute(text("SELECT count(*) FROM audit_log")).scalar_one()
    engine.dispose()
    return count


def round_trip(url: str) -> None:
    upgrade(url)
    assert _tables(url) >= TABLES
    assert _diff(url) == []  # the migration creates exactly what the models declare
    assert _insert_and_count(url) == 1
    downgrade(url, "base")
    assert _tables(url) == {"alembic_version"}
    upgrade(url)
    assert _tables(url) >= TABLES
    assert _diff(url) == []
    assert _insert_and_count(url) == 1  # a fresh table: the downgrade really dropped it


def test_round_trip_sqlite(tmp_path):
    round_trip(f"sqlite:///{tmp_path / 'm.db'}")


def test_round_trip_postgres(fresh_pg_url):
    round_trip(fresh_pg_url)


def test_upgrade_is_idempotent(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    upgrade(url)
    assert _diff(url) == []


def test_concurrent_upgrades_on_postgres_serialise(fresh_pg_url):
    # Separate processes, as separate gateways are (Alembic's proxies are process-global).
    code = f"from store.db import upgrade; upgrade({fresh_pg_url!r})"
    procs = [
        subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stderr=subprocess.PIPE) for _ in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-2000:]
    assert _diff(fresh_pg_url) == []


@pytest.mark.parametrize("url", ["mysql://x@h/db", "oracle://x@h/db"])
def test_unsupported_backends_are_refused(url):
    with pytest.raises(ValueError, match="unsupported database"):
        sync_url(url)

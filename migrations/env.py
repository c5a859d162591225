"""Alembic environment: online migrations against the URL given by the caller.

The URL comes from, in order: ``config.attributes["url"]`` (set by ``store.db.upgrade``, which
the gateway runs at start), ``alembic -x url=...``, the shared state settings
(``PERENNIAL_DATABASE_URL``, else the SQLite file in ``PERENNIAL_DATA_DIR``). On Postgres the
migration holds a transaction-scoped advisory lock, so gateways starting together migrate one
after the other instead of racing. SQLite runs in batch mode (ALTER through table copies).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from store.db import sync_url
from store.models import Base

MIGRATION_LOCK_ID = 0x7065_7265_6E6E  # "perenn": any constant shared by all gateways


def target_url() -> URL:
    config = context.config
    if config.attributes.get("url") is not None:
        return sync_url(config.attributes["url"])
    given = context.get_x_argument(as_dictionary=True).get("url")
    if given:
        return sync_url(given)
    from store.settings import StateSettings  # only when run by hand: the configured database

    return sync_url(StateSettings().resolved_database_url)


def run_migrations_online() -> None:
    url = target_url()
    if context.config.config_file_name and "url" not in context.config.attributes:
        from logging.config import fileConfig

        fileConfig(context.config.config_file_name, disable_existing_loggers=False)
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                render_as_batch=url.get_backend_name() == "sqlite",
                compare_type=True,
            )
            with context.begin_transaction():
                if url.get_backend_name() == "postgresql":
                    connection.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})"))
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run them against a database")
run_migrations_online()

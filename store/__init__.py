"""The store: database schema and sessions, and the ingest path from gateways to the database.

=============  ===========================================================================
models.py      SQLAlchemy 2.0 typed models of every table (migrations in ``migrations/``)
db.py          URLs (SQLite via aiosqlite, Postgres via asyncpg), engines, Alembic runner
ingest.py      the ``Entry`` that travels (stream or queue) and the idempotent batch write
writer.py      ``DirectWriter``: in-process queue + one writer task (no Redis, or fallback)
streams.py     Redis stream names, the Lua accept script and its round-trip batcher
consumer.py    ``StreamConsumer``: consumer group, XAUTOCLAIM of abandoned entries, retries
sink.py        ``IngestSink``: what the gateway calls (record, accept feedback), with fallback
queries.py     reads: admin listings, export, ``feedback_since`` for the learner
=============  ===========================================================================

Later modules (``versions.py``, ``learner_runs.py``, ...) document themselves. The package
imports nothing of ``server`` or ``learner`` (tests/unit/test_imports.py).
"""

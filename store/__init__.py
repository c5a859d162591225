"""The store, the lowest layer: database schema and sessions, CRUD, and the ingest path.

==============  ==========================================================================
settings.py     ``StateSettings``: data directory, database URL, base model, admin key
models.py       SQLAlchemy 2.0 typed models of every table (migrations in ``migrations/``)
db.py           URLs (SQLite via aiosqlite, Postgres via asyncpg), engines, Alembic runner
ingest.py       the ``Entry`` that travels (stream or queue) and the idempotent batch write
writer.py       ``DirectWriter``: in-process queue + one writer task (no Redis, or fallback)
streams.py      Redis stream names, the Lua accept script and its round-trip batcher
consumer.py     ``StreamConsumer``: consumer group, XAUTOCLAIM of abandoned entries, retries
sink.py         ``IngestSink``: what the gateway calls (record, accept feedback), with fallback
queries.py      reads: admin listings, export, ``feedback_since`` for the learner
versions.py     the version registry: rows, serving pointer, gate decisions, audit log
rounds.py       learner rounds, their iterations, the round lock, the feedback cursor
quarantine.py   operators' feedback control: list, disable/enable, delete by id, caller, time
suites.py       registered prior suites and cached suite scores per version
==============  ==========================================================================

It imports nothing else of ours (``tests/unit/test_imports.py``).
"""

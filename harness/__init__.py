"""Run the real thing for a bench or a test: a ``perennial serve`` gateway with its vLLM engine,
an ``perennial ingest`` worker, the shared PostgreSQL and Redis, weight snapshots to swap in.

``bench/`` and ``tests/`` both use it; nothing in the product imports it (test fakes stay in
``tests/support``).
"""

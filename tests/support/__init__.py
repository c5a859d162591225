"""Test-only helpers: fakes (gateway, replicas), rows, seeded versions. The real processes and
stores that benches use too are in ``harness``."""

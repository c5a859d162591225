"""Suites the gate uses: built-in files and operator uploads, as registered in the store.

Built-in suites are (re)registered at every learner start from ``evals/suites/data``; an
operator's upload keeps its JSONL in the store, so every process (gateway, learner) sees the
same suites. Only enabled suites are scored.
"""

from __future__ import annotations

from evals.suites import BUILTIN_DIR, Suite, load_builtin_suites, load_suite_file, parse_suite_jsonl
from store.db import Database
from store.suites import list_suites, upsert_suite


async def register_builtin_suites(db: Database) -> list[Suite]:
    suites = list(load_builtin_suites().values())
    async with db.sessions() as session:
        for suite in suites:
            # the file name only: the data directory moves with the installation
            await upsert_suite(
                session,
                name=suite.name,
                version=str(suite.version),
                skill=suite.skill,
                source="builtin",
                sha256=suite.sha256,
                n_items=len(suite.items),
                items_path=suite.source.removeprefix("builtin:"),
            )
        await session.commit()
    return suites


async def enabled_suites(db: Database) -> list[Suite]:
    """The suites to score, newest version of each enabled name."""
    async with db.sessions() as session:
        rows = await list_suites(session, enabled_only=True)
    latest: dict[str, Suite] = {}
    for row in rows:
        if row.source == "builtin":
            if not (BUILTIN_DIR / row.items_path).is_file():
                continue  # a suite an older release shipped
            suite = load_suite_file(BUILTIN_DIR / row.items_path, source=f"builtin:{row.items_path}")
        else:
            suite = parse_suite_jsonl(row.content or "", name=row.name, version=int(row.version))
        if suite.version >= getattr(latest.get(suite.name), "version", 0):
            latest[suite.name] = suite
    return list(latest.values())

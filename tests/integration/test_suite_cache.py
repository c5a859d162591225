"""The suite score cache (store.suites) on SQLite and Postgres: the slices the sequential gate
scores at each look are kept side by side, and each is found again by its content's sha."""

from __future__ import annotations

import pytest

from evals.suites import load_builtin_suites, split_looks, trim
from store.db import Database
from store.suites import cached_items, scores_for_version, store_score

pytestmark = pytest.mark.integration


async def test_every_slice_of_a_suite_is_cached_and_found_by_its_sha(db_url):
    suite = trim([load_builtin_suites()["factual_qa"]], 8)[0]
    first, second = (part[0] for part in split_looks([suite], 2))
    scores = {item.id: k / 10 for k, item in enumerate(suite.items)}
    key = {"suite": suite.name, "suite_version": str(suite.version), "model_version": "v1"}
    db = Database.connect(db_url)
    try:
        async with db.sessions() as s:
            for part in (first, second):
                got = {i.id: scores[i.id] for i in part.items}
                await store_score(s, **key, sha256=part.sha256, items=got, details={"failed": 0})
            await s.commit()
        async with db.sessions() as s:
            for part in (first, second):  # the second slice did not replace the first
                assert await cached_items(s, **key, sha256=part.sha256) == {
                    i.id: scores[i.id] for i in part.items
                }
            # the whole suite was never scored as one content: not served from the slices' rows
            assert await cached_items(s, **key, sha256=suite.sha256) is None
            assert await cached_items(s, **{**key, "model_version": "v2"}, sha256=first.sha256) is None
            (row,) = await scores_for_version(s, model_version="v1")  # one row, over every item
            assert row.n == 8 and row.score == pytest.approx(sum(scores.values()) / 8)
    finally:
        await db.close()

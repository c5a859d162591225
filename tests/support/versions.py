"""Register versions straight in a running gateway's database (what a round would have written)."""

from __future__ import annotations

import asyncio

from store.db import Database
from store.versions import add_candidate, record_decision


def insert_version(
    server,
    version_id: str,
    path,
    *,
    promote: bool | None,
    sha256: str | None = None,
    meta: dict | None = None,
) -> None:
    """Register ``path`` as candidate ``version_id`` (parent base) in the server's database, with
    a passing or failing gate decision (none when ``promote`` is None)."""

    async def insert() -> None:
        url = server.env.get("PERENNIAL_DATABASE_URL") or f"sqlite:///{server.data_dir / 'perennial.db'}"
        db = Database.connect(url)
        try:
            async with db.sessions() as session:
                await add_candidate(
                    session,
                    version_id=version_id,
                    parent_id="base",
                    snapshot_path=str(path),
                    sha256=sha256,
                    meta=meta or {},
                    metrics={},
                )
                if promote is not None:
                    reasons = [] if promote else ["suite arithmetic dropped 0.05 > tolerance 0.02"]
                    await record_decision(
                        session, version_id=version_id, promote=promote, reasons=reasons, checks={}
                    )
                await session.commit()
        finally:
            await db.close()

    asyncio.run(insert())

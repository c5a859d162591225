"""Admin routes (admin key): engine state, stored data, feedback quarantine, ingest dead
letters, learner rounds, prior suites.

``router`` holds them all, for the app to mount.
"""

from fastapi import APIRouter

from server.admin import data, dead_letters, engine, feedback, learner, suites

router = APIRouter()
for module in (engine, data, feedback, dead_letters, learner, suites):
    router.include_router(module.router)

__all__ = ["router"]

"""Admin routes (admin key): engine state, stored data, feedback quarantine, learner rounds,
prior suites.

``router`` holds them all, for the app to mount.
"""

from fastapi import APIRouter

from server.admin import data, engine, feedback, learner, suites

router = APIRouter()
for module in (engine, data, feedback, learner, suites):
    router.include_router(module.router)

__all__ = ["router"]

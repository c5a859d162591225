"""FastAPI dependencies: who is calling, and the services kept on ``app.state`` by the lifespan."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request


# async (not def): FastAPI runs sync dependencies in a worker thread, a thread hop per request
# that cost ~0.1-0.2 ms of CPU here; these only hash a header.
async def api_caller(request: Request) -> str:
    """Key id of the caller of a chat or feedback route (401 without a valid key)."""
    return request.app.state.keys.caller(request)


async def admin_caller(request: Request) -> str:
    """Any /admin route: the admin key (401 otherwise)."""
    return request.app.state.keys.admin(request)


Caller = Annotated[str, Depends(api_caller)]
Admin = Annotated[str, Depends(admin_caller)]

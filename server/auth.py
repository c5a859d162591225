"""API keys for chat and feedback, the admin key for /admin routes.

Keys are compared in constant time (``hmac.compare_digest`` over every configured key, no early
exit). A caller is identified by a key id (``key_`` + 12 hex of the key's sha256), never by the
key itself, so key ids can be logged and stored. When ``PERENNIAL_ADMIN_KEY`` is unset the
server generates one at first start and keeps it in ``<data_dir>/admin_key`` (mode 0600); the
console says where it is, never the key (consoles end up in log collectors).

Routes declare who may call them with the dependencies here: ``Caller`` (an API key, or anyone
when none is configured) and ``Admin`` (the admin key). :mod:`server.openapi` reads the same
two functions to document each route's scheme and 401.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from server.errors import APIError
from server.settings import Settings

ANONYMOUS = "anonymous"


def key_id(key: str) -> str:
    return "key_" + hashlib.sha256(key.encode()).hexdigest()[:12]


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class KeyRing:
    """The configured API keys and the admin key, as digests."""

    def __init__(self, api_keys: list[str], admin_key: str):
        if not admin_key:
            raise ValueError("the admin key must not be empty")
        self._api = [(_digest(k), key_id(k)) for k in api_keys]
        self._admin = _digest(admin_key)

    @property
    def open(self) -> bool:
        """No API keys configured: chat and feedback accept anyone."""
        return not self._api

    def caller(self, request: Request) -> str:
        """The caller's key id for chat and feedback routes; raise 401 if not allowed."""
        if self.open:
            return ANONYMOUS
        token = bearer_token(request)
        if token is None:
            raise _unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        given = _digest(token)
        match = None
        for digest, kid in self._api:  # every key is compared: no early exit
            if hmac.compare_digest(given, digest):
                match = kid
        if match is None:
            raise _unauthorized("invalid API key")
        return match

    def admin(self, request: Request) -> str:
        """Check the admin key; raise 401 if missing or wrong."""
        token = bearer_token(request)
        if token is None:
            raise _unauthorized("missing admin key: send 'Authorization: Bearer <admin key>'")
        if not hmac.compare_digest(_digest(token), self._admin):
            raise _unauthorized("invalid admin key")
        return "admin"


def _unauthorized(message: str) -> APIError:
    return APIError(401, message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


def load_or_create_admin_key(configured: str | None, key_file: Path) -> tuple[str, bool]:
    """The admin key to use, and whether it was generated now (its file must be announced)."""
    if configured:
        return configured, False
    if key_file.is_file():
        stored = key_file.read_text().strip()
        if stored:
            return stored, False
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key = "pk-admin-" + secrets.token_urlsafe(32)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key, True


def start_keys(app: FastAPI, settings: Settings) -> None:
    """The lifespan's first step: ``app.state.keys``, generating the admin key if none is set."""
    admin_key, generated = load_or_create_admin_key(
        settings.admin_key.get_secret_value() if settings.admin_key else None,
        settings.admin_key_file,
    )
    if generated:
        print(f"Generated an admin key: read it from {settings.admin_key_file} (mode 0600)", flush=True)
    app.state.keys = KeyRing([k.get_secret_value() for k in settings.api_keys], admin_key)


# async (not def): FastAPI runs sync dependencies in a worker thread, a thread hop per request
# that cost ~0.1-0.2 ms of CPU here; these only read an attribute or hash a header.
async def api_caller(request: Request) -> str:
    """Key id of the caller of a chat or feedback route (401 without a valid key)."""
    return request.app.state.keys.caller(request)


async def admin_caller(request: Request) -> str:
    """Any /admin route: the admin key (401 otherwise)."""
    return request.app.state.keys.admin(request)


Caller = Annotated[str, Depends(api_caller)]
Admin = Annotated[str, Depends(admin_caller)]

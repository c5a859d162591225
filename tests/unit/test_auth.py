"""API and admin keys (pure logic over a real Starlette request object)."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from server.auth import ANONYMOUS, KeyRing, key_id, load_or_create_admin_key
from server.errors import APIError


def request_with(auth: str | None) -> Request:
    headers = [(b"authorization", auth.encode())] if auth else []
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers})


def test_open_when_no_api_keys():
    ring = KeyRing([], "admin")
    assert ring.open and ring.caller(request_with(None)) == ANONYMOUS


def test_api_keys_identify_callers_by_key_id_not_key():
    ring = KeyRing(["sk-1", "sk-2"], "admin")
    assert ring.caller(request_with("Bearer sk-2")) == key_id("sk-2")
    assert "sk-2" not in key_id("sk-2") and key_id("sk-1") != key_id("sk-2")
    assert ring.caller(request_with("bearer   sk-1  ")) == key_id("sk-1")


@pytest.mark.parametrize("auth", [None, "Bearer", "Basic sk-1", "Bearer sk-3", "sk-1", "Bearer admin"])
def test_bad_api_keys_are_401(auth):
    with pytest.raises(APIError) as info:
        KeyRing(["sk-1"], "admin").caller(request_with(auth))
    assert info.value.status == 401 and info.value.headers == {"WWW-Authenticate": "Bearer"}


def test_admin_key_is_separate_from_api_keys():
    ring = KeyRing(["sk-1"], "pk-admin")
    assert ring.admin(request_with("Bearer pk-admin")) == "admin"
    with pytest.raises(APIError):
        ring.admin(request_with("Bearer sk-1"))
    with pytest.raises(APIError):
        KeyRing([], "pk-admin").admin(request_with(None))  # open chat does not open admin


def test_admin_key_generated_once_and_kept(tmp_path):
    key_file = tmp_path / "admin_key"
    key, generated = load_or_create_admin_key(None, key_file)
    assert generated and key_file.read_text().strip() == key
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert load_or_create_admin_key(None, key_file) == (key, False)
    assert load_or_create_admin_key("configured", key_file) == ("configured", False)

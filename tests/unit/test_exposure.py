"""Secure defaults: `perennial serve` refuses to run open (no API keys) beyond loopback unless
told to, and a generated admin key is announced by its file, never printed."""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from perennial.serve import serve
from server.auth import start_keys
from server.settings import Settings


@pytest.mark.parametrize(
    ("host", "keys", "allow_open", "refused"),
    [
        ("127.0.0.1", "", False, False),  # `make serve`: loopback, no keys
        ("127.0.0.2", "", False, False),
        ("::1", "", False, False),
        ("localhost", "", False, False),
        ("0.0.0.0", "", False, True),
        ("::", "", False, True),
        ("", "", False, True),  # binds every interface
        ("192.168.1.5", "", False, True),
        ("gateway.example.com", "", False, True),  # a name is not known to be loopback
        ("0.0.0.0", "k1,k2", False, False),
        ("0.0.0.0", "", True, False),  # PERENNIAL_ALLOW_OPEN=true: open on purpose
    ],
)
def test_open_only_on_loopback_unless_allowed(host, keys, allow_open, refused):
    settings = Settings(host=host, api_keys=keys, allow_open=allow_open)
    assert (settings.open_to_network() is not None) is refused


def test_serve_refuses_open_on_every_interface_before_binding(capsys):
    settings = Settings(host="0.0.0.0", port=1, api_keys="", allow_open=False)  # port 1: never bound
    with pytest.raises(SystemExit) as exited:
        serve(settings)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: refusing to serve without API keys on '0.0.0.0'")
    assert "PERENNIAL_API_KEYS" in err and "PERENNIAL_ALLOW_OPEN=true" in err


def test_a_generated_admin_key_is_never_printed(tmp_path, capsys):
    app = FastAPI()
    settings = Settings(data_dir=tmp_path, admin_key=None)
    start_keys(app, settings)
    key = settings.admin_key_file.read_text().strip()
    out = capsys.readouterr()
    assert key.startswith("pk-admin-") and oct(settings.admin_key_file.stat().st_mode & 0o777) == "0o600"
    assert str(settings.admin_key_file) in out.out and key not in out.out + out.err
    start_keys(FastAPI(), settings)  # the next start reuses it and says nothing
    assert capsys.readouterr().out == ""

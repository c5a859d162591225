"""A FAKE gateway for the SDK's pure retry and error tests: it answers a script of canned
responses and records what it received. Everything else is tested against the real server."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Canned:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class FakeGateway:
    """Answers each request with the next canned response (the last one repeats)."""

    def __init__(self, script: list[Canned]):
        self.script = list(script)
        self.received: list[Received] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                fake.received.append(
                    Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                canned = fake.script.pop(0) if len(fake.script) > 1 else fake.script[0]
                time.sleep(canned.delay_s)
                payload = canned.body if isinstance(canned.body, bytes) else json.dumps(canned.body).encode()
                try:
                    self.send_response(canned.status)
                    for name, value in {"content-type": "application/json", **canned.headers}.items():
                        self.send_header(name, value)
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left: that is the point of a delay

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeGateway:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def envelope(status: int, message: str, code: str | None = None, param: str | None = None) -> dict:
    kinds = {
        400: "invalid_request_error",
        401: "authentication_error",
        409: "conflict_error",
        429: "rate_limit_error",
        503: "service_unavailable",
    }
    return {
        "error": {"message": message, "type": kinds.get(status, "server_error"), "param": param, "code": code}
    }


FEEDBACK = {
    "id": "fb-" + "0" * 32,
    "object": "feedback",
    "created": 1700000000,
    "completion_id": "chatcmpl-" + "1" * 32,
    "choice_index": 0,
    "reward": 1.0,
    "label": "up",
    "correction": None,
    "reference": None,
    "verifier": None,
    "task": None,
    "metadata": None,
}

"""Fixtures shared by the nxcloud, airudder and quanshi contract tests: a webhook receiver on
loopback that records every push (and answers 200), and a helper that waits for a condition."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

FAST = {
    "retries": 3,
    "backoffFactor": 0.01,
    "backoffMax": 0.05,
    "backoffJitter": 0.0,
    "readTimeout": 10,  # a loaded CI machine must not turn a slow answer into a retry; fault tests set less
    "connectTimeout": 1,
}


@dataclass
class Push:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


class Receiver:
    """Stands in for outcall's /webhooks endpoint: keeps every push it receives."""

    def __init__(self) -> None:
        self.pushes: list[Push] = []
        self.status = 200
        self.lock = threading.Lock()
        receiver = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with receiver.lock:
                    receiver.pushes.append(Push(parts.path, parse_qs(parts.query), dict(self.headers.items()), body))
                self.send_response(receiver.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def of(self, path_suffix: str) -> list[Push]:
        with self.lock:
            return [p for p in self.pushes if p.path.endswith(path_suffix)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")

"""What every provider simulator shares: an HTTP server on 127.0.0.1, a journal of every
request received (so tests assert on the wire), fault injection, and a virtual dialer.

A simulator subclass registers routes with `route(method, regex)` and answers with
`Reply`. Admin endpoints, the same on every simulator:
  GET    /_sim/requests          the journal (JSON list)
  DELETE /_sim/requests          clear it
  GET/PUT /_sim/faults           read or set fault injection (JSON, keys of Faults)
  GET/PUT /_sim/dialing          read or set the virtual dialer (JSON, keys of Dialing)
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests


@dataclass
class Faults:
    """Fractions (0..1) of requests answered with a fault, tried in this order."""

    error_rate: float = 0.0  # HTTP 500
    throttle_rate: float = 0.0  # HTTP 429 with Retry-After
    timeout_rate: float = 0.0  # no answer until the client gives up (sleeps timeout_seconds)
    cut_rate: float = 0.0  # connection closed without an answer
    delay_seconds: float = 0.0  # added to every answer
    timeout_seconds: float = 15.0
    retry_after: int = 1
    fail_next: int = 0  # the next N requests answer 500, whatever the rates
    throttle_next: int = 0  # the next N requests answer 429
    seed: int | None = None


@dataclass
class Dialing:
    """The virtual dialer: each dialled number is answered with probability answer_rate."""

    answer_rate: float = 0.7
    busy_rate: float = 0.1
    ring_seconds: float = 0.2
    talk_seconds: float = 0.3
    seed: int | None = None


@dataclass
class SimRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def to_dict(self) -> dict[str, Any]:
        try:
            body: Any = self.json()
        except ValueError:
            body = self.body.decode("utf-8", "replace")
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": body,
            "at": self.at,
        }


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # sent as is when set

    def encode(self) -> bytes:
        if self.raw is not None:
            return self.raw
        return json.dumps(self.body, ensure_ascii=False).encode()


Handler = Callable[[SimRequest, "re.Match[str]"], Reply]


class Simulator:
    key = "base"
    journal_size = int(os.environ.get("OUTCALL_SIM_JOURNAL_SIZE", "1000"))

    def __init__(self, port: int = 0, settings: dict[str, Any] | None = None) -> None:
        self.settings = settings or {}
        self.faults = Faults()
        self.dialing = Dialing()
        self.journal: list[SimRequest] = []  # the latest JOURNAL_SIZE requests (a long run stays bounded)
        self.canned: list[Reply] = []  # answers queued by tests, given before any route's
        self.lock = threading.RLock()
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._rng = random.Random()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self._timers: list[threading.Timer] = []  # pending ones; finished ones are dropped as it grows
        self._prune_timers_at = 1024
        self.webhook_url: str | None = self.settings.get("webhookUrl")
        self.register()

    # ---- to override
    def register(self) -> None:
        """Register the provider's routes."""

    # ---- routing
    def route(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method.upper(), re.compile(f"^{pattern}$"), handler))

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Simulator:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"sim-{self.key}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._server.shutdown()
        self._server.server_close()

    # ---- helpers for subclasses
    def rng(self) -> random.Random:
        return self._rng

    def later(self, seconds: float, fn: Callable[[], None]) -> None:
        """Run fn after `seconds` on a daemon timer (virtual dialing, webhooks)."""
        timer = threading.Timer(seconds, fn)
        timer.daemon = True
        with self.lock:
            if len(self._timers) >= self._prune_timers_at:
                self._timers = [t for t in self._timers if t.is_alive()]
                self._prune_timers_at = max(1024, 2 * len(self._timers))
            self._timers.append(timer)
        timer.start()

    def outcome(self) -> str:
        """answered, busy or no-answer, by the dialer's rates."""
        roll = self._rng.random()
        if roll < self.dialing.answer_rate:
            return "answered"
        if roll < self.dialing.answer_rate + self.dialing.busy_rate:
            return "busy"
        return "no-answer"

    def post_webhook(self, url: str, body: bytes, headers: dict[str, str]) -> int | None:
        """Deliver a push; returns the status, or None when the receiver could not be reached."""
        try:
            return requests.post(url, data=body, headers=headers, timeout=10).status_code
        except requests.RequestException:
            return None

    def requests_to(self, path_regex: str) -> list[SimRequest]:
        pattern = re.compile(path_regex)
        with self.lock:
            return [r for r in self.journal if pattern.search(r.path)]

    # ---- fault injection
    def _fault(self) -> str | None:
        f = self.faults
        with self.lock:
            if f.fail_next > 0:
                f.fail_next -= 1
                return "error"
            if f.throttle_next > 0:
                f.throttle_next -= 1
                return "throttle"
        roll = self._rng.random()
        for kind, rate in (
            ("error", f.error_rate),
            ("throttle", f.throttle_rate),
            ("timeout", f.timeout_rate),
            ("cut", f.cut_rate),
        ):
            if roll < rate:
                return kind
            roll -= rate
        return None

    def _admin(self, req: SimRequest) -> Reply | None:
        if not req.path.startswith("/_sim/"):
            return None
        name = req.path[len("/_sim/") :]
        if name == "requests":
            with self.lock:
                if req.method == "DELETE":
                    self.journal.clear()
                    return Reply(204, raw=b"")
                return Reply(200, [r.to_dict() for r in self.journal])
        targets = {"faults": "faults", "dialing": "dialing"}
        if name in targets:
            current = getattr(self, targets[name])
            if req.method == "PUT":
                values = {**asdict(current), **(req.json() or {})}
                current = type(current)(**values)
                setattr(self, targets[name], current)
                if current.seed is not None:
                    self._rng.seed(current.seed)
            return Reply(200, asdict(current))
        if name == "settings" and req.method == "PUT":
            self.settings.update(req.json() or {})
            self.webhook_url = self.settings.get("webhookUrl", self.webhook_url)
            return Reply(200, self.settings)
        return Reply(404, {"error": "unknown admin path"})

    def answer_next(self, reply: Reply) -> None:
        """Answer the next provider request with `reply`, whatever it asks (tests)."""
        with self.lock:
            self.canned.append(reply)

    def reset(self) -> None:
        """Forget the journal, queued answers, faults and dialing settings; subclasses add their state."""
        with self.lock:
            self.journal.clear()
            self.canned.clear()
            self.faults = Faults()
            self.dialing = Dialing()

    def dispatch(self, req: SimRequest) -> Reply:
        with self.lock:
            canned = self.canned.pop(0) if self.canned else None
        if canned is not None:
            return canned
        for method, pattern, handler in self._routes:
            match = pattern.match(req.path)
            if match and method == req.method:
                return handler(req, match)
        return Reply(404, {"code": 404, "message": f"no route {req.method} {req.path}"})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        sim = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                req = SimRequest(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query),
                    headers={k: v for k, v in self.headers.items()},
                    body=body,
                    at=time.time(),
                )
                reply = sim._admin(req)
                if reply is None:
                    with sim.lock:
                        sim.journal.append(req)
                        if len(sim.journal) > sim.journal_size:
                            del sim.journal[: len(sim.journal) - sim.journal_size]
                    fault = sim._fault()
                    if sim.faults.delay_seconds:
                        time.sleep(sim.faults.delay_seconds)
                    if fault == "cut":
                        self.close_connection = True
                        self.connection.close()
                        return
                    if fault == "timeout":
                        time.sleep(sim.faults.timeout_seconds)
                        reply = Reply(504, {"message": "simulated timeout"})
                    elif fault == "error":
                        reply = Reply(500, {"message": "simulated server error"})
                    elif fault == "throttle":
                        reply = Reply(
                            429, {"message": "simulated throttling"}, {"Retry-After": str(sim.faults.retry_after)}
                        )
                    else:
                        try:
                            reply = sim.dispatch(req)
                        except Exception as exc:  # a simulator bug must show, not hang the client
                            reply = Reply(500, {"message": f"simulator error: {exc}"})
                payload = reply.encode()
                self.send_response(reply.status)
                headers = {"Content-Type": "application/json; charset=utf-8", **reply.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        return _Handler

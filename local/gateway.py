"""The local API Gateway: every HttpApi route of template.yaml becomes an HTTP API payload 2.0
event for its function, with the Lambda authorizer run first on protected routes, as API
Gateway does it (missing header -> 401 without calling the authorizer; "Unauthorized" raised
-> 401; isAuthorized false -> 403; anything else from the authorizer -> 500). Bodies are read by
Content-Length or chunked, up to API Gateway's 10 MB (413 past it); a text body that is not UTF-8
reaches the function base64-encoded, as binary does. The gateway's own answers have the API's
error shape {code, message, requestId, errors}."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from local.runtime import Runtime
from local.template import ACCOUNT_ID, REGION, Function, Route

TEXT_TYPES = ("application/json", "text/", "application/xml", "application/x-www-form-urlencoded")
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's own limit of a request body (HTTP APIs: 10 MB)
DRAIN_BYTES = 64 * 1024 * 1024  # a body over the limit is read (and dropped) up to this, so the client hears 413
# The gateway's own answers, in the API's one error shape (outcall.api.error_dict).
GATEWAY_ERRORS = {
    400: ("BadRequest", "the request cannot be read: {}"),
    401: ("Unauthorized", "a valid bearer token is needed: Authorization: Bearer <token>"),
    403: ("Forbidden", "this token may not call this route"),
    404: ("NotFound", "no route {}"),
    413: ("TooLarge", "the body is over API Gateway's limit of 10 MB ({} bytes)"),
    500: ("InternalError", "internal error"),
}


class BodyError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _utf8(body: bytes) -> str | None:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


class Gateway:
    def __init__(self, runtime: Runtime, authorizer: Function | None, port: int, host: str = "127.0.0.1") -> None:
        self.runtime = runtime
        self.authorizer = authorizer
        self.routes: list[tuple[Route, Function]] = sorted(
            ((route, fn) for fn in runtime.functions.values() for route in fn.routes),
            key=lambda pair: pair[0].specificity,
        )
        self.server = ThreadingHTTPServer((host, port), self._handler_class())
        self.server.daemon_threads = True

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def match(self, method: str, path: str) -> tuple[Route, Function, dict[str, str]] | None:
        for route, fn in self.routes:
            if route.method not in (method, "ANY"):
                continue
            found = route.pattern.match(path)
            if found:
                return route, fn, {name: unquote(v) for name, v in zip(route.params, found.groups(), strict=True)}
        return None

    # ------------------------------------------------------------ events
    @staticmethod
    def _headers(raw: Any) -> dict[str, str]:
        headers: dict[str, str] = {}
        for name, value in raw.items():
            key = name.lower()
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        return headers

    def http_event(
        self,
        method: str,
        raw_path: str,
        query: str,
        headers: dict[str, str],
        body: bytes,
        route: Route,
        path_params: dict[str, str],
    ) -> dict[str, Any]:
        params: dict[str, str] = {}
        for key, value in parse_qsl(query, keep_blank_values=True):
            params[key] = f"{params[key]},{value}" if key in params else value
        content_type = headers.get("content-type", "")
        is_text = not body or any(t in content_type for t in TEXT_TYPES)
        now = datetime.now(UTC)
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": route.route_key,
            "rawPath": raw_path,
            "rawQueryString": query,
            "headers": {k: v for k, v in headers.items() if k != "cookie"},
            "requestContext": {
                "accountId": ACCOUNT_ID,
                "apiId": "local",
                "domainName": headers.get("host", "127.0.0.1"),
                "domainPrefix": "local",
                "http": {
                    "method": method,
                    "path": raw_path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": "127.0.0.1",
                    "userAgent": headers.get("user-agent", ""),
                },
                "requestId": uuid.uuid4().hex[:16],
                "routeKey": route.route_key,
                "stage": "$default",
                "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "timeEpoch": int(now.timestamp() * 1000),
            },
            "isBase64Encoded": not is_text,
        }
        if "cookie" in headers:
            event["cookies"] = [c.strip() for c in headers["cookie"].split(";")]
        if params:
            event["queryStringParameters"] = params
        if path_params:
            event["pathParameters"] = path_params
        if body:
            text = _utf8(body) if is_text else None
            if text is None:  # binary, or text that is not UTF-8: the function gets the bytes as sent
                event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
            else:
                event["body"] = text
        return event

    def authorize(self, event: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        """(0, context) when allowed, else the status API Gateway would answer."""
        header = event["headers"].get("authorization")
        if not header or self.authorizer is None:
            return 401, None
        auth_event = {
            "version": "2.0",
            "type": "REQUEST",
            "routeArn": f"arn:aws:execute-api:{REGION}:{ACCOUNT_ID}:local/$default/{event['routeKey'].replace(' ', '')}",  # noqa: E501
            "identitySource": [header],
            "routeKey": event["routeKey"],
            "rawPath": event["rawPath"],
            "rawQueryString": event["rawQueryString"],
            "headers": event["headers"],
            "queryStringParameters": event.get("queryStringParameters"),
            "pathParameters": event.get("pathParameters"),
            "requestContext": event["requestContext"],
        }
        try:
            result = self.runtime.invoke(self.authorizer, auth_event, "authorizer", event["routeKey"])
        except Exception as exc:
            return (401 if str(exc) == "Unauthorized" else 500), None
        if not isinstance(result, dict) or not result.get("isAuthorized"):
            return 403, None
        return 0, {"lambda": result.get("context") or {}}

    # ------------------------------------------------------------ server
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "outcall-local"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                if status in (204, 304):  # never a body: a client reads one as the start of the next answer
                    body = b""
                self.send_response(status)
                out = {"Content-Type": "application/json", **(headers or {})}
                origin = self.headers.get("Origin")
                if origin:
                    out.setdefault("Access-Control-Allow-Origin", "*")
                for name, value in out.items():
                    if name.lower() == "content-length":
                        continue
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _error(self, status: int, detail: str = "", request_id: str = "", close: bool = False) -> None:
                code, text = GATEWAY_ERRORS[status]
                body = {"code": code, "message": text.format(detail), "requestId": request_id or uuid.uuid4().hex[:16]}
                headers = {"Connection": "close"} if close else {}
                if close:
                    self.close_connection = True
                self._send(status, json.dumps({**body, "errors": []}).encode(), headers)

            def _read_body(self) -> bytes:
                """The body as API Gateway takes it: by Content-Length or chunked, at most 10 MB."""
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    return self._read_chunked()
                raw = (self.headers.get("Content-Length") or "0").strip()
                if not raw.isdigit():
                    raise BodyError(400, f"Content-Length {raw[:40]!r} is not a number")
                length = int(raw)
                if length > MAX_BODY_BYTES:
                    self._drain(length)
                    raise BodyError(413, f"{length:,}")
                return self.rfile.read(length) if length else b""

            def _read_chunked(self) -> bytes:
                body = bytearray()
                while True:
                    line = self.rfile.readline(1024).split(b";", 1)[0].strip()
                    try:
                        size = int(line, 16)
                    except ValueError:
                        raise BodyError(400, "a chunk size is not a hexadecimal number") from None
                    if size == 0:
                        while self.rfile.readline(1024).strip():  # trailers
                            pass
                        return bytes(body)
                    if len(body) + size > MAX_BODY_BYTES:
                        self.close_connection = True
                        raise BodyError(413, f"over {MAX_BODY_BYTES:,}")
                    body += self.rfile.read(size)
                    self.rfile.readline(8)

            def _drain(self, length: int) -> None:
                if length > DRAIN_BYTES:
                    self.close_connection = True
                    return
                left = length
                while left > 0:
                    data = self.rfile.read(min(left, 1 << 20))
                    if not data:
                        break
                    left -= len(data)

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                try:
                    body = self._read_body()
                except BodyError as exc:
                    self._error(exc.status, exc.detail, close=exc.status == 400 or self.close_connection)
                    return
                if parts.path == "/_local/deliveries":
                    self._send(200, json.dumps(list(gateway.runtime.journal)).encode())
                    return
                if self.command == "OPTIONS":
                    self._send(
                        204,
                        b"",
                        {
                            "Access-Control-Allow-Origin": "*",
                            "Access-Control-Allow-Methods": "GET,POST,PUT,PATCH,DELETE,OPTIONS",
                            "Access-Control-Allow-Headers": "authorization,content-type,idempotency-key",
                        },
                    )
                    return
                found = gateway.match(self.command, parts.path)
                if found is None:
                    self._error(404, f"{self.command} {parts.path}")
                    return
                route, fn, path_params = found
                headers = gateway._headers(self.headers)
                event = gateway.http_event(self.command, parts.path, parts.query, headers, body, route, path_params)
                request_id = event["requestContext"]["requestId"]
                if route.authorized:
                    status, context = gateway.authorize(event)
                    if status:
                        self._error(status, request_id=request_id)
                        return
                    event["requestContext"]["authorizer"] = context
                try:
                    result = gateway.runtime.invoke(fn, event, "http", route.route_key)
                except Exception:
                    self._error(500, request_id=request_id)
                    return
                self._respond(result)

            def _respond(self, result: Any) -> None:
                if not (isinstance(result, dict) and "statusCode" in result):
                    # payload 2.0: a bare value is 200 with a JSON body
                    self._send(200, json.dumps(result).encode())
                    return
                raw = result.get("body") or ""
                payload = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode()
                headers = {k: str(v) for k, v in (result.get("headers") or {}).items()}
                for key, values in (result.get("multiValueHeaders") or {}).items():
                    headers[key] = ",".join(str(v) for v in values)
                cookies = result.get("cookies") or []
                if cookies:
                    headers["Set-Cookie"] = cookies[0]
                self._send(int(result["statusCode"]), payload, headers)

            def _serve_safely(self) -> None:
                try:
                    self._serve()
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True
                except Exception:  # the client hears 500, never a dropped connection
                    logging.getLogger("local.gateway").exception("gateway error")
                    with contextlib.suppress(OSError):
                        self._error(500, close=True)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _serve_safely

            def __getattr__(self, name: str) -> Any:
                # any other method (TRACE, PROPFIND, ...) matches no route: 404, as API Gateway answers
                if name.startswith("do_"):
                    return self._serve_safely
                raise AttributeError(name)

        return _Handler

    def serve_forever(self) -> None:
        self.server.serve_forever(poll_interval=0.2)

    def shutdown(self) -> None:
        self.server.shutdown()
        self.server.server_close()

"""The API's one error shape and its body rules over real HTTP, through the local gateway: bodies
that are not JSON or not UTF-8, other media types, limits, chunked bodies, NUL characters, and
uploads PUT the way curl sends them."""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

pytestmark = pytest.mark.slow

SHAPE = {"code", "message", "requestId", "errors"}
CSV = b"name,mobile\r\nA,13800138000\r\nB,13900139000\r\n"


def error(answer: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == SHAPE and body["code"] == code and body["requestId"], body
    return dict(body)


def raw_post(local_stack: Any, path: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    return local_stack.authed("POST", path, data=body, headers=headers)


def task_count(local_stack: Any) -> int:
    return len(local_stack.authed("GET", "/tasks?limit=100").json()["items"])


def test_the_gateway_answers_in_the_api_error_shape(local_stack: Any) -> None:
    error(local_stack.get("/tasks"), 401, "Unauthorized")
    error(local_stack.get("/no/such/route"), 404, "NotFound")
    trace = requests.request("TRACE", local_stack.url + "/tasks", timeout=10)
    error(trace, 404, "NotFound")


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code", "says"),
    [
        (b'{"name": "x",', "application/json", 400, "BadRequest", "not JSON"),
        ('{"name": "Müller", "provider": "xswitch"}'.encode("latin-1"), "application/json", 400, "BadRequest", "UTF-8"),
        ('{"name": "x", "provider": "xswitch"}'.encode("utf-16"), "application/json", 400, "BadRequest", "UTF-8"),
        (b'{"name": "\xc3\x28", "provider": "xswitch"}', "application/json; charset=utf-8", 400, "BadRequest", "UTF-8"),
        (b'{"name": "x", "provider": "xswitch"}', "application/octet-stream", 415, "UnsupportedMediaType", "JSON"),
        (b'{"name": "x", "provider": "xswitch"}', "text/plain", 415, "UnsupportedMediaType", "JSON"),
        (b'{"name": "x", "provider": "xswitch"}', "application/x-www-form-urlencoded", 415, "UnsupportedMediaType", ""),
        (b'{"name": "a\\u0000b", "provider": "xswitch"}', "application/json", 422, "ValidationError", "NUL"),
    ],
    ids=["not-json", "latin-1", "utf-16", "invalid-utf8", "octet-stream", "text-plain", "curl-form", "nul-name"],
)
def test_bodies_a_json_route_cannot_take_are_refused_clearly(
    local_stack: Any, body: bytes, content_type: str, status: int, code: str, says: str
) -> None:
    before = task_count(local_stack)
    answer = error(raw_post(local_stack, "/tasks", body, {"Content-Type": content_type}), status, code)
    assert says.lower() in answer["message"].lower() or any(says in e["message"] for e in answer["errors"]), answer
    assert task_count(local_stack) == before  # a refused request stores nothing


def test_a_body_over_the_limits_is_413(local_stack: Any) -> None:
    route_limit = json.dumps({"name": "x" * 300_000, "provider": "xswitch"}).encode()
    body = error(raw_post(local_stack, "/tasks", route_limit, {"Content-Type": "application/json"}), 413, "TooLarge")
    assert "262144" in body["message"]
    over_gateway = b"x" * (10 * 1024 * 1024 + 1)
    error(raw_post(local_stack, "/tasks", over_gateway, {"Content-Type": "application/json"}), 413, "TooLarge")
    # the connection still answers afterwards
    assert local_stack.get("/health").status_code == 200


def test_a_chunked_body_is_read_whole(local_stack: Any) -> None:
    def chunks() -> Any:
        yield b'{"name": "chunked", '
        yield b'"provider": "nope"}'

    answer = local_stack.authed("POST", "/tasks", data=chunks(), headers={"Content-Type": "application/json"})
    body = error(answer, 422, "ValidationError")
    assert [e["field"] for e in body["errors"]] == ["provider"]


def test_a_request_the_gateway_cannot_read_is_400_not_a_dropped_connection(local_stack: Any) -> None:
    parts = urlsplit(local_stack.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(b"POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n")
        received = b""
        while chunk := sock.recv(4096):  # the gateway closes after answering
            received += chunk
        reply = received.decode()
    assert reply.startswith("HTTP/1.1 400") and '"BadRequest"' in reply, reply
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("DELETE", "/tasks/tsk_none", headers={"Authorization": f"Bearer {local_stack.token}"})
    assert conn.getresponse().status == 404


def test_curl_style_uploads_are_imported_and_every_put_is_seen(local_stack: Any) -> None:
    created = local_stack.authed("POST", "/tasks", json={"name": "curl upload", "provider": "xswitch"})
    assert created.status_code == 201, created.text
    task_id = created.json()["taskId"]
    refused = local_stack.authed("POST", f"/tasks/{task_id}/uploads", json={"filename": "list\n.csv"})
    assert error(refused, 422, "ValidationError")["errors"][0]["field"] == "filename"
    ticket = local_stack.authed("POST", f"/tasks/{task_id}/uploads", json={"filename": "list.csv"}).json()
    assert ticket["method"] == "PUT" and ticket["headers"] == {"Content-Type": "text/csv"}
    # curl -X PUT --data-binary @list.csv <uploadUrl>: curl's default form Content-Type
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert requests.put(ticket["uploadUrl"], data=CSV, headers=form, timeout=30).status_code == 200

    def finished(import_id: str) -> Any:
        def check() -> Any:
            job = local_stack.authed("GET", f"/imports/{import_id}").json()
            return job if job["status"] in ("completed", "partial", "failed") else None

        return check

    first = local_stack.wait_for(finished(ticket["importId"]), timeout=60)
    assert first["status"] == "completed" and (first["rows"], first["accepted"]) == (2, 2), first
    # a second PUT of the same URL: its own import, seen from the importId the client holds
    fixed = CSV + b"C,13700137000\r\n"
    assert requests.put(ticket["uploadUrl"], data=fixed, headers=form, timeout=30).status_code == 200
    later_ids = local_stack.wait_for(
        lambda: local_stack.authed("GET", f"/imports/{ticket['importId']}").json()["laterImports"], timeout=60
    )
    later = local_stack.wait_for(finished(later_ids[0]), timeout=60)
    assert later["uploadOf"] == ticket["importId"]
    assert (later["status"], later["accepted"], later["duplicate"]) == ("completed", 1, 2), later

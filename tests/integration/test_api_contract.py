"""The API as its users meet it, through the handlers: one error shape, bodies that are not JSON or
not UTF-8, media types, body limits, NUL characters, and the OpenAPI document that says all of it."""

from __future__ import annotations

import base64
import copy
import importlib
import json
import re
from typing import Any

import boto3
import pytest
from jsonschema import Draft202012Validator
from outcall import api, examples

from tests.helpers import ROOT, FakeContext, load_event

# the seed pages sit in shared/ beside the repository (CI lays a copy there too)
SEEDS = [p / "seeds" / "quanshi-event-call-add.txt" for p in (ROOT.parent / "shared", ROOT.parent.parent / "shared")]
HANDLERS = (  # as template.yaml routes them
    (r"^/tasks/[^/]+/(contacts|uploads|imports)$|^/imports/", "contact_import_handler"),
    (r"^/tasks/[^/]+/calls$|^/webhooks/", "webhook_intake_handler"),
    (r"^/tasks|^/dnc", "task_control_handler"),
    (r"^/events/", "conference_dialing_handler"),
)
SHAPE = {"code", "message", "requestId", "errors"}


class Answer:
    def __init__(self, raw: dict[str, Any]) -> None:
        self.status = raw["statusCode"]
        self.headers = raw.get("headers") or {}
        text = raw.get("body") or ""
        self.json = json.loads(text) if text and "json" in str(self.headers.get("Content-Type", "json")) else None


def send(
    method: str,
    path: str,
    body: bytes | str | None = None,
    *,
    content_type: str | None = "application/json",
    base64_body: bool = False,
) -> Answer:
    """One HTTP API event to the handler of `path`, as API Gateway builds it."""
    handler = importlib.import_module(next(name for pattern, name in HANDLERS if re.search(pattern, path)))
    event = copy.deepcopy(load_event("contact_import_get_import"))
    event["routeKey"] = event["requestContext"]["routeKey"] = f"{method} {path}"
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event["requestContext"]["requestId"] = "req-contract-1"
    event["pathParameters"] = {}
    event["headers"].pop("content-type", None)
    if content_type is not None:
        event["headers"]["content-type"] = content_type
    if body is not None:
        raw = body.encode() if isinstance(body, str) else body
        if base64_body:
            event["body"], event["isBase64Encoded"] = base64.b64encode(raw).decode(), True
        else:
            event["body"] = raw.decode("utf-8")
    return Answer(handler.lambda_handler(event, FakeContext()))


def tasks_stored() -> int:
    import os

    table = boto3.resource("dynamodb", region_name="us-east-1").Table(os.environ["TABLE_NAME"])
    return int(table.scan(Select="COUNT")["Count"])


def assert_error(answer: Answer, status: int, code: str, *, says: str = "") -> dict[str, Any]:
    assert answer.status == status, answer.json
    body = answer.json
    assert body is not None and set(body) == SHAPE, body
    assert body["code"] == code and body["requestId"] == "req-contract-1", body
    assert all(set(e) == {"field", "message"} for e in body["errors"]), body
    assert says.lower() in body["message"].lower(), body
    return body


# ---------------------------------------------------------------- one error shape


def test_not_found_and_validation_errors_have_the_one_shape(aws: Any) -> None:
    assert_error(send("GET", "/tasks/tsk_nope"), 404, "NotFound", says="tsk_nope")
    assert_error(send("GET", "/imports/imp_nope"), 404, "NotFound")
    body = assert_error(send("POST", "/tasks", json.dumps({"provider": "xswitch"})), 422, "ValidationError")
    assert {"field": "name", "message": "Field required"} in body["errors"]


def test_rule_details_become_field_errors(aws: Any) -> None:
    # a rule refusal (provider without tasks) used to carry `details`; now `errors` like any 422
    body = assert_error(
        send("POST", "/tasks", json.dumps({"name": "t", "provider": "quanshi"})), 422, "ValidationError"
    )
    assert body["errors"] == [{"field": "provider", "message": "quanshi has no tasks"}]
    # a mapping of facts is one entry per fact
    assert api.field_errors({"status": "stopped", "allowedFrom": ["ready", "paused"]}) == [
        {"field": "status", "message": "stopped"},
        {"field": "allowedFrom", "message": "ready, paused"},
    ]
    assert api.field_errors([{"field": "type", "provider": "xswitch", "supported": ["auto"]}]) == [
        {"field": "type", "message": "provider: xswitch; supported: auto"}
    ]


# ---------------------------------------------------------------- bodies


def test_a_body_that_is_not_json_is_a_400_that_says_so(aws: Any) -> None:
    body = assert_error(send("POST", "/tasks", '{"name": "x",'), 400, "BadRequest", says="not JSON")
    assert "line 1" in body["message"]
    assert_error(send("POST", "/tasks/tsk_1/contacts", "contacts=1"), 400, "BadRequest", says="not JSON")
    assert tasks_stored() == 0


@pytest.mark.parametrize(
    "raw",
    [
        '{"name": "Müller", "provider": "xswitch"}'.encode("latin-1"),
        '{"name": "x", "provider": "xswitch"}'.encode("utf-16"),
        b'{"name": "\xff\xfe\x80", "provider": "xswitch"}',
    ],
    ids=["latin-1", "utf-16", "invalid-bytes"],
)
def test_a_body_that_is_not_utf8_is_a_400_that_says_so(aws: Any, raw: bytes) -> None:
    assert_error(send("POST", "/tasks", raw, base64_body=True), 400, "BadRequest", says="not UTF-8")
    assert tasks_stored() == 0


@pytest.mark.parametrize(
    "content_type",
    ["application/octet-stream", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"],
)
def test_a_json_route_sent_another_media_type_is_415(aws: Any, content_type: str) -> None:
    raw = json.dumps({"name": "x", "provider": "xswitch"}).encode()
    binary = content_type == "application/octet-stream"
    answer = send("POST", "/tasks", raw, content_type=content_type, base64_body=binary)
    assert_error(answer, 415, "UnsupportedMediaType", says="application/json")
    assert tasks_stored() == 0


def test_a_form_body_powertools_would_parse_is_415_too(aws: Any) -> None:
    # an empty-looking form body reaches Powertools' form parser; the media type is still the cause
    answer = send("POST", "/tasks", "", content_type="application/x-www-form-urlencoded")
    assert answer.status in (415, 422) and set(answer.json or {}) == SHAPE


def test_a_body_over_the_route_limit_is_413_and_states_it(aws: Any) -> None:
    big = json.dumps({"name": "x" * (api.DEFAULT_BODY_LIMIT + 1), "provider": "xswitch"})
    body = assert_error(send("POST", "/tasks", big), 413, "TooLarge")
    assert str(api.DEFAULT_BODY_LIMIT) in body["message"]
    # the contacts route takes 5 MiB: the same body is an ordinary 422 (no such fields) there
    contacts = send("POST", "/tasks/tsk_1/contacts", big)
    assert contacts.status == 422
    over = json.dumps({"contacts": [{"name": "y" * (5 * api.MiB)}]})
    assert_error(send("POST", "/tasks/tsk_1/contacts", over), 413, "TooLarge", says=str(5 * api.MiB))
    assert tasks_stored() == 0


def test_a_name_with_a_nul_byte_is_refused_422(aws: Any) -> None:
    body = assert_error(
        send("POST", "/tasks", json.dumps({"name": "bad\u0000name", "provider": "xswitch"})), 422, "ValidationError"
    )
    assert body["errors"] == [{"field": "name", "message": "must not contain a NUL character (\\u0000)"}]
    deep = json.dumps({"contacts": [{"mobile": "13800138000"}, {"name": "a\x00"}]})
    body = assert_error(send("POST", "/tasks/tsk_1/contacts", deep), 422, "ValidationError")
    assert body["errors"][0]["field"] == "contacts.1.name"
    assert tasks_stored() == 0


def test_json_this_api_cannot_read_is_a_4xx_not_a_500(aws: Any) -> None:
    # a 5,000-digit number: 400 here, or 422 on its field where the body reader keeps it as text
    huge_int = '{"name": "x", "provider": "xswitch", "type": ' + "9" * 5000 + "}"
    answer = send("POST", "/tasks", huge_int)
    assert answer.status in (400, 422) and set(answer.json or {}) == SHAPE, answer.json
    nested = '{"name": "x", "settings": ' + "[" * 100_000 + "]" * 100_000 + "}"
    assert_error(send("POST", "/tasks", nested), 400, "BadRequest", says="nested")
    assert_error(send("POST", "/tasks", "[1, 2]"), 422, "ValidationError", says="JSON object")
    assert tasks_stored() == 0


def test_webhooks_take_any_media_type_and_bytes(aws: Any) -> None:
    # pushes are handed over as sent: a form body is not refused for its media type
    answer = send("POST", "/webhooks/nope", "a=1", content_type="application/x-www-form-urlencoded")
    assert_error(answer, 404, "NotFound", says="unknown provider")
    latin = send("POST", "/webhooks/nope", "é".encode("latin-1"), content_type="text/plain", base64_body=True)
    assert_error(latin, 404, "NotFound")
    big = "x" * (api.body_limit("POST /webhooks/{provider}") + 1)
    assert_error(send("POST", "/webhooks/nxcloud", big, content_type="text/plain"), 413, "TooLarge")


# ---------------------------------------------------------------- the document


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    import api_docs_handler

    event = copy.deepcopy(load_event("api_docs_health"))
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/openapi.json"
    event["routeKey"] = event["requestContext"]["routeKey"] = "GET /openapi.json"
    answer = api_docs_handler.lambda_handler(event, FakeContext())
    assert answer["statusCode"] == 200
    return dict(json.loads(answer["body"]))


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), p, op) for p, ops in doc["paths"].items() for m, op in ops.items()]


OPEN_PATHS = ("/webhooks/", "/health", "/swagger", "/openapi.json")


def test_every_error_answer_uses_the_one_error_schema(doc: dict[str, Any]) -> None:
    for method, path, op in operations(doc):
        for status, answer in op["responses"].items():
            if int(status) >= 400:
                schema = answer["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)
    error = doc["components"]["schemas"]["ErrorBody"]
    assert set(error["properties"]) == SHAPE
    assert set(doc["components"]["schemas"]["FieldError"]["properties"]) == {"field", "message"}


def test_security_only_where_it_applies(doc: dict[str, Any]) -> None:
    assert doc["security"] == [{"bearer": []}]
    for method, path, op in operations(doc):
        open_route = path.startswith(OPEN_PATHS)
        assert (op.get("security") == []) == open_route, (method, path)
        assert ("401" in op["responses"]) == (not open_route or path.startswith("/webhooks/")), (method, path)
    assert {"/health", "/swagger", "/openapi.json"} <= set(doc["paths"])


def test_statuses_match_what_the_routes_answer(doc: dict[str, Any]) -> None:
    paths = doc["paths"]
    assert set(paths["/tasks/{taskId}"]["delete"]["responses"]) >= {"204", "404"}
    assert "200" not in paths["/tasks/{taskId}"]["delete"]["responses"]
    assert "201" in paths["/tasks/{taskId}/clone"]["post"]["responses"]
    assert "200" not in paths["/tasks/{taskId}/clone"]["post"]["responses"]
    assert "204" in paths["/events/{eventId}"]["delete"]["responses"]
    assert {"200", "201"} <= set(paths["/events/{eventId}"]["put"]["responses"])
    for action in ("start", "pause", "stop"):
        assert {"404", "409", "502"} <= set(paths[f"/tasks/{{taskId}}/{action}"]["post"]["responses"])
    for method, path, op in operations(doc):
        if "requestBody" in op:
            assert {"400", "413", "415", "422"} <= set(op["responses"]), (method, path)
            limit = op["x-maxBodyBytes"]
            assert limit == api.body_limit(f"{method} {path}") and f"{limit:,}" in op["responses"]["413"]["description"]


def _validator(doc: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator({**schema, "components": doc["components"]})


def test_every_example_is_valid_for_its_schema(doc: dict[str, Any]) -> None:
    checked = 0
    for method, path, op in operations(doc):
        media = (op.get("requestBody") or {}).get("content", {}).get("application/json")
        sources = [("request", media)] if media else []
        sources += [(status, a.get("content", {}).get("application/json")) for status, a in op["responses"].items()]
        for where, content in sources:
            for name, example in ((content or {}).get("examples") or {}).items():
                errors = list(_validator(doc, content["schema"]).iter_errors(example["value"]))
                assert not errors, (method, path, where, name, [e.message for e in errors])
                checked += 1
    assert checked >= 12
    request_ops = [op for _, _, op in operations(doc) if "requestBody" in op]
    assert all(op["requestBody"]["content"]["application/json"].get("examples") for op in request_ops)
    # every JSON answer of an operation (the document itself aside) shows one
    for method, path, op in operations(doc):
        for status, answer in op["responses"].items():
            media = answer.get("content", {}).get("application/json")
            if status.startswith("2") and media and path != "/openapi.json":
                assert media.get("examples"), (method, path, status)


def _seed_pairs(text: str) -> list[tuple[str, str]]:
    return re.findall(r'"(\w+)":\s*("[^"]*"|-?\d+|null)', text)


def test_add_calls_examples_are_quanshis_own(doc: dict[str, Any]) -> None:
    op = doc["paths"]["/events/{eventId}/calls"]["post"]
    request = op["requestBody"]["content"]["application/json"]["examples"]["quanshi_event_call_add"]["value"]
    answer = op["responses"]["200"]["content"]["application/json"]["examples"]["example"]["value"]
    found = [p for p in SEEDS if p.exists()]
    if not found:
        pytest.skip("the seed pages (shared/seeds) are not beside this checkout")
    seed = found[0].read_text(encoding="utf-8").split("4. 示例", 1)[1]
    request_part, answers_part = seed.split('"timeStamp"', 1)
    first_answer = '"timeStamp"' + answers_part.split('"timeStamp"', 1)[0]

    def pairs(value: Any) -> list[tuple[str, str]]:
        return _seed_pairs(json.dumps(value, ensure_ascii=False))

    # every key and value of the page's example, in the page's order
    assert pairs(request) == _seed_pairs(request_part)
    assert pairs(answer) == _seed_pairs(first_answer)
    assert request == examples.QUANSHI_ADD_CALLS and answer == examples.QUANSHI_ADD_CALLS_ANSWER


def test_dnc_uploads_answer_a_ticket_like_call_list_uploads_and_say_so(aws: Any, doc: dict[str, Any]) -> None:
    paths = doc["paths"]
    call_list = paths["/tasks/{taskId}/uploads"]["post"]["responses"]["201"]["content"]["application/json"]
    ticket_schema = doc["components"]["schemas"][call_list["schema"]["$ref"].rsplit("/", 1)[1]]
    for path in ("/dnc/uploads", "/tasks/{taskId}/dnc/uploads"):
        op = paths[path]["post"]
        assert "201" in op["responses"] and "200" not in op["responses"], path
        media = op["responses"]["201"]["content"]["application/json"]
        schema = doc["components"]["schemas"][media["schema"]["$ref"].rsplit("/", 1)[1]]
        assert set(schema["properties"]) == set(ticket_schema["properties"]), path  # the same ticket shape
        body = op["requestBody"]["content"]["application/json"]
        request = doc["components"]["schemas"][body["schema"]["$ref"].rsplit("/", 1)[1]]
        assert {"filename", "reason", "expiresAt", "defaultRegion"} <= set(request["properties"]), path
    assert "404" in paths["/tasks/{taskId}/dnc/uploads"]["post"]["responses"]
    for path in ("/dnc/uploads/{importId}", "/tasks/{taskId}/dnc/uploads/{importId}"):
        example = paths[path]["get"]["responses"]["200"]["content"]["application/json"]["examples"]["example"]
        job = example["value"]
        assert job["rows"] == job["added"] + job["alreadyListed"] + job["duplicate"] + job["invalid"], path
    # the routes answer with the one error shape
    assert_error(send("GET", "/dnc/uploads/dncimp_nope"), 404, "NotFound", says="dncimp_nope")
    assert_error(send("POST", "/dnc/uploads", "{}"), 422, "ValidationError")
    assert_error(send("POST", "/tasks/tsk_nope/dnc/uploads", json.dumps({"filename": "a.csv"})), 404, "NotFound")

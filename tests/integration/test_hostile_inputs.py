"""Hostile inputs through the HTTP handlers (moto, the provider simulators over HTTP): every one is a
4xx that names the field, and a refused request leaves nothing behind: no task, no import, no
contact, no object, no message, no provider call."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from tests.integration.results_support import Answer, http, items, queue_messages

HUGE_INT = "9" * 5000
DEEP = 500


def _handler(name: str) -> Any:
    import importlib

    return importlib.import_module(name)


def tasks_api(method: str, path: str, raw: bytes | str | None = None) -> Answer:
    body = raw.encode() if isinstance(raw, str) else raw
    return http(method, path, body, handler=_handler("task_control_handler"))


def contacts_api(method: str, path: str, raw: bytes | str | None = None) -> Answer:
    body = raw.encode() if isinstance(raw, str) else raw
    return http(method, path, body, handler=_handler("contact_import_handler"))


def events_api(method: str, path: str, raw: bytes | str | None = None) -> Answer:
    body = raw.encode() if isinstance(raw, str) else raw
    return http(method, path, body, handler=_handler("conference_dialing_handler"))


def nested(depth: int, leaf: Any = 1) -> Any:
    value: Any = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def snapshot() -> dict[str, Any]:
    """What a request could leave behind: every table item, every bucket object, queued messages."""
    s3 = boto3.client("s3", region_name="us-east-1")
    objects = s3.list_objects_v2(Bucket=os.environ["BUCKET_NAME"]).get("Contents", [])
    return {
        "items": sorted((str(i["pk"]), str(i["sk"])) for i in items("")),
        "objects": sorted(o["Key"] for o in objects),
        "imports": len(queue_messages(os.environ["IMPORT_QUEUE_URL"])),
        "results": len(queue_messages(os.environ["RESULTS_QUEUE_URL"])),
    }


def journal(sims: dict[str, Any]) -> dict[str, int]:
    return {key: len(sim.journal) for key, sim in sims.items()}


def refused(answer: Answer, field: str, *, status: int = 422) -> None:
    assert answer.status == status, (answer.status, answer.text[:500])
    body = answer.json
    assert body is not None and body["code"] and body["requestId"] is not None
    named = [e.get("field", "") for e in body.get("errors") or body.get("details") or []]
    assert any(field in f for f in named) or field in body["message"], (field, body)
    assert len(answer.text) < 20_000, "the answer must not echo the hostile input"


def create_task() -> dict[str, Any]:
    answer = tasks_api("POST", "/tasks", json.dumps({"name": "limits", "provider": "xswitch", "type": "auto"}))
    assert answer.status == 201, answer.json
    return dict(answer.json)


# ---------------------------------------------------------------- tasks


def _task(settings: str) -> str:
    return '{"name": "hostile", "provider": "xswitch", "type": "auto", "settings": ' + settings + "}"


TASK_CASES: list[tuple[str, str, str]] = [
    ("1 MB providerOptions", _task(json.dumps({"providerOptions": {"blob": "x" * 1_000_000}})), "body"),
    (
        "many small options",
        _task(json.dumps({"providerOptions": {f"k{i}": i for i in range(5000)}})),
        "providerOptions",
    ),
    ("500-deep providerOptions", _task(json.dumps({"providerOptions": nested(DEEP)})), "providerOptions"),
    ("5,000-digit concurrency", _task('{"concurrency": ' + HUGE_INT + "}"), "concurrency"),
    ("5,000-digit option", _task('{"providerOptions": {"n": ' + HUGE_INT + "}}"), "providerOptions"),
    ("39-digit option", _task('{"providerOptions": {"n": ' + "9" * 39 + "}}"), "providerOptions"),
    ("NaN option", _task('{"providerOptions": {"n": NaN}}'), "body"),
    ("1e999 option", _task('{"providerOptions": {"n": 1e999}}'), "providerOptions"),
    ("100 KB time zone", _task(json.dumps({"callingWindow": {"timezone": "A" * 100_000}})), "timezone"),
    ("time zone path", _task(json.dumps({"callingWindow": {"timezone": "../../etc/passwd"}})), "timezone"),
    ("10,000 caller ids", _task(json.dumps({"callerIds": ["+8610123456"] * 10_000})), "callerIds"),
    ("100 KB caller id", _task(json.dumps({"callerIds": ["1" * 100_000]})), "callerIds"),
    (
        "1,000 blackout dates",
        _task(json.dumps({"callingWindow": {"blackoutDates": ["2030-01-01"] * 1000}})),
        "blackoutDates",
    ),
    ("1,000 weekdays", _task(json.dumps({"callingWindow": {"weekdays": [1] * 1000}})), "weekdays"),
    ("100,000-deep body", '{"name": ' + "[" * 100_000 + "]" * 100_000 + "}", "body"),
]


# the body checks answer before any field is read (README "Errors"): over the route's limit is 413,
# a body that is not JSON this API reads (NaN, nested past the parser) is 400
BODY_STATUS = {"1 MB providerOptions": 413, "NaN option": 400, "100,000-deep body": 400}


@pytest.mark.parametrize(("case", "body", "field"), TASK_CASES, ids=[c[0] for c in TASK_CASES])
def test_hostile_task_is_refused_naming_the_field_and_nothing_is_created(
    sims: dict[str, Any], case: str, body: str, field: str
) -> None:
    before, calls = snapshot(), journal(sims)
    refused(tasks_api("POST", "/tasks", body), field, status=BODY_STATUS.get(case, 422))
    assert snapshot() == before
    assert journal(sims) == calls, "no provider was called"


@pytest.mark.parametrize(
    ("case", "settings", "field"),
    [c for c in TASK_CASES if c[0] not in ("100,000-deep body",)],
    ids=[c[0] for c in TASK_CASES if c[0] != "100,000-deep body"],
)
def test_hostile_patch_is_refused_and_the_task_is_unchanged(
    sims: dict[str, Any], case: str, settings: str, field: str
) -> None:
    task = create_task()
    before, calls = snapshot(), journal(sims)
    patch = settings.replace('"name": "hostile", "provider": "xswitch", "type": "auto", ', "")
    refused(tasks_api("PATCH", f"/tasks/{task['taskId']}", patch), field, status=BODY_STATUS.get(case, 422))
    assert snapshot() == before
    assert journal(sims) == calls
    assert tasks_api("GET", f"/tasks/{task['taskId']}").json["settings"] == task["settings"]


def test_options_at_their_limits_are_stored(sims: dict[str, Any]) -> None:
    from outcall import limits

    # nxcloud's documented fields that take free text and free JSON: `other`, manualCallSetting
    deep = nested(limits.PROVIDER_OPTIONS_DEPTH - 3)
    options = {
        "other": "x" * (limits.PROVIDER_OPTIONS_BYTES - 200),
        "taskCreateSetting": {"manualCallSetting": deep},
    }
    body = {
        "name": "n" * 100,
        "provider": "nxcloud",
        "type": "auto",
        "settings": {
            "callerIds": ["+" + "1" * (limits.CALLER_ID_CHARS - 1)] * limits.MAX_CALLER_IDS,
            "providerOptions": options,
            "callingWindow": {"timezone": "America/Argentina/ComodRivadavia", "blackoutDates": ["2030-01-01"] * 366},
        },
    }
    answer = tasks_api("POST", "/tasks", json.dumps(body))
    assert answer.status == 201, answer.text[:500]
    got = tasks_api("GET", f"/tasks/{answer.json['taskId']}").json
    assert got["settings"]["providerOptions"] == options


# ---------------------------------------------------------------- contacts


def _contacts(contact: str, extra: str = "") -> str:
    return '{"contacts": [' + contact + "]" + extra + "}"


CONTACT_CASES: list[tuple[str, str, str]] = [
    ("unknown defaultRegion", _contacts('{"mobile": "13800138000"}', ', "defaultRegion": "ZZ"'), "defaultRegion"),
    ("externalId false", _contacts('{"mobile": "13800138000", "externalId": false}'), "externalId"),
    ("externalId object", _contacts('{"mobile": "13800138000", "externalId": {"a": 1}}'), "externalId"),
    (
        "500 KB variable",
        _contacts(json.dumps({"mobile": "13800138000", "variables": {"v": "x" * 500_000}})),
        "variables",
    ),
    (
        "1,000 variables",
        _contacts(json.dumps({"mobile": "13800138000", "variables": {f"v{i}": "x" for i in range(1000)}})),
        "variables",
    ),
    (
        "10 KB variable name",
        _contacts(json.dumps({"mobile": "13800138000", "variables": {"v" * 10_000: "x"}})),
        "variables",
    ),
    ("500-deep variables", _contacts(json.dumps({"mobile": "13800138000", "variables": nested(DEEP)})), "variables"),
    ("5,000-digit mobile", _contacts('{"mobile": ' + HUGE_INT + "}"), "mobile"),
    ("5,000-digit variable", _contacts('{"mobile": "13800138000", "variables": {"n": ' + HUGE_INT + "}}"), "variables"),
    ("100 KB mobile", _contacts(json.dumps({"mobile": "1" * 100_000})), "mobile"),
    ("mobile true", _contacts('{"mobile": true}'), "mobile"),
    ("500 KB name", _contacts(json.dumps({"mobile": "13800138000", "name": "x" * 500_000})), "name"),
]


@pytest.mark.parametrize(("case", "body", "field"), CONTACT_CASES, ids=[c[0] for c in CONTACT_CASES])
def test_hostile_contacts_are_refused_naming_the_field_and_nothing_is_stored(
    sims: dict[str, Any], case: str, body: str, field: str
) -> None:
    task = create_task()
    before, calls = snapshot(), journal(sims)
    refused(contacts_api("POST", f"/tasks/{task['taskId']}/contacts", body), field)
    assert snapshot() == before, "no import row, no contact"
    assert journal(sims) == calls
    assert contacts_api("GET", f"/tasks/{task['taskId']}/imports").json["items"] == []


@pytest.mark.parametrize("external_id", ["5", "0", "-7", "12345678901234567890"])
def test_a_numeric_external_id_is_kept_as_text(sims: dict[str, Any], external_id: str) -> None:
    task = create_task()
    body = '{"contacts": [{"mobile": "13800138000", "externalId": ' + external_id + "}]}"
    answer = contacts_api("POST", f"/tasks/{task['taskId']}/contacts", body)
    assert answer.status == 200, answer.text
    assert answer.json["accepted"] == 1
    [contact] = contacts_api("GET", f"/tasks/{task['taskId']}/contacts").json["items"]
    assert contact["externalId"] == external_id


def test_scalar_variables_are_kept_as_text(sims: dict[str, Any]) -> None:
    task = create_task()
    body = {"contacts": [{"mobile": "13800138000", "variables": {"n": 5, "ok": False, "f": 1.5, "none": None}}]}
    answer = contacts_api("POST", f"/tasks/{task['taskId']}/contacts", json.dumps(body))
    assert answer.status == 200, answer.text
    [contact] = contacts_api("GET", f"/tasks/{task['taskId']}/contacts").json["items"]
    assert contact["variables"] == {"n": "5", "ok": "FALSE", "f": "1.5"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"filename": "a.csv", "defaultRegion": "ZZ"}, "defaultRegion"),
        ({"filename": "a.csv", "defaultRegion": "X" * 100_000}, "defaultRegion"),
        ({"filename": "a.csv", "sheet": "s" * 100_000}, "sheet"),
        ({"filename": "a" * 100_000 + ".csv"}, "filename"),
    ],
)
def test_hostile_upload_requests_are_refused_and_nothing_is_stored(
    sims: dict[str, Any], body: dict[str, Any], field: str
) -> None:
    task = create_task()
    before = snapshot()
    refused(contacts_api("POST", f"/tasks/{task['taskId']}/uploads", json.dumps(body)), field)
    assert snapshot() == before


# ---------------------------------------------------------------- meetings

MEETING_CASES: list[tuple[str, Callable[[], tuple[str, str, str]], str]] = [
    (
        "5,000-digit mobile",
        lambda: ("POST", "/events/m1/calls", '{"callList": [{"mobile": ' + HUGE_INT + "}]}"),
        "mobile",
    ),
    ("500-deep callee", lambda: ("POST", "/events/m1/calls", json.dumps({"callList": [nested(DEEP)]})), "callList"),
    (
        "1 MB event id",
        lambda: (
            "POST",
            "/events/m1/calls",
            json.dumps({"eventId": "e" * 1_000_000, "callList": [{"mobile": "13800138000"}]}),
        ),
        "eventId",
    ),
    (
        "1 MB token",
        lambda: (
            "POST",
            "/events/m1/calls",
            json.dumps({"token": "t" * 1_000_000, "callList": [{"mobile": "13800138000"}]}),
        ),
        "token",
    ),
    (
        "5,000-digit duration",
        lambda: (
            "PUT",
            "/events/m1",
            '{"title": "t", "startTime": "2030-01-01T09:00:00+08:00", "durationMinutes": ' + HUGE_INT + "}",
        ),
        "durationMinutes",
    ),
]


@pytest.mark.parametrize(("case", "request_of", "field"), MEETING_CASES, ids=[c[0] for c in MEETING_CASES])
def test_hostile_meeting_requests_are_refused_and_nothing_is_stored(
    sims: dict[str, Any], case: str, request_of: Callable[[], tuple[str, str, str]], field: str
) -> None:
    method, path, body = request_of()
    before, calls = snapshot(), journal(sims)
    refused(events_api(method, path, body), field)
    assert snapshot() == before
    assert journal(sims) == calls


# ---------------------------------------------------------------- options outcall owns

OWNED_CASES = [
    ("nxcloud", {"taskCallbackUrl": "http://169.254.169.254/latest/meta-data/"}, "taskCallbackUrl"),
    ("nxcloud", {"callCallbackUrl": "file:///etc/passwd"}, "callCallbackUrl"),
    ("nxcloud", {"orderCallbackUrl": "gopher://evil:70/"}, "orderCallbackUrl"),
    ("nxcloud", {"extra": {"nested": [{"task_callback_url": "http://x"}]}}, "extra.nested.0.task_callback_url"),
    ("airudder", {"call_callback_url": "http://attacker.example/"}, "call_callback_url"),
    ("airudder", {"callback_url": "http://attacker.example/"}, "callback_url"),
    ("aliyun", {"WebhookUrl": "http://attacker.example/"}, "WebhookUrl"),
    ("xswitch", {"notify-url": "http://attacker.example/"}, "notify-url"),
]


@pytest.mark.parametrize(("provider", "options", "field"), OWNED_CASES, ids=[c[2] for c in OWNED_CASES])
def test_options_outcall_owns_cannot_be_set(
    sims: dict[str, Any], provider: str, options: dict[str, Any], field: str
) -> None:
    kinds = {"nxcloud": "auto", "airudder": "robot", "aliyun": "predictive", "xswitch": "auto"}
    body = {"name": "owned", "provider": provider, "type": kinds[provider], "settings": {"providerOptions": options}}
    before, calls = snapshot(), journal(sims)
    answer = tasks_api("POST", "/tasks", json.dumps(body))
    refused(answer, field)
    assert "set by outcall" in answer.json["message"]
    assert snapshot() == before and journal(sims) == calls


def test_options_outcall_owns_cannot_be_patched_in(sims: dict[str, Any]) -> None:
    created = tasks_api("POST", "/tasks", json.dumps({"name": "nx", "provider": "nxcloud", "type": "auto"}))
    assert created.status == 201, created.text
    task = created.json
    before, calls = snapshot(), journal(sims)
    patch = {"settings": {"providerOptions": {"taskCallbackUrl": "http://169.254.169.254/"}}}
    refused(tasks_api("PATCH", f"/tasks/{task['taskId']}", json.dumps(patch)), "taskCallbackUrl")
    assert snapshot() == before and journal(sims) == calls


def test_a_keyed_request_whose_answer_is_over_400_kb_is_answered_and_replayed(
    sims: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """10,000 per-contact results are megabytes of JSON: the kept answer must still fit in one item.
    (Over SYNC_JSON_CONTACTS contacts are an import, 202; raised here so that one answer is that large.)"""
    from outcall import contacts

    monkeypatch.setattr(contacts, "SYNC_JSON_CONTACTS", 10_000)
    task = create_task()
    body = json.dumps({"contacts": [{"mobile": "12", "name": f"n{i}"} for i in range(10_000)]})
    headers = {"Idempotency-Key": "big-answer"}
    first = http(
        "POST",
        f"/tasks/{task['taskId']}/contacts",
        body.encode(),
        headers=headers,
        handler=_handler("contact_import_handler"),
    )
    assert first.status == 200, first.text[:300]
    assert len(first.text) > limits_item_bytes() and first.json["invalid"] == 10_000
    again = http(
        "POST",
        f"/tasks/{task['taskId']}/contacts",
        body.encode(),
        headers=headers,
        handler=_handler("contact_import_handler"),
    )
    assert again.status == 200 and again.json == first.json
    assert len(contacts_api("GET", f"/tasks/{task['taskId']}/imports").json["items"]) == 1


def limits_item_bytes() -> int:
    from outcall.limits import DYNAMODB_ITEM_BYTES

    return DYNAMODB_ITEM_BYTES

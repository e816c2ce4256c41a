"""The named limits (outcall.limits) against DynamoDB's: the largest task and the largest contact the
API accepts are built at every limit and measured as DynamoDB measures an item; the checks of
JSON-valued fields refuse what DynamoDB would refuse, and the body reader never raises anything but
a JSON decode error."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from outcall import limits
from outcall.contacts import AddContactsRequest, ContactInput
from outcall.models import Task, TaskSettings
from outcall.store.base import _dynamo
from outcall.store.tasks import TaskItems
from outcall.tasks import CreateTaskRequest
from pydantic import ValidationError

WIDE = "\U0001f4de"  # four bytes in UTF-8: the worst case of a character limit


def dynamodb_size(value: Any) -> int:
    """An item's size as DynamoDB counts it ("Item sizes and formats", DynamoDB developer guide):
    UTF-8 bytes of names and strings, up to 21 bytes per number, 1 per boolean or null, 3 per map
    or list plus 1 per element."""
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, int | float | Decimal):
        return 21
    if isinstance(value, dict):
        return 3 + sum(len(str(k).encode()) + dynamodb_size(v) + 1 for k, v in value.items())
    if isinstance(value, list):
        return 3 + sum(dynamodb_size(v) + 1 for v in value)
    raise TypeError(type(value))


def largest_options() -> dict[str, Any]:
    """providerOptions at the byte limit, spread over the most keys."""
    options: dict[str, Any] = {}
    for i in range(limits.PROVIDER_OPTIONS_KEYS):
        options[f"k{i:03d}"] = 1
    filler = limits.PROVIDER_OPTIONS_BYTES - len(json.dumps(options, separators=(",", ":")).encode()) - 20
    options["k000"] = WIDE * (filler // 4)
    assert limits.json_problem(options, max_bytes=limits.PROVIDER_OPTIONS_BYTES, max_depth=1) is None
    return options


def test_the_largest_task_fits_in_a_dynamodb_item() -> None:
    settings = TaskSettings.model_validate(
        {
            "callerIds": [WIDE * limits.CALLER_ID_CHARS] * limits.MAX_CALLER_IDS,
            "callingWindow": {
                "timezone": "America/Argentina/ComodRivadavia",
                "blackoutDates": [date(2030, 1, 1)] * limits.MAX_BLACKOUT_DATES,
            },
            "providerOptions": largest_options(),
        }
    )
    request = CreateTaskRequest(name=WIDE * limits.TASK_NAME_CHARS, provider="nxcloud", settings=settings)
    now = datetime.now(UTC)
    task = Task(
        task_id="tsk_" + "f" * 24,
        name=request.name,
        provider=request.provider,
        type="auto",
        settings=request.settings,
        provider_task_id="p" * 256,
        created_at=now,
        updated_at=now,
    )
    item = _dynamo(TaskItems._task_item(TaskItems.__new__(TaskItems), task, "create"))
    size = dynamodb_size(item)
    # room left for the counters a task item gathers (contacts and calls by status, versions, claims)
    assert size < limits.DYNAMODB_ITEM_BYTES // 4, size


def test_the_largest_contact_fits_in_a_dynamodb_item() -> None:
    variables: dict[str, Any] = {}
    budget = limits.VARIABLES_BYTES
    for i in range(limits.MAX_VARIABLES):
        name = f"v{i:02d}" + "n" * (limits.VARIABLE_NAME_CHARS - 3)
        variables[name] = ""
    used = len(json.dumps(variables, ensure_ascii=False, separators=(",", ":")).encode())
    per_value = (budget - used) // limits.MAX_VARIABLES // 4
    variables = {k: WIDE * per_value for k in variables}
    contact = ContactInput.model_validate(
        {
            "name": WIDE * limits.CONTACT_TEXT_CHARS,
            "company": WIDE * limits.CONTACT_TEXT_CHARS,
            "mobile": "1" * limits.NUMBER_PART_CHARS,
            "externalId": WIDE * limits.CONTACT_TEXT_CHARS,
            "variables": variables,
        }
    )
    item = {
        "pk": "TASK#tsk_" + "f" * 24,
        "sk": "CONTACT#+" + "9" * 15,
        "type": "contact",
        "taskId": "tsk_" + "f" * 24,
        "e164": "+" + "9" * 15,
        "name": contact.name,
        "company": contact.company,
        "externalId": contact.external_id,
        "variables": {k: str(v) for k, v in contact.variables.items()},
        "importId": "imp_" + "f" * 24,
        "row": 10_000,
        "providerStatus": "rejected",
        "providerReason": "r" * 1000,
        "providerRef": "p" * 256,
        "callStatus": "completed",
        "callRecordId": "nxcloud:" + "c" * 128,
        "createdAt": datetime.now(UTC).isoformat(),
        "updatedAt": datetime.now(UTC).isoformat(),
    }
    assert dynamodb_size(item) < limits.DYNAMODB_ITEM_BYTES // 8


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"a": "x" * (limits.PROVIDER_OPTIONS_BYTES + 1)}, "bytes as JSON"),
        ({"a": [[[[[[[[[1]]]]]]]]]}, "nested deeper"),
        ({"n": 10**38}, "38 digits"),
        ({"n": limits.JsonNumberText("9" * 5000)}, "38 digits"),
        ({"n": float("inf")}, "out of range"),
        ({"n": 1e200}, "out of range"),
        ({"n": 1e-200}, "out of range"),
        ({"n": object()}, "not JSON"),
    ],
)
def test_json_fields_refuse_what_dynamodb_refuses(value: Any, problem: str) -> None:
    found = limits.json_problem(value, max_bytes=limits.PROVIDER_OPTIONS_BYTES, max_depth=limits.PROVIDER_OPTIONS_DEPTH)
    assert found is not None and problem in found


def test_json_fields_at_their_limits_pass() -> None:
    value = {"n": 10**38 - 1, "f": 1e125, "small": 1e-130, "zero": 0.0, "deep": json.loads("[" * 7 + "]" * 7)}
    assert limits.json_problem(value, max_bytes=1000, max_depth=limits.PROVIDER_OPTIONS_DEPTH) is None


@pytest.mark.parametrize(
    "body",
    [
        '{"n": ' + "9" * 5000 + "}",
        '{"n": ' + "9" * 5000 + ".5}",
        "[" * 100_000 + "]" * 100_000,
        '{"n": NaN}',
        '{"n": -Infinity}',
        "",
        "{",
        b"\xff\xfe{}".decode("latin-1"),
    ],
)
def test_the_body_reader_only_raises_json_decode_errors(body: str) -> None:
    try:
        value = limits.read_json(body)
    except json.JSONDecodeError:
        return
    assert isinstance(value["n"], limits.JsonNumberText)


def test_huge_numbers_name_their_field() -> None:
    body = limits.read_json('{"name": "t", "provider": "xswitch", "settings": {"concurrency": ' + "9" * 5000 + "}}")
    with pytest.raises(ValidationError) as caught:
        CreateTaskRequest.model_validate(body)
    assert [e["loc"] for e in caught.value.errors()] == [("settings", "concurrency")]


@pytest.mark.parametrize("region", ["ZZ", "XX", "cn1", "", "C"])
def test_unknown_regions_are_refused(region: str) -> None:
    with pytest.raises(ValidationError) as caught:
        AddContactsRequest.model_validate({"contacts": [{"mobile": "1"}], "defaultRegion": region})
    assert caught.value.errors()[0]["loc"] == ("defaultRegion",)


def test_known_regions_are_upper_cased() -> None:
    request = AddContactsRequest.model_validate({"contacts": [{"mobile": "1"}], "defaultRegion": "gb"})
    assert request.default_region == "GB"

"""Pushes under hostile delivery, through the webhook_intake handler (moto, pushes signed as the
simulators sign them): the `{kind}` of the path is checked and does not make a push new, a verified
push that cannot be read is a 400 logged at WARNING with nothing kept, and pushes of the providers
that authenticate by a shared secret are deduplicated by their content."""

from __future__ import annotations

import gzip
import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from local.simulators.nxcloud import sign_of as _sign
from tests.integration.results_support import drain, http, items, nx_push, queue_messages

NX_CALL = {
    "orderID": "ord-9",
    "userPhone": "8613800138009",
    "userTaskID": "nx-task-9",
    "taskID": "t9",
    "callInfoDetail": {"callID": "call-9", "callStatus": 1, "callAnswerTs": 1_700_000_005, "callEndTs": 1_700_000_065},
}
AIRUDDER_CALL = {
    "task_id": "ar-task-9",
    "call_id": "ar-call-9",
    "callee_number": "+8613800138001",
    "ring_type": "normal",
    "hangup_type": "ByCallee",
    "case_id": "case-9",
}
AR_TOKEN = "token=local-airudder-webhook"
QS_TOKEN = "token=local-quanshi-webhook"


def pushes() -> list[dict[str, Any]]:
    return items("PUSH#")


def signed_text(sims: dict[str, Any], text: str | bytes, *, gzipped: bool = False) -> tuple[bytes, dict[str, str]]:
    """Any body, signed with the account's secret as NXCLOUD signs a callback."""
    sim = sims["nxcloud"]
    raw = text.encode() if isinstance(text, str) else text
    create_ts, request_id = str(int(time.time())), uuid.uuid4().hex
    headers = {
        "Content-Type": "application/json;charset=utf-8",
        "uuid": sim.app_key,
        "requestID": request_id,
        "createTs": create_ts,
        "algorithm": "SHA256",
        "sign": _sign(sim.secret, raw.decode("utf-8", "replace"), create_ts, request_id, sim.app_key, "SHA256"),
    }
    if gzipped:
        headers["Content-Encoding"] = "gzip"
        raw = gzip.compress(raw)
    return raw, headers


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def warnings_logged() -> Iterator[list[logging.LogRecord]]:
    """The WARNING-or-above records the layer's logger emits during a test."""
    handler = Records()
    target = logging.getLogger("outcall")
    target.addHandler(handler)
    try:
        yield handler.records
    finally:
        target.removeHandler(handler)


# ---------------------------------------------------------------- the kind of the path


def test_one_signed_body_on_every_kind_and_path_is_one_push(sims: Any) -> None:
    body, headers = nx_push(sims, NX_CALL)
    paths = ["/webhooks/nxcloud/call", "/webhooks/nxcloud/order", "/webhooks/nxcloud/task", "/webhooks/nxcloud"]
    answers = [http("POST", path, body, headers=headers) for path in paths]
    assert [a.status for a in answers] == [200] * 4
    assert [a.json["duplicate"] for a in answers] == [False, True, True, True]
    assert len({a.json["pushId"] for a in answers}) == 1
    assert len(pushes()) == 1 and len(queue_messages()) == 1
    drain()
    records = [i for i in items("CALLS#") if str(i["sk"]).startswith("CALL#")]
    assert len(records) == 1


@pytest.mark.parametrize("kind", ["bogus", "CALL", "calls", "task-status", "x" * 64, "meetingbegin"])
def test_a_kind_the_provider_does_not_push_is_404_and_nothing_is_kept(sims: Any, kind: str) -> None:
    body, headers = nx_push(sims, NX_CALL)
    answer = http("POST", f"/webhooks/nxcloud/{kind}", body, headers=headers)
    assert answer.status == 404, answer.text
    assert "call, order, task" in answer.json["message"]
    assert pushes() == [] and queue_messages() == []


def test_made_up_deeper_paths_are_404(sims: Any) -> None:
    body, headers = nx_push(sims, NX_CALL)
    assert http("POST", "/webhooks/nxcloud/call/again", body, headers=headers).status == 404
    assert pushes() == []


def test_the_kinds_of_each_provider_are_its_callback_urls(sims: Any) -> None:
    body = json.dumps(AIRUDDER_CALL).encode()
    for kind in ("call", "task", "workflow"):
        assert http("POST", f"/webhooks/airudder/{kind}?{AR_TOKEN}", body).status == 200
    assert http("POST", f"/webhooks/airudder/order?{AR_TOKEN}", body).status == 404
    begin = json.dumps({"event": "meetingbegin", "eventId": 7, "timestamp": 1}).encode()
    assert http("POST", f"/webhooks/quanshi/meetingbegin?{QS_TOKEN}", begin).status == 200
    assert http("POST", f"/webhooks/quanshi/call?{QS_TOKEN}", begin).status == 404


# ---------------------------------------------------------------- unreadable verified pushes

UNREADABLE = [
    ("empty", b""),
    ("blank", b"  \r\n"),
    ("not JSON", b"status=ok&call=1"),
    ("truncated JSON", b'{"orderID": "o", "callInfoDetail": {'),
    ("a JSON string", b'"just text"'),
    ("a list of numbers", b"[1, 2, 3]"),
    ("5,000-digit number", b'{"orderID": "o", "callTimes": ' + b"9" * 5000 + b"}"),
    ("100,000-deep", b"[" * 100_000 + b"]" * 100_000),
    ("NaN", b'{"orderID": NaN}'),
]


@pytest.mark.parametrize(("case", "body"), UNREADABLE, ids=[c[0] for c in UNREADABLE])
def test_a_verified_push_that_cannot_be_read_is_400_logged_and_not_kept(
    sims: Any, warnings_logged: list[logging.LogRecord], case: str, body: bytes
) -> None:
    raw, headers = signed_text(sims, body)
    answer = http("POST", "/webhooks/nxcloud/call", raw, headers=headers)
    assert answer.status == 400, (answer.status, answer.text[:300])
    assert answer.json["code"] == "UnreadablePush" and len(answer.json["message"]) < 300
    assert pushes() == [] and queue_messages() == []
    [record] = [r for r in warnings_logged if r.levelno >= logging.WARNING]
    assert record.levelno == logging.WARNING and "unreadable" in record.getMessage()
    assert "13800138009" not in str(record.__dict__)


def test_an_unsigned_unreadable_push_is_still_401(sims: Any) -> None:
    """Reading comes after verifying: a stranger learns nothing about what outcall could read."""
    assert http("POST", "/webhooks/nxcloud/call", b"not json").status == 401


def test_a_shared_secret_push_the_provider_cannot_parse_is_400(sims: Any) -> None:
    unknown_event = json.dumps({"event": "meetingexploded", "eventId": 1}).encode()
    answer = http("POST", f"/webhooks/quanshi/meetingbegin?{QS_TOKEN}", unknown_event)
    assert answer.status == 400 and "quanshi" in answer.json["message"]
    assert http("POST", f"/webhooks/airudder/call?{AR_TOKEN}", b"").status == 400
    assert pushes() == []


def test_a_gzip_push_is_read_and_bad_gzip_is_400(sims: Any) -> None:
    raw, headers = signed_text(sims, json.dumps(NX_CALL), gzipped=True)
    assert http("POST", "/webhooks/nxcloud/call", raw, headers=headers).status == 200
    plain, plain_headers = nx_push(sims, NX_CALL)
    again = http("POST", "/webhooks/nxcloud/call", plain, headers=plain_headers)
    assert again.status == 200 and again.json["duplicate"] is True  # the same content, gzipped or not
    assert len(pushes()) == 1


# ---------------------------------------------------------------- shared-secret providers: by content


def test_the_same_airudder_content_however_spelled_or_routed_is_one_push(sims: Any) -> None:
    spellings = [
        json.dumps(AIRUDDER_CALL).encode(),
        json.dumps(AIRUDDER_CALL, indent=2).encode(),
        json.dumps(dict(reversed(list(AIRUDDER_CALL.items()))), separators=(",", ":")).encode(),
        json.dumps(AIRUDDER_CALL, ensure_ascii=True).encode() + b"\n",
    ]
    urls = [
        f"/webhooks/airudder/call?{AR_TOKEN}",
        f"/webhooks/airudder/call?{AR_TOKEN}&retry=1",
        f"/webhooks/airudder?{AR_TOKEN}",
        f"/webhooks/airudder/task?{AR_TOKEN}",
    ]
    answers = [http("POST", url, body) for url, body in zip(urls, spellings, strict=True)]
    assert [a.status for a in answers] == [200] * 4
    assert [a.json["duplicate"] for a in answers] == [False, True, True, True]
    assert len(pushes()) == 1 and len(queue_messages()) == 1


def test_a_different_value_is_a_different_push(sims: Any) -> None:
    first = http("POST", f"/webhooks/airudder/call?{AR_TOKEN}", json.dumps(AIRUDDER_CALL).encode())
    other = http("POST", f"/webhooks/airudder/call?{AR_TOKEN}", json.dumps({**AIRUDDER_CALL, "call_id": "x"}).encode())
    assert first.json["duplicate"] is False and other.json["duplicate"] is False
    assert len(pushes()) == 2


def test_quanshi_content_in_any_key_order_is_one_push(sims: Any) -> None:
    event = {"event": "meetingend", "eventId": 77, "timestamp": 1_700_000_000_000}
    one = http("POST", f"/webhooks/quanshi/meetingend?{QS_TOKEN}", json.dumps(event).encode())
    two = http(
        "POST",
        f"/webhooks/quanshi/meetingend?{QS_TOKEN}",
        json.dumps(dict(sorted(event.items())), indent=1).encode(),
    )
    assert (one.status, two.status) == (200, 200)
    assert two.json["duplicate"] is True and len(pushes()) == 1

"""POST /webhooks/{provider}[/{kind}] through the webhook_intake handler: moto for AWS, pushes as
the provider simulators sign them. A push is verified, kept once and queued once."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.integration.results_support import (
    drain,
    http,
    items,
    nx_push,
    provider_entries,
    put_provider_secret,
    queue_messages,
)

NX_CALL = {
    "orderID": "ord-1",
    "userPhone": "8613800138000",
    "userTaskID": "nx-task-1",
    "taskID": "t1",
    "callInfoDetail": {
        "callID": "call-1",
        "callStatus": 1,
        "callStartTs": 1_700_000_000,
        "callAnswerTs": 1_700_000_005,
        "callEndTs": 1_700_000_065,
        "callDuration": 60,
        "callTimes": 1,
        "hangupCause": "NORMAL_CLEARING",
        "intents": [{"intentName": "A"}],
    },
}
AIRUDDER_CALL = {
    "task_id": "ar-task-1",
    "call_id": "ar-call-1",
    "callee_number": "+8613800138001",
    "call_start_time": "2024-01-01 10:00:00",
    "call_end_time": "2024-01-01 10:01:00",
    "call_times": 1,
    "ring_type": "normal",
    "hangup_type": "ByCallee",
    "intention": "A",
    "case_id": "case-1",
}
QUANSHI_BEGIN = {"event": "meetingbegin", "eventId": 4242, "timestamp": 1_700_000_000_000, "startTime": 1_700_000_000}


def pushes() -> list[dict[str, Any]]:
    return items("PUSH#")


# ---------------------------------------------------------------- signed / secret-carrying pushes


def test_signed_nxcloud_push_is_kept_once_and_queued(sims: Any) -> None:
    body, headers = nx_push(sims, NX_CALL)
    answer = http("POST", "/webhooks/nxcloud/call", body, headers=headers)
    assert answer.status == 200, answer.text
    assert answer.json["status"] == "ok" and answer.json["duplicate"] is False
    kept = pushes()
    assert len(kept) == 1 and kept[0]["provider"] == "nxcloud" and kept[0]["kind"] == "call"
    assert "sign" not in kept[0]["headers"]  # signatures and secrets are not kept
    messages = queue_messages()
    assert [json.loads(m["Body"])["pushId"] for m in messages] == [answer.json["pushId"]]


def test_unsigned_nxcloud_push_is_401_and_nothing_kept(sims: Any) -> None:
    body = json.dumps(NX_CALL).encode()
    answer = http("POST", "/webhooks/nxcloud/call", body, headers={"content-type": "application/json"})
    assert answer.status == 401 and answer.json["code"] == "InvalidSignature"
    assert pushes() == [] and queue_messages() == []


def test_one_byte_tampered_nxcloud_push_is_401_and_nothing_kept(sims: Any) -> None:
    body, headers = nx_push(sims, NX_CALL)
    tampered = body.replace(b"call-1", b"call-2", 1)
    assert len(tampered) == len(body) and tampered != body
    answer = http("POST", "/webhooks/nxcloud/call", tampered, headers=headers)
    assert answer.status == 401
    assert pushes() == [] and queue_messages() == []


def test_nxcloud_push_outside_five_minutes_is_refused(sims: Any, monkeypatch: Any) -> None:
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 360)  # the simulator signs 6 minutes ago
    body, headers = nx_push(sims, NX_CALL)
    monkeypatch.setattr(time, "time", real)
    answer = http("POST", "/webhooks/nxcloud/call", body, headers=headers)
    assert answer.status == 401 and "createTs" in answer.json["message"]
    assert pushes() == []


def test_nxcloud_push_four_minutes_old_is_accepted(sims: Any, monkeypatch: Any) -> None:
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 240)
    body, headers = nx_push(sims, NX_CALL)
    monkeypatch.setattr(time, "time", real)
    assert http("POST", "/webhooks/nxcloud/call", body, headers=headers).status == 200


def test_airudder_push_with_token_in_query_is_kept(sims: Any) -> None:
    body = json.dumps(AIRUDDER_CALL).encode()
    answer = http("POST", "/webhooks/airudder/call?token=local-airudder-webhook", body)
    assert answer.status == 200, answer.text
    assert len(pushes()) == 1


def test_airudder_push_without_or_with_wrong_token_is_401(sims: Any) -> None:
    body = json.dumps(AIRUDDER_CALL).encode()
    assert http("POST", "/webhooks/airudder/call", body).status == 401
    assert http("POST", "/webhooks/airudder/call?token=local-airudder-webhooK", body).status == 401
    assert pushes() == [] and queue_messages() == []


def test_quanshi_push_with_token_header_when_settings_say_header(sims: Any) -> None:
    entries = provider_entries()
    entries["quanshi"] = {**entries["quanshi"], "webhookAuth": "header"}
    put_provider_secret(entries)
    body = json.dumps(QUANSHI_BEGIN).encode()
    ok = http("POST", "/webhooks/quanshi/meetingbegin", body, headers={"X-Outcall-Token": "local-quanshi-webhook"})
    assert ok.status == 200, ok.text
    # the token in the query is not enough once settings say header
    again = json.dumps({**QUANSHI_BEGIN, "timestamp": 1}).encode()
    assert http("POST", "/webhooks/quanshi/meetingbegin?token=local-quanshi-webhook", again).status == 401
    assert len(pushes()) == 1


def test_quanshi_push_unsigned_is_401(sims: Any) -> None:
    body = json.dumps(QUANSHI_BEGIN).encode()
    assert http("POST", "/webhooks/quanshi/meetingbegin", body).status == 401
    assert pushes() == []


def test_optional_hmac_header_for_any_provider(sims: Any) -> None:
    entries = provider_entries()
    entries["airudder"] = {**entries["airudder"], "webhookHmacSecret": "hmac-secret"}
    put_provider_secret(entries)
    body = json.dumps(AIRUDDER_CALL).encode()
    url = "/webhooks/airudder/call?token=local-airudder-webhook"
    assert http("POST", url, body).status == 401  # token alone is no longer enough
    sig = hmac.new(b"hmac-secret", body, hashlib.sha256).hexdigest()
    assert http("POST", url, body + b" ", headers={"X-Outcall-Signature": f"sha256={sig}"}).status == 401
    assert pushes() == []
    assert http("POST", url, body, headers={"X-Outcall-Signature": f"sha256={sig}"}).status == 200
    assert len(pushes()) == 1


def test_unknown_provider_is_404_and_provider_without_webhooks_is_422(sims: Any) -> None:
    unknown = http("POST", "/webhooks/twilio", b"{}")
    assert unknown.status == 404 and "twilio" in unknown.json["message"]
    for key in ("xswitch", "aliyun"):
        answer = http("POST", f"/webhooks/{key}", b"{}")
        assert answer.status == 422 and answer.json["code"] == "NotSupported", answer.text
    assert pushes() == []


# ---------------------------------------------------------------- duplicates


def test_same_push_five_times_sequentially_is_one_item_one_message_one_record(sims: Any) -> None:
    body, headers = nx_push(sims, NX_CALL)
    answers = [http("POST", "/webhooks/nxcloud/call", body, headers=headers) for _ in range(5)]
    assert [a.status for a in answers] == [200] * 5
    assert [a.json["duplicate"] for a in answers] == [False, True, True, True, True]
    assert len(pushes()) == 1 and len(queue_messages()) == 1
    drain()
    assert len(items("CALLS#")) == 2  # the record and one history event


def test_same_push_five_times_concurrently_is_one_record(sims: Any) -> None:
    body = json.dumps(AIRUDDER_CALL).encode()
    url = "/webhooks/airudder/call?token=local-airudder-webhook"
    with ThreadPoolExecutor(max_workers=5) as pool:
        answers = list(pool.map(lambda _: http("POST", url, body), range(5)))
    assert sorted(a.status for a in answers) == [200] * 5
    assert sorted(a.json["duplicate"] for a in answers) == [False, True, True, True, True]
    assert len(pushes()) == 1 and len(queue_messages()) == 1
    drain()
    records = [i for i in items("CALLS#") if str(i["sk"]).startswith("CALL#")]
    assert len(records) == 1 and records[0]["status"] == "completed"


def test_redeliveries_with_new_signatures_are_still_one_push(sims: Any) -> None:
    """nxcloud signs each delivery anew (requestID, createTs): the body decides identity."""
    first = nx_push(sims, NX_CALL)
    second = nx_push(sims, NX_CALL)
    assert first[1]["requestID"] != second[1]["requestID"]
    assert http("POST", "/webhooks/nxcloud/call", first[0], headers=first[1]).json["duplicate"] is False
    assert http("POST", "/webhooks/nxcloud/call", second[0], headers=second[1]).json["duplicate"] is True
    assert len(pushes()) == 1

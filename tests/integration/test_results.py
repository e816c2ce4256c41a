"""Call results: pushes processed into call records, out-of-order statuses, task counts, pollers
with provider faults, DLQ and re-drive, GET /tasks/{taskId}/calls with filters, paging and CSV."""

from __future__ import annotations

import csv
import io
import json
import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from outcall import queues, results
from outcall.models import CallEvent
from outcall.redrive import main as redrive_main
from outcall.store import default_store

from tests.integration.results_support import (
    drain,
    http,
    items,
    nx_push,
    provider_entries,
    put_provider_secret,
    queue_messages,
)
from tests.integration.test_tasks import call as task_call


def nx_task() -> dict[str, Any]:
    answer = task_call("POST", "/tasks", {"name": "results", "provider": "nxcloud", "type": "robot"})
    assert answer.status == 201, answer.json
    return dict(answer.json)


def nx_call(provider_task_id: str, call_id: str, code: int = 1, phone: str = "8613800138000") -> dict[str, Any]:
    """A call callback as Callbot-API-callCallback documents it (code 1 answered, 3 busy, else no answer)."""
    now = int(time.time())
    cause = {1: ("NORMAL_CLEARING", "200"), 3: ("USER_BUSY", "486")}.get(code, ("NO_ANSWER", "480"))
    return {
        "callbackType": 1,
        "orderID": f"ord-{call_id}",
        "userPhone": phone,
        "userName": "",
        "sceneID": "scene-local",
        "userTaskID": provider_task_id,
        "taskID": "t1",
        "finish": True,
        "other": "",
        "callInfoDetail": {
            "callID": call_id,
            "callStatus": 1 if code == 1 else 2,
            "callStartTs": now,
            "callAnswerTs": now + 2 if code == 1 else 0,
            "callEndTs": now + 30,
            "callDuration": 28 if code == 1 else 0,
            "callAudioUrl": f"https://rec.example/{call_id}.mp3" if code == 1 else "",
            "hangupCause": cause[0],
            "termSipCode": cause[1],
            "intents": [{"intentID": "i1", "intentTag": "A", "intentName": "A", "intentLevel": 1}] if code == 1 else [],
        },
    }


def event(status: str, *, call_id: str = "c-1", ptask: str | None = None, **extra: Any) -> CallEvent:
    return CallEvent.model_validate(
        {
            "provider": "airudder",
            "dedupKey": f"airudder:call:{call_id}",
            "providerCallId": call_id,
            "providerTaskId": ptask,
            "phone": "+8613800138000",
            "status": status,
            **extra,
        }
    )


def records() -> list[dict[str, Any]]:
    return [i for i in items("CALLS#") if str(i["sk"]).startswith("CALL#")]


def history() -> list[dict[str, Any]]:
    return [i for i in items("CALLS#") if str(i["sk"]).startswith("EVENT#")]


def counts(task_id: str) -> dict[str, int]:
    answer = task_call("GET", f"/tasks/{task_id}")
    assert answer.status == 200
    return dict(answer.json["counts"]["calls"])


# ---------------------------------------------------------------- pushes to records


def test_signed_push_becomes_a_call_record_of_its_task_with_counts(sims: Any) -> None:
    task = nx_task()
    body, headers = nx_push(sims, nx_call(task["providerTaskId"], "call-a"))
    assert http("POST", "/webhooks/nxcloud/call", body, headers=headers).status == 200
    assert records() == []  # the route only keeps and queues
    answers = drain()
    assert answers and all(a["batchItemFailures"] == [] for a in answers)
    got = http("GET", f"/tasks/{task['taskId']}/calls")
    assert got.status == 200, got.text
    [record] = got.json["items"]
    assert record["taskId"] == task["taskId"] and record["provider"] == "nxcloud"
    assert record["providerCallId"] == "call-a" and record["status"] == "completed"
    assert record["phone"] == "+8613800138000" and record["durationSeconds"] == 28
    assert record["intents"] == ["A"] and record["recordingUrl"] == "https://rec.example/call-a.mp3"
    assert record["hangupCause"] == "normal-clearing" and record["raw"]["orderID"] == "ord-call-a"
    assert record["raw"]["callInfoDetail"]["hangupCause"] == "NORMAL_CLEARING"  # the raw value is kept
    assert counts(task["taskId"]) == {"completed": 1}
    kept = items("PUSH#")
    assert len(kept) == 1 and kept[0].get("processedAt")


def test_call_and_order_push_of_one_call_are_one_record_counted_once(sims: Any) -> None:
    task = nx_task()
    call = nx_call(task["providerTaskId"], "call-b", code=3)
    order = {**call, "callbackType": "1"}  # Callbot-API-orderCallback: the order's last call
    for kind, payload in (("call", call), ("order", order)):
        body, headers = nx_push(sims, payload)
        assert http("POST", f"/webhooks/nxcloud/{kind}", body, headers=headers).status == 200
    drain()
    [record] = records()
    assert record["status"] == "busy"
    assert counts(task["taskId"]) == {"busy": 1}


def test_push_of_unknown_task_is_kept_apart(sims: Any) -> None:
    body, headers = nx_push(sims, nx_call("nobody-here", "call-c"))
    http("POST", "/webhooks/nxcloud/call", body, headers=headers)
    drain()
    [record] = records()
    assert record["pk"] == "CALLS#-nxcloud#nobody-here" and "taskId" not in record


def test_quanshi_lifecycle_push_is_kept_as_lifecycle_event(sims: Any) -> None:
    body = json.dumps({"event": "meetingend", "eventId": 7, "timestamp": 1, "status": 4}).encode()
    for _ in range(2):
        assert http("POST", "/webhooks/quanshi/meetingend?token=local-quanshi-webhook", body).status == 200
    drain()
    kept = items("LIFECYCLE#quanshi#7")
    assert len(kept) == 1 and kept[0]["kind"] == "meetingend"
    assert records() == []


# ---------------------------------------------------------------- out of order, duplicates


def test_final_then_late_ringing_stays_final_and_history_has_both(sims: Any) -> None:
    task = nx_task()
    store = default_store()
    ptask = task["providerTaskId"]
    nx = lambda status: event(status, ptask=ptask).model_copy(update={"provider": "nxcloud"})  # noqa: E731
    assert results.record_event(store, nx("completed")) == "created"
    assert results.record_event(store, nx("ringing")) == "kept"
    assert results.record_event(store, nx("answered")) == "kept"
    [record] = records()
    assert record["status"] == "completed"
    statuses = sorted(h["status"] for h in history())
    assert statuses == ["answered", "completed", "ringing"]
    assert [h["applied"] for h in sorted(history(), key=lambda h: h["status"])] == [False, True, False]
    assert counts(task["taskId"]) == {"completed": 1}


def test_statuses_in_order_move_forward_and_count_once(aws: Any) -> None:
    store = default_store()
    for status in ("queued", "ringing", "answered", "completed"):
        assert results.record_event(store, event(status, duration_seconds=9)) in ("created", "updated")
    assert results.record_event(store, event("failed")) == "kept"  # a second final never replaces the first
    [record] = records()
    assert record["status"] == "completed" and record["durationSeconds"] == 9
    assert len(history()) == 5


def test_same_event_five_times_is_one_record_one_history_item(aws: Any) -> None:
    store = default_store()
    outcomes = [results.record_event(store, event("no-answer")) for _ in range(5)]
    assert outcomes == ["created", "duplicate", "duplicate", "duplicate", "duplicate"]
    assert len(records()) == 1 and len(history()) == 1


def test_same_event_concurrently_counts_once(sims: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    task = nx_task()
    store = default_store()
    ev = event("completed", ptask=task["providerTaskId"]).model_copy(update={"provider": "nxcloud"})
    with ThreadPoolExecutor(max_workers=5) as pool:
        outcomes = list(pool.map(lambda _: results.record_event(store, ev), range(5)))
    assert outcomes.count("created") == 1
    assert len(records()) == 1 and len(history()) == 1
    assert counts(task["taskId"]) == {"completed": 1}


# ---------------------------------------------------------------- DLQ and re-drive


def test_failed_processing_lands_in_dlq_and_redrive_brings_it_back(sims: Any, monkeypatch: Any) -> None:
    body, headers = nx_push(sims, nx_call("p-dlq", "call-dlq"))
    assert http("POST", "/webhooks/nxcloud/call", body, headers=headers).status == 200

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("table unavailable")

    with monkeypatch.context() as patched:
        patched.setattr(results, "process_events", broken)
        answers = drain(rounds=7)
    assert any(a["batchItemFailures"] for a in answers)
    queue_url = os.environ["RESULTS_QUEUE_URL"]
    dlq_url = queues.dead_letter_queue_url(queue_url)
    # moto moves a message to the DLQ on the receive after its maxReceiveCount (5)
    assert queue_messages(queue_url) == []
    [dead] = queue_messages(dlq_url)
    push_id = json.loads(dead["Body"])["pushId"]
    assert default_store().get_push(push_id)["body"]  # the raw payload is still kept
    assert records() == []

    assert redrive_main(["results"]) == 0
    assert queue_messages(dlq_url) == [] and len(queue_messages(queue_url)) == 1
    drain()
    [record] = records()
    assert record["providerCallId"] == "call-dlq"


def test_redrive_of_an_empty_dlq_moves_nothing(aws: Any, capsys: Any) -> None:
    assert redrive_main(["results"]) == 0
    assert "moved 0 message" in capsys.readouterr().out


# ---------------------------------------------------------------- pollers


def _sim_call(ptask: str, n: int) -> dict[str, Any]:
    return nx_call(ptask, f"poll-{n}", code=1 if n % 2 else 2)


def poll() -> dict[str, Any]:
    import webhook_intake_handler as handler

    from tests.helpers import FakeContext

    answer = handler.lambda_handler({"kind": "poll-results"}, FakeContext())
    return {p["provider"]: p for p in answer["providers"]}


def test_poller_with_provider_faults_has_no_gap_and_no_duplicate(sims: Any) -> None:
    entries = provider_entries()
    sim = sims["nxcloud"]
    for key in sims:
        entries[key] = {**entries[key], "baseUrl": sims[key].url, "retries": 0, "readTimeout": 3}
    entries["nxcloud"]["pollPageSize"] = 2
    put_provider_secret(entries)
    task = nx_task()
    ptask = task["providerTaskId"]
    sim.tasks[ptask]["status"] = 2  # running: the reconciliation reads the calls of tasks that ran
    sim.calls.extend(_sim_call(ptask, n) for n in range(5))

    first = poll()
    assert first["nxcloud"]["events"] == 5 and first["nxcloud"].get("error") is None
    assert {"xswitch", "aliyun", "nxcloud"} <= set(first)  # every polling provider with settings
    assert len(records()) == 5
    cursor = default_store().get_poll_cursor("nxcloud")

    sim.calls.extend(_sim_call(ptask, n) for n in range(5, 9))
    sim.faults.fail_next = 1  # the provider fails the next poll
    failed = poll()
    assert failed["nxcloud"]["error"] and failed["nxcloud"]["events"] == 0
    assert default_store().get_poll_cursor("nxcloud") == cursor  # no gap: the cursor did not move
    assert len(records()) == 5

    again = poll()
    assert again["nxcloud"].get("error") is None
    ids = sorted(r["providerCallId"] for r in records())
    assert ids == sorted(f"poll-{n}" for n in range(9))  # no gap, no duplicate
    assert len(history()) == 9
    detail = counts(task["taskId"])
    assert detail == {"completed": 4, "no-answer": 5}


# ---------------------------------------------------------------- GET /tasks/{taskId}/calls


@pytest.fixture
def seven_calls(sims: Any) -> dict[str, Any]:
    task = nx_task()
    store = default_store()
    statuses = ["completed", "busy", "completed", "no-answer", "failed", "completed", "ringing"]
    for n, status in enumerate(statuses):
        ev = event(status, call_id=f"list-{n}", ptask=task["providerTaskId"], intents=["A", "B"])
        results.record_event(store, ev.model_copy(update={"provider": "nxcloud"}))
    return task


def test_calls_page_by_page_without_loss(seven_calls: dict[str, Any]) -> None:
    tid = seven_calls["taskId"]
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        path = f"/tasks/{tid}/calls?limit=3" + (f"&nextToken={token}" if token else "")
        answer = http("GET", path)
        assert answer.status == 200, answer.text
        assert len(answer.json["items"]) <= 3
        seen += [i["providerCallId"] for i in answer.json["items"]]
        pages += 1
        token = answer.json.get("nextToken")
        if not token:
            break
    assert pages == 3 and sorted(seen) == sorted(f"list-{n}" for n in range(7))


def test_calls_filtered_by_status_and_since(seven_calls: dict[str, Any]) -> None:
    tid = seven_calls["taskId"]
    completed = http("GET", f"/tasks/{tid}/calls?status=completed")
    assert sorted(i["providerCallId"] for i in completed.json["items"]) == ["list-0", "list-2", "list-5"]
    page = http("GET", f"/tasks/{tid}/calls?status=completed&limit=2")
    assert len(page.json["items"]) == 2 and page.json["nextToken"]
    later = (datetime.now(UTC) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert http("GET", f"/tasks/{tid}/calls?since={later}").json["items"] == []
    earlier = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert len(http("GET", f"/tasks/{tid}/calls?since={earlier}").json["items"]) == 7
    assert http("GET", f"/tasks/{tid}/calls?status=exploded").status == 422
    assert http("GET", f"/tasks/{tid}/calls?limit=0").status == 422


def test_calls_as_csv(seven_calls: dict[str, Any]) -> None:
    tid = seven_calls["taskId"]
    answer = http("GET", f"/tasks/{tid}/calls?format=csv")
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert len(rows) == 7
    assert sorted(r["status"] for r in rows) == sorted(
        ["completed", "busy", "completed", "no-answer", "failed", "completed", "ringing"]
    )
    assert all(r["taskId"] == tid and r["phone"] == "+8613800138000" and r["intents"] == "A|B" for r in rows)
    busy = http("GET", f"/tasks/{tid}/calls?format=csv&status=busy")
    assert len(list(csv.DictReader(io.StringIO(busy.text)))) == 1


def test_calls_of_unknown_task_is_404(aws: Any) -> None:
    answer = http("GET", "/tasks/tsk_nope/calls")
    assert answer.status == 404 and answer.json["code"] == "NotFound"


def test_calls_stay_after_the_task_is_deleted(seven_calls: dict[str, Any]) -> None:
    tid = seven_calls["taskId"]
    assert task_call("DELETE", f"/tasks/{tid}").status == 204
    assert len(http("GET", f"/tasks/{tid}/calls").json["items"]) == 7


def test_airudder_calls_whose_push_never_arrived_are_reconciled_per_task_once(sims: Any) -> None:
    """AIRUDDER has no account-wide call list: the poller reads workflow/taskdetail of each running
    airudder task from that task's own cursor; the pushes that never came become records, once."""
    import requests

    sim = sims["airudder"]
    sim.webhook_url = None  # every push is lost
    sim.dialing.answer_rate, sim.dialing.ring_seconds = 1.0, 0.01
    created = task_call("POST", "/tasks", {"name": "reconcile", "provider": "airudder", "type": "robot"})
    assert created.status == 201, created.json
    task = created.json
    assert task_call("POST", f"/tasks/{task['taskId']}/start").status == 200
    auth = requests.post(
        f"{sim.url}/service/cloud/auth", json={"APPKey": sim.settings["appKey"], "APPSecret": sim.settings["appSecret"]}
    ).json()["data"]["token"]
    details = [{"case_id": f"rk-{n}", "callee": f"+6391700000{n:02d}"} for n in range(3)]
    requests.post(
        f"{sim.url}/service/cloud/workflow/uploaddetails",
        json={"workflow_id": task["providerTaskId"], "details": details},
        headers={"Authorization": f"Token {auth}"},
        timeout=5,
    )
    deadline = time.monotonic() + 5
    while len(sim.rows) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    first = poll()
    mine = first[f"airudder#{task['taskId']}"]
    assert mine["events"] == 3 and mine.get("error") is None
    assert sorted(r["providerContactRef"] for r in records()) == ["rk-0", "rk-1", "rk-2"]
    assert counts(task["taskId"]) == {"completed": 3}
    poll()  # the last page is read again: nothing is recorded twice
    assert len(records()) == 3 and counts(task["taskId"]) == {"completed": 3}

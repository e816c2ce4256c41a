"""Call results end to end: the airudder simulator of the local stack dials contacts of a task created
over HTTP, pushes each result to /webhooks/airudder/workflow, and the records show up in
GET /tasks/{taskId}/calls (through the gateway, the SQS pump and the result processor)."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.slow


def simulator_url(local_stack: Any, key: str) -> str:
    match = re.search(rf"{key}\s+(http://127\.0\.0\.1:\d+) \(simulator\)", local_stack.log.read_text())
    assert match, local_stack.log.read_text()[-2000:]
    return match.group(1)


def test_simulator_pushes_become_call_records(local_stack: Any) -> None:
    sim = simulator_url(local_stack, "airudder")
    assert requests.put(f"{sim}/_sim/dialing", json={"answer_rate": 1.0}, timeout=5).ok
    body = {"name": f"e2e results {uuid.uuid4().hex[:8]}", "provider": "airudder", "type": "robot"}
    created = local_stack.authed("POST", "/tasks", json=body)
    assert created.status_code == 201, created.text
    task = created.json()
    tid, wid = task["taskId"], task["providerTaskId"]

    # contacts go straight to the simulator (contact import is another function's job)
    auth = requests.post(
        f"{sim}/service/cloud/auth",
        json={"APPKey": "local-airudder-key", "APPSecret": "local-airudder-secret"},
        timeout=5,
    ).json()
    token = auth["data"]["token"]
    details = [{"case_id": f"case-{n}", "callee": f"+86138001380{n:02d}"} for n in range(3)]
    uploaded = requests.post(
        f"{sim}/service/cloud/workflow/uploaddetails",
        json={"workflow_id": wid, "details": details},
        headers={"Authorization": f"Token {token}"},
        timeout=5,
    )
    assert uploaded.ok and uploaded.json()["data"]["fail_list"] == [], uploaded.text

    def three_calls() -> Any:
        answer = local_stack.authed("GET", f"/tasks/{tid}/calls")
        items = answer.json().get("items", []) if answer.status_code == 200 else []
        return items if len(items) == 3 else None

    calls = local_stack.wait_for(three_calls, timeout=30)
    assert {c["status"] for c in calls} == {"completed"}
    assert sorted(c["phone"] for c in calls) == [d["callee"] for d in details]
    assert all(c["taskId"] == tid and c["providerTaskId"] == wid and c["providerCallId"] for c in calls)
    detail = local_stack.authed("GET", f"/tasks/{tid}").json()
    assert detail["counts"]["calls"] == {"completed": 3}

    # the same push five times over HTTP is one record; a wrong token is refused
    push = {"workflow_id": wid, "callee": {"case_id": "case-x", "callee_number": "+8613800138099"}}
    push["call"] = {"call_id": "e2e-dup", "ring_type": "busy", "callee_number": "+8613800138099"}
    raw = json.dumps(push).encode()
    url = f"{local_stack.url}/webhooks/airudder/workflow"
    refused = requests.post(f"{url}?token=wrong", data=raw, timeout=10)
    assert refused.status_code == 401
    answers = [requests.post(f"{url}?token=local-airudder-webhook", data=raw, timeout=10) for _ in range(5)]
    assert [a.status_code for a in answers] == [200] * 5
    assert [a.json()["duplicate"] for a in answers] == [False, True, True, True, True]

    def four_calls() -> Any:
        items = local_stack.authed("GET", f"/tasks/{tid}/calls").json()["items"]
        return items if len(items) == 4 else None

    local_stack.wait_for(four_calls, timeout=20)
    busy = local_stack.authed("GET", f"/tasks/{tid}/calls?status=busy").json()["items"]
    assert [c["providerCallId"] for c in busy] == ["e2e-dup"]
    exported = local_stack.authed("GET", f"/tasks/{tid}/calls?format=csv")
    assert exported.status_code == 200 and exported.headers["Content-Type"].startswith("text/csv")
    assert len(list(csv.DictReader(io.StringIO(exported.text)))) == 4
    assert local_stack.authed("GET", f"/tasks/{tid}").json()["counts"]["calls"] == {"completed": 3, "busy": 1}

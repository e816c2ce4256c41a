"""Tasks over HTTP through the local stack: created on the simulators and run through their lifecycle."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("provider", "task_type"), [("xswitch", "auto"), ("nxcloud", "robot")])
def test_task_is_created_started_and_stopped(local_stack: Any, provider: str, task_type: str) -> None:
    key = uuid.uuid4().hex
    body = {"name": f"e2e {provider}", "provider": provider, "type": task_type, "settings": {"concurrency": 2}}
    created = local_stack.authed("POST", "/tasks", json=body, headers={"Idempotency-Key": key})
    assert created.status_code == 201, created.text
    task = created.json()
    assert task["status"] == "ready" and task["providerTaskId"]
    retried = local_stack.authed("POST", "/tasks", json=body, headers={"Idempotency-Key": key})
    assert retried.status_code == 201 and retried.json()["taskId"] == task["taskId"]

    tid = task["taskId"]
    assert local_stack.authed("POST", f"/tasks/{tid}/start").json()["status"] == "running"
    again = local_stack.authed("POST", f"/tasks/{tid}/start")
    assert again.status_code == 409 and again.json()["code"] == "Conflict"
    stopped = local_stack.authed("POST", f"/tasks/{tid}/stop")
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
    got = local_stack.authed("GET", f"/tasks/{tid}").json()
    assert got["status"] == "stopped" and got["counts"] == {"contacts": {}, "calls": {}, "outcomes": {}}
    listed = local_stack.authed("GET", f"/tasks?provider={provider}&status=stopped").json()["items"]
    assert tid in [t["taskId"] for t in listed]
    assert local_stack.authed("DELETE", f"/tasks/{tid}").status_code == 204
    assert local_stack.authed("GET", f"/tasks/{tid}").status_code == 404


def test_task_routes_need_a_token_and_are_documented(local_stack: Any) -> None:
    assert local_stack.get("/tasks").status_code == 401
    assert "/tasks/{taskId}/start" in local_stack.get("/openapi.json").json()["paths"]

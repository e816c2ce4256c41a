"""Do-not-call lists over HTTP through the local stack: the routes of template.yaml reach task_control."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

pytestmark = pytest.mark.slow


def test_a_number_is_listed_checked_refused_at_import_and_removed(local_stack: Any) -> None:
    number = f"+861390{uuid.uuid4().int % 10**7:07d}"
    added = local_stack.authed("POST", "/dnc", json={"numbers": [number], "reason": "asked to stop"})
    assert added.status_code == 201, added.text
    assert added.json()["numbers"] == [number]
    found = local_stack.authed("GET", f"/dnc/{number.lstrip('+')}")
    assert found.status_code == 200 and found.json()["reason"] == "asked to stop"
    assert local_stack.authed("POST", "/dnc", json={"numbers": ["12"]}).status_code == 422

    body = {"name": "e2e dnc", "provider": "nxcloud", "type": "robot"}
    task = local_stack.authed("POST", "/tasks", json=body).json()
    tid = task["taskId"]
    answer = local_stack.authed("POST", f"/tasks/{tid}/contacts", json={"contacts": [{"mobile": number}]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["contacts"][0]["reason"] == "dnc" and answer.json()["invalid"] == 1
    forecast = local_stack.authed("GET", f"/tasks/{tid}/forecast")
    assert forecast.status_code == 200 and forecast.json()["queued"] == 0

    assert local_stack.authed("DELETE", f"/dnc/{number.lstrip('+')}").status_code == 204
    assert local_stack.authed("GET", f"/dnc/{number.lstrip('+')}").status_code == 404
    assert local_stack.authed("DELETE", f"/tasks/{tid}").status_code == 204
    assert "/tasks/{taskId}/dnc/{number}" in local_stack.get("/openapi.json").json()["paths"]

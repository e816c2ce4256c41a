"""The dialing engine through the local stack, on every task provider's simulator: contacts imported,
nothing at the provider before start, start, pause part way (the provider dials at most what was
released before the pause), resume, and the task completes by itself with every contact accounted for.

Pollers and the dispatcher's rate schedule fire every few seconds here (OUTCALL_RATE_MAX_SECONDS)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.conftest import LocalStack, start_stack, stop_stack

pytestmark = pytest.mark.slow

CONTACTS = int(os.environ.get("OUTCALL_E2E_DIAL_CONTACTS", "200"))  # the figure: 1000
HOPPER = 100
FINAL = {"done", "skipped"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    log = tmp_path_factory.mktemp("dialing") / "stack.log"
    proc, local = start_stack(log, OUTCALL_RATE_MAX_SECONDS="3")
    try:
        yield local
    finally:
        stop_stack(proc)


def sim_url(stack: LocalStack, provider: str) -> str:
    secret = stack.client("secretsmanager").get_secret_value(SecretId="outcall/providers")
    return str(json.loads(secret["SecretString"])[provider]["baseUrl"])


def hopper(stack: LocalStack, task_id: str) -> dict[str, Any]:
    answer = stack.authed("GET", f"/tasks/{task_id}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def contacts(stack: LocalStack, task_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    token = ""
    while True:
        page = stack.authed("GET", f"/tasks/{task_id}/contacts?limit=500" + (f"&nextToken={token}" if token else ""))
        assert page.status_code == 200, page.text
        found += page.json()["items"]
        token = page.json().get("nextToken") or ""
        if not token:
            return found


@pytest.mark.parametrize(
    ("provider", "task_type"),
    [("nxcloud", "robot"), ("airudder", "robot"), ("xswitch", "auto"), ("aliyun", "predictive")],
)
def test_every_provider_dials_through_the_hopper_pauses_resumes_and_completes(
    stack: LocalStack, provider: str, task_type: str, tmp_path: Path
) -> None:
    sim = sim_url(stack, provider)
    requests.put(f"{sim}/_sim/dialing", json={"ring_seconds": 0.05, "talk_seconds": 0.05}, timeout=5)
    body = {
        "name": f"engine {provider}",
        "provider": provider,
        "type": task_type,
        "settings": {"concurrency": 50, "hopperLevel": HOPPER},
    }
    created = stack.authed("POST", "/tasks", json=body)
    assert created.status_code == 201, created.text
    task_id = created.json()["taskId"]
    numbers = [f"+8613{700000000 + i:09d}" for i in range(CONTACTS)]
    for start in range(0, CONTACTS, 500):
        added = stack.authed(
            "POST",
            f"/tasks/{task_id}/contacts",
            json={"contacts": [{"mobile": n} for n in numbers[start : start + 500]]},
        )
        assert added.status_code == 200, added.text
    before = hopper(stack, task_id)["hopper"]
    assert before["queued"] == CONTACTS and before["released"] == 0  # nothing at the provider before start

    assert stack.authed("POST", f"/tasks/{task_id}/start").json()["status"] == "running"
    stack.wait_for(lambda: sum(1 for c in contacts(stack, task_id) if c["state"] in FINAL) >= CONTACTS // 3, 240, 1)
    paused = stack.authed("POST", f"/tasks/{task_id}/pause")
    assert paused.status_code == 200 and paused.json()["status"] == "paused", paused.text
    at_pause = contacts(stack, task_id)
    released_at_pause = sum(1 for c in at_pause if c["attempts"] >= 1)
    time.sleep(8)  # pollers and pushes bring in what the provider still dialled
    after = contacts(stack, task_id)
    released_after = sum(1 for c in after if c["attempts"] >= 1)
    assert released_after == released_at_pause  # nothing new released while paused
    dialled_after_pause = sum(1 for c in after if c["state"] in FINAL) - sum(1 for c in at_pause if c["state"] in FINAL)
    assert dialled_after_pause <= HOPPER  # at most what was released before the pause

    assert stack.authed("POST", f"/tasks/{task_id}/start").json()["status"] == "running"
    stack.wait_for(lambda: hopper(stack, task_id)["status"] == "completed", 600, 2)
    final = contacts(stack, task_id)
    assert len(final) == CONTACTS and all(c["state"] in FINAL for c in final), {
        c["state"] for c in final if c["state"] not in FINAL
    }
    assert all(c["attempts"] == 1 for c in final if c["state"] == "done")  # nobody released twice
    detail = hopper(stack, task_id)
    assert detail["hopper"]["queued"] == 0 and detail["hopper"]["released"] == 0
    assert sum(detail["hopper"]["done"].values()) + detail["hopper"]["skipped"] == CONTACTS

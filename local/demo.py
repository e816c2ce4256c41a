"""`make demo`: drive a running local stack (`make run` in another terminal) over HTTP and print
what happened. Each capability adds its chapter to the story."""

from __future__ import annotations

import os
import sys
import time
import uuid
from typing import Any

import requests

from local.stack import DEFAULT_AWS_PORT, DEFAULT_GATEWAY_PORT, STATE_DIR

API = f"http://127.0.0.1:{os.environ.get('OUTCALL_PORT', DEFAULT_GATEWAY_PORT)}"
AWS = f"http://127.0.0.1:{os.environ.get('OUTCALL_AWS_PORT', DEFAULT_AWS_PORT)}"
BUCKET = "outcall-call-lists-123456789012"
FINAL = ("completed", "no-answer", "busy", "rejected", "failed", "canceled")
POLL_WAIT_SECONDS = 150  # the result poller runs on rate(1 minute): up to two rounds


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def show(response: requests.Response) -> Any:
    body = response.json() if response.content else None
    print(f"   {response.request.method} {response.request.path_url} -> {response.status_code} {body}")
    return body


def main() -> int:
    saved = STATE_DIR / "dev-token"
    token = os.environ.get("OUTCALL_DEV_TOKEN") or (saved.read_text().strip() if saved.exists() else "")
    if not token:
        print("no dev token: start the stack with `make run` first, or set OUTCALL_DEV_TOKEN")
        return 2
    auth = {"Authorization": f"Bearer {token}"}
    try:
        requests.get(f"{API}/health", timeout=3)
    except requests.ConnectionError:
        print(f"no local stack at {API}: start it with `make run`")
        return 2

    say("the API is up, documented, and closed to strangers")
    show(requests.get(f"{API}/health", timeout=5))
    print(f"   Swagger UI: {API}/swagger")
    show(requests.get(f"{API}/imports/imp_demo", timeout=5))
    show(requests.get(f"{API}/imports/imp_demo", headers=auth, timeout=5))

    say("a call list: uploaded with a presigned PUT, imported into a task, reported row by row")
    task = show(
        requests.post(f"{API}/tasks", json={"name": "demo list", "provider": "xswitch"}, headers=auth, timeout=30)
    )
    call_list = (
        "姓名,手机,国家码,订单号\r\n"
        "张三,13800138000,86,A-1\r\n"
        "Li Si,+44 20 7946 0958,,A-2\r\n"
        "座机,,86,\r\n"
        "again,138-0013-8000,86,A-4\r\n"
        'typo,1380013,86,=HYPERLINK("http://evil")\r\n'
    ).encode("utf-8-sig")
    ticket = show(
        requests.post(
            f"{API}/tasks/{task['taskId']}/uploads", json={"filename": "客户名单.csv"}, headers=auth, timeout=10
        )
    )
    put = requests.put(ticket["uploadUrl"], data=call_list, timeout=30)
    print(f"   PUT {len(call_list)} bytes to the presigned URL -> {put.status_code}")
    for _ in range(100):
        job = requests.get(f"{API}/imports/{ticket['importId']}", headers=auth, timeout=5).json()
        if job.get("status") in ("completed", "partial", "failed"):
            break
        time.sleep(0.2)
    counts = {k: job.get(k) for k in ("status", "rows", "accepted", "duplicate", "invalid", "reasons")}
    print(f"   import {job['importId']}: {counts}")
    print("   the row-level report (reports/<importId>.csv):")
    for line in requests.get(job["reportUrl"], timeout=10).content.decode("utf-8-sig").splitlines():
        print(f"     {line}")
    contacts = requests.get(f"{API}/tasks/{task['taskId']}/contacts", headers=auth, timeout=10).json()["items"]
    print(f"   contacts of the task: {[(c['e164'], c['state']) for c in contacts]}")

    say("a dialing task on each provider that has tasks: contacts, start, results, lifecycle")
    numbers = ["+8613800138001", "+8613800138002", "+8613800138003"]
    tasks: dict[str, str] = {}
    for provider, kind in (("xswitch", "auto"), ("aliyun", "predictive"), ("nxcloud", "robot"), ("airudder", "robot")):
        body: dict[str, Any] = {"name": f"demo {provider}", "provider": provider, "type": kind}
        created = requests.post(
            f"{API}/tasks", json=body, headers={**auth, "Idempotency-Key": uuid.uuid4().hex}, timeout=30
        ).json()
        if "taskId" not in created:
            print(f"   {provider}: {created}")
            continue
        task = tasks[provider] = created["taskId"]
        added = requests.post(
            f"{API}/tasks/{task}/contacts",
            json={"contacts": [{"mobile": n} for n in numbers]},
            headers=auth,
            timeout=30,
        ).json()
        steps = []
        for action in ("start", "pause", "start"):
            answer = requests.post(f"{API}/tasks/{task}/{action}", headers=auth, timeout=30)
            body = answer.json()
            outcome = body["status"] if answer.ok else f"{answer.status_code} {body.get('message')}"
            steps.append(f"{action} -> {outcome}")
        print(f"   {provider:<9} task {task}: {added.get('queued')} contacts queued; " + "; ".join(steps))
    print("   (nxcloud and airudder push their results; xswitch and aliyun are polled every minute: waiting...)")
    started = time.monotonic()
    waiting = set(tasks)
    while waiting and time.monotonic() - started < POLL_WAIT_SECONDS:
        for provider in sorted(waiting):
            calls = requests.get(f"{API}/tasks/{tasks[provider]}/calls", headers=auth, timeout=10).json()
            if len([c for c in calls.get("items", []) if c["status"] in FINAL]) >= len(numbers):
                waiting.discard(provider)
                print(f"   {provider:<9} results in after {time.monotonic() - started:.0f} s")
        time.sleep(1)
    for provider, task in tasks.items():
        calls = requests.get(f"{API}/tasks/{task}/calls", headers=auth, timeout=10).json().get("items", [])
        outcomes = ", ".join(f"{c['phone']} {c['status']}" for c in calls) or "none yet"
        print(f"   {provider:<9} calls: {outcomes}")
        counts = requests.get(f"{API}/tasks/{task}", headers=auth, timeout=10).json().get("counts")
        print(f"   {'':<9} counts: {counts}")
    for provider, task in tasks.items():
        answer = requests.post(f"{API}/tasks/{task}/stop", headers=auth, timeout=30)
        outcome = answer.json()["status"] if answer.ok else f"{answer.status_code} {answer.json().get('message')}"
        print(f"   {provider:<9} stop -> {outcome}")
    show(requests.post(f"{API}/tasks", json={"name": "x", "provider": "quanshi"}, headers=auth, timeout=10))

    say("a meeting 15 seconds ahead: callees dialled by its EventBridge schedule")
    from datetime import UTC, datetime, timedelta

    event_id = str(int(time.time()))
    start = (datetime.now(UTC) + timedelta(seconds=15)).isoformat(timespec="seconds")
    meeting = {"title": "Quarterly review", "startTime": start, "provider": "quanshi"}
    show(requests.put(f"{API}/events/{event_id}", json=meeting, headers=auth, timeout=10))
    callees: dict[str, Any] = {
        "eventId": event_id,
        "beforeMinutes": 0,
        "callList": [
            {"name": "Host", "countryCode": "86", "mobile": "13800138000", "role": 2},
            {"name": "Guest", "countryCode": "86", "areaCode": "10", "phone": "58512042", "role": 3},
            {"name": "Typo", "countryCode": "86", "mobile": "1380013"},
            {"name": "Again", "countryCode": "86", "mobile": "138 0013 8000"},
        ],
    }
    show(requests.post(f"{API}/events/{event_id}/calls", json=callees, headers=auth, timeout=10))
    print("   (errorType 1: invalid number, 2: duplicate; waiting for the schedule to fire...)")
    for _ in range(60):
        view = requests.get(f"{API}/events/{event_id}", headers=auth, timeout=10).json()
        if view.get("callees") and all(c.get("dialState") != "pending" for c in view["callees"]):
            break
        time.sleep(0.5)
    for callee in view.get("callees", []):
        print(f"   {callee.get('name', ''):<8} role {callee.get('role')} -> {callee.get('dialState')}")

    say("what the local stack delivered")
    for row in requests.get(f"{API}/_local/deliveries", timeout=5).json()[-8:]:
        print(f"   {row['trigger']:<10} {row['function']:<28} {row['detail']:<40} {row['outcome']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

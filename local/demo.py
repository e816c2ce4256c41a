"""`make demo`: drive a running local stack (`make run` in another terminal) over HTTP and tell what
happened, chapter by chapter: what each step does and why, what answered (status and the fields that
matter, in words), and, for a refusal the step asked for, that it was expected and why. An answer the
story did not expect is marked `UNEXPECTED` and makes the demo exit 1 once it has told the rest.

OUTCALL_PORT / OUTCALL_AWS_PORT name the stack's ports (default 3000 / 4566), OUTCALL_DEV_TOKEN its
token (default: the one `make run` saved). OUTCALL_DEMO_RESULTS_WAIT caps the wait for call results
(seconds; default 150: the result poller runs on rate(1 minute))."""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from local.stack import DEFAULT_GATEWAY_PORT, STATE_DIR

API = f"http://127.0.0.1:{os.environ.get('OUTCALL_PORT', DEFAULT_GATEWAY_PORT)}"
FINAL = ("completed", "no-answer", "busy", "rejected", "failed", "canceled")
RESULTS_WAIT_SECONDS = float(os.environ.get("OUTCALL_DEMO_RESULTS_WAIT", "150"))
PROVIDERS = (("xswitch", "auto"), ("aliyun", "predictive"), ("nxcloud", "robot"), ("airudder", "robot"))
NUMBERS = ("+8613800138001", "+8613800138002", "+8613800138003")


def words(value: Any) -> str:
    """A value as a reader says it: no Python reprs (None, False, {...})."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {words(v)}" for k, v in value.items() if v not in (None, {}, [])) or "none"
    if isinstance(value, list | tuple):
        return ", ".join(words(v) for v in value) or "none"
    return str(value)


class Story:
    """Prints the chapters and keeps count of what answered as expected, and what did not."""

    def __init__(self, token: str) -> None:
        self.auth = {"Authorization": f"Bearer {token}"}
        self.steps = 0
        self.refusals = 0
        self.unexpected: list[str] = []

    def chapter(self, title: str, why: str) -> None:
        print(f"\n== {title}\n   {why}", flush=True)

    def note(self, text: str) -> None:
        print(f"     {text}", flush=True)

    def call(
        self,
        what: str,
        method: str,
        path: str,
        *,
        expect: int | Iterable[int] = range(200, 300),
        refusal: str | None = None,
        tell: Callable[[Any], str] | None = None,
        authed: bool = True,
        **kwargs: Any,
    ) -> Any:
        """One request: `what` it does; `expect` the statuses the story expects; `refusal` why, when
        the expected answer is a refusal (4xx); `tell` the answer's key fields in words."""
        headers = {**(self.auth if authed else {}), **kwargs.pop("headers", {})}
        answer = requests.request(method, API + path, headers=headers, timeout=60, **kwargs)
        body = answer.json() if answer.content and "json" in answer.headers.get("Content-Type", "") else None
        return body if self.expect(what, answer.status_code, body, expect=expect, refusal=refusal, tell=tell) else None

    def expect(
        self,
        what: str,
        status: int,
        body: Any,
        *,
        expect: int | Iterable[int] = range(200, 300),
        refusal: str | None = None,
        tell: Callable[[Any], str] | None = None,
    ) -> bool:
        self.steps += 1
        expected = {expect} if isinstance(expect, int) else set(expect)
        if status in expected and refusal:
            self.refusals += 1
            print(f"   - {what} -> {status}, as expected: {refusal}", flush=True)
            return True
        if status in expected:
            detail = tell(body) if tell else ""
            print(f"   - {what} -> {status}{': ' + detail if detail else ''}", flush=True)
            return True
        message = body.get("message") if isinstance(body, Mapping) else None
        self.unexpected.append(f"{what} -> {status}")
        print(f"   ! UNEXPECTED: {what} -> {status} {words(message) if message else ''}".rstrip(), flush=True)
        return False

    def saw(self, what: str) -> None:
        """A fact the story expected, read from an earlier answer."""
        self.steps += 1
        print(f"   - {what}", flush=True)

    def flag(self, what: str) -> None:
        self.steps += 1
        self.unexpected.append(what)
        print(f"   ! UNEXPECTED: {what}", flush=True)


# ---------------------------------------------------------------- chapters


def front_door(story: Story) -> None:
    story.chapter(
        "The API is up, documented, and closed to strangers",
        "Health answers anyone; every other route needs the bearer token `make run` printed.",
    )
    story.call("ask for health", "GET", "/health", authed=False, tell=lambda b: f"status {words(b.get('status'))}")
    story.note(f"Swagger UI: {API}/swagger, the contract: {API}/openapi.json")
    story.call(
        "read an import without a token",
        "GET",
        "/imports/imp_demo",
        authed=False,
        expect=401,
        refusal="no bearer token, no answer but this one",
    )
    story.call(
        "read an import that does not exist, with the token",
        "GET",
        "/imports/imp_demo",
        expect=404,
        refusal="the token is good, there is just no import imp_demo",
    )


def upload(story: Story) -> None:
    story.chapter(
        "A call list uploaded with a presigned PUT, imported, reported row by row",
        "A spreadsheet export with Chinese headers: one duplicate, one row without a number, one typo, "
        "and a cell that a spreadsheet would run as a formula.",
    )
    task = story.call(
        "create an xswitch task for the list",
        "POST",
        "/tasks",
        json={"name": "demo list", "provider": "xswitch"},
        tell=lambda b: f"task {b['taskId']}, {b['status']}",
    )
    if not task:
        return
    call_list = (
        "姓名,手机,国家码,订单号\r\n"
        "张三,13800138000,86,A-1\r\n"
        "Li Si,+44 20 7946 0958,,A-2\r\n"
        "座机,,86,\r\n"
        "again,138-0013-8000,86,A-4\r\n"
        'typo,1380013,86,=HYPERLINK("http://evil")\r\n'
    ).encode("utf-8-sig")
    ticket = story.call(
        "ask where to upload 客户名单.csv",
        "POST",
        f"/tasks/{task['taskId']}/uploads",
        json={"filename": "客户名单.csv"},
        tell=lambda b: f"import {b['importId']}, {b['method']} with {words(b['headers'])}",
    )
    if not ticket:
        return
    put = requests.put(ticket["uploadUrl"], data=call_list, headers=ticket["headers"], timeout=30)
    story.expect(f"PUT the file ({len(call_list)} bytes) to the presigned URL", put.status_code, None, expect=200)
    job: dict[str, Any] = {}
    for _ in range(150):
        job = requests.get(f"{API}/imports/{ticket['importId']}", headers=story.auth, timeout=10).json()
        if job.get("status") in ("completed", "partial", "failed"):
            break
        time.sleep(0.2)
    if job.get("status") != "completed":
        story.flag(f"the import ended {words(job.get('status'))}: {words(job.get('error'))}")
        return
    story.expect(
        "the import worked the file",
        200,
        job,
        expect=200,
        tell=lambda j: (
            f"{j['status']}: {j['rows']} rows, {j['accepted']} accepted, {j['duplicate']} duplicate, "
            f"{j['invalid']} invalid ({words(j.get('reasons'))})"
        ),
    )
    story.note("the row-level report (reports/<importId>.csv); the formula cell is quoted, so it stays text:")
    for line in requests.get(job["reportUrl"], timeout=10).content.decode("utf-8-sig").splitlines():
        story.note(f"  {line}")
    story.call(
        "list the task's contacts",
        "GET",
        f"/tasks/{task['taskId']}/contacts",
        tell=lambda b: ", ".join(f"{c['e164']} {c['state']}" for c in b["items"]),
    )


def dialing(story: Story) -> dict[str, str]:
    story.chapter(
        "A dialing task on each provider that has tasks: contacts, start, pause, results",
        "outcall holds the contacts and releases them to the provider while the task runs; "
        "xswitch and aliyun are polled for results every minute, nxcloud and airudder push them.",
    )
    tasks: dict[str, str] = {}
    for provider, kind in PROVIDERS:
        # concurrency 3: the three contacts are released in one wave, so one poll brings every result
        name = f"demo {provider} {datetime.now(UTC):%H:%M:%S}"  # AIRUDDER wants a new name each run
        body = {"name": name, "provider": provider, "type": kind, "settings": {"concurrency": 3}}
        created = story.call(
            f"{provider}: create {'an' if kind[0] in 'aeiou' else 'a'} {kind} task",
            "POST",
            "/tasks",
            json=body,
            headers={"Idempotency-Key": uuid.uuid4().hex},
            tell=lambda b: f"task {b['taskId']} at the provider as {words(b.get('providerTaskId'))}",
        )
        if not created:
            continue
        task = tasks[provider] = created["taskId"]
        story.call(
            f"{provider}: add {len(NUMBERS)} contacts",
            "POST",
            f"/tasks/{task}/contacts",
            json={"contacts": [{"mobile": n} for n in NUMBERS]},
            tell=lambda b: f"{b['queued']} queued in outcall (the provider sees them once the task runs)",
        )
        # start, pause, resume: on airudder, which has no pause, the pause withdraws the released cases
        # and the resume releases them again under new case ids
        for action in ("start", "pause", "start"):
            answer = story.call(
                f"{provider}: {action}",
                "POST",
                f"/tasks/{task}/{action}",
                tell=lambda b: f"the task is {b['status']}",
            )
            if action == "pause" and answer and answer.get("status") == "completed":
                # the simulator answers in a fraction of a second: every call may have ended first
                story.note(f"{provider}: every call had ended before the pause, so there is nothing to resume")
                break
    results(story, tasks)
    return tasks


def results(story: Story, tasks: dict[str, str]) -> None:
    story.note(f"waiting for every call's result (at most {RESULTS_WAIT_SECONDS:.0f} s)...")
    started = time.monotonic()
    waiting = set(tasks)
    calls: dict[str, list[dict[str, Any]]] = {}
    while waiting and time.monotonic() - started < RESULTS_WAIT_SECONDS:
        for provider in sorted(waiting):
            answer = requests.get(f"{API}/tasks/{tasks[provider]}/calls", headers=story.auth, timeout=10)
            calls[provider] = [c for c in answer.json().get("items", []) if c["status"] in FINAL]
            if len(calls[provider]) >= len(NUMBERS):
                waiting.discard(provider)
                story.note(f"{provider}: every result in after {time.monotonic() - started:.0f} s")
        time.sleep(1)
    for provider, task in tasks.items():
        outcomes = ", ".join(f"{c['phone']} {c['status']}" for c in calls.get(provider, []))
        if provider in waiting:
            story.flag(f"{provider}: {len(calls.get(provider, []))} of {len(NUMBERS)} results after the wait")
            continue
        for _ in range(30):  # the last result completes the task a moment after it is stored
            if requests.get(f"{API}/tasks/{task}", headers=story.auth, timeout=10).json().get("status") != "running":
                break
            time.sleep(0.5)

        def tell(body: Any, outcomes: str = outcomes) -> str:
            return f"{body['status']}; calls: {outcomes}; contacts {words(body['counts'].get('contacts'))}"

        story.call(f"{provider}: read the task", "GET", f"/tasks/{task}", tell=tell)


def lifecycle(story: Story, tasks: dict[str, str]) -> None:
    story.chapter(
        "What a task refuses, and why",
        "Every contact has its result, so the tasks are completed: a completed task cannot be paused or stopped. "
        "Conference providers have no dialing tasks at all.",
    )
    for provider, task in tasks.items():
        for action in ("pause", "stop"):
            story.call(
                f"{provider}: {action} the completed task",
                "POST",
                f"/tasks/{task}/{action}",
                expect=409,
                refusal=f"a completed task cannot be {'paused' if action == 'pause' else 'stopped'}",
            )
    story.call(
        "create a task on quanshi",
        "POST",
        "/tasks",
        json={"name": "x", "provider": "quanshi"},
        expect=422,
        refusal="quanshi dials conferences only; it has no outbound tasks (the 422 names the field: provider)",
    )


def meeting(story: Story) -> None:
    story.chapter(
        "A meeting 15 seconds ahead: its callees dialled by an EventBridge schedule",
        "Four callees: a host, a landline guest, a typo and the host again; "
        "the typo and the repeat are refused by number, the others wait for the schedule.",
    )
    event_id = str(int(time.time()))
    start = (datetime.now(UTC) + timedelta(seconds=15)).isoformat(timespec="seconds")
    story.call(
        "register the meeting",
        "PUT",
        f"/events/{event_id}",
        json={"title": "Quarterly review", "startTime": start, "provider": "quanshi"},
        tell=lambda b: f"{b['title']} at {b['startTime']}, {b['status']}",
    )
    callees = {
        "eventId": event_id,
        "beforeMinutes": 0,
        "callList": [
            {"name": "Host", "countryCode": "86", "mobile": "13800138000", "role": 2},
            {"name": "Guest", "countryCode": "86", "areaCode": "10", "phone": "58512042", "role": 3},
            {"name": "Typo", "countryCode": "86", "mobile": "1380013"},
            {"name": "Again", "countryCode": "86", "mobile": "138 0013 8000"},
        ],
    }
    reasons = {1: "an invalid number", 2: "a duplicate"}

    def tell(body: Any) -> str:
        data = body["data"]["scheduledCall"]
        kept = ", ".join(c["name"] for c in data["successData"])
        refused = ", ".join(f"{c['name']} ({reasons.get(c['errorType'], c['errorType'])})" for c in data["failedData"])
        return f"scheduled {kept or 'nobody'}; refused {refused or 'nobody'}"

    story.call("add the callees", "POST", f"/events/{event_id}/calls", json=callees, tell=tell)
    story.note("waiting for the schedule to fire...")
    view: dict[str, Any] = {}
    for _ in range(90):
        view = requests.get(f"{API}/events/{event_id}", headers=story.auth, timeout=10).json()
        if view.get("callees") and all(c.get("dialState") not in ("pending", "dialling") for c in view["callees"]):
            break
        time.sleep(0.5)
    roles = {1: "attendee", 2: "host", 3: "guest"}
    for callee in view.get("callees", []):
        state = callee.get("dialState")
        line = f"{callee.get('name') or 'a callee'} ({roles.get(callee.get('role'), 'attendee')}) -> {state}"
        if state == "dialled":
            story.saw(line)
        else:
            story.flag(line)


def deliveries(story: Story) -> None:
    story.chapter(
        "What the local stack delivered",
        "Each function ran as Lambda would run it, from the trigger AWS would use.",
    )
    rows = requests.get(f"{API}/_local/deliveries", timeout=5).json()
    kinds = Counter((r["trigger"], r["function"]) for r in rows)
    failed = Counter((r["trigger"], r["function"]) for r in rows if r["outcome"] != "ok")
    for (trigger, function), n in sorted(kinds.items()):
        bad = f", {failed[(trigger, function)]} not ok" if failed[(trigger, function)] else ""
        story.note(f"{trigger:<10} {function:<28} {n} {'delivery' if n == 1 else 'deliveries'}{bad}")


def main() -> int:
    saved = STATE_DIR / "dev-token"
    token = os.environ.get("OUTCALL_DEV_TOKEN") or (saved.read_text().strip() if saved.exists() else "")
    if not token:
        print("no dev token: start the stack with `make run` first, or set OUTCALL_DEV_TOKEN")
        return 2
    try:
        requests.get(f"{API}/health", timeout=3)
    except requests.ConnectionError:
        print(f"no local stack at {API}: start it with `make run`")
        return 2
    story = Story(token)
    front_door(story)
    upload(story)
    tasks = dialing(story)
    lifecycle(story, tasks)
    meeting(story)
    deliveries(story)
    print(f"\n== The end: {story.steps} steps, {story.refusals} refusals, each one expected", flush=True)
    if story.unexpected:
        print(f"   ! {len(story.unexpected)} answers were not what the story expected:", flush=True)
        for what in story.unexpected:
            print(f"     {what}", flush=True)
        return 1
    print("   every answer was the one the story expected", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

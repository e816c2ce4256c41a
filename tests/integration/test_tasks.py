"""Task control through its handler: moto for AWS, the real provider simulators over HTTP."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from outcall.schedules import schedule_name
from outcall.store import default_store

from tests.helpers import ROOT, FakeContext, load_event

FAST = {"retries": 1, "backoffFactor": 0.01, "backoffMax": 0.02, "backoffJitter": 0.0, "readTimeout": 3}
SIM_KEYS = ("xswitch", "nxcloud", "aliyun", "airudder")
GROUP = "outcall-schedules"


def _sim_provider(key: str) -> Any:
    from outcall.config import provider_settings
    from outcall.providers import get_provider

    return get_provider(key, provider_settings())


@pytest.fixture
def sims(aws: Any) -> Iterator[dict[str, Any]]:
    """The provider simulators, started in process, and the provider secret pointing at them."""
    import importlib

    entries: dict[str, Any] = json.loads(Path(ROOT / "local" / "providers.json").read_text())
    started: dict[str, Any] = {}
    try:
        for key in SIM_KEYS:
            module = importlib.import_module(f"local.simulators.{key}")
            sim = module.SIMULATOR(port=0, settings={**entries[key], **FAST}).start()
            sim.faults.retry_after = 0
            started[key] = sim
            entries[key] = {**entries[key], **FAST, "baseUrl": sim.url}
        secrets = boto3.client("secretsmanager", region_name="us-east-1")
        import os

        secrets.put_secret_value(SecretId=os.environ["PROVIDER_SECRET_NAME"], SecretString=json.dumps(entries))
        parameters.clear_caches()
        yield started
    finally:
        for sim in started.values():
            sim.stop()


def call(method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None, query: str = "") -> Any:
    import task_control_handler as handler

    event = copy.deepcopy(load_event("contact_import_get_import"))
    event["routeKey"] = f"{method} {path}"
    event["rawPath"] = path
    event["rawQueryString"] = query
    if query:
        event["queryStringParameters"] = dict(p.split("=", 1) for p in query.split("&"))
    event["requestContext"]["http"]["method"] = method
    event["requestContext"]["http"]["path"] = path
    event["pathParameters"] = {}
    event["headers"].update(headers or {})
    if body is not None:
        event["body"] = json.dumps(body)
    answer = handler.lambda_handler(event, FakeContext())

    class Answer:
        status = answer["statusCode"]
        json = json.loads(answer["body"]) if answer.get("body") else None

    return Answer


def future(minutes: int) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).replace(microsecond=0).isoformat()


def create(provider: str = "xswitch", **extra: Any) -> dict[str, Any]:
    body = {"name": f"{provider} task", "provider": provider, "type": "auto", **extra}
    answer = call("POST", "/tasks", body)
    assert answer.status == 201, answer.json
    return dict(answer.json)


def provider_calls(sim: Any, method: str, path: str, *, body_has: dict[str, Any] | None = None) -> list[Any]:
    found = []
    for r in sim.journal:
        if r.method != method or r.path != path:
            continue
        if body_has and not all((r.json() or {}).get(k) == v for k, v in body_has.items()):
            continue
        found.append(r)
    return found


def nx_ops(sim: Any, op: str) -> list[Any]:
    return [r for r in sim.journal if r.path.endswith("/" + op)]


def scheduler() -> Any:
    return boto3.client("scheduler", region_name="us-east-1")


def schedule(task_id: str, action: str) -> dict[str, Any] | None:
    try:
        return dict(scheduler().get_schedule(Name=schedule_name(task_id, action), GroupName=GROUP))
    except scheduler().exceptions.ResourceNotFoundException:
        return None


# ---------------------------------------------------------------- create, get, list


def test_create_on_xswitch_stores_both_ids_and_get_has_counts(sims: Any) -> None:
    task = create("xswitch", settings={"concurrency": 2, "callerIds": ["+861012345678"]})
    assert task["status"] == "ready" and task["taskId"].startswith("tsk_") and task["providerTaskId"]
    assert len(provider_calls(sims["xswitch"], "POST", "/api/out_call_tasks")) == 1
    got = call("GET", f"/tasks/{task['taskId']}")
    assert got.status == 200
    assert got.json["providerTaskId"] == task["providerTaskId"]
    assert got.json["counts"] == {"contacts": {}, "calls": {}, "outcomes": {}}
    default_store().add_task_counts(task["taskId"], contacts={"accepted": 3}, calls={"answered": 1})
    default_store().add_task_counts(task["taskId"], contacts={"accepted": 2, "invalid": 1})
    counts = call("GET", f"/tasks/{task['taskId']}").json["counts"]
    assert counts == {"contacts": {"accepted": 5, "invalid": 1}, "calls": {"answered": 1}, "outcomes": {}}


def test_unknown_task_is_404(sims: Any) -> None:
    assert call("GET", "/tasks/tsk_nope").status == 404
    assert call("POST", "/tasks/tsk_nope/start").status == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"provider": "xswitch", "type": "robot"}, "type"),
        ({"provider": "quanshi", "type": "auto"}, "provider"),
        ({"provider": "aliyun", "type": "predictive", "settings": {"providerOptions": {"Quotiety": 21}}}, "Quotiety"),
        (
            {"provider": "aliyun", "type": "predictive", "settings": {"providerOptions": {"PredictAdjust": 40}}},
            "PredictAdjust",
        ),
        ({"provider": "xswitch", "settings": {"providerOptions": {"max_concurrency": 0}}}, "max_concurrency"),
        ({"provider": "xswitch", "settings": {"concurrency": 0}}, "concurrency"),
        ({"provider": "xswitch", "settings": {"autoStartAt": "2001-01-01T00:00:00+00:00"}}, "autoStartAt"),
        ({"provider": "xswitch", "unknown": 1}, "unknown"),
    ],
)
def test_bad_type_or_settings_is_422_naming_the_field(sims: Any, body: dict[str, Any], field: str) -> None:
    answer = call("POST", "/tasks", {"name": "bad", **body})
    assert answer.status == 422, answer.json
    assert field in answer.json["message"]
    if body["provider"] != "quanshi" and field == "type":
        assert "xswitch" in answer.json["message"]
    # nothing created anywhere
    assert call("GET", "/tasks").json["items"] == []
    assert provider_calls(sims["xswitch"], "POST", "/api/out_call_tasks") == []


def test_list_filters_and_pages_without_scans(sims: Any) -> None:
    made = [create("xswitch", name=f"alpha {i}") for i in range(3)]
    made += [create("nxcloud", name="beta 1", type="robot")]
    call("POST", f"/tasks/{made[0]['taskId']}/start")

    everything = call("GET", "/tasks").json
    assert [t["taskId"] for t in everything["items"]] == [t["taskId"] for t in reversed(made)]
    assert everything.get("nextToken") is None
    assert [t["name"] for t in call("GET", "/tasks", query="name=alpha").json["items"]] == [
        "alpha 2",
        "alpha 1",
        "alpha 0",
    ]
    assert [t["provider"] for t in call("GET", "/tasks", query="provider=nxcloud").json["items"]] == ["nxcloud"]
    assert [t["taskId"] for t in call("GET", "/tasks", query="status=running").json["items"]] == [made[0]["taskId"]]

    seen: list[str] = []
    token = None
    while True:
        query = "limit=2" + (f"&nextToken={token}" if token else "")
        page = call("GET", "/tasks", query=query).json
        assert len(page["items"]) <= 2
        seen += [t["taskId"] for t in page["items"]]
        token = page.get("nextToken")
        if not token:
            break
    assert seen == [t["taskId"] for t in reversed(made)]
    assert call("GET", "/tasks", query="nextToken=garbage").status == 422
    assert call("GET", "/tasks", query="status=sleeping").status == 422


# ---------------------------------------------------------------- lifecycle

LEGAL = [
    ("ready", "start", "running"),
    ("ready", "stop", "stopped"),
    ("running", "pause", "paused"),
    ("running", "stop", "stopped"),
    ("paused", "start", "running"),
    ("paused", "stop", "stopped"),
]
ILLEGAL = [
    ("ready", "pause"),
    ("running", "start"),
    ("paused", "pause"),
    ("stopped", "start"),
    ("stopped", "pause"),
    ("stopped", "stop"),
    ("completed", "start"),
    ("completed", "pause"),
    ("completed", "stop"),
    ("failed", "start"),
    ("failed", "stop"),
]
PATH_TO = {
    "ready": [],
    "running": ["start"],
    "paused": ["start", "pause"],
    "stopped": ["stop"],
}


def task_in(status: str) -> dict[str, Any]:
    """An nxcloud task (nxcloud can pause) brought to `status` through the API or, for the states
    only results reach (completed, failed), through the service."""
    from outcall import tasks

    task = create("nxcloud", type="robot")
    if status in ("completed", "failed"):
        call("POST", f"/tasks/{task['taskId']}/start")
        service = tasks.TaskService(default_store(), _sim_provider)
        service.transition(task["taskId"], "complete" if status == "completed" else "fail")
    for action in PATH_TO.get(status, []):
        assert call("POST", f"/tasks/{task['taskId']}/{action}").status == 200
    current = call("GET", f"/tasks/{task['taskId']}").json
    assert current["status"] == status
    return dict(current)


@pytest.mark.parametrize(("start", "action", "end"), LEGAL)
def test_legal_transition(sims: Any, start: str, action: str, end: str) -> None:
    task = task_in(start)
    before = len(nx_ops(sims["nxcloud"], "mgrTaskStatus"))
    answer = call("POST", f"/tasks/{task['taskId']}/{action}")
    assert answer.status == 200, answer.json
    assert answer.json["status"] == end and answer.json["version"] > task["version"]
    assert len(nx_ops(sims["nxcloud"], "mgrTaskStatus")) == before + 1
    assert call("GET", f"/tasks/{task['taskId']}").json["status"] == end


@pytest.mark.parametrize(("start", "action"), ILLEGAL)
def test_illegal_transition_is_409_and_changes_nothing(sims: Any, start: str, action: str) -> None:
    task = task_in(start)
    before = len(sims["nxcloud"].journal)
    answer = call("POST", f"/tasks/{task['taskId']}/{action}")
    assert answer.status == 409, answer.json
    assert answer.json["code"] == "Conflict" and start in answer.json["message"]
    after = call("GET", f"/tasks/{task['taskId']}").json
    assert after == task
    assert len(sims["nxcloud"].journal) == before


def test_pause_works_on_every_task_provider(sims: Any) -> None:
    """outcall stops releasing at once; the provider pauses, stops or withdraws what it can."""
    for provider, kind in (("xswitch", "auto"), ("airudder", "robot"), ("aliyun", "predictive"), ("nxcloud", "robot")):
        task = create(provider, type=kind)
        assert call("POST", f"/tasks/{task['taskId']}/start").status == 200
        answer = call("POST", f"/tasks/{task['taskId']}/pause")
        assert answer.status == 200, (provider, answer.json)
        assert answer.json["status"] == "paused"
        assert call("POST", f"/tasks/{task['taskId']}/start").json["status"] == "running"
        assert call("POST", f"/tasks/{task['taskId']}/stop").json["status"] == "stopped"


@pytest.mark.parametrize("provider", ["xswitch", "nxcloud"])
def test_provider_failure_mid_transition_keeps_the_state_and_is_502(sims: Any, provider: str) -> None:
    task = create(provider, type="robot" if provider == "nxcloud" else "auto")
    sims[provider].faults.fail_next = 10
    answer = call("POST", f"/tasks/{task['taskId']}/start")
    assert answer.status == 502, answer.json
    assert answer.json["code"] == "ProviderError" and "500" in answer.json["message"]
    assert call("GET", f"/tasks/{task['taskId']}").json["status"] == "ready"
    # the claim was released: once the provider answers again, the same start works
    sims[provider].faults.fail_next = 0
    again = call("POST", f"/tasks/{task['taskId']}/start")
    assert again.status == 200 and again.json["status"] == "running"


def test_two_concurrent_starts_make_one_provider_call(sims: Any) -> None:
    task = create("xswitch")
    sims["xswitch"].faults.delay_seconds = 0.3
    barrier = threading.Barrier(2)
    answers: list[int] = []

    def start() -> None:
        barrier.wait()
        answers.append(call("POST", f"/tasks/{task['taskId']}/start").status)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sims["xswitch"].faults.delay_seconds = 0
    assert sorted(answers) == [200, 409]
    starts = provider_calls(sims["xswitch"], "PUT", "/api/out_call_tasks", body_has={"action": "start"})
    assert len(starts) == 1
    assert call("GET", f"/tasks/{task['taskId']}").json["status"] == "running"


# ---------------------------------------------------------------- idempotent create


def test_retried_create_with_the_same_idempotency_key_makes_one_provider_call(sims: Any) -> None:
    body = {"name": "once", "provider": "xswitch", "type": "auto"}
    first = call("POST", "/tasks", body, headers={"Idempotency-Key": "key-1"})
    second = call("POST", "/tasks", body, headers={"Idempotency-Key": "key-1"})
    assert first.status == second.status == 201
    assert first.json["taskId"] == second.json["taskId"]
    assert len(provider_calls(sims["xswitch"], "POST", "/api/out_call_tasks")) == 1
    assert len(call("GET", "/tasks").json["items"]) == 1
    other = call("POST", "/tasks", {**body, "name": "other"}, headers={"Idempotency-Key": "key-1"})
    assert other.status == 422
    third = call("POST", "/tasks", body, headers={"Idempotency-Key": "key-2"})
    assert third.status == 201 and third.json["taskId"] != first.json["taskId"]
    assert len(provider_calls(sims["xswitch"], "POST", "/api/out_call_tasks")) == 2


# ---------------------------------------------------------------- update, delete, clone


def test_patch_changes_settings_while_allowed_and_409_when_running(sims: Any) -> None:
    task = create("nxcloud", type="robot")
    answer = call("PATCH", f"/tasks/{task['taskId']}", {"name": "renamed", "settings": {"concurrency": 5}})
    assert answer.status == 200, answer.json
    assert answer.json["name"] == "renamed" and answer.json["settings"]["concurrency"] == 5
    assert answer.json["settings"]["ringTimeoutSeconds"] == task["settings"]["ringTimeoutSeconds"]
    assert len(nx_ops(sims["nxcloud"], "updateTask")) == 1
    bad = call("PATCH", f"/tasks/{task['taskId']}", {"settings": {"providerOptions": {"concurrency": 0}}})
    assert bad.status == 422 and "concurrency" in bad.json["message"]
    call("POST", f"/tasks/{task['taskId']}/start")
    running = call("PATCH", f"/tasks/{task['taskId']}", {"name": "again"})
    assert running.status == 409
    assert call("GET", f"/tasks/{task['taskId']}").json["name"] == "renamed"


def test_delete_removes_it_at_the_provider_and_here(sims: Any) -> None:
    task = create("xswitch", settings={"autoStartAt": future(60)})
    assert schedule(task["taskId"], "start") is not None
    assert call("DELETE", f"/tasks/{task['taskId']}").status == 204
    assert provider_calls(sims["xswitch"], "DELETE", f"/api/out_call_tasks/{task['providerTaskId']}")
    assert call("GET", f"/tasks/{task['taskId']}").status == 404
    assert schedule(task["taskId"], "start") is None
    assert default_store().task_count("xswitch") == 0
    assert call("DELETE", f"/tasks/{task['taskId']}").status == 404


def test_clone_copies_settings(sims: Any) -> None:
    task = create("nxcloud", type="robot", settings={"concurrency": 3, "ringTimeoutSeconds": 40})
    answer = call("POST", f"/tasks/{task['taskId']}/clone", {"name": "copy"})
    assert answer.status == 201, answer.json
    clone = answer.json["task"]
    assert clone["taskId"] != task["taskId"] and clone["providerTaskId"] != task["providerTaskId"]
    assert clone["settings"] == task["settings"] and clone["status"] == "ready"
    assert answer.json.get("contactsImportId") is None
    plain = call("POST", f"/tasks/{task['taskId']}/clone")
    assert plain.status == 201 and plain.json["task"]["name"] == "nxcloud task (copy)"


# ---------------------------------------------------------------- limits


def _fill_to(provider: str, n: int) -> None:
    """Count n tasks against the provider (as if they existed) without creating them one by one."""
    default_store().table.put_item(Item={"pk": f"PROVIDER#{provider}", "sk": "TASKCOUNT", "tasks": n})


def test_the_101st_task_is_409_and_nothing_is_created(sims: Any) -> None:
    _fill_to("xswitch", 100)
    answer = call("POST", "/tasks", {"name": "one too many", "provider": "xswitch"})
    assert answer.status == 409 and "100" in answer.json["message"]
    assert provider_calls(sims["xswitch"], "POST", "/api/out_call_tasks") == []
    assert default_store().task_count("xswitch") == 100
    # other providers are counted apart
    assert call("POST", "/tasks", {"name": "fine", "provider": "nxcloud", "type": "robot"}).status == 201


def test_auto_delete_removes_the_oldest_completed_task_to_make_room(sims: Any) -> None:
    from outcall import tasks

    old = create("nxcloud", type="robot", name="old")
    newer = create("nxcloud", type="robot", name="newer")
    service = tasks.TaskService(default_store(), _sim_provider)
    for t in (old, newer):
        call("POST", f"/tasks/{t['taskId']}/start")
        service.transition(t["taskId"], "complete")
    _fill_to("nxcloud", 100)
    full = call("POST", "/tasks", {"name": "no room", "provider": "nxcloud", "type": "robot"})
    assert full.status == 409
    made = call("POST", "/tasks", {"name": "room", "provider": "nxcloud", "type": "robot", "autoDelete": True})
    assert made.status == 201, made.json
    assert call("GET", f"/tasks/{old['taskId']}").status == 404
    assert call("GET", f"/tasks/{newer['taskId']}").status == 200
    assert default_store().task_count("nxcloud") == 100


def test_created_tasks_are_counted_up_to_the_limit(sims: Any) -> None:
    sims_settings = json.loads(
        boto3.client("secretsmanager", region_name="us-east-1").get_secret_value(
            SecretId=__import__("os").environ["PROVIDER_SECRET_NAME"]
        )["SecretString"]
    )
    sims_settings["xswitch"]["maxTasks"] = 3
    boto3.client("secretsmanager", region_name="us-east-1").put_secret_value(
        SecretId=__import__("os").environ["PROVIDER_SECRET_NAME"], SecretString=json.dumps(sims_settings)
    )
    parameters.clear_caches()
    made = [create("xswitch", name=f"t{i}") for i in range(3)]
    assert call("POST", "/tasks", {"name": "t3", "provider": "xswitch"}).status == 409
    call("DELETE", f"/tasks/{made[0]['taskId']}")
    assert call("POST", "/tasks", {"name": "t3", "provider": "xswitch"}).status == 201


def test_a_failed_provider_create_frees_its_slot(sims: Any) -> None:
    sims["xswitch"].faults.fail_next = 10
    answer = call("POST", "/tasks", {"name": "x", "provider": "xswitch"})
    assert answer.status == 502
    sims["xswitch"].faults.fail_next = 0
    assert default_store().task_count("xswitch") == 0
    assert call("GET", "/tasks").json["items"] == []


# ---------------------------------------------------------------- auto start / stop


def test_schedules_are_created_moved_fired_and_removed(sims: Any) -> None:
    import task_control_handler as handler

    start_at, stop_at = future(30), future(90)
    task = create("xswitch", settings={"autoStartAt": start_at, "autoStopAt": stop_at})
    tid = task["taskId"]
    s = schedule(tid, "start")
    assert s is not None
    assert s["ScheduleExpression"] == f"at({start_at[:19]})"
    assert s["FlexibleTimeWindow"] == {"Mode": "OFF"} and s["ActionAfterCompletion"] == "DELETE"
    assert s["Target"]["Arn"].endswith(":function:outcall-task-control")
    assert s["Target"]["RoleArn"] and s["Target"]["DeadLetterConfig"]["Arn"].endswith("SchedulerDLQ")
    payload = json.loads(s["Target"]["Input"])
    assert payload == {"kind": "task-auto", "taskId": tid, "action": "start", "version": 1}
    assert schedule(tid, "stop")["ScheduleExpression"] == f"at({stop_at[:19]})"  # type: ignore[index]

    # moved with the task
    moved = future(45)
    assert call("PATCH", f"/tasks/{tid}", {"settings": {"autoStartAt": moved}}).status == 200
    assert schedule(tid, "start")["ScheduleExpression"] == f"at({moved[:19]})"  # type: ignore[index]

    # fired: the task starts; fired again: nothing happens
    fired = handler.lambda_handler(json.loads(schedule(tid, "start")["Target"]["Input"]), FakeContext())  # type: ignore[index]
    assert fired["handled"] is True and fired["status"] == "running"
    starts = provider_calls(sims["xswitch"], "PUT", "/api/out_call_tasks", body_has={"action": "start"})
    again = handler.lambda_handler({"kind": "task-auto", "taskId": tid, "action": "start", "version": 1}, FakeContext())
    assert again["handled"] is False and "already" in again["reason"]
    assert provider_calls(sims["xswitch"], "PUT", "/api/out_call_tasks", body_has={"action": "start"}) == starts

    # the auto stop fires, stops it, and nothing is left scheduled
    stop = handler.lambda_handler({"kind": "task-auto", "taskId": tid, "action": "stop", "version": 1}, FakeContext())
    assert stop["handled"] is True and stop["status"] == "stopped"
    assert schedule(tid, "start") is None and schedule(tid, "stop") is None


def test_clearing_an_auto_time_removes_its_schedule(sims: Any) -> None:
    task = create("nxcloud", type="robot", settings={"autoStopAt": future(30)})
    assert schedule(task["taskId"], "stop") is not None
    assert call("PATCH", f"/tasks/{task['taskId']}", {"settings": {"autoStopAt": None}}).status == 200
    assert schedule(task["taskId"], "stop") is None


def test_schedule_for_a_deleted_or_stopped_task_does_nothing(sims: Any) -> None:
    import task_control_handler as handler

    gone = create("xswitch")
    call("DELETE", f"/tasks/{gone['taskId']}")
    answer = handler.lambda_handler(
        {"kind": "task-auto", "taskId": gone["taskId"], "action": "start", "version": 1}, FakeContext()
    )
    assert answer == {"handled": False, "reason": "task deleted", "taskId": gone["taskId"]}

    stopped = create("xswitch")
    call("POST", f"/tasks/{stopped['taskId']}/stop")
    before = len(sims["xswitch"].journal)
    answer = handler.lambda_handler(
        {"kind": "task-auto", "taskId": stopped["taskId"], "action": "start", "version": 1}, FakeContext()
    )
    assert answer["handled"] is False and answer["status"] == "stopped"
    assert len(sims["xswitch"].journal) == before


def test_the_sample_schedule_event_is_handled(sims: Any) -> None:
    import task_control_handler as handler

    assert handler.lambda_handler(load_event("task_control_schedule"), FakeContext())["reason"] == "task deleted"


def test_task_routes_are_in_the_openapi_document(aws: Any) -> None:
    import task_control_handler as handler

    paths = handler.app.get_openapi_schema().paths
    assert {"/tasks", "/tasks/{taskId}", "/tasks/{taskId}/start", "/tasks/{taskId}/clone"} <= set(paths)


def test_a_task_the_provider_finished_completes_here_once_nothing_is_left(sims: Any) -> None:
    import task_control_handler
    from outcall.models import TaskLifecycleEvent

    task = create("nxcloud", type="robot")
    assert call("POST", f"/tasks/{task['taskId']}/start").json["status"] == "running"

    def pushed(status: str) -> TaskLifecycleEvent:
        return TaskLifecycleEvent(
            provider="nxcloud",
            dedup_key=f"t-{status}",
            kind="task-status",
            provider_task_id=task["providerTaskId"],
            status=status,
        )

    service = task_control_handler.service()
    assert service.on_provider_status(pushed("running")) is None  # not an end: nothing to do
    store = default_store()
    store.claim_contacts(task["taskId"], [{"e164": "+8613800138000", "importId": "imp_t", "row": 1}])
    done = service.on_provider_status(pushed("completed"))
    assert done is not None and done.handled
    # outcall decides: a contact is still queued, so the dispatcher released it and the task runs on
    assert call("GET", f"/tasks/{task['taskId']}").json["status"] == "running"
    contact = store.get_contact(task["taskId"], "+8613800138000")
    assert contact is not None and contact["state"] == "released"
    store.mark_skipped(task["taskId"], [("+8613800138000", 1)], "test: refused", "released")
    store.add_contact_counts(task["taskId"], {"skipped": 1})
    done = service.on_provider_status(pushed("completed"))  # nothing left: it completes here
    assert call("GET", f"/tasks/{task['taskId']}").json["status"] == "completed"
    stranger = pushed("completed").model_copy(update={"provider_task_id": "not-ours"})
    assert service.on_provider_status(stranger) is None


def test_a_claim_left_by_a_crashed_caller_is_taken_over_after_it_goes_stale(sims: Any) -> None:
    from outcall.store import PENDING_STALE_SECONDS

    task = create("xswitch")
    table = boto3.resource("dynamodb", region_name="us-east-1").Table(default_store().table_name)
    key = {"pk": f"TASK#{task['taskId']}", "sk": "TASK"}

    def leave_claim(seconds_ago: int) -> None:
        at = (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat()
        table.update_item(
            Key=key,
            UpdateExpression="SET #p = :op, pendingAt = :at",
            ExpressionAttributeNames={"#p": "pending"},
            ExpressionAttributeValues={":op": "start", ":at": at},
        )

    leave_claim(PENDING_STALE_SECONDS - 30)  # a caller still at the provider: hands off
    busy = call("POST", f"/tasks/{task['taskId']}/start")
    assert busy.status == 409 and "under way" in busy.json["message"]
    leave_claim(PENDING_STALE_SECONDS + 30)  # a caller that died mid-operation: taken over
    started = call("POST", f"/tasks/{task['taskId']}/start")
    assert started.status == 200 and started.json["status"] == "running"
    assert "pending" not in table.get_item(Key=key)["Item"]


# ---------------------------------------------------------------- the dispatch queue


def test_a_busy_dispatcher_sends_the_run_to_its_queue_and_the_redelivery_releases(sims: Any) -> None:
    """Another run holds the provider account's lease: start answers (the task runs), its first wave
    goes to the dispatch queue; the queue's batch reports the message failed while the lease is held
    (SQS delivers it again), and releases the contacts once it is free."""
    import os

    import task_control_handler as handler
    from outcall.calllists import process_records
    from outcall.contacts import add_rows

    task = create("xswitch", settings={"hopperLevel": 10})
    store = default_store()
    stored = store.get_task(task["taskId"])
    assert stored is not None
    rows = list(process_records([{"mobile": f"+86138{10000000 + i:08d}"} for i in range(3)], default_region="CN"))
    added = add_rows(store, stored, "imp_busy", rows, reserved=3)
    store.add_contact_counts(
        stored.task_id, {k.split(".", 1)[1]: v for k, v in added.task_counts.items() if k.startswith("contacts.")}
    )
    assert store.take_dispatch_lease("xswitch", "another-run", 120)
    sim = sims["xswitch"]
    imports_before = len(provider_calls(sim, "POST", f"/api/out_call_tasks/{task['providerTaskId']}/import"))

    assert call("POST", f"/tasks/{task['taskId']}/start").json["status"] == "running"
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue = os.environ["DISPATCH_QUEUE_URL"]
    got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
    assert [json.loads(m["Body"])["taskId"] for m in got] == [task["taskId"]]
    event = {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m["Attributes"],
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:DispatchQueue",
                "awsRegion": "us-east-1",
            }
            for m in got
        ]
    }
    busy = handler.lambda_handler(event, FakeContext())
    assert busy["batchItemFailures"] == [{"itemIdentifier": got[0]["MessageId"]}]  # delivered again by SQS
    assert len(provider_calls(sim, "POST", f"/api/out_call_tasks/{task['providerTaskId']}/import")) == imports_before
    assert all(c["state"] == "queued" for c in store.iter_contacts(task["taskId"]))

    store.drop_dispatch_lease("xswitch", "another-run")
    assert handler.lambda_handler(event, FakeContext())["batchItemFailures"] == []
    assert (
        len(provider_calls(sim, "POST", f"/api/out_call_tasks/{task['providerTaskId']}/import")) == imports_before + 1
    )
    assert sorted(c["state"] for c in store.iter_contacts(task["taskId"])) == ["released"] * 3

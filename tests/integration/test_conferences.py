"""Conference pre-meeting dialing through its handler: moto for AWS, the Quanshi simulator over
HTTP, and a controlled clock (the handler's `clock`)."""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from outcall import conferences
from outcall.models import TaskLifecycleEvent
from outcall.providers import quanshi as quanshi_module
from outcall.schedules import conference_schedule_name

from tests.helpers import ROOT, FakeContext, load_event

FAST = {"retries": 1, "backoffFactor": 0.01, "backoffMax": 0.02, "backoffJitter": 0.0, "readTimeout": 5}
GROUP = "outcall-schedules"
EVENT = "542818"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def sim(aws: Any) -> Iterator[Any]:
    from local.simulators.quanshi import SIMULATOR

    entries: dict[str, Any] = json.loads(Path(ROOT / "local" / "providers.json").read_text())
    settings = {**entries["quanshi"], **FAST}
    server = SIMULATOR(port=0, settings=settings).start()
    server.dialing.ring_seconds = 0.01
    server.faults.retry_after = 0
    quanshi_module._TOKENS.clear()
    entries["quanshi"] = {**settings, "baseUrl": server.url}
    boto3.client("secretsmanager", region_name="us-east-1").put_secret_value(
        SecretId=os.environ["PROVIDER_SECRET_NAME"], SecretString=json.dumps(entries)
    )
    parameters.clear_caches()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    import conference_dialing_handler as handler

    c = Clock()
    monkeypatch.setattr(handler, "clock", c)
    return c


def call(method: str, path: str, body: Any = None) -> Any:
    import conference_dialing_handler as handler

    event = copy.deepcopy(load_event("contact_import_get_import"))
    event["routeKey"] = f"{method} {path}"
    event["rawPath"] = path
    event["rawQueryString"] = ""
    event["requestContext"]["http"]["method"] = method
    event["requestContext"]["http"]["path"] = path
    event["pathParameters"] = {}
    if body is not None:
        event["body"] = json.dumps(body)
    answer = handler.lambda_handler(event, FakeContext())

    class Answer:
        status = answer["statusCode"]
        json = json.loads(answer["body"]) if answer.get("body") else None

    return Answer


def fire(payload: dict[str, Any]) -> dict[str, Any]:
    import conference_dialing_handler as handler

    result: dict[str, Any] = handler.lambda_handler(payload, FakeContext())
    return result


def register(clock: Clock, start_in: timedelta, event_id: str = EVENT, **extra: Any) -> dict[str, Any]:
    start = (clock.now + start_in).astimezone(datetime.now().astimezone().tzinfo)
    body = {"title": "weekly", "startTime": start.isoformat(), **extra}
    answer = call("PUT", f"/events/{event_id}", body)
    assert answer.status in (200, 201), answer.json
    return dict(answer.json)


def mobile(n: int, **kw: Any) -> dict[str, Any]:
    return {"name": f"user{n}", "company": "quanshi.com", "countryCode": "86", "mobile": f"1810000{n:04d}", **kw}


def add(event_id: str, callees: list[dict[str, Any]], **extra: Any) -> Any:
    return call("POST", f"/events/{event_id}/calls", {"eventId": int(event_id), "callList": callees, **extra})


def scheduler() -> Any:
    return boto3.client("scheduler", region_name="us-east-1")


def schedules_of(event_id: str) -> list[dict[str, Any]]:
    names = [s["Name"] for s in scheduler().list_schedules(GroupName=GROUP).get("Schedules", [])]
    return [dict(scheduler().get_schedule(Name=n, GroupName=GROUP)) for n in names if n.startswith(f"conf-{event_id}-")]


def call_adds(sim: Any) -> list[Any]:
    return [r for r in sim.journal if r.path.endswith("/event/call/add")]


def states(event_id: str = EVENT) -> dict[str, str]:
    return {c["e164"]: c["dialState"] for c in call("GET", f"/events/{event_id}").json["callees"]}


def at_of(when: datetime) -> str:
    return f"at({when.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S')})"


# ---------------------------------------------------------------- register, change, cancel


def test_register_get_and_unknown_meeting(sim: Any, clock: Clock) -> None:
    meeting = register(clock, timedelta(hours=2), callerId="+861012345678")
    assert meeting["eventId"] == EVENT and meeting["revision"] == 1 and meeting["status"] == "scheduled"
    assert meeting["startTime"].endswith("Z") or meeting["startTime"].endswith("+00:00")
    got = call("GET", f"/events/{EVENT}")
    assert got.status == 200 and got.json["callees"] == [] and got.json["schedules"] == []
    assert call("GET", "/events/999").status == 404
    assert add("999", [mobile(1)]).status == 404
    assert call("DELETE", "/events/999").status == 404
    naive = call("PUT", "/events/1", {"title": "x", "startTime": "2030-01-01T09:00:00"})
    assert naive.status == 422 and "startTime" in naive.json["message"]
    not_dialling = call(
        "PUT", "/events/1", {"title": "x", "startTime": "2030-01-01T09:00:00+08:00", "provider": "xswitch"}
    )
    assert not_dialling.status == 422


def test_due_time_ahead_gives_one_schedule_with_the_right_at(sim: Any, clock: Clock) -> None:
    meeting = register(clock, timedelta(hours=2))
    start = datetime.fromisoformat(meeting["startTime"])
    answer = add(EVENT, [mobile(1), mobile(2)], beforeMinutes=15, token="ignored")
    assert answer.status == 200, answer.json
    body = answer.json
    assert set(body) == {"timeStamp", "code", "msg", "data", "requestId"}
    assert body["code"] == 200 and body["msg"] == "Successfully to create the event call!"
    data = body["data"]
    assert data["callType"] == 1 and data["realTimeCall"] is None and data["scheduledCall"]["failedData"] is None
    rows = data["scheduledCall"]["successData"]
    assert [r["mobile"] for r in rows] == ["18100000001", "18100000002"] and all(r["id"] for r in rows)
    assert rows[0]["errorType"] is None and rows[0]["areaCode"] == ""
    due = start - timedelta(minutes=15)
    found = schedules_of(EVENT)
    assert len(found) == 1
    s = found[0]
    assert s["Name"] == conference_schedule_name(EVENT, due)
    assert s["ScheduleExpression"] == at_of(due) and s["ScheduleExpressionTimezone"] == "UTC"
    assert s["FlexibleTimeWindow"] == {"Mode": "OFF"} and s["ActionAfterCompletion"] == "DELETE"
    assert s["Target"]["Arn"] == os.environ["CONFERENCE_DIALING_FUNCTION_ARN"]
    assert s["Target"]["RoleArn"] == os.environ["SCHEDULER_ROLE_ARN"]
    assert s["Target"]["DeadLetterConfig"]["Arn"] == os.environ["SCHEDULER_DLQ_ARN"]
    assert s["Target"]["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    payload = json.loads(s["Target"]["Input"])
    assert payload == {"kind": "conference-dial", "eventId": EVENT, "revision": 1, "dueAt": due.isoformat()}
    # same due time shares the schedule; another due time gets its own
    assert add(EVENT, [mobile(3)], beforeMinutes=15).json["data"]["callType"] == 1
    assert len(schedules_of(EVENT)) == 1
    add(EVENT, [mobile(4)])  # default 30 minutes
    assert sorted(s["ScheduleExpression"] for s in schedules_of(EVENT)) == sorted(
        [at_of(due), at_of(start - timedelta(minutes=30))]
    )
    view = call("GET", f"/events/{EVENT}").json
    assert len(view["callees"]) == 4 and {c["dialState"] for c in view["callees"]} == {"pending"}
    assert len(view["schedules"]) == 2
    assert call_adds(sim) == []


def test_due_time_passed_dials_at_once(sim: Any, clock: Clock) -> None:
    register(clock, timedelta(minutes=10))
    sim.create_event(int(EVENT), start_in=600)
    answer = add(EVENT, [mobile(1), {**mobile(2), "role": 2}], beforeMinutes=30)
    assert answer.status == 200, answer.json
    data = answer.json["data"]
    assert data["callType"] == 2 and data["scheduledCall"] is None
    assert data["realTimeCall"] == {"failedData": None}
    adds = call_adds(sim)
    assert len(adds) == 1
    sent = adds[0].json()
    assert [c["mobile"] for c in sent["callList"]] == ["18100000001", "18100000002"]
    assert sent["callList"][1]["role"] == 2 and sent["beforeMinutes"] == 10
    assert set(states().values()) == {"dialled"}
    view = call("GET", f"/events/{EVENT}").json
    assert all(c["lastResult"]["state"] == "dialled" for c in view["callees"])
    assert schedules_of(EVENT) == []


def test_invalid_and_duplicate_numbers_give_error_types_1_and_2(sim: Any, clock: Clock) -> None:
    register(clock, timedelta(hours=2))
    assert add(EVENT, [mobile(1)]).status == 200
    answer = add(
        EVENT,
        [
            mobile(2),
            {"name": "bad", "countryCode": "86", "mobile": "12"},
            {"name": "nothing", "countryCode": "86"},
            mobile(2),
            mobile(1),
            {"name": "landline", "countryCode": "86", "areaCode": "10", "phone": "58512042"},
        ],
    )
    assert answer.status == 200, answer.json
    scheduled = answer.json["data"]["scheduledCall"]
    assert [r["name"] for r in scheduled["successData"]] == ["user2", "landline"]
    assert [(r["name"], r["errorType"]) for r in scheduled["failedData"]] == [
        ("bad", 1),
        ("nothing", 1),
        ("user2", 2),
        ("user1", 2),
    ]
    assert sorted(states()) == ["+861058512042", "+8618100000001", "+8618100000002"]


def test_parallel_adds_of_one_number_add_it_once(sim: Any, clock: Clock) -> None:
    import threading

    register(clock, timedelta(hours=2))
    answers: list[Any] = []
    barrier = threading.Barrier(4)

    def go() -> None:
        barrier.wait()
        answers.append(add(EVENT, [mobile(7)]).json["data"]["scheduledCall"])

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(len(a["successData"] or []) for a in answers) == 1
    assert sum(len(a["failedData"] or []) for a in answers) == 3
    assert len(states()) == 1


@pytest.mark.parametrize("minutes", [-1, 61])
def test_before_minutes_out_of_range_is_422(sim: Any, clock: Clock, minutes: int) -> None:
    register(clock, timedelta(hours=2))
    answer = add(EVENT, [mobile(1)], beforeMinutes=minutes)
    assert answer.status == 422 and "beforeMinutes" in answer.json["message"]
    assert states() == {}


def test_body_event_id_must_match_the_path(sim: Any, clock: Clock) -> None:
    register(clock, timedelta(hours=2))
    answer = call("POST", f"/events/{EVENT}/calls", {"eventId": 1, "callList": [mobile(1)]})
    assert answer.status == 422


# ---------------------------------------------------------------- moving and cancelling


def test_moving_the_meeting_moves_its_schedules(sim: Any, clock: Clock) -> None:
    meeting = register(clock, timedelta(hours=2))
    add(EVENT, [mobile(1)], beforeMinutes=10)
    add(EVENT, [mobile(2)], beforeMinutes=30)
    old = {s["Name"] for s in schedules_of(EVENT)}
    moved = register(clock, timedelta(hours=3))
    assert moved["revision"] == 2
    start = datetime.fromisoformat(moved["startTime"])
    found = schedules_of(EVENT)
    assert sorted(s["ScheduleExpression"] for s in found) == sorted(
        [at_of(start - timedelta(minutes=10)), at_of(start - timedelta(minutes=30))]
    )
    assert not old & {s["Name"] for s in found}
    assert {json.loads(s["Target"]["Input"])["revision"] for s in found} == {2}
    # the old schedule firing dials nobody
    old_due = datetime.fromisoformat(meeting["startTime"]) - timedelta(minutes=10)
    clock.now = old_due + timedelta(seconds=1)
    result = fire({"kind": "conference-dial", "eventId": EVENT, "revision": 1, "dueAt": old_due.isoformat()})
    assert result["dialled"] == 0 and "moved" in result["reason"]
    assert call_adds(sim) == []
    # a title change keeps the revision and the schedules
    same = register(clock, start - clock.now, title="renamed")
    assert same["revision"] == 2 and len(schedules_of(EVENT)) == 2


def test_moving_into_the_past_dials_the_now_due_callees(sim: Any, clock: Clock) -> None:
    register(clock, timedelta(hours=2))
    add(EVENT, [mobile(1)], beforeMinutes=30)
    register(clock, timedelta(minutes=5))
    assert states() == {"+8618100000001": "dialled"}
    assert len(call_adds(sim)) == 1 and schedules_of(EVENT) == []


def test_cancelled_meeting_dials_nobody(sim: Any, clock: Clock) -> None:
    meeting = register(clock, timedelta(hours=2))
    add(EVENT, [mobile(1), mobile(2)])
    assert len(schedules_of(EVENT)) == 1
    assert call("DELETE", f"/events/{EVENT}").status == 204
    assert schedules_of(EVENT) == []
    view = call("GET", f"/events/{EVENT}").json
    assert view["status"] == "cancelled" and view["schedules"] == []
    due = datetime.fromisoformat(meeting["startTime"]) - timedelta(minutes=30)
    clock.now = due
    result = fire({"kind": "conference-dial", "eventId": EVENT, "revision": 1, "dueAt": due.isoformat()})
    assert result["dialled"] == 0 and result["reason"] == "meeting cancelled"
    assert call_adds(sim) == [] and set(states().values()) == {"pending"}
    assert add(EVENT, [mobile(3)]).status == 409


# ---------------------------------------------------------------- firing


def _due_firing(clock: Clock, meeting: dict[str, Any], minutes: int = 30) -> dict[str, Any]:
    due = datetime.fromisoformat(meeting["startTime"]) - timedelta(minutes=minutes)
    clock.now = due
    return {"kind": "conference-dial", "eventId": EVENT, "revision": meeting["revision"], "dueAt": due.isoformat()}


def test_firing_dials_the_due_callees_and_a_duplicate_firing_dials_nobody_twice(sim: Any, clock: Clock) -> None:
    meeting = register(clock, timedelta(hours=2))
    add(EVENT, [mobile(1), mobile(2)])
    add(EVENT, [mobile(3)], beforeMinutes=5)  # due later: not in this firing
    payload = _due_firing(clock, meeting)
    first = fire(payload)
    assert first["dialled"] == 2, first
    second = fire(payload)
    assert second["dialled"] == 0
    adds = call_adds(sim)
    assert len(adds) == 1
    assert sorted(c["mobile"] for c in adds[0].json()["callList"]) == ["18100000001", "18100000002"]
    assert adds[0].json()["beforeMinutes"] == 30
    assert states() == {"+8618100000001": "dialled", "+8618100000002": "dialled", "+8618100000003": "pending"}
    view = call("GET", f"/events/{EVENT}").json
    assert [s["dueAt"] for s in view["schedules"]] == [
        (datetime.fromisoformat(meeting["startTime"]) - timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    ]


def test_late_firing_dials_until_the_meeting_ends_then_marks_missed(sim: Any, clock: Clock) -> None:
    meeting = register(clock, timedelta(hours=2), durationMinutes=60)
    add(EVENT, [mobile(1)])
    payload = _due_firing(clock, meeting)
    clock.now = datetime.fromisoformat(meeting["startTime"]) + timedelta(minutes=30)  # meeting running
    assert fire(payload)["dialled"] == 1
    assert call_adds(sim)[0].json()["beforeMinutes"] == 0

    other = register(clock, timedelta(hours=2), event_id="777", durationMinutes=60)
    add("777", [mobile(2)])
    payload = {**_due_firing(clock, other), "eventId": "777"}
    clock.now = datetime.fromisoformat(other["startTime"]) + timedelta(minutes=61)  # ended
    result = fire(payload)
    assert result["dialled"] == 0 and result["missed"] == 1
    assert states("777") == {"+8618100000002": "missed"}
    assert len(call_adds(sim)) == 1


def test_1000_callees_are_dialled_in_provider_sized_batches(sim: Any, clock: Clock) -> None:
    meeting = register(clock, timedelta(hours=2))
    answer = add(EVENT, [mobile(i) for i in range(1000)])
    assert answer.status == 200 and len(answer.json["data"]["scheduledCall"]["successData"]) == 1000
    result = fire(_due_firing(clock, meeting))
    assert result["dialled"] == 1000, result
    batch = quanshi_module.QuanshiProvider.limits.batch_size
    adds = call_adds(sim)
    assert len(adds) == math.ceil(1000 / batch)
    assert all(len(r.json()["callList"]) <= batch for r in adds)
    assert sum(len(r.json()["callList"]) for r in adds) == 1000
    assert set(states().values()) == {"dialled"}


def test_provider_failure_gives_the_callees_back_for_the_retry(sim: Any, clock: Clock) -> None:
    meeting = register(clock, timedelta(hours=2))
    add(EVENT, [mobile(1)])
    payload = _due_firing(clock, meeting)
    sim.faults.fail_next = 10
    with pytest.raises(Exception):  # noqa: B017 - Scheduler retries whatever the handler raises
        fire(payload)
    sim.faults.fail_next = 0
    assert states() == {"+8618100000001": "pending"}
    assert fire(payload)["dialled"] == 1


# ---------------------------------------------------------------- Quanshi lifecycle pushes


def _push(kind: str, **extra: Any) -> TaskLifecycleEvent:
    return TaskLifecycleEvent(provider="quanshi", dedup_key=f"q:{kind}", kind=kind, provider_task_id=EVENT, **extra)


def _service(clock: Clock) -> conferences.ConferenceService:
    svc = conferences.default_service()
    svc.clock = clock
    return svc


def test_meetingbegin_dials_pending_at_once_and_meetingend_marks_the_rest_missed(sim: Any, clock: Clock) -> None:
    register(clock, timedelta(minutes=50))
    add(EVENT, [mobile(1)], beforeMinutes=10)
    clock.now += timedelta(minutes=45)
    summary = conferences.on_meetingbegin(_push("meetingbegin"), _service(clock))
    assert summary.dialled == 1 and states() == {"+8618100000001": "dialled"}
    add(EVENT, [mobile(2)], beforeMinutes=0)  # start still 5 minutes ahead: scheduled
    summary = conferences.on_meetingend(_push("meetingend"), _service(clock))
    assert summary.missed == 1
    assert states() == {"+8618100000001": "dialled", "+8618100000002": "missed"}
    view = call("GET", f"/events/{EVENT}").json
    assert view["status"] == "ended" and view["schedules"] == [] and schedules_of(EVENT) == []


def test_update_with_a_new_start_reschedules(sim: Any, clock: Clock) -> None:
    register(clock, timedelta(hours=2))
    add(EVENT, [mobile(1)], beforeMinutes=30)
    new_start = clock.now + timedelta(hours=4)
    summary = conferences.on_update(_push("update", start_time=new_start), _service(clock))
    assert summary.reason == "rescheduled"
    view = call("GET", f"/events/{EVENT}").json
    assert view["revision"] == 2
    assert [s["ScheduleExpression"] for s in schedules_of(EVENT)] == [at_of(new_start - timedelta(minutes=30))]
    assert conferences.on_update(_push("update", start_time=new_start), _service(clock)).reason == "nothing to change"


def test_meeting_pushes_reach_the_conference_service_through_the_result_processor(sim: Any, clock: Clock) -> None:
    from outcall import results
    from outcall.store import default_store

    register(clock, timedelta(minutes=50))
    add(EVENT, [mobile(1), mobile(2)], beforeMinutes=10)
    clock.now += timedelta(minutes=5)
    svc = _service(clock)
    begin = _push("meetingbegin")
    outcome = results.process_events(default_store(), [begin], lambda e: conferences.on_lifecycle(e, svc))
    assert outcome.lifecycle == 1
    assert states() == {"+8618100000001": "dialled", "+8618100000002": "dialled"}
    # the same push delivered again dials nobody twice and is kept once
    again = results.process_events(default_store(), [begin], lambda e: conferences.on_lifecycle(e, svc))
    assert again.lifecycle == 0
    assert len(call_adds(sim)) == 1


# ---------------------------------------------------------------- the past, and back


def _put(clock: Clock, start: timedelta, event_id: str = EVENT, **extra: Any) -> Any:
    return call(
        "PUT", f"/events/{event_id}", {"title": "weekly", "startTime": (clock.now + start).isoformat(), **extra}
    )


def test_a_change_that_puts_the_whole_meeting_in_the_past_needs_confirm_past(sim: Any, clock: Clock) -> None:
    meeting = register(clock, timedelta(hours=2))
    add(EVENT, [mobile(1), mobile(2)], beforeMinutes=30)
    before = call("GET", f"/events/{EVENT}").json

    # start three hours ago, two hours long: over an hour ago
    refused = _put(clock, -timedelta(hours=3), durationMinutes=120)
    assert refused.status == 422, refused.json
    assert refused.json["message"].startswith("startTime:") and "confirmPast: true" in refused.json["message"]
    assert call("GET", f"/events/{EVENT}").json == before  # nothing stored, nothing moved
    assert len(schedules_of(EVENT)) == 1 and call_adds(sim) == []
    assert _put(clock, -timedelta(hours=3), durationMinutes=120, confirmPast=False).status == 422

    # a new meeting that is already over is refused the same way, and not stored
    assert _put(clock, -timedelta(days=1), event_id="900").status == 422
    assert call("GET", "/events/900").status == 404

    # a start in the past is fine while the meeting still runs: its callees are dialled now
    running = _put(clock, -timedelta(minutes=30), event_id="901", durationMinutes=60)
    assert running.status == 201 and running.json["status"] == "started"
    # shortening it so that it is over is a change into the past too
    shorter = _put(clock, -timedelta(minutes=30), event_id="901", durationMinutes=20)
    assert shorter.status == 422 and "confirmPast" in shorter.json["message"]

    confirmed = _put(clock, -timedelta(hours=3), durationMinutes=120, confirmPast=True)
    assert confirmed.status == 200, confirmed.json
    view = confirmed.json
    assert view["revision"] == meeting["revision"] + 1 and view["status"] == "ended" and view["schedules"] == []
    assert {c["dialState"] for c in view["callees"]} == {"missed"}
    assert {c["lastResult"]["reason"] for c in view["callees"]} == {conferences.MISSED_MOVED}
    assert schedules_of(EVENT) == [] and call_adds(sim) == []

    # changing only the title of a meeting that is over needs no confirmation
    renamed = call("PUT", f"/events/{EVENT}", {"title": "renamed", "startTime": view["startTime"]})
    assert renamed.status == 200 and renamed.json["title"] == "renamed" and renamed.json["revision"] == view["revision"]


def test_moving_back_into_the_future_reschedules_the_callees_the_move_had_missed(sim: Any, clock: Clock) -> None:
    register(clock, timedelta(hours=2))
    add(EVENT, [mobile(1)], beforeMinutes=30)
    add(EVENT, [mobile(2)], beforeMinutes=10)
    assert _put(clock, -timedelta(hours=3), confirmPast=True).status == 200
    assert set(states().values()) == {"missed"}

    # back to 20 minutes from now: mobile 1 (30 minutes before) is due already, mobile 2 in 10 minutes
    back = _put(clock, timedelta(minutes=20))
    assert back.status == 200, back.json
    view = back.json
    start = datetime.fromisoformat(view["startTime"])
    assert view["status"] == "scheduled"
    assert states() == {"+8618100000001": "dialled", "+8618100000002": "pending"}
    pending = next(c for c in view["callees"] if c["e164"] == "+8618100000002")
    assert pending["lastResult"] == {**pending["lastResult"], "state": "pending", "reason": conferences.REVIVED}
    adds = call_adds(sim)
    assert len(adds) == 1 and [c["mobile"] for c in adds[0].json()["callList"]] == ["18100000001"]
    found = schedules_of(EVENT)
    assert [s["ScheduleExpression"] for s in found] == [at_of(start - timedelta(minutes=10))]
    assert json.loads(found[0]["Target"]["Input"])["revision"] == view["revision"]

    # that schedule firing dials the given-back callee
    clock.now = start - timedelta(minutes=10)
    payload = {"kind": "conference-dial", "eventId": EVENT, "revision": view["revision"]}
    assert fire({**payload, "dueAt": clock.now.isoformat()})["dialled"] == 1
    assert set(states().values()) == {"dialled"}


def test_callees_missed_because_the_meeting_ended_stay_missed_after_a_move(sim: Any, clock: Clock) -> None:
    meeting = register(clock, timedelta(hours=2), durationMinutes=60)
    add(EVENT, [mobile(1)])
    payload = _due_firing(clock, meeting)
    clock.now = datetime.fromisoformat(meeting["startTime"]) + timedelta(minutes=61)  # the schedule fired late
    assert fire(payload)["missed"] == 1
    moved = _put(clock, timedelta(days=1), durationMinutes=60)
    assert moved.status == 200 and moved.json["status"] == "scheduled"
    callee = moved.json["callees"][0]
    assert callee["dialState"] == "missed" and callee["lastResult"]["reason"] == conferences.MISSED_ENDED
    assert moved.json["schedules"] == [] and call_adds(sim) == []
    # (the schedule that fired is deleted by Scheduler itself, ActionAfterCompletion; none is new)
    assert [json.loads(s["Target"]["Input"])["revision"] for s in schedules_of(EVENT)] == [1]


# ---------------------------------------------------------------- scheduled -> started -> ended


def test_a_meeting_reads_as_started_then_ended_as_time_passes(sim: Any, clock: Clock) -> None:
    meeting = register(clock, timedelta(hours=1), durationMinutes=60)
    assert meeting["status"] == "scheduled"
    start = datetime.fromisoformat(meeting["startTime"])
    clock.now = start
    view = call("GET", f"/events/{EVENT}").json
    assert view["status"] == "started" and view["startedAt"] is None  # from time: no push came
    answer = add(EVENT, [mobile(1)], beforeMinutes=0)  # a started meeting still takes callees: dialled now
    assert answer.status == 200 and answer.json["data"]["callType"] == 2
    clock.now = start + timedelta(minutes=60)
    assert call("GET", f"/events/{EVENT}").json["status"] == "ended"
    refused = add(EVENT, [mobile(2)])
    assert refused.status == 409 and "ended" in refused.json["message"]
    assert sorted(states()) == ["+8618100000001"]  # the refused callee is not stored


def test_meetingbegin_and_meetingend_pushes_move_the_status(sim: Any, clock: Clock) -> None:
    register(clock, timedelta(minutes=50))
    add(EVENT, [mobile(1)], beforeMinutes=10)
    clock.now += timedelta(minutes=45)  # five minutes before the start: the host opened it early
    assert call("GET", f"/events/{EVENT}").json["status"] == "scheduled"
    conferences.on_meetingbegin(_push("meetingbegin"), _service(clock))
    view = call("GET", f"/events/{EVENT}").json
    assert view["status"] == "started" and view["startedAt"] == clock.now.isoformat().replace("+00:00", "Z")
    assert states() == {"+8618100000001": "dialled"}
    # a second meetingbegin changes nothing
    assert conferences.on_meetingbegin(_push("meetingbegin"), _service(clock)).dialled == 0
    assert call("GET", f"/events/{EVENT}").json["startedAt"] == view["startedAt"]
    clock.now += timedelta(minutes=20)
    conferences.on_meetingend(_push("meetingend"), _service(clock))
    ended = call("GET", f"/events/{EVENT}").json
    assert ended["status"] == "ended" and ended["endedAt"] == clock.now.isoformat().replace("+00:00", "Z")
    assert conferences.on_meetingbegin(_push("meetingbegin"), _service(clock)).reason == "meeting ended"
    assert call("GET", f"/events/{EVENT}").json["status"] == "ended"
    assert add(EVENT, [mobile(2)]).status == 409

"""Compliance against moto with recording providers and a controlled clock: do-not-call lists through the
API, at import and at every release; withdrawal of listed contacts; provider opt-outs; calling windows and
frequency caps in the dispatcher, across tasks of different provider accounts."""

from __future__ import annotations

import copy
import json
import random
import threading
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from outcall.calllists import process_records
from outcall.compliance import Gate, forecast
from outcall.contacts import add_rows
from outcall.dispatch import Dispatcher
from outcall.dnc import opt_out_intents
from outcall.engine import build_engine
from outcall.errors import NotSupported, ProviderError, Unprocessable
from outcall.models import CallEvent, CapRule, Task, TaskSettings
from outcall.results import record_event
from outcall.store import Store, utcnow
from outcall.store.hopper import release_key
from outcall.tasks import CreateTaskRequest, TaskService

from tests.helpers import FakeContext, load_event
from tests.integration.test_conferences import clock as conference_clock  # noqa: F401  (its fixtures)
from tests.integration.test_conferences import sim as quanshi_sim  # noqa: F401
from tests.integration.test_dispatch import Clock, RecordingProvider
from tests.integration.test_tasks import call

CAPS = [CapRule(attempts=3, window_hours=24), CapRule(attempts=10, window_hours=720)]
CN = [f"+8613900{i:06d}" for i in range(40)]
NY = [f"+1212555{i:04d}" for i in range(20)]


def _a_january_tuesday() -> date:
    """A Tuesday in January after every contact the tests import is due (New York on standard time)."""
    day = date(utcnow().year + 2, 1, 1)
    while day.isoweekday() != 2:
        day += timedelta(days=1)
    return day


DAY = _a_january_tuesday()


def utc(day: int, hour: int, minute: int = 0) -> datetime:
    """`day` days after DAY, at hour:minute UTC."""
    return datetime.combine(DAY + timedelta(days=day), time(hour, minute), tzinfo=UTC)


# 02:00 UTC: 10:00 in Beijing, 21:00 the evening before in New York
OPEN_CN_CLOSED_US = utc(0, 2)


class OtherAccount(RecordingProvider):
    """A second provider account: its own dispatch lease, so its dispatcher runs beside nxcloud's."""

    key = "airudder"


class NoWithdraw(RecordingProvider):
    def cancel_contacts(self, provider_task_id: str, refs: Sequence[str]) -> list[str]:
        raise NotSupported(self.key, "cancel contacts")


@pytest.fixture
def store(aws: Any) -> Store:
    return Store()


def fixed_clock(at: datetime = OPEN_CN_CLOSED_US) -> Clock:
    clock = Clock()
    clock.now = at
    return clock


def make_task(store: Store, provider: RecordingProvider, numbers: Sequence[str], **settings: Any) -> Task:
    now = utcnow()
    task = Task(
        task_id=f"tsk_{random.randrange(1 << 40):x}",
        name="compliance",
        provider=provider.key,  # type: ignore[arg-type]
        type="auto",
        status="ready",
        settings=TaskSettings.model_validate({"hopperLevel": 100, **settings}),
        created_at=now,
        updated_at=now,
    )
    assert store.create_task(task, max_tasks=100)
    task = store.finish_task(task.task_id, task.version, {"providerTaskId": "ptask-1"})
    rows = list(process_records([{"mobile": e} for e in numbers], default_region="CN"))
    added = add_rows(store, task, "imp_1", rows, reserved=len(numbers))
    store.add_contact_counts(
        task.task_id, {k.split(".", 1)[1]: v for k, v in added.task_counts.items() if k.startswith("contacts.")}
    )
    return task


def engine(store: Store, provider: RecordingProvider, clock: Clock) -> tuple[TaskService, Dispatcher]:
    built = build_engine(store, lambda key: provider, clock=clock, gate=lambda s, t: Gate(s, t, CAPS))
    return built.tasks, built.dispatcher


def end_calls(
    store: Store, task: Task, provider: RecordingProvider, status: str, clock: Clock, only: set[str] | None = None
) -> int:
    from outcall.dispatch import on_call_event

    ended = 0
    for spec in list(provider.held.values()):
        if only is not None and spec.e164 not in only:
            continue
        contact = store.get_contact(task.task_id, spec.e164)
        if contact is None or contact["state"] != "released" or contact.get("releaseKey") != spec.release_key:
            continue
        event = CallEvent(
            provider=provider.key,  # type: ignore[arg-type]
            provider_task_id="ptask-1",
            provider_call_id=f"call-{spec.release_key}",
            provider_contact_ref=spec.release_key,
            phone=spec.e164,
            status=status,  # type: ignore[arg-type]
            started_at=clock.now,
            dedup_key=f"d-{spec.release_key}",
        )
        ended += on_call_event(store, store.get_task(task.task_id) or task, event, f"r-{spec.release_key}", clock.now)
    return ended


def contacts_call(method: str, path: str, *, query: str = "") -> Any:
    """The contact_import function's routes (GET /tasks/{taskId}/contacts), as test_tasks.call does."""
    import contact_import_handler as handler

    event = copy.deepcopy(load_event("contact_import_get_import"))
    event["routeKey"] = f"{method} {path}"
    event["rawPath"] = path
    event["rawQueryString"] = query
    event["queryStringParameters"] = dict(p.split("=", 1) for p in query.split("&")) if query else None
    event["requestContext"]["http"]["method"] = method
    event["requestContext"]["http"]["path"] = path
    event["pathParameters"] = {}
    answer = handler.lambda_handler(event, FakeContext())

    class Answer:
        status = answer["statusCode"]
        json = json.loads(answer["body"]) if answer.get("body") else None

    return Answer


def sent_numbers(provider: RecordingProvider) -> list[str]:
    return [c.e164 for call_ in provider.calls for c in call_]


# ---------------------------------------------------------------- do-not-call lists through the API


def test_account_list_add_check_page_and_delete(aws: Any) -> None:
    expires = (utcnow() + timedelta(days=30)).isoformat()
    answer = call(
        "POST", "/dnc", {"numbers": ["+86 139 0000 0001", "13900000002"], "reason": "asked", "expiresAt": expires}
    )
    assert answer.status == 201
    assert answer.json["scope"] == "account" and answer.json["added"] == 2
    assert answer.json["numbers"] == ["+8613900000001", "+8613900000002"]
    found = call("GET", "/dnc/+8613900000001")
    assert found.status == 200
    assert found.json["source"] == "api" and found.json["reason"] == "asked" and found.json["scope"] == "account"
    assert found.json["expiresAt"][:16] == expires[:16]
    assert call("GET", "/dnc/8613900000002").status == 200  # the + may be left out in a path

    call("POST", "/dnc", {"numbers": [f"+861390000{i:04d}" for i in range(10, 15)]})
    first = call("GET", "/dnc", query="limit=4")
    assert first.status == 200 and len(first.json["items"]) == 4 and first.json["nextToken"]
    rest = call("GET", "/dnc", query=f"limit=4&nextToken={first.json['nextToken']}")
    assert len(rest.json["items"]) == 3 and rest.json.get("nextToken") is None

    assert call("DELETE", "/dnc/+8613900000001").status == 204
    assert call("GET", "/dnc/+8613900000001").status == 404
    assert call("DELETE", "/dnc/+8613900000001").status == 404


def test_bad_numbers_and_bad_requests_are_422s_that_store_nothing(aws: Any) -> None:
    bad = call("POST", "/dnc", {"numbers": ["+8613900000001", "12", "call me"]})
    assert bad.status == 422
    assert [e["field"] for e in bad.json["errors"]] == ["numbers[1]", "numbers[2]"]
    assert call("GET", "/dnc").json["items"] == []
    too_many = call("POST", "/dnc", {"numbers": [f"+86139{i:08d}" for i in range(1001)]})
    assert too_many.status == 422 and "numbers" in too_many.json["message"]
    past = call("POST", "/dnc", {"numbers": ["+8613900000001"], "expiresAt": "2020-01-01T00:00:00+00:00"})
    assert past.status == 422 and "expiresAt" in past.json["message"]
    assert call("GET", "/dnc/not-a-number").status == 422
    assert call("POST", "/tasks/tsk_missing/dnc", {"numbers": ["+8613900000001"]}).status == 404
    assert call("GET", "/dnc").json["items"] == []


def test_an_expired_entry_is_ignored_before_ttl_deletes_it(store: Store) -> None:
    past = int((utcnow() - timedelta(minutes=1)).timestamp())
    store.put_dnc("ACCOUNT", [{"e164": "+8613900000001", "source": "api", "createdAt": "x", "expiresAt": past}])
    assert store.table.get_item(Key={"pk": "DNC#ACCOUNT", "sk": "NUMBER#+8613900000001"}).get("Item")
    assert call("GET", "/dnc/+8613900000001").status == 404
    assert call("GET", "/dnc").json["items"] == []
    assert store.listed_numbers(["+8613900000001"], None, utcnow()) == {}


def test_task_lists_are_the_tasks_own(store: Store) -> None:
    task = make_task(store, RecordingProvider(), CN[:1])
    assert call("POST", f"/tasks/{task.task_id}/dnc", {"numbers": [CN[5]]}).status == 201
    entry = call("GET", f"/tasks/{task.task_id}/dnc/{CN[5]}")
    assert entry.status == 200 and entry.json["scope"] == "task" and entry.json["taskId"] == task.task_id
    assert call("GET", f"/dnc/{CN[5]}").status == 404  # not on the account's list
    assert [i["e164"] for i in call("GET", f"/tasks/{task.task_id}/dnc").json["items"]] == [CN[5]]
    assert call("DELETE", f"/tasks/{task.task_id}/dnc/{CN[5]}").status == 204


# ---------------------------------------------------------------- at import


def test_listed_numbers_are_refused_at_import_with_reason_dnc(store: Store) -> None:
    provider = RecordingProvider()
    task = make_task(store, provider, [])
    store.put_dnc("ACCOUNT", [{"e164": CN[1], "source": "api", "createdAt": "x"}])
    store.put_dnc(f"TASK#{task.task_id}", [{"e164": CN[2], "source": "api", "createdAt": "x"}])
    rows = list(process_records([{"mobile": e} for e in CN[:4]], default_region="CN"))
    added = add_rows(store, task, "imp_2", rows, reserved=4)
    assert [(r.status, r.reason) for r in rows] == [
        ("accepted", None),
        ("invalid", "dnc"),
        ("invalid", "dnc"),
        ("accepted", None),
    ]
    assert "account's do-not-call list" in (rows[1].message or "")
    assert "task's do-not-call list" in (rows[2].message or "")
    assert added.reasons == {"dnc": 2} and added.job_counts["invalid"] == 2 and added.unused == 2
    assert store.get_contact(task.task_id, CN[1]) is None and store.get_contact(task.task_id, CN[0]) is not None


def test_numbers_are_looked_up_only_on_lists_that_have_held_an_entry(store: Store) -> None:
    asked: list[list[str]] = []

    def count(params: dict[str, Any], **_: Any) -> None:
        asked.append([key["sk"]["S"] for request in params["RequestItems"].values() for key in request["Keys"]])

    store.wire.meta.events.register("provide-client-params.dynamodb.BatchGetItem", count)
    try:
        assert store.listed_numbers(CN, "tsk_quiet", utcnow()) == {}
        assert asked == [["DNCLIST", "DNCLIST"]]  # the two lists' markers, no number
        store.put_dnc("TASK#tsk_quiet", [{"e164": CN[3], "source": "api", "createdAt": "x"}])
        asked.clear()
        listed = store.listed_numbers(CN, "tsk_quiet", utcnow())
        assert set(listed) == {CN[3]} and listed[CN[3]]["scope"] == "task"
        looked_up = [sk for request in asked[1:] for sk in request]
        assert sorted(looked_up) == sorted(f"NUMBER#{n}" for n in CN)  # the task's list alone
        assert store.listed_numbers(CN, "tsk_other", utcnow()) == {}  # another task's list is its own
        store.delete_dnc("TASK#tsk_quiet", CN[3])
        assert store.listed_numbers(CN, "tsk_quiet", utcnow()) == {}  # emptied: looked up, found none
    finally:
        store.wire.meta.events.unregister("provide-client-params.dynamodb.BatchGetItem", count)


def test_a_lists_marker_is_written_before_its_first_entry(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken(Exception):
        pass

    def fail(*args: Any, **kwargs: Any) -> None:
        raise Broken

    monkeypatch.setattr(store.table, "batch_writer", fail)  # the entries never get written
    with pytest.raises(Broken):
        store.put_dnc("ACCOUNT", [{"e164": CN[1], "source": "api", "createdAt": "x"}])
    assert store.table.get_item(Key={"pk": "DNCLIST#ACCOUNT", "sk": "DNCLIST"}).get("Item")


# ---------------------------------------------------------------- at release


def test_a_number_listed_after_queueing_is_never_released(store: Store) -> None:
    provider, clock = RecordingProvider(), fixed_clock()
    task = make_task(store, provider, CN[:6])
    store.put_dnc("ACCOUNT", [{"e164": CN[0], "source": "api", "createdAt": "x"}])
    store.put_dnc(f"TASK#{task.task_id}", [{"e164": CN[1], "source": "api", "createdAt": "x"}])
    svc, _dispatcher = engine(store, provider, clock)
    svc.transition(task.task_id, "start")
    assert sorted(sent_numbers(provider)) == CN[2:6]
    for e164, scope in ((CN[0], "account"), (CN[1], "task")):
        contact = store.get_contact(task.task_id, e164)
        assert contact is not None and contact["state"] == "skipped" and contact["skipReason"] == "dnc"
        assert contact["attempts"] == 0  # never released
        assert contact["compliance"]["rule"] == "dnc" and contact["compliance"]["dncList"] == scope
        assert contact["compliance"]["dncCheckedAt"] == clock.now.isoformat()
    counts = store.get_task_with_counts(task.task_id)[1]  # type: ignore[index]
    assert counts["contacts"]["skipped"] == 2 and counts["contacts"]["released"] == 4
    page = contacts_call("GET", f"/tasks/{task.task_id}/contacts", query="limit=10")
    shown = {c["e164"]: c for c in page.json["items"]}
    assert shown[CN[0]]["compliance"]["decision"] == "skipped" and shown[CN[0]]["skipReason"] == "dnc"
    assert shown[CN[2]]["compliance"]["decision"] == "released"
    assert shown[CN[2]]["complianceLog"][0]["dncCheckedAt"] == clock.now.isoformat()


def test_a_contact_listed_after_its_release_is_withdrawn_where_the_provider_can(store: Store) -> None:
    provider, clock = RecordingProvider(), fixed_clock()
    task = make_task(store, provider, CN[:3])
    svc, dispatcher = engine(store, provider, clock)
    svc.transition(task.task_id, "start")
    assert len(provider.held) == 3
    store.put_dnc("ACCOUNT", [{"e164": CN[0], "source": "provider-opt-out", "createdAt": "x"}])
    out = dispatcher.run(task.task_id)
    assert out.dnc == 1
    contact = store.get_contact(task.task_id, CN[0])
    assert contact is not None and contact["state"] == "skipped" and contact["skipReason"] == "dnc"
    assert provider.canceled == [release_key(task.task_id, CN[0], 1)]
    assert store.get_contact(task.task_id, CN[1])["state"] == "released"  # type: ignore[index]


def test_a_failing_withdrawal_is_tried_again_and_does_not_stop_releases(store: Store) -> None:
    class Flaky(RecordingProvider):
        def cancel_contacts(self, provider_task_id: str, refs: Sequence[str]) -> list[str]:
            if not self.canceled:
                self.canceled.append("<failed>")
                raise ProviderError("503", provider=self.key, retryable=True)
            return super().cancel_contacts(provider_task_id, refs)

    provider, clock = Flaky(), fixed_clock()
    task = make_task(store, provider, CN[:4], hopperLevel=2)
    svc, dispatcher = engine(store, provider, clock)
    svc.transition(task.task_id, "start")
    assert sorted(sent_numbers(provider)) == CN[:2]
    store.put_dnc("ACCOUNT", [{"e164": CN[0], "source": "api", "createdAt": "x"}])
    assert end_calls(store, task, provider, "completed", clock, only={CN[1]}) == 1
    out = dispatcher.run(task.task_id)  # the withdrawal fails: asked again next time, CN[2] released meanwhile
    assert out.dnc == 0 and out.errors == [] and out.released == 1
    assert store.get_contact(task.task_id, CN[0])["state"] == "released"  # type: ignore[index]
    out = dispatcher.run(task.task_id)
    assert out.dnc == 1 and provider.canceled[1:] == [release_key(task.task_id, CN[0], 1)]
    assert store.get_contact(task.task_id, CN[0])["state"] == "skipped"  # type: ignore[index]
    assert out.released == 1 and sorted(sent_numbers(provider)) == CN[:4]


def test_a_provider_that_cannot_withdraw_leaves_a_note_and_is_asked_once(store: Store) -> None:
    provider, clock = NoWithdraw(), fixed_clock()
    policy = {"maxAttempts": 3, "outcomes": {"no-answer": {"attempts": 2, "delayMinutes": 5}}}
    task = make_task(store, provider, CN[:2], retryPolicy=policy)
    svc, dispatcher = engine(store, provider, clock)
    svc.transition(task.task_id, "start")
    store.put_dnc("ACCOUNT", [{"e164": CN[0], "source": "api", "createdAt": "x"}])
    assert dispatcher.run(task.task_id).dnc == 0
    contact = store.get_contact(task.task_id, CN[0])
    assert contact is not None and contact["state"] == "released"
    assert "cannot withdraw" in contact["complianceNote"]
    calls_before = len(provider.calls)
    dispatcher.run(task.task_id)
    assert len(provider.calls) == calls_before
    # its call ends no-answer and the policy retries it: the retry is never released
    assert end_calls(store, task, provider, "no-answer", clock) == 2
    clock.advance(minutes=6)
    out = dispatcher.run(task.task_id)
    assert out.released == 1 and out.dnc == 1
    assert sent_numbers(provider).count(CN[0]) == 1 and sent_numbers(provider).count(CN[1]) == 2
    contact = store.get_contact(task.task_id, CN[0])
    assert contact is not None and contact["state"] == "skipped" and contact["skipReason"] == "dnc"


def test_a_provider_opt_out_lists_the_number_for_the_account(store: Store) -> None:
    assert opt_out_intents({"optOutIntents": ["Opt_Out", "stop"]}) == {"opt_out", "stop"}
    assert opt_out_intents({"optOutIntents": "opt_out, unsubscribe"}) == {"opt_out", "unsubscribe"}
    event = CallEvent(
        provider="nxcloud",
        provider_call_id="c1",
        phone=CN[7],
        status="completed",
        intents=["interested", "OPT_OUT"],
        dedup_key="d1",
    )
    record_event(store, event, opt_out_intents=frozenset({"opt_out"}))
    entry = store.get_dnc("ACCOUNT", CN[7], utcnow())
    assert entry is not None and entry["source"] == "provider-opt-out" and entry["reason"] == "nxcloud: OPT_OUT"
    other = event.model_copy(update={"phone": CN[8], "dedup_key": "d2", "provider_call_id": "c2"})
    record_event(store, other)  # no optOutIntents setting: nothing is listed
    assert store.get_dnc("ACCOUNT", CN[8], utcnow()) is None


def test_a_polled_result_with_the_providers_opt_out_intent_lists_the_number(store: Store) -> None:
    from outcall.providers.base import PollPage
    from outcall.results import poll_provider

    class Polled(RecordingProvider):
        def poll_results(self, cursor: str | None) -> PollPage:
            event = CallEvent(
                provider="nxcloud",
                provider_call_id="p1",
                phone=CN[9],
                status="completed",
                intents=["opt_out"],
                dedup_key="p1",
            )
            return PollPage(events=[event], cursor="c1", more=False)

    poll_provider(store, Polled({"optOutIntents": ["opt_out"]}))
    entry = store.get_dnc("ACCOUNT", CN[9], utcnow())
    assert entry is not None and entry["source"] == "provider-opt-out"


def test_listing_numbers_asks_running_tasks_for_a_dispatcher_run(store: Store) -> None:
    import os

    import boto3

    task = make_task(store, RecordingProvider(), CN[:1])
    store.finish_task(task.task_id, task.version, {"status": "running"})
    assert call("POST", "/dnc", {"numbers": [CN[0]]}).status == 201
    sqs = boto3.client("sqs", region_name="us-east-1")
    messages = sqs.receive_message(QueueUrl=os.environ["DISPATCH_QUEUE_URL"], MaxNumberOfMessages=10)["Messages"]
    bodies = [json.loads(m["Body"]) for m in messages]
    assert {"taskId": task.task_id, "reason": "dnc"} in bodies


# ---------------------------------------------------------------- windows


def test_a_callee_outside_its_window_waits_for_the_opening_without_blocking_others(store: Store) -> None:
    provider, clock = RecordingProvider(), fixed_clock()
    task = make_task(store, provider, NY[:3] + CN[:3], compliance={})
    svc, dispatcher = engine(store, provider, clock)
    svc.transition(task.task_id, "start")
    assert sorted(sent_numbers(provider)) == CN[:3]  # New York is at 21:00: closed
    contact = store.get_contact(task.task_id, NY[0])
    assert contact is not None and contact["state"] == "queued" and contact["attempts"] == 0
    opening = utc(0, 13)  # 08:00 in New York
    assert contact["dueAt"] == opening.isoformat()
    audit = contact["compliance"]
    assert audit["decision"] == "deferred" and audit["rule"] == "window" and audit["zones"] == ["America/New_York"]
    assert audit["hours"] == "preset US" and audit["dueAt"] == opening.isoformat()
    assert store.next_due(task.task_id) == opening.isoformat()
    clock.now = opening - timedelta(minutes=1)
    assert dispatcher.run(task.task_id).released == 0
    clock.now = opening
    out = dispatcher.run(task.task_id)
    assert out.released == 3
    released = store.get_contact(task.task_id, NY[0])
    assert released is not None and released["state"] == "released"
    assert [d["decision"] for d in released["complianceLog"]] == ["deferred", "released"]
    assert released["compliance"]["openUntil"] == utc(1, 1, 50).isoformat()


def test_a_task_may_not_widen_a_preset(store: Store) -> None:
    provider = RecordingProvider()
    svc = TaskService(store, lambda key: provider)
    wide = {"compliance": {"window": {"regions": {"US": [{"start": "07:00", "end": "21:00"}]}}}}
    with pytest.raises(Unprocessable) as caught:
        svc.create(CreateTaskRequest.model_validate({"name": "x", "provider": "nxcloud", "settings": wide}))
    assert caught.value.details[0]["field"] == "settings.compliance.window.regions.US[0]"
    loose = {"compliance": {"caps": [{"attempts": 9, "windowHours": 24}]}}
    with pytest.raises(Unprocessable) as caught:
        svc.create(CreateTaskRequest.model_validate({"name": "x", "provider": "nxcloud", "settings": loose}))
    assert caught.value.details[0]["field"] == "settings.compliance.caps[0].attempts"
    assert store.list_tasks(limit=10)[0] == []  # nothing stored


# ---------------------------------------------------------------- caps


def test_caps_hold_across_tasks_of_different_provider_accounts_running_at_once(store: Store) -> None:
    clock = fixed_clock()
    one, two = RecordingProvider(), OtherAccount()
    narrow = {"compliance": {"caps": [{"attempts": 1, "windowHours": 24}]}}
    first, second = make_task(store, one, CN[:30], **narrow), make_task(store, two, CN[:30], **narrow)
    _, d1 = engine(store, one, clock)
    _, d2 = engine(store, two, clock)
    for task in (first, second):
        store.finish_task(task.task_id, store.get_task(task.task_id).version, {"status": "running"})  # type: ignore[union-attr]
    threads = [threading.Thread(target=d.run, args=(t.task_id,)) for d, t in ((d1, first), (d2, second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    released = sent_numbers(one) + sent_numbers(two)
    assert sorted(released) == sorted(CN[:30])  # each number once over both accounts
    for e164 in CN[:30]:
        log = store.attempt_logs([e164])[e164]
        assert len(log) == 1
        waiting = [store.get_contact(t.task_id, e164) for t in (first, second)]
        queued = [c for c in waiting if c and c["state"] == "queued"]
        assert len(queued) == 1 and queued[0]["compliance"]["rule"] == "cap"
        frees = datetime.fromisoformat(queued[0]["dueAt"])
        assert timedelta(hours=24) < frees - clock.now <= timedelta(hours=24, seconds=2)


def test_failed_and_unanswered_attempts_count_and_a_refused_batch_gives_its_attempt_back(store: Store) -> None:
    provider, clock = RecordingProvider(), fixed_clock()
    policy = {"maxAttempts": 5, "outcomes": {"failed": {"attempts": 5, "delayMinutes": 5}}}
    task = make_task(store, provider, CN[:1], compliance={}, retryPolicy=policy)
    svc, dispatcher = engine(store, provider, clock)
    provider.fail_next = [ProviderError("bad caller id", provider="nxcloud", retryable=False)]
    svc.transition(task.task_id, "start")
    assert store.attempt_logs([CN[0]]) == {CN[0]: {}}  # refused as a batch: not an attempt
    for _ in range(3):
        clock.advance(minutes=6)
        assert dispatcher.run(task.task_id).released == 1
        assert end_calls(store, task, provider, "failed", clock) == 1
    clock.advance(minutes=6)
    out = dispatcher.run(task.task_id)
    assert out.released == 0 and out.deferred == 1  # 3 per 24 h
    contact = store.get_contact(task.task_id, CN[0])
    assert contact is not None and contact["compliance"]["caps"] == {"3/24h": 3, "10/720h": 3}
    assert len(store.attempt_logs([CN[0]])[CN[0]]) == 3


# ---------------------------------------------------------------- forecast


def test_forecast_counts_callable_later_and_skipped(store: Store) -> None:
    provider = RecordingProvider()
    stop = utc(0, 12)  # before New York opens
    task = make_task(store, provider, CN[:4] + NY[:3], compliance={}, autoStopAt=stop.isoformat())
    store.put_dnc("ACCOUNT", [{"e164": CN[0], "source": "api", "createdAt": "x"}])
    found = forecast(store, task.task_id, OPEN_CN_CLOSED_US, CAPS)
    assert found.queued == 7 and found.callable_now == 3
    assert found.skipped == {"dnc": 1, "cap": 0, "window": 3}
    # 06:30 in Beijing, 17:30 in New York
    later = forecast(store, task.task_id, utc(-1, 22, 30), CAPS)
    assert later.callable_now == 3 and later.skipped == {"dnc": 1, "cap": 0, "window": 0}
    assert [(h.hour.hour, h.contacts) for h in later.later] == [(0, 3)]
    assert later.later[0].local_hour.startswith(f"{DAY.isoformat()}T08:00")
    answer = call("GET", f"/tasks/{task.task_id}/forecast")
    assert answer.status == 200 and answer.json["queued"] == 7 and answer.json["skipped"]["dnc"] == 1


# ---------------------------------------------------------------- conference callees


def test_a_listed_conference_callee_is_not_dialled(quanshi_sim: Any, conference_clock: Any) -> None:  # noqa: F811
    from tests.integration.test_conferences import EVENT, add, call_adds, mobile, register, states

    sim = quanshi_sim
    register(conference_clock, timedelta(minutes=10))
    sim.create_event(int(EVENT), start_in=600)
    Store().put_dnc("ACCOUNT", [{"e164": "+8618100000002", "source": "api", "createdAt": "x"}])
    answer = add(EVENT, [mobile(1), mobile(2)], beforeMinutes=30)
    assert answer.status == 200, answer.json
    assert [c["mobile"] for c in call_adds(sim)[0].json()["callList"]] == ["18100000001"]
    assert states() == {"+8618100000001": "dialled", "+8618100000002": "failed"}
    failed = answer.json["data"]["realTimeCall"]["failedData"]
    assert [f["number"] for f in failed] == ["18100000002"]


def test_meetings_with_compliance_hold_callees_to_windows_and_caps(quanshi_sim: Any, conference_clock: Any) -> None:  # noqa: F811
    from tests.integration.test_conferences import add, mobile, register, states

    sim = quanshi_sim

    def meeting(event_id: str, at: datetime, compliance: bool) -> dict[str, str]:
        conference_clock.now = at
        register(conference_clock, timedelta(minutes=10), event_id=event_id, compliance=compliance)
        sim.create_event(int(event_id), start_in=600)
        assert add(event_id, [mobile(1)], beforeMinutes=30).status == 200
        return states(event_id)

    number = "+8618100000001"
    night = utc(0, 14, 30)  # 22:30 in Beijing
    assert meeting("700001", night, compliance=False) == {number: "dialled"}  # the default: off
    assert meeting("700002", night, compliance=True) == {number: "failed"}
    from tests.integration.test_conferences import call as conference_call

    reason = conference_call("GET", "/events/700002").json["callees"][0]["lastResult"]["reason"]
    assert reason.startswith("window: closed at the callee (Asia/Shanghai)")
    morning = utc(1, 2)  # 10:00 in Beijing
    assert [meeting(f"70001{i}", morning + timedelta(minutes=i), True)[number] for i in range(4)] == [
        "dialled",
        "dialled",
        "dialled",
        "failed",  # 3 per 24 h: meetings with compliance count their dials
    ]
    reason = conference_call("GET", "/events/700013").json["callees"][0]["lastResult"]["reason"]
    assert reason.startswith("cap: ")

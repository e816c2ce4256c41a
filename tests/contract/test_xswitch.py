"""Contract tests: outcall.providers.xswitch against the XSwitch simulator over real HTTP."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from outcall.errors import NotSupported, ProviderError, Unprocessable
from outcall.models import ContactSpec, RetryStrategy
from outcall.providers import provider_class
from outcall.providers.base import TaskSpec
from outcall.providers.xswitch import PROVIDER as XSwitchProvider

from local.simulators.base import Reply
from local.simulators.xswitch import SIMULATOR as XSwitchSimulator

CREDENTIALS = {"login": "admin", "password": "s3cret-pw"}
FAST = {"retries": 2, "backoffFactor": 0.01, "backoffMax": 0.05, "backoffJitter": 0.0, "readTimeout": 2}


@pytest.fixture
def sim():
    simulator = XSwitchSimulator(port=0, settings=dict(CREDENTIALS)).start()
    simulator.faults.retry_after = 0
    simulator.dialing.ring_seconds = 0.01
    simulator.dialing.talk_seconds = 0.01
    yield simulator
    simulator.stop()


def make_provider(sim, **extra: Any) -> XSwitchProvider:
    return XSwitchProvider({"baseUrl": sim.url, **CREDENTIALS, **FAST, **extra})


@pytest.fixture
def provider(sim):
    return make_provider(sim)


def contacts(n: int, start: int = 0) -> list[ContactSpec]:
    return [ContactSpec(e164=f"+861380000{start + i:04d}", external_id=f"c{start + i}") for i in range(n)]


def api_requests(sim, method: str | None = None, path: str | None = None):
    return [r for r in sim.journal if (method is None or r.method == method) and (path is None or r.path == path)]


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


# ---------------------------------------------------------------- registry and capabilities


def test_registry_and_declared_capabilities():
    assert provider_class("xswitch") is XSwitchProvider
    assert XSwitchProvider.capabilities.polling and not XSwitchProvider.capabilities.webhooks
    assert not XSwitchProvider.capabilities.pause


def test_no_pause_and_no_webhooks(provider):
    with pytest.raises(NotSupported):
        provider.pause_task("1")
    with pytest.raises(NotSupported):
        provider.verify_webhook({}, b"{}")
    with pytest.raises(NotSupported):
        provider.parse_webhook({}, b"{}")


# ---------------------------------------------------------------- auth


def test_login_once_then_token_header_on_every_call(sim, provider):
    provider.create_task(TaskSpec(name="t1"))
    provider.list_tasks()
    logins = api_requests(sim, "POST", "/api/sessions")
    assert len(logins) == 1
    assert logins[0].json() == CREDENTIALS
    token = sim.tokens.copy().pop()
    others = [r for r in sim.journal if r.path != "/api/sessions"]
    assert others and all(r.headers.get("X-XTRA-AUTH-ID") == token for r in others)


def test_dev_key_login(sim):
    sim.settings["devKey"] = "dk-123"
    provider = XSwitchProvider({"baseUrl": sim.url, "devKey": "dk-123", **FAST})
    provider.list_tasks()
    assert api_requests(sim, "POST", "/api/sessions")[0].json() == {"dev_key": "dk-123"}


def test_bad_login_is_403_and_never_retried(sim):
    provider = make_provider(sim, password="wrong")
    with pytest.raises(ProviderError) as info:
        provider.list_tasks()
    assert info.value.provider_code == 403
    assert not info.value.retryable
    assert len(api_requests(sim, "POST", "/api/sessions")) == 1
    assert api_requests(sim, "GET", "/api/out_call_tasks") == []


def test_five_bad_logins_lock_the_account(sim):
    bad = make_provider(sim, password="wrong")
    for _ in range(5):
        with pytest.raises(ProviderError):
            bad.list_tasks()
    good = make_provider(sim)
    with pytest.raises(ProviderError) as info:
        good.list_tasks()
    assert "locked" in info.value.message


def test_wrong_token_is_401(sim):
    import requests

    answer = requests.get(f"{sim.url}/api/out_call_tasks", headers={"X-XTRA-AUTH-ID": "forged"}, timeout=5)
    assert answer.status_code == 401
    assert requests.get(f"{sim.url}/api/out_call_tasks", timeout=5).status_code == 401


def test_expired_token_relogs_in_once(sim, provider):
    provider.list_tasks()
    sim.expire_tokens()
    assert provider.list_tasks() == []
    assert len(api_requests(sim, "POST", "/api/sessions")) == 2
    assert len(api_requests(sim, "GET", "/api/out_call_tasks")) == 3  # ok, 401, ok


def test_token_refused_after_relogin_is_an_error_not_a_loop(sim, provider, monkeypatch):
    monkeypatch.setattr(sim, "authed", lambda req: False)
    with pytest.raises(ProviderError) as info:
        provider.list_tasks()
    assert info.value.provider_code == 401
    assert len(api_requests(sim, "POST", "/api/sessions")) == 2
    assert len(api_requests(sim, "GET", "/api/out_call_tasks")) == 2


# ---------------------------------------------------------------- tasks


def test_create_task_maps_spec_to_the_four_update_kinds(sim, provider):
    spec = TaskSpec(
        name="spring-sale",
        caller_ids=["1000"],
        concurrency=3,
        ring_timeout_seconds=25,
        auto_start_at=datetime(2026, 5, 1, 1, 30, tzinfo=UTC),
        provider_options={
            "description": "promo",
            "dest_context": "context-1",
            "auto_record": 1,
            "group_confirm_key": "1",
            "group_confirm_read_timeout": "2",
            "group_confirm_file": {"media_id": 205, "media_path": "phrase:welcome_short@xui"},
            "action": "playback",
            "data": {"media_id": 205, "media_path": "phrase:welcome_short@xui"},
        },
    )
    task_id = provider.create_task(spec)
    assert task_id == "1"
    create = api_requests(sim, "POST", "/api/out_call_tasks")[0].json()
    assert create == {"group_name": "spring-sale", "description": "promo"}
    puts = [r.json() for r in api_requests(sim, "PUT", "/api/out_call_tasks/1")]
    assert puts[0] == {"group_name": "spring-sale", "description": "promo", "cid_number": "1000", "cid_name": "1000"}
    assert puts[1]["calling_time"] == 25 and puts[1]["max_concurrency"] == 3 and puts[1]["dest_context"] == "context-1"
    assert puts[1]["auto_dial"] == 1 and puts[1]["task_start_time"] == "2026-05-01 09:30:00"  # Asia/Shanghai
    assert puts[2]["group_confirm_key"] == "1"
    assert json.loads(puts[2]["group_confirm_file"])["media_id"] == 205
    assert puts[3]["action"] == "playback" and json.loads(puts[3]["data"])["media_id"] == 205
    detail = provider.get_task(task_id)
    assert detail["id"] == 1 and detail["calling_time"] == 25 and detail["max_concurrency"] == 3  # ints here
    listed = provider.list_tasks()
    assert listed[0]["id"] == "1" and listed[0]["calling_time"] == "25"  # strings in lists


def test_update_task_and_single_kind_updates(sim, provider):
    task_id = provider.create_task(TaskSpec(name="a"))
    provider.update_task(task_id, TaskSpec(name="b", concurrency=5))
    provider.update_confirmation(task_id, group_confirm_key="2", group_confirm_read_timeout="3")
    provider.update_answer_action(task_id, action="playback", data={"media_id": 1})
    detail = provider.get_task(task_id)
    assert detail["group_name"] == "b" and detail["max_concurrency"] == 5
    assert detail["group_confirm_key"] == "2" and detail["action"] == "playback"
    with pytest.raises(Unprocessable):
        provider.update_basic_info(task_id, calling_time=3)


def test_unsupported_settings_are_refused_before_any_call(sim, provider):
    with pytest.raises(Unprocessable):
        provider.create_task(TaskSpec(name="x", provider_options={"bogus": 1}))
    with pytest.raises(Unprocessable):
        provider.create_task(TaskSpec(name="x", retry=RetryStrategy(rounds=2)))
    assert api_requests(sim, "POST", "/api/out_call_tasks") == []


def test_start_stop_clone_delete(sim, provider):
    task_id = provider.create_task(TaskSpec(name="src"))
    provider.add_contacts(task_id, contacts(3))
    provider.start_task(task_id)
    start = [r.json() for r in api_requests(sim, "PUT", "/api/out_call_tasks")]
    assert start == [{"action": "start", "data": [task_id]}]
    assert provider.get_task(task_id)["status"] == "running"
    provider.stop_task(task_id)
    assert api_requests(sim, "PUT", "/api/out_call_tasks")[-1].json() == {"action": "stop", "data": [task_id]}
    assert provider.get_task(task_id)["status"] == "stop"

    clone_id = provider.clone_task(task_id, "copy", with_numbers=True)
    assert api_requests(sim, "POST", "/api/out_call_tasks/clone")[0].json() == {
        "group_name": "copy",
        "description": "",
        "is_clone_numbers": True,
        "id": int(task_id),
    }
    cloned = provider.list_numbers(clone_id)
    assert cloned["rowCount"] == 3 and {r["call_status"] for r in cloned["data"]} == {"init"}
    assert provider.list_numbers(provider.clone_task(task_id, "empty"))["rowCount"] == 0

    provider.delete_task(task_id)
    with pytest.raises(ProviderError) as info:
        provider.get_task(task_id)
    assert info.value.provider_code == 404 and not info.value.retryable


def test_import_list_paged_and_download(sim):
    provider = make_provider(sim, pageSize=2, dialFormat="national")
    task_id = provider.create_task(TaskSpec(name="nums"))
    outcomes = provider.add_contacts(task_id, contacts(5))
    assert [o.accepted for o in outcomes] == [True] * 5
    assert [o.e164 for o in outcomes] == [c.e164 for c in contacts(5)]
    body = api_requests(sim, "POST", f"/api/out_call_tasks/{task_id}/import")[0].json()
    assert body["data"][0] == {"dest_number": "13800000000", "external_id": "c0"}
    first = provider.list_numbers(task_id, page=1)
    assert first["pageCount"] == 3 and first["rowCount"] == 5 and len(first["data"]) == 2
    assert all(isinstance(v, str) for v in first["data"][0].values())
    last = provider.list_numbers(task_id, page=3)
    assert len(last["data"]) == 1
    export = provider.download_numbers(task_id)
    assert export[0][2] == "被叫号码" and len(export) == 6 and export[1][2] == "13800000000"


def test_add_contacts_batched_splits_by_batch_size(sim, provider, monkeypatch):
    monkeypatch.setattr(XSwitchProvider, "limits", type(XSwitchProvider.limits)(batch_size=4))
    task_id = provider.create_task(TaskSpec(name="batches"))
    outcomes = provider.add_contacts_batched(task_id, contacts(10))
    assert len(outcomes) == 10
    sizes = [len(r.json()["data"]) for r in api_requests(sim, "POST", f"/api/out_call_tasks/{task_id}/import")]
    assert sizes == [4, 4, 2]


def test_import_over_the_simulator_limit_is_a_clear_error(sim, provider):
    sim.settings["maxNumbersPerImport"] = 3
    task_id = provider.create_task(TaskSpec(name="limits"))
    with pytest.raises(ProviderError) as info:
        provider.add_contacts(task_id, contacts(4))
    assert info.value.provider_code == 400 and "too many" in info.value.message
    assert len(api_requests(sim, "POST", f"/api/out_call_tasks/{task_id}/import")) == 1


# ---------------------------------------------------------------- retries


def test_retries_5xx_then_succeeds(sim, provider):
    provider.list_tasks()
    sim.journal.clear()
    sim.faults.fail_next = 2
    provider.list_tasks()
    assert len(api_requests(sim, "GET", "/api/out_call_tasks")) == 3


def test_retries_429(sim, provider):
    provider.list_tasks()
    sim.journal.clear()
    sim.faults.throttle_next = 1
    provider.list_tasks()
    assert len(api_requests(sim, "GET", "/api/out_call_tasks")) == 2


def test_gives_up_after_retries_with_a_retryable_error(sim, provider):
    provider.list_tasks()
    sim.journal.clear()
    sim.faults.fail_next = 10
    with pytest.raises(ProviderError) as info:
        provider.list_tasks()
    assert info.value.retryable
    assert len(api_requests(sim, "GET", "/api/out_call_tasks")) == 3  # 1 + 2 retries


def test_timeouts_are_retried(sim):
    provider = make_provider(sim, readTimeout=0.3, retries=1)
    provider.list_tasks()
    sim.journal.clear()
    sim.faults.timeout_rate = 1.0
    sim.faults.timeout_seconds = 0.6
    with pytest.raises(ProviderError) as info:
        provider.list_tasks()
    assert info.value.retryable
    assert len(api_requests(sim, "GET", "/api/out_call_tasks")) == 2


def test_400_is_not_retried(sim, provider):
    task_id = provider.create_task(TaskSpec(name="x"))
    sim.journal.clear()
    with pytest.raises(ProviderError) as info:
        provider.update_call_settings(task_id, calling_time="soon")
    assert info.value.provider_code == 400 and not info.value.retryable
    assert len(api_requests(sim, "PUT", f"/api/out_call_tasks/{task_id}")) == 1


# ---------------------------------------------------------------- results by polling


def drain(provider, cursor=None, rounds: int = 200):
    events, cursors = [], cursor
    for _ in range(rounds):
        page = provider.poll_results(cursors)
        events.extend(page.events)
        cursors = page.cursor
        if not page.more:
            break
    return events, cursors


def run_task(sim, provider, n: int, **dialing: Any) -> str:
    for key, value in dialing.items():
        setattr(sim.dialing, key, value)
    task_id = provider.create_task(TaskSpec(name=f"poll-{n}", concurrency=4))
    provider.add_contacts(task_id, contacts(n))
    provider.start_task(task_id)
    wait_for(lambda: all(num.call_status == "done" for num in sim.tasks[int(task_id)].numbers))
    return task_id


def test_poll_emits_each_finished_number_once(sim, provider):
    assert provider.poll_results(None).events == []
    sim.dialing.answer_rate, sim.dialing.busy_rate = 0.5, 0.25
    sim.dialing.seed = 7
    task_id = run_task(sim, provider, 12)
    events, cursor = drain(provider)
    assert len(events) == 12
    assert len({e.dedup_key for e in events}) == 12
    assert {e.phone for e in events} == {c.e164 for c in contacts(12)}
    assert all(e.provider_task_id == task_id and e.status in {"completed", "busy", "no-answer"} for e in events)
    answered = [e for e in events if e.status == "completed"]
    assert all(e.answered_at is not None and e.hangup_cause == "NORMAL_CLEARING" for e in answered)
    assert {e.provider_contact_ref for e in events} == {f"c{i}" for i in range(12)}
    again, _ = drain(provider, cursor)
    assert again == []


def test_poll_is_incremental_while_a_task_runs(sim, provider):
    sim.dialing.ring_seconds = 0.05
    task_id = provider.create_task(TaskSpec(name="live", concurrency=1))
    provider.add_contacts(task_id, contacts(6))
    provider.start_task(task_id)
    seen, cursor = [], None
    deadline = time.monotonic() + 10
    while len(seen) < 6 and time.monotonic() < deadline:
        page = provider.poll_results(cursor)
        seen.extend(page.events)
        cursor = page.cursor
        time.sleep(0.03)
    assert len(seen) == 6 and len({e.dedup_key for e in seen}) == 6


def test_poll_failing_midway_loses_nothing_and_repeats_nothing(sim):
    provider = make_provider(sim, pageSize=2, retries=1)
    run_task(sim, provider, 7)
    original = sim.dispatch
    state = {"failures": 0}

    def flaky(req):
        # the second page of numbers fails until the client has given up once
        if req.path.endswith("/numbers") and req.query.get("page") == ["2"] and state["failures"] < 2:
            state["failures"] += 1
            return Reply(500, {"code": 500, "message": "boom"})
        return original(req)

    sim.dispatch = flaky
    first = provider.poll_results(None)
    assert len(first.events) == 2 and first.more  # page 1 only, then the failure
    rest, _ = drain(provider, first.cursor)
    everything = first.events + rest
    assert len(everything) == 7 and len({e.dedup_key for e in everything}) == 7


def test_poll_failing_at_once_raises_and_keeps_the_cursor_usable(sim, provider):
    run_task(sim, provider, 3)
    first, cursor = drain(provider)
    assert len(first) == 3
    sim.faults.fail_next = 10
    with pytest.raises(ProviderError):
        provider.poll_results(cursor)
    sim.faults.fail_next = 0
    more, _ = drain(provider, cursor)
    assert more == []


def test_stopped_numbers_are_reported_and_untried_ones_wait_for_a_restart(sim, provider):
    sim.dialing.ring_seconds = 0.5
    task_id = provider.create_task(TaskSpec(name="stop", concurrency=2))
    provider.add_contacts(task_id, contacts(5))
    provider.start_task(task_id)
    wait_for(lambda: any(n.call_status == "calling" for n in sim.tasks[int(task_id)].numbers))
    provider.stop_task(task_id)
    events, cursor = drain(provider)
    assert len(events) == 2 and all(e.status == "failed" and e.hangup_cause == "MANAGER_REQUEST" for e in events)
    sim.dialing.ring_seconds = 0.01
    provider.start_task(task_id)
    wait_for(lambda: all(n.call_status in ("done", "stop") for n in sim.tasks[int(task_id)].numbers))
    later, _ = drain(provider, cursor)
    assert len(later) == 3
    assert {e.dedup_key for e in events}.isdisjoint({e.dedup_key for e in later})


def test_provider_options_calling_time_and_max_concurrency_win_over_the_generic_settings(sim, provider):
    spec = TaskSpec(
        name="options",
        concurrency=3,
        ring_timeout_seconds=25,
        provider_options={"calling_time": 90, "max_concurrency": 7},
    )
    provider.create_task(spec)
    call = [r.json() for r in api_requests(sim, "PUT", "/api/out_call_tasks/1")][1]
    assert call["calling_time"] == 90 and call["max_concurrency"] == 7 and call["max_caps"] == 3

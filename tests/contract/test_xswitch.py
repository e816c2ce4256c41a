"""Contract tests: outcall.providers.xswitch against the XSwitch simulator over real HTTP."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
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
    assert XSwitchProvider.capabilities.pause  # pause is the documented stop; a start resumes


def test_no_webhooks_and_no_per_number_cancel(provider):
    with pytest.raises(NotSupported):
        provider.cancel_contacts("1", ["a1:k"])
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
    [token] = list(sim.tokens)
    others = [r for r in sim.journal if r.path != "/api/sessions"]
    assert others and all(r.headers.get("X-XTRA-AUTH-ID") == token for r in others)


def test_dev_key_login_sends_the_login_with_it(sim):
    sim.settings["devKey"] = "dk-123"
    provider = XSwitchProvider({"baseUrl": sim.url, "login": "admin", "devKey": "dk-123", **FAST})
    provider.list_tasks()
    assert api_requests(sim, "POST", "/api/sessions")[0].json() == {"login": "admin", "dev_key": "dk-123"}


def test_the_simulator_takes_the_documented_form_login_and_refuses_a_key_without_login(sim):
    import requests

    sim.settings["devKey"] = "dk-123"
    form = requests.post(f"{sim.url}/api/sessions", data={"login": "admin", "dev_key": "dk-123"}, timeout=5)
    assert form.status_code == 200 and form.json()["code"] == 200 and form.json()["token"]
    alone = requests.post(f"{sim.url}/api/sessions", json={"dev_key": "dk-123"}, timeout=5)
    assert alone.status_code == 403 and alone.json() == {"code": 403, "text": "Wrong username or password"}


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
    assert info.value.provider_code == 403 and not sim.tokens  # no token for 2 hours


def test_wrong_or_expired_token_is_403(sim):
    """docs.xswitch.cn/auth/: a token past its lifetime is answered 403."""
    import requests

    answer = requests.get(f"{sim.url}/api/out_call_tasks", headers={"X-XTRA-AUTH-ID": "forged"}, timeout=5)
    assert answer.status_code == 403
    assert requests.get(f"{sim.url}/api/out_call_tasks", timeout=5).status_code == 403


def test_expired_token_relogs_in_once(sim, provider):
    provider.list_tasks()
    sim.expire_tokens()
    assert provider.list_tasks() == []
    assert len(api_requests(sim, "POST", "/api/sessions")) == 2
    assert len(api_requests(sim, "GET", "/api/out_call_tasks")) == 3  # ok, 403, ok


def test_token_refused_after_relogin_is_an_error_not_a_loop(sim, provider, monkeypatch):
    monkeypatch.setattr(sim, "authed", lambda req: False)
    with pytest.raises(ProviderError) as info:
        provider.list_tasks()
    assert info.value.provider_code == 403
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
    assert all(e.answered_at is not None and e.hangup_cause == "hangup" for e in answered)
    assert all(e.raw["cause"] == "NORMAL_CLEARING" for e in answered)
    assert all(e.started_at.tzinfo == UTC for e in events)
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
    assert len(events) == 2 and all(e.status == "canceled" and e.hangup_cause == "operator-stop" for e in events)
    assert all(e.raw["cause"] == "MANAGER_REQUEST" for e in events)
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


# ---------------------------------------------------------------- the document's own examples (issue 12)

SEED = Path("/work/shared/seeds/xswitch-out-call-tasks.txt")
FIXTURES = Path(__file__).parent / "fixtures"
SEED_FIXTURES = [
    "xswitch-numbers-answer.json",
    "xswitch-task-list-answer.json",
    "xswitch-start-body.json",
    "xswitch-start-answer.json",
    "xswitch-import-body.json",
]


@pytest.mark.parametrize("name", SEED_FIXTURES)
def test_fixtures_are_the_seed_examples_byte_for_byte(name):
    text = (FIXTURES / name).read_text()
    json.loads(text)
    if SEED.exists():
        assert text in SEED.read_text()


def test_the_seed_numbers_answer_is_read_as_it_is(sim, provider):
    task_id = provider.create_task(TaskSpec(name="seed"))
    sim.answer_next(Reply(200, raw=(FIXTURES / "xswitch-numbers-answer.json").read_bytes()))
    rows = provider._all_numbers(task_id)
    assert [r["id"] for r in rows] == ["7", "6"] and rows[0]["outbound_call"] == "1"


def test_the_seed_start_answer_is_success(sim, provider):
    provider.list_tasks()  # logged in
    sim.answer_next(Reply(200, raw=(FIXTURES / "xswitch-start-answer.json").read_bytes()))
    provider.start_task("2")
    assert api_requests(sim, "PUT", "/api/out_call_tasks")[0].json() == json.loads(
        (FIXTURES / "xswitch-start-body.json").read_text()
    )


def test_the_simulator_takes_the_seed_bodies(sim, provider):
    import requests

    task_id = provider.create_task(TaskSpec(name="seed-bodies"))
    [token] = list(sim.tokens)
    auth = {"X-XTRA-AUTH-ID": token, "Content-Type": "application/json"}
    body = (FIXTURES / "xswitch-import-body.json").read_bytes()
    answer = requests.post(f"{sim.url}/api/out_call_tasks/{task_id}/import", data=body, headers=auth, timeout=5)
    assert answer.json() == {"data": "{}", "code": 200, "message": "success"}
    start = json.loads((FIXTURES / "xswitch-start-body.json").read_text())
    start["data"] = [task_id]
    answer = requests.put(f"{sim.url}/api/out_call_tasks", json=start, headers=auth, timeout=5).json()
    seed = json.loads((FIXTURES / "xswitch-start-answer.json").read_text())
    assert set(answer) == set(seed) and set(answer["data"][0]) == set(seed["data"][0])
    listed = requests.get(f"{sim.url}/api/out_call_tasks", headers=auth, timeout=5).json()
    seed_list = json.loads((FIXTURES / "xswitch-task-list-answer.json").read_text())
    assert set(listed) == set(seed_list) and set(seed_list["data"][0]) <= set(listed["data"][0])
    assert all(isinstance(v, str) for k, v in listed["data"][0].items() if k not in ("total", "done"))
    numbers = requests.get(f"{sim.url}/api/out_call_tasks/{task_id}/numbers", headers=auth, timeout=5).json()
    seed_numbers = json.loads((FIXTURES / "xswitch-numbers-answer.json").read_text())
    assert set(numbers) == set(seed_numbers) and set(numbers["data"][0]) == set(seed_numbers["data"][0])


# ---------------------------------------------------------------- paging of /numbers


def test_a_server_that_ignores_paging_on_numbers_is_an_error_not_a_gap(sim):
    sim.settings.update(numbersPaging="ignore", numbersPageSize=3)
    provider = make_provider(sim, pageSize=3)
    run_task(sim, provider, 7)
    first = provider.poll_results(None)  # page 1 is what this server shows: kept, and more is asked for
    assert len(first.events) == 3 and first.more
    with pytest.raises(ProviderError) as info:
        provider.poll_results(first.cursor)
    assert info.value.provider_code == "paging-ignored" and "page=2" in info.value.message
    assert not info.value.retryable


def test_a_server_that_hides_rows_is_an_error_too(sim, provider):
    task_id = provider.create_task(TaskSpec(name="short"))
    short = {"pageCount": 1, "page": 1, "rowCount": 5, "data": []}
    sim.answer_next(Reply(200, short))
    with pytest.raises(ProviderError, match="0 of 5"):
        provider._all_numbers(task_id)


def test_paging_that_is_honoured_reads_every_page(sim):
    provider = make_provider(sim, pageSize=2)
    run_task(sim, provider, 5)
    events, _ = drain(provider)
    assert len(events) == 5
    pages = [r.query["page"] for r in api_requests(sim, "GET") if r.path.endswith("/numbers")]
    assert pages == [["1"], ["2"], ["3"]]


# ---------------------------------------------------------------- waves, re-sent batches, pause


def released(n: int, attempt: int = 1, start: int = 0) -> list[ContactSpec]:
    return [
        ContactSpec(e164=f"+861380000{start + i:04d}", release_key=f"r{start + i}.{attempt}", attempt=attempt)
        for i in range(n)
    ]


def test_a_running_task_dials_numbers_imported_into_it(sim, provider):
    task_id = provider.create_task(TaskSpec(name="waves", concurrency=2))
    provider.start_task(task_id)
    provider.add_contacts(task_id, released(2))
    wait_for(lambda: sum(n.call_status == "done" for n in sim.tasks[int(task_id)].numbers) == 2)
    provider.add_contacts(task_id, released(2, start=2))
    wait_for(lambda: sum(n.call_status == "done" for n in sim.tasks[int(task_id)].numbers) == 4)


def test_a_batch_sent_again_is_answered_already_held(sim, provider):
    task_id = provider.create_task(TaskSpec(name="again"))
    first = provider.add_contacts(task_id, released(3))
    again = provider.add_contacts(task_id, released(3))
    assert not any(o.already_held for o in first) and all(o.already_held and o.accepted for o in again)
    assert len(sim.tasks[int(task_id)].numbers) == 3
    assert [r["external_id"] for r in api_requests(sim, "POST")[-1].json()["data"]] == ["a1:r0.1", "a1:r1.1", "a1:r2.1"]


def test_a_retry_is_a_second_row_and_the_result_names_its_attempt(sim, provider):
    task_id = provider.create_task(TaskSpec(name="retry"))
    provider.start_task(task_id)
    provider.add_contacts(task_id, released(1))
    wait_for(lambda: all(n.call_status == "done" for n in sim.tasks[int(task_id)].numbers))
    provider.add_contacts(task_id, released(1, attempt=2))
    wait_for(lambda: len(sim.tasks[int(task_id)].numbers) == 2)
    wait_for(lambda: all(n.call_status == "done" for n in sim.tasks[int(task_id)].numbers))
    events, _ = drain(provider)
    assert sorted((e.attempt, e.provider_contact_ref) for e in events) == [(1, "r0.1"), (2, "r0.2")]


def test_pause_is_stop_and_a_start_resumes_with_numbers_never_tried(sim, provider):
    sim.dialing.ring_seconds = 0.3
    task_id = provider.create_task(TaskSpec(name="pause", concurrency=1))
    provider.add_contacts(task_id, contacts(3))
    provider.start_task(task_id)
    wait_for(lambda: any(n.call_status == "calling" for n in sim.tasks[int(task_id)].numbers))
    provider.pause_task(task_id)
    assert api_requests(sim, "PUT", "/api/out_call_tasks")[-1].json() == {"action": "stop", "data": [task_id]}
    untried = [n for n in sim.tasks[int(task_id)].numbers if n.outbound_call == "1"]
    assert len(untried) == 2
    sim.dialing.ring_seconds = 0.01
    provider.start_task(task_id)
    wait_for(lambda: all(n.outbound_call == "0" for n in sim.tasks[int(task_id)].numbers))
    assert sum(n.call_status == "stop" for n in sim.tasks[int(task_id)].numbers) == 1


def test_the_simulator_refuses_fields_the_document_does_not_name(sim, provider):
    task_id = provider.create_task(TaskSpec(name="strict"))
    with pytest.raises(ProviderError) as info:
        provider._call("PUT", f"/api/out_call_tasks/{task_id}", {"group_name": "x", "priority": 5})
    assert info.value.provider_code == 400
    with pytest.raises(ProviderError):
        provider._call("PUT", "/api/out_call_tasks", {"action": "pause", "data": [task_id]})


@pytest.mark.parametrize(
    ("cause", "answered", "status", "normalised"),
    [
        ("NORMAL_CLEARING", True, "completed", "hangup"),
        ("NO_ANSWER", False, "no-answer", "no-answer"),
        ("USER_BUSY", False, "busy", "busy"),
        ("CALL_REJECTED", False, "rejected", "rejected"),
        ("UNALLOCATED_NUMBER", False, "failed", "invalid-number"),
        ("ORIGINATOR_CANCEL", False, "canceled", "canceled"),
        ("SOMETHING_NEW", False, "failed", "something-new"),
    ],
)
def test_hangup_causes_map_to_one_vocabulary_and_the_raw_cause_stays(provider, cause, answered, status, normalised):
    row = {
        "id": "9",
        "dest_number": "+8613800000001",
        "call_status": "done",
        "outbound_call": "0",
        "cause": cause,
        "call_start_time": "2026-04-24 08:00:00",
        "call_answer_time": "2026-04-24 08:00:05" if answered else "",
        "call_end_time": "2026-04-24 08:01:00",
        "external_id": "",
    }
    event = provider._event("1", row)
    assert (event.status, event.hangup_cause, event.raw["cause"]) == (status, normalised, cause)
    assert event.ended_at == datetime(2026, 4, 24, 0, 1, tzinfo=UTC)  # Asia/Shanghai PBX clock -> UTC


def test_retry_is_left_to_outcall_when_provider_redial_is_off(sim):
    spec = TaskSpec(name="r", retry=RetryStrategy(rounds=2, interval_minutes=30))
    with pytest.raises(Unprocessable, match=r"settings\.retry"):
        make_provider(sim).create_task(spec)
    assert make_provider(sim, providerRedial=False).create_task(spec)

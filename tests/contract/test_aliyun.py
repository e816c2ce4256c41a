"""Contract tests: outcall.providers.aliyun (official SDK) against the Dyvmsapi simulator over HTTP."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import pytest
from outcall.errors import ProviderError, Unprocessable
from outcall.models import CallingWindow, ContactSpec, RetryStrategy
from outcall.providers import provider_class
from outcall.providers.aliyun import PROVIDER as AliyunProvider
from outcall.providers.base import TaskSpec

from local.simulators.aliyun import SIMULATOR as AliyunSimulator
from local.simulators.base import Reply

CREDENTIALS = {"accessKeyId": "LTAI-test-key", "accessKeySecret": "test-secret-value", "enterpriseId": 36}
FAST = {"retries": 2, "backoffFactor": 0.01, "backoffMax": 0.05, "readTimeout": 5, "cdrSettleSeconds": 0}
PREDICTIVE = {"Cnos": "2000,2001"}


@pytest.fixture
def sim():
    simulator = AliyunSimulator(port=0, settings=dict(CREDENTIALS)).start()
    simulator.dialing.ring_seconds = 0.01
    simulator.dialing.talk_seconds = 0.01
    yield simulator
    simulator.stop()


def make_provider(sim, **extra: Any) -> AliyunProvider:
    return AliyunProvider({"baseUrl": sim.url, **CREDENTIALS, **FAST, **extra})


@pytest.fixture
def provider(sim):
    return make_provider(sim)


def params(req) -> dict[str, str]:
    """Every parameter of a journaled RPC request: query string and form body."""
    merged = {k: v[-1] for k, v in req.query.items()}
    if req.body:
        merged.update({k: v[-1] for k, v in parse_qs(req.body.decode(), keep_blank_values=True).items()})
    return merged


def action(req) -> str:
    """The RPC action: query `Action` (v1 signature) or header x-acs-action (ACS3)."""
    headers = {k.lower(): v for k, v in req.headers.items()}
    return req.query.get("Action", [""])[-1] or headers.get("x-acs-action", "")


def calls(sim, name: str) -> list:
    return [r for r in sim.journal if action(r) == name]


@dataclass(slots=True)
class Cheap:
    """Quacks like ContactSpec for the provider, without pydantic's cost: 250,001 of them are fast."""

    e164: str
    external_id: str | None = None
    name: str | None = None
    variables: dict[str, str] = field(default_factory=dict)


def contacts(n: int, start: int = 0) -> list[ContactSpec]:
    return [ContactSpec(e164=f"+861380000{start + i:04d}", external_id=f"c{start + i}") for i in range(n)]


def predictive(name: str = "t", **extra: Any) -> TaskSpec:
    options = {**PREDICTIVE, **extra.pop("provider_options", {})}
    return TaskSpec(name=name, type="predictive", provider_options=options, **extra)


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


# ---------------------------------------------------------------- registry, limits


def test_registry_limits_and_capabilities():
    assert provider_class("aliyun") is AliyunProvider
    limits = AliyunProvider.limits
    assert (limits.batch_size, limits.max_tasks, limits.max_numbers_per_task) == (100_000, 100, 1_000_000)
    assert AliyunProvider.capabilities.polling and AliyunProvider.capabilities.pause
    assert not AliyunProvider.capabilities.webhooks


def test_settings_need_an_enterprise_id():
    with pytest.raises(ValueError):
        AliyunProvider({"baseUrl": "http://127.0.0.1:1", "accessKeyId": "a", "accessKeySecret": "b"})
    assert AliyunProvider({"baseUrl": "http://127.0.0.1:1", "instanceId": "7"}).enterprise_id == 7


# ---------------------------------------------------------------- signatures


@pytest.mark.parametrize("algorithm", [None, "v2"])
def test_both_sdk_signatures_are_accepted_and_carry_action_and_version(sim, algorithm):
    extra = {"signatureAlgorithm": algorithm} if algorithm else {}
    provider = make_provider(sim, **extra)
    task_id = provider.create_task(predictive("signed"))
    assert provider.get_task(task_id)["Name"] == "signed"
    req = calls(sim, "CloudCreateTask")[0]
    headers = {k.lower(): v for k, v in req.headers.items()}
    if algorithm == "v2":
        p = params(req)
        assert p["Version"] == "2017-05-25" and p["SignatureMethod"] == "HMAC-SHA1" and p["Signature"]
    else:
        assert headers["x-acs-version"] == "2017-05-25"
        assert headers["authorization"].startswith("ACS3-HMAC-SHA256 Credential=LTAI-test-key,")


@pytest.mark.parametrize("algorithm", [None, "v2"])
def test_wrong_secret_is_refused_and_not_retried(sim, algorithm):
    extra = {"signatureAlgorithm": algorithm} if algorithm else {}
    provider = make_provider(sim, accessKeySecret="wrong", **extra)
    with pytest.raises(ProviderError) as info:
        provider.create_task(predictive())
    assert info.value.provider_code == "SignatureDoesNotMatch"
    assert not info.value.retryable
    assert len(sim.journal) == 1
    assert sim.tasks == {}


def test_unknown_access_key_is_refused(sim):
    provider = make_provider(sim, accessKeyId="LTAI-other")
    with pytest.raises(ProviderError) as info:
        provider.get_task("1")
    assert info.value.provider_code == "InvalidAccessKeyId.NotFound"


def test_tampered_request_fails_the_signature_check(sim):
    import requests

    provider = make_provider(sim)
    provider.create_task(predictive())
    signed = calls(sim, "CloudCreateTask")[0]
    query = {k: v[-1] for k, v in signed.query.items()}
    query["Name"] = "tampered"
    answer = requests.post(sim.url + "/", params=query, headers=dict(signed.headers), data=signed.body, timeout=5)
    assert answer.status_code == 400 and answer.json()["Code"] == "SignatureDoesNotMatch"


# ---------------------------------------------------------------- tasks


def test_create_task_maps_the_spec_and_every_documented_option(sim, provider):
    spec = TaskSpec(
        name="campaign",
        type="predictive",
        caller_ids=["01012345678", "01012345679"],
        concurrency=8,
        ring_timeout_seconds=90,
        retry=RetryStrategy(rounds=2, interval_minutes=90),
        auto_start_at=datetime(2026, 1, 1, 0, 30, tzinfo=UTC),
        auto_stop_at=datetime(2026, 1, 1, 10, 0, tzinfo=UTC),
        provider_options={
            "Description": "spring",
            "Cnos": "2000,2001",
            "CallGroupType": 1,
            "Quotiety": 1.5,
            "PredictAdjust": 120,
            "AnswerRate": 60,
            "WarmUpDuration": 120,
            "IsRewarm": 0,
            "MinAvailableAgentCount": 2,
            "MaxWaitTime": 40,
            "Wrapup": 15,
            "ForceEndFlag": 1,
            "UserFields": [{"source": "outcall"}],
            "AutoTriggerTimeStrategy": "9,22",
            "TimeStrategy": "3",
            "autoComplete": 0,
        },
    )
    calling = spec.model_copy(update={"calling_window": CallingWindow()})
    task_id = provider.create_task(calling)
    sent = params(calls(sim, "CloudCreateTask")[0])
    assert sent["EnterpriseId"] == "36" and sent["Name"] == "campaign" and sent["Type"] == "1"
    assert sent["CustomerClids"] == "01012345678,01012345679" and sent["CustomerClidsCategory"] == "1"
    assert sent["Concurrency"] == "8" and sent["CustomerTimeout"] == "60"  # clamped to the documented 5..60
    retry = json.loads(sent["RetryStrategy"])
    assert retry == {"retry": 2, "strategy": [{"round": 1, "time": "0-1-30"}, {"round": 2, "time": "0-1-30"}]}
    assert (sent["AutoStart"], sent["AutoStartDay"], sent["AutoStartTime"]) == ("1", "2026-01-01", "08:30:00")
    assert (sent["AutoStop"], sent["AutoStopDay"], sent["AutoStopTime"]) == ("1", "2026-01-01", "18:00:00")
    assert sent["AutoTaskType"] == "1" and sent["AutoTriggerTimeStrategy"] == "9,22" and sent["TimeStrategy"] == "3"
    assert sent["Quotiety"] == "1.5" and sent["PredictAdjust"] == "120" and sent["AutoComplete"] == "0"
    assert json.loads(sent["UserFields"]) == [{"source": "outcall"}]
    assert sent["AutoDelete"] == "0"
    stored = provider.get_task(task_id)
    assert stored["Name"] == "campaign" and stored["Status"] == "0" and stored["Quotiety"] == "1.5"


def test_refusals_before_any_request(sim, provider):
    with pytest.raises(Unprocessable):
        provider.create_task(TaskSpec(name="robot", type="robot"))
    with pytest.raises(Unprocessable):
        provider.create_task(TaskSpec(name="auto-without-ivr", type="auto"))
    with pytest.raises(Unprocessable):
        provider.create_task(predictive(provider_options={"NoSuchField": 1}))
    with pytest.raises(Unprocessable):
        provider.create_task(predictive(calling_window=CallingWindow()))
    assert sim.journal == []


def test_auto_task_with_ivr(sim, provider):
    task_id = provider.create_task(TaskSpec(name="ivr", type="auto", provider_options={"IvrId": 42}))
    assert provider.get_task(task_id)["Type"] == "2"
    assert params(calls(sim, "CloudCreateTask")[0])["IvrId"] == "42"


def test_start_pause_update_delete(sim, provider):
    task_id = provider.create_task(predictive("life"))
    provider.add_contacts(task_id, contacts(2))
    sim.dialing.ring_seconds = 0.5
    provider.start_task(task_id)
    assert provider.get_task(task_id)["Status"] == "1"
    with pytest.raises(ProviderError) as info:
        provider.update_task(task_id, predictive("renamed"))
    assert info.value.provider_code == "TaskStatusError" and not info.value.retryable
    provider.pause_task(task_id)
    assert provider.get_task(task_id)["Status"] == "2"
    provider.update_task(task_id, predictive("renamed", concurrency=3))
    sent = params(calls(sim, "CloudUpdateTask")[-1])
    assert sent["TaskId"] == task_id and sent["Name"] == "renamed" and "Type" not in sent
    assert provider.get_task(task_id)["Concurrency"] == "3"
    provider.delete_task(task_id)
    with pytest.raises(ProviderError) as info:
        provider.get_task(task_id)
    assert info.value.provider_code == "TaskNotFound"
    assert [action(r) for r in sim.journal].count("CloudPauseTask") == 1


def test_task_count_limit_and_auto_delete(sim):
    sim.settings["maxTasks"] = 2
    provider = make_provider(sim)
    first = provider.create_task(predictive("one"))
    provider.create_task(predictive("two"))
    with pytest.raises(ProviderError) as info:
        provider.create_task(predictive("three"))
    assert info.value.provider_code == "TaskCountLimit"
    sim.tasks[int(first)].status = 3  # finished
    third = make_provider(sim, autoDelete=1).create_task(predictive("three"))
    assert params(calls(sim, "CloudCreateTask")[-1])["AutoDelete"] == "1"
    assert set(sim.tasks) == {2, int(third)}


def test_running_task_limit(sim, provider):
    sim.settings["maxRunningTasks"] = 1
    sim.dialing.ring_seconds = 1
    a = provider.create_task(predictive("a"))
    b = provider.create_task(predictive("b"))
    provider.add_contacts(a, contacts(1))
    provider.start_task(a)
    with pytest.raises(ProviderError) as info:
        provider.start_task(b)
    assert info.value.provider_code == "RunningTaskLimit"


# ---------------------------------------------------------------- numbers


def test_import_sends_tels_and_properties(sim, provider):
    task_id = provider.create_task(predictive("nums"))
    people = [ContactSpec(e164="+8613800000001", external_id="c1", name="Li", variables={"plan": "gold"})]
    people.append(ContactSpec(e164="+861012345678"))
    outcomes = provider.add_contacts(task_id, people)
    assert [o.accepted for o in outcomes] == [True, True]
    sent = params(calls(sim, "CloudImportTaskTel")[0])
    assert sent["TaskId"] == task_id and sent["IsRepeat"] == "1" and sent["Name"].startswith("outcall-")
    rows = json.loads(sent["TaskTelList"])
    assert rows[0]["Tel"] == "13800000001" and json.loads(rows[0]["Property"]) == {
        "plan": "gold",
        "externalId": "c1",
        "name": "Li",
    }
    assert rows[1] == {"Tel": "01012345678"}  # national format, trunk prefix kept
    assert "TaskTelList" not in calls(sim, "CloudImportTaskTel")[0].query  # in the signed body, not the URL
    assert [t.tel for t in sim.tasks[int(task_id)].tels] == ["13800000001", "01012345678"]


def test_duplicates_in_a_batch_are_reported_per_contact(sim, provider):
    task_id = provider.create_task(predictive())
    outcomes = provider.add_contacts(task_id, contacts(2) + contacts(1))
    assert [(o.accepted, o.reason) for o in outcomes] == [(True, None), (True, None), (False, "duplicate in batch")]
    assert len(json.loads(params(calls(sim, "CloudImportTaskTel")[0])["TaskTelList"])) == 2


def test_250001_numbers_are_three_import_calls(sim):
    provider = make_provider(sim, dialFormat="e164", readTimeout=30)
    task_id = provider.create_task(predictive("big"))
    many = [Cheap(f"+86139{i:08d}") for i in range(250_001)]
    outcomes = provider.add_contacts_batched(task_id, many)
    assert len(outcomes) == 250_001 and all(o.accepted for o in outcomes)
    imports = calls(sim, "CloudImportTaskTel")
    assert [len(json.loads(params(r)["TaskTelList"])) for r in imports] == [100_000, 100_000, 50_001]
    assert len(sim.tasks[int(task_id)].tels) == 250_001


def test_one_call_over_100000_is_refused_locally(provider):
    too_many = [Cheap(f"+86139{i:08d}") for i in range(100_001)]
    with pytest.raises(Unprocessable):
        provider.add_contacts("1", too_many)


def test_import_and_task_limits_are_mapped(sim, provider):
    task_id = provider.create_task(predictive())
    sim.settings["maxTelsPerImport"] = 2
    with pytest.raises(ProviderError) as info:
        provider.add_contacts(task_id, contacts(3))
    assert info.value.provider_code == "ImportTelLimit" and not info.value.retryable
    sim.settings["maxTelsPerImport"] = 100_000
    sim.settings["maxTelsPerTask"] = 4
    provider.add_contacts(task_id, contacts(3))
    with pytest.raises(ProviderError) as info:
        provider.add_contacts(task_id, contacts(2, start=10))
    assert info.value.provider_code == "TaskTelLimit"


# ---------------------------------------------------------------- retries


def test_5xx_is_retried_by_the_sdk(sim, provider):
    sim.faults.fail_next = 2
    provider.create_task(predictive())
    assert len(calls(sim, "CloudCreateTask")) == 3
    assert len(sim.tasks) == 1


def test_throttling_is_retried(sim, provider):
    sim.faults.throttle_next = 1
    provider.get_task(provider.create_task(predictive()))
    assert len(calls(sim, "CloudCreateTask")) == 2


def test_retries_are_bounded_and_the_error_is_retryable(sim, provider):
    sim.faults.fail_next = 10
    with pytest.raises(ProviderError) as info:
        provider.create_task(predictive())
    assert info.value.retryable and info.value.provider_code == "InternalError"
    assert len(calls(sim, "CloudCreateTask")) == 3


def test_timeouts_are_retried(sim):
    provider = make_provider(sim, readTimeout=0.3, retries=1)
    sim.faults.timeout_rate = 1.0
    sim.faults.timeout_seconds = 0.6
    with pytest.raises(ProviderError) as info:
        provider.get_task("1")
    assert info.value.retryable
    assert len(sim.journal) == 2


def test_invalid_parameter_is_not_retried(sim, provider):
    with pytest.raises(ProviderError) as info:
        provider.create_task(predictive(provider_options={"AnswerRate": 500}))
    assert info.value.provider_code == "InvalidParameter" and not info.value.retryable
    assert len(sim.journal) == 1


# ---------------------------------------------------------------- CDR polling


def drain(provider, cursor=None, rounds: int = 100):
    events = []
    for _ in range(rounds):
        page = provider.poll_results(cursor)
        events.extend(page.events)
        cursor = page.cursor
        if not page.more:
            break
    return events, cursor


def run_task(sim, provider, n: int) -> str:
    task_id = provider.create_task(predictive(f"poll-{n}", concurrency=4))
    provider.add_contacts(task_id, contacts(n))
    provider.start_task(task_id)
    wait_for(lambda: sum(1 for c in sim.cdrs if c["TaskId"] == task_id) == n)
    return task_id


def test_poll_returns_each_cdr_once(sim, provider):
    empty = provider.poll_results(None)
    assert empty.events == [] and empty.cursor
    sim.dialing.seed, sim.dialing.answer_rate, sim.dialing.busy_rate = 3, 0.5, 0.25
    task_id = run_task(sim, provider, 10)
    events, cursor = drain(provider, empty.cursor)
    assert len(events) == 10 and len({e.dedup_key for e in events}) == 10
    assert {e.phone for e in events} == {c.e164 for c in contacts(10)}
    assert {e.provider_contact_ref for e in events} == {f"c{i}" for i in range(10)}
    assert all(e.provider_task_id == task_id and e.status in {"completed", "busy", "no-answer"} for e in events)
    assert "CustomerNumber" not in events[0].raw
    again, _ = drain(provider, cursor)
    assert again == []
    queries = [params(r) for r in calls(sim, "CloudQueryPredictiveCallCdr")]
    assert all(q["TimeRangeType"] == "2" and int(q["Limit"]) <= 1000 for q in queries)


def test_cdr_status_mapping(sim, provider):
    cursor = provider.poll_results(None).cursor
    for status, sip in (("40", "480"), ("40", "486"), ("41", "200"), ("42", "0"), ("43", "200")):
        sim.add_cdr(Status=status, SipCause=sip)
    events, _ = drain(provider, cursor)
    assert [e.status for e in events] == ["no-answer", "busy", "completed", "failed", "completed"]
    assert [e.raw["Status"] for e in events] == ["40", "40", "41", "42", "43"]


def test_poll_is_incremental_while_calls_end(sim, provider):
    cursor = provider.poll_results(None).cursor
    seen = []
    for _ in range(5):
        sim.add_cdr()
        sim.add_cdr()
        page = provider.poll_results(cursor)
        seen.extend(page.events)
        cursor = page.cursor
    assert len(seen) == 10 and len({e.dedup_key for e in seen}) == 10


def test_poll_pages_and_resumes_across_polls(sim):
    provider = make_provider(sim, pageSize=3, pollMaxPages=2)
    cursor = provider.poll_results(None).cursor
    for _ in range(10):
        sim.add_cdr()
    first = provider.poll_results(cursor)
    assert len(first.events) == 6 and first.more
    rest, _ = drain(provider, first.cursor)
    assert len(first.events + rest) == 10 and len({e.dedup_key for e in first.events + rest}) == 10


def test_poll_failing_midway_loses_nothing_and_repeats_nothing(sim):
    provider = make_provider(sim, pageSize=3, retries=1)
    cursor = provider.poll_results(None).cursor
    for _ in range(8):
        sim.add_cdr()
    original = sim.dispatch
    state = {"failures": 0}

    def flaky(req):
        p = params(req)
        if action(req) == "CloudQueryPredictiveCallCdr" and p.get("Start") == "3" and state["failures"] < 2:
            state["failures"] += 1
            return Reply(500, {"Code": "InternalError", "Message": "boom", "RequestId": "x"})
        return original(req)

    sim.dispatch = flaky
    first = provider.poll_results(cursor)
    assert len(first.events) == 3 and first.more
    rest, _ = drain(provider, first.cursor)
    everything = first.events + rest
    assert len(everything) == 8 and len({e.dedup_key for e in everything}) == 8


def test_poll_failing_at_once_raises_and_the_old_cursor_still_works(sim, provider):
    cursor = provider.poll_results(None).cursor
    sim.add_cdr()
    sim.faults.fail_next = 10
    with pytest.raises(ProviderError):
        provider.poll_results(cursor)
    sim.faults.fail_next = 0
    events, _ = drain(provider, cursor)
    assert len(events) == 1


def test_a_cdr_ending_in_the_boundary_second_after_a_poll_is_not_lost(sim, provider):
    page = provider.poll_results(None)
    boundary = str(json.loads(page.cursor)["since"])  # the second the last window ended on
    first = sim.add_cdr(EndTime=boundary, StartTime=boundary)
    page = provider.poll_results(page.cursor)
    assert [e.dedup_key for e in page.events] == [f"aliyun:{first['UniqueId']}"]
    boundary = str(json.loads(page.cursor)["since"])
    late = sim.add_cdr(EndTime=boundary, StartTime=boundary)  # same second, written after the poll
    again = provider.poll_results(page.cursor)
    assert [e.dedup_key for e in again.events] == [f"aliyun:{late['UniqueId']}"]
    assert provider.poll_results(again.cursor).events == []


def test_settle_window_waits_for_late_cdrs(sim):
    provider = make_provider(sim, cdrSettleSeconds=1)
    cursor = provider.poll_results(None).cursor
    just_now = str(int(time.time()))
    sim.add_cdr(EndTime=just_now, StartTime=just_now)
    assert provider.poll_results(cursor).events == []  # still inside the settle window: not read yet
    time.sleep(1.1)
    events, _ = drain(provider, cursor)
    assert len(events) == 1

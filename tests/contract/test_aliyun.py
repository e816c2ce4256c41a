"""Contract tests: outcall.providers.aliyun (official SDK) against the Dyvmsapi simulator over HTTP."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
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
    release_key: str | None = None
    attempt: int = 1


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
            "AutoComplete": 1,
        },
    )
    calling = spec.model_copy(update={"calling_window": CallingWindow()})
    task_id = provider.create_task(calling)
    sent = params(calls(sim, "CloudCreateTask")[0])
    assert sent["EnterpriseId"] == "36" and sent["Name"] == "campaign" and sent["Type"] == "1"
    assert sent["CustomerClids"] == "01012345678,01012345679" and sent["CustomerClidsCategory"] == "1"
    assert sent["Concurrency"] == "8" and sent["CustomerTimeout"] == "60"  # clamped to the documented 5..60
    retry = json.loads(sent["RetryStrategy"])
    # timed from the first call (RetryStrategyTimeType 1): each round later than the one before
    assert retry == {"retry": 2, "strategy": [{"round": 1, "time": "0-1-30"}, {"round": 2, "time": "0-3-0"}]}
    assert sent["RetryStrategyTimeType"] == "1"
    assert (sent["AutoStart"], sent["AutoStartDay"], sent["AutoStartTime"]) == ("1", "2026-01-01", "08:30:00")
    assert (sent["AutoStop"], sent["AutoStopDay"], sent["AutoStopTime"]) == ("1", "2026-01-01", "18:00:00")
    assert sent["AutoTaskType"] == "1" and sent["AutoTriggerTimeStrategy"] == "9,22" and sent["TimeStrategy"] == "3"
    assert sent["Quotiety"] == "1.5" and sent["PredictAdjust"] == "120" and sent["AutoComplete"] == "1"
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
    with pytest.raises(Unprocessable, match="shorter than 50"):
        provider.create_task(predictive("n" * 50))
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
        "attempt": 1,
    }
    assert rows[1]["Tel"] == "01012345678"  # national format, trunk prefix kept
    assert "TaskTelList" not in calls(sim, "CloudImportTaskTel")[0].query  # in the signed body, not the URL
    assert [t.tel for t in sim.tasks[int(task_id)].tels] == ["13800000001", "01012345678"]


def test_duplicates_in_a_batch_are_reported_per_contact(sim, provider):
    task_id = provider.create_task(predictive())
    outcomes = provider.add_contacts(task_id, contacts(2) + contacts(1))
    assert [(o.accepted, o.reason) for o in outcomes] == [(True, None), (True, None), (False, "duplicate in batch")]
    assert len(json.loads(params(calls(sim, "CloudImportTaskTel")[0])["TaskTelList"])) == 2


@pytest.mark.slow
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


def test_cdr_result_is_the_status_code_and_the_text_stays_raw(sim):
    """SDK CloudQueryPredictiveCallCdrResponseBodyDataList: StatusCode 40/41/42/43, Status the text;
    SipCause is a number-status code (710, 719, 800 ...), mapped only by numberStatusMap."""
    provider = make_provider(sim, numberStatusMap={"710": "busy"})
    cursor = provider.poll_results(None).cursor
    rows = [("40", "客户未接听", "719", ""), ("40", "客户未接听", "710", ""), ("41", "客户接听", "", "1000")]
    rows += [("42", "已呼叫", "800", ""), ("43", "双方接听", "", "1002"), ("43", "双方接听", "", "1001")]
    for code, text, sip, reason in rows:
        sim.add_cdr(StatusCode=code, Status=text, SipCause=sip, EndReason=reason)
    events, _ = drain(provider, cursor)
    assert [e.status for e in events] == ["no-answer", "busy", "completed", "failed", "completed", "completed"]
    assert [e.hangup_cause for e in events] == [
        "no-answer",
        "busy",
        "callee-hangup",
        "number-status-800",
        "released",
        "caller-hangup",
    ]
    assert [(e.raw["StatusCode"], e.raw["Status"]) for e in events] == [(c, t) for c, t, _, _ in rows]
    assert events[3].raw["SipCause"] == "800" and events[2].raw["EndReason"] == "1000"
    assert all(e.started_at is not None and e.started_at.utcoffset() == timedelta(0) for e in events)


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


# ---------------------------------------------------------------- documented rules (issue 12)

SEEDS = Path("/work/shared/seeds")
FIXTURES = Path(__file__).parent / "fixtures"


def test_the_seed_answer_fixture_is_the_seed_byte_for_byte_and_the_sdk_reads_it():
    fixture = (FIXTURES / "aliyun-cloud-create-task-answer.json").read_text()
    if SEEDS.exists():
        assert fixture in (SEEDS / "aliyun-vms-cloud-create-task.txt").read_text()
    from alibabacloud_dyvmsapi20170525 import models as vms

    body = vms.CloudCreateTaskResponseBody().from_map(json.loads(fixture))
    assert body.code == "OK" and body.data.id == "11" and body.data.status == "3"


def test_the_simulator_answers_create_task_in_the_seed_shape(sim):
    import requests

    seed = json.loads((FIXTURES / "aliyun-cloud-create-task-answer.json").read_text())
    make_provider(sim, signatureAlgorithm="v2").create_task(predictive("shape"))
    signed = calls(sim, "CloudCreateTask")[0]  # replayed as is: the v1 signature is in its parameters
    raw = requests.post(sim.url + "/", params={k: v[-1] for k, v in signed.query.items()}, timeout=5).json()
    assert {"RequestId", "Code", "Message", "Data"} <= set(raw) and raw["Code"] == seed["Code"]
    assert {"Id", "Name", "Status", "Type", "EnterpriseId"} <= set(raw["Data"]) <= set(seed["Data"])
    assert all(isinstance(v, str) for k, v in raw["Data"].items() if k != "AutoComplete")


def test_retry_rounds_timed_from_the_first_call_must_increase(sim, provider):
    late_first = '{"retry":2,"strategy":[{"round":1,"time":"0-2-0"},{"round":2,"time":"0-1-0"}]}'
    with pytest.raises(Unprocessable, match="later than the round before"):
        provider.create_task(predictive(provider_options={"RetryStrategy": late_first}))
    assert sim.journal == []
    # timed from the previous call (type 2) the same rounds are fine, and so is an equal interval
    provider.create_task(predictive(provider_options={"RetryStrategy": late_first, "RetryStrategyTimeType": 2}))
    spec = predictive(retry=RetryStrategy(rounds=3, interval_minutes=20), provider_options={"RetryStrategyTimeType": 2})
    provider.create_task(spec)
    sent = json.loads(params(calls(sim, "CloudCreateTask")[-1])["RetryStrategy"])
    assert [r["time"] for r in sent["strategy"]] == ["0-0-20", "0-0-20", "0-0-20"]


def test_the_simulator_holds_requests_to_the_document(sim, provider):
    """Sent straight through the SDK (past the module's own checks): refused as POP refuses."""
    from alibabacloud_dyvmsapi20170525 import models as vms
    from Tea.exceptions import TeaException

    bad = '{"retry":2,"strategy":[{"round":1,"time":"0-2-0"},{"round":2,"time":"0-1-0"}]}'
    cases = [
        (dict(name="x", type=1, cnos="1", retry_strategy=bad), "InvalidParameter"),
        (dict(name="x", type=2), "MissingParameter"),  # auto task without IvrId / IvrName
        (dict(name="x", type=1, customer_clids_category=3), "InvalidParameter"),
        (dict(name="x", type=1, customer_clids_category=4), "MissingParameter"),
        (dict(name="x", type=1, customer_timeout=61), "InvalidParameter"),
        (dict(type=1), "MissingParameter"),
    ]
    for fields, code in cases:
        request = vms.CloudCreateTaskRequest(enterprise_id=36, **fields)
        with pytest.raises(TeaException) as info:
            provider.client.cloud_create_task_with_options(request, provider._runtime())
        assert info.value.code == code, fields
    assert sim.tasks == {}


@pytest.mark.parametrize(
    ("caller_ids", "category"),
    [(["01012345678"], "1"), (["13800000001", "13800000002"], "2"), (["13800000001", "01012345678"], "1")],
)
def test_caller_ids_give_the_documented_category(sim, provider, caller_ids, category):
    provider.create_task(predictive(caller_ids=caller_ids))
    sent = params(calls(sim, "CloudCreateTask")[-1])
    assert sent["CustomerClidsCategory"] == category and sent["CustomerClids"] == ",".join(caller_ids)


def test_number_pool_and_navigation_need_a_group(sim, provider):
    for category in (4, 5):
        with pytest.raises(Unprocessable, match="CustomerClidsGroup"):
            provider.create_task(predictive(provider_options={"CustomerClidsCategory": category}))
    with pytest.raises(Unprocessable, match="CustomerClids"):
        provider.create_task(predictive(provider_options={"CustomerClidsCategory": 2}))
    assert sim.journal == []
    provider.create_task(predictive(provider_options={"CustomerClidsCategory": 4, "CustomerClidsGroup": "pool-a"}))
    sent = params(calls(sim, "CloudCreateTask")[-1])
    assert sent["CustomerClidsCategory"] == "4" and sent["CustomerClidsGroup"] == "pool-a"


@pytest.mark.parametrize("owned", ["EnterpriseId", "TaskId", "Name", "Type", "AutoDelete"])
def test_fields_outcall_owns_cannot_come_from_provider_options(sim, provider, owned):
    with pytest.raises(Unprocessable, match=owned):
        provider.create_task(predictive(provider_options={owned: 1}))
    assert sim.journal == []


def test_a_partial_import_is_found_out_number_by_number(sim, provider):
    """ImportTotal 4, SuccessTotal 2: the batch is withdrawn (CloudDeleteTaskTel FileId, Status 0) and
    halves are imported again until each number's answer is exact; nobody is reported added who is not."""
    task_id = provider.create_task(predictive("partial"))
    people = contacts(4)
    people[1] = ContactSpec(e164="+8613800000001", external_id="bad")
    sim.settings["refuseTels"] = ["13800000001"]
    provider.add_contacts(task_id, [contacts(1, start=3)[0]])  # already in the task
    sim.journal.clear()
    outcomes = provider.add_contacts(task_id, people)
    assert [(o.accepted, o.already_held, o.reason) for o in outcomes] == [
        (True, False, None),
        (False, False, "invalid"),
        (True, False, None),
        (True, True, "duplicate in task"),
    ]
    first = calls(sim, "CloudImportTaskTel")[0]
    deletes = [params(r) for r in calls(sim, "CloudDeleteTaskTel")]
    assert deletes and deletes[0]["Status"] == "0" and deletes[0]["TaskId"] == task_id
    assert len(json.loads(params(first)["TaskTelList"])) == 4
    held = sorted(t.tel for t in sim.tasks[int(task_id)].tels)
    assert held == ["13800000000", "13800000002", "13800000003"]  # each once
    assert all(o.provider_ref and o.provider_ref.split(":")[1] for o in outcomes if o.accepted and not o.already_held)


def test_a_refused_batch_is_not_reported_added(sim, provider):
    task_id = provider.create_task(predictive("all-bad"))
    sim.settings["refuseTels"] = ["13800000000", "13800000001"]
    outcomes = provider.add_contacts(task_id, contacts(2))
    assert [(o.accepted, o.reason) for o in outcomes] == [(False, "invalid"), (False, "invalid")]
    assert calls(sim, "CloudDeleteTaskTel") == []


def test_retries_import_the_number_again_and_the_running_task_dials_it(sim, provider):
    task_id = provider.create_task(predictive("waves", concurrency=2))
    provider.start_task(task_id)
    first = provider.add_contacts(task_id, [ContactSpec(e164="+8613800000001", release_key="k1", attempt=1)])
    wait_for(lambda: len(sim.cdrs) == 1)
    again = provider.add_contacts(task_id, [ContactSpec(e164="+8613800000001", release_key="k2", attempt=2)])
    assert first[0].accepted and again[0].accepted and not again[0].already_held
    assert [params(r)["IsRepeat"] for r in calls(sim, "CloudImportTaskTel")] == ["1", "0"]
    wait_for(lambda: len(sim.cdrs) == 2)
    assert provider.get_task(task_id)["Status"] == "1"  # AutoComplete 0: waits for the next wave
    events, _ = drain(provider)
    assert sorted((e.attempt, e.provider_contact_ref) for e in events) == [(1, "k1"), (2, "k2")]


def test_the_documented_auto_complete_ends_a_task_that_ran_dry(sim):
    provider = make_provider(sim, autoComplete=1)
    task_id = provider.create_task(predictive("dry"))
    provider.add_contacts(task_id, contacts(1))
    provider.start_task(task_id)
    wait_for(lambda: provider.get_task(task_id)["Status"] == "3")
    with pytest.raises(ProviderError) as info:
        provider.start_task(task_id)
    assert info.value.provider_code == "TaskStatusError"


def test_cancel_withdraws_numbers_not_called_yet(sim, provider):
    task_id = provider.create_task(predictive("cancel", concurrency=1))
    outcomes = provider.add_contacts(task_id, contacts(3))
    refs = [o.provider_ref for o in outcomes]
    assert all(refs)
    sim.tasks[int(task_id)].tels[0].dialled = True  # as if the first had been called
    sim.add_cdr(TaskId=task_id, TaskFileId=refs[0].split(":")[0], CustomerNumber=refs[0].split(":")[1])
    withdrawn = provider.cancel_contacts(task_id, [r for r in refs if r] + ["junk"])
    assert withdrawn == refs[1:]
    assert [t.tel for t in sim.tasks[int(task_id)].tels] == [refs[0].split(":")[1]]
    sent = params(calls(sim, "CloudDeleteTaskTel")[0])
    assert sent["Status"] == "0" and sent["Tels"] == ",".join(r.split(":")[1] for r in refs)


def test_stop_is_pause_and_withdrawing_what_is_not_called(sim, provider):
    task_id = provider.create_task(predictive("stop"))
    provider.add_contacts(task_id, contacts(3))
    sim.dialing.ring_seconds = 0.3
    provider.start_task(task_id)
    provider.stop_task(task_id)
    assert provider.get_task(task_id)["Status"] == "2"
    assert [action(r) for r in sim.journal][-3:-1] == ["CloudPauseTask", "CloudDeleteTaskTel"]
    assert len(sim.tasks[int(task_id)].tels) == 1
    assert all(t.dialled for t in sim.tasks[int(task_id)].tels)  # only numbers already called remain


def test_recording_and_times_in_utc(sim):
    provider = make_provider(sim, recordingUrlTemplate="https://rec.example/{file}")
    cursor = provider.poll_results(None).cursor
    now = int(time.time())
    sim.add_cdr(
        StatusCode="41",
        Status="客户接听",
        StartTime=str(now - 20),
        AnswerTime=str(now - 15),
        EndTime=str(now),
        EndReason="1000",
        RecordFile=[{"File": "abc.mp3", "Type": "record", "MonitorType": 1}],
    )
    [event], _ = drain(provider, cursor)
    assert event.recording_url == "https://rec.example/abc.mp3"
    assert event.answered_at == datetime.fromtimestamp(now - 15, UTC) and event.ended_at.tzinfo == UTC


def test_provider_redial_can_be_turned_off(sim):
    provider = make_provider(sim, providerRedial=False)
    provider.create_task(predictive(retry=RetryStrategy(rounds=2, interval_minutes=30)))
    assert "RetryStrategy" not in params(calls(sim, "CloudCreateTask")[-1])


def test_update_leaves_out_the_create_only_fields(sim, provider):
    spec = predictive("upd", provider_options={"CallGroupType": 1, "Cnos": "2000"})
    task_id = provider.create_task(spec)
    provider.update_task(task_id, spec.model_copy(update={"name": "upd2"}))
    sent = params(calls(sim, "CloudUpdateTask")[-1])
    assert "CallGroupType" not in sent and sent["Cnos"] == "2000" and sent["Name"] == "upd2"

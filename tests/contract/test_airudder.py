"""Contract tests: outcall.providers.airudder against the AIRUDDER simulator over real HTTP."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
from outcall.errors import Conflict, InvalidSignature, NotSupported, ProviderError
from outcall.models import CallEvent, ContactSpec, TaskLifecycleEvent
from outcall.providers import airudder as module
from outcall.providers import provider_class
from outcall.providers.airudder import AirudderProvider
from outcall.providers.base import TaskSpec

from local.simulators.airudder import SIMULATOR, AirudderSimulator
from local.simulators.base import Reply
from tests.contract.support import FAST, Receiver, wait_for

CREDS = {
    "appKey": "YK/9/key",
    "appSecret": "l5uz-secret",
    "webhookSecret": "hook-s3cret",
    "workflowTemplateId": "tpl-1",
}


@pytest.fixture(scope="module")
def server():
    s = SIMULATOR(port=0, settings={}).start()
    yield s
    s.stop()


@pytest.fixture
def sim(server, receiver):
    server.reset()
    module._TOKENS.clear()
    receiver.status = 200
    server.settings.clear()
    server.settings.update({**CREDS, "webhookUrl": receiver.url + "/webhooks/airudder", "pushRetrySeconds": 0.05})
    server.webhook_url = server.settings["webhookUrl"]
    server.dialing.ring_seconds = 0.02
    server.dialing.talk_seconds = 0
    server.faults.retry_after = 0
    return server


def make(sim: AirudderSimulator, receiver: Receiver, **extra) -> AirudderProvider:
    return AirudderProvider(
        {**CREDS, **FAST, "baseUrl": sim.url, "webhookUrl": receiver.url + "/webhooks/airudder", **extra}
    )


def contacts(n: int, start: int = 0) -> list[ContactSpec]:
    return [ContactSpec(e164=f"+63917{start + i:07d}", name=f"c{i}", external_id=f"case-{start + i}") for i in range(n)]


def hits(sim: AirudderSimulator, op: str):
    return sim.requests_to(f"/service/cloud/{op}$")


def query_of(push) -> dict[str, list[str]]:
    return push.query


def test_registry():
    assert provider_class("airudder") is AirudderProvider
    assert AirudderProvider.capabilities.pause is False


def test_workflow_lifecycle(sim, receiver):
    p = make(sim, receiver)
    wid = p.create_task(TaskSpec(name="collect-1"))
    created = hits(sim, "workflow/createinstance")[0]
    assert created.json() == {"workflow_template_id": "tpl-1", "name": "collect-1"}
    assert created.headers["Authorization"].startswith("Token ")
    assert sim.tasks[wid]["kind"] == "workflow"
    p.start_task(wid)  # no-op: nothing sent
    outcomes = p.add_contacts(wid, contacts(2))
    assert all(o.accepted for o in outcomes) and outcomes[0].provider_ref == "case-0"
    sent = hits(sim, "workflow/uploaddetails")[0].json()
    assert sent["workflow_id"] == wid
    assert sent["details"][0] == {"case_id": "case-0", "callee": "+639170000000", "customer_name": "c0", "platform": ""}
    p.cancel_call(wid, "case-1")
    assert hits(sim, "workflow/cancel")[0].json() == {"workflow_id": wid, "case_id": "case-1"}
    p.stop_task(wid)
    assert sim.tasks[wid]["status"] == "Stopped"
    p.delete_task(wid)  # already stopped: tolerated
    with pytest.raises(NotSupported):
        p.pause_task(wid)
    assert len(hits(sim, "auth")) == 1  # one token for all those calls


def test_bad_credentials(sim, receiver):
    p = make(sim, receiver, appSecret="nope")
    with pytest.raises(ProviderError) as err:
        p.create_task(TaskSpec(name="x"))
    assert err.value.provider_code == 403 and not err.value.retryable
    assert len(hits(sim, "auth")) == 1 and not hits(sim, "workflow/createinstance")


def test_expired_token_is_refreshed_and_the_call_retried_once(sim, receiver):
    p = make(sim, receiver)
    wid = p.create_task(TaskSpec(name="t"))
    sim.expire_tokens()
    p.stop_task(wid)
    assert len(hits(sim, "auth")) == 2
    stops = hits(sim, "workflow/stop")
    assert len(stops) == 2 and stops[0].headers["Authorization"] != stops[1].headers["Authorization"]


def test_an_answer_that_is_not_json_is_an_error_naming_the_operation(sim, receiver):
    p = make(sim, receiver)
    sim.answer_next(Reply(200, raw=b"<html>gateway</html>"))
    with pytest.raises(ProviderError) as err:
        p.token()
    assert "airudder auth answered HTTP 200 without a JSON object" in str(err.value)
    assert module._TOKENS.get(p._cache_key) is None  # nothing cached from it
    p.token()  # the next fetch gets one
    sim.answer_next(Reply(200, raw=b"[1, 2]"))
    with pytest.raises(ProviderError) as err:
        p.stop_task("w1")
    assert err.value.provider_code == 200 and "workflow/stop" in str(err.value)


def test_token_refused_twice_gives_up(sim, receiver):
    p = make(sim, receiver)
    p.token()
    expired = Reply(401, {"status": "Error", "code": 10813, "message": "token expired"})
    sim.answer_next(expired)
    sim.answer_next(Reply(200, {"status": "OK", "code": 200, "data": {"token": "not-valid"}}))
    sim.answer_next(expired)
    with pytest.raises(ProviderError) as err:
        p.stop_task("w1")
    assert err.value.provider_code == 10813
    assert len(hits(sim, "workflow/stop")) == 2 and len(hits(sim, "auth")) == 2


def test_token_expiry_by_age(sim, receiver):
    p = make(sim, receiver, tokenTtlSeconds=0)  # a token that is always due for renewal
    p.create_task(TaskSpec(name="a"))
    p.create_task(TaskSpec(name="b"))
    assert len(hits(sim, "auth")) == 2


def test_duplicate_task_name_is_a_conflict(sim, receiver):
    p = make(sim, receiver)
    p.create_task(TaskSpec(name="same"))
    with pytest.raises(Conflict) as err:
        p.create_task(TaskSpec(name="same"))
    assert "10508" in err.value.message
    assert len(hits(sim, "workflow/createinstance")) == 2


def test_bad_phones_are_rejected_per_contact(sim, receiver):
    p = make(sim, receiver)
    wid = p.create_task(TaskSpec(name="phones"))
    batch = [contacts(1)[0], ContactSpec(e164="+123456789012345", external_id="long"), contacts(1)[0]]
    outcomes = p.add_contacts(wid, batch)
    assert outcomes[0].accepted
    assert not outcomes[1].accepted and outcomes[1].reason.startswith("invalid: code 10510")
    assert not outcomes[2].accepted and outcomes[2].reason.startswith("duplicate")
    assert len(hits(sim, "workflow/uploaddetails")) == 1


def test_bad_phone_in_robot_task_is_a_clear_error(sim, receiver):
    p = make(sim, receiver, mode="task", robotId="4496")
    with pytest.raises(ProviderError) as err:
        p.create_task(TaskSpec(name="r", provider_options={"callees": [{"callee": "639170000000"}]}))
    assert err.value.provider_code == 10510 and "bad phone" in err.value.message
    assert len(hits(sim, "task")) == 1  # a 400 is not retried


def test_contacts_split_at_the_batch_limit(sim, receiver):
    p = make(sim, receiver)
    wid = p.create_task(TaskSpec(name="big"))
    sim.dialing.ring_seconds = 30  # keep the dialer quiet
    outcomes = p.add_contacts_batched(wid, contacts(2001))
    assert [len(r.json()["details"]) for r in hits(sim, "workflow/uploaddetails")] == [1000, 1000, 1]
    assert len(outcomes) == 2001 and all(o.accepted for o in outcomes)
    with pytest.raises(ProviderError):
        make(sim, receiver, batchSize=1001).add_contacts(wid, contacts(1001, start=5000))


def test_5xx_retried(sim, receiver):
    p = make(sim, receiver)
    p.token()
    sim.faults.fail_next = 2
    p.create_task(TaskSpec(name="flaky"))
    assert len(hits(sim, "workflow/createinstance")) == 3


def test_5xx_exhausted_and_429_retried(sim, receiver):
    p = make(sim, receiver)
    p.token()
    sim.faults.fail_next = 4
    with pytest.raises(ProviderError) as err:
        p.create_task(TaskSpec(name="down"))
    assert err.value.retryable and len(hits(sim, "workflow/createinstance")) == 4
    sim.faults.throttle_next = 2
    p.create_task(TaskSpec(name="throttled"))
    assert len(hits(sim, "workflow/createinstance")) == 7


def test_timeout_retried(sim, receiver):
    p = make(sim, receiver, readTimeout=0.2, retries=1)
    p.token()
    sim.faults.timeout_rate = 1.0
    sim.faults.timeout_seconds = 0.4
    with pytest.raises(ProviderError) as err:
        p.stop_task("w")
    assert err.value.retryable and len(hits(sim, "workflow/stop")) == 2


def test_400_not_retried(sim, receiver):
    p = make(sim, receiver)
    with pytest.raises(ProviderError) as err:
        p.stop_task("no-such-workflow")
    assert err.value.provider_code == 400 and not err.value.retryable
    assert len(hits(sim, "workflow/stop")) == 1


def test_workflow_pushes_verified_and_parsed(sim, receiver):
    sim.dialing.answer_rate = 1.0
    sim.settings["pushCopies"] = 2  # AIRUDDER may push the same call twice
    p = make(sim, receiver)
    wid = p.create_task(TaskSpec(name="hooks"))
    p.add_contacts(wid, contacts(2, start=40))
    pushes = wait_for(
        lambda: (lambda m: m if len(m) >= 4 else None)(
            [x for x in receiver.of("/workflow") if json.loads(x.body)["workflow_id"] == wid]
        )
    )
    for push in pushes:
        p.verify_webhook(push.headers, push.body, "workflow", query=push.query)
    events = [e for x in pushes for e in p.parse_webhook(x.headers, x.body, "workflow")]
    assert all(isinstance(e, CallEvent) for e in events)
    assert len({e.dedup_key for e in events}) == 2  # 4 pushes, 2 calls
    by_ref = {e.provider_contact_ref: e for e in events}
    assert set(by_ref) == {"case-40", "case-41"}
    e = by_ref["case-40"]
    assert e.status == "completed" and e.phone == "+639170000040" and e.provider_task_id == wid
    assert e.answered_at is not None and e.intents == ["A"]
    with pytest.raises(InvalidSignature):
        p.verify_webhook(pushes[0].headers, pushes[0].body, "workflow", query={"token": ["wrong"]})
    with pytest.raises(InvalidSignature):
        p.verify_webhook(pushes[0].headers, pushes[0].body, "workflow", query={})


def test_our_callback_urls_carry_the_token(sim, receiver):
    p = make(sim, receiver, mode="task", robotId="9")
    tid = p.create_task(
        TaskSpec(name="cb", provider_options={"callees": [{"callee": "+639170000001", "case_id": "k"}]})
    )
    body = hits(sim, "task")[0].json()
    assert parse_qs(urlsplit(body["call_callback_url"]).query) == {"token": ["hook-s3cret"]}
    assert body["robot_id"] == "9" and body["callees"][0]["case_id"] == "k"
    assert tid in sim.tasks


def test_robot_task_call_and_task_pushes(sim, receiver):
    sim.dialing.answer_rate = 0.0
    sim.dialing.busy_rate = 1.0
    p = make(sim, receiver, mode="task", robotId="4496")
    callees = [{"callee": "+639170000101", "case_id": "a"}, {"callee": "+639170000102", "case_id": "b"}]
    tid = p.create_task(TaskSpec(name="robot", provider_options={"callees": callees}))
    with pytest.raises(NotSupported):
        p.add_contacts(tid, contacts(1))
    done = wait_for(lambda: [x for x in receiver.of("/task") if json.loads(x.body).get("task_id") == tid])
    calls = [x for x in receiver.of("/call") if json.loads(x.body)["task_id"] == tid]
    assert len(calls) == 2
    for push in [*calls, *done]:
        p.verify_webhook(push.headers, push.body, query=push.query)
    events = [p.parse_webhook(x.headers, x.body, "call")[0] for x in calls]
    assert {e.status for e in events} == {"busy"} and {e.provider_contact_ref for e in events} == {"a", "b"}
    assert all(e.provider_task_id == tid for e in events)
    lifecycle = p.parse_webhook(done[0].headers, done[0].body, "task")[0]
    assert isinstance(lifecycle, TaskLifecycleEvent) and lifecycle.status == "finished"
    assert lifecycle.provider_task_id == tid
    with pytest.raises(ProviderError):  # finished: cannot stop again
        p.stop_task(tid)


def test_cancel_a_robot_task_call(sim, receiver):
    sim.dialing.ring_seconds = 30
    p = make(sim, receiver, mode="task", robotId="1")
    tid = p.create_task(
        TaskSpec(name="cancel", provider_options={"callees": [{"callee": "+639170000200", "case_id": "x"}]})
    )
    p.cancel_call(tid, "x", "+639170000200")
    assert sim.tasks[tid]["contacts"]["x"]["state"] == "canceled"
    assert hits(sim, "cancelphonecall")[0].json() == {"task_id": tid, "case_id": "x", "callee": "+639170000200"}
    p.stop_task(tid)
    assert hits(sim, "operation")[0].json() == {"task_id": tid, "operation": "stop"}


def test_header_auth_and_redelivery(sim, receiver):
    sim.settings["webhookAuth"] = "header"
    sim.dialing.answer_rate = 1.0
    receiver.status = 500  # the first delivery fails: AIRUDDER pushes again
    p = make(sim, receiver, webhookAuth="header")
    wid = p.create_task(TaskSpec(name="hdr"))
    p.add_contacts(wid, contacts(1, start=70))
    first = wait_for(lambda: [x for x in receiver.of("/workflow") if json.loads(x.body)["workflow_id"] == wid])
    receiver.status = 200
    both = wait_for(
        lambda: (lambda m: m if len(m) >= 2 else None)(
            [x for x in receiver.of("/workflow") if json.loads(x.body)["workflow_id"] == wid]
        )
    )
    assert first[0].query == {}
    keys = set()
    for push in both:
        p.verify_webhook(push.headers, push.body)
        keys.add(p.parse_webhook(push.headers, push.body)[0].dedup_key)
    assert len(keys) == 1
    with pytest.raises(InvalidSignature):
        p.verify_webhook({"X-Outcall-Token": "hook-s3creT"}, both[0].body)


SEED_PUSH = {
    "workflow_id": "079918b288xxxxxxxx3815e2a8030eb",
    "workflow_name": "test_api_action6",
    "node_id": "f878645926xxxxxxxxb0b779ba254",
    "node_name": "API2",
    "callee": {"case_id": "12345.0", "callee_name": "WILL SMITH", "callee_number": "+861xxxxxxxx5721"},
    "custom_attribute": {"a": "1", "b": "2"},
    "call": {
        "task_id": "b1a9e2ea8xxxxxxxx1551b6454b414b",
        "call_id": "817377d194xxxxxxxxc8ad463bc81d996a",
        "robot_id": "4496",
        "callee_number": "+8618717905721",
        "call_start_time": "2024-03-11 15:58:26",
        "call_end_time": "2024-03-11 15:59:12",
        "call_times": 2,
        "ring_type": "normal",
        "hangup_type": "ByCallee",
        "intention": "E",
        "talk_round": 1,
        "ring_time": 2,
        "multi_label": {"A0": "A0", "Correct_Person": "identity_correct_person"},
        "intention_description": "No Voice",
    },
}


def test_seed_push_parses():
    p = AirudderProvider({**CREDS, "baseUrl": "http://127.0.0.1:9", "timezone": "Asia/Shanghai"})
    body = json.dumps(SEED_PUSH).encode()
    [event] = p.parse_webhook({}, body, "workflow")
    assert event.dedup_key == "airudder:call:817377d194xxxxxxxxc8ad463bc81d996a"
    assert event.provider_task_id == SEED_PUSH["workflow_id"] and event.provider_contact_ref == "12345.0"
    assert event.phone == "+8618717905721" and event.attempt == 2 and event.status == "completed"
    assert event.duration_seconds == 46 and event.started_at.utcoffset().total_seconds() == 8 * 3600
    assert event.intents == ["E", "A0", "identity_correct_person"]
    assert p.parse_webhook({}, body)[0].dedup_key == event.dedup_key


def test_code_10813_in_a_200_answer_also_refreshes(sim, receiver):
    p = make(sim, receiver)
    wid = p.create_task(TaskSpec(name="t10813"))
    sim.answer_next(Reply(200, {"status": "Error", "code": 10813, "message": "token expired"}))
    p.stop_task(wid)
    assert len(hits(sim, "auth")) == 2 and len(hits(sim, "workflow/stop")) == 2
    assert sim.tasks[wid]["status"] == "Stopped"

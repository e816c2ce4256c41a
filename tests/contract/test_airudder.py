"""Contract tests: outcall.providers.airudder against the AIRUDDER simulator over real HTTP, with the
seed's API-node push, byte for byte, as a fixture."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from outcall.errors import Conflict, InvalidSignature, NotSupported, ProviderError, Unprocessable
from outcall.models import ContactSpec
from outcall.providers import airudder as module
from outcall.providers import provider_class
from outcall.providers.airudder import AirudderProvider
from outcall.providers.base import TaskSpec

from local.simulators.airudder import SIMULATOR, AirudderSimulator
from tests.contract.support import FAST, Receiver, wait_for

FIXTURES = Path(__file__).parent / "fixtures"
SEED = Path("/work/shared/seeds/airudder-workflow-api-node-push.txt")
CREDS = {"appKey": "YK/9/key", "appSecret": "l5uz-secret", "webhookSecret": "hook-s3cret", "workflowTemplateId": 77}


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
    server.dialing.talk_seconds = 2
    server.faults.retry_after = 0
    return server


def make(sim: AirudderSimulator, receiver: Receiver, **extra) -> AirudderProvider:
    return AirudderProvider(
        {**CREDS, **FAST, "baseUrl": sim.url, "webhookUrl": receiver.url + "/webhooks/airudder", **extra}
    )


def contacts(n: int, start: int = 0, attempt: int = 1) -> list[ContactSpec]:
    return [ContactSpec(e164=f"+63917{start + i:07d}", release_key=f"rk-{start + i}-{attempt}") for i in range(n)]


def hits(sim: AirudderSimulator, op: str):
    return sim.requests_to(f"/service/cloud/{op}$")


def pushes_of(receiver: Receiver, wid: str):
    return [x for x in receiver.of("/workflow") if json.loads(x.body)["workflow_id"] == wid]


def test_seed_push_byte_for_byte_is_four_attempts_in_utc():
    raw = (FIXTURES / "airudder_api_node_push.json").read_bytes()
    assert raw.decode("utf-8") in SEED.read_text(encoding="utf-8")
    p = AirudderProvider({**CREDS, "baseUrl": "http://127.0.0.1:9"})
    events = p.parse_webhook({}, raw, "workflow")
    assert [e.attempt for e in events] == [1, 2, 3, 4]
    assert [e.provider_call_id for e in events] == [
        "4edf1697f7bxxxxxxxx65bca97f996bb",
        "001453803xxxxxxxxcc53b4a3b9db",
        "04b6d8d97xxxxxxxx6b16db252a1dad8",
        "817377d194xxxxxxxxc8ad463bc81d996a",
    ]
    call = events[-1]
    # +8618717905721 is a mainland number: its local times are Asia/Shanghai (UTC+8)
    assert call.started_at == datetime(2024, 3, 11, 7, 58, 26, tzinfo=UTC)
    assert call.ended_at == datetime(2024, 3, 11, 7, 59, 12, tzinfo=UTC)
    assert call.status == "completed" and call.answered_at == call.started_at and call.duration_seconds == 46
    assert call.hangup_cause == "callee-hangup" and call.raw["call"]["hangup_type"] == "ByCallee"
    assert call.provider_task_id == "079918b288xxxxxxxx3815e2a8030eb" and call.provider_contact_ref == "12345.0"
    assert call.phone == "+8618717905721" and call.dedup_key == "airudder:call:817377d194xxxxxxxxc8ad463bc81d996a"
    assert call.intents[0] == "E"
    first = events[0]
    assert first.status == "no-answer" and first.answered_at is None and first.intents == ["F"]
    assert first.started_at == datetime(2024, 3, 5, 8, 15, 53, tzinfo=UTC)  # the same callee: Asia/Shanghai
    assert provider_class("airudder") is AirudderProvider and AirudderProvider.capabilities.pause is False


def test_unanswered_push_has_equal_start_and_end_and_is_not_answered():
    raw = json.loads((FIXTURES / "airudder_api_node_push.json").read_text(encoding="utf-8"))
    raw["call"].update(call_end_time=raw["call"]["call_start_time"], ring_type="busy", redial_call=[])
    p = AirudderProvider({**CREDS, "baseUrl": "http://127.0.0.1:9", "calleeTimezone": "Asia/Manila"})
    [event] = p.parse_webhook({}, json.dumps(raw).encode(), "workflow")
    assert event.status == "busy" and event.answered_at is None and event.duration_seconds == 0
    assert event.hangup_cause == "busy" and event.attempt == 2  # call_times without a redial list
    raw["call"]["hangup_type"] = "Canceled"
    assert p.parse_webhook({}, json.dumps(raw).encode(), "workflow")[0].status == "canceled"


def test_create_instance_sends_an_integer_template_and_end_time(sim, receiver):
    p = make(sim, receiver, timezone="Asia/Manila")
    stop = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)
    wid = p.create_task(TaskSpec(name="collect-1", auto_stop_at=stop, provider_options={"workflow_template_id": 9}))
    body = hits(sim, "workflow/createinstance")[0].json()
    assert body == {"workflow_template_id": 9, "name": "collect-1", "end_time": "2031-05-01 20:00:00"}
    assert sim.workflows[wid]["template"] == 9
    other = p.create_task(TaskSpec(name="collect-2"))  # the account's template, end_time defaulted
    assert hits(sim, "workflow/createinstance")[1].json()["workflow_template_id"] == 77 and other
    with pytest.raises(Conflict):
        p.create_task(TaskSpec(name="collect-1"))


def test_create_without_a_template_is_422_and_the_simulator_refuses_a_string_one(sim, receiver):
    p = make(sim, receiver, workflowTemplateId=None)
    with pytest.raises(Unprocessable) as err:
        p.create_task(TaskSpec(name="x"))
    assert "workflow_template_id" in err.value.message and not hits(sim, "workflow/createinstance")
    token = requests.post(
        f"{sim.url}/service/cloud/auth", json={"APPKey": CREDS["appKey"], "APPSecret": CREDS["appSecret"]}, timeout=5
    )
    auth = {"Authorization": f"Token {token.json()['data']['token']}"}
    body = {"workflow_template_id": "77", "name": "y", "end_time": "2031-01-01 00:00:00"}
    answer = requests.post(f"{sim.url}/service/cloud/workflow/createinstance", json=body, headers=auth, timeout=5)
    assert answer.status_code == 400 and not sim.workflows
    missing_end = requests.post(
        f"{sim.url}/service/cloud/workflow/createinstance",
        json={"workflow_template_id": 77, "name": "z"},
        headers=auth,
        timeout=5,
    )
    assert missing_end.status_code == 400


def test_contacts_are_dialled_and_pushed_with_the_secret(sim, receiver):
    sim.dialing.answer_rate = 1.0
    p = make(sim, receiver)
    wid = p.create_task(TaskSpec(name="dial"))
    p.start_task(wid)  # no-op: nothing sent
    outcomes = p.add_contacts(wid, contacts(2))
    assert all(o.accepted and not o.already_held for o in outcomes)
    detail = hits(sim, "workflow/uploaddetails")[0].json()["details"][0]
    assert detail["case_id"] == "rk-0-1" and detail["callee"] == "+639170000000"
    got = wait_for(lambda: pushes_of(receiver, wid) if len(pushes_of(receiver, wid)) == 2 else None)
    for push in got:
        assert push.query["token"] == ["hook-s3cret"]
        p.verify_webhook(push.headers, push.body, "workflow", push.query)
    with pytest.raises(InvalidSignature):
        p.verify_webhook(got[0].headers, got[0].body, "workflow", {"token": ["wrong"]})
    events = [e for x in got for e in p.parse_webhook(x.headers, x.body, "workflow")]
    assert {e.status for e in events} == {"completed"} and {e.duration_seconds for e in events} == {2}
    # the push says Manila local time; the event is UTC, at most a few seconds from now
    assert all(abs((datetime.now(UTC) - e.started_at).total_seconds()) < 30 for e in events if e.started_at)


def test_redials_of_a_round_are_attempts_with_their_own_call_ids(sim, receiver):
    sim.dialing.answer_rate, sim.dialing.busy_rate = 0.0, 1.0
    sim.settings["redialTimes"] = 2
    p = make(sim, receiver)
    wid = p.create_task(TaskSpec(name="redial"))
    p.add_contacts(wid, contacts(1, start=10))
    push = wait_for(lambda: pushes_of(receiver, wid))[0]
    events = p.parse_webhook(push.headers, push.body, "workflow")
    assert [e.attempt for e in events] == [1, 2, 3] and len({e.provider_call_id for e in events}) == 3
    assert {e.status for e in events} == {"busy"} and all(e.provider_contact_ref == "rk-10-1" for e in events)


def test_a_batch_sent_again_is_already_held(sim, receiver):
    p = make(sim, receiver)
    wid = p.create_task(TaskSpec(name="again"))
    sim.dialing.ring_seconds = 5  # nothing dialled during the test
    p.add_contacts(wid, contacts(2, start=20))
    again = p.add_contacts(wid, contacts(2, start=20))
    assert all(o.accepted and o.already_held for o in again)
    sent = hits(sim, "workflow/detailinstances")[0].json()
    assert sent["case_id"] == "rk-20-1" and sent["start_time"] and sent["end_time"]
    bad = p.add_contacts(wid, [ContactSpec(e164="+6391712345678901", release_key="rk-bad")])
    assert not bad[0].accepted and bad[0].reason.startswith("invalid: code 10510")
    assert p.cancel_contacts(wid, ["rk-20-1", "nobody"]) == ["rk-20-1"]
    assert sim.workflows[wid]["contacts"]["rk-20-1"]["state"] == "canceled"
    with pytest.raises(NotSupported):
        p.pause_task(wid)


def test_poll_task_finds_calls_whose_push_never_arrived(sim, receiver):
    receiver.status = 500
    sim.settings["pushRetrySeconds"] = 60
    sim.dialing.answer_rate = 1.0
    p = make(sim, receiver, pollPageSize=2)
    wid = p.create_task(TaskSpec(name="lost"))
    p.add_contacts(wid, contacts(3, start=30))
    wait_for(lambda: len(sim.rows) == 3)
    first = p.poll_task(wid, None)
    second = p.poll_task(wid, first.cursor)
    assert first.more and not second.more
    refs = sorted(e.provider_contact_ref or "" for e in first.events + second.events)
    assert refs == ["rk-30-1", "rk-31-1", "rk-32-1"]
    assert {e.dedup_key for e in first.events + second.events} == {f"airudder:call:{r['call_id']}" for r in sim.rows}


def test_expired_token_is_refreshed_once_and_stop_is_sent(sim, receiver):
    p = make(sim, receiver)
    wid = p.create_task(TaskSpec(name="tok"))
    sim.expire_tokens()
    p.stop_task(wid)
    assert len(hits(sim, "auth")) == 2 and sim.workflows[wid]["status"] == "Stopped"
    p.delete_task(wid)  # already stopped: tolerated
    with pytest.raises(ProviderError):
        make(sim, receiver, appKey="other", appSecret="wrong").create_task(TaskSpec(name="nope"))

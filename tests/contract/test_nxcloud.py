"""Contract tests: outcall.providers.nxcloud against the NXCLOUD simulator over real HTTP, with the
documents' own examples as fixtures (the seed's importBatchCall request and answer, byte for byte; the
wiki's sample keys for the signature)."""

from __future__ import annotations

import gzip
import hashlib
import json
import time
import uuid
from datetime import UTC, datetime
from datetime import time as dtime
from pathlib import Path

import pytest
import requests
from outcall.errors import InvalidSignature, ProviderError, Unprocessable
from outcall.models import CallingWindow, ContactSpec, TaskLifecycleEvent
from outcall.providers import provider_class
from outcall.providers.base import TaskSpec
from outcall.providers.nxcloud import NxcloudProvider, compute_sign

from local.simulators.nxcloud import SIMULATOR, NxcloudSimulator
from tests.contract.support import FAST, Receiver, wait_for

FIXTURES = Path(__file__).parent / "fixtures"
SEED = Path("/work/shared/seeds/nxcloud-callbot-import-batch-call.txt")
# Callbot-API-authorization: "The following are sample keys and UID."
WIKI_SECRET = "u7Mf3zUNOkg4lMV9a0E6cHSgIkK22GSr"
WIKI_UID = "Vh71ym3yQwWSYZFpqkFwTskGXUbSxDtR"
CREDS = {"appKey": WIKI_UID, "secretKey": WIKI_SECRET}
SCENE = {"sceneID": "scene-7"}


@pytest.fixture(scope="module")
def server():
    s = SIMULATOR(port=0, settings={}).start()
    yield s
    s.stop()


@pytest.fixture
def sim(server, receiver):
    server.reset()
    server.settings.clear()
    server.settings.update(CREDS)
    server.dialing.ring_seconds = 0.03
    server.dialing.talk_seconds = 1
    server.faults.retry_after = 0
    return server


def make(sim: NxcloudSimulator, receiver: Receiver, **extra) -> NxcloudProvider:
    settings = {**CREDS, **FAST, **SCENE, "baseUrl": sim.url, "webhookUrl": receiver.url + "/webhooks/nxcloud", **extra}
    return NxcloudProvider(settings)


def contacts(n: int, start: int = 0, attempt: int = 1) -> list[ContactSpec]:
    return [
        ContactSpec(
            e164=f"+86138{start + i:08d}", name=f"c{i}", release_key=f"rk-{start + i}-{attempt}", attempt=attempt
        )
        for i in range(n)
    ]


def ops(sim: NxcloudSimulator, op: str):
    return sim.requests_to(f"/callcentre/api/v3/{op}$")


def signed(body: str, secret: str = WIKI_SECRET, uid: str = WIKI_UID, algorithm: str | None = None) -> dict[str, str]:
    request_id, ts = uuid.uuid4().hex, str(int(time.time()))
    headers = {"uuid": uid, "requestID": request_id, "createTs": ts}
    headers["sign"] = compute_sign(secret, body, ts, request_id, uid, algorithm or "MD5")
    if algorithm:
        headers["algorithm"] = algorithm
    return headers


def test_signature_is_the_wiki_formula_with_its_sample_keys():
    """Callbot-API-authorization's Python sample: pre_sign = secretkey + "&body=" + json.dumps(body) +
    "&createTs=" + ts + "&requestID=" + requestId + "&uuid=" + uid; sign = md5(pre_sign).upper()."""
    body = {"customerId": "1234", "appKey": "xxxxxx", "status": 1}  # the page's sample body
    ts, request_id = "1700000000", "0f3c3b1e2a4d4c5b8e9f0a1b2c3d4e5f"
    pre_sign = WIKI_SECRET + "&body=" + json.dumps(body) + "&createTs=" + ts + "&requestID=" + request_id
    pre_sign += "&uuid=" + WIKI_UID
    documented = hashlib.md5(pre_sign.encode("utf-8")).hexdigest().upper()
    assert compute_sign(WIKI_SECRET, json.dumps(body), ts, request_id, WIKI_UID) == documented
    sha = hashlib.sha256(pre_sign.encode("utf-8")).hexdigest().upper()
    assert compute_sign(WIKI_SECRET, json.dumps(body), ts, request_id, WIKI_UID, "SHA256") == sha
    with pytest.raises(ValueError):
        compute_sign(WIKI_SECRET, "{}", ts, request_id, WIKI_UID, "SHA1")
    assert provider_class("nxcloud") is NxcloudProvider


def test_seed_example_request_is_taken_and_answered_in_the_seed_shape(sim, receiver):
    """The seed's importBatchCall body, byte for byte (userTaskID "string"), signed as the wiki says."""
    p = make(sim, receiver)
    sim.tasks["string"] = {
        "userTaskID": "string", "taskID": "t", "sceneID": "s", "status": 1, "createTs": 0,
        "setting": {}, "funcFlag": {}, "taskCallbackUrl": None, "orders": [],
    }  # fmt: skip
    raw = (FIXTURES / "nxcloud_import_batch_call_request.json").read_text(encoding="utf-8")
    assert raw in SEED.read_text(encoding="utf-8")
    answer = requests.post(
        f"{sim.url}/callcentre/api/v3/importBatchCall", data=raw.encode(), headers=signed(raw), timeout=5
    )
    seed_answer = json.loads((FIXTURES / "nxcloud_import_batch_call_response.json").read_text(encoding="utf-8"))
    body = answer.json()
    assert set(body) == set(seed_answer) and body["retCode"] == 0
    assert body["totalCount"] == 1 and body["successCount"] == 0  # "string" is no phone number
    assert set(body["errList"][0]) == set(seed_answer["errList"][0]) and body["errList"][0]["phone"] == "string"
    # the answer is signed like the request (response-header table)
    p._verify_response("importBatchCall", answer.headers, answer.text)


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        (lambda b: {k: v for k, v in signed(b).items() if k != "sign"}, 6001),
        (lambda b: {k: v for k, v in signed(b).items() if k != "createTs"}, 2),
        (lambda b: signed(b, uid="someone-else"), 6002),
        (lambda b: signed(b, secret="wrong"), 6),
        (lambda b: {**signed(b), "algorithm": "SHA1"}, 3),
    ],
)
def test_simulator_refuses_badly_signed_requests_with_the_documented_codes(sim, headers, code):
    body = json.dumps({"productID": "callbot", "page": 1, "size": 10, "queryConditions": {}})
    answer = requests.post(f"{sim.url}/callcentre/api/v3/listTask", data=body, headers=headers(body), timeout=5)
    assert answer.json()["retCode"] == code


def test_create_task_sends_scene_and_nested_settings(sim, receiver):
    p = make(sim, receiver)
    window = CallingWindow(timezone="Asia/Shanghai", start=dtime(9, 0), end=dtime(20, 30), weekdays=[1, 2, 3])
    spec = TaskSpec(
        name="renewals",
        concurrency=3,
        ring_timeout_seconds=40,
        calling_window=window,
        provider_options={"sceneID": "scene-9", "taskCreateSetting": {"routeID": "r1"}},
    )
    tid = p.create_task(spec)
    body = ops(sim, "createTask")[0].json()
    assert body["productID"] == "callbot" and body["userTaskID"] == tid and body["sceneID"] == "scene-9"
    setting = body["taskCreateSetting"]
    assert setting["taskName"] == "renewals" and setting["maxCall"] == 3 and setting["maxRingTime"] == 40
    assert setting["zoneSecond"] == 8 * 3600 and setting["dialAtWeekDay"] == "1,2,3"
    assert (setting["dialAtUpHour"], setting["dialAtDownHour"]) == ("09:00", "20:30") and setting["routeID"] == "r1"
    assert setting["taskCallbackUrl"].endswith("/webhooks/nxcloud/task")
    assert body["funcFlag"] == {"roundRedial": False, "taskKeep": True}  # outcall redials itself, in waves
    assert not {"taskName", "concurrency", "ringTimeout", "maxCall"} & set(body)
    assert sim.tasks[tid]["sceneID"] == "scene-9" and sim.tasks[tid]["status"] == 1
    # the account's sceneID serves when the task names none
    other = p.create_task(TaskSpec(name="plain"))
    assert sim.tasks[other]["sceneID"] == "scene-7"


def test_create_task_without_any_scene_is_422_and_sends_nothing(sim, receiver):
    p = make(sim, receiver, sceneID="")
    with pytest.raises(Unprocessable) as err:
        p.create_task(TaskSpec(name="x"))
    assert "settings.providerOptions.sceneID" in err.value.message
    assert not ops(sim, "createTask")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"userTaskID": "u1", "taskCreateSetting": {"taskName": "n"}}, 2),  # no sceneID
        ({"userTaskID": "u2", "sceneID": "s", "taskName": "n", "concurrency": 3}, 3),  # flat settings
        ({"userTaskID": "u3", "sceneID": "s", "taskCreateSetting": {"maxCall": "3"}}, 3),  # wrong type
    ],
)
def test_simulator_refuses_create_task_bodies_the_document_does_not_allow(sim, body, code):
    text = json.dumps({"productID": "callbot", **body})
    answer = requests.post(f"{sim.url}/callcentre/api/v3/createTask", data=text, headers=signed(text), timeout=5)
    assert answer.json()["retCode"] == code and not sim.tasks


def test_update_task_changes_only_its_two_objects_and_only_when_allowed(sim, receiver):
    p = make(sim, receiver)
    tid = p.create_task(TaskSpec(name="a"))
    p.update_task(tid, TaskSpec(name="b", concurrency=5))
    sent = ops(sim, "updateTask")[0].json()
    assert set(sent) == {"productID", "userTaskID", "taskCreateSetting", "funcFlag"}
    assert sim.tasks[tid]["setting"]["taskName"] == "b" and sim.tasks[tid]["setting"]["maxCall"] == 5
    p.start_task(tid)
    with pytest.raises(ProviderError) as err:
        p.update_task(tid, TaskSpec(name="c"))
    assert err.value.provider_code == 4 and not err.value.retryable
    p.pause_task(tid)
    p.update_task(tid, TaskSpec(name="c"))
    p.stop_task(tid)
    assert [r.json()["taskOperate"] for r in ops(sim, "mgrTaskStatus")] == [1, 2, 3]
    assert sim.tasks[tid]["status"] == 3
    p.delete_task(tid)  # already completed: tolerated


def test_ping_sends_data_and_reads_code(sim, receiver):
    p = make(sim, receiver)
    assert p.ping() is True
    sent = ops(sim, "ping")[0].json()
    assert set(sent) == {"data"}
    with pytest.raises(ProviderError) as err:
        make(sim, receiver, secretKey="wrong").ping()
    assert err.value.provider_code == 6


def test_sha256_account_signs_requests_and_callbacks_with_sha256(sim, receiver):
    sim.settings["algorithm"] = "SHA256"
    sim.dialing.answer_rate = 1.0
    p = make(sim, receiver, algorithm="SHA256", gzip=True)
    tid = p.create_task(TaskSpec(name="zip"))
    req = ops(sim, "createTask")[0]
    h = {k.lower(): v for k, v in req.headers.items()}
    text = gzip.decompress(req.body).decode()
    assert h["algorithm"] == "SHA256" and h["content-encoding"] == "gzip"
    assert h["sign"] == compute_sign(WIKI_SECRET, text, h["createts"], h["requestid"], WIKI_UID, "SHA256")
    p.add_contacts(tid, contacts(1, start=50))
    p.start_task(tid)
    push = wait_for(lambda: [x for x in receiver.of("/call") if json.loads(x.body)["userTaskID"] == tid])[0]
    assert "algorithm" not in {k.lower() for k in push.headers}
    p.verify_webhook(push.headers, push.body)  # verified with the account's SHA256
    with pytest.raises(InvalidSignature):
        make(sim, receiver).verify_webhook(push.headers, push.body)  # an MD5 account would refuse it


def test_contacts_added_to_a_running_task_are_dialled_and_their_callbacks_parse(sim, receiver):
    sim.dialing.answer_rate = 1.0
    p = make(sim, receiver)
    # not kept open: the task finishes when its orders end, and says so in its task callback
    tid = p.create_task(TaskSpec(name="cb", provider_options={"funcFlag": {"taskKeep": False}}))
    p.start_task(tid)
    outcomes = p.add_contacts(tid, contacts(2, start=100))
    assert all(o.accepted and not o.already_held for o in outcomes)
    sent = ops(sim, "addBatchCall")[0].json()["callInfoList"]
    assert sent["callList"][0]["orderID"] == "rk-100-1" and sent["callList"][0]["userPhone"] == "8613800000100"
    assert sent["callCallbackUrl"].endswith("/call") and sent["orderCallbackUrl"].endswith("/order")
    calls = wait_for(
        lambda: (lambda got: got if len(got) == 2 else None)(
            [x for x in receiver.of("/call") if json.loads(x.body)["userTaskID"] == tid]
        )
    )
    for push in calls:
        p.verify_webhook(push.headers, push.body)
    events = [e for x in calls for e in p.parse_webhook(x.headers, x.body, "call")]
    assert {e.status for e in events} == {"completed"} and {e.provider_contact_ref for e in events} <= {
        "rk-100-1",
        "rk-101-1",
    }
    e = events[0]
    assert e.recording_url and e.recording_url.endswith(f"{e.provider_call_id}.mp3")
    assert e.hangup_cause == "normal-clearing" and e.duration_seconds == 1 and e.intents == ["A"]
    assert e.started_at and e.started_at.tzinfo == UTC and e.answered_at and e.ended_at
    assert e.dedup_key == f"nxcloud:call:{e.provider_call_id}" and e.raw["callInfoDetail"]["callAudioUrl"]
    orders = wait_for(lambda: [x for x in receiver.of("/order") if json.loads(x.body)["userTaskID"] == tid][:2])
    order_event = p.parse_webhook(orders[0].headers, orders[0].body, "order")[0]
    assert order_event.dedup_key in {ev.dedup_key for ev in events}  # order push = its last call
    task_push = wait_for(
        lambda: [
            x
            for x in receiver.of("/task")
            if json.loads(x.body)["userTaskID"] == tid and json.loads(x.body)["taskStatus"] == 3
        ]
    )[0]
    [task_event] = p.parse_webhook(task_push.headers, task_push.body, "task")
    assert isinstance(task_event, TaskLifecycleEvent) and task_event.status == "completed"
    assert task_event.raw["taskStat"]["finishOrderCount"] == 2 and task_event.raw["taskStat"]["totalOrderCount"] == 2


def test_busy_call_is_busy_with_its_cause(sim, receiver):
    sim.dialing.answer_rate, sim.dialing.busy_rate = 0.0, 1.0
    p = make(sim, receiver)
    tid = p.create_task(TaskSpec(name="busy"))
    p.add_contacts(tid, contacts(1, start=300))
    p.start_task(tid)
    push = wait_for(lambda: [x for x in receiver.of("/call") if json.loads(x.body)["userTaskID"] == tid])[0]
    [event] = p.parse_webhook(push.headers, push.body, "call")
    assert event.status == "busy" and event.hangup_cause == "busy" and event.answered_at is None
    assert event.raw["callInfoDetail"]["hangupCause"] == "USER_BUSY" and event.recording_url is None


def test_a_batch_sent_again_is_already_held_not_rejected(sim, receiver):
    p = make(sim, receiver)
    tid = p.create_task(TaskSpec(name="again"))
    first = p.add_contacts(tid, contacts(3, start=400))
    again = p.add_contacts(tid, contacts(3, start=400))
    assert all(o.accepted and not o.already_held for o in first)
    assert all(o.accepted and o.already_held for o in again)
    assert [o.provider_ref for o in again] == ["rk-400-1", "rk-401-1", "rk-402-1"]
    assert ops(sim, "listOrderDetail")[0].json()["orderList"] == ["rk-400-1", "rk-401-1", "rk-402-1"]
    # a retry is a new release key: the same number is taken again as a new order
    retry = p.add_contacts(tid, contacts(1, start=400, attempt=2))
    assert retry[0].accepted and not retry[0].already_held and len(sim.tasks[tid]["orders"]) == 4
    bad = p.add_contacts(tid, [ContactSpec(e164="+12", release_key="rk-bad")])
    assert not bad[0].accepted and bad[0].reason.startswith("invalid")
    # another number under an order id the task holds is not that release: a plain rejection
    clash = p.add_contacts(tid, [ContactSpec(e164="+8613900000000", release_key="rk-400-1")])
    assert not clash[0].accepted and not clash[0].already_held and clash[0].reason.startswith("duplicate")


def test_round_redial_rounds_are_attempts_and_reconciliation_finds_them(sim, receiver):
    sim.dialing.answer_rate = 0.0
    sim.dialing.busy_rate = 0.0
    sim.settings["redialRounds"] = 2
    p = make(sim, receiver)
    tid = p.create_task(TaskSpec(name="rounds", provider_options={"funcFlag": {"roundRedial": True}}))
    assert ops(sim, "createTask")[0].json()["funcFlag"]["roundRedial"] is True
    p.add_contacts(tid, contacts(1, start=500))
    p.start_task(tid)
    wait_for(lambda: sim.orders["rk-500-1"]["finish"], timeout=5)
    events = p.reconcile_orders(tid, ["rk-500-1"])
    assert [e.attempt for e in events] == [1, 2, 3]
    assert len({e.provider_call_id for e in events}) == 3 and {e.status for e in events} == {"no-answer"}
    mine = wait_for(
        lambda: (lambda got: got if len(got) == 3 else None)(
            [x for x in receiver.of("/call") if json.loads(x.body)["userTaskID"] == tid]
        )
    )
    pushed = {p.parse_webhook(x.headers, x.body, "call")[0].dedup_key for x in mine}
    assert {e.dedup_key for e in events} == pushed  # a push that did arrive is the same record


def test_cancel_contacts_stops_orders_not_yet_dialled(sim, receiver):
    p = make(sim, receiver)
    tid = p.create_task(TaskSpec(name="stop"))
    p.add_contacts(tid, contacts(2, start=600))
    stopped = p.cancel_contacts(tid, ["rk-600-1", "nobody"])
    assert stopped == ["rk-600-1"] and sim.orders["rk-600-1"]["state"] == "stopped"
    assert ops(sim, "stopOrder")[0].json()["orderIDs"] == ["rk-600-1", "nobody"]
    p.start_task(tid)
    wait_for(lambda: sim.orders["rk-601-1"]["finish"])
    assert not sim.orders["rk-600-1"]["calls"]  # a stopped order is never dialled


def test_poll_results_reconciles_calls_whose_push_never_arrived(sim, receiver):
    receiver.status = 500  # every push is lost
    sim.dialing.answer_rate = 1.0
    try:
        p = make(sim, receiver, pollPageSize=2)
        tid = p.create_task(TaskSpec(name="lost"))
        p.add_contacts(tid, contacts(3, start=700))
        p.start_task(tid)
        wait_for(lambda: len([c for c in sim.calls if c["userTaskID"] == tid]) == 3)
        cursor, found = None, []
        for _ in range(10):
            page = p.poll_results(cursor)
            found += page.events
            cursor = page.cursor
            if not page.more:
                break
        assert sorted(e.provider_contact_ref or "" for e in found) == ["rk-700-1", "rk-701-1", "rk-702-1"]
        assert {e.dedup_key for e in found} == {f"nxcloud:call:{c['callInfoDetail']['callID']}" for c in sim.calls}
        assert ops(sim, "listTask")[0].json()["queryConditions"]["taskStatus"] == [2, 3, 5]
        sent = ops(sim, "listCall")[0].json()
        assert set(sent) == {"productID", "userTaskID", "options", "page", "size"} and sent["size"] == 2
        # the next poll starts where this one ended (minus the overlap): nothing new, nothing lost
        later = p.poll_results(cursor)
        assert json.loads(later.cursor)["until"] >= json.loads(cursor)["until"]
    finally:
        receiver.status = 200


def test_batch_over_the_limit_is_4001_and_1001_is_waited_out(sim, receiver):
    p = make(sim, receiver, batchSize=600)
    tid = p.create_task(TaskSpec(name="big"))
    with pytest.raises(ProviderError) as err:
        p.add_contacts(tid, contacts(501))
    assert err.value.provider_code == 4001 and not err.value.retryable
    sim.settings["importBusySeconds"] = 0.2
    q = make(sim, receiver, importMode="import", importBusyDelay=0.1)
    q.add_contacts(tid, contacts(2, start=800))
    outcomes = q.add_contacts(tid, contacts(2, start=810))
    assert all(o.accepted for o in outcomes) and len(ops(sim, "importBatchCall")) >= 3


def test_response_signature_is_checked(sim, receiver):
    p = make(sim, receiver)
    sim.tamper_responses = True
    with pytest.raises(ProviderError) as err:
        p.create_task(TaskSpec(name="t"))
    assert err.value.provider_code == "bad-signature"
    sim.tamper_responses = False
    sim.settings["signResponses"] = False
    with pytest.raises(ProviderError) as err:
        p.create_task(TaskSpec(name="u"))
    assert err.value.provider_code == "unsigned"


def test_5xx_and_429_are_retried_4xx_is_not(sim, receiver):
    p = make(sim, receiver)
    sim.faults.fail_next = 2
    p.create_task(TaskSpec(name="flaky"))
    assert len(ops(sim, "createTask")) == 3
    sim.faults.throttle_next = 1
    assert p.ping() is True
    sim.faults.fail_next = 10
    with pytest.raises(ProviderError) as err:
        p.ping()
    assert err.value.retryable and err.value.provider_code == 500


def test_callback_signature_and_age_are_enforced(sim, receiver):
    p = make(sim, receiver)
    payload = {
        "callbackType": 1,
        "orderID": "o1",
        "userPhone": "8613800000000",
        "userTaskID": "t",
        "finish": True,
        "callInfoDetail": {"callID": "c1", "callStartTs": 1700000000, "callAnswerTs": 0, "callEndTs": 1700000010},
    }
    body, headers = sim.signed_push(payload)
    p.verify_webhook(headers, body)
    with pytest.raises(InvalidSignature):
        p.verify_webhook(headers, body.replace(b"c1", b"c2"))
    with pytest.raises(InvalidSignature):
        p.verify_webhook({**headers, "uuid": "other"}, body)
    stale = {**headers, "createTs": str(int(time.time()) - 3600)}
    stale["sign"] = compute_sign(WIKI_SECRET, body.decode(), stale["createTs"], stale["requestID"], WIKI_UID)
    with pytest.raises(InvalidSignature):
        p.verify_webhook(stale, body)
    p.verify_webhook({**headers, "Content-Encoding": "gzip"}, gzip.compress(body))
    [event] = p.parse_webhook(headers, body, "call")
    assert event.status == "no-answer" and event.started_at == datetime.fromtimestamp(1700000000, UTC)

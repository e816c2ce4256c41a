"""Contract tests: outcall.providers.nxcloud against the NXCLOUD simulator over real HTTP."""

from __future__ import annotations

import gzip
import hashlib
import json
import time

import pytest
from outcall.errors import InvalidSignature, ProviderError
from outcall.models import CallEvent, ContactSpec, TaskLifecycleEvent
from outcall.providers import provider_class
from outcall.providers.base import TaskSpec
from outcall.providers.nxcloud import NxcloudProvider, compute_sign

from local.simulators.base import Reply
from local.simulators.nxcloud import SIMULATOR, NxcloudSimulator
from tests.contract.support import FAST, Receiver, wait_for

CREDS = {"appKey": "acct-123", "secretKey": "s3cr3t-key"}


@pytest.fixture(scope="module")
def server(receiver):
    s = SIMULATOR(port=0, settings={}).start()
    yield s
    s.stop()


@pytest.fixture
def sim(server, receiver):
    server.reset()
    server.settings.clear()
    server.settings.update({**CREDS, "webhookUrl": receiver.url + "/webhooks/nxcloud"})
    server.webhook_url = server.settings["webhookUrl"]
    server.dialing.ring_seconds = 0.05
    server.dialing.talk_seconds = 0
    server.faults.retry_after = 0
    return server


def make(sim: NxcloudSimulator, receiver: Receiver, **extra) -> NxcloudProvider:
    settings = {**CREDS, **FAST, "baseUrl": sim.url, "webhookUrl": receiver.url + "/webhooks/nxcloud", **extra}
    return NxcloudProvider(settings)


def contacts(n: int, start: int = 0) -> list[ContactSpec]:
    return [ContactSpec(e164=f"+86138{start + i:08d}", name=f"c{i}") for i in range(n)]


def ops(sim: NxcloudSimulator, op: str):
    return sim.requests_to(f"/callcentre/api/v3/{op}$")


def test_registry_and_signature_formula():
    assert provider_class("nxcloud") is NxcloudProvider
    raw = "k&body={}&createTs=1&requestID=r&uuid=u"
    assert compute_sign("k", "{}", "1", "r", "u") == hashlib.md5(raw.encode()).hexdigest().upper()
    assert compute_sign("k", "{}", "1", "r", "u", "SHA256") == hashlib.sha256(raw.encode()).hexdigest().upper()
    with pytest.raises(ValueError):
        compute_sign("k", "{}", "1", "r", "u", "SHA1")


def test_task_lifecycle_is_signed_and_reaches_the_provider(sim, receiver):
    p = make(sim, receiver)
    tid = p.create_task(TaskSpec(name="renewals", concurrency=3, provider_options={"robotID": "bot-7"}))
    assert sim.tasks[tid]["status"] == 1
    created = ops(sim, "createTask")[0]
    body = created.json()
    assert body["productID"] == "callbot" and body["userTaskID"] == tid
    assert body["taskName"] == "renewals" and body["robotID"] == "bot-7" and body["concurrency"] == 3
    assert body["callCallbackUrl"].endswith("/webhooks/nxcloud/call")
    h = {k.lower(): v for k, v in created.headers.items()}
    assert h["uuid"] == "acct-123" and h["algorithm"] == "MD5"
    assert h["sign"] == compute_sign("s3cr3t-key", created.body.decode(), h["createts"], h["requestid"], "acct-123")

    p.update_task(tid, TaskSpec(name="renewals-2"))  # not started yet: allowed
    assert sim.tasks[tid]["config"]["taskName"] == "renewals-2"
    p.start_task(tid)
    assert sim.tasks[tid]["status"] == 2
    with pytest.raises(ProviderError) as err:  # running: not allowed
        p.update_task(tid, TaskSpec(name="renewals-3"))
    assert err.value.provider_code == 4 and "paused or not started" in err.value.message
    p.pause_task(tid)
    assert sim.tasks[tid]["status"] == 5
    p.update_task(tid, TaskSpec(name="renewals-3"))
    p.stop_task(tid)
    assert sim.tasks[tid]["status"] == 3
    assert [r.json()["taskOperate"] for r in ops(sim, "mgrTaskStatus")] == [1, 2, 3]
    p.delete_task(tid)  # already completed: tolerated
    with pytest.raises(ProviderError) as err:
        p.pause_task(tid)
    assert err.value.provider_code == 4 and not err.value.retryable
    assert p.ping() is True


def test_duplicate_user_task_id_is_refused(sim, receiver):
    p = make(sim, receiver)
    p.create_task(TaskSpec(name="a", provider_options={"userTaskID": "fixed"}))
    with pytest.raises(ProviderError) as err:
        p.create_task(TaskSpec(name="b", provider_options={"userTaskID": "fixed"}))
    assert err.value.provider_code == 4


def test_sha256_and_gzip_bodies_are_accepted(sim, receiver):
    p = make(sim, receiver, algorithm="SHA256", gzip=True)
    tid = p.create_task(TaskSpec(name="zip"))
    req = ops(sim, "createTask")[0]
    h = {k.lower(): v for k, v in req.headers.items()}
    assert h["content-encoding"] == "gzip" and h["algorithm"] == "SHA256"
    text = gzip.decompress(req.body).decode()
    assert json.loads(text)["userTaskID"] == tid
    assert h["sign"] == compute_sign("s3cr3t-key", text, h["createts"], h["requestid"], "acct-123", "SHA256")


@pytest.mark.parametrize(
    ("override", "code"),
    [({"secretKey": "wrong"}, 6), ({"appKey": "someone-else"}, 6002)],
)
def test_bad_credentials_are_refused_without_retry(sim, receiver, override, code):
    p = make(sim, receiver, **override)
    with pytest.raises(ProviderError) as err:
        p.create_task(TaskSpec(name="x"))
    assert err.value.provider_code == code and not err.value.retryable
    assert len(ops(sim, "createTask")) == 1
    assert not sim.tasks


def test_one_byte_change_to_a_signed_request_is_refused(sim, receiver):
    import requests

    p = make(sim, receiver)
    body = json.dumps({"productID": "callbot", "userTaskID": "t1", "taskName": "n"})
    headers = {"uuid": "acct-123", "requestID": "r1", "createTs": str(int(time.time()))}
    headers["sign"] = p.sign(body, headers["createTs"], "r1")
    tampered = body.replace('"n"', '"m"')
    answer = requests.post(sim.url + "/callcentre/api/v3/createTask", data=tampered, headers=headers, timeout=2)
    assert answer.json()["retCode"] == 6
    answer = requests.post(sim.url + "/callcentre/api/v3/createTask", data=body, headers=headers, timeout=2)
    assert answer.json()["retCode"] == 0
    missing = {k: v for k, v in headers.items() if k != "sign"}
    assert (
        requests.post(sim.url + "/callcentre/api/v3/ping", data="{}", headers=missing, timeout=2).json()["retCode"]
        == 6001
    )


def test_response_signature_is_checked(sim, receiver):
    p = make(sim, receiver)
    sim.tamper_responses = True
    with pytest.raises(ProviderError) as err:
        p.ping()
    assert err.value.provider_code == "bad-signature"
    sim.tamper_responses = False
    sim.settings["signResponses"] = False
    with pytest.raises(ProviderError) as err:
        p.ping()
    assert err.value.provider_code == "unsigned"
    assert make(sim, receiver, verifyResponses=False).ping() is True


def test_contacts_are_split_at_the_batch_limit(sim, receiver):
    p = make(sim, receiver)
    tid = p.create_task(TaskSpec(name="big"))
    outcomes = p.add_contacts_batched(tid, contacts(1201))
    sizes = [len(r.json()["callInfoList"]["callList"]) for r in ops(sim, "importBatchCall")]
    assert sizes == [500, 500, 201]
    assert len(outcomes) == 1201 and all(o.accepted for o in outcomes)
    assert len(sim.tasks[tid]["orders"]) == 1201
    first = ops(sim, "importBatchCall")[0].json()["callInfoList"]["callList"][0]
    assert first["userPhone"] == "8613800000000"  # digits with country code, no '+'
    assert outcomes[0].provider_ref == first["orderID"]


def test_batch_over_the_limit_is_refused_with_4001(sim, receiver):
    p = make(sim, receiver, batchSize=600)
    tid = p.create_task(TaskSpec(name="big"))
    with pytest.raises(ProviderError) as err:
        p.add_contacts(tid, contacts(501))
    assert err.value.provider_code == 4001 and not err.value.retryable
    assert len(ops(sim, "importBatchCall")) == 1


def test_per_contact_rejections(sim, receiver):
    p = make(sim, receiver, importMode="add")
    tid = p.create_task(TaskSpec(name="mixed"))
    p.add_contacts(tid, contacts(1))
    batch = [*contacts(1), ContactSpec(e164="+12"), *contacts(1, start=5)]
    outcomes = p.add_contacts(tid, batch)
    assert [o.accepted for o in outcomes] == [False, False, True]
    assert outcomes[0].reason.startswith("duplicate") and outcomes[1].reason.startswith("invalid")
    assert len(ops(sim, "addBatchCall")) == 2 and not ops(sim, "importBatchCall")


def test_import_running_1001_is_waited_out(sim, receiver):
    sim.settings["importBusySeconds"] = 0.25
    p = make(sim, receiver, importBusyDelay=0.1, batchSize=500)
    tid = p.create_task(TaskSpec(name="busy"))
    outcomes = p.add_contacts_batched(tid, contacts(700))
    assert all(o.accepted for o in outcomes) and len(sim.tasks[tid]["orders"]) == 700
    assert len(ops(sim, "importBatchCall")) > 2  # the second batch met 1001 at least once and was re-sent


def test_import_running_1001_surfaces_as_retryable(sim, receiver):
    sim.settings["importBusySeconds"] = 5
    p = make(sim, receiver, importBusyRetries=1, importBusyDelay=0.01)
    tid = p.create_task(TaskSpec(name="busy"))
    p.add_contacts(tid, contacts(2))
    with pytest.raises(ProviderError) as err:
        p.add_contacts(tid, contacts(2, start=10))
    assert err.value.provider_code == 1001 and err.value.retryable
    assert len(ops(sim, "importBatchCall")) == 3  # first batch, then one 1001 and one re-send


def test_5xx_is_retried_then_succeeds(sim, receiver):
    p = make(sim, receiver)
    sim.faults.fail_next = 2
    p.create_task(TaskSpec(name="flaky"))
    assert len(ops(sim, "createTask")) == 3


def test_5xx_exhausts_retries(sim, receiver):
    p = make(sim, receiver)
    sim.faults.fail_next = 10
    with pytest.raises(ProviderError) as err:
        p.ping()
    assert err.value.retryable and err.value.provider_code == 500
    assert len(ops(sim, "ping")) == 4  # one try + 3 retries


def test_429_is_retried(sim, receiver):
    p = make(sim, receiver)
    sim.faults.throttle_next = 1
    assert p.ping() is True
    assert len(ops(sim, "ping")) == 2


def test_timeouts_are_retried(sim, receiver):
    p = make(sim, receiver, readTimeout=0.2, retries=2)
    sim.faults.timeout_rate = 1.0
    sim.faults.timeout_seconds = 0.4
    with pytest.raises(ProviderError) as err:
        p.ping()
    assert err.value.retryable
    assert len(ops(sim, "ping")) == 3


def test_400_is_not_retried(sim, receiver):
    p = make(sim, receiver)
    sim.answer_next(Reply(400, {"message": "bad request"}))
    with pytest.raises(ProviderError) as err:
        p.ping()
    assert err.value.provider_code == 400 and not err.value.retryable
    assert len(ops(sim, "ping")) == 1


def test_dialing_sends_signed_callbacks_that_parse(sim, receiver):
    sim.dialing.answer_rate = 1.0
    p = make(sim, receiver)
    tid = p.create_task(TaskSpec(name="cb"))
    p.add_contacts(tid, contacts(3, start=100))
    before = len(receiver.pushes)
    p.start_task(tid)
    wait_for(
        lambda: any(
            json.loads(x.body).get("taskStatus") == 3 and json.loads(x.body)["userTaskID"] == tid
            for x in receiver.of("/task")
        )
    )
    mine = receiver.pushes[before:]
    calls = [x for x in mine if x.path.endswith("/call")]
    orders = [x for x in mine if x.path.endswith("/order")]
    assert len(calls) == 3 and len(orders) == 3
    for push in mine:
        p.verify_webhook(push.headers, push.body)
    events = [e for x in calls for e in p.parse_webhook(x.headers, x.body, "call")]
    assert all(isinstance(e, CallEvent) and e.status == "completed" for e in events)
    assert sorted(e.phone for e in events) == ["+8613800000100", "+8613800000101", "+8613800000102"]
    assert all(e.provider_task_id == tid and e.dedup_key.startswith("nxcloud:call:") for e in events)
    assert events[0].answered_at is not None and events[0].intents == ["A"]
    # the same call pushed twice, and its order push, give one dedup key
    again = p.parse_webhook(calls[0].headers, calls[0].body)[0]
    assert again.dedup_key == events[0].dedup_key
    order_keys = {p.parse_webhook(x.headers, x.body, "order")[0].dedup_key for x in orders}
    assert order_keys == {e.dedup_key for e in events}
    tasks = [e for x in mine if x.path.endswith("/task") for e in p.parse_webhook(x.headers, x.body, "task")]
    assert all(isinstance(e, TaskLifecycleEvent) for e in tasks)
    assert [e.status for e in tasks] == ["running", "completed"]
    # polling gives the same calls with the same keys
    page = p.poll_results(None)
    assert {e.dedup_key for e in events} <= {e.dedup_key for e in page.events}


def test_busy_and_unanswered_calls_map_to_statuses(sim, receiver):
    sim.dialing.answer_rate = 0.0
    sim.dialing.busy_rate = 1.0
    p = make(sim, receiver)
    tid = p.create_task(TaskSpec(name="busy"))
    p.add_contacts(tid, contacts(1, start=300))
    p.start_task(tid)
    push = wait_for(lambda: [x for x in receiver.of("/call") if json.loads(x.body)["userTaskID"] == tid])[0]
    event = p.parse_webhook(push.headers, push.body, "call")[0]
    assert event.status == "busy" and event.answered_at is None and event.hangup_cause == "USER_BUSY"


def test_callback_signature_is_enforced(sim, receiver):
    p = make(sim, receiver)
    payload = {
        "orderID": "o1",
        "userPhone": "8613800000000",
        "userTaskID": "t",
        "callInfoDetail": {
            "callID": "c1",
            "callStatus": 2,
            "callStartTs": 1700000000,
            "callAnswerTs": 0,
            "callEndTs": 1700000010,
        },
    }
    body, headers = sim.signed_push(payload)
    p.verify_webhook(headers, body)
    flipped = body.replace(b"c1", b"c2")
    assert len(flipped) == len(body)
    with pytest.raises(InvalidSignature):
        p.verify_webhook(headers, flipped)
    with pytest.raises(InvalidSignature):
        p.verify_webhook({**headers, "uuid": "other"}, body)
    with pytest.raises(InvalidSignature):
        p.verify_webhook({k: v for k, v in headers.items() if k != "sign"}, body)
    stale = {**headers, "createTs": str(int(time.time()) - 3600)}
    stale["sign"] = compute_sign("s3cr3t-key", body.decode(), stale["createTs"], stale["requestID"], "acct-123")
    with pytest.raises(InvalidSignature):
        p.verify_webhook(stale, body)
    # a gzip push is verified over its uncompressed body
    p.verify_webhook({**headers, "Content-Encoding": "gzip"}, gzip.compress(body))
    event = p.parse_webhook(headers, body)[0]
    assert event.status == "no-answer" and event.dedup_key == "nxcloud:call:c1"


def test_stop_orders(sim, receiver):
    p = make(sim, receiver)
    tid = p.create_task(TaskSpec(name="stop"))
    outcomes = p.add_contacts(tid, contacts(2, start=200))
    answer = p.stop_orders(tid, [outcomes[0].provider_ref])
    assert answer["successCount"] == 1
    assert sim.orders[outcomes[0].provider_ref]["status"] == 4
    assert ops(sim, "stopOrder")[0].json()["orderIDs"] == [outcomes[0].provider_ref]

"""Contract tests: outcall.providers.quanshi against the Quanshi simulator over real HTTP."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from outcall.errors import InvalidSignature, NotFound, NotSupported, ProviderError
from outcall.models import Callee, TaskLifecycleEvent
from outcall.providers import provider_class
from outcall.providers import quanshi as module
from outcall.providers.base import TaskSpec
from outcall.providers.quanshi import QuanshiProvider

from local.simulators.base import Reply
from local.simulators.quanshi import SIMULATOR, QuanshiSimulator
from tests.contract.support import FAST, wait_for

CREDS = {"appKey": "qs-app", "appSecret": "qs-secret", "userId": "admin-1", "webhookSecret": "qs-hook"}


@pytest.fixture(scope="module")
def server():
    s = SIMULATOR(port=0, settings={}).start()
    yield s
    s.stop()


@pytest.fixture
def sim(server, receiver):
    server.reset()
    module._TOKENS.clear()
    server.settings.clear()
    server.settings.update({**CREDS, "webhookUrl": receiver.url + "/webhooks/quanshi"})
    server.webhook_url = server.settings["webhookUrl"]
    server.dialing.ring_seconds = 0.02
    server.faults.retry_after = 0
    return server


def make(sim: QuanshiSimulator, **extra) -> QuanshiProvider:
    return QuanshiProvider({**CREDS, **FAST, "baseUrl": sim.url, **extra})


def mobile(n: int, **kw) -> Callee:
    return Callee(name=f"user{n}", company="quanshi.com", country_code="86", mobile=f"1810000{n:04d}", **kw)


def hits(sim: QuanshiSimulator, op: str):
    return sim.requests_to(f"/eventopenapi/{op}$")


def test_registry_and_no_tasks():
    assert provider_class("quanshi") is QuanshiProvider
    p = QuanshiProvider({**CREDS, "baseUrl": "http://127.0.0.1:9"})
    with pytest.raises(NotSupported):
        p.create_task(TaskSpec(name="x"))
    with pytest.raises(NotSupported):
        p.add_contacts("1", [])
    assert p.capabilities.conference_dial and not p.capabilities.tasks


def test_token_headers_and_default_checksum(sim):
    p = make(sim)
    token = p.token()
    req = hits(sim, "token/create")[0]
    h = {k.lower(): v for k, v in req.headers.items()}
    assert req.json() == {"userId": "admin-1"} and h["appkey"] == "qs-app"
    assert h["checksum"] == hashlib.sha1(f"qs-secret{h['nonce']}{h['curtime']}".encode()).hexdigest()
    assert len(h["curtime"]) == 13  # milliseconds
    p.dial_now("542818", [mobile(1)])
    assert hits(sim, "event/call/add")[0].json()["token"] == token
    assert len(hits(sim, "token/create")) == 1


def test_pluggable_checksum(sim):
    sim.settings["checksum"] = "md5"
    with pytest.raises(ProviderError) as err:
        make(sim).token()
    assert err.value.provider_code == 401
    assert make(sim, checksum="md5").token()
    module._TOKENS.clear()
    calls = []

    def custom(secret, nonce, cur_time):
        calls.append(nonce)
        return hashlib.md5(f"{secret}{nonce}{cur_time}".encode()).hexdigest()

    assert QuanshiProvider({**CREDS, **FAST, "baseUrl": sim.url}, checksum=custom).token()
    assert len(calls) == 1
    with pytest.raises(ValueError):
        QuanshiProvider({**CREDS, "baseUrl": sim.url, "checksum": "crc32"})


def test_wrong_secret_and_wrong_user(sim):
    with pytest.raises(ProviderError) as err:
        make(sim, appSecret="nope").dial_now("1", [mobile(1)])
    assert err.value.provider_code == 401 and not hits(sim, "event/call/add")
    with pytest.raises(ProviderError) as err:
        make(sim, userId="intruder").token()
    assert err.value.provider_code == 403


def test_answers_that_are_not_json_or_are_http_errors_name_the_operation(sim):
    p = make(sim)
    sim.answer_next(Reply(200, raw=b"<html>maintenance</html>"))
    with pytest.raises(ProviderError) as err:
        p.token()
    assert "quanshi token/create answered HTTP 200 without a JSON object" in str(err.value)
    sim.answer_next(Reply(400, {"code": 10086, "msg": "bad request"}))
    with pytest.raises(ProviderError) as err:
        p.token()
    assert err.value.provider_code == 10086 and "HTTP 400" in str(err.value)
    assert p.token()  # nothing cached from the failures; the next fetch gets one
    assert len(hits(sim, "token/create")) == 3


def test_expired_token_is_refreshed_once(sim):
    p = make(sim)
    p.dial_now("7", [mobile(1)])
    sim.expire_tokens()
    p.dial_now("7", [mobile(2)])
    adds = hits(sim, "event/call/add")
    assert len(adds) == 3 and len(hits(sim, "token/create")) == 2
    assert adds[1].json()["token"] != adds[2].json()["token"]
    sim.answer_next(Reply(200, {"code": 40001, "msg": "token invalid"}))
    sim.answer_next(Reply(200, {"code": 200, "data": {"token": "bogus"}}))
    sim.answer_next(Reply(200, {"code": 40001, "msg": "token invalid"}))
    with pytest.raises(ProviderError) as err:
        p.dial_now("7", [mobile(3)])
    assert err.value.provider_code == 40001


def test_scheduled_add_maps_each_callee(sim):
    sim.create_event(542818, start_in=3600)
    p = make(sim)
    callees = [
        mobile(1),
        Callee(country_code="86", area_code="10", phone="58512042", role=2),
        mobile(1),
        Callee(country_code="86", mobile="123"),
    ]
    outcomes = p.dial_now("542818", callees, before_minutes=15)
    sent = hits(sim, "event/call/add")[0].json()
    assert sent["eventId"] == 542818 and sent["beforeMinutes"] == 15
    assert sent["callList"][1] == {
        "name": "",
        "company": "",
        "countryCode": "86",
        "mobile": "",
        "areaCode": "10",
        "phone": "58512042",
        "role": 2,
    }
    assert [o.accepted for o in outcomes] == [True, True, False, False]
    assert [o.reason for o in outcomes] == [None, None, "duplicate", "invalid-number"]
    assert outcomes[0].e164 == "+8618100000001" and outcomes[1].e164 == "+861058512042"
    assert outcomes[0].provider_call_id and outcomes[0].provider_call_id == sim.events["542818"]["callees"][0]["id"]
    # a second add keeps the first callees and refuses the repeat
    again = p.dial_now("542818", [mobile(1), mobile(2)], before_minutes=15)
    assert [o.reason for o in again] == ["duplicate", None]
    assert len(sim.events["542818"]["callees"]) == 3


def test_real_time_add_dials_at_once(sim):
    sim.dialing.answer_rate = 1.0
    sim.create_event(9, start_in=-60)
    p = make(sim)
    outcomes = p.dial_now("9", [mobile(5), Callee(country_code="86", mobile="12")], before_minutes=0)
    # realTimeCall.failedData rows name name/company/countryCode/areaCode/number, no errorType
    assert [o.accepted for o in outcomes] == [True, False] and outcomes[1].reason == "failed"
    wait_for(lambda: all(c["state"] == "done" for c in sim.events["9"]["callees"]))
    assert sim.events["9"]["callees"][0]["result"] == "answered"


def test_snake_case_answer_is_parsed(sim):
    sim.settings["answerShape"] = "snake"
    p = make(sim)
    outcomes = p.dial_now("11", [mobile(1), mobile(1)])
    assert [o.reason for o in outcomes] == [None, "duplicate"]
    seed = {
        "total_count": 1,
        "success_count": 0,
        "fail_count": 1,
        "requestId": None,
        "success_data": [],
        "fail_data": [
            {
                "id": "667e657bb7a5c0001b0763db",
                "areaCode": "",
                "company": "中国",
                "countryCode": "86",
                "mobile": "1901111456",
                "name": "测试",
                "phone": "",
                "status": None,
                "errorType": 2,
            }
        ],
    }
    [o] = p.outcomes([Callee(country_code="86", mobile="1901111456")], seed)
    assert not o.accepted and o.reason == "duplicate" and o.provider_call_id == "667e657bb7a5c0001b0763db"


def test_seed_camel_case_answer_is_parsed():
    p = QuanshiProvider({**CREDS, "baseUrl": "http://127.0.0.1:9"})
    seed = {
        "scheduledCall": {
            "successData": [
                {
                    "id": "64d4b7a8ebf537001bebe2e4",
                    "areaCode": "",
                    "company": "时代中国",
                    "countryCode": "86",
                    "mobile": "18151073681",
                    "name": "测试",
                    "phone": "",
                    "errorType": None,
                }
            ],
            "failedData": None,
        },
        "realTimeCall": None,
        "callType": 1,
    }
    [o] = p.outcomes([Callee(country_code="86", mobile="18151073681")], seed)
    assert o.accepted and o.provider_call_id == "64d4b7a8ebf537001bebe2e4" and o.e164 == "+8618151073681"


def test_save_replaces_and_pushes_update(sim, receiver):
    p = make(sim)
    sim.create_event(21, start_in=3600)
    p.dial_now("21", [mobile(1), mobile(2)])
    p.save_callees("21", [mobile(3)])
    assert [c["number"] for c in sim.events["21"]["callees"]] == ["8618100000003"]
    push = wait_for(lambda: [x for x in receiver.of("/update") if json.loads(x.body)["eventId"] == 21])[0]
    p.verify_webhook(push.headers, push.body, "update", query=push.query)
    [event] = p.parse_webhook(push.headers, push.body, "update")
    assert isinstance(event, TaskLifecycleEvent) and event.kind == "update" and event.provider_task_id == "21"


def test_event_info(sim):
    event = sim.create_event(31, start_in=600)
    info = make(sim).event_info("31")
    assert int(info["startTime"].timestamp()) == int(event["startTime"]) and info["statusName"] == "created"
    assert hits(sim, "event/info")[0].json()["eventId"] == 31


def test_unknown_event_and_bad_input(sim):
    sim.settings["autoCreateEvents"] = False
    p = make(sim)
    with pytest.raises(NotFound):
        p.event_info("404404")
    sim.create_event(5)
    with pytest.raises(ProviderError) as err:
        make(sim, batchSize=101).dial_now("5", [mobile(i) for i in range(101)])
    assert err.value.provider_code == 400 and len(hits(sim, "event/call/add")) == 1
    sim.settings["autoCreateEvents"] = True


def test_callees_split_at_the_batch_limit(sim):
    from outcall.providers.base import batched

    p = make(sim)
    callees = [mobile(i) for i in range(250)]
    outcomes = [o for chunk in batched(callees, p.limits.batch_size) for o in p.dial_now("77", chunk)]
    assert [len(r.json()["callList"]) for r in hits(sim, "event/call/add")] == [100, 100, 50]
    assert len(outcomes) == 250 and all(o.accepted for o in outcomes)


def test_retries(sim):
    p = make(sim)
    p.token()
    sim.faults.fail_next = 2
    p.dial_now("1", [mobile(1)])
    assert len(hits(sim, "event/call/add")) == 3
    sim.faults.throttle_next = 1
    p.event_info("1")
    assert len(hits(sim, "event/info")) == 2
    sim.faults.fail_next = 10
    with pytest.raises(ProviderError) as err:
        p.event_info("1")
    assert err.value.retryable and len(hits(sim, "event/info")) == 6
    sim.faults.fail_next = 0


def test_timeout_and_400(sim):
    p = make(sim, readTimeout=0.2, retries=1)
    p.token()
    sim.faults.timeout_rate = 1.0
    sim.faults.timeout_seconds = 0.4
    with pytest.raises(ProviderError) as err:
        p.event_info("1")
    assert err.value.retryable and len(hits(sim, "event/info")) == 2
    sim.faults.timeout_rate = 0.0
    sim.answer_next(Reply(400, {"code": 400, "msg": "bad request"}))
    with pytest.raises(ProviderError) as err:
        p.event_info("1")
    assert err.value.provider_code == 400 and not err.value.retryable
    assert len(hits(sim, "event/info")) == 3


def test_lifecycle_pushes(sim, receiver):
    p = make(sim)
    sim.create_event(61, start_in=0.05)
    p.dial_now("61", [mobile(1)], before_minutes=0)
    begin = wait_for(lambda: [x for x in receiver.of("/meetingbegin") if json.loads(x.body)["eventId"] == 61])[0]
    wait_for(lambda: all(c["state"] == "done" for c in sim.events["61"]["callees"]))
    sim.end(61)
    end = wait_for(lambda: [x for x in receiver.of("/meetingend") if json.loads(x.body)["eventId"] == 61])[0]
    for push in (begin, end):
        p.verify_webhook(push.headers, push.body, query=push.query)
    [b] = p.parse_webhook(begin.headers, begin.body)
    [e] = p.parse_webhook(end.headers, end.body, "meetingend")
    assert (b.kind, b.dedup_key, b.status) == ("meetingbegin", "quanshi:61:meetingbegin", "created")
    assert b.start_time is not None
    assert (e.kind, e.status) == ("meetingend", "ended")
    assert p.parse_webhook(begin.headers, begin.body)[0].dedup_key == b.dedup_key
    with pytest.raises(InvalidSignature):
        p.verify_webhook(begin.headers, begin.body, query={"token": ["qs-hooK"]})
    with pytest.raises(InvalidSignature):
        p.verify_webhook(begin.headers, begin.body)
    hp = make(sim, webhookAuth="header")
    hp.verify_webhook({"x-outcall-token": "qs-hook"}, begin.body)
    with pytest.raises(InvalidSignature):
        hp.verify_webhook({}, begin.body)
    with pytest.raises(ValueError):
        p.parse_webhook({}, b'{"event": "nonsense", "eventId": 1}')


# ---------------------------------------------------------------- the seed's own examples (issue 12)

SEED = Path("/work/shared/seeds/quanshi-event-call-add.txt")
FIXTURES = Path(__file__).parent / "fixtures"
BRACKETS = {"{", "}", "[", "]", "},", "],", "}]", "}],"}


def seed_examples() -> list[list[str]]:
    """The seed's three examples (request, camelCase answer, snake_case answer) as their text lines:
    the page lost every line that held only brackets, nothing else."""
    text = SEED.read_text()
    groups, current = [], []
    for line in text[text.index("4. 示例") :].split("\n")[1:]:
        if line.strip():
            current.append(line)
        elif current:
            groups.append(current)
            current = []
    return groups + ([current] if current else [])


@pytest.mark.parametrize(
    ("name", "index"),
    [
        ("quanshi-event-call-add-request.json", 0),
        ("quanshi-event-call-add-answer.json", 1),
        ("quanshi-event-call-create-answer.json", 2),
    ],
)
def test_fixtures_are_the_seed_examples_byte_for_byte_with_their_brackets_restored(name, index):
    text = (FIXTURES / name).read_text()
    json.loads(text)
    if SEED.exists():
        assert [line for line in text.splitlines() if line.strip() not in BRACKETS] == seed_examples()[index]


def test_the_seed_request_is_taken_and_answered_in_the_seed_shape(sim):
    """The seed's request body, as is (plus the token), against a meeting an hour ahead: callType 1."""
    import requests

    p = make(sim)
    sim.create_event(542818, start_in=3600)
    body = {"token": p.token(), **json.loads((FIXTURES / "quanshi-event-call-add-request.json").read_text())}
    answer = requests.post(f"{sim.url}/eventopenapi/event/call/add", json=body, timeout=5).json()
    seed = json.loads((FIXTURES / "quanshi-event-call-add-answer.json").read_text())
    assert set(answer) == set(seed) and answer["code"] == 200 and answer["msg"] == seed["msg"]
    assert set(answer["data"]) == set(seed["data"]) and answer["data"]["callType"] == 1
    [row] = answer["data"]["scheduledCall"]["successData"]
    assert set(row) == set(seed["data"]["scheduledCall"]["successData"][0])
    assert row["mobile"] == "18100000030" and row["errorType"] is None


def test_the_seed_answers_map_to_outcomes():
    p = QuanshiProvider({**CREDS, "baseUrl": "http://127.0.0.1:9"})
    camel = json.loads((FIXTURES / "quanshi-event-call-add-answer.json").read_text())
    [ok] = p.outcomes([Callee(country_code="86", mobile="18151073681")], camel["data"])
    assert ok.accepted and ok.provider_call_id == "64d4b7a8ebf537001bebe2e4" and ok.e164 == "+8618151073681"
    snake = json.loads((FIXTURES / "quanshi-event-call-create-answer.json").read_text())
    [dup] = p.outcomes([Callee(country_code="86", mobile="1901111456")], snake["data"])
    assert not dup.accepted and dup.reason == "duplicate" and dup.provider_call_id == "667e657bb7a5c0001b0763db"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"beforeMinutes": 61}, "beforeMinutes"),
        ({"beforeMinutes": "30"}, "beforeMinutes"),
        ({"eventId": "abc"}, "eventId"),
        ({"callList": "x"}, "callList"),
    ],
)
def test_the_simulator_refuses_what_the_seed_does_not_allow(sim, change, why):
    import requests

    p = make(sim)
    body = {"token": p.token(), **json.loads((FIXTURES / "quanshi-event-call-add-request.json").read_text()), **change}
    answer = requests.post(f"{sim.url}/eventopenapi/event/call/add", json=body, timeout=5).json()
    assert answer["code"] == 400 and why in answer["msg"]
    assert set(answer) == {"timeStamp", "code", "msg", "data", "requestId"}


def test_callee_rules_of_the_seed_are_per_callee_error_types(sim):
    """countryCode digits only (no +), areaCode mainland only and without its leading 0: errorType 1."""
    import requests

    p = make(sim)
    sim.create_event(77, start_in=3600)
    bad = [
        {"countryCode": "+86", "mobile": "18100000031"},
        {"countryCode": "1", "areaCode": "212", "phone": "5550100"},
        {"countryCode": "86", "areaCode": "010", "phone": "58512042"},
        {"countryCode": "86", "areaCode": "10", "phone": "58512042"},
    ]
    body = {"token": p.token(), "eventId": 77, "callList": bad}
    answer = requests.post(f"{sim.url}/eventopenapi/event/call/add", json=body, timeout=5).json()
    failed = answer["data"]["scheduledCall"]["failedData"]
    assert [f["errorType"] for f in failed] == [1, 1, 1]
    assert [s["phone"] for s in answer["data"]["scheduledCall"]["successData"]] == ["58512042"]


def test_missed_lifecycle_pushes_are_reconciled_with_the_push_dedup_keys(sim, receiver):
    p = make(sim)
    sim.create_event(31, start_in=3600)
    sim.create_event(32, start_in=-60)
    sim.create_event(33, start_in=-600)
    sim.end(33)
    events = p.reconcile(["31", "32", "33"])
    assert [(e.provider_task_id, e.kind, e.status) for e in events] == [
        ("32", "meetingbegin", "created"),
        ("33", "meetingbegin", "ended"),
        ("33", "meetingend", "ended"),
    ]
    pushed = [p.parse_webhook({}, push.body)[0] for push in receiver.of("/meetingend")]
    assert events[-1].dedup_key in {e.dedup_key for e in pushed}

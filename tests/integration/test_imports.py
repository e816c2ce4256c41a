"""Contact imports through the contact_import handler: moto for AWS, the provider simulators over
HTTP. JSON requests, uploads (S3 event -> plan -> chunks -> report), limits, retries and crashes."""

from __future__ import annotations

import copy
import csv
import io
import json
import os
from typing import Any

import boto3
import pytest
from outcall import imports
from outcall.store import default_store

from tests.helpers import FakeContext, load_event
from tests.integration.results_support import Answer, drain, http, provider_entries, put_provider_secret


def contact_handler() -> Any:
    import contact_import_handler

    return contact_import_handler


def api(method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Answer:
    raw = json.dumps(body).encode() if body is not None else None
    return http(method, path, raw, headers=headers, handler=contact_handler())


def create_task(provider: str = "xswitch", **extra: Any) -> str:
    import task_control_handler

    body = {"name": f"{provider} list", "provider": provider, "type": "auto", **extra}
    answer = http("POST", "/tasks", json.dumps(body).encode(), handler=task_control_handler)
    assert answer.status == 201, answer.json
    return str(answer.json["taskId"])


def task_detail(task_id: str) -> dict[str, Any]:
    import task_control_handler

    answer = http("GET", f"/tasks/{task_id}", handler=task_control_handler)
    assert answer.status == 200, answer.json
    return dict(answer.json)


def stored_numbers(task_id: str) -> list[str]:
    """The numbers of the task's contacts, as the API lists them."""
    return [c["e164"] for c in api("GET", f"/tasks/{task_id}/contacts?limit=500").json["items"]]


def xswitch_numbers(sims: dict[str, Any], task_id: str) -> list[str]:
    task = default_store().get_task(task_id)
    assert task is not None and task.provider_task_id
    return [n.dest_number for n in sims["xswitch"].tasks[int(task.provider_task_id)].numbers]


def import_calls(sim: Any) -> list[Any]:
    return [r for r in sim.journal if r.method == "POST" and r.path.endswith("/import")]


def bucket_name() -> str:
    return os.environ["BUCKET_NAME"]


def planned_by_hand(task_id: str, body: bytes) -> tuple[Any, str]:
    """An upload planned by an importer whose steps the test runs itself (nothing is queued)."""
    import_id = upload(task_id, body)
    importer = contact_handler().importer()
    importer.send = lambda message: None
    importer.plan(import_id)
    return importer, import_id


def upload(task_id: str, body: bytes, filename: str = "list.csv", **request: Any) -> str:
    """POST /uploads, then put the file where the ticket says (as the client's PUT would) and
    deliver the S3 event; returns the import id."""
    ticket = api("POST", f"/tasks/{task_id}/uploads", {"filename": filename, **request})
    assert ticket.status == 201, ticket.json
    key = ticket.json["objectKey"]
    put = boto3.client("s3", region_name="us-east-1").put_object(Bucket=bucket_name(), Key=key, Body=body)
    s3_event(key, put.get("VersionId"))
    return str(ticket.json["importId"])


def s3_event(key: str, version: str | None) -> dict[str, Any]:
    from urllib.parse import quote_plus

    event = load_event("contact_import_s3_put")
    obj = event["Records"][0]["s3"]["object"]
    event["Records"][0]["s3"]["bucket"]["name"] = bucket_name()
    obj["key"] = quote_plus(key, safe="/")
    obj["versionId"] = version
    return dict(contact_handler().lambda_handler(copy.deepcopy(event), FakeContext()))


def work(rounds: int = 3, batch_size: int = 5) -> list[dict[str, Any]]:
    return drain(os.environ["IMPORT_QUEUE_URL"], rounds=rounds, handler=contact_handler(), batch_size=batch_size)


def job(import_id: str) -> dict[str, Any]:
    answer = api("GET", f"/imports/{import_id}")
    assert answer.status == 200, answer.json
    return dict(answer.json)


def report(import_id: str) -> list[dict[str, str]]:
    body = boto3.client("s3", region_name="us-east-1").get_object(Bucket=bucket_name(), Key=f"reports/{import_id}.csv")
    text = body["Body"].read().decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text)))


def csv_bytes(rows: list[list[str]], encoding: str = "utf-8", delimiter: str = ",") -> bytes:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode(encoding)


@pytest.fixture
def limits(sims: dict[str, Any]) -> Any:
    """Set provider settings (e.g. number limits, batch size) over the simulators' entries."""

    def apply(provider: str, **settings: Any) -> None:
        entries = provider_entries()
        for key, sim in sims.items():
            entries[key] = {**entries[key], "retries": 1, "backoffFactor": 0.01, "backoffMax": 0.02}
            entries[key].update({"backoffJitter": 0.0, "readTimeout": 3, "baseUrl": sim.url})
        entries[provider].update(settings)
        put_provider_secret(entries)

    return apply


# ---------------------------------------------------------------- JSON


def test_json_contacts_are_queued_and_reach_the_provider_only_once_the_task_starts(sims: dict[str, Any]) -> None:
    task_id = create_task("xswitch", settings={"hopperLevel": 10})
    contacts = [
        {"name": "张三", "countryCode": "86", "mobile": "138 0013 8000", "variables": {"订单": "A-1"}},
        {"name": "dup", "mobile": "+86 13800138000"},
        {"name": "landline", "countryCode": "86", "areaCode": "10", "phone": "58512042"},
        {"name": "full width", "mobile": "１３９００１３９０００"},
        {"name": "short", "mobile": "12345"},
        {"name": "none"},
        {"name": "uk", "mobile": "+44 20 7946 0958"},
    ]
    answer = api("POST", f"/tasks/{task_id}/contacts", {"contacts": contacts})
    assert answer.status == 200, answer.json
    body = answer.json
    assert [c["outcome"] for c in body["contacts"]] == [
        "accepted",
        "duplicate",
        "accepted",
        "accepted",
        "invalid",
        "invalid",
        "accepted",
    ]
    assert [c["e164"] for c in body["contacts"] if c["outcome"] == "accepted"] == [
        "+8613800138000",
        "+861058512042",
        "+8613900139000",
        "+442079460958",
    ]
    assert body["contacts"][1]["message"] == "same number as row 1"
    assert body["contacts"][4]["reason"] and body["contacts"][5]["reason"] == "missing_number"
    assert (body["rows"], body["accepted"], body["duplicate"], body["invalid"]) == (7, 4, 1, 2)
    assert body["status"] == "completed" and body["queued"] == 4
    assert xswitch_numbers(sims, task_id) == [] and import_calls(sims["xswitch"]) == []
    listed = api("GET", f"/tasks/{task_id}/contacts")
    assert listed.status == 200
    stored = {c["e164"]: c for c in listed.json["items"]}
    assert set(stored) == {"+8613800138000", "+861058512042", "+8613900139000", "+442079460958"}
    first = stored["+8613800138000"]
    assert first["name"] == "张三" and first["variables"] == {"订单": "A-1"} and first["state"] == "queued"
    assert first["row"] == 1 and first["importId"] == body["importId"] and first["attempts"] == 0
    assert task_detail(task_id)["counts"]["contacts"] == {"queued": 4}

    import task_control_handler

    assert http("POST", f"/tasks/{task_id}/start", handler=task_control_handler).status == 200
    assert sorted(xswitch_numbers(sims, task_id)) == sorted(
        ["+8613800138000", "+861058512042", "+8613900139000", "+442079460958"]
    )
    assert len(import_calls(sims["xswitch"])) == 1  # one wave, one batch
    released = api("GET", f"/tasks/{task_id}/contacts?status=released").json["items"]
    assert len(released) == 4 and all(c["attempts"] == 1 for c in released)
    assert task_detail(task_id)["counts"]["contacts"] == {"queued": 0, "released": 4}


def test_numbers_the_task_already_has_are_duplicates_and_are_not_sent_again(sims: dict[str, Any]) -> None:
    task_id = create_task("xswitch")
    first = api("POST", f"/tasks/{task_id}/contacts", {"contacts": [{"mobile": "13800138000"}]})
    assert first.json["accepted"] == 1
    again = api(
        "POST", f"/tasks/{task_id}/contacts", {"contacts": [{"mobile": "+8613800138000"}, {"mobile": "13900139000"}]}
    )
    outcomes = again.json["contacts"]
    assert outcomes[0]["outcome"] == "duplicate" and outcomes[0]["reason"] == "already_in_task"
    assert first.json["importId"] in outcomes[0]["message"]
    assert outcomes[1]["outcome"] == "accepted"
    assert sorted(stored_numbers(task_id)) == ["+8613800138000", "+8613900139000"]
    assert task_detail(task_id)["counts"]["contacts"] == {"queued": 2}


def test_an_idempotency_key_adds_once_and_answers_the_same(sims: dict[str, Any]) -> None:
    task_id = create_task("xswitch")
    body = {"contacts": [{"mobile": "13800138000"}, {"mobile": "13900139000"}]}
    key = {"Idempotency-Key": "import-42"}
    first = api("POST", f"/tasks/{task_id}/contacts", body, key)
    second = api("POST", f"/tasks/{task_id}/contacts", body, key)
    assert first.status == second.status == 200
    assert first.json == second.json
    assert len(stored_numbers(task_id)) == 2
    other = api("POST", f"/tasks/{task_id}/contacts", {"contacts": [{"mobile": "13700137000"}]}, key)
    assert other.status == 422 and "Idempotency-Key" in other.json["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"contacts": []}, "contacts"),
        ({"contacts": [{"mobile": "13800138000"}] * 10_001}, "contacts"),
        ({"contacts": [{"mobile": "13800138000", "email": "x@y"}]}, "email"),
        ({"contacts": [{"mobile": {"n": 1}}]}, "mobile"),
        ({"contacts": [{"mobile": "13800138000"}], "defaultRegion": "China"}, "defaultRegion"),
    ],
)
def test_malformed_json_imports_are_422_naming_the_field(sims: dict[str, Any], body: Any, field: str) -> None:
    task_id = create_task("xswitch")
    answer = api("POST", f"/tasks/{task_id}/contacts", body)
    assert answer.status == 422, answer.json
    assert any(field in e["field"] for e in answer.json["errors"]), answer.json
    assert api("GET", f"/tasks/{task_id}/contacts").json["items"] == []


def test_unknown_and_stopped_tasks_take_no_contacts(sims: dict[str, Any]) -> None:
    import task_control_handler

    missing = api("POST", "/tasks/nope/contacts", {"contacts": [{"mobile": "13800138000"}]})
    assert missing.status == 404
    task_id = create_task("xswitch")
    assert http("POST", f"/tasks/{task_id}/stop", handler=task_control_handler).status == 200
    stopped = api("POST", f"/tasks/{task_id}/contacts", {"contacts": [{"mobile": "13800138000"}]})
    assert stopped.status == 409 and "stopped" in stopped.json["message"]
    upload = api("POST", f"/tasks/{task_id}/uploads", {"filename": "a.csv"})
    assert upload.status == 409


def test_the_task_number_limit_refuses_a_json_import_whole(sims: dict[str, Any], limits: Any) -> None:
    limits("xswitch", maxNumbersPerTask=3)
    task_id = create_task("xswitch")
    assert api("POST", f"/tasks/{task_id}/contacts", {"contacts": [{"mobile": "13800138000"}]}).status == 200
    many = [{"mobile": f"1380013800{i}"} for i in range(1, 4)]
    answer = api("POST", f"/tasks/{task_id}/contacts", {"contacts": many})
    assert answer.status == 409 and "3 numbers" in answer.json["message"]
    assert len(api("GET", f"/tasks/{task_id}/contacts").json["items"]) == 1
    fits = api("POST", f"/tasks/{task_id}/contacts", {"contacts": many[:2]})
    assert fits.status == 200 and fits.json["accepted"] == 2


def test_contacts_page_with_next_token(sims: dict[str, Any]) -> None:
    task_id = create_task("xswitch")
    contacts = [{"mobile": f"138001380{i:02d}"} for i in range(7)]
    api("POST", f"/tasks/{task_id}/contacts", {"contacts": contacts})
    seen: list[str] = []
    token = None
    while True:
        query = "limit=3" + (f"&nextToken={token}" if token else "")
        page = api("GET", f"/tasks/{task_id}/contacts?{query}").json
        seen.extend(c["e164"] for c in page["items"])
        token = page.get("nextToken")
        if not token:
            break
    assert sorted(seen) == sorted(f"+86138001380{i:02d}" for i in range(7))
    bad = api("GET", f"/tasks/{task_id}/contacts?nextToken=garbage")
    assert bad.status == 422


# ---------------------------------------------------------------- large JSON requests: imports (202)

MIXED_CONTACTS: list[dict[str, Any]] = [
    {"name": "张三", "countryCode": "86", "mobile": "138 0013 8000", "variables": {"订单": "A-1", "vip": True}},
    {"mobile": "+86 13800138000"},  # a duplicate in the request
    {"name": "landline", "countryCode": "86", "areaCode": "10", "phone": "58512042"},
    {"name": "short", "mobile": "12345"},
    {"name": "none"},
    {"mobile": "13900139000", "externalId": 42, "variables": {"score": 7}},
    {"name": "held", "mobile": "13700137000"},  # the task has it already
    {"name": "uk", "mobile": "+44 20 7946 0958", "company": "ACME"},
    {"mobile": 13600136000},
]


def test_a_json_request_over_the_threshold_is_an_import_the_queue_works_as_an_answer_would(
    sims: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from outcall import contacts

    # the same contacts answered at once (200) into one task, and as an import (202) into another
    answered_task, queued_task = create_task("xswitch"), create_task("xswitch")
    for task_id in (answered_task, queued_task):
        assert api("POST", f"/tasks/{task_id}/contacts", {"contacts": [{"mobile": "13700137000"}]}).status == 200
    answered = api("POST", f"/tasks/{answered_task}/contacts", {"contacts": MIXED_CONTACTS})
    assert answered.status == 200, answered.json

    monkeypatch.setattr(contacts, "SYNC_JSON_CONTACTS", 5)
    monkeypatch.setattr(imports, "CHUNK_ROWS", 4)
    key = {"Idempotency-Key": "big-list-1"}
    queued = api("POST", f"/tasks/{queued_task}/contacts", {"contacts": MIXED_CONTACTS}, key)
    assert queued.status == 202, queued.json
    import_id = queued.json["importId"]
    assert queued.headers["Location"] == f"/imports/{import_id}"
    assert queued.json["source"] == "json" and queued.json["status"] == "running"
    assert (queued.json["rowsRead"], queued.json["chunks"], queued.json["chunksDone"]) == (9, 3, 0)
    assert stored_numbers(queued_task) == ["+8613700137000"]  # the queue stores them, not the request
    again = api("POST", f"/tasks/{queued_task}/contacts", {"contacts": MIXED_CONTACTS}, key)
    assert again.status == 202 and again.json["importId"] == import_id  # a retry starts no second import

    work(rounds=5, batch_size=2)
    done = job(import_id)
    assert done["status"] == "completed" and done["chunksDone"] == 3
    assert done["rows"] == done["accepted"] + done["duplicate"] + done["invalid"] == 9
    expected = answered.json
    assert (done["accepted"], done["duplicate"], done["invalid"]) == (
        expected["accepted"],
        expected["duplicate"],
        expected["invalid"],
    )
    rows = report(import_id)
    assert [int(r["row"]) for r in rows] == list(range(1, 10))
    # the report guards cells that a spreadsheet would read as a formula (+86...) with a quote
    assert [(r["outcome"], r["reason"], r["e164"].removeprefix("'")) for r in rows] == [
        (c["outcome"], c.get("reason") or "", c.get("e164") or "") for c in expected["contacts"]
    ]
    assert sorted(stored_numbers(queued_task)) == sorted(stored_numbers(answered_task))
    stored = {c["e164"]: c for c in api("GET", f"/tasks/{queued_task}/contacts").json["items"]}
    first, scored = stored["+8613800138000"], stored["+8613900139000"]
    assert first["name"] == "张三" and first["variables"] == {"订单": "A-1", "vip": "TRUE"}
    assert first["importId"] == import_id and first["state"] == "queued"
    assert scored["externalId"] == "42" and scored["variables"] == {"score": "7"} and scored["name"] is None
    fields = ("name", "company", "externalId", "variables", "state", "row")
    same = {c["e164"]: c for c in api("GET", f"/tasks/{answered_task}/contacts").json["items"]}
    assert {n: [c.get(f) for f in fields] for n, c in stored.items()} == {
        n: [c.get(f) for f in fields] for n, c in same.items()
    }
    assert task_detail(queued_task)["counts"]["contacts"] == task_detail(answered_task)["counts"]["contacts"]
    assert import_calls(sims["xswitch"]) == []


def test_1001_contacts_answer_202_and_rows_over_the_task_limit_are_invalid(sims: dict[str, Any], limits: Any) -> None:
    limits("xswitch", maxNumbersPerTask=600)
    task_id = create_task("xswitch")
    contacts = [{"mobile": f"1380013{i:04d}"} for i in range(1001)]
    answer = api("POST", f"/tasks/{task_id}/contacts", {"contacts": contacts})
    assert answer.status == 202, answer.json
    assert (answer.json["rowsRead"], answer.json["chunks"]) == (1001, 1)
    work()
    done = job(answer.json["importId"])
    assert done["status"] == "completed"
    # one chunk: its 1,001 numbers do not fit the task's 600, so none of them is added (as for an upload)
    assert (done["rows"], done["accepted"], done["invalid"]) == (1001, 0, 1001)
    assert done["reasons"] == {"over_limit": 1001}
    assert stored_numbers(task_id) == []


def test_a_large_request_whose_names_make_two_columns_one_is_422_and_stores_nothing(
    sims: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from outcall import contacts

    monkeypatch.setattr(contacts, "SYNC_JSON_CONTACTS", 1)
    task_id = create_task("xswitch")
    body = {"contacts": [{"mobile": "13800138000", "variables": {"Mobile": "x"}}, {"mobile": "13900139000"}]}
    answer = api("POST", f"/tasks/{task_id}/contacts", body)
    assert answer.status == 422, answer.json
    assert answer.json["errors"][0]["field"] == "contacts"
    assert api("GET", f"/tasks/{task_id}/imports").json["items"] == []
    assert stored_numbers(task_id) == []


# ---------------------------------------------------------------- uploads


GOOD_BAD_DUPLICATE = [
    ["姓名", "手机", "国家码", "订单号"],
    ["张三", "13800138000", "86", '=HYPERLINK("http://x")'],
    ["李四", "139-0013-9000", "", "B-2"],
    ["again", "+8613800138000", "", "C-3"],
    ["bad", "12345", "86", "D-4"],
]


def test_an_upload_imports_the_file_and_writes_the_report(sims: dict[str, Any]) -> None:
    task_id = create_task("xswitch")
    import_id = upload(task_id, csv_bytes(GOOD_BAD_DUPLICATE), filename="客户 名单.csv")
    assert job(import_id)["status"] == "queued"
    work()
    done = job(import_id)
    assert done["status"] == "completed", done
    assert (done["rows"], done["accepted"], done["duplicate"], done["invalid"]) == (4, 2, 1, 1)
    assert done["reasons"] == {"duplicate": 1, "too_short": 1} or sum(done["reasons"].values()) == 2
    assert done["file"]["kind"] == "csv" and done["file"]["header"] == ["姓名", "手机", "国家码", "订单号"]
    assert done["reportUrl"].startswith("http")
    rows = report(import_id)
    assert [(r["row"], r["outcome"]) for r in rows] == [
        ("2", "accepted"),
        ("3", "accepted"),
        ("4", "duplicate"),
        ("5", "invalid"),
    ]
    assert rows[0]["订单号"] == '\'=HYPERLINK("http://x")'  # neutralised: a spreadsheet shows it as text
    assert rows[2]["message"] == "same number as row 2"
    assert sorted(stored_numbers(task_id)) == ["+8613800138000", "+8613900139000"]
    assert task_detail(task_id)["counts"]["contacts"] == {"queued": 2}
    assert import_calls(sims["xswitch"]) == []  # an import calls no provider
    listed = api("GET", f"/tasks/{task_id}/imports").json["items"]
    assert [i["importId"] for i in listed] == [import_id]


def test_the_same_s3_event_twice_imports_once(sims: dict[str, Any]) -> None:
    task_id = create_task("xswitch")
    ticket = api("POST", f"/tasks/{task_id}/uploads", {"filename": "a.csv"}).json
    s3 = boto3.client("s3", region_name="us-east-1")
    put = s3.put_object(Bucket=bucket_name(), Key=ticket["objectKey"], Body=csv_bytes(GOOD_BAD_DUPLICATE))
    assert s3_event(ticket["objectKey"], put["VersionId"]) == {"queued": 1}
    assert s3_event(ticket["objectKey"], put["VersionId"]) == {"queued": 0}
    work()
    assert job(ticket["importId"])["accepted"] == 2
    assert len(stored_numbers(task_id)) == 2
    # a second PUT to the same URL is a new version: a new import, whose rows are now duplicates
    again = s3.put_object(Bucket=bucket_name(), Key=ticket["objectKey"], Body=csv_bytes(GOOD_BAD_DUPLICATE))
    assert s3_event(ticket["objectKey"], again["VersionId"]) == {"queued": 1}
    work()
    imports_ = api("GET", f"/tasks/{task_id}/imports").json["items"]
    assert len(imports_) == 2
    newest = imports_[0]
    assert newest["importId"] != ticket["importId"] and newest["duplicate"] == 3 and newest["accepted"] == 0


def test_a_file_put_straight_into_the_bucket_is_imported_too(sims: dict[str, Any]) -> None:
    task_id = create_task("xswitch")
    key = f"imports/{task_id}/by hand 名单.csv"
    put = boto3.client("s3", region_name="us-east-1").put_object(
        Bucket=bucket_name(), Key=key, Body=csv_bytes(GOOD_BAD_DUPLICATE)
    )
    assert s3_event(key, put["VersionId"]) == {"queued": 1}
    work()
    import_id = imports.import_id_for(bucket_name(), key, put["VersionId"])
    assert job(import_id)["status"] == "completed" and job(import_id)["accepted"] == 2


def test_large_files_are_cut_into_chunks_and_every_row_is_counted_once(
    sims: dict[str, Any], limits: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imports, "CHUNK_ROWS", 4)
    limits("xswitch", batchSize=3)
    task_id = create_task("xswitch")
    rows = [["mobile", "note"]]
    for i in range(15):
        rows.append([f"1380013{i:04d}", f"n{i}"])
    rows.append(["13800130003", "dup of row 5"])
    rows.append(["oops", "bad"])
    import_id = upload(task_id, csv_bytes(rows))
    work(rounds=5, batch_size=2)
    done = job(import_id)
    assert done["chunks"] == 5 and done["chunksDone"] == 5
    assert (done["rows"], done["accepted"], done["duplicate"], done["invalid"]) == (17, 15, 1, 1)
    assert done["status"] == "completed"
    assert [int(r["row"]) for r in report(import_id)] == list(range(2, 19))
    assert len(stored_numbers(task_id)) == 15
    assert import_calls(sims["xswitch"]) == []


def test_an_import_while_the_provider_is_down_imports_every_row(
    sims: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imports, "CHUNK_ROWS", 50)
    task_id = create_task("xswitch")
    rows = [["mobile"]] + [[f"1380013{i:04d}"] for i in range(10)]
    import_id = upload(task_id, csv_bytes(rows))
    sims["xswitch"].faults.fail_next = 100  # the provider answers 500 to everything
    answers = work(rounds=3)
    assert not any(a.get("batchItemFailures") for a in answers)
    done = job(import_id)
    assert done["status"] == "completed" and done["accepted"] == 10
    assert sorted(stored_numbers(task_id)) == sorted(f"+861380013{i:04d}" for i in range(10))
    assert task_detail(task_id)["counts"]["contacts"] == {"queued": 10}


def test_a_worker_that_dies_after_claiming_resumes_without_duplicates(
    sims: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from outcall.store import Store

    task_id = create_task("xswitch")
    rows = [["mobile"]] + [[f"1380013{i:04d}"] for i in range(6)]
    real = Store.finish_chunk
    calls = {"n": 0}

    def crash_once(self: Any, *args: Any, **kwargs: Any) -> bool:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("the worker died here")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Store, "finish_chunk", crash_once)
    import_id = upload(task_id, csv_bytes(rows))
    work(rounds=4)
    done = job(import_id)
    assert done["status"] == "completed", done
    assert (done["rows"], done["accepted"], done["duplicate"]) == (6, 6, 0)
    # the second delivery found the contacts the first had claimed: still this import's rows
    assert sorted(stored_numbers(task_id)) == sorted(f"+861380013{i:04d}" for i in range(6))
    assert task_detail(task_id)["counts"]["contacts"] == {"queued": 6}


def test_a_chunk_delivered_again_after_it_finished_changes_nothing(sims: dict[str, Any]) -> None:
    task_id = create_task("xswitch")
    import_id = upload(task_id, csv_bytes(GOOD_BAD_DUPLICATE))
    work()
    before = job(import_id)
    contact_handler().importer().work_chunk(import_id, 0, attempt=2)
    event = load_event("contact_import_sqs_chunk")
    event["Records"][0]["body"] = json.dumps({"importId": import_id, "step": "chunk", "chunk": 0})
    assert contact_handler().lambda_handler(event, FakeContext()) == {"batchItemFailures": []}
    after = job(import_id)
    assert {k: after[k] for k in ("rows", "accepted", "duplicate", "invalid", "chunksDone")} == {
        k: before[k] for k in ("rows", "accepted", "duplicate", "invalid", "chunksDone")
    }
    assert len(stored_numbers(task_id)) == 2


def test_a_second_delivery_while_the_first_works_the_chunk_waits(sims: dict[str, Any]) -> None:
    task_id = create_task("xswitch")
    importer, import_id = planned_by_hand(task_id, csv_bytes(GOOD_BAD_DUPLICATE))
    assert default_store().lease_chunk(import_id, 0, 60) == "leased"
    with pytest.raises(imports.ChunkBusy):
        importer.work_chunk(import_id, 0)
    default_store().release_chunk(import_id, 0)
    importer.work_chunk(import_id, 0)
    importer.finish(import_id)
    assert job(import_id)["status"] == "completed"


def test_an_upload_over_the_task_limit_marks_the_rows_that_do_not_fit(
    sims: dict[str, Any], limits: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imports, "CHUNK_ROWS", 2)
    limits("xswitch", maxNumbersPerTask=3)
    task_id = create_task("xswitch")
    rows = [["mobile"]] + [[f"1380013{i:04d}"] for i in range(6)]
    import_id = upload(task_id, csv_bytes(rows))
    work(rounds=4)
    done = job(import_id)
    assert (done["rows"], done["accepted"], done["invalid"]) == (6, 2, 4)
    assert done["reasons"] == {"over_limit": 4}
    assert done["status"] == "completed"
    outcomes = [(r["outcome"], r["reason"]) for r in report(import_id)]
    assert outcomes == [("accepted", "")] * 2 + [("invalid", "over_limit")] * 4
    assert len(stored_numbers(task_id)) == 2
    # the numbers reserved for duplicates and refusals are given back
    assert default_store().numbers_used(task_id, "xswitch")[0] == 2


def test_a_task_deleted_during_an_import_ends_it_partial(sims: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import task_control_handler

    monkeypatch.setattr(imports, "CHUNK_ROWS", 2)
    task_id = create_task("xswitch")
    rows = [["mobile"]] + [[f"1380013{i:04d}"] for i in range(4)]
    importer, import_id = planned_by_hand(task_id, csv_bytes(rows))
    importer.work_chunk(import_id, 0)
    assert http("DELETE", f"/tasks/{task_id}", handler=task_control_handler).status == 204
    importer.work_chunk(import_id, 1)
    importer.finish(import_id)
    done = job(import_id)
    assert done["status"] == "partial" and "deleted" in done["error"]
    assert (done["rows"], done["accepted"], done["invalid"]) == (4, 2, 2)
    assert default_store().numbers_used(task_id, "xswitch") == (0, 0)


@pytest.mark.parametrize(
    ("filename", "body", "reason"),
    [
        ("empty.csv", b"", "empty"),
        ("blank.csv", b"\r\n \r\n", "empty"),
        ("binary.csv", bytes(range(256)) * 4, "binary"),
        ("utf16.csv", "手机\r\n13800138000\r\n".encode("utf-16"), "UTF-16"),
        ("latin.csv", "name,mobile\r\nJos\xe9,13800138000\r\n".encode("cp1252") + b"\x81\x30", "UTF-8"),
        ("broken.xlsx", b"PK\x03\x04" + b"\x00" * 200, "damaged"),
        ("nonumber.csv", b"name,email\r\nx,y\r\n", "mobile"),
    ],
)
def test_files_that_cannot_be_read_fail_with_a_clear_error(
    sims: dict[str, Any], filename: str, body: bytes, reason: str
) -> None:
    task_id = create_task("xswitch")
    import_id = upload(task_id, body, filename=filename)
    work()
    done = job(import_id)
    assert done["status"] in ("failed", "partial"), done
    assert reason.lower() in done["error"].lower(), done["error"]
    assert done["rows"] == done["accepted"] + done["duplicate"] + done["invalid"]
    assert xswitch_numbers(sims, task_id) == [] or done["status"] == "partial"


def test_a_header_only_file_completes_with_no_rows(sims: dict[str, Any]) -> None:
    task_id = create_task("xswitch")
    import_id = upload(task_id, b"name,mobile\r\n")
    work()
    done = job(import_id)
    assert done["status"] == "completed" and done["rows"] == 0 and done["chunks"] == 0
    assert report(import_id) == []


def test_gb18030_semicolons_ragged_rows_and_quoted_newlines(sims: dict[str, Any]) -> None:
    task_id = create_task("xswitch")
    text = '姓名;手机;备注\r\n张三;13800138000;"第一行\r\n第二行"\r\n李四;13900139000\r\n王五;13700137000;x;多余\r\n'
    import_id = upload(task_id, text.encode("gb18030"))
    work()
    done = job(import_id)
    assert done["file"]["encoding"] == "gb18030" and done["file"]["delimiter"] == ";"
    assert (done["rows"], done["accepted"], done["invalid"]) == (3, 2, 1)
    rows = report(import_id)
    assert rows[0]["备注"] == "第一行\r\n第二行" or rows[0]["备注"] == "第一行\n第二行"
    assert rows[2]["reason"] == "extra_cells"
    contacts = {c["e164"]: c for c in api("GET", f"/tasks/{task_id}/contacts").json["items"]}
    assert contacts["+8613800138000"]["variables"]["备注"].startswith("第一行")


def test_an_xlsx_upload_reads_the_named_sheet(sims: dict[str, Any]) -> None:
    from openpyxl import Workbook

    workbook = Workbook()
    workbook.active.append(["ignored"])
    sheet = workbook.create_sheet("名单")
    sheet.append(["name", "mobile", "countryCode"])
    sheet.append(["a", 13800138000, 86])
    sheet.append(["b", "+44 20 7946 0958", None])
    data = io.BytesIO()
    workbook.save(data)
    task_id = create_task("xswitch")
    import_id = upload(task_id, data.getvalue(), filename="list.xlsx", sheet="名单")
    work()
    done = job(import_id)
    assert done["status"] == "completed" and done["accepted"] == 2, done
    assert done["file"]["kind"] == "xlsx" and done["file"]["sheet"] == "名单"
    assert done["file"]["header"] == ["name", "mobile", "countryCode"]


def test_upload_requests_are_checked(sims: dict[str, Any]) -> None:
    task_id = create_task("xswitch")
    for body, field in (
        ({"filename": "list.pdf"}, "filename"),
        ({"filename": "../x.csv"}, "filename"),
        ({}, "filename"),
        ({"filename": "a.csv", "defaultRegion": "1"}, "defaultRegion"),
    ):
        answer = api("POST", f"/tasks/{task_id}/uploads", body)
        assert answer.status == 422 and any(field in e["field"] for e in answer.json["errors"]), answer.json
    assert api("POST", "/tasks/none/uploads", {"filename": "a.csv"}).status == 404
    assert api("GET", "/imports/imp_missing").status == 404


# ---------------------------------------------------------------- contacts and their calls


def test_a_clone_with_contacts_copies_all_but_those_the_provider_refused(sims: dict[str, Any]) -> None:
    import task_control_handler

    source = create_task("xswitch")
    contacts = [
        {"mobile": "13800138000", "name": "张三", "externalId": "o-1", "variables": {"订单": "A-1"}},
        {"mobile": "+44 20 7946 0958", "company": "ACME", "externalId": "o-3", "variables": {"lang": "en"}},
    ]
    contacts.append({"mobile": "13900139000"})  # this one the provider will refuse: it is not copied
    assert api("POST", f"/tasks/{source}/contacts", {"contacts": contacts}).json["queued"] == 3
    assert default_store().mark_skipped(source, [("+8613900139000", 0)], "provider_rejected: test", "queued") == 1

    answer = http(
        "POST", f"/tasks/{source}/clone", json.dumps({"withContacts": True}).encode(), handler=task_control_handler
    )
    assert answer.status == 201, answer.json
    clone_id = answer.json["task"]["taskId"]
    import_id = answer.json["contactsImportId"]
    assert import_id and job(import_id)["source"] == "clone" and job(import_id)["cloneOf"] == source
    work()
    done = job(import_id)
    assert done["status"] == "completed", done
    assert (done["rows"], done["accepted"]) == (2, 2)
    copied = {c["e164"]: c for c in api("GET", f"/tasks/{clone_id}/contacts").json["items"]}
    assert set(copied) == {"+8613800138000", "+442079460958"}
    assert copied["+8613800138000"]["name"] == "张三" and copied["+8613800138000"]["variables"] == {"订单": "A-1"}
    assert copied["+8613800138000"]["externalId"] == "o-1"
    assert copied["+442079460958"]["company"] == "ACME" and copied["+442079460958"]["variables"] == {"lang": "en"}
    assert sorted(stored_numbers(clone_id)) == ["+442079460958", "+8613800138000"]

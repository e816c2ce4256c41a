"""Do-not-call lists uploaded as CSV/XLSX through the call lists' upload path, against moto: the ticket,
the PUT to the presigned URL, the S3 event to the contact_import function, the entries stored, the counts
per outcome (every row accounted for), bad files and bad requests, a run that dies and is retried, and a
number listed by upload refused at import and never released."""

from __future__ import annotations

import io
import json
import os
from datetime import datetime, timedelta
from typing import Any

import boto3
import pytest
import requests
from openpyxl import Workbook
from outcall import dnc_uploads
from outcall.bucket import CallListBucket
from outcall.calllists import process_records
from outcall.contacts import add_rows
from outcall.dnc_uploads import DncImportBusy, DncUploads
from outcall.store import Store, utcnow

from local.moto_s3 import keep_put_bodies
from tests.helpers import FakeContext, load_event
from tests.integration.test_compliance import CN, RecordingProvider, engine, fixed_clock, make_task, sent_numbers
from tests.integration.test_imports import bucket_name, csv_bytes, s3_event
from tests.integration.test_tasks import call


@pytest.fixture
def store(aws: Any) -> Store:
    keep_put_bodies()  # a PUT's body is the object whatever its Content-Type, as S3 does
    return Store()


def ticket_for(body: dict[str, Any], task_id: str | None = None) -> dict[str, Any]:
    path = f"/tasks/{task_id}/dnc/uploads" if task_id else "/dnc/uploads"
    answer = call("POST", path, body)
    assert answer.status == 201, answer.json
    return dict(answer.json)


def encoded_event(key: str, version: str | None) -> dict[str, Any]:
    """The S3 event with the key encoded as S3 may send it: every `/` as %2F."""
    import copy
    from urllib.parse import quote_plus

    import contact_import_handler

    event = load_event("contact_import_s3_put")
    event["Records"][0]["s3"]["bucket"]["name"] = bucket_name()
    event["Records"][0]["s3"]["object"].update(key=quote_plus(key, safe=""), versionId=version)
    return dict(contact_import_handler.lambda_handler(copy.deepcopy(event), FakeContext()))


def put_file(
    ticket: dict[str, Any], data: bytes, content_type: str | None = "text/csv", *, deliver: Any = s3_event
) -> str | None:
    """The client's PUT to the presigned URL, then the S3 event that follows it; the object version."""
    headers = {"Content-Type": content_type} if content_type else {}
    answer = requests.put(ticket["uploadUrl"], data=data, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    head = boto3.client("s3", region_name="us-east-1").head_object(Bucket=bucket_name(), Key=ticket["objectKey"])
    version = head.get("VersionId")
    deliver(ticket["objectKey"], version)
    return version


def status(import_id: str, task_id: str | None = None) -> dict[str, Any]:
    path = f"/tasks/{task_id}/dnc/uploads/{import_id}" if task_id else f"/dnc/uploads/{import_id}"
    answer = call("GET", path)
    assert answer.status == 200, answer.json
    return dict(answer.json)


def accounted(job: dict[str, Any]) -> bool:
    return bool(job["rows"] == job["added"] + job["alreadyListed"] + job["duplicate"] + job["invalid"])


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def xlsx_bytes(rows: list[list[Any]]) -> bytes:
    book = Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_an_uploaded_csv_lists_its_numbers_and_accounts_for_every_row(store: Store) -> None:
    assert call("POST", "/dnc", {"numbers": [CN[3]], "reason": "by phone"}).status == 201
    expires = (utcnow() + timedelta(days=30)).replace(microsecond=0)
    ticket = ticket_for({"filename": "opt-outs.csv", "reason": "complaint", "expiresAt": expires.isoformat()})
    assert ticket["method"] == "PUT" and ticket["headers"] == {"Content-Type": "text/csv"}
    assert ticket["objectKey"] == f"dnc-imports/{ticket['importId']}/opt-outs.csv"
    assert "/dnc/uploads/" in ticket["note"]
    waiting = status(ticket["importId"])
    assert (waiting["status"], waiting["rows"], waiting["scope"]) == ("waiting", 0, "account")

    rows = [
        ["姓名", "手机", "备注"],  # the header names of call lists
        ["A", "139 0000 0021", "x"],  # row 2: added (normalised as imports normalise)
        ["B", CN[1], ""],  # row 3: added
        ["C", "+86 139-0000-0021", ""],  # row 4: the number of row 2
        ["D", CN[3], ""],  # row 5: already on the list
        ["E", "12", ""],  # row 6: not a number
        ["F", "", ""],  # row 7: no number
    ]
    put_file(ticket, csv_bytes(rows), content_type=None)  # curl's --upload-file sends none
    done = status(ticket["importId"])
    assert done["status"] == "completed" and done["error"] is None, done
    assert (done["rows"], done["added"], done["alreadyListed"], done["duplicate"], done["invalid"]) == (6, 2, 1, 1, 2)
    assert accounted(done)
    assert done["reasons"] == {"too_short": 1, "missing_number": 1}
    assert [(r["row"], r["reason"]) for r in done["invalidRows"]] == [(6, "too_short"), (7, "missing_number")]
    assert at(done["entriesExpireAt"]) == expires

    for number in (CN[21], CN[1]):
        entry = call("GET", f"/dnc/{number}")
        assert entry.status == 200, number
        assert entry.json["source"] == "upload" and entry.json["reason"] == "complaint"
        assert entry.json["importId"] == ticket["importId"] and entry.json["scope"] == "account"
        assert at(entry.json["expiresAt"]) == expires
    kept = call("GET", f"/dnc/{CN[3]}").json
    assert kept["source"] == "api" and kept["reason"] == "by phone" and kept.get("importId") is None
    assert len(call("GET", "/dnc").json["items"]) == 3


def test_an_xlsx_fills_the_tasks_list_only(store: Store) -> None:
    task = make_task(store, RecordingProvider(), [])
    ticket = ticket_for({"filename": "名单.xlsx", "defaultRegion": "us"}, task.task_id)
    assert ticket["headers"]["Content-Type"].startswith("application/vnd.openxmlformats")
    rows = [["Name", "Mobile"], ["A", "(212) 555-0100"], ["B", 13900000007]]
    put_file(ticket, xlsx_bytes(rows), deliver=encoded_event)
    done = status(ticket["importId"], task.task_id)
    assert (done["status"], done["scope"], done["taskId"]) == ("completed", "task", task.task_id)
    assert (done["rows"], done["added"], done["invalid"]) == (2, 1, 1), done  # a CN mobile read as a US number
    entry = call("GET", f"/tasks/{task.task_id}/dnc/+12125550100")
    assert entry.status == 200 and entry.json["source"] == "upload" and entry.json["scope"] == "task"
    assert call("GET", "/dnc/+12125550100").status == 404  # not on the account's list
    # an upload of a task's list is not the account's, nor another task's
    assert call("GET", f"/dnc/uploads/{ticket['importId']}").status == 404
    other = make_task(store, RecordingProvider(), [])
    assert call("GET", f"/tasks/{other.task_id}/dnc/uploads/{ticket['importId']}").status == 404


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (csv_bytes([["name", "note"], ["A", "13900000001"]]), "no number column"),
        (b"", "empty"),
        (b"\x00\x01\x02binary\x00" * 50, "binary"),
        (b"PK\x03\x04 not really a workbook", "xlsx"),
    ],
    ids=["no-number-column", "empty", "binary", "broken-xlsx"],
)
def test_a_file_the_readers_refuse_fails_the_upload_with_their_message(store: Store, data: bytes, says: str) -> None:
    ticket = ticket_for({"filename": "list.csv"})
    put_file(ticket, data)
    done = status(ticket["importId"])
    assert done["status"] == "failed" and says in done["error"].lower(), done
    assert (done["rows"], done["added"]) == (0, 0)
    assert call("GET", "/dnc").json["items"] == []


def test_a_file_that_breaks_off_keeps_what_it_listed_and_names_the_row(store: Store) -> None:
    from boto3.dynamodb.conditions import Key

    numbers = [f"+86139{i:08d}" for i in range(5000)]  # past the sample the encoding is decided on
    ticket = ticket_for({"filename": "list.csv"})
    put_file(ticket, csv_bytes([["mobile"], *([n] for n in numbers)]) + b"\xff\xfe\xfa broken\r\n")
    done = status(ticket["importId"])
    assert done["status"] == "failed" and "not UTF-8" in done["error"] and "were not read" in done["error"], done
    assert done["invalid"] == 1 and done["added"] > 4000 and accounted(done), done
    broken = done["invalidRows"][0]
    assert broken["reason"] == "bad_encoding" and f"row {broken['row']}" in done["error"]
    stored = store.table.query(KeyConditionExpression=Key("pk").eq("DNC#ACCOUNT"), Select="COUNT")["Count"]
    assert stored == done["added"]
    assert call("GET", f"/dnc/{numbers[0]}").status == 200


def test_bad_requests_are_422s_or_404s_naming_the_field_and_make_nothing(store: Store) -> None:
    cases = [
        ({"filename": "list.pdf"}, "filename"),
        ({"filename": "a/list.csv"}, "filename"),
        ({"filename": "list.csv", "expiresAt": "2020-01-01T00:00:00+00:00"}, "expiresAt"),
        ({"filename": "list.csv", "expiresAt": "2031-01-01T00:00:00"}, "expiresAt"),
        ({"filename": "list.csv", "defaultRegion": "ZZZ"}, "defaultRegion"),
        ({"filename": "list.csv", "reason": "x" * 501}, "reason"),
        ({"filename": "list.csv", "source": "api"}, "source"),
    ]
    for body, field in cases:
        answer = call("POST", "/dnc/uploads", body)
        assert answer.status == 422, (body, answer.json)
        assert field in json.dumps(answer.json["errors"]) + answer.json["message"], (body, answer.json)
    assert call("POST", "/tasks/tsk_missing/dnc/uploads", {"filename": "list.csv"}).status == 404
    assert call("GET", "/dnc/uploads/dncimp_missing").status == 404
    assert store.table.scan(Select="COUNT")["Count"] == 0


def test_an_object_without_a_ticket_and_a_later_put_list_nothing(store: Store) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    stray = s3.put_object(
        Bucket=bucket_name(), Key="dnc-imports/dncimp_made_up/list.csv", Body=b"mobile\r\n" + CN[0].encode()
    )
    assert s3_event("dnc-imports/dncimp_made_up/list.csv", stray.get("VersionId")) == {"queued": 0}
    assert call("GET", f"/dnc/{CN[0]}").status == 404

    ticket = ticket_for({"filename": "list.csv"})
    first = put_file(ticket, csv_bytes([["mobile"], [CN[1]]]))
    put_file(ticket, csv_bytes([["mobile"], [CN[2]]]))  # the same URL again: one PUT per ticket
    s3_event(ticket["objectKey"], first)  # and the first event delivered again
    done = status(ticket["importId"])
    assert (done["status"], done["rows"], done["added"]) == ("completed", 1, 1)
    assert call("GET", f"/dnc/{CN[2]}").status == 404


def uploaded_by_hand(store: Store, rows: list[list[str]]) -> tuple[DncUploads, Any, str, str, str]:
    """A ticket and its file in the bucket, with an uploader on a controlled clock whose runs the test
    starts itself: (uploader, clock, importId, key, version)."""
    clock = fixed_clock(utcnow())
    uploads = DncUploads(store, CallListBucket(os.environ["BUCKET_NAME"]), clock=lambda: clock.now)
    ticket = ticket_for({"filename": "list.csv"})
    key = ticket["objectKey"]
    put = boto3.client("s3", region_name="us-east-1").put_object(Bucket=bucket_name(), Key=key, Body=csv_bytes(rows))
    return uploads, clock, ticket["importId"], key, put["VersionId"]


def test_a_run_that_dies_is_taken_over_by_its_retry_and_counts_each_row_once(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dnc_uploads, "CHECKPOINT_ROWS", 2)
    numbers = CN[10:17]
    uploads, _clock, import_id, key, version = uploaded_by_hand(store, [["mobile"], *([n] for n in numbers), [CN[10]]])

    real_put, puts = store.put_dnc, []

    def dies_on_the_third_write(list_id: str, entries: Any) -> None:
        puts.append(len(entries))
        real_put(list_id, entries)
        if len(puts) == 3:  # written, but the run dies before its checkpoint is stored
            raise TimeoutError("the function timed out")

    monkeypatch.setattr(store, "put_dnc", dies_on_the_third_write)
    with pytest.raises(TimeoutError):
        uploads.register_upload(key, version, "req-1")
    mid = status(import_id)
    assert mid["status"] == "running" and (mid["rows"], mid["added"]) == (4, 4)
    monkeypatch.setattr(store, "put_dnc", real_put)
    # a duplicate delivery of the event (another request) while the lease holds does nothing
    assert uploads.register_upload(key, version, "req-2") is None
    assert status(import_id)["rows"] == 4

    done = uploads.register_upload(key, version, "req-1")  # Lambda's retry: the same request id
    assert done is not None and done.status == "completed"
    assert (done.rows, done.added, done.already_listed, done.duplicate) == (8, 7, 0, 1)
    assert sorted(i["e164"] for i in call("GET", "/dnc").json["items"]) == sorted(numbers)
    assert uploads.register_upload(key, version, "req-3") is None  # a late duplicate event: nothing


def test_a_run_whose_lease_ran_out_is_taken_over_and_the_old_one_stops(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dnc_uploads, "CHECKPOINT_ROWS", 1)
    uploads, clock, import_id, key, version = uploaded_by_hand(store, [["mobile"], [CN[20]], [CN[21]], [CN[22]]])
    real_put, taken_over = store.put_dnc, []

    def stalls_then_another_run_takes_over(list_id: str, entries: Any) -> None:
        real_put(list_id, entries)
        if not taken_over:  # the first run stalls past its lease; another delivery takes the job
            taken_over.append(True)
            clock.now += timedelta(seconds=dnc_uploads.LEASE_SECONDS + 1)
            assert uploads.register_upload(key, version, "req-2") is not None

    monkeypatch.setattr(store, "put_dnc", stalls_then_another_run_takes_over)
    with pytest.raises(DncImportBusy):
        uploads.register_upload(key, version, "req-1")
    done = status(import_id)
    assert (done["status"], done["rows"], done["added"]) == ("completed", 3, 3)


def test_a_number_listed_by_upload_is_refused_at_import_and_never_released(store: Store) -> None:
    provider, clock = RecordingProvider(), fixed_clock()
    task = make_task(store, provider, CN[:4])  # queued before the upload
    ticket = ticket_for({"filename": "list.csv", "reason": "complaint"})
    put_file(ticket, csv_bytes([["mobile"], [CN[0]], [CN[30]]]))
    assert status(ticket["importId"])["added"] == 2

    later = list(process_records([{"mobile": CN[30]}, {"mobile": CN[31]}], default_region="CN"))
    add_rows(store, task, "imp_later", later, reserved=2)
    assert [(r.status, r.reason) for r in later] == [("invalid", "dnc"), ("accepted", None)]

    svc, _dispatcher = engine(store, provider, clock)
    svc.transition(task.task_id, "start")
    assert CN[0] not in sent_numbers(provider) and sorted(sent_numbers(provider)) == sorted([*CN[1:4], CN[31]])
    contact = store.get_contact(task.task_id, CN[0])
    assert contact is not None and contact["state"] == "skipped" and contact["skipReason"] == "dnc"
    assert contact["attempts"] == 0


def test_an_upload_that_lists_numbers_asks_running_tasks_for_a_dispatcher_run(store: Store) -> None:
    task = make_task(store, RecordingProvider(), CN[:1])
    store.finish_task(task.task_id, task.version, {"status": "running"})
    ticket = ticket_for({"filename": "list.csv"})
    put_file(ticket, csv_bytes([["mobile"], [CN[0]]]))
    sqs = boto3.client("sqs", region_name="us-east-1")
    messages = sqs.receive_message(QueueUrl=os.environ["DISPATCH_QUEUE_URL"], MaxNumberOfMessages=10)["Messages"]
    assert {"taskId": task.task_id, "reason": "dnc"} in [json.loads(m["Body"]) for m in messages]

"""Contact imports over HTTP through the local stack: a presigned upload becomes contacts at the
provider simulator and a row-level report; a JSON import answers per contact."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.slow

CALL_LIST = (
    "姓名,手机,国家码,订单号\r\n"
    "张三,13800138000,86,A-1\r\n"
    "李四,+44 20 7946 0958,,=1+2\r\n"
    "again,138-0013-8000,86,A-3\r\n"
    "bad,12345,86,A-4\r\n"
).encode("utf-8-sig")


def new_task(local_stack: Any) -> str:
    body = {"name": "e2e import", "provider": "xswitch", "type": "auto"}
    created = local_stack.authed("POST", "/tasks", json=body)
    assert created.status_code == 201, created.text
    return str(created.json()["taskId"])


def test_a_presigned_upload_is_imported_and_reported(local_stack: Any) -> None:
    task_id = new_task(local_stack)
    ticket = local_stack.authed("POST", f"/tasks/{task_id}/uploads", json={"filename": "客户 名单.csv"})
    assert ticket.status_code == 201, ticket.text
    ticket_body = ticket.json()
    assert ticket_body["objectKey"].startswith(f"imports/{task_id}/")
    put = requests.put(ticket_body["uploadUrl"], data=CALL_LIST, timeout=30)
    assert put.status_code == 200, put.text

    def finished() -> Any:
        job = local_stack.authed("GET", f"/imports/{ticket_body['importId']}").json()
        return job if job["status"] in ("completed", "partial", "failed") else None

    job = local_stack.wait_for(finished, timeout=60)
    assert job["status"] == "completed", job
    assert (job["rows"], job["accepted"], job["duplicate"], job["invalid"]) == (4, 2, 1, 1)

    report = requests.get(job["reportUrl"], timeout=30)
    assert report.status_code == 200
    rows = list(csv.DictReader(io.StringIO(report.content.decode("utf-8-sig"))))
    assert [(r["row"], r["outcome"]) for r in rows] == [
        ("2", "accepted"),
        ("3", "accepted"),
        ("4", "duplicate"),
        ("5", "invalid"),
    ]
    assert rows[1]["订单号"] == "'=1+2"

    contacts = local_stack.authed("GET", f"/tasks/{task_id}/contacts").json()["items"]
    assert {c["e164"]: c["state"] for c in contacts} == {"+8613800138000": "queued", "+442079460958": "queued"}
    counts = local_stack.authed("GET", f"/tasks/{task_id}").json()["counts"]
    assert counts["contacts"] == {"queued": 2}


def test_json_contacts_answer_one_result_each(local_stack: Any) -> None:
    task_id = new_task(local_stack)
    body = {"contacts": [{"mobile": "13900139000"}, {"mobile": "+86 139 0013 9000"}, {"mobile": "abc"}]}
    answer = local_stack.authed("POST", f"/tasks/{task_id}/contacts", json=body, headers={"Idempotency-Key": "k1"})
    assert answer.status_code == 200, answer.text
    assert [c["outcome"] for c in answer.json()["contacts"]] == ["accepted", "duplicate", "invalid"]
    again = local_stack.authed("POST", f"/tasks/{task_id}/contacts", json=body, headers={"Idempotency-Key": "k1"})
    assert again.json() == answer.json()

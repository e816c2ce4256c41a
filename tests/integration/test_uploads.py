"""Uploads the way people upload, through the contact_import handler with moto: the ticket says how
to PUT, any Content-Type a client sends is imported, every PUT of one upload URL is visible from the
importId the client holds, and names with control characters are refused before anything is made."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
import requests

from local.moto_s3 import keep_put_bodies
from tests.integration.test_imports import api, bucket_name, create_task, csv_bytes, job, s3_event, work

ROWS = [["name", "mobile"], ["A", "13800138000"], ["B", "13900139000"]]
FIXED = [*ROWS, ["C", "13700137000"]]


@pytest.fixture
def s3_as_aws(sims: dict[str, Any]) -> dict[str, Any]:
    keep_put_bodies()  # what the local stack does in its moto process
    return sims


def put_through_url(ticket: dict[str, Any], body: bytes, content_type: str | None) -> str | None:
    """The client's PUT to the presigned URL (as curl or a browser sends it); the S3 event follows."""
    headers = {"Content-Type": content_type} if content_type else {}
    answer = requests.put(ticket["uploadUrl"], data=body, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    head = boto3.client("s3", region_name="us-east-1").head_object(Bucket=bucket_name(), Key=ticket["objectKey"])
    version = head.get("VersionId")
    s3_event(ticket["objectKey"], version)
    return version


def test_the_ticket_says_how_to_put_the_file(s3_as_aws: dict[str, Any]) -> None:
    task_id = create_task("xswitch")
    csv_ticket = api("POST", f"/tasks/{task_id}/uploads", {"filename": "list.csv"})
    assert csv_ticket.status == 201
    assert csv_ticket.json["method"] == "PUT" and csv_ticket.json["headers"] == {"Content-Type": "text/csv"}
    assert "laterImports" in csv_ticket.json["note"]
    xlsx = api("POST", f"/tasks/{task_id}/uploads", {"filename": "名单.XLSX"}).json
    assert xlsx["headers"]["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert job(csv_ticket.json["importId"])["status"] == "waiting"


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", None, "text/csv", "application/octet-stream", "multipart/form-data; b=x"],
    ids=["curl-default", "none", "text-csv", "octet-stream", "multipart"],
)
def test_any_content_type_a_client_sends_is_imported(s3_as_aws: dict[str, Any], content_type: str | None) -> None:
    task_id = create_task("xswitch")
    ticket = api("POST", f"/tasks/{task_id}/uploads", {"filename": "list.csv"}).json
    put_through_url(ticket, csv_bytes(ROWS), content_type)
    work()
    done = job(ticket["importId"])
    assert done["status"] == "completed" and done["error"] is None, done
    assert (done["rows"], done["accepted"]) == (2, 2)


def test_every_put_of_one_upload_url_is_seen_from_its_import(s3_as_aws: dict[str, Any]) -> None:
    task_id = create_task("xswitch")
    ticket = api("POST", f"/tasks/{task_id}/uploads", {"filename": "list.csv"}).json
    put_through_url(ticket, csv_bytes(ROWS), "text/csv")
    work()
    # the corrected file, PUT to the same URL: its own import, listed on the one the client holds
    second_version = put_through_url(ticket, csv_bytes(FIXED), "text/csv")
    work()
    first = job(ticket["importId"])
    assert first["status"] == "completed" and first["accepted"] == 2
    assert len(first["laterImports"]) == 1
    later = job(first["laterImports"][0])
    assert later["uploadOf"] == ticket["importId"] and later["objectVersion"] == second_version
    assert (later["status"], later["rows"], later["accepted"], later["duplicate"]) == ("completed", 3, 1, 2)
    # the same S3 event delivered again links nothing twice and imports nothing twice
    assert s3_event(ticket["objectKey"], second_version) == {"queued": 0}
    assert job(ticket["importId"])["laterImports"] == first["laterImports"]
    listed = api("GET", f"/tasks/{task_id}/imports").json["items"]
    assert sorted(i["importId"] for i in listed) == sorted([ticket["importId"], later["importId"]])


@pytest.mark.parametrize("name", ["list\n.csv", "list.csv\n", "li\rst.csv", "a\tb.csv", "x\u2028y.csv", "a\x7f.csv"])
def test_a_name_with_control_characters_is_refused_and_nothing_is_made(s3_as_aws: dict[str, Any], name: str) -> None:
    task_id = create_task("xswitch")
    answer = api("POST", f"/tasks/{task_id}/uploads", {"filename": name})
    assert answer.status == 422, answer.json
    assert answer.json["errors"][0]["field"] == "filename"
    assert "control character" in answer.json["errors"][0]["message"]
    assert api("GET", f"/tasks/{task_id}/imports").json["items"] == []

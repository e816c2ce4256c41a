"""Imports always end (issue 16, item 2): rows that cannot be stored are invalid and the rest goes on,
a file that breaks off keeps the rows before the break, a chunk or an upload event that reaches its
DLQ ends its import `partial` or `failed` with the reason, and a check says why an import stopped."""

from __future__ import annotations

import io
import json
import os
import zipfile
from typing import Any

import boto3
import pytest
from outcall import imports
from outcall.store import default_store

from tests.integration.test_imports import (
    create_task,
    csv_bytes,
    job,
    report,
    stored_numbers,
    task_detail,
    upload,
    work,
)


def numbers(count: int, start: int = 0) -> list[str]:
    return [f"1380013{i:04d}" for i in range(start, start + count)]


# ---------------------------------------------------------------- rows over the limits


def test_a_row_whose_cells_are_over_the_limits_is_invalid_and_the_other_rows_are_imported(
    sims: dict[str, Any],
) -> None:
    """The issue's file: 10 rows, row 5 (the 4th data row) holds four 127 KB cells. It was one
    contact item over DynamoDB's 400 KB: the chunk failed three times and the import ran forever."""
    task_id = create_task("xswitch")
    big = "x" * (127 * 1024)
    rows: list[list[str]] = [["mobile", "a", "b", "c", "d"]]
    for i, number in enumerate(numbers(10)):
        rows.append([number, big, big, big, big] if i == 3 else [number, "1", "2", "3", "4"])
    import_id = upload(task_id, csv_bytes(rows))
    work()
    done = job(import_id)
    assert done["status"] == "completed", done
    assert (done["rows"], done["accepted"], done["invalid"]) == (10, 9, 1)
    assert done["reasons"] == {"cell_too_long": 1}
    bad = [r for r in report(import_id) if r["outcome"] == "invalid"]
    assert [(r["row"], r["reason"]) for r in bad] == [("5", "cell_too_long")]
    assert "130,048 characters" in bad[0]["message"]
    assert sorted(stored_numbers(task_id)) == sorted(f"+86{n}" for i, n in enumerate(numbers(10)) if i != 3)


@pytest.mark.parametrize(
    ("header", "cell", "why"),
    [
        (["name", "mobile"], "n" * 201, "'name' has 201 characters; at most 200"),
        (["mobile", "note"], "v" * 2001, "'note' has 2,001 characters; at most 2,000"),
    ],
)
def test_a_name_or_variable_over_its_limit_makes_its_row_invalid(
    sims: dict[str, Any], header: list[str], cell: str, why: str
) -> None:
    task_id = create_task("xswitch")
    good, bad = numbers(2)
    rows = [header, *[[cell, n] if header[0] == "name" else [n, cell] for n in [bad]]]
    rows.append(["ok", good] if header[0] == "name" else [good, "ok"])
    import_id = upload(task_id, csv_bytes(rows))
    work()
    done = job(import_id)
    assert (done["status"], done["accepted"], done["invalid"]) == ("completed", 1, 1)
    assert [r["message"] for r in report(import_id) if r["outcome"] == "invalid"] == [f"column {why}"]
    assert stored_numbers(task_id) == [f"+86{good}"]


def _xlsx_with_one_big_cell(size: int) -> bytes:
    """Three rows; row 3's note is `size` characters (in the shared strings, as Excel keeps text)."""
    data = _xlsx([["mobile", "note"], ["13800138000", "a"], ["13800138001", "PLACEHOLDER"], ["13800138002", "b"]])
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            target.writestr(item.filename, source.read(item.filename).replace(b"PLACEHOLDER", b"x" * size))
    return out.getvalue()


def test_an_xlsx_cell_of_30_mb_makes_its_row_invalid_and_what_is_kept_of_it_is_small(sims: dict[str, Any]) -> None:
    """The issue's XLSX had one 100 MB cell: the import ran past 300 s at 1.1 GB. The cell's row is
    invalid; the chunk file and the report keep 2,000 characters of it (bench: the 100 MB case)."""
    task_id = create_task("xswitch")
    import_id = upload(task_id, _xlsx_with_one_big_cell(30 * 2**20), filename="big.xlsx")
    work()
    done = job(import_id)
    assert (done["status"], done["accepted"], done["invalid"]) == ("completed", 2, 1)
    bad = [r for r in report(import_id) if r["outcome"] == "invalid"]
    assert [(r["row"], r["reason"]) for r in bad] == [("3", "cell_too_long")]
    assert bad[0]["message"] == "column 'note' has 31,457,280 characters; at most 2,000"
    assert len(bad[0]["note"]) == 2000 and bad[0]["note"].endswith("…")
    s3 = boto3.client("s3", region_name="us-east-1")
    stored = s3.head_object(Bucket=os.environ["BUCKET_NAME"], Key=imports.chunk_key(import_id, 0))
    assert stored["ContentLength"] < 10_000
    assert sorted(stored_numbers(task_id)) == ["+8613800138000", "+8613800138002"]


# ---------------------------------------------------------------- files that break off


def test_a_500_kb_field_after_three_good_rows_keeps_the_three_and_reports_the_bad_one(sims: dict[str, Any]) -> None:
    task_id = create_task("xswitch")
    body = csv_bytes([["mobile", "note"], *[[n, "ok"] for n in numbers(3)]]) + b"13800139999," + b"y" * 500_000
    import_id = upload(task_id, body + b"\r\n" + csv_bytes([[n, "after"] for n in numbers(2, 50)]))
    work()
    done = job(import_id)
    assert done["status"] == "partial", done
    assert (done["rows"], done["accepted"], done["invalid"]) == (4, 3, 1)
    assert "row 5: a cell of more than 131,072 characters" in done["error"]
    assert "rows after row 5 were not read" in done["error"]
    assert [(r["row"], r["outcome"], r["reason"]) for r in report(import_id)] == [
        ("2", "accepted", ""),
        ("3", "accepted", ""),
        ("4", "accepted", ""),
        ("5", "invalid", "cell_too_long"),
    ]
    assert sorted(stored_numbers(task_id)) == [f"+86{n}" for n in numbers(3)]


def test_bytes_that_are_not_utf8_half_way_keep_every_row_before_them(sims: dict[str, Any]) -> None:
    task_id = create_task("xswitch")
    good = numbers(4000)  # past the 64 KB the encoding is decided on
    body = csv_bytes([["mobile", "name"], *[[n, "名字"] for n in good]]) + b"13900139000,\xff\xfe\r\n"
    import_id = upload(task_id, body)
    work(rounds=4)
    done = job(import_id)
    assert done["status"] == "partial", done
    assert (done["rows"], done["accepted"], done["invalid"]) == (4001, 4000, 1)
    assert "row 4002" in done["error"] and "UTF-8" in done["error"]
    assert task_detail(task_id)["counts"]["contacts"]["queued"] == 4000
    assert report(import_id)[-1]["reason"] == "bad_encoding"


def _xlsx(rows: list[list[str]]) -> bytes:
    from openpyxl import Workbook

    book = Workbook()  # writes <dimension> first, as Excel does
    sheet = book.active
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _cut_sheet(data: bytes, keep: float) -> tuple[bytes, int]:
    """The workbook with its sheet's XML cut off part way (a damaged or half-written file), and how
    many whole rows (header included) are left before the cut."""
    source = zipfile.ZipFile(io.BytesIO(data))
    damaged = io.BytesIO()
    whole = 0
    with zipfile.ZipFile(damaged, "w") as target:
        for item in source.infolist():
            content = source.read(item.filename)
            if item.filename.startswith("xl/worksheets/sheet"):
                content = content[: int(len(content) * keep)]
                whole = content.count(b"</row>")
            target.writestr(item, content)
    return damaged.getvalue(), whole


def test_an_xlsx_whose_sheet_breaks_off_keeps_the_rows_before_the_break(sims: dict[str, Any]) -> None:
    task_id = create_task("xswitch")
    data, whole = _cut_sheet(_xlsx([["mobile"], *[[n] for n in numbers(2000)]]), 0.5)
    import_id = upload(task_id, data, filename="list.xlsx")
    work()
    done = job(import_id)
    assert done["status"] == "partial", done
    assert "damaged or truncated" in done["error"]
    kept = whole - 1  # every whole row before the cut but the header
    assert done["accepted"] == kept and 500 < kept < 1500
    assert done["rows"] == kept + 1 and done["invalid"] == 1
    outcomes = report(import_id)
    assert [r["outcome"] for r in outcomes] == ["accepted"] * kept + ["invalid"]
    assert task_detail(task_id)["counts"]["contacts"]["queued"] == kept


# ---------------------------------------------------------------- ImportDLQ, UploadDLQ


def failures_handler() -> Any:
    import import_failures_handler

    return import_failures_handler


def dead_letters(stack: Any, queue: str) -> list[dict[str, Any]]:
    """Deliver a DLQ to the import_failures function, as its SQS trigger does."""
    from tests.integration.results_support import drain

    return drain(stack.queue_urls[queue], handler=failures_handler(), rounds=2)


def queue_depth(stack: Any, queue: str) -> int:
    attributes = boto3.client("sqs", region_name="us-east-1").get_queue_attributes(
        QueueUrl=stack.queue_urls[queue],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def error_logs(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The ERROR lines logged, with their structured keys (the Powertools logger's `extra`)."""
    return [
        {"message": r.getMessage(), **{k: v for k, v in vars(r).items() if k in ("importId", "step", "reason")}}
        for r in caplog.records
        if r.levelname == "ERROR"
    ]


def log_lines(out: str) -> list[dict[str, Any]]:
    lines = []
    for line in out.splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return lines


def metric_total(lines: list[dict[str, Any]], name: str) -> float:
    return sum(
        sum(line[name]) if isinstance(line[name], list) else line[name]
        for line in lines
        if "_aws" in line and name in line
    )


def refuse_number(monkeypatch: pytest.MonkeyPatch, refused: str) -> None:
    """DynamoDB refuses the contact item of one number, every time (as it refused items over 400 KB);
    its message names the number, as DynamoDB's own messages may name a value."""
    from botocore.exceptions import ClientError
    from outcall.store import Store

    claim = Store.claim_contacts

    def refusing(self: Any, task_id: str, contacts: Any) -> Any:
        if any(c["e164"] == refused for c in contacts):
            error = {"Code": "ValidationException", "Message": f"Item of {refused} has exceeded the maximum size"}
            raise ClientError({"Error": error}, "PutItem")
        return claim(self, task_id, contacts)

    monkeypatch.setattr(Store, "claim_contacts", refusing)


def test_a_chunk_that_fails_every_attempt_ends_its_import_partial_and_the_other_chunks_go_on(
    aws: Any,
    sims: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(imports, "CHUNK_ROWS", 2)
    task_id = create_task("xswitch")
    rows = numbers(6)
    refuse_number(monkeypatch, f"+86{rows[2]}")  # in the second chunk (rows 4 and 5 of the file)
    import_id = upload(task_id, csv_bytes([["mobile"], *[[n] for n in rows]]))
    work(rounds=6)  # the second chunk fails three times and moto moves it to ImportDLQ
    assert job(import_id)["status"] == "running"
    assert queue_depth(aws, "ImportDLQ") == 1
    capsys.readouterr()
    caplog.clear()
    dead_letters(aws, "ImportDLQ")
    work()  # the finish step the dead chunk queued
    done = job(import_id)
    assert done["status"] == "partial", done
    assert (done["rows"], done["accepted"], done["invalid"]) == (6, 4, 2)
    assert done["reasons"] == {"not_stored": 2}
    assert done["error"].startswith("rows 4-5 could not be stored (3 attempts): ClientError:")
    assert "ValidationException" in done["error"] and rows[2] not in done["error"]
    assert [(r["row"], r["outcome"], r["reason"]) for r in report(import_id)] == [
        ("2", "accepted", ""),
        ("3", "accepted", ""),
        ("4", "invalid", "not_stored"),
        ("5", "invalid", "not_stored"),
        ("6", "accepted", ""),
        ("7", "accepted", ""),
    ]
    assert sorted(stored_numbers(task_id)) == sorted(f"+86{n}" for n in rows[:2] + rows[4:])
    assert default_store().numbers_used(task_id, "xswitch")[0] == 4  # the two unstored numbers given back
    errors = error_logs(caplog)
    assert [(e["message"], e["importId"], e["step"]) for e in errors] == [
        ("import step failed every attempt", import_id, "chunk")
    ]
    assert "ValidationException" in errors[0]["reason"] and rows[2] not in errors[0]["reason"]
    assert rows[2] not in caplog.text
    assert metric_total(log_lines(capsys.readouterr().out), "ImportStepsDeadLettered") == 1


def test_an_import_whose_only_chunk_fails_every_attempt_ends_failed(
    aws: Any, sims: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = create_task("xswitch")
    rows = numbers(3)
    refuse_number(monkeypatch, f"+86{rows[1]}")
    import_id = upload(task_id, csv_bytes([["mobile"], *[[n] for n in rows]]))
    work(rounds=6)
    dead_letters(aws, "ImportDLQ")
    work()
    done = job(import_id)
    assert (done["status"], done["rows"], done["accepted"], done["invalid"]) == ("failed", 3, 0, 3)
    assert "could not be stored" in done["error"]
    assert stored_numbers(task_id) == []
    assert default_store().numbers_used(task_id, "xswitch")[0] == 0


def test_a_plan_that_fails_every_attempt_ends_the_import_failed_with_its_error(
    aws: Any, sims: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the reader broke on 13800138000")

    monkeypatch.setattr(imports, "open_call_list", broken)
    task_id = create_task("xswitch")
    import_id = upload(task_id, csv_bytes([["mobile"], *[[n] for n in numbers(3)]]))
    work(rounds=5)
    running = job(import_id)
    assert running["status"] == "running" and "RuntimeError" in running["lastError"]
    dead_letters(aws, "ImportDLQ")
    done = job(import_id)
    assert done["status"] == "failed"
    assert done["error"].startswith("the file could not be read (3 attempts): RuntimeError: the reader broke on")
    assert "13800138000" not in done["error"]


def test_an_upload_event_that_fails_every_attempt_reaches_uploaddlq_and_its_import_says_so(
    aws: Any,
    sims: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Through the local stack's S3 pump: the asynchronous invocation is tried three times
    (EventInvokeConfig), then its destination record goes to UploadDLQ, as Lambda sends it."""
    from botocore.exceptions import ClientError

    from local.pumps import S3Pump
    from local.runtime import Runtime
    from tests.helpers import load_event

    task_id = create_task("xswitch")
    ticket = contact_handler_api("POST", f"/tasks/{task_id}/uploads", {"filename": "list.csv"})
    import_id, key = ticket["importId"], ticket["objectKey"]
    s3 = boto3.client("s3", region_name="us-east-1")
    put = s3.put_object(Bucket=os.environ["BUCKET_NAME"], Key=key, Body=csv_bytes([["mobile"], numbers(1)]))

    tries = []

    def throttled(self: Any, *args: Any) -> Any:
        tries.append(args)
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "UpdateItem")

    monkeypatch.setattr(imports.Importer, "register_upload", throttled)
    runtime = Runtime(aws.functions())
    sqs = boto3.client("sqs", region_name="us-east-1")
    pump = S3Pump.__new__(S3Pump)  # its invocation only: no thread, no notification queue
    pump.runtime, pump.sqs = runtime, sqs
    event = load_event("contact_import_s3_put")  # an S3 ObjectCreated event as S3 sends it
    record = event["Records"][0]
    record["s3"]["bucket"]["name"] = os.environ["BUCKET_NAME"]
    record["s3"]["object"].update(key=key, versionId=put.get("VersionId"))
    pump.invoke_async(runtime.functions["ContactImportFunction"], {"Records": [record]}, key)
    assert len(tries) == 3
    assert job(import_id)["status"] == "waiting"
    capsys.readouterr()
    caplog.clear()
    dead_letters(aws, "UploadDLQ")
    done = job(import_id)
    assert done["status"] == "failed", done
    assert done["error"] == (
        "the upload could not be registered (ClientError: An error occurred (ThrottlingException) when calling "
        "the UpdateItem operation: Rate exceeded, 3 attempts): upload the file again"
    )
    assert [e["message"] for e in error_logs(caplog)] == ["upload event failed every attempt"]
    assert metric_total(log_lines(capsys.readouterr().out), "UploadsFailed") == 1
    assert queue_depth(aws, "UploadDLQ") == 0


def contact_handler_api(method: str, path: str, body: Any) -> dict[str, Any]:
    from tests.integration.test_imports import api

    answer = api(method, path, body)
    assert answer.status in (200, 201), answer.json
    return dict(answer.json)


# ---------------------------------------------------------------- the stalled-import check


def test_the_stalled_check_says_why_an_import_stopped_and_ends_uploads_that_never_came(
    aws: Any,
    sims: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from datetime import timedelta

    from outcall.store import utcnow

    from tests.helpers import FakeContext
    from tests.integration.test_imports import planned_by_hand

    monkeypatch.setattr(imports, "CHUNK_ROWS", 2)
    task_id = create_task("xswitch")
    finished = upload(task_id, csv_bytes([["mobile"], numbers(1, 90)]))
    work()
    assert job(finished)["status"] == "completed"
    importer, stuck = planned_by_hand(task_id, csv_bytes([["mobile"], *[[n] for n in numbers(3)]]))
    importer.work_chunk(stuck, 0)  # chunk 1's message is lost (nothing was queued)
    boto3.client("sqs", region_name="us-east-1").purge_queue(QueueUrl=os.environ["IMPORT_QUEUE_URL"])
    never = contact_handler_api("POST", f"/tasks/{task_id}/uploads", {"filename": "later.csv"})["importId"]
    assert {j.import_id for j in default_store().open_imports()} == {stuck, never}  # the sparse index

    check = {"check": "stalled-imports"}
    assert failures_handler().lambda_handler(check, FakeContext()) == {"stalled": []}  # nothing is old yet
    later = utcnow() + timedelta(minutes=45)
    monkeypatch.setattr(imports, "utcnow", lambda: later)
    capsys.readouterr()
    caplog.clear()
    assert failures_handler().lambda_handler(check, FakeContext()) == {"stalled": [stuck]}
    seen = job(stuck)
    assert seen["status"] == "running"
    assert seen["stalled"]["reason"] == (
        "no progress for 45 minutes: 1 of 2 chunks not done: chunk 1 waiting for its message"
    )
    assert seen["stalled"]["since"] == seen["updatedAt"]  # the note is no progress
    gone = job(never)
    assert gone["status"] == "failed" and "no file was uploaded before the upload URL expired" in gone["error"]
    assert [(e["message"], e["importId"]) for e in error_logs(caplog)] == [("import stalled", stuck)]
    assert metric_total(log_lines(capsys.readouterr().out), "ImportsStalled") == 1
    assert {j.import_id for j in default_store().open_imports()} == {stuck}

    importer.work_chunk(stuck, 1)  # its chunk comes after all: it ends and leaves the index
    monkeypatch.setattr(imports, "utcnow", utcnow)
    importer.finish(stuck)
    assert job(stuck)["status"] == "completed"
    assert default_store().open_imports() == []


def test_a_json_request_that_fails_while_storing_ends_its_import_failed(
    aws: Any, sims: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """It stayed `running` with 0 rows for good."""
    from tests.integration.test_imports import api

    task_id = create_task("xswitch")
    refuse_number(monkeypatch, "+8613800138000")
    answer = api("POST", f"/tasks/{task_id}/contacts", {"contacts": [{"mobile": "13800138000"}]})
    assert answer.status >= 500
    [ended] = api("GET", f"/tasks/{task_id}/imports").json["items"]
    assert ended["status"] == "failed"
    assert ended["error"].startswith("the request failed: ClientError:") and "13800138000" not in ended["error"]
    assert default_store().open_imports() == []

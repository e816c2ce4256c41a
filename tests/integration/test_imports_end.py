"""Imports always end (issue 16, item 2): rows that cannot be stored are invalid and the rest goes on,
a file that breaks off keeps the rows before the break, a chunk or an upload event that reaches its
DLQ ends its import `partial` or `failed` with the reason, and a check says why an import stopped."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import pytest

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

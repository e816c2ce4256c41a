"""outcall.calllists: streaming CSV/XLSX call lists, the row pipeline and the row-level report."""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from openpyxl import Workbook
from outcall.calllists import (
    ACCEPTED,
    DUPLICATE,
    INVALID,
    CallList,
    CallListError,
    Columns,
    ImportCounts,
    ReportWriter,
    RowOutcome,
    neutralise_cell,
    open_call_list,
    open_csv,
    open_xlsx,
    process_records,
    process_rows,
)
from outcall.errors import OutcallError
from outcall.models import ContactSpec

# ---------------------------------------------------------------- helpers


class OneWayStream(io.RawIOBase):
    """An unseekable stream (like an S3 body) that remembers how much was read from it."""

    def __init__(self, data: bytes, chunk: int = 1000) -> None:
        self._data = data
        self._pos = 0
        self._chunk = chunk

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        n = min(len(buffer), self._chunk, len(self._data) - self._pos)
        buffer[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n

    @property
    def consumed(self) -> int:
        return self._pos


def open_bytes(data: bytes, **kwargs) -> CallList:  # type: ignore[no-untyped-def]
    return open_call_list(io.BytesIO(data), **kwargs)


def outcomes(data: bytes, default_region: str | None = None, **kwargs) -> list[RowOutcome]:  # type: ignore[no-untyped-def]
    with open_bytes(data, **kwargs) as call_list:
        return list(process_rows(call_list, default_region=default_region))


def rows_of(call_list: CallList) -> list[tuple[int, list[str]]]:
    return list(call_list)


def error_of(data: bytes, **kwargs) -> CallListError:  # type: ignore[no-untyped-def]
    with pytest.raises(CallListError) as caught, open_bytes(data, **kwargs) as call_list:
        list(process_rows(call_list, default_region="CN"))
    return caught.value


def xlsx_bytes(rows: list[list[object]], *, title: str = "Sheet1", extra_sheets: dict | None = None) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = title
    for row in rows:
        sheet.append(row)
    for name, more in (extra_sheets or {}).items():
        other = workbook.create_sheet(name)
        for row in more:
            other.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


# ---------------------------------------------------------------- CSV encodings and delimiters

HEADER_ROWS = [["name", "countryCode", "mobile"], ["Ada", "86", "13812345678"], ["Bob", "86", "13912345678"]]


def csv_text(rows: list[list[str]], delimiter: str = ",", newline: str = "\r\n") -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator=newline).writerows(rows)
    return out.getvalue()


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030"])
@pytest.mark.parametrize("newline", ["\r\n", "\n"])
def test_every_encoding_and_delimiter(delimiter: str, encoding: str, newline: str) -> None:
    rows = [
        ["姓名", "国家码", "手机", "备注"],
        ["张三", "86", "13812345678", "老客户"],
        ["李四", "+86", "139 1234 5678", "新"],
    ]
    data = csv_text(rows, delimiter, newline).encode(encoding)
    with open_bytes(data) as call_list:
        assert call_list.kind == "csv"
        assert call_list.delimiter == delimiter
        assert call_list.encoding == ("gb18030" if encoding == "gb18030" else "utf-8")
        assert call_list.header == ("姓名", "国家码", "手机", "备注")
        found = list(process_rows(call_list))
    assert [(o.row, o.status, o.e164) for o in found] == [
        (2, ACCEPTED, "+8613812345678"),
        (3, ACCEPTED, "+8613912345678"),
    ]
    contact = found[0].contact
    assert contact == ContactSpec(e164="+8613812345678", name="张三", variables={"备注": "老客户"})


def test_bom_is_not_part_of_the_first_header() -> None:
    data = codecs.BOM_UTF8 + b"mobile,name\r\n+8613812345678,Ada\r\n"
    with open_bytes(data) as call_list:
        assert call_list.header == ("mobile", "name")
        assert call_list.columns.index["mobile"] == 0


def test_gb18030_is_detected_and_chinese_header_mapped() -> None:
    data = "姓名,公司,国家码,手机,区号,座机\n王五,示例科技,86,,10,58512042\n".encode("gb18030")
    [outcome] = outcomes(data)
    assert outcome.status == ACCEPTED
    assert outcome.e164 == "+861058512042"
    assert outcome.contact is not None
    assert outcome.contact.company == "示例科技"


def test_utf8_multibyte_character_cut_by_the_sample_is_still_utf8() -> None:
    filler = "name,mobile,note\n" + "".join(f"A,1381234{i:04d},x\n" for i in range(5000))
    head = filler.encode()
    # put a 3-byte character across the 64 KiB sample boundary
    pad = 65536 - len(head) - 1
    data = head + b"B,13812345678," + b"y" * (pad - 15) + "中文\n".encode()
    with open_bytes(data) as call_list:
        assert call_list.encoding == "utf-8"
        last = rows_of(call_list)[-1]
    assert last[1][2].endswith("中文")


def test_quoted_fields_with_delimiters_quotes_and_newlines_are_one_row() -> None:
    data = (
        b'name,mobile,note\r\n"Li, Si",13812345678,"line one\r\nline two, with ""quotes"""\r\n'
        b'Wang,13912345678,"a\nb\nc"\r\nZhao,13712345678,plain\r\n'
    )
    found = outcomes(data, "CN")
    # rows as a spreadsheet shows them: a record spanning lines is one row
    assert [o.row for o in found] == [2, 3, 4]
    assert found[0].values == {"name": "Li, Si", "mobile": "13812345678", "note": 'line one\r\nline two, with "quotes"'}
    assert found[1].values["note"] == "a\nb\nc"
    assert all(o.status == ACCEPTED for o in found)


def test_semicolon_file_with_commas_inside_values() -> None:
    data = b"name;mobile;company\nAda;13812345678;Acme, Inc.\nBob;13912345678;Foo, Bar, Baz\n"
    with open_bytes(data) as call_list:
        assert call_list.delimiter == ";"
        assert [cells for _, cells in call_list] == [
            ["Ada", "13812345678", "Acme, Inc."],
            ["Bob", "13912345678", "Foo, Bar, Baz"],
        ]


def test_single_column_file() -> None:
    data = b"mobile\n+8613812345678\n+8613912345678\n"
    with open_bytes(data) as call_list:
        assert call_list.delimiter == ","
        assert [o.e164 for o in process_rows(call_list)] == ["+8613812345678", "+8613912345678"]


def test_unseekable_stream_is_read_lazily() -> None:
    body = "".join(f"A{i},86,1381234{i % 10000:04d}\n" for i in range(40_000)).encode()
    data = b"name,countryCode,mobile\n" + body
    stream = OneWayStream(data)
    with open_call_list(stream) as call_list:  # type: ignore[arg-type]
        first = next(process_rows(call_list))
        assert first.status == ACCEPTED
        assert stream.consumed < len(data) // 2  # streaming: nowhere near the whole file yet
        rest = sum(1 for _ in process_rows(call_list))
    assert stream.consumed == len(data)
    assert rest > 0


def test_caller_stream_is_left_open() -> None:
    stream = io.BytesIO(b"mobile\n+8613812345678\n")
    with open_call_list(stream) as call_list:
        list(call_list)
    assert not stream.closed


# ---------------------------------------------------------------- file-level errors


@pytest.mark.parametrize("data", [b"", b"   \r\n\r\n  ", codecs.BOM_UTF8, codecs.BOM_UTF8 + b"\n\n"])
def test_empty_file(data: bytes) -> None:
    error = error_of(data)
    assert error.reason == "empty_file"
    assert isinstance(error, OutcallError)
    assert error.status == 422


def test_only_blank_records() -> None:
    assert error_of(b",,,\n,,\n").reason == "empty_file"


def test_header_only_file_has_zero_rows() -> None:
    with open_bytes(b"name,mobile\r\n") as call_list:
        counts = ImportCounts()
        for outcome in process_rows(call_list):
            counts.add(outcome)
    assert (counts.rows, counts.accepted, counts.duplicate, counts.invalid) == (0, 0, 0, 0)


def test_header_without_number_column() -> None:
    error = error_of(b"name,company\nAda,Acme\n")
    assert error.reason == "no_number_column"
    assert "mobile" in error.message and "name" in error.message


def test_duplicate_header_meaning() -> None:
    assert error_of(b"mobile,Mobile\n1,2\n").reason == "duplicate_column"
    assert error_of("手机,mobile\n1,2\n".encode()).reason == "duplicate_column"
    assert error_of(b"mobile,note,note\n1,2,3\n").reason == "duplicate_column"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (bytes(range(256)) * 8, "binary_file"),
        (b"\x00\x01\x02mobile\n", "binary_file"),
        (b"mobile\n" + bytes([7, 8, 11, 12, 14, 15, 16, 17]) * 50, "binary_file"),
        ("name,mobile\nJosé,13812345678\n".encode("utf-16"), "unsupported_encoding"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, "legacy_xls"),
        (b"name,mobile\nJos\xe9,13812345678\n\xff\xfe\x80,1\n", "unknown_encoding"),
    ],
)
def test_files_that_are_not_csv_text(data: bytes, reason: str) -> None:
    assert error_of(data).reason == reason


def test_zip_given_to_the_csv_reader() -> None:
    with pytest.raises(CallListError) as caught:
        open_csv(io.BytesIO(xlsx_bytes([["mobile"]])))
    assert caught.value.reason == "not_csv"


def test_encoding_change_after_the_sample_names_the_row() -> None:
    data = b"name,mobile\n" + b"A,13812345678\n" * 6000 + "张,13812345670\n".encode("gb18030")
    with open_bytes(data) as call_list:
        assert call_list.encoding == "utf-8"
        with pytest.raises(CallListError) as caught:
            list(process_rows(call_list, default_region="CN"))
    assert caught.value.reason == "bad_encoding"
    assert caught.value.row is not None and caught.value.row > 5000
    # plain iteration over the call list reports it the same way
    with open_bytes(data) as call_list, pytest.raises(CallListError, match="UTF-8"):
        list(call_list)


def test_a_field_larger_than_csv_allows_is_a_clear_error() -> None:
    data = b'name,mobile\n"' + b"x" * 200_000 + b'",1\n'
    error = error_of(data)
    assert error.reason == "cell_too_long"
    assert error.row == 2
    assert error.message == "row 2: a cell of more than 131,072 characters"


def test_a_read_error_further_down_names_its_row_after_the_rows_before_it() -> None:
    good = [f"n{i},1381234{i:04d}" for i in range(150)]  # rows 2..151
    data = ("name,mobile\n" + "\n".join(good) + "\n").encode() + b'big,"' + b"x" * 200_000 + b'"\n'
    handed_out: list[int] = []
    with open_bytes(data) as call_list, pytest.raises(CallListError) as caught:
        for outcome in process_rows(call_list, default_region="CN"):
            handed_out.append(outcome.row)
    assert caught.value.reason == "cell_too_long"
    assert caught.value.row == 152
    assert handed_out == list(range(2, 152))  # every row before the bad one, in order, none after


def test_repeated_bad_rows_get_the_same_outcome_as_the_first() -> None:
    lines = ["name,countryCode,mobile,areaCode,phone"]
    bad = [",86,n/a,,", ",86,138123,,", ",86,1901111456,,", ",999,13812345678,,", ",86,,10,123", ",86,,1a,58512042"]
    for _ in range(3):
        lines += [f"x{i}{row}" for i, row in enumerate(bad)]
    found = outcomes("\n".join(lines).encode(), default_region="CN")
    assert [o.status for o in found] == [INVALID] * 18
    first = [(o.reason, o.message) for o in found[:6]]
    assert [(o.reason, o.message) for o in found[6:12]] == first
    assert [(o.reason, o.message) for o in found[12:]] == first
    assert [o.reason for o in found[:6]] == [
        "not_a_number",
        "too_short",
        "invalid_number",
        "bad_country_code",
        "too_short",
        "bad_area_code",
    ]


def test_xlsx_name_on_a_text_file() -> None:
    with pytest.raises(CallListError) as caught:
        open_call_list(io.BytesIO(b"mobile\n1\n"), filename="list.XLSX")
    assert caught.value.reason == "corrupt_xlsx"


# ---------------------------------------------------------------- header mapping


def test_header_aliases_case_and_spelling() -> None:
    columns = Columns.from_header(
        ["NAME", "Company", "country code", "MOBILE", "area_code", "Phone", "external-id", "City", "", "备注"]
    )
    assert columns.index == {
        "name": 0,
        "company": 1,
        "country_code": 2,
        "mobile": 3,
        "area_code": 4,
        "phone": 5,
        "external_id": 6,
    }
    assert columns.variables == (("City", 7), ("备注", 9))  # the empty header is ignored


def test_chinese_aliases() -> None:
    columns = Columns.from_header(["姓名", "公司", "国家码", "手机", "区号", "座机", "externalId"])
    assert list(columns.index) == ["name", "company", "country_code", "mobile", "area_code", "phone", "external_id"]
    assert columns.variables == ()


def test_header_after_blank_lines_and_trailing_empty_headers() -> None:
    data = b"\r\n,,\r\nname,mobile,,\r\nAda,+8613812345678,,\r\n"
    with open_bytes(data) as call_list:
        assert call_list.header_row == 3
        assert call_list.header == ("name", "mobile")
        [outcome] = process_rows(call_list)
    assert outcome.row == 4
    assert outcome.status == ACCEPTED


def test_variables_become_contact_variables() -> None:
    data = "name,mobile,countryCode,externalId,城市,Plan\nAda,13812345678,86, crm-1 ,上海,gold\n".encode()
    [outcome] = outcomes(data)
    assert outcome.contact == ContactSpec(
        e164="+8613812345678", name="Ada", external_id="crm-1", variables={"城市": "上海", "Plan": "gold"}
    )


# ---------------------------------------------------------------- rows: ragged, blank, numbering


def test_ragged_rows() -> None:
    data = (
        b"name,countryCode,mobile,city\n"
        b"Short,86,13812345671\n"  # too few cells: padded
        b"Shorter\n"  # too few, no number left: invalid
        b"Blank extras,86,13812345672,X,,  \n"  # extra cells, all empty: tolerated
        b"Shifted,86,13812345673,X,oops\n"  # extra cells with content: invalid
    )
    found = outcomes(data)
    assert [(o.row, o.status, o.reason) for o in found] == [
        (2, ACCEPTED, None),
        (3, INVALID, "missing_number"),
        (4, ACCEPTED, None),
        (5, INVALID, "extra_cells"),
    ]
    assert "oops" in (found[3].message or "")
    assert found[0].values == {"name": "Short", "countryCode": "86", "mobile": "13812345671", "city": ""}
    assert found[3].values["city"] == "X"


def test_blank_rows_are_skipped_but_keep_numbering() -> None:
    data = b"name,mobile\n\nAda,+8613812345678\n,\n  ,  \nBob,+8613912345678\n"
    found = outcomes(data)
    assert [(o.row, o.values["name"]) for o in found] == [(3, "Ada"), (6, "Bob")]


def test_accounting_dedup_and_reasons() -> None:
    data = "\n".join(
        [
            "name,countryCode,mobile,areaCode,phone",
            "a,86,13812345678,,",  # 2 accepted
            "b,,+86 138 1234 5678,,",  # 3 duplicate of 2, written differently
            "c,0086,１３８１２３４５６７８,,",  # 4 duplicate of 2, full-width
            "d,86,138,,",  # 5 invalid too short
            "e,86,,10,58512042",  # 6 accepted landline
            "f,(86),,010,5851-2042",  # 7 duplicate of 6
            "g,abc,13912345678,,",  # 8 invalid country code
            "h,86,,,",  # 9 invalid: no number, but not blank
            "i,86,13912345678,,",  # 10 accepted
        ]
    ).encode()
    found = outcomes(data)
    assert [(o.row, o.status, o.reason) for o in found] == [
        (2, ACCEPTED, None),
        (3, DUPLICATE, "duplicate"),
        (4, DUPLICATE, "duplicate"),
        (5, INVALID, "too_short"),
        (6, ACCEPTED, None),
        (7, DUPLICATE, "duplicate"),
        (8, INVALID, "bad_country_code"),
        (9, INVALID, "missing_number"),
        (10, ACCEPTED, None),
    ]
    assert found[1].message == "same number as row 2"
    assert found[1].e164 == "+8613812345678"
    assert found[5].message == "same number as row 6"
    assert found[1].contact is None and found[3].contact is None
    counts = ImportCounts()
    for outcome in found:
        counts.add(outcome)
    assert (counts.rows, counts.accepted, counts.duplicate, counts.invalid) == (9, 3, 3, 3)
    assert counts.rows == counts.accepted + counts.duplicate + counts.invalid
    assert counts.reasons == {"duplicate": 3, "too_short": 1, "bad_country_code": 1, "missing_number": 1}


def test_dedup_across_chunks_with_a_shared_seen() -> None:
    seen: dict[str, int] = {}
    first = b"mobile\n+8613812345678\n"
    second = b"mobile\n+8613912345678\n+86 138 1234 5678\n"
    with open_bytes(first) as call_list:
        assert [o.status for o in process_rows(call_list, seen=seen)] == [ACCEPTED]
    with open_bytes(second) as call_list:
        assert [o.status for o in process_rows(call_list, seen=seen)] == [ACCEPTED, DUPLICATE]
    assert seen == {"+8613812345678": 2, "+8613912345678": 2}


def test_default_region_for_rows_without_country_code() -> None:
    data = b"mobile\n13812345678\n"
    assert [o.reason for o in outcomes(data)] == ["missing_country_code"]
    assert [o.e164 for o in outcomes(data, "CN")] == ["+8613812345678"]


def test_process_rows_on_plain_rows_needs_columns() -> None:
    with pytest.raises(TypeError):
        process_rows([(2, ["13812345678"])])
    columns = Columns.from_header(["mobile"])
    [outcome] = process_rows([(2, ["+8613812345678"])], columns=columns)
    assert outcome.status == ACCEPTED


def test_many_rows_keep_the_invariant_and_order() -> None:
    lines = ["mobile,countryCode"]
    for i in range(3000):
        if i % 10 == 0:
            lines.append("123,86")  # invalid
        elif i % 7 == 0:
            lines.append(f"1381234{(i - 1) % 10000:04d},86")  # usually a duplicate of the row before
        else:
            lines.append(f"1381234{i % 10000:04d},86")
    found = outcomes("\n".join(lines).encode())
    assert [o.row for o in found] == list(range(2, 3002))
    counts = ImportCounts()
    for outcome in found:
        counts.add(outcome)
    assert counts.rows == 3000 == counts.accepted + counts.duplicate + counts.invalid
    assert counts.invalid == 300
    assert counts.duplicate > 0


def test_large_corpus_accounts_for_every_row(tmp_path: Path) -> None:
    from bench.corpus import write_large_csv

    path = tmp_path / "large.csv"
    planned = write_large_csv(path, 20_000)
    counts = ImportCounts()
    with path.open("rb") as handle, open_call_list(handle) as call_list:
        for outcome in process_rows(call_list, default_region="CN"):
            counts.add(outcome)
    assert counts.rows == 20_000 == counts.accepted + counts.duplicate + counts.invalid
    # the corpus' planned invalid rows are refused and its planned duplicates found
    assert counts.duplicate >= planned["duplicate"]
    assert abs(counts.invalid - planned["invalid"]) <= planned["invalid"] * 0.02


# ---------------------------------------------------------------- JSON records


def test_process_records_maps_keys_like_a_header() -> None:
    records = [
        {"name": "Ada", "countryCode": "86", "mobile": "13812345678", "tier": "gold"},
        {"姓名": "张三", "国家码": 86, "手机": 13812345678},
        {"name": "No number"},
        {"phone": "+86 10 5851 2042"},
    ]
    found = list(process_records(records))
    assert [(o.row, o.status, o.reason) for o in found] == [
        (1, ACCEPTED, None),
        (2, DUPLICATE, "duplicate"),
        (3, INVALID, "no_number_column"),
        (4, ACCEPTED, None),
    ]
    assert found[0].contact == ContactSpec(e164="+8613812345678", name="Ada", variables={"tier": "gold"})


# ---------------------------------------------------------------- XLSX


def test_xlsx_first_sheet_numbers_and_chinese_headers(tmp_path: Path) -> None:
    data = xlsx_bytes(
        [
            ["姓名", "国家码", "手机", "区号", "座机", "签约日"],
            ["张三", 86, 13812345678, None, None, dt.date(2024, 5, 1)],
            ["Ada", "+44", "07911 123456", None, None, None],
            [None, None, None, None, None, None],
            ["王五", 86.0, None, 10, 58512042.0, None],
            ["Bad", 86, 138, None, None, None],
        ],
        extra_sheets={"Other": [["mobile"], ["+8613900000000"]]},
    )
    path = tmp_path / "list.xlsx"
    path.write_bytes(data)
    with path.open("rb") as handle, open_call_list(handle, filename=path.name) as call_list:
        assert call_list.kind == "xlsx"
        assert call_list.sheet == "Sheet1"
        found = list(process_rows(call_list))
    assert [(o.row, o.status, o.e164, o.reason) for o in found] == [
        (2, ACCEPTED, "+8613812345678", None),
        (3, ACCEPTED, "+447911123456", None),
        (5, ACCEPTED, "+861058512042", None),
        (6, INVALID, None, "too_short"),
    ]
    assert found[0].values["手机"] == "13812345678"  # not 13812345678.0 nor 1.38E+10
    assert found[0].contact is not None
    assert found[0].contact.variables == {"签约日": "2024-05-01T00:00:00"}


def test_xlsx_named_sheet_and_missing_sheet(tmp_path: Path) -> None:
    data = xlsx_bytes([["name"], ["no numbers here"]], extra_sheets={"Contacts": [["mobile"], ["+8613912345678"]]})
    with open_bytes(data, sheet="Contacts") as call_list:
        assert call_list.sheet == "Contacts"
        assert [o.e164 for o in process_rows(call_list)] == ["+8613912345678"]
    with pytest.raises(CallListError) as caught:
        open_bytes(data, sheet="Nope")
    assert caught.value.reason == "sheet_not_found"
    assert "Contacts" in caught.value.message
    # the first sheet has no number column
    assert error_of(data).reason == "no_number_column"


def test_xlsx_path_and_unseekable_stream(tmp_path: Path) -> None:
    data = xlsx_bytes([["mobile"], ["+8613812345678"]])
    path = tmp_path / "c.xlsx"
    path.write_bytes(data)
    with open_xlsx(path) as call_list:
        assert [o.e164 for o in process_rows(call_list)] == ["+8613812345678"]
    with open_call_list(OneWayStream(data), spool_dir=str(tmp_path)) as call_list:  # type: ignore[arg-type]
        assert [o.e164 for o in process_rows(call_list)] == ["+8613812345678"]


def test_xlsx_formula_gives_cached_value_not_formula() -> None:
    # openpyxl writes formulas without cached values: the cell reads as empty, never as "=..."
    data = xlsx_bytes([["mobile", "note"], ["+8613812345678", "=1+1"]])
    with open_bytes(data) as call_list:
        [(_, cells)] = list(call_list)
    assert cells == ["+8613812345678", ""]


def test_xlsx_empty_and_header_only() -> None:
    assert error_of(xlsx_bytes([])).reason == "empty_file"
    with open_bytes(xlsx_bytes([["name", "mobile"]])) as call_list:
        assert list(process_rows(call_list)) == []


def test_truncated_xlsx_is_a_clear_error() -> None:
    data = xlsx_bytes([["mobile"], *[[f"+86138{i:08d}"] for i in range(2000)]])
    for cut in (len(data) // 2, len(data) - 30, 100):
        error = error_of(data[:cut])
        assert error.reason == "corrupt_xlsx"
        assert "damaged" in error.message


def test_xlsx_with_a_damaged_sheet_is_a_clear_error() -> None:
    data = xlsx_bytes([["mobile"], *[[f"+86138{i:08d}"] for i in range(500)]])
    source = zipfile.ZipFile(io.BytesIO(data))
    damaged = io.BytesIO()
    with zipfile.ZipFile(damaged, "w") as target:
        for item in source.infolist():
            content = source.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                content = content[: len(content) // 2]  # XML cut in the middle of the rows
            target.writestr(item, content)
    with open_bytes(damaged.getvalue()) as call_list, pytest.raises(CallListError) as caught:
        list(process_rows(call_list))
    assert caught.value.reason == "corrupt_xlsx"


def test_zip_that_is_not_a_workbook() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "hi")
    assert error_of(buffer.getvalue()).reason == "corrupt_xlsx"


def test_xlsx_ragged_rows_are_padded() -> None:
    data = xlsx_bytes([["name", "mobile", "city", "note"], ["Ada", "+8613812345678"]])
    [outcome] = outcomes(data)
    assert outcome.status == ACCEPTED
    assert outcome.values == {"name": "Ada", "mobile": "+8613812345678", "city": "", "note": ""}


# ---------------------------------------------------------------- the report


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=SUM(A1)", "'=SUM(A1)"),
        ("+8613812345678", "'+8613812345678"),
        ("-1+2", "'-1+2"),
        ("@cmd", "'@cmd"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("13812345678", "13812345678"),
        ("张三", "张三"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_neutralise_cell(value: str, expected: str) -> None:
    assert neutralise_cell(value) == expected


def report_rows(data: bytes) -> list[list[str]]:
    assert data.startswith(codecs.BOM_UTF8)
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def test_report_lists_every_row_with_input_and_reason_and_neutralises() -> None:
    data = (
        b'name,mobile,countryCode,note\n=HYPERLINK("http://evil"),13812345678,86,"two\nlines"\n'
        b"@SUM(1),123,86,-5\nok,+86 138 1234 5678,,x\n"
    )
    target = io.BytesIO()
    with open_bytes(data) as call_list, ReportWriter(target, call_list.header) as report:
        for outcome in process_rows(call_list):
            report.write(outcome)
    assert not target.closed
    rows = report_rows(target.getvalue())
    assert rows[0] == ["row", "outcome", "reason", "message", "e164", "name", "mobile", "countryCode", "note"]
    assert rows[1] == [
        "2",
        "accepted",
        "",
        "",
        "'+8613812345678",
        '\'=HYPERLINK("http://evil")',
        "13812345678",
        "86",
        "two\nlines",
    ]
    assert rows[2][:3] == ["3", "invalid", "too_short"]
    assert rows[2][5:] == ["'@SUM(1)", "123", "86", "'-5"]
    assert rows[3][:4] == ["4", "duplicate", "duplicate", "same number as row 2"]
    assert rows[3][6] == "'+86 138 1234 5678"
    # nothing a spreadsheet would run
    for row in rows:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))


def test_report_header_cells_are_neutralised_too() -> None:
    target = io.StringIO()
    ReportWriter(target, ["=cmd", "mobile"]).close()
    assert target.getvalue().splitlines()[0].endswith("'=cmd,mobile")


def test_report_without_accepted_rows_on_a_text_stream() -> None:
    target = io.StringIO()
    data = b"mobile\n+8613812345678\n123\n+8613812345678\n"
    with open_bytes(data) as call_list:
        writer = ReportWriter(target, call_list.header, include_accepted=False)
        for outcome in process_rows(call_list):
            writer.write(outcome)
        writer.close()
    rows = list(csv.reader(io.StringIO(target.getvalue())))
    assert [r[:2] for r in rows[1:]] == [["3", "invalid"], ["4", "duplicate"]]
    assert writer.written == 2


def test_report_streams_row_by_row(tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    columns = Columns.from_header(["mobile"])

    def endless() -> Iterator[tuple[int, list[str]]]:
        for i in range(2, 100_000):
            yield i, ["123"]

    with path.open("wb") as handle:
        writer = ReportWriter(handle, columns.header)
        for n, outcome in enumerate(process_rows(endless(), columns=columns)):
            writer.write(outcome)
            if n == 20_000:
                break
        writer.close()
        size = handle.tell()
    assert size == path.stat().st_size > 20_000 * 20


# ---------------------------------------------------------------- issue 16: trailing empty cells, short reasons


@pytest.mark.parametrize(
    "row",
    [
        "Ada,13812345678,,",  # trailing delimiters
        "Ada,13812345678, ,\t",  # blanks
        'Ada,13812345678,"",""',  # quoted empties
        "Ada,13812345678,\u200b",  # a zero-width space an editor left behind
        "Ada,13812345678,\ufeff,\u2060",  # a stray BOM, a word joiner
        "Ada,13812345678,\u00a0,\u3000",  # no-break and ideographic spaces
    ],
)
def test_rows_longer_than_the_header_with_empty_extra_cells_are_accepted(row: str) -> None:
    [outcome] = outcomes(f"name,mobile\n{row}\n".encode(), default_region="CN")
    assert (outcome.status, outcome.reason) == (ACCEPTED, None)
    assert outcome.values == {"name": "Ada", "mobile": "13812345678"}


def test_xlsx_rows_longer_than_the_header_with_empty_cells_are_accepted() -> None:
    data = xlsx_bytes([["name", "mobile"], ["Ada", "13812345678", None, "", "\u200b"]])
    with open_call_list(io.BytesIO(data), filename="list.xlsx") as call_list:
        [outcome] = list(process_rows(call_list, default_region="CN"))
    assert outcome.status == ACCEPTED


def test_an_extra_cell_with_something_in_it_is_still_refused() -> None:
    [outcome] = outcomes(b"name,mobile\nAda,13812345678,,x\n", default_region="CN")
    assert outcome.reason == "extra_cells"


def _garbled_gb18030(size: int) -> bytes:
    """Bytes that are not text but decode as GB18030 (every byte 0x81-0xFE, no NUL, no control)."""
    import random

    rng = random.Random(16)
    return bytes(rng.randrange(0x81, 0xFF) for _ in range(size))


@pytest.mark.parametrize(
    "data",
    [
        _garbled_gb18030(5000),
        _garbled_gb18030(200_000),
        b"\x89PNG\r\n\x1a\n" + _garbled_gb18030(4000),
        bytes(range(256)) * 8,
    ],
)
def test_a_binary_file_is_refused_in_a_few_words(data: bytes) -> None:
    error = error_of(data)
    assert error.reason == "binary_file"
    assert error.message == "not a CSV or XLSX file (binary content)"


def test_real_gb18030_text_with_rare_characters_is_still_read() -> None:
    text = "姓名,手机,备注\n" + "".join(f"张{chr(0x4E00 + i)},1381234{i:04d},𠀀𪚥龘\n" for i in range(500))
    found = outcomes(text.encode("gb18030"))
    assert len(found) == 500 and found[0].values["备注"] == "𠀀𪚥龘"


@pytest.mark.parametrize(
    "data",
    [
        ("名" * 5000 + "\n1\n").encode(),  # a 5,000-character header without a number column
        (",".join(f"column{i}" for i in range(2000)) + "\n1\n").encode(),
        b"mobile," + b"x" * 5000 + b"," + b"x" * 5000 + b"\n1,2,3\n",
    ],
)
def test_every_refusal_reason_is_short_and_names_the_cause(data: bytes) -> None:
    error = error_of(data)
    assert len(error.message) <= 200, len(error.message)
    assert error.reason in ("no_number_column", "duplicate_column")
    assert ("number column" in error.message) or ("twice" in error.message or "both mean" in error.message)

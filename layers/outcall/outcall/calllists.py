"""Call lists: streaming CSV/XLSX readers, the row pipeline, and the row-level report.

Nothing here holds a whole file in memory: readers yield one row at a time, the pipeline keeps
only the E.164 numbers it has accepted (to spot duplicates), and the report is written row by row.

Reading
    `open_call_list(stream)` looks at the first bytes and opens a CSV (`open_csv`) or an XLSX
    workbook (`open_xlsx`). A `CallList` has the mapped header (`columns`) and yields
    ``(row_number, cells)``: the row number is the one a spreadsheet shows (the header is row 1
    when it is the first line), the cells are strings.

    CSV: UTF-8 with or without BOM, or GB18030 (UTF-8 is tried on a sample first); delimiter
    comma, semicolon or tab (csv.Sniffer on a sample, checked against the header line); quoted
    fields may hold delimiters, quotes and newlines (a record spanning lines is one row, as in a
    spreadsheet). XLSX: openpyxl read-only, first worksheet unless `sheet` names one, cached
    formula values rather than formulas.

Rows (the documented choices)
    - The header is the first row that is not blank; blank rows (every cell empty) are skipped
      and not counted, but they keep their place in the row numbering.
    - A row with fewer cells than the header is padded with empty cells (exporters drop trailing
      empty cells); a row with more cells is accepted when the extra cells are empty, and is
      invalid (`extra_cells`) when they hold something, since that means a stray delimiter or an
      unquoted field shifted the columns.
    - Header names are matched case-insensitively, ignoring spaces, '_', '-' and '.';
      `name`/姓名, `company`/公司, `countryCode`/国家码, `mobile`/手机, `areaCode`/区号,
      `phone`/座机, `externalId`; any other named column is a per-contact variable; a column with
      an empty header is ignored. A header without `mobile` or `phone` is a file-level error.

File-level problems raise `CallListError` (`reason` is a stable code, `message` is for people).
An empty file is an error (`empty_file`); a file with a header and no rows is not: it yields no
rows and the pipeline accounts for zero rows.

Pipeline
    `process_rows(call_list)` yields one `RowOutcome` per row: accepted (with the E.164 number and
    a lazily built `ContactSpec`), duplicate (an E.164 number an earlier row of the same file
    already has), or invalid (a reason code and message). accepted + duplicate + invalid = rows.

Report
    `ReportWriter` writes outcomes as CSV lines, every cell neutralised against formula injection.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import os
import shutil
import tempfile
import unicodedata
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, islice
from typing import IO, Any, BinaryIO, Final, TextIO
from xml.etree.ElementTree import ParseError

from outcall import limits
from outcall.errors import Unprocessable
from outcall.models import ContactSpec
from outcall.observability import mask_text
from outcall.phones import MISSING_NUMBER, PhoneNormaliser, PhoneReason

__all__ = [
    "ACCEPTED",
    "DUPLICATE",
    "INVALID",
    "CallList",
    "CallListError",
    "Columns",
    "ImportCounts",
    "ReportWriter",
    "RowOutcome",
    "neutralise_cell",
    "open_call_list",
    "open_csv",
    "open_xlsx",
    "process_records",
    "process_rows",
]

ACCEPTED: Final = "accepted"
DUPLICATE: Final = "duplicate"
INVALID: Final = "invalid"
CELL_TOO_LONG: Final = "cell_too_long"  # a row whose cells exceed the contact limits

SAMPLE_SIZE = 64 * 1024  # bytes looked at to decide the encoding
SNIFF_SIZE = 16 * 1024  # characters of that sample given to csv.Sniffer
DELIMITERS = ",;\t"


MAX_REASON_CHARS: Final = 200
BINARY_MESSAGE: Final = "not a CSV or XLSX file (binary content)"


class CallListError(Unprocessable):
    """A call list that cannot be read at all. `reason` is a stable code such as `empty_file`."""

    code = "InvalidCallList"

    def __init__(self, reason: str, message: str, *, row: int | None = None) -> None:
        if len(message) > MAX_REASON_CHARS:  # a reason is read by people and kept on the import item
            message = message[: MAX_REASON_CHARS - 3].rstrip() + "..."
        super().__init__(message, details={"reason": reason, **({"row": row} if row is not None else {})})
        self.reason = reason
        self.row = row


# ---------------------------------------------------------------- header mapping

FIELDS: Final = ("name", "company", "country_code", "mobile", "area_code", "phone", "external_id")

_ALIASES: dict[str, str] = {
    "name": "name",
    "姓名": "name",
    "company": "company",
    "公司": "company",
    "countrycode": "country_code",
    "国家码": "country_code",
    "mobile": "mobile",
    "手机": "mobile",
    "areacode": "area_code",
    "区号": "area_code",
    "phone": "phone",
    "座机": "phone",
    "externalid": "external_id",
}
_HEADER_NOISE = str.maketrans("", "", " _-.\t\ufeff\u200b\u3000")


def header_key(text: str) -> str:
    """The form header cells are compared in: case-folded, without spaces, '_', '-', '.'."""
    return text.translate(_HEADER_NOISE).casefold()


@dataclass(frozen=True)
class Columns:
    """A header mapped to the contact fields; `index[field]` is a column position."""

    header: tuple[str, ...]
    index: Mapping[str, int]
    variables: tuple[tuple[str, int], ...]

    @property
    def width(self) -> int:
        return len(self.header)

    @classmethod
    def from_header(cls, cells: Sequence[str]) -> Columns:
        header = tuple(c.strip().lstrip("\ufeff") for c in cells)
        while header and not header[-1]:
            header = header[:-1]
        index: dict[str, int] = {}
        variables: dict[str, int] = {}
        for position, text in enumerate(header):
            if not text:
                continue
            key = header_key(text)
            name = _ALIASES.get(key)
            if name is not None:
                if name in index:
                    raise CallListError(
                        "duplicate_column",
                        f"columns {header[index[name]][:40]!r} and {text[:40]!r} both mean {name}",
                        row=None,
                    )
                index[name] = position
            else:
                if text in variables:
                    raise CallListError("duplicate_column", f"column {text[:80]!r} appears twice")
                variables[text] = position
        if "mobile" not in index and "phone" not in index:
            found = ", ".join(h[:40] for h in header if h) or "nothing"
            if len(found) > 80:
                found = found[:77] + "..."
            raise CallListError(
                "no_number_column",
                f"the header has no number column: expected mobile/手机 or phone/座机 (found: {found})",
            )
        return cls(header, index, tuple(variables.items()))


# ---------------------------------------------------------------- the opened file


class CallList:
    """An opened call list: the mapped header and an iterator of ``(row_number, cells)``."""

    def __init__(
        self,
        *,
        kind: str,
        columns: Columns,
        header_row: int,
        records: Iterator[tuple[int, list[str]]],
        encoding: str | None = None,
        delimiter: str | None = None,
        sheet: str | None = None,
        closer: Any = None,
        read_errors: tuple[type[BaseException], ...] = (),
        translate: Any = None,
    ) -> None:
        self.kind = kind
        self.columns = columns
        self.header_row = header_row
        self.encoding = encoding
        self.delimiter = delimiter
        self.sheet = sheet
        # A plain iterator (C-level for CSV); the errors it may raise in `read_errors` are
        # turned into CallListError by `translate(exc, row)` in __iter__ and process_rows.
        self._records = records
        self._closer = closer
        self._read_errors = read_errors
        self._translate: Any = translate

    @property
    def header(self) -> tuple[str, ...]:
        return self.columns.header

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        row = self.header_row
        try:
            for row, cells in self._records:
                yield row, cells
        except self._read_errors as exc:
            raise self._translate(exc, row + 1) from exc

    def close(self) -> None:
        closer, self._closer = self._closer, None
        if closer is not None:
            closer()

    def __enter__(self) -> CallList:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# characters that show nothing (zero-width spaces and joiners, BOM, word joiner): a cell of them is empty
_INVISIBLE = str.maketrans("", "", "\u200b\u200c\u200d\u2060\ufeff\u00ad")


def _is_blank(cells: Iterable[str]) -> bool:
    return not any(c.strip() for c in cells)


# ---------------------------------------------------------------- CSV


class _Replay(io.RawIOBase):
    """The bytes already read for sniffing, then the rest of a (possibly unseekable) stream."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        return n


def _read_sample(stream: IO[bytes], size: int) -> tuple[bytes, bool]:
    """Up to `size` bytes, and whether that was the whole stream."""
    parts: list[bytes] = []
    got = 0
    while got < size:
        chunk = stream.read(size - got)
        if not chunk:
            return b"".join(parts), True
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts), False


_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def _refuse_non_text(sample: bytes) -> None:
    if sample.startswith(_ZIP_MAGIC):
        raise CallListError("not_csv", "this is a ZIP/XLSX file, not a CSV: upload it as .xlsx")
    if sample.startswith(_OLE_MAGIC):
        raise CallListError("legacy_xls", "legacy .xls workbooks are not supported: save the sheet as .xlsx or CSV")
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise CallListError("unsupported_encoding", "UTF-16 text is not supported: save the file as UTF-8 CSV")
    if b"\x00" in sample:
        raise CallListError("binary_file", BINARY_MESSAGE)


def _detect_encoding(sample: bytes, complete: bool) -> tuple[str, str]:
    """('utf-8-sig' | 'gb18030', decoded sample). UTF-8 first: ASCII and BOM-less UTF-8 decode as UTF-8."""
    for encoding in ("utf-8-sig", "gb18030"):
        decoder = codecs.getincrementaldecoder(encoding)()
        try:
            text = decoder.decode(sample, final=complete)
        except UnicodeDecodeError:
            continue
        controls = sum(1 for ch in text if ch < " " and ch not in "\t\r\n")
        if controls > max(2, len(text) // 100) or _garbled(text):
            raise CallListError("binary_file", BINARY_MESSAGE)
        return encoding, text
    raise CallListError(
        "unknown_encoding", "the file is neither UTF-8 nor GB18030 text: save it as CSV UTF-8 (or GB18030)"
    )


def _garbled(text: str) -> bool:
    """Binary bytes that happen to decode (GB18030 decodes almost any byte string): text has next to
    no private-use or unassigned characters, decoded binary has about one in ten."""
    odd = sum(1 for ch in text if ch > "\x7f" and unicodedata.category(ch) in ("Co", "Cn"))
    return odd > max(2, len(text) // 100)


def _sniff_delimiter(text: str, complete: bool) -> str:
    if not complete:
        text = text[: text.rfind("\n") + 1] or text  # whole lines only
    sample = text[:SNIFF_SIZE]
    if len(text) > SNIFF_SIZE and "\n" in sample:
        sample = sample[: sample.rfind("\n") + 1]
    first_line = next((line for line in sample.splitlines() if line.strip()), "")
    counts = {d: first_line.count(d) for d in DELIMITERS}
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        delimiter = ""
    # The header line is the most reliable witness: names rarely hold delimiters.
    if delimiter not in counts or (counts[delimiter] == 0 and any(counts.values())):
        best = max(DELIMITERS, key=lambda d: counts[d])
        delimiter = best if counts[best] else ","
    return delimiter


def open_csv(stream: IO[bytes]) -> CallList:
    """Open a CSV call list from a binary stream (need not be seekable); read lazily from there on."""
    sample, complete = _read_sample(stream, SAMPLE_SIZE)
    if not sample.lstrip(codecs.BOM_UTF8).strip():
        raise CallListError("empty_file", "the file is empty")
    _refuse_non_text(sample)
    encoding, text = _detect_encoding(sample, complete)
    delimiter = _sniff_delimiter(text, complete)

    # The bytes are checked block by block before the text layer decodes them (_Checked): a decoder
    # fails on a whole 8 KB block, and the lines of that block before the bad bytes would go with it.
    raw = _Checked(_Replay(sample, stream), encoding)
    wrapper = io.TextIOWrapper(io.BufferedReader(raw, 1 << 16), encoding=encoding, newline="")
    reader = csv.reader(wrapper, delimiter=delimiter, quotechar='"', doublequote=True, strict=False)
    position = 0
    try:
        for cells in reader:
            position += 1
            if cells and not _is_blank(cells):
                break
        else:
            raise CallListError("empty_file", "the file has no header row: every line is blank")
    except (UnicodeDecodeError, csv.Error) as exc:
        raise _csv_error(exc, encoding, position + 1) from exc
    columns = Columns.from_header(cells)
    return CallList(
        kind="csv",
        columns=columns,
        header_row=position,
        records=enumerate(reader, position + 1),
        encoding="utf-8" if encoding == "utf-8-sig" else encoding,
        delimiter=delimiter,
        closer=wrapper.detach,  # leave the caller's stream open
        read_errors=(UnicodeDecodeError, csv.Error),
        translate=lambda exc, row: _csv_error(exc, encoding, row),
    )


class _Checked(io.RawIOBase):
    """A byte stream that hands out only bytes that decode in `encoding`: when a block holds bytes
    that do not, it hands out the whole lines before them and then raises UnicodeDecodeError, so the
    rows before the bad bytes are read and the row with them is the one named. One C-level decode
    per 64 KB block; the text layer then decodes what it is given."""

    def __init__(self, raw: io.RawIOBase, encoding: str) -> None:
        self._raw = raw
        self._decoder = codecs.getincrementaldecoder(encoding)()
        self._encoding = encoding
        self._broken: UnicodeDecodeError | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._broken is not None:
            raise self._broken
        data = self._raw.read(len(buffer)) or b""
        pending = len(self._decoder.getstate()[0])
        try:
            self._decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            self._broken = UnicodeDecodeError(self._encoding, b"", 0, 1, exc.reason)
            cut = data.rfind(b"\n", 0, max(0, exc.start - pending)) + 1  # whole lines only
            if not cut:
                raise self._broken from exc
            data = data[:cut]
        n = len(data)
        buffer[:n] = data
        return n


def _csv_error(exc: Exception, encoding: str, row: int) -> CallListError:
    if isinstance(exc, UnicodeDecodeError):
        name = "UTF-8" if encoding == "utf-8-sig" else "GB18030"
        return CallListError(
            "bad_encoding",
            f"row {row}: bytes that are not {name} (the start of the file is {name}): "
            "save the whole file in one encoding",
            row=row,
        )
    if "field larger than field limit" in str(exc):  # the reader's bound on a field: memory stays bounded
        return CallListError(
            "cell_too_long", f"row {row}: a cell of more than {csv.field_size_limit():,} characters", row=row
        )
    return CallListError("malformed_csv", f"row {row}: malformed CSV ({exc})", row=row)


# ---------------------------------------------------------------- XLSX


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # A number typed into a spreadsheet (13812345678, 86) comes back as a float: keep its digits.
        if value.is_integer() and abs(value) < 1e17:
            return str(int(value))
        return repr(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return str(value)


_XLSX_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    zlib.error,
    ParseError,
    KeyError,
    ValueError,
    TypeError,
    EOFError,
    OSError,
    IndexError,
)


def _corrupt(exc: BaseException) -> CallListError:
    return CallListError("corrupt_xlsx", f"the XLSX workbook is damaged or truncated and cannot be read ({exc})")


def open_xlsx(source: str | os.PathLike[str] | IO[bytes], *, sheet: str | None = None) -> CallList:
    """Open an XLSX call list (path or seekable binary stream), streaming its first (or named) sheet."""
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        workbook = load_workbook(source, read_only=True, data_only=True, keep_links=False)
    except (InvalidFileException, *_XLSX_ERRORS) as exc:
        raise _corrupt(exc) from exc
    try:
        if sheet is not None:
            if sheet not in workbook.sheetnames:
                raise CallListError(
                    "sheet_not_found", f"no sheet {sheet!r} in the workbook (sheets: {', '.join(workbook.sheetnames)})"
                )
            worksheet = workbook[sheet]
        elif workbook.worksheets:
            worksheet = workbook.worksheets[0]
        else:
            raise CallListError("empty_file", "the workbook has no worksheet")
        worksheet.reset_dimensions()  # some writers record wrong dimensions; read what is there
        rows = worksheet.iter_rows(min_row=1, min_col=1, values_only=True)
        position = 0
        try:
            for values in rows:
                position += 1
                cells = [_cell_text(v) for v in values]
                if not _is_blank(cells):
                    break
            else:
                raise CallListError("empty_file", "the sheet is empty: no header row")
        except CallListError:
            raise
        except _XLSX_ERRORS as exc:
            raise _corrupt(exc) from exc
        columns = Columns.from_header(cells)
    except BaseException:
        workbook.close()
        raise
    return CallList(
        kind="xlsx",
        columns=columns,
        header_row=position,
        records=_xlsx_records(rows, position),
        sheet=worksheet.title,
        closer=workbook.close,
    )


def _xlsx_records(rows: Iterator[tuple[Any, ...]], position: int) -> Iterator[tuple[int, list[str]]]:
    try:
        for values in rows:
            position += 1
            yield position, [_cell_text(v) for v in values]
    except _XLSX_ERRORS as exc:
        raise _corrupt(exc) from exc


def open_call_list(
    stream: IO[bytes], *, filename: str | None = None, sheet: str | None = None, spool_dir: str | None = None
) -> CallList:
    """Open a CSV or XLSX call list, told apart by content (a ZIP is XLSX), not by `filename`.

    XLSX needs random access: an unseekable stream (an S3 body) is first copied to a temporary
    file in `spool_dir` (default: the system temp dir, /tmp on Lambda), never into memory.
    """
    head, _ = _read_sample(stream, 8)
    if stream.seekable():
        stream.seek(-len(head), io.SEEK_CUR)
        body: IO[bytes] = stream
    else:
        body = io.BufferedReader(_Replay(head, stream), 1 << 16)
    if head.startswith(_ZIP_MAGIC):
        if not body.seekable():
            spool = tempfile.TemporaryFile(dir=spool_dir)  # noqa: SIM115 - closed with the call list
            shutil.copyfileobj(body, spool, 1 << 20)
            spool.seek(0)
            try:
                opened = open_xlsx(spool, sheet=sheet)
            except BaseException:
                spool.close()
                raise
            inner = opened._closer

            def close_both() -> None:
                try:
                    if inner is not None:
                        inner()
                finally:
                    spool.close()

            opened._closer = close_both
            return opened
        return open_xlsx(body, sheet=sheet)
    if filename and filename.lower().endswith((".xlsx", ".xlsm")) and head:
        raise CallListError("corrupt_xlsx", f"{filename} is named like an XLSX workbook but is not one")
    return open_csv(body)


# ---------------------------------------------------------------- the row pipeline


class RowOutcome:
    """What became of one row.

    `cells` are the row's original values in header order (the pipeline pads short rows and adds
    one trailing empty cell); `values` gives them by header name.
    """

    __slots__ = ("_columns", "cells", "e164", "message", "reason", "row", "status")

    def __init__(
        self,
        row: int,
        status: str,
        e164: str | None,
        reason: str | None,
        message: str | None,
        cells: list[str],
        columns: Columns,
    ) -> None:
        self.row = row
        self.status = status
        self.e164 = e164
        self.reason = reason
        self.message = message
        self.cells = cells
        self._columns = columns

    def __repr__(self) -> str:
        return f"RowOutcome(row={self.row}, status={self.status!r}, reason={self.reason!r})"

    @property
    def values(self) -> dict[str, str]:
        """The row as the user wrote it: header name -> cell (columns with an empty header left out)."""
        cells = self.cells
        return {name: cells[i] for i, name in enumerate(self._columns.header) if name and i < len(cells)}

    def _field(self, name: str) -> str | None:
        position = self._columns.index.get(name)
        if position is None or position >= len(self.cells):
            return None
        return self.cells[position].strip() or None

    @property
    def contact(self) -> ContactSpec | None:
        """The contact to hand to a provider, for an accepted row (built on demand)."""
        if self.status != ACCEPTED or self.e164 is None:
            return None
        cells = self.cells
        return ContactSpec(
            e164=self.e164,
            name=self._field("name"),
            company=self._field("company"),
            external_id=self._field("external_id"),
            # an empty cell is no variable (a robot script's default applies, as for a missing one)
            variables={
                name: cells[i].strip() for name, i in self._columns.variables if i < len(cells) and cells[i].strip()
            },
        )


@dataclass(slots=True)
class ImportCounts:
    """Running totals; `rows == accepted + duplicate + invalid` always holds."""

    rows: int = 0
    accepted: int = 0
    duplicate: int = 0
    invalid: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def add(self, outcome: RowOutcome) -> None:
        self.rows += 1
        status = outcome.status
        if status == ACCEPTED:
            self.accepted += 1
            return
        if status == DUPLICATE:
            self.duplicate += 1
        else:
            self.invalid += 1
        reason = outcome.reason or outcome.status
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


def _fields(columns: Columns) -> tuple[int, int, int, int]:
    absent = columns.width  # the pipeline appends one empty cell there
    return tuple(columns.index.get(f, absent) for f in ("country_code", "mobile", "area_code", "phone"))  # type: ignore[return-value]


_BATCH = 64  # rows worked per resumption of the pipeline; outcomes are handed out one by one


def process_rows(
    rows: CallList | Iterable[tuple[int, list[str]]],
    *,
    columns: Columns | None = None,
    default_region: str | None = None,
    normaliser: PhoneNormaliser | None = None,
    seen: dict[str, int] | None = None,
) -> Iterator[RowOutcome]:
    """One outcome per non-blank row of a call list, in order (lazily, a few hundred rows ahead).

    `seen` maps each accepted E.164 number to its row; pass the same dict to continue a file in
    chunks. Memory: one dict entry per distinct accepted number (about 130 bytes each).
    """
    records: Iterable[tuple[int, list[str]]] = rows
    read_errors: tuple[type[BaseException], ...] = ()
    translate: Any = None
    header_row = 0
    if isinstance(rows, CallList):
        columns = columns or rows.columns
        records, read_errors, translate = rows._records, rows._read_errors, rows._translate
        header_row = rows.header_row
    elif columns is None:
        raise TypeError("process_rows needs `columns` unless given a CallList")
    batches = _batches(
        iter(records),
        columns,
        (normaliser or PhoneNormaliser(default_region)).check,
        {} if seen is None else seen,
        read_errors,
        translate,
        header_row,
    )
    # The outcomes of a batch are handed out by C code: no generator resumption per row.
    return chain.from_iterable(batches)


def _batches(
    records: Iterator[tuple[int, list[str]]],
    columns: Columns,
    check: Any,
    seen: dict[str, int],
    read_errors: tuple[type[BaseException], ...],
    translate: Any,
    row: int,
) -> Iterator[list[RowOutcome]]:
    remember = seen.setdefault
    width = columns.width
    pad = [""] * (width + 1)
    i_cc, i_mobile, i_area, i_phone = _fields(columns)
    sentinel = width in (i_cc, i_mobile, i_area, i_phone)  # some field is absent: point it at an empty cell
    # A file that breaks off (bad bytes, a damaged workbook) ends the rows: the rows read before the
    # break are still worked and handed out, then the error is raised naming the row after them.
    stops: tuple[type[BaseException], ...] = (CallListError, *read_errors)
    while True:
        # The previous batch has been handed out: let it go before reading, so that the new
        # rows reuse its memory while that is still in the CPU caches.
        batch: list[RowOutcome] = []
        out = batch.append
        # A chunk of rows goes through three stretches: read them all, check all their numbers,
        # then make the outcomes (and remember the numbers). Each stretch runs its own code
        # over and over, the reader's, phonenumbers', the outcomes', rather than all three
        # taking turns row by row: fewer CPU cache misses per row, measured.
        chunk: list[tuple[int, list[str]]] = []
        take = chunk.append
        broke: BaseException | None = None
        try:
            for record in islice(records, _BATCH):
                take(record)
        except stops as exc:
            broke = exc
        if not chunk and broke is None:
            return
        if chunk:
            answers: list[str | PhoneReason | RowOutcome] = []
            answer = answers.append
            for row, cells in chunk:
                size = len(cells)
                if size == width:
                    if sentinel:
                        cells.append("")
                elif size < width:
                    cells.extend(pad[size:])
                else:
                    extra = [c for c in cells[width:] if c.strip() and c.translate(_INVISIBLE).strip()]
                    del cells[width:]
                    if extra:
                        answer(_extra_cells(row, size, width, extra, cells, columns))
                        continue
                    cells.append("")
                answer(check(cells[i_cc], cells[i_mobile], cells[i_area], cells[i_phone]))
            for (row, cells), found in zip(chunk, answers, strict=True):
                if sum(map(len, cells)) > limits.CONTACT_TEXT_CHARS and (problem := oversized(cells, columns)):
                    _clip(cells)  # what the chunk files and the report carry stays small
                    if found.__class__ is str:
                        out(RowOutcome(row, INVALID, None, CELL_TOO_LONG, problem, cells, columns))
                        continue
                if found.__class__ is str:
                    first = remember(found, row)
                    if first == row:
                        out(RowOutcome(row, ACCEPTED, found, None, None, cells, columns))
                    else:
                        out(
                            RowOutcome(
                                row, DUPLICATE, found, "duplicate", f"same number as row {first}", cells, columns
                            )
                        )
                elif found.__class__ is RowOutcome:  # a row with stray cells
                    out(found)
                elif found is not MISSING_NUMBER or not _is_blank(cells):
                    out(RowOutcome(row, INVALID, None, found.code, found.message, cells, columns))  # type: ignore[union-attr]
            if batch:
                yield batch
        if broke is not None:
            if isinstance(broke, CallListError):
                raise broke
            raise translate(broke, row + 1) from broke


def oversized(cells: Sequence[str], columns: Columns) -> str | None:
    """Why a row's cells cannot make a contact within the contact limits (README "Limits"), or None:
    the same bounds a JSON contact is held to, so that no row becomes an item DynamoDB refuses."""
    header = columns.header
    for name in ("name", "company", "external_id"):
        i = columns.index.get(name)
        if i is not None and i < len(cells) and len(cells[i].strip()) > limits.CONTACT_TEXT_CHARS:
            size = len(cells[i].strip())
            return f"column {mask_text(header[i][:40])!r} has {size:,} characters; at most {limits.CONTACT_TEXT_CHARS}"
    total = 0
    for name, i in columns.variables:
        value = cells[i].strip() if i < len(cells) else ""
        if len(value) > limits.VARIABLE_VALUE_CHARS:
            shown = mask_text(name[:40])
            return f"column {shown!r} has {len(value):,} characters; at most {limits.VARIABLE_VALUE_CHARS:,}"
        if value:
            total += len(name.encode()) + len(value.encode()) + 6  # "name":"value", as compact JSON
    if total > limits.VARIABLES_BYTES:
        return f"the row's variables are {total:,} bytes as JSON; at most {limits.VARIABLES_BYTES:,}"
    return None


CLIP_CHARS: Final = limits.VARIABLE_VALUE_CHARS  # a cell over its limit is kept (in the report) this long


def _clip(cells: list[str]) -> None:
    for i, cell in enumerate(cells):
        if len(cell) > CLIP_CHARS:
            cells[i] = cell[: CLIP_CHARS - 1] + "…"


def _extra_cells(row: int, size: int, width: int, extra: list[str], cells: list[str], columns: Columns) -> RowOutcome:
    # messages may reach logs: digit runs long enough to be phone numbers are masked
    shown = ", ".join(repr(mask_text(c[:40])) for c in extra[:3])
    message = (
        f"the row has {size} cells but the header has {width} (extra: {shown}): a stray delimiter or an unquoted field?"
    )
    return RowOutcome(row, INVALID, None, "extra_cells", message, cells, columns)


def process_records(
    records: Iterable[Mapping[str, Any]],
    *,
    default_region: str | None = None,
    seen: dict[str, int] | None = None,
    first_row: int = 1,
) -> Iterator[RowOutcome]:
    """The pipeline for JSON contacts: each mapping is a row keyed like a header (row = position)."""
    normaliser = PhoneNormaliser(default_region)
    seen = {} if seen is None else seen
    cache: dict[tuple[str, ...], Columns] = {}
    for row, record in enumerate(records, start=first_row):
        keys = tuple(str(k) for k in record)
        columns = cache.get(keys)
        if columns is None:
            try:
                columns = Columns.from_header(keys)
            except CallListError as exc:
                yield RowOutcome(row, INVALID, None, exc.reason, exc.message, [], Columns((), {}, ()))
                continue
            if len(cache) < 64:
                cache[keys] = columns
        cells = [_cell_text(v) for v in record.values()]
        yield from process_rows([(row, cells)], columns=columns, normaliser=normaliser, seen=seen)


# ---------------------------------------------------------------- the report

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise_cell(value: str) -> str:
    """A cell a spreadsheet will show as text: a leading =, +, -, @, tab or CR gets a quote first."""
    if value and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


REPORT_COLUMNS: Final = ("row", "outcome", "reason", "message", "e164")


class ReportWriter:
    """Writes the row-level report as CSV, one line per outcome, as outcomes arrive.

    Columns: row, outcome, reason, message, e164, then the original columns of the call list.
    `write_header=False` writes rows only (a part of a report assembled later).
    A binary stream gets UTF-8 with a BOM (so spreadsheets read Chinese right); a text stream is
    written as is. `close()` flushes but leaves the stream open.
    """

    def __init__(
        self,
        stream: BinaryIO | TextIO,
        header: Sequence[str],
        *,
        include_accepted: bool = True,
        write_header: bool = True,
    ) -> None:
        if isinstance(stream, io.TextIOBase) or hasattr(stream, "encoding"):
            self._text: TextIO = stream  # type: ignore[assignment]
            self._wrapper: io.TextIOWrapper | None = None
        else:
            self._wrapper = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
            self._text = self._wrapper
        self._width = len(header)
        self._include_accepted = include_accepted
        self._writer = csv.writer(self._text, lineterminator="\r\n")
        if write_header:  # a report written in parts has its header line once, in the first part
            self._writer.writerow([neutralise_cell(c) for c in (*REPORT_COLUMNS, *header)])
        self.written = 0

    def write(self, outcome: RowOutcome) -> None:
        if outcome.status == ACCEPTED and not self._include_accepted:
            return
        cells = outcome.cells[: self._width]
        self._writer.writerow(
            [
                str(outcome.row),
                outcome.status,
                neutralise_cell(outcome.reason or ""),
                neutralise_cell(outcome.message or ""),
                neutralise_cell(outcome.e164 or ""),
                *(neutralise_cell(c) for c in cells),
            ]
        )
        self.written += 1

    def close(self) -> None:
        self._text.flush()
        if self._wrapper is not None:
            self._wrapper.detach()
            self._wrapper = None

    def __enter__(self) -> ReportWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

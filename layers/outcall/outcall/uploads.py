"""The upload path every file import shares: the request for a presigned PUT and the ticket that
answers it (call lists: outcall.imports; do-not-call lists: outcall.dnc_uploads). Light on purpose:
handlers that only hand out tickets import it without the readers and phonenumbers."""

from __future__ import annotations

import unicodedata
from pathlib import PurePosixPath
from typing import Any, Final, Literal

from pydantic import Field, field_validator

from outcall.models import InputModel, Model, Region

UPLOAD_URL_SECONDS: Final = 900
UPLOAD_SUFFIXES: Final = (".csv", ".txt", ".xlsx", ".xlsm")
UPLOAD_NAME_PATTERN: Final = r"^[^/\\\x00-\x1f\x7f]*\.(?:[Cc][Ss][Vv]|[Tt][Xx][Tt]|[Xx][Ll][Ss][XxMm]) *$"
UPLOAD_CONTENT_TYPES: Final = {
    ".csv": "text/csv",
    ".txt": "text/plain",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".xlsm": "application/vnd.ms-excel.sheet.macroEnabled.12",
}


class CreateUploadRequest(InputModel):
    filename: str = Field(
        min_length=1,
        max_length=200,
        description="the file's name, ending .csv, .txt, .xlsx or .xlsm; no path, no control characters",
        json_schema_extra={"pattern": UPLOAD_NAME_PATTERN},
    )
    sheet: str | None = Field(None, max_length=100, description="XLSX: the sheet to read (default: the first)")
    default_region: Region = Field("CN", description="ISO 3166 region of numbers given without a country code")

    @field_validator("filename")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        # checked before any strip: a name with a newline became an object key the PUT never matched
        bad = next((c for c in value if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")), None)
        if bad is not None:
            raise ValueError(f"no control characters in a file name (found U+{ord(bad):04X})")
        name = value.strip()
        if "/" in name or "\\" in name or name in (".", ".."):
            raise ValueError("a file name, not a path")
        if not name.lower().endswith(UPLOAD_SUFFIXES):
            raise ValueError(f"the file must be a CSV or XLSX call list ({', '.join(UPLOAD_SUFFIXES)})")
        return name


def upload_content_type(filename: str) -> str:
    """What a PUT of this file is best sent as (any Content-Type is accepted and imported alike)."""
    return UPLOAD_CONTENT_TYPES.get(PurePosixPath(filename.lower()).suffix, "application/octet-stream")


class UploadTicket(Model):
    import_id: str = Field(description="the import this upload starts (GET /imports/{importId})")
    upload_url: str = Field(description="PUT the file's bytes here before `expiresAt`")
    method: Literal["PUT"] = "PUT"
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="headers to send with the PUT; any Content-Type is accepted (curl's default too), this one "
        "names the file's type",
    )
    object_key: str
    expires_at: Any
    note: str = Field(
        default=(
            "Each PUT of uploadUrl is one import: the first is this importId; a later PUT (a corrected file) starts "
            "its own import, listed in laterImports of this one. Contacts already in the task count as duplicates."
        )
    )

"""Do-not-call lists uploaded as CSV or XLSX files, through the upload path of call lists.

`POST /dnc/uploads` (or `/tasks/{taskId}/dnc/uploads`) answers a presigned PUT ticket of the call-list
shape (outcall.uploads) for `dnc-imports/<importId>/<file>` in the call-list bucket, and a job in status
`waiting`. The PUT's S3 ObjectCreated event reaches the contact_import function (the trigger of the
`dnc-imports/` prefix), which runs the import in that invocation:

- the file is read by the call lists' readers and row pipeline (outcall.calllists: CSV or XLSX told
  apart by content, the number column found by the same header names, numbers normalised to E.164
  with the same rules, in-file duplicates spotted): a file the readers refuse fails the job with
  their message;
- rows are worked in checkpoints of CHECKPOINT_ROWS: one consistent BatchGetItem of the accepted
  numbers on the target list, one batch write of those not listed yet (reason, expiry, source
  `upload`, this `importId`), then the job's counts and `rowsDone` in one update (which renews the
  lease). Every row has one outcome: `added`, `alreadyListed` (a live entry was there: it is left as
  it was), `duplicate` (an earlier row of the file has the number) or `invalid` (with its reason;
  the first MAX_INVALID_ROWS are listed with row and message). rows = added + alreadyListed +
  duplicate + invalid;
- a run that dies (timeout, throttling) is retried by Lambda's asynchronous retries, which keep the
  request id: the retry takes the job over at once (`runId`), as any delivery may once the lease ran
  out, and carries on after `rowsDone` (a duplicate delivery of the event while the lease holds does
  nothing); entries the dead run wrote name this import, so they count as added, not as already
  listed. The last failed retry lands in the UploadDLQ;
- when it ends, running tasks are asked for a dispatcher run (outcall.dnc.request_withdrawals), which
  withdraws listed contacts their provider holds. A number listed by upload is refused at import
  and never released, as one listed by JSON.

Statuses: `waiting` (no file yet), `running`, `completed` (every row has its outcome), `failed` (the
file could not be read or the list is gone: `error` says why; a file that breaks off at a row keeps
what it listed before, counts it, and names the row).

One PUT per ticket: the first object version is imported; a later PUT to the same URL is not (ask a
new ticket for another file). This module is light (no readers, no phonenumbers) until a file is read.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import Field

from outcall.bucket import CallListBucket
from outcall.dnc import DncService, check_expiry, list_id_of
from outcall.errors import NotFound
from outcall.models import IsoDateTime, Model
from outcall.observability import logger, metrics
from outcall.store import Store, utcnow
from outcall.store.dnc import ACCOUNT, task_list
from outcall.uploads import UPLOAD_URL_SECONDS, CreateUploadRequest, UploadTicket, upload_content_type

if TYPE_CHECKING:
    from outcall.calllists import CallList, RowOutcome

DNC_IMPORT_PREFIX: Final = "dnc-imports/"
IMPORT_ID_PREFIX: Final = "dncimp_"
CHECKPOINT_ROWS: Final = 500
LEASE_SECONDS: Final = 120  # renewed at every checkpoint; a retry of a dead run waits this long at most
KEEP_DAYS: Final = 90  # a finished job (and the uploaded file: the bucket's lifecycle rule) is kept this long
MAX_INVALID_ROWS: Final = 100
FINAL: Final = ("completed", "failed")

DncImportStatus = Literal["waiting", "running", "completed", "failed"]

EXAMPLE_IMPORT_ID: Final = "dncimp_0123456789abcdef01234567"
EXAMPLE_UPLOAD: Final = {
    "filename": "opt-outs.csv",
    "reason": "asked not to be called",
    "expiresAt": "2030-01-01T00:00:00+08:00",
    "defaultRegion": "CN",
}
EXAMPLE_TICKET: Final = {
    "importId": EXAMPLE_IMPORT_ID,
    "uploadUrl": f"https://outcall-call-lists-123456789012.s3.amazonaws.com/{DNC_IMPORT_PREFIX}{EXAMPLE_IMPORT_ID}"
    "/opt-outs.csv?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=900&X-Amz-Signature=...",
    "method": "PUT",
    "headers": {"Content-Type": "text/csv"},
    "objectKey": f"{DNC_IMPORT_PREFIX}{EXAMPLE_IMPORT_ID}/opt-outs.csv",
    "expiresAt": "2030-01-01T08:15:00Z",
    "note": (
        "One PUT per ticket: the file PUT first is this import (GET /dnc/uploads/{importId}); ask another "
        "ticket for another file. Numbers already on the list are counted as alreadyListed and left as they are."
    ),
}
EXAMPLE_IMPORT: Final = {
    "importId": EXAMPLE_IMPORT_ID,
    "scope": "account",
    "taskId": None,
    "status": "completed",
    "filename": "opt-outs.csv",
    "sheet": None,
    "defaultRegion": "CN",
    "reason": "asked not to be called",
    "entriesExpireAt": "2029-12-31T16:00:00Z",
    "objectKey": f"{DNC_IMPORT_PREFIX}{EXAMPLE_IMPORT_ID}/opt-outs.csv",
    "rows": 5,
    "added": 2,
    "alreadyListed": 1,
    "duplicate": 1,
    "invalid": 1,
    "reasons": {"invalid_number": 1},
    "invalidRows": [{"row": 5, "reason": "invalid_number", "message": "not a valid number for CN"}],
    "error": None,
    "createdAt": "2029-12-01T08:00:00Z",
    "updatedAt": "2029-12-01T08:00:09Z",
    "startedAt": "2029-12-01T08:00:07Z",
    "finishedAt": "2029-12-01T08:00:09Z",
}


class DncUploadRequest(CreateUploadRequest):
    """The call-list upload request (filename, sheet, defaultRegion) with what every listed number gets."""

    reason: str | None = Field(default=None, max_length=500, description="the reason every listed number gets")
    expires_at: IsoDateTime | None = Field(
        default=None, description="the entries end then (ISO 8601 with an offset); none: they do not expire"
    )


class DncUploadTicket(UploadTicket):
    import_id: str = Field(description="the do-not-call import this upload starts (GET /dnc/uploads/{importId})")
    note: str = Field(default=str(EXAMPLE_TICKET["note"]))


class DncInvalidRow(Model):
    row: int = Field(description="the row number a spreadsheet shows (the header is row 1)")
    reason: str
    message: str | None = None


class DncImport(Model):
    import_id: str
    scope: Literal["account", "task"] = Field(description="the account's list or a task's")
    task_id: str | None = None
    status: DncImportStatus
    filename: str
    sheet: str | None = None
    default_region: str
    reason: str | None = None
    entries_expire_at: datetime | None = Field(default=None, description="the expiry every listed number gets")
    object_key: str
    rows: int = Field(0, description="rows read so far; rows = added + alreadyListed + duplicate + invalid")
    added: int = Field(0, description="numbers put on the list")
    already_listed: int = Field(0, description="numbers the list had already (their entries are left as they were)")
    duplicate: int = Field(0, description="rows whose number an earlier row of the file has")
    invalid: int = Field(0, description="rows without a valid number")
    reasons: dict[str, int] = Field(default_factory=dict, description="invalid rows by reason")
    invalid_rows: list[DncInvalidRow] = Field(
        default_factory=list, description=f"the first {MAX_INVALID_ROWS} invalid rows, each with its reason"
    )
    error: str | None = Field(default=None, description="why the import failed")
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class DncImportBusy(Exception):
    """Another run took this upload over (this one outlived its lease): this one stops."""


def _job_of(item: dict[str, Any]) -> DncImport:
    expires = item.get("entriesExpireAt")
    fields = {
        **item,
        "scope": "account" if item["list"] == ACCOUNT else "task",
        "entriesExpireAt": datetime.fromtimestamp(float(expires), UTC) if expires is not None else None,
    }
    return DncImport.model_validate(fields)


@dataclass
class _Tally:
    rows: int = 0
    added: int = 0
    already_listed: int = 0
    duplicate: int = 0
    invalid: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    invalid_rows: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, job: dict[str, Any]) -> _Tally:
        return cls(
            rows=int(job.get("rows", 0)),
            added=int(job.get("added", 0)),
            already_listed=int(job.get("alreadyListed", 0)),
            duplicate=int(job.get("duplicate", 0)),
            invalid=int(job.get("invalid", 0)),
            reasons=dict(job.get("reasons") or {}),
            invalid_rows=list(job.get("invalidRows") or []),
        )

    def refused(self, outcome: RowOutcome) -> None:
        """A row that lists nothing: a duplicate in the file, or invalid (with its reason)."""
        if outcome.status == "duplicate":
            self.duplicate += 1
            return
        self.invalid += 1
        reason = outcome.reason or "invalid"
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        if len(self.invalid_rows) < MAX_INVALID_ROWS:
            self.invalid_rows.append({"row": outcome.row, "reason": reason, "message": outcome.message})

    def dump(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "added": self.added,
            "alreadyListed": self.already_listed,
            "duplicate": self.duplicate,
            "invalid": self.invalid,
            "reasons": self.reasons,
            "invalidRows": self.invalid_rows,
        }


def is_dnc_upload(raw_key: str) -> bool:
    """Whether an S3 event's key (URL-encoded: `/` may come as %2F) is under dnc-imports/."""
    from urllib.parse import unquote_plus

    return unquote_plus(raw_key).startswith(DNC_IMPORT_PREFIX)


class DncUploads:
    """Tickets, progress and the runs of do-not-call uploads. `on_listed(task_id or None)` is told
    when a run listed numbers (outcall.dnc.request_withdrawals in the handlers)."""

    def __init__(
        self,
        store: Store,
        bucket: CallListBucket,
        *,
        on_listed: Callable[[str | None], object] | None = None,
        clock: Callable[[], datetime] = utcnow,
        spool_dir: str | None = None,
    ) -> None:
        self.store = store
        self.bucket = bucket
        self.on_listed = on_listed
        self.clock = clock
        self.spool_dir = spool_dir

    # ------------------------------------------------------------ tickets and progress
    def create_upload(self, request: DncUploadRequest, task_id: str | None = None) -> DncUploadTicket:
        now = self.clock()
        check_expiry(request.expires_at, now)
        list_id = list_id_of(self.store, task_id)
        import_id = f"{IMPORT_ID_PREFIX}{secrets.token_hex(12)}"
        key = f"{DNC_IMPORT_PREFIX}{import_id}/{request.filename}"
        expires_at = now + timedelta(seconds=UPLOAD_URL_SECONDS)
        job = {
            "importId": import_id,
            "list": list_id,
            "taskId": task_id,
            "status": "waiting",
            "filename": request.filename,
            "sheet": request.sheet,
            "defaultRegion": request.default_region.upper(),
            "reason": request.reason,
            "entriesExpireAt": int(request.expires_at.timestamp()) if request.expires_at else None,
            "objectKey": key,
            "createdAt": now.isoformat(),
            "updatedAt": now.isoformat(),
        }
        self.store.create_dnc_import(job, expires_at=int((expires_at + timedelta(days=1)).timestamp()))
        url = self.bucket.presigned_put(key, UPLOAD_URL_SECONDS)
        headers = {"Content-Type": upload_content_type(request.filename)}
        logger.info("dnc upload ticket", extra={"importId": import_id, "list": list_id})
        return DncUploadTicket(
            import_id=import_id, upload_url=url, headers=headers, object_key=key, expires_at=expires_at
        )

    def get(self, import_id: str, task_id: str | None = None) -> DncImport:
        item = self.store.get_dnc_import(import_id)
        wanted = ACCOUNT if task_id is None else task_list(task_id)
        if item is None or item.get("list") != wanted:
            where = "the account's list" if task_id is None else f"the list of task {task_id!r}"
            raise NotFound(f"no do-not-call upload {import_id!r} for {where}")
        return _job_of(item)

    # ------------------------------------------------------------ the run
    def register_upload(self, raw_key: str, version: str | None, run_id: str) -> DncImport | None:
        """An object arrived under dnc-imports/: run its import (once per ticket). `run_id` is the
        invocation's request id (Lambda's retries of an event keep it). None when there is nothing
        (new) to do."""
        from urllib.parse import unquote_plus

        key = unquote_plus(raw_key)  # S3 event keys are URL-encoded
        parts = key.split("/")
        if len(parts) != 3 or parts[0] + "/" != DNC_IMPORT_PREFIX or not parts[1].startswith(IMPORT_ID_PREFIX):
            logger.warning("dnc upload ignored: not dnc-imports/<importId>/<file>", extra={"key": key[:200]})
            return None
        import_id = parts[1]
        now = self.clock()
        job = self.store.claim_dnc_import(import_id, key, version or "", run_id, now, LEASE_SECONDS, KEEP_DAYS)
        if job is None:
            current = self.store.get_dnc_import(import_id)
            if current is None or current.get("objectKey") != key:
                message = "dnc upload ignored: no ticket for it"
            elif current.get("objectVersion") != (version or ""):
                message = "a later PUT of a dnc upload URL ignored"
            elif current.get("status") == "running":
                message = "dnc upload being imported by another delivery"  # it goes on, or its retry does
            else:
                message = "dnc upload already imported"
            logger.info(message, extra={"importId": import_id})
            return None
        return _job_of(self._run(job, run_id))

    def _run(self, job: dict[str, Any], run_id: str) -> dict[str, Any]:
        from outcall.calllists import CallListError, open_call_list
        from outcall.imports import MAX_FILE_BYTES

        now = self.clock()
        expires = job.get("entriesExpireAt")
        if expires is not None and float(expires) <= now.timestamp():
            return self._end(
                job, run_id, _Tally.of(job), "expiresAt passed before the file was imported: ask a new ticket"
            )
        task_id = job.get("taskId")
        if task_id and self.store.get_task(task_id) is None:
            return self._end(job, run_id, _Tally.of(job), f"there is no task {task_id!r} whose list to fill")
        try:
            stream, size = self.bucket.open(job["objectKey"], job.get("objectVersion") or None)
        except NotFound as exc:
            return self._end(job, run_id, _Tally.of(job), exc.message)
        if size > MAX_FILE_BYTES:
            limit = MAX_FILE_BYTES // 2**20
            return self._end(job, run_id, _Tally.of(job), f"the file is {size / 2**20:.0f} MB; the most is {limit} MB")
        try:
            call_list = open_call_list(
                stream, filename=job["filename"], sheet=job.get("sheet"), spool_dir=self.spool_dir
            )
        except CallListError as exc:
            return self._end(job, run_id, _Tally.of(job), exc.message)
        with call_list:
            tally, error = self._rows(job, run_id, call_list)
        return self._end(job, run_id, tally, error)

    def _rows(self, job: dict[str, Any], run_id: str, call_list: CallList) -> tuple[_Tally, str | None]:
        from outcall.calllists import INVALID, CallListError, RowOutcome, process_rows

        tally = _Tally.of(job)
        done = int(job.get("rowsDone", 0))
        batch: list[RowOutcome] = []
        last_row = call_list.header_row
        error: str | None = None
        try:
            for outcome in process_rows(call_list, default_region=job["defaultRegion"]):
                last_row = outcome.row
                if outcome.row <= done:  # stored and counted by an earlier run (read again for duplicates)
                    continue
                batch.append(outcome)
                if len(batch) == CHECKPOINT_ROWS:
                    self._checkpoint(job, run_id, batch, tally)
                    batch = []
        except CallListError as exc:
            row = exc.row or last_row + 1
            error = f"{exc.message} (the rows after row {row} were not read)"
            batch.append(RowOutcome(row, INVALID, None, exc.reason, exc.message, [], call_list.columns))
        if batch:
            self._checkpoint(job, run_id, batch, tally)
        return tally, error

    def _checkpoint(self, job: dict[str, Any], run_id: str, outcomes: list[RowOutcome], tally: _Tally) -> None:
        """List the accepted numbers not on the list yet, then store the counts up to the last row."""
        now = self.clock()
        accepted = [o.e164 for o in outcomes if o.status == "accepted" and o.e164]
        listed = self.store.dnc_entries(job["list"], accepted, now)
        new: list[str] = []
        for outcome in outcomes:
            tally.rows += 1
            if outcome.status != "accepted" or not outcome.e164:
                tally.refused(outcome)
                continue
            found = listed.get(outcome.e164)
            if found is None or found.get("importId") == job["importId"]:
                new.append(outcome.e164)
                tally.added += 1
            else:
                tally.already_listed += 1
        if new:
            expires = job.get("entriesExpireAt")
            DncService(self.store, clock=self.clock).put(
                job["list"],
                new,
                reason=job.get("reason"),
                source="upload",
                expires_at=datetime.fromtimestamp(float(expires), UTC) if expires is not None else None,
                now=now,
                import_id=job["importId"],
            )
        lease = int(now.timestamp()) + LEASE_SECONDS
        changes = {**tally.dump(), "rowsDone": outcomes[-1].row, "leaseUntil": lease}
        if self.store.update_dnc_import(job["importId"], run_id, changes, now) is None:
            raise DncImportBusy(f"{job['importId']} is no longer running here")

    def _end(self, job: dict[str, Any], run_id: str, tally: _Tally, error: str | None) -> dict[str, Any]:
        now = self.clock()
        status = "failed" if error else "completed"
        changes = {**tally.dump(), "status": status, "error": error, "finishedAt": now.isoformat(), "leaseUntil": None}
        ended = self.store.update_dnc_import(job["importId"], run_id, changes, now)
        if ended is None:
            raise DncImportBusy(f"{job['importId']} is no longer running here")
        logger.info(
            "dnc upload finished",
            extra={"importId": job["importId"], "status": status, "rows": tally.rows, "added": tally.added},
        )
        metrics.add_metric(name="DncNumbersUploaded", unit="Count", value=tally.added)
        if tally.added and self.on_listed is not None:
            self.on_listed(job.get("taskId"))
        return ended

"""Contact imports: call lists as JSON requests or files uploaded to S3.

A file import goes through three steps, each an SQS message to the contact_import function (so
each is retried, and dead-lettered after `MAX_RECEIVES` attempts):

plan
    The planner streams the file once through the row pipeline (calllists: read, validate,
    normalise, spot in-file duplicates) and cuts it into chunks of `CHUNK_ROWS` rows. For each
    chunk it reserves room for the accepted rows under the task's and the account's number limits
    (once per chunk: the chunk item is put in the same transaction), writes the rows with their
    outcomes to `work/<importId>/chunk-<n>.jsonl` and queues the chunk. Memory holds one chunk and
    the set of numbers seen; a planner that dies is simply run again: it writes the same chunks,
    reserves nothing twice and re-queues chunks that workers skip once done.
chunk
    A worker leases the chunk (a duplicate delivery waits), stores its accepted rows as queued
    contacts (contacts.add_rows: one conditional put per row; no provider is called: the dispatcher
    releases contacts while the task runs), writes the chunk's part of the report and finishes the
    chunk in one transaction that adds its counts to the job and the task. Workers run in parallel;
    a crashed one leaves the chunk to its next delivery, which finds the contacts it had claimed and
    carries on.
finish
    When every chunk is done, the parts become `reports/<importId>.csv` (streamed, in row order)
    and the job gets its final status.

Statuses: `waiting` (an upload URL was given, no file yet), `queued`, `running`, then
`completed` (every row has its outcome and every accepted row is a queued contact), `partial`
(every row read has its outcome, but the file broke off at a row, or the task went away: `error`
says which) or `failed` (nothing imported:
the file could not be read, or the task cannot take contacts).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import secrets
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import PurePosixPath
from typing import IO, Any, Final, Literal
from urllib.parse import unquote_plus

from pydantic import Field

from outcall.bucket import CallListBucket
from outcall.calllists import (
    ACCEPTED,
    INVALID,
    MAX_REASON_CHARS,
    CallListError,
    Columns,
    ReportWriter,
    RowOutcome,
    open_call_list,
    process_records,
    process_rows,
)
from outcall.contacts import (
    AddContactsRequest,
    AddContactsResult,
    AddedRows,
    ContactPage,
    ContactResult,
    add_rows,
    invalidate,
    limit_message,
    number_limits,
    tally,
    task_refusal,
)
from outcall.errors import Conflict, NotFound, Unprocessable
from outcall.models import (
    CallListFile,
    Contact,
    ContactState,
    ImportJob,
    ImportStall,
    Model,
    Task,
)
from outcall.observability import logger, mask_text, metrics
from outcall.providers.base import Provider
from outcall.store import Store, utcnow
from outcall.store.imports import FINAL_IMPORT_STATUSES
from outcall.uploads import (  # the upload shape is shared with do-not-call uploads (outcall.dnc_uploads)
    UPLOAD_URL_SECONDS,
    CreateUploadRequest,
    UploadTicket,
    upload_content_type,
)

IMPORT_PREFIX: Final = "imports/"
WORK_PREFIX: Final = "work/"
REPORT_PREFIX: Final = "reports/"
CHUNK_ROWS: Final = 5_000
MAX_FILE_BYTES: Final = 300 * 2**20
REPORT_URL_SECONDS: Final = 3600
MAX_RECEIVES: Final = 3  # the ImportQueue's maxReceiveCount in template.yaml
LEASE_SECONDS: Final = 960  # longer than the function's timeout (900 s): a lease outlives its worker
STALL_SECONDS: Final = 1800  # no progress for this long (twice the longest step) and the check says why
REPORT_CONTENT_TYPE: Final = "text/csv; charset=utf-8"

ProviderFactory = Callable[[str], Provider]


class ImportMessage(Model):
    """What the import queue carries: which import, which step, which chunk."""

    import_id: str
    step: Literal["plan", "chunk", "finish"] = "plan"
    chunk: int = 0


class UploadFailure(Model):
    """What Lambda sends to the S3 trigger's on-failure destination (UploadDLQ) once an upload
    event failed every attempt: the event itself and how the last attempt ended."""

    request_context: dict[str, Any] = Field(default_factory=dict)
    request_payload: dict[str, Any]
    response_payload: dict[str, Any] | None = None

    def reason(self) -> str:
        attempts = self.request_context.get("approximateInvokeCount")
        answer = self.response_payload or {}
        error = answer.get("errorType") or self.request_context.get("condition") or "failed"
        text = mask_text(str(answer.get("errorMessage") or ""))[:MAX_REASON_CHARS]
        return f"{error}{': ' + text if text else ''}" + (f", {attempts} attempts" if attempts else "")


class ChunkBusy(Exception):
    """Another delivery of the same chunk is being worked: this one comes back later."""


class ImportPage(Model):
    items: list[ImportJob]
    next_token: str | None = None


# ---------------------------------------------------------------- names


def object_key(raw_key: str) -> str:
    """S3 event keys are URL-encoded (spaces as '+', non-ASCII as %XX)."""
    return unquote_plus(raw_key)


def task_id_of(key: str) -> str:
    """`imports/{taskId}/...{file}` -> taskId."""
    parts = key.split("/")
    if len(parts) < 3 or parts[0] + "/" != IMPORT_PREFIX or not parts[1] or not parts[-1]:
        raise Unprocessable(f"object key {key!r} is not imports/<taskId>/<file>")
    return parts[1]


def import_id_for(bucket: str, key: str, version: str | None) -> str:
    """Deterministic per object version: the same S3 event delivered twice names the same import."""
    digest = hashlib.sha256(f"{bucket}\n{key}\n{version or ''}".encode()).hexdigest()
    return f"imp_{digest[:24]}"


def new_import_id() -> str:
    return f"imp_{secrets.token_hex(12)}"


def chunk_key(import_id: str, chunk: int) -> str:
    return f"{WORK_PREFIX}{import_id}/chunk-{chunk:06d}.jsonl"


def part_key(import_id: str, chunk: int) -> str:
    return f"{WORK_PREFIX}{import_id}/report-{chunk:06d}.csv"


def report_key(import_id: str) -> str:
    return f"{REPORT_PREFIX}{import_id}.csv"


def final_status(job: ImportJob) -> str:
    if job.error and job.accepted == 0 and job.duplicate == 0:
        return "failed"
    if job.error:
        return "partial"
    return "completed"


# ---------------------------------------------------------------- chunk files


def _encode_chunk(header: tuple[str, ...], outcomes: list[RowOutcome]) -> bytes:
    lines = [json.dumps({"header": header}, ensure_ascii=False)]
    width = len(header)
    lines.extend(
        json.dumps([o.row, o.status, o.e164, o.reason, o.message, o.cells[:width]], ensure_ascii=False)
        for o in outcomes
    )
    return ("\n".join(lines) + "\n").encode()


def _decode_chunk(data: bytes) -> tuple[Columns, list[RowOutcome]]:
    lines = data.decode().splitlines()
    header = json.loads(lines[0])["header"]
    columns = Columns.from_header(header)
    outcomes = []
    for line in lines[1:]:
        row, status, e164, reason, message, cells = json.loads(line)
        cells.extend([""] * (columns.width + 1 - len(cells)))
        outcomes.append(RowOutcome(row, status, e164, reason, message, cells, columns))
    return columns, outcomes


def _report_part(outcomes: list[RowOutcome], header: tuple[str, ...]) -> bytes:
    text = io.StringIO()
    with ReportWriter(text, header, write_header=False) as writer:
        for outcome in outcomes:
            writer.write(outcome)
    return text.getvalue().encode()


def _report_head(header: tuple[str, ...]) -> bytes:
    head = io.BytesIO()
    ReportWriter(head, header).close()
    return head.getvalue()


# ---------------------------------------------------------------- the importer


class Importer:
    """Every step of an import. It is handed the store, the bucket, a provider factory and a
    function that queues an ImportMessage; it talks to nothing else."""

    def __init__(
        self,
        store: Store,
        bucket: CallListBucket,
        providers: ProviderFactory,
        send: Callable[[ImportMessage], None],
        *,
        spool_dir: str | None = None,
        on_contacts: Callable[[str], None] | None = None,
    ) -> None:
        """`on_contacts(task id)` is told when contacts were added to a running task (its dispatcher
        releases them)."""
        self.store = store
        self.bucket = bucket
        self.providers = providers
        self.send = send
        self.spool_dir = spool_dir
        self.on_contacts = on_contacts

    # ------------------------------------------------------------ reads
    def get(self, import_id: str) -> ImportJob:
        job = self.store.get_import(import_id)
        if job is None:
            raise NotFound(f"import {import_id} not found")
        if job.report_key:
            name = f"outcall-report-{import_id}.csv"
            job.report_url = self.bucket.presigned_get(job.report_key, REPORT_URL_SECONDS, download_name=name)
        return job

    def list_imports(self, task_id: str, *, limit: int = 50, next_token: str | None = None) -> ImportPage:
        self._task(task_id)
        items, token = self.store.list_imports(task_id, limit=limit, next_token=next_token)
        return ImportPage(items=items, next_token=token)

    def contacts(
        self, task_id: str, *, status: str | None = None, limit: int = 100, next_token: str | None = None
    ) -> ContactPage:
        self._task(task_id)
        items, token = self.store.list_contacts(task_id, status=status, limit=limit, next_token=next_token)
        return ContactPage(items=[Contact.model_validate(i) for i in items], next_token=token)

    def _task(self, task_id: str) -> Task:
        task = self.store.get_task(task_id)
        if task is None:
            raise NotFound(f"no task {task_id!r}")
        return task

    def _provider_for(self, task: Task) -> Provider:
        provider = self.providers(task.provider)
        refusal = task_refusal(task, provider)
        if refusal:
            raise Conflict(refusal, details={"taskId": task.task_id, "status": task.status})
        return provider

    # ------------------------------------------------------------ JSON
    def add_json(self, task_id: str, request: AddContactsRequest) -> AddContactsResult:
        """Add up to MAX_JSON_CONTACTS contacts now; one result per contact, in request order."""
        task = self._task(task_id)
        provider = self._provider_for(task)
        outcomes = list(process_records([c.record() for c in request.contacts], default_region=request.default_region))
        accepted = sum(1 for o in outcomes if o.status == ACCEPTED)
        now = utcnow()
        job = ImportJob(
            import_id=new_import_id(),
            task_id=task_id,
            source="json",
            status="running",
            default_region=request.default_region.upper(),
            rows_read=len(outcomes),
            chunks=1,
            created_at=now,
            updated_at=now,
            started_at=now,
        )
        self.store.create_import(job)
        self._reserve_or_refuse(job, task, provider, accepted, len(outcomes))
        try:
            added = add_rows(self.store, task, job.import_id, outcomes, reserved=accepted)
            self._finish_chunk(job, task, 0, added)
        except Exception as exc:  # the caller gets an error: the import says what it was, and ends
            reason = f"the request failed: {failure_text(exc)}"
            self.store.update_import(job.import_id, {"error": reason})
            self._close(job.import_id)
            logger.error("JSON import failed", extra={"importId": job.import_id, "reason": reason})
            raise
        job = self._close(job.import_id) or job
        results = [
            ContactResult(
                index=o.row - 1,
                outcome=o.status,
                e164=o.e164,
                reason=o.reason,
                message=o.message,
            )
            for o in outcomes
        ]
        metrics.add_metric(name="ContactsAccepted", unit="Count", value=job.accepted)
        return AddContactsResult(
            import_id=job.import_id,
            task_id=task_id,
            status=job.status,
            rows=job.rows,
            accepted=job.accepted,
            duplicate=job.duplicate,
            invalid=job.invalid,
            queued=job.accepted,
            contacts=results,
        )

    def queue_json(self, task_id: str, request: AddContactsRequest) -> ImportJob:
        """A JSON request too large to answer at once (`request.queued`): planned here as an upload
        is (chunks of CHUNK_ROWS rows, their numbers reserved, each queued) and worked by the import
        queue; GET /imports/{importId} follows it."""
        task = self._task(task_id)
        provider = self._provider_for(task)
        header, records = request.call_list()
        now = utcnow()
        region = request.default_region.upper()
        info = CallListFile(kind="json", header=list(header))
        job = ImportJob(
            import_id=new_import_id(),
            task_id=task_id,
            source="json",
            status="running",
            default_region=region,
            file=info,
            created_at=now,
            updated_at=now,
            started_at=now,
        )
        self.store.create_import(job)
        outcomes = list(process_records(records, default_region=region))
        over_limit: str | None = None
        chunks = range(0, len(outcomes), CHUNK_ROWS)
        for n, start in enumerate(chunks):
            rows = outcomes[start : start + CHUNK_ROWS]
            over_limit = self._plan_chunk(job, task, provider, n, rows, header, over_limit)
        planned = self.store.update_import(job.import_id, {"chunks": len(chunks), "rowsRead": len(outcomes)})
        logger.info("JSON import queued", extra={"importId": job.import_id, "chunks": len(chunks)})
        self._maybe_finish(planned)  # every chunk may be done before `chunks` was stored, as in `plan`
        return planned or job

    def _reserve_or_refuse(self, job: ImportJob, task: Task, provider: Provider, accepted: int, rows: int) -> None:
        per_task, per_account = number_limits(provider)
        marker = self.store.chunk_marker(job.import_id, 0, rows=rows, reserved=accepted)
        verdict = self.store.reserve_numbers(
            task.task_id, provider.key, accepted, max_per_task=per_task, max_per_account=per_account, marker=marker
        )
        if verdict in ("task-limit", "account-limit"):
            message = limit_message(verdict, provider, accepted)
            self.store.update_import(job.import_id, {"status": "failed", "error": message, "finishedAt": _now()})
            raise Conflict(message, details={"limit": verdict, "contacts": accepted})

    # ------------------------------------------------------------ uploads
    def create_upload(self, task_id: str, request: CreateUploadRequest) -> UploadTicket:
        """A presigned PUT for a call list; the upload, when it comes, starts the import."""
        task = self._task(task_id)
        self._provider_for(task)
        now = utcnow()
        import_id = new_import_id()
        key = f"{IMPORT_PREFIX}{task_id}/{import_id}/{request.filename}"
        expires_at = now + timedelta(seconds=UPLOAD_URL_SECONDS)
        job = ImportJob(
            import_id=import_id,
            task_id=task_id,
            source="s3",
            status="waiting",
            object_key=key,
            filename=request.filename,
            sheet=request.sheet,
            default_region=request.default_region.upper(),
            created_at=now,
            updated_at=now,
        )
        self.store.create_import(job, expires_at=expires_at + timedelta(days=1))
        url = self.bucket.presigned_put(key, UPLOAD_URL_SECONDS)
        headers = {"Content-Type": upload_content_type(request.filename)}
        return UploadTicket(import_id=import_id, upload_url=url, headers=headers, object_key=key, expires_at=expires_at)

    def register_upload(self, bucket: str, raw_key: str, version: str | None) -> ImportJob | None:
        """An object arrived under imports/: queue its import once. An upload through
        `create_upload` continues its waiting job; any other object under imports/<taskId>/ gets a
        job named after the object version. None when there is nothing (new) to do."""
        key = object_key(raw_key)
        try:
            task_id = task_id_of(key)
        except Unprocessable as exc:
            logger.warning("upload ignored", extra={"reason": exc.message})
            return None
        ticket: str | None = None
        import_id = _upload_import_id(key)
        if import_id is not None:
            if self.store.attach_upload(import_id, key, version):
                return self._queue_plan(import_id)
            waiting = self.store.get_import(import_id)
            if waiting is not None and waiting.object_key == key and waiting.object_version == (version or ""):
                logger.info("upload already registered", extra={"importId": import_id})
                return None
            if waiting is not None and waiting.object_key == key:
                ticket = import_id  # a later PUT of the same upload URL
        now = utcnow()
        job = _object_job(bucket, key, version, task_id, now, upload_of=ticket)
        if ticket is not None:
            # listed on the ticket's import first, so a retried event that finds the job made still links it
            self.store.add_later_import(ticket, job.import_id)
            logger.info("a later upload of an upload URL", extra={"importId": ticket, "laterImport": job.import_id})
        if not self.store.create_import(job):
            logger.info("upload already registered", extra={"importId": job.import_id})
            return None
        return self._queue_plan(job.import_id)

    # ------------------------------------------------------------ clones
    def clone_contacts(self, source_task_id: str, task_id: str) -> ImportJob:
        """Copy the contacts a task has at its provider into another task: an import like an
        upload's, whose call list the planner first writes from the source task's contacts."""
        now = utcnow()
        job = ImportJob(
            import_id=new_import_id(),
            task_id=task_id,
            source="clone",
            clone_of=source_task_id,
            filename=f"contacts of {source_task_id}.csv",
            created_at=now,
            updated_at=now,
        )
        self.store.create_import(job)
        self.send(ImportMessage(import_id=job.import_id, step="plan"))
        return job

    def _export_contacts(self, job: ImportJob, source_task_id: str) -> ImportJob:
        """Write the source task's contacts (all but those skipped: the provider refused them) as a call
        list under work/: mobile (E.164), name, company, externalId and one column per variable. Run
        again after a crash, it writes the same file."""

        def clonable() -> Iterator[dict[str, Any]]:
            return (c for c in self.store.iter_contacts(source_task_id) if c.get("state") != ContactState.SKIPPED)

        variables: dict[str, None] = {}
        for contact in clonable():
            variables.update(dict.fromkeys(contact.get("variables") or {}))
        header = ["mobile", "name", "company", "externalId", *variables]

        def lines() -> Iterator[bytes]:
            text = io.StringIO()
            writer = csv.writer(text, lineterminator="\r\n")
            writer.writerow(header)
            for contact in clonable():
                values = contact.get("variables") or {}
                writer.writerow(
                    [contact["e164"], contact.get("name"), contact.get("company"), contact.get("externalId")]
                    + [values.get(name, "") for name in variables]
                )
                if text.tell() > 1 << 20:
                    yield text.getvalue().encode()
                    text.seek(0)
                    text.truncate()
            yield text.getvalue().encode()

        key = f"{WORK_PREFIX}{job.import_id}/contacts.csv"
        self.bucket.upload(key, lines(), REPORT_CONTENT_TYPE)
        return self.store.update_import(job.import_id, {"objectKey": key}) or job

    def _queue_plan(self, import_id: str) -> ImportJob | None:
        self.send(ImportMessage(import_id=import_id, step="plan"))
        logger.info("upload registered", extra={"importId": import_id})
        return self.store.get_import(import_id)

    # ------------------------------------------------------------ plan
    def run_step(self, message: ImportMessage, *, attempt: int = 1) -> None:
        """One delivery of an import message. A plan or finish step that fails keeps its error on the
        job (`lastError`) before the message comes again; a chunk keeps it on the chunk item."""
        if message.step == "chunk":
            self.work_chunk(message.import_id, message.chunk, attempt=attempt)
            return
        try:
            if message.step == "plan":
                self.plan(message.import_id)
            else:
                self.finish(message.import_id)
        except Exception as exc:
            self.store.update_import(message.import_id, {"lastError": failure_text(exc)}, touch=False)
            raise

    def plan(self, import_id: str) -> None:
        job = self.store.get_import(import_id)
        if job is None or job.status not in ("queued", "running"):
            return
        job = self.store.update_import(
            import_id,
            {"status": "running", "startedAt": (job.started_at or utcnow()).isoformat()},
            only_from=("queued", "running"),
        )
        if job is None:
            return
        task = self.store.get_task(job.task_id)
        if task is None:
            self._fail(job, f"there is no task {job.task_id!r} to import into")
            return
        provider = self.providers(task.provider)
        refusal = task_refusal(task, provider)
        if refusal:
            self._fail(job, refusal)
            return
        if job.source == "clone" and job.clone_of:
            job = self._export_contacts(job, job.clone_of)
        try:
            stream, size = self.bucket.open(job.object_key or "", job.object_version or None)
        except NotFound as exc:
            self._fail(job, exc.message)
            return
        if size > MAX_FILE_BYTES:
            self._fail(
                job, f"the file is {size / 2**20:.0f} MB; the most a call list may be is {MAX_FILE_BYTES // 2**20} MB"
            )
            return
        try:
            call_list = open_call_list(stream, filename=job.filename, sheet=job.sheet, spool_dir=self.spool_dir)
        except CallListError as exc:
            self._fail(job, exc.message)
            return
        with call_list:
            header = call_list.header
            info = CallListFile(
                kind=call_list.kind,  # type: ignore[arg-type]
                header=list(header),
                encoding=call_list.encoding,
                delimiter=call_list.delimiter,
                sheet=call_list.sheet,
            )
            self.store.update_import(import_id, {"file": info.dump()})
            chunks, rows_read, error = self._plan_rows(job, task, provider, call_list)
        job = self.store.update_import(import_id, {"chunks": chunks, "rowsRead": rows_read, "error": error})
        logger.info("import planned", extra={"importId": import_id, "chunks": chunks, "rows": rows_read})
        self._maybe_finish(job)

    def _plan_rows(self, job: ImportJob, task: Task, provider: Provider, call_list: Any) -> tuple[int, int, str | None]:
        chunk: list[RowOutcome] = []
        count = rows = 0
        over_limit: str | None = None
        error: str | None = None
        last_row = call_list.header_row
        try:
            for outcome in process_rows(call_list, default_region=job.default_region):
                chunk.append(outcome)
                last_row = outcome.row
                if len(chunk) == CHUNK_ROWS:
                    over_limit = self._plan_chunk(job, task, provider, count, chunk, call_list.header, over_limit)
                    count, rows, chunk = count + 1, rows + len(chunk), []
                    self.store.update_import(job.import_id, {"rowsRead": rows})
        except CallListError as exc:
            row = exc.row or last_row + 1
            error = f"{exc.message} (the rows after row {row} were not read)"
            chunk.append(RowOutcome(row, INVALID, None, exc.reason, exc.message, [], call_list.columns))
        if chunk:
            self._plan_chunk(job, task, provider, count, chunk, call_list.header, over_limit)
            count, rows = count + 1, rows + len(chunk)
        return count, rows, error

    def _plan_chunk(
        self,
        job: ImportJob,
        task: Task,
        provider: Provider,
        chunk: int,
        outcomes: list[RowOutcome],
        header: tuple[str, ...],
        over_limit: str | None,
    ) -> str | None:
        """Reserve the chunk's numbers, write it and queue it; returns the limit message once the
        task or account is full (every accepted row from there on is invalid `over_limit`)."""
        accepted = sum(1 for o in outcomes if o.status == ACCEPTED)
        if over_limit is None and accepted:
            per_task, per_account = number_limits(provider)
            marker = self.store.chunk_marker(job.import_id, chunk, rows=len(outcomes), reserved=accepted)
            verdict = self.store.reserve_numbers(
                task.task_id, provider.key, accepted, max_per_task=per_task, max_per_account=per_account, marker=marker
            )
            if verdict == "already":  # planned before this planner was restarted: decide as then
                over_limit = (self.store.get_chunk(job.import_id, chunk) or {}).get("overLimit")
            elif verdict != "reserved":
                over_limit = limit_message(verdict, provider, accepted)
                logger.info("import over a number limit", extra={"importId": job.import_id, "limit": verdict})
        if over_limit is not None:
            for outcome in outcomes:
                invalidate(outcome, "over_limit", over_limit)
            self.store.put_chunk(job.import_id, chunk, rows=len(outcomes), reserved=0, overLimit=over_limit)
        elif accepted == 0:
            self.store.put_chunk(job.import_id, chunk, rows=len(outcomes), reserved=0)
        self.bucket.put(chunk_key(job.import_id, chunk), _encode_chunk(header, outcomes), "application/x-ndjson")
        self.send(ImportMessage(import_id=job.import_id, step="chunk", chunk=chunk))
        return over_limit

    # ------------------------------------------------------------ chunk
    def work_chunk(self, import_id: str, chunk: int, *, attempt: int = 1) -> None:
        job = self.store.get_import(import_id)
        if job is None or job.status in FINAL_IMPORT_STATUSES:
            return
        lease = self.store.lease_chunk(import_id, chunk, LEASE_SECONDS)
        if lease == "done":
            self._maybe_finish(job)
            return
        if lease == "busy":
            raise ChunkBusy(f"chunk {chunk} of {import_id} is being worked by another delivery")
        if lease == "missing":
            logger.warning("chunk message without a planned chunk", extra={"importId": import_id, "chunk": chunk})
            return
        try:
            self._work_chunk(job, chunk, attempt)
        except BaseException as exc:
            self.store.release_chunk(import_id, chunk, error=failure_text(exc))
            raise
        self._maybe_finish(self.store.get_import(import_id))

    def _work_chunk(self, job: ImportJob, chunk: int, attempt: int) -> None:
        marker = self.store.get_chunk(job.import_id, chunk) or {}
        reserved = int(marker.get("reserved", 0))
        columns, outcomes = _decode_chunk(self.bucket.read(chunk_key(job.import_id, chunk)))
        task = self.store.get_task(job.task_id)
        provider = self.providers(task.provider) if task else None
        refusal = task_refusal(task, provider) if task and provider else f"the task {job.task_id!r} was deleted"
        if refusal or task is None or provider is None:
            for outcome in outcomes:
                invalidate(outcome, "task_unavailable", refusal or "the task cannot take contacts")
            added = tally(outcomes, AddedRows(), reserved)
            self.store.update_import(job.import_id, {"error": refusal})
        else:
            added = add_rows(self.store, task, job.import_id, outcomes, reserved=reserved)
        self.bucket.put(part_key(job.import_id, chunk), _report_part(outcomes, columns.header), REPORT_CONTENT_TYPE)
        self._finish_chunk(job, task, chunk, added)
        logger.info(
            "chunk done",
            extra={"importId": job.import_id, "chunk": chunk, **{k: v for k, v in added.job_counts.items() if v}},
        )

    def _finish_chunk(self, job: ImportJob, task: Task | None, chunk: int, added: AddedRows) -> None:
        self._record_chunk(job, task, chunk, added)
        if task is not None and task.status == "running" and added.job_counts.get(ACCEPTED) and self.on_contacts:
            self.on_contacts(task.task_id)

    def _record_chunk(self, job: ImportJob, task: Task | None, chunk: int, added: AddedRows) -> None:
        # A deleted task gave its numbers (this chunk's reservation included) back when it went.
        extra = []
        if task is not None:
            account = self.store.account_numbers_update(task.provider, -added.unused)
            if account is not None:
                extra.append(account)
        self.store.finish_chunk(
            job.import_id,
            chunk,
            job_counts=added.job_counts,
            reasons=added.reasons,
            task_id=job.task_id,
            task_counts=added.task_counts if task is not None else {},
            extra=extra,
        )

    # ------------------------------------------------------------ finish
    def _maybe_finish(self, job: ImportJob | None) -> None:
        if job is not None and job.status == "running" and job.chunks is not None and job.chunks_done >= job.chunks:
            self.send(ImportMessage(import_id=job.import_id, step="finish"))

    def finish(self, import_id: str) -> None:
        job = self.store.get_import(import_id)
        if job is None or job.status != "running" or job.chunks is None or job.chunks_done < job.chunks:
            return
        header = tuple(job.file.header) if job.file else ()
        key = report_key(import_id)
        parts = (self.bucket.body(part_key(import_id, n)) for n in range(job.chunks))
        self.bucket.upload(key, _with_head(header, parts), REPORT_CONTENT_TYPE)
        self.store.update_import(import_id, {"reportKey": key})
        done = self._close(import_id)
        if done is not None:
            metrics.add_metric(name="ImportRows", unit="Count", value=done.rows)
            logger.info("import finished", extra={"importId": import_id, "status": done.status, "rows": done.rows})

    def _close(self, import_id: str) -> ImportJob | None:
        job = self.store.get_import(import_id)
        if job is None:
            return None
        return self.store.update_import(
            import_id, {"status": final_status(job), "finishedAt": _now()}, only_from=("running",)
        )

    # ------------------------------------------------------------ ends (ImportDLQ, UploadDLQ, the stalled check)
    def dead_letter(self, message: ImportMessage) -> ImportJob | None:
        """A message of this import failed every delivery and reached ImportDLQ: a chunk's rows get
        their outcomes (those the failed attempts stored are accepted, the rest `invalid`
        `not_stored`) and the other chunks go on; a plan that failed ends the file where it broke;
        a finish that failed ends the import without its report. The import then ends `partial` (some
        rows imported) or `failed`, with the reason in `error`. Raises ChunkBusy while a worker still
        holds the chunk."""
        job = self.store.get_import(message.import_id)
        if job is None or job.status in FINAL_IMPORT_STATUSES:
            logger.info("dead letter of an import that has ended", extra={"importId": message.import_id})
            return job
        if message.step == "chunk":
            reason = self._dead_chunk(job, message.chunk)
        elif message.step == "plan":
            reason = self._dead_plan(job)
        else:
            reason = (
                f"the report could not be written ({MAX_RECEIVES} attempts): {job.last_error or 'no error recorded'}"
            )
            self.store.update_import(job.import_id, {"error": reason})
            self._close(job.import_id)
        if reason is None:
            return self.store.get_import(job.import_id)
        ended = self.store.get_import(job.import_id)
        logger.error(
            "import step failed every attempt",
            extra={"importId": job.import_id, "step": message.step, "chunk": message.chunk, "reason": reason},
        )
        metrics.add_metric(name="ImportStepsDeadLettered", unit="Count", value=1)
        return ended

    def _dead_chunk(self, job: ImportJob, chunk: int) -> str | None:
        lease = self.store.lease_chunk(job.import_id, chunk, LEASE_SECONDS)
        if lease == "busy":
            raise ChunkBusy(f"chunk {chunk} of {job.import_id} is still being worked")
        if lease != "leased":  # done after all (a late delivery), or never planned
            self._maybe_finish(job)
            return None
        marker = self.store.get_chunk(job.import_id, chunk) or {}
        columns, outcomes = _decode_chunk(self.bucket.read(chunk_key(job.import_id, chunk)))
        where = f"rows {outcomes[0].row}-{outcomes[-1].row}" if outcomes else f"chunk {chunk}"
        reason = (
            f"{where} could not be stored ({MAX_RECEIVES} attempts): "
            f"{marker.get('lastError') or 'no error recorded (the worker timed out?)'}"
        )
        for outcome in outcomes:
            if outcome.status == ACCEPTED and outcome.e164:
                held = self.store.get_contact(job.task_id, outcome.e164) or {}
                if held.get("importId") != job.import_id or held.get("row") != outcome.row:
                    invalidate(outcome, "not_stored", reason)
        added = tally(outcomes, AddedRows(), int(marker.get("reserved", 0)))
        self.bucket.put(part_key(job.import_id, chunk), _report_part(outcomes, columns.header), REPORT_CONTENT_TYPE)
        self._record_chunk(job, self.store.get_task(job.task_id), chunk, added)
        job = self.store.update_import(job.import_id, {"error": job.error or reason}) or job
        self._maybe_finish(job)
        return reason

    def _dead_plan(self, job: ImportJob) -> str:
        why = job.last_error or "no error recorded (the planner timed out?)"
        chunks = self.store.list_chunks(job.import_id)
        if not chunks:
            reason = f"the file could not be read ({MAX_RECEIVES} attempts): {why}"
            self._fail(job, reason)
            return reason
        rows = sum(int(c.get("rows", 0)) for c in chunks)
        reason = f"the file could not be read past its first {rows} rows ({MAX_RECEIVES} attempts): {why}"
        job = self.store.update_import(job.import_id, {"chunks": len(chunks), "rowsRead": rows, "error": reason}) or job
        for number, item in enumerate(chunks):  # a planner that died may not have queued its last chunk
            if item.get("state") != "done":
                self.send(ImportMessage(import_id=job.import_id, step="chunk", chunk=number))
        self._maybe_finish(job)
        return reason

    def upload_failed(self, bucket: str, raw_key: str, version: str | None, reason: str) -> ImportJob | None:
        """An upload event failed every attempt (UploadDLQ): its import ends `failed` saying so; an
        object put straight into the bucket gets an import that says so."""
        key = object_key(raw_key)
        try:
            task_id = task_id_of(key)
        except Unprocessable as exc:
            logger.error("upload event failed for an object outside imports/", extra={"reason": exc.message})
            return None
        message = f"the upload could not be registered ({reason}): upload the file again"
        job: ImportJob | None = None
        ticket = _upload_import_id(key)
        if ticket is not None:
            job = self.store.get_import(ticket)
            if job is not None and job.object_key != key:
                job = None
        job = job or self.store.get_import(import_id_for(bucket, key, version))
        if job is None:
            now = utcnow()
            job = _object_job(bucket, key, version, task_id, now, status="failed", error=message, finished_at=now)
            self.store.create_import(job)
        elif job.status in ("waiting", "queued"):
            job = self.store.update_import(
                job.import_id,
                {"status": "failed", "error": message, "finishedAt": _now(), "chunks": 0},
                only_from=("waiting", "queued"),
            )
        else:  # its planner got it after all
            return job
        logger.error("upload event failed every attempt", extra={"importId": job and job.import_id, "reason": reason})
        metrics.add_metric(name="UploadsFailed", unit="Count", value=1)
        return job

    def check_stalled(self, *, stall_seconds: int = STALL_SECONDS) -> list[ImportJob]:
        """The imports that have not moved for `stall_seconds`: each gets `stalled` (since when, and
        why as far as the store tells) and an ERROR log line; an upload whose URL expired with no
        file ends `failed`. Returns the stalled imports."""
        now = utcnow()
        stalled = []
        for job in self.store.open_imports():
            idle = (now - job.updated_at).total_seconds()
            if job.status == "waiting":
                expired = job.created_at + timedelta(seconds=UPLOAD_URL_SECONDS)
                if now - expired > timedelta(seconds=stall_seconds):
                    why = f"no file was uploaded before the upload URL expired at {expired.isoformat()}"
                    self.store.update_import(
                        job.import_id, {"status": "failed", "error": why, "finishedAt": _now()}, only_from=("waiting",)
                    )
                    logger.warning("upload never came", extra={"importId": job.import_id})
                continue
            if idle < stall_seconds:
                if job.stalled is not None:  # it moved again
                    self.store.update_import(job.import_id, {"stalled": None}, touch=False)
                continue
            reason = f"no progress for {idle / 60:.0f} minutes: {self._why_stalled(job, now)}"
            note = ImportStall(since=job.updated_at, checked_at=now, reason=reason[:1000])
            job = self.store.update_import(job.import_id, {"stalled": note.dump()}, touch=False) or job
            logger.error(
                "import stalled", extra={"importId": job.import_id, "status": job.status, "reason": note.reason}
            )
            stalled.append(job)
        metrics.add_metric(name="ImportsStalled", unit="Count", value=len(stalled))
        return stalled

    def _why_stalled(self, job: ImportJob, now: datetime) -> str:
        if job.status == "queued":
            return "its plan step has not started: is ImportQueue delivered to the contact-import function?"
        if job.source == "json":
            return "the JSON request that made it did not finish (its caller got an error or no answer)"
        if job.chunks is None:
            return (
                f"the planner stopped after {job.rows_read} rows ({job.last_error or 'no error recorded'}); "
                f"its message comes back after ImportQueue's visibility timeout, and after {MAX_RECEIVES} "
                "attempts ImportDLQ ends the import"
            )
        waiting = [(n, c) for n, c in enumerate(self.store.list_chunks(job.import_id)) if c.get("state") != "done"]
        if not waiting:
            return "every chunk is done but the report was not written (its finish step did not run)"
        found = []
        for number, item in waiting[:3]:
            lease = item.get("leaseUntil")
            if lease and datetime.fromisoformat(lease) > now:
                state = f"being worked (leased until {lease})"
            elif lease:
                state = f"its worker stopped (lease ran out at {lease})"
            else:
                state = "waiting for its message"
            error = item.get("lastError")
            found.append(f"chunk {number} {state}" + (f", last error: {error}" if error else ""))
        more = f" and {len(waiting) - 3} more" if len(waiting) > 3 else ""
        return f"{len(waiting)} of {job.chunks} chunks not done: " + "; ".join(found) + more

    def _fail(self, job: ImportJob, message: str) -> None:
        logger.info("import failed", extra={"importId": job.import_id, "reason": message})
        self.store.update_import(
            job.import_id,
            {"status": "failed", "error": message, "finishedAt": _now(), "chunks": 0},
            only_from=("queued", "running"),
        )


def _upload_import_id(key: str) -> str | None:
    """The import of an upload URL (`imports/<taskId>/<importId>/<file>`, create_upload), or None for an
    object put into the bucket some other way."""
    parts = key.split("/")
    return parts[2] if len(parts) == 4 and parts[2].startswith("imp_") else None


def _object_job(bucket: str, key: str, version: str | None, task_id: str, now: datetime, **extra: Any) -> ImportJob:
    """The import of an object under imports/, named after the object version."""
    return ImportJob(
        import_id=import_id_for(bucket, key, version),
        task_id=task_id,
        source="s3",
        object_key=key,
        object_version=version or "",
        filename=PurePosixPath(key).name,
        created_at=now,
        updated_at=now,
        **extra,
    )


def failure_text(exc: BaseException) -> str:
    """An exception as a reason kept on an import and logged: short, phone numbers masked."""
    text = f"{type(exc).__name__}: {mask_text(str(exc))}"
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 3] + "..."


def _with_head(header: tuple[str, ...], parts: Iterator[IO[bytes]]) -> Iterator[bytes | IO[bytes]]:
    yield _report_head(header)
    yield from parts


def _now() -> str:
    return utcnow().isoformat()

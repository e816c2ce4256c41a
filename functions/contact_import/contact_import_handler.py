"""contact_import: call lists as JSON or S3 uploads; the SQS worker plans, works and finishes them.

HTTP (API Gateway HTTP API), S3 ObjectCreated under imports/, and SQS import messages all arrive
here; each is parsed with Powertools and handed to outcall.imports.Importer. S3 ObjectCreated under
dnc-imports/ (do-not-call lists) goes to outcall.dnc_uploads.DncUploads."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from outcall import examples, queues
from outcall.api import BODY_ERRORS, answers, configure, json_body, limit, request_examples, resolve
from outcall.bucket import CallListBucket
from outcall.config import ContactImportConfig, provider_settings
from outcall.contacts import SYNC_JSON_CONTACTS, AddContactsRequest, AddContactsResult, ContactPage
from outcall.dnc import request_withdrawals
from outcall.dnc_uploads import DncUploads, is_dnc_upload
from outcall.idempotency import IDEMPOTENCY_HEADER, once_per_key
from outcall.imports import CreateUploadRequest, Importer, ImportMessage, ImportPage, UploadTicket
from outcall.models import ContactState, ImportJob
from outcall.observability import logger, metrics, tracer
from outcall.providers import get_provider
from outcall.providers.base import Provider
from outcall.store import default_store

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

app = APIGatewayHttpResolver(enable_validation=True, json_body_deserializer=json_body)
configure(app)

TaskId = Annotated[str, Path(alias="taskId", min_length=1, max_length=64)]


def _provider(key: str) -> Provider:
    return get_provider(key, provider_settings())


def _send(message: ImportMessage) -> None:
    queues.send(ContactImportConfig.from_env().import_queue_url, message)


def _contacts_added(task_id: str) -> None:
    """Contacts added to a running task: its dispatcher releases them."""
    from outcall.dispatch import request_dispatch

    request_dispatch(task_id, "contacts added")


def importer() -> Importer:
    return Importer(
        default_store(),
        CallListBucket(ContactImportConfig.from_env().bucket_name),
        _provider,
        _send,
        on_contacts=_contacts_added,
    )


@app.post(
    "/tasks/<taskId>/contacts",
    tags=["contacts"],
    summary=f"Add up to 10,000 contacts: up to {SYNC_JSON_CONTACTS:,} answered with one result each, more imported",
    description=f"Up to {SYNC_JSON_CONTACTS:,} contacts are stored before the answer (200, one result per contact). "
    f"More are an import the import queue works, as an upload's: the answer is 202 with the import "
    "(`Location: /imports/{importId}`), whose counts, reasons and row-level report follow at GET /imports/{importId}; "
    "rows over the task's or the account's number limit are then `invalid` (`over_limit`) instead of a 409.",
    responses={
        **answers(
            200,
            f"Up to {SYNC_JSON_CONTACTS:,} contacts: one result per contact, in request order",
            AddContactsResult,
            401,
            404,
            409,
            *BODY_ERRORS,
            example=examples.ADD_CONTACTS_RESULT,
            route_key="POST /tasks/{taskId}/contacts",
            notes={
                409: "The task cannot take contacts (stopped, completed, failed), the contacts do not fit the "
                "task's or the account's number limit, or this Idempotency-Key is in use"
            },
        ),
        **answers(
            202,
            f"More than {SYNC_JSON_CONTACTS:,} contacts: the import, planned and queued (GET /imports/{{importId}})",
            ImportJob,
            example=examples.JSON_IMPORT_QUEUED,
        ),
    },
    openapi_extensions=limit("POST /tasks/{taskId}/contacts"),
)
def add_contacts(
    task_id: TaskId,
    request: Annotated[AddContactsRequest, Body(openapi_examples=request_examples(four_rows=examples.ADD_CONTACTS))],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=IDEMPOTENCY_HEADER,
            min_length=1,
            max_length=128,
            description="a retry with the same key and body adds nothing and answers the first result",
        ),
    ] = None,
) -> Response[AddContactsResult | ImportJob]:
    def add(contacts: AddContactsRequest) -> dict[str, Any]:
        work = importer()
        return (work.queue_json(task_id, contacts) if contacts.queued else work.add_json(task_id, contacts)).dump()

    if idempotency_key:
        answer = once_per_key(
            f"contacts:{task_id}",
            idempotency_key,
            request.dump(),
            lambda body: add(AddContactsRequest.model_validate(body)),
            app.lambda_context,
        )
    else:
        answer = add(request)
    if not request.queued:
        return Response(200, content_types.APPLICATION_JSON, AddContactsResult.model_validate(answer))
    job = ImportJob.model_validate(answer)
    headers = {"Location": f"/imports/{job.import_id}"}
    return Response(202, content_types.APPLICATION_JSON, job, headers=headers)


@app.get(
    "/tasks/<taskId>/contacts",
    tags=["contacts"],
    summary="A task's contacts with their latest call status",
    responses=answers(200, "A page of contacts", ContactPage, 401, 404, 422, example=examples.CONTACT_PAGE),
)
def list_contacts(
    task_id: TaskId,
    status: Annotated[ContactState | None, Query(description="the contact's state in the dialing engine")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    next_token: Annotated[str | None, Query(alias="nextToken", max_length=2048)] = None,
) -> ContactPage:
    return importer().contacts(task_id, status=status, limit=limit, next_token=next_token)


@app.post(
    "/tasks/<taskId>/uploads",
    tags=["imports"],
    summary="A presigned PUT for a CSV or XLSX call list; the upload starts the import",
    responses=answers(
        201,
        "The import (waiting for its file) and how to PUT the file",
        UploadTicket,
        401,
        404,
        409,
        *BODY_ERRORS,
        example=examples.UPLOAD_TICKET,
        route_key="POST /tasks/{taskId}/uploads",
        notes={409: "The task cannot take contacts (stopped, completed, failed)"},
    ),
    openapi_extensions=limit("POST /tasks/{taskId}/uploads"),
)
def create_upload(
    task_id: TaskId,
    request: Annotated[CreateUploadRequest, Body(openapi_examples=request_examples(csv=examples.CREATE_UPLOAD))],
) -> Response[UploadTicket]:
    ticket = importer().create_upload(task_id, request)
    return Response(201, content_types.APPLICATION_JSON, ticket)


@app.get(
    "/tasks/<taskId>/imports",
    tags=["imports"],
    summary="A task's imports, newest first",
    responses=answers(200, "A page of imports", ImportPage, 401, 404, 422, example=examples.IMPORT_PAGE),
)
def list_imports(
    task_id: TaskId,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    next_token: Annotated[str | None, Query(alias="nextToken", max_length=2048)] = None,
) -> ImportPage:
    return importer().list_imports(task_id, limit=limit, next_token=next_token)


@app.get(
    "/imports/<importId>",
    tags=["imports"],
    summary="Import progress, counts and report link",
    responses=answers(200, "The import", ImportJob, 401, 404, 422, example=examples.IMPORT_JOB),
)
def get_import(import_id: Annotated[str, Path(alias="importId", min_length=1, max_length=64)]) -> ImportJob:
    return importer().get(import_id)


def dnc_uploads() -> DncUploads:
    """Do-not-call lists uploaded under dnc-imports/ (the tickets are task_control's routes)."""
    return DncUploads(
        default_store(),
        CallListBucket(ContactImportConfig.from_env().bucket_name),
        on_listed=lambda task_id: request_withdrawals(default_store(), task_id),
    )


# One function takes HTTP requests, S3 events and SQS batches; what only one of them needs is
# imported when the first such event arrives, so the other two do not pay for it at a cold start.


def on_upload(event: dict[str, Any], context: LambdaContext | None = None) -> dict[str, int]:
    """S3 ObjectCreated: register each object as an import job and queue it once."""
    from aws_lambda_powertools.utilities.parser import parse
    from aws_lambda_powertools.utilities.parser.models import S3Model

    s3_event = parse(event=event, model=S3Model)
    work = importer()
    queued = 0
    for record in s3_event.Records:
        obj = record.s3.object
        if obj is None:  # not an object event
            continue
        if is_dnc_upload(obj.key):  # a do-not-call list: imported in this invocation
            run_id = context.aws_request_id if context is not None else obj.sequencer or ""
            dnc_uploads().register_upload(obj.key, obj.versionId or obj.eTag, run_id)
            continue
        if work.register_upload(record.s3.bucket.name, obj.key, obj.versionId or obj.eTag) is not None:
            queued += 1
    metrics.add_metric(name="UploadsQueued", unit="Count", value=queued)
    return {"queued": queued}


@tracer.capture_method
def on_message(record: SQSRecord) -> None:
    message = ImportMessage.model_validate(json.loads(record.body))
    attempt = int(record.attributes.approximate_receive_count or 1)
    logger.info("import message", extra={"importId": message.import_id, "step": message.step, "attempt": attempt})
    importer().run_step(message, attempt=attempt)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> Mapping[str, Any]:
    if "requestContext" in event:
        return resolve(app, event, context)
    records = event.get("Records") or [{}]
    if records[0].get("eventSource") == "aws:s3":
        return on_upload(event, context)
    from aws_lambda_powertools.utilities.batch import process_partial_response

    return process_partial_response(
        event=event, record_handler=on_message, processor=queues.sqs_batch_processor(), context=context
    )

"""import_failures: imports always end.

- ImportDLQ: an import message (plan, chunk, finish) that failed every delivery ends its step, and
  the import ends `partial` or `failed` with the reason (outcall.imports.Importer.dead_letter).
- UploadDLQ: an S3 upload event that failed every attempt (the trigger's on-failure destination)
  ends its import `failed`, saying so (Importer.upload_failed).
- A rate schedule: the stalled-import check (Importer.check_stalled).

Each is logged at ERROR and counted in a metric. The function calls no provider."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from outcall import queues
from outcall.bucket import CallListBucket
from outcall.config import ImportFailuresConfig
from outcall.imports import Importer, ImportMessage, UploadFailure
from outcall.observability import logger, metrics, tracer
from outcall.providers.base import Provider
from outcall.store import default_store

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

STALLED_CHECK = "stalled-imports"  # the schedule's input in template.yaml: {"check": "stalled-imports"}


def _no_provider(key: str) -> Provider:
    raise RuntimeError(f"import_failures calls no provider (asked for {key!r})")


def _send(message: ImportMessage) -> None:
    queues.send(ImportFailuresConfig.from_env().import_queue_url, message)


def importer() -> Importer:
    return Importer(default_store(), CallListBucket(ImportFailuresConfig.from_env().bucket_name), _no_provider, _send)


def on_upload_failure(failure: UploadFailure) -> None:
    from aws_lambda_powertools.utilities.parser import parse
    from aws_lambda_powertools.utilities.parser.models import S3Model

    event = parse(event=failure.request_payload, model=S3Model)
    work = importer()
    for record in event.Records:
        obj = record.s3.object
        if obj is not None:
            work.upload_failed(record.s3.bucket.name, obj.key, obj.versionId or obj.eTag, failure.reason())


@tracer.capture_method
def on_message(record: SQSRecord) -> None:
    body = json.loads(record.body)
    if isinstance(body, dict) and "requestPayload" in body:  # a Lambda on-failure destination record
        on_upload_failure(UploadFailure.model_validate(body))
        return
    importer().dead_letter(ImportMessage.model_validate(body))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> Mapping[str, Any]:
    if event.get("check") == STALLED_CHECK:
        stalled = importer().check_stalled()
        return {"stalled": [job.import_id for job in stalled]}
    from aws_lambda_powertools.utilities.batch import process_partial_response

    return process_partial_response(
        event=event, record_handler=on_message, processor=queues.sqs_batch_processor(), context=context
    )

"""contact_import: call lists as JSON or S3 uploads; the SQS worker works through the chunks.

HTTP (API Gateway HTTP API), S3 ObjectCreated under imports/, and SQS chunk messages all
arrive here; each is parsed with Powertools and handed to outcall.imports."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import S3Model
from aws_lambda_powertools.utilities.typing import LambdaContext
from outcall import imports, queues
from outcall.api import configure
from outcall.config import Config
from outcall.models import ImportJob
from outcall.observability import logger, metrics, tracer
from outcall.store import default_store

app = APIGatewayHttpResolver(enable_validation=True)
configure(app)
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@app.get("/imports/<importId>", tags=["imports"], summary="Import progress, counts and report link")
def get_import(import_id: Annotated[str, Path(alias="importId")]) -> ImportJob:
    return imports.get_import(default_store(), import_id)


def on_upload(event: dict[str, Any]) -> dict[str, int]:
    """S3 ObjectCreated: register each object as an import job and queue it once."""
    s3_event = parse(event=event, model=S3Model)
    config = Config.from_env()
    queued = 0
    for record in s3_event.Records:
        obj = record.s3.object
        if obj is None:  # not an object event
            continue
        version = obj.versionId or obj.eTag
        job, created = imports.register_upload(default_store(), record.s3.bucket.name, obj.key, version)
        if created:
            queues.send(config.import_queue_url, imports.ChunkMessage(import_id=job.import_id))
            queued += 1
    metrics.add_metric(name="UploadsQueued", unit="Count", value=queued)
    return {"queued": queued}


@tracer.capture_method
def on_chunk(record: SQSRecord) -> None:
    message = imports.ChunkMessage.model_validate(json.loads(record.body))
    job = imports.get_import(default_store(), message.import_id)
    logger.info("chunk received", extra={"importId": job.import_id, "chunk": message.chunk})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> Mapping[str, Any]:
    if "requestContext" in event:
        return app.resolve(event, context)
    records = event.get("Records") or [{}]
    if records[0].get("eventSource") == "aws:s3":
        return on_upload(event)
    return process_partial_response(event=event, record_handler=on_chunk, processor=processor, context=context)

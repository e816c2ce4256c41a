"""contact_import's triggers against moto: S3 uploads become import jobs, queued once."""

from __future__ import annotations

import copy
import json
from typing import Any

import boto3
from outcall import imports
from outcall.store import default_store

from tests.helpers import load_event


def _queue_messages(stack: Any, logical: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.get_queue_url(QueueName=stack.physical_name(logical))["QueueUrl"]
    return sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])


def test_upload_with_encoded_key_becomes_one_queued_import(aws: Any, context: Any) -> None:
    import contact_import_handler as handler

    event = load_event("contact_import_s3_put")
    record = event["Records"][0]["s3"]
    assert handler.lambda_handler(event, context) == {"queued": 1}

    key = "imports/task-1/calls list 名单.csv"
    import_id = imports.import_id_for(record["bucket"]["name"], key, record["object"]["versionId"])
    job = default_store().get_import(import_id)
    assert job is not None
    assert job.object_key == key
    assert job.task_id == "task-1"
    assert job.status == "queued"

    messages = _queue_messages(aws, "ImportQueue")
    assert [json.loads(m["Body"]) for m in messages] == [{"importId": import_id, "step": "plan", "chunk": 0}]


def test_the_same_s3_event_delivered_twice_queues_once(aws: Any, context: Any) -> None:
    import contact_import_handler as handler

    event = load_event("contact_import_s3_put")
    assert handler.lambda_handler(event, context) == {"queued": 1}
    assert handler.lambda_handler(copy.deepcopy(event), context) == {"queued": 0}
    assert len(_queue_messages(aws, "ImportQueue")) == 1


def test_a_new_version_of_the_same_key_is_a_new_import(aws: Any, context: Any) -> None:
    import contact_import_handler as handler

    event = load_event("contact_import_s3_put")
    handler.lambda_handler(event, context)
    again = copy.deepcopy(event)
    again["Records"][0]["s3"]["object"]["versionId"] = "another-version"
    assert handler.lambda_handler(again, context) == {"queued": 1}


def test_get_import_answers_the_job_and_404_for_an_unknown_one(aws: Any, context: Any) -> None:
    import contact_import_handler as handler

    handler.lambda_handler(load_event("contact_import_s3_put"), context)
    record = load_event("contact_import_s3_put")["Records"][0]["s3"]
    import_id = imports.import_id_for(
        record["bucket"]["name"], "imports/task-1/calls list 名单.csv", record["object"]["versionId"]
    )
    event = load_event("contact_import_get_import")
    event["pathParameters"] = {"importId": import_id}
    event["rawPath"] = f"/imports/{import_id}"
    answer = handler.lambda_handler(event, context)
    assert answer["statusCode"] == 200
    body = json.loads(answer["body"])
    assert body["importId"] == import_id and body["status"] == "queued" and body["taskId"] == "task-1"

    missing = handler.lambda_handler(load_event("contact_import_get_import"), context)
    assert missing["statusCode"] == 404
    error = json.loads(missing["body"])
    assert error["code"] == "NotFound" and "imp_000000000000000000000000" in error["message"]
    assert error["requestId"]


def test_a_message_for_an_unknown_import_is_dropped(aws: Any, context: Any) -> None:
    """Nothing could ever work it (its job is gone): retrying would only fill the DLQ."""
    import contact_import_handler as handler

    event = load_event("contact_import_sqs_chunk")
    answer = handler.lambda_handler(event, context)
    assert answer == {"batchItemFailures": []}


def test_malformed_chunk_message_is_a_batch_item_failure(aws: Any, context: Any) -> None:
    import contact_import_handler as handler

    event = load_event("contact_import_sqs_chunk")
    event["Records"][0]["body"] = "not json"
    answer = handler.lambda_handler(event, context)
    assert len(answer["batchItemFailures"]) == 1


def test_object_outside_a_task_folder_is_refused(aws: Any, context: Any) -> None:
    import pytest
    from outcall.errors import Unprocessable

    with pytest.raises(Unprocessable, match="imports/<taskId>/<file>"):
        imports.task_id_of("imports/list.csv")

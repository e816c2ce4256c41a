"""Imports always end, through the local stack: what reaches UploadDLQ (the S3 trigger's on-failure
destination) is consumed by the import_failures function and the import says so."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = pytest.mark.slow


def queue_url(local_stack: Any, logical_id: str) -> str:
    sqs = local_stack.client("sqs")
    urls = [u for u in sqs.list_queues().get("QueueUrls", []) if logical_id in u]
    assert len(urls) == 1, urls
    return str(urls[0])


def test_an_upload_event_in_uploaddlq_ends_its_import_failed_saying_why(local_stack: Any) -> None:
    created = local_stack.authed("POST", "/tasks", json={"name": "e2e dlq", "provider": "xswitch", "type": "auto"})
    task_id = created.json()["taskId"]
    ticket = local_stack.authed("POST", f"/tasks/{task_id}/uploads", json={"filename": "list.csv"}).json()
    # the record Lambda sends once the S3 event of this object failed every attempt
    record = {
        "version": "1.0",
        "requestContext": {"condition": "RetriesExhausted", "approximateInvokeCount": 3},
        "requestPayload": {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "awsRegion": "us-east-1",
                    "eventTime": "2026-01-01T00:00:00.000Z",
                    "eventName": "ObjectCreated:Put",
                    "userIdentity": {"principalId": "AWS:LOCAL"},
                    "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                    "responseElements": {"x-amz-request-id": "1", "x-amz-id-2": "local"},
                    "s3": {
                        "s3SchemaVersion": "1.0",
                        "configurationId": "local",
                        "bucket": {
                            "name": ticket["uploadUrl"].split("/")[3],
                            "ownerIdentity": {"principalId": "L"},
                            "arn": "arn:aws:s3:::b",
                        },
                        "object": {"key": ticket["objectKey"], "size": 10, "eTag": "e", "sequencer": "0"},
                    },
                }
            ]
        },
        "responsePayload": {"errorType": "TimeoutError", "errorMessage": "Task timed out after 900.00 seconds"},
    }
    local_stack.client("sqs").send_message(QueueUrl=queue_url(local_stack, "UploadDLQ"), MessageBody=json.dumps(record))

    def ended() -> Any:
        job = local_stack.authed("GET", f"/imports/{ticket['importId']}").json()
        return job if job["status"] == "failed" else None

    job = local_stack.wait_for(ended, timeout=30)
    assert job["error"] == (
        "the upload could not be registered (TimeoutError: Task timed out after 900.00 seconds, 3 attempts): "
        "upload the file again"
    )
    assert local_stack.deliveries(trigger="sqs", function="outcall-import-failures")

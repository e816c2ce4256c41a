"""What the webhook and result tests share: simulators in process with the provider secret
pointing at them, pushes and reads through the webhook_intake handler, and an SQS drain that
delivers the results queue to the processor as Lambda would."""

from __future__ import annotations

import base64
import copy
import importlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters

from local.pumps import sqs_event
from tests.helpers import ROOT, FakeContext, load_event

FAST = {"retries": 1, "backoffFactor": 0.01, "backoffMax": 0.02, "backoffJitter": 0.0, "readTimeout": 3}
SIM_KEYS = ("quanshi", "xswitch", "nxcloud", "aliyun", "airudder")


def provider_entries() -> dict[str, Any]:
    entries: dict[str, Any] = json.loads(Path(ROOT / "local" / "providers.json").read_text())
    return entries


def put_provider_secret(entries: dict[str, Any]) -> None:
    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    secrets.put_secret_value(SecretId=os.environ["PROVIDER_SECRET_NAME"], SecretString=json.dumps(entries))
    parameters.clear_caches()


@pytest.fixture
def sims(aws: Any) -> Iterator[dict[str, Any]]:
    """Every provider simulator, started in process, and the provider secret pointing at them."""
    entries = provider_entries()
    started: dict[str, Any] = {}
    try:
        for key in SIM_KEYS:
            module = importlib.import_module(f"local.simulators.{key}")
            sim = module.SIMULATOR(port=0, settings={**entries[key], **FAST}).start()
            sim.faults.retry_after = 0
            started[key] = sim
            entries[key] = {**entries[key], **FAST, "baseUrl": sim.url}
        put_provider_secret(entries)
        yield started
    finally:
        for sim in started.values():
            sim.stop()


class Answer:
    def __init__(self, raw: dict[str, Any]) -> None:
        self.status: int = raw["statusCode"]
        self.headers: dict[str, str] = raw.get("headers") or {}
        body = raw.get("body") or ""
        self.text: str = base64.b64decode(body).decode() if raw.get("isBase64Encoded") else body
        try:
            self.json: Any = json.loads(self.text) if self.text else None
        except ValueError:
            self.json = None


def http(
    method: str, path: str, body: bytes | None = None, *, headers: dict[str, str] | None = None, handler: Any = None
) -> Answer:
    """One HTTP API (payload 2.0) request to a handler module (webhook_intake unless told), in process."""
    if handler is None:
        import webhook_intake_handler as handler

    path, _, query = path.partition("?")
    event = copy.deepcopy(load_event("contact_import_get_import"))
    event["routeKey"] = f"{method} {path}"
    event["rawPath"] = path
    event["rawQueryString"] = query
    if query:
        event["queryStringParameters"] = dict(parse_qsl(query))
    event["requestContext"]["http"]["method"] = method
    event["requestContext"]["http"]["path"] = path
    event["pathParameters"] = {}
    event["headers"].update({k.lower(): v for k, v in (headers or {}).items()})
    if body is not None:
        try:
            event["body"] = body.decode("utf-8")
            event["isBase64Encoded"] = False
        except UnicodeDecodeError:
            event["body"] = base64.b64encode(body).decode()
            event["isBase64Encoded"] = True
    return Answer(handler.lambda_handler(event, FakeContext()))


def sqs() -> Any:
    return boto3.client("sqs", region_name="us-east-1")


def queue_messages(queue_url: str | None = None) -> list[dict[str, Any]]:
    """Every message waiting in a queue (made visible again afterwards)."""
    url = queue_url or os.environ["RESULTS_QUEUE_URL"]
    found: list[dict[str, Any]] = []
    while True:
        batch = sqs().receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", [])
        new = [m for m in batch if m["MessageId"] not in {f["MessageId"] for f in found}]
        if not new:
            return found
        found.extend(new)


def drain(
    queue_url: str | None = None, *, rounds: int = 1, handler: Any = None, batch_size: int = 10
) -> list[dict[str, Any]]:
    """Deliver a queue (the results queue to webhook_intake unless told) to its handler in batches,
    as Lambda does; messages it reports as failed stay in the queue. Returns every batch answer."""
    if handler is None:
        import webhook_intake_handler as handler

    url = queue_url or os.environ["RESULTS_QUEUE_URL"]
    arn = sqs().get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    answers = []
    for _ in range(rounds):
        while True:
            batch = (
                sqs()
                .receive_message(
                    QueueUrl=url, MaxNumberOfMessages=batch_size, VisibilityTimeout=30, AttributeNames=["All"]
                )
                .get("Messages", [])
            )
            if not batch:
                break
            event = sqs_event(batch, arn)
            answer = handler.lambda_handler(event, FakeContext())
            answers.append(answer)
            failed = {f["itemIdentifier"] for f in answer.get("batchItemFailures", [])}
            for m in batch:
                if m["MessageId"] in failed:
                    sqs().change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
                else:
                    sqs().delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            if failed:
                break
    return answers


def items(prefix: str) -> list[dict[str, Any]]:
    """Every item of the table whose pk starts with prefix (a scan: tests only)."""
    table = boto3.resource("dynamodb", region_name="us-east-1").Table(os.environ["TABLE_NAME"])
    found: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {}
    while True:
        page = table.scan(**kwargs)
        found.extend(i for i in page["Items"] if str(i["pk"]).startswith(prefix))
        if "LastEvaluatedKey" not in page:
            return found
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def nx_push(sims: dict[str, Any], payload: Any) -> tuple[bytes, dict[str, str]]:
    body, headers = sims["nxcloud"].signed_push(payload, "SHA256")
    return body, headers

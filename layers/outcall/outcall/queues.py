"""SQS messages between the parts of a function (S3 trigger -> chunk worker, webhook -> processor)."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import boto3

from outcall.models import Model


@lru_cache(maxsize=1)
def _sqs() -> Any:
    return boto3.client("sqs")


def send(queue_url: str, message: Model | dict[str, Any], *, group: str | None = None) -> str:
    body = message.dump() if isinstance(message, Model) else message
    kwargs: dict[str, Any] = {"QueueUrl": queue_url, "MessageBody": json.dumps(body, ensure_ascii=False)}
    if group:
        kwargs["MessageGroupId"] = group
    return str(_sqs().send_message(**kwargs)["MessageId"])


def reset_clients() -> None:
    """Forget cached clients (tests switch AWS endpoints between cases)."""
    _sqs.cache_clear()

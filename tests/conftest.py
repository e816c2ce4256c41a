"""Shared fixtures: fake AWS credentials, moto with the resources of template.yaml, sample events."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tests.helpers import FakeContext

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "OutcallTest")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "outcall")


@pytest.fixture
def context() -> FakeContext:
    return FakeContext()


def _reset_caches() -> None:
    from aws_lambda_powertools.utilities import parameters
    from outcall import queues
    from outcall.store import default_store

    default_store.cache_clear()
    queues.reset_clients()
    parameters.clear_caches()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto with every table, bucket, queue, secret and schedule group of template.yaml, and the
    functions' environment variables set as the template sets them."""
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    from local.moto_atomic import make_dynamodb_writes_atomic

    make_dynamodb_writes_atomic()
    with mock_aws():
        from local.template import Stack

        stack = Stack(endpoint="https://sqs.us-east-1.amazonaws.com")
        session = boto3.Session(region_name="us-east-1")
        stack.create_resources(session)
        for key, value in stack.environment().items():
            monkeypatch.setenv(key, value)
        _reset_caches()
        yield stack
        _reset_caches()

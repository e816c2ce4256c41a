"""The local stack as a subprocess (`python -m local`, what `make run` starts), on free ports."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from local.spawn import spawn, stop

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "oc_e2e_token_0123456789abcdef"


@dataclass
class LocalStack:
    url: str
    aws_url: str
    token: str
    log: Path

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.aws_url,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=10, **kwargs)

    def authed(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return requests.request(method, self.url + path, headers=headers, timeout=30, **kwargs)

    def deliveries(self, trigger: str | None = None, function: str | None = None) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.get("/_local/deliveries").json()
        return [
            r
            for r in rows
            if (trigger is None or r["trigger"] == trigger) and (function is None or r["function"] == function)
        ]

    def wait_for(self, predicate: Any, timeout: float = 20, interval: float = 0.2) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s; stack log: {self.log.read_text()[-3000:]}")


def start_stack(log: Path, **extra_env: str) -> tuple[subprocess.Popen[bytes], LocalStack]:
    """`python -m local` on free ports, once /health answers."""
    env = {**os.environ, "OUTCALL_DEV_TOKEN": TOKEN, "OUTCALL_SQS_RETRY_DELAY": "1", **extra_env}
    env.pop("AWS_ENDPOINT_URL", None)
    proc, url, aws_url = spawn(log, env)
    return proc, LocalStack(url, aws_url, TOKEN, log)


def stop_stack(proc: subprocess.Popen[bytes]) -> None:
    stop(proc)


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    proc, stack = start_stack(tmp_path_factory.mktemp("stack") / "stack.log")
    try:
        yield stack
    finally:
        stop_stack(proc)

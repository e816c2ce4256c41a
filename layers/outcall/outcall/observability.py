"""Logger, Metrics and Tracer, set up once for every function, and the masking helpers
that keep phone numbers, tokens and secrets out of log lines."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "outcall")


class _Untraced(BaseSegment):
    """The segment of _NoTracing: records nothing."""

    def close(self, end_time: int | None = None) -> None:
        pass

    def add_subsegment(self, subsegment: Any) -> None:
        pass

    def remove_subsegment(self, subsegment: Any) -> None:
        pass

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def add_exception(self, exception: BaseException, stack: Any, remote: bool = False) -> None:
        pass


class _NoTracing(BaseProvider):
    """Tracer's provider while tracing is off. Importing the X-Ray SDK (Tracer's default provider)
    builds a botocore X-Ray client, which costs more than `import boto3`; a disabled Tracer would
    only hand the SDK's dummy segments around, as this provider does."""

    @contextmanager
    def in_subsegment(self, name: str | None = None, **kwargs: Any) -> Iterator[BaseSegment]:
        yield _Untraced()

    @asynccontextmanager
    async def in_subsegment_async(self, name: str | None = None, **kwargs: Any) -> AsyncIterator[BaseSegment]:
        yield _Untraced()

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def patch(self, modules: Sequence[str]) -> None:
        pass

    def patch_all(self) -> None:
        pass


def _tracer() -> Tracer:
    """Powertools' X-Ray Tracer, or, when POWERTOOLS_TRACE_DISABLED turns tracing off, a disabled
    Tracer that never imports the X-Ray SDK (see _NoTracing)."""
    if os.environ.get("POWERTOOLS_TRACE_DISABLED", "").lower() in {"1", "y", "yes", "t", "true", "on"}:
        return Tracer(service=SERVICE, disabled=True, provider=_NoTracing())
    return Tracer(service=SERVICE)


logger = Logger(service=SERVICE)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Outcall"), service=SERVICE)
tracer = _tracer()

_SECRET_KEYS = re.compile(r"(token|secret|password|sign|key|authorization|checksum)", re.IGNORECASE)
_PHONE_KEYS = re.compile(r"(phone|mobile|tel|number|callee|caller|clid|dest)", re.IGNORECASE)
_DIGITS = re.compile(r"\+?\d[\d\- ]{5,}\d")


def mask_phone(value: str) -> str:
    """Keep the first three and last two digits: enough to tell numbers apart in a log, not to dial."""
    digits = [c for c in value if c.isdigit()]
    if len(digits) <= 5:
        return "*" * len(value)
    prefix = "+" if value.startswith("+") else ""
    return f"{prefix}{''.join(digits[:3])}{'*' * (len(digits) - 5)}{''.join(digits[-2:])}"


def mask_secret(value: str) -> str:
    return f"***({len(value)})" if value else ""


def mask_text(text: str) -> str:
    """Mask every digit run long enough to be a phone number inside free text."""
    return _DIGITS.sub(lambda m: mask_phone(m.group(0)), text)


def redact(value: Any, key: str = "") -> Any:
    """A copy of a JSON-like value fit for a log line: secrets hidden, phone numbers masked."""
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, key) for v in value]
    if isinstance(value, str):
        if key and _SECRET_KEYS.search(key):
            return mask_secret(value)
        if key and _PHONE_KEYS.search(key):
            return mask_phone(value)
        return mask_text(value)
    return value

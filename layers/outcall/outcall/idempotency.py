"""`Idempotency-Key` for HTTP requests that must happen once: Powertools idempotency on the
idempotency table keeps the first answer and gives it back to a retry with the same key and body.
A retry while the first is still running is 409; a key reused with another body is 422.

The answer is kept in one DynamoDB item (400 KB at most): an answer over INLINE_ANSWER_BYTES (the
per-contact results of a 10,000-contact request run to megabytes) is kept gzip-compressed."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Callable, Mapping
from typing import Any, Final

from outcall.config import Config
from outcall.errors import Conflict, Unprocessable

EXPIRES_SECONDS = 24 * 3600
IDEMPOTENCY_HEADER = "Idempotency-Key"
INLINE_ANSWER_BYTES: Final = 64 * 1024
PACKED: Final = "gzipBase64"


def pack(answer: dict[str, Any]) -> dict[str, Any]:
    """The answer as it is kept: itself when small, else {PACKED: base64 of its gzipped JSON}."""
    raw = json.dumps(answer, separators=(",", ":"), ensure_ascii=False).encode()
    if len(raw) <= INLINE_ANSWER_BYTES:
        return answer
    return {PACKED: base64.b64encode(gzip.compress(raw, compresslevel=6)).decode()}


def unpack(kept: dict[str, Any]) -> dict[str, Any]:
    if set(kept) == {PACKED}:
        answer: dict[str, Any] = json.loads(gzip.decompress(base64.b64decode(kept[PACKED])))
        return answer
    return kept


def once_per_key(
    scope: str,
    key: str,
    body: Mapping[str, Any],
    work: Callable[[Mapping[str, Any]], dict[str, Any]],
    lambda_context: Any = None,
) -> dict[str, Any]:
    """`work(body)` once per (`scope`, `key`); its JSON answer is kept for EXPIRES_SECONDS."""
    # imported here: Powertools idempotency (with its DynamoDB layer) only serves keyed requests
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyAlreadyInProgressError,
        IdempotencyValidationError,
    )

    persistence = DynamoDBPersistenceLayer(table_name=Config.from_env().idempotency_table_name)
    config = IdempotencyConfig(
        event_key_jmespath="[scope, idempotencyKey]",
        payload_validation_jmespath="body",
        expires_after_seconds=EXPIRES_SECONDS,
    )
    if lambda_context is not None:
        config.register_lambda_context(lambda_context)

    @idempotent_function(data_keyword_argument="payload", persistence_store=persistence, config=config)
    def run_once(payload: dict[str, Any]) -> dict[str, Any]:
        return pack(work(payload["body"]))

    try:
        return unpack(run_once(payload={"scope": scope, "idempotencyKey": key, "body": dict(body)}))
    except IdempotencyAlreadyInProgressError as exc:
        raise Conflict(f"a request with this {IDEMPOTENCY_HEADER} is still being processed") from exc
    except IdempotencyValidationError as exc:
        raise Unprocessable(f"this {IDEMPOTENCY_HEADER} was already used with a different body") from exc

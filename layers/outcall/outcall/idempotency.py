"""`Idempotency-Key` for HTTP requests that must happen once: Powertools idempotency on the
idempotency table keeps the first answer and gives it back to a retry with the same key and body.
A retry while the first is still running is 409; a key reused with another body is 422."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from outcall.config import Config
from outcall.errors import Conflict, Unprocessable

EXPIRES_SECONDS = 24 * 3600
IDEMPOTENCY_HEADER = "Idempotency-Key"


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
        return work(payload["body"])

    try:
        return run_once(payload={"scope": scope, "idempotencyKey": key, "body": dict(body)})
    except IdempotencyAlreadyInProgressError as exc:
        raise Conflict(f"a request with this {IDEMPOTENCY_HEADER} is still being processed") from exc
    except IdempotencyValidationError as exc:
        raise Unprocessable(f"this {IDEMPOTENCY_HEADER} was already used with a different body") from exc

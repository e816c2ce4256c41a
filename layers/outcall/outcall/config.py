"""Where things are: names of the table, bucket, queues and secret, read from the
environment that template.yaml gives every function (and the local stack gives in-process)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

PROVIDER_SETTINGS_MAX_AGE = 300


@dataclass(frozen=True)
class Config:
    table_name: str
    idempotency_table_name: str
    bucket_name: str
    import_queue_url: str
    results_queue_url: str
    dispatch_queue_url: str
    provider_secret_name: str
    scheduler_group: str
    scheduler_role_arn: str
    scheduler_dlq_arn: str
    stage: str

    @classmethod
    def from_env(cls) -> Config:
        env = os.environ
        return cls(
            table_name=env.get("TABLE_NAME", "outcall"),
            idempotency_table_name=env.get("IDEMPOTENCY_TABLE_NAME", "outcall-idempotency"),
            bucket_name=env.get("BUCKET_NAME", "outcall-call-lists"),
            import_queue_url=env.get("IMPORT_QUEUE_URL", ""),
            results_queue_url=env.get("RESULTS_QUEUE_URL", ""),
            dispatch_queue_url=env.get("DISPATCH_QUEUE_URL", ""),
            provider_secret_name=env.get("PROVIDER_SECRET_NAME", "outcall/providers"),
            scheduler_group=env.get("SCHEDULER_GROUP", "default"),
            scheduler_role_arn=env.get("SCHEDULER_ROLE_ARN", ""),
            scheduler_dlq_arn=env.get("SCHEDULER_DLQ_ARN", ""),
            stage=env.get("STAGE", "local"),
        )


def provider_settings(config: Config | None = None, *, force_fetch: bool = False) -> dict[str, Any]:
    """Connection settings and credentials of every provider: one JSON secret, one object per
    provider key. Cached by Powertools parameters for PROVIDER_SETTINGS_MAX_AGE seconds."""
    # imported here: only functions that talk to providers read the secret
    from aws_lambda_powertools.utilities import parameters

    cfg = config or Config.from_env()
    value = parameters.get_secret(
        cfg.provider_secret_name, transform="json", max_age=PROVIDER_SETTINGS_MAX_AGE, force_fetch=force_fetch
    )
    if not isinstance(value, dict):
        raise ValueError(f"secret {cfg.provider_secret_name} must hold a JSON object")
    return value

"""Where things are: names of the table, bucket, queues and secret, read from the
environment that template.yaml gives every function (and the local stack gives in-process): one
validated model, and one model per function that requires what that function uses."""

from __future__ import annotations

import os
from typing import Annotated, Any, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError

PROVIDER_SETTINGS_MAX_AGE = 300


def _unset_when_empty(value: Any) -> Any:
    return value if value not in ("", None) else None


Name = Annotated[str, StringConstraints(min_length=1, max_length=256, strip_whitespace=True)]
QueueUrl = Annotated[str, StringConstraints(pattern=r"^https?://\S+$", max_length=1024)]
Arn = Annotated[str, StringConstraints(pattern=r"^arn:\S+$", max_length=2048)]
UnsetWhenEmpty = BeforeValidator(_unset_when_empty)


class ConfigError(RuntimeError):
    """The function's environment lacks a variable it needs, or holds one that is not valid."""


class Config(BaseModel):
    """The environment template.yaml gives every function (and the local stack each in-process
    function), validated. Names of the table, bucket and secret default to the local stack's; queue
    URLs and ARNs have no default: one that is unset is None, and `need(field)` (or a function's own
    model below, which requires what that function uses) says which variable is missing instead of
    sending to a queue called ""."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    table_name: Name = Field("outcall", validation_alias="TABLE_NAME")
    idempotency_table_name: Name = Field("outcall-idempotency", validation_alias="IDEMPOTENCY_TABLE_NAME")
    bucket_name: Name = Field("outcall-call-lists", validation_alias="BUCKET_NAME")
    provider_secret_name: Name = Field("outcall/providers", validation_alias="PROVIDER_SECRET_NAME")
    scheduler_group: Name = Field("default", validation_alias="SCHEDULER_GROUP")
    stage: Name = Field("local", validation_alias="STAGE")
    import_queue_url: Annotated[QueueUrl | None, UnsetWhenEmpty] = Field(None, validation_alias="IMPORT_QUEUE_URL")
    results_queue_url: Annotated[QueueUrl | None, UnsetWhenEmpty] = Field(None, validation_alias="RESULTS_QUEUE_URL")
    dispatch_queue_url: Annotated[QueueUrl | None, UnsetWhenEmpty] = Field(None, validation_alias="DISPATCH_QUEUE_URL")
    scheduler_role_arn: Annotated[Arn | None, UnsetWhenEmpty] = Field(None, validation_alias="SCHEDULER_ROLE_ARN")
    scheduler_dlq_arn: Annotated[Arn | None, UnsetWhenEmpty] = Field(None, validation_alias="SCHEDULER_DLQ_ARN")
    task_control_function_arn: Annotated[Arn | None, UnsetWhenEmpty] = Field(
        None, validation_alias="TASK_CONTROL_FUNCTION_ARN"
    )
    conference_dialing_function_arn: Annotated[Arn | None, UnsetWhenEmpty] = Field(
        None, validation_alias="CONFERENCE_DIALING_FUNCTION_ARN"
    )

    @classmethod
    def from_env(cls) -> Self:
        """This model read from os.environ; a ConfigError names every variable that is missing or
        invalid."""
        try:
            return cls.model_validate(dict(os.environ))
        except ValidationError as exc:
            wrong = ", ".join(f"{_env_name(cls, str(e['loc'][0]))} ({e['msg']})" for e in exc.errors(include_url=False))
            raise ConfigError(f"the function's environment is not usable: {wrong}") from None

    def need(self, field: str) -> str:
        """The value of `field`, or a ConfigError naming its environment variable."""
        value = getattr(self, field)
        if value is None:
            raise ConfigError(f"{_env_name(type(self), field)} is not set in the function's environment")
        return str(value)


def _env_name(model: type[BaseModel], field: str) -> str:
    info = model.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    return str(alias) if isinstance(alias, str) else field


class ContactImportConfig(Config):
    """contact_import: it queues chunks and asks the dispatcher to release contacts added to a running task."""

    import_queue_url: QueueUrl = Field(validation_alias="IMPORT_QUEUE_URL")
    dispatch_queue_url: QueueUrl = Field(validation_alias="DISPATCH_QUEUE_URL")


class TaskControlConfig(Config):
    """task_control: clones copy contacts by an import, the dispatcher carries on from its queue, and
    auto start/stop are one-time schedules that call this function."""

    import_queue_url: QueueUrl = Field(validation_alias="IMPORT_QUEUE_URL")
    dispatch_queue_url: QueueUrl = Field(validation_alias="DISPATCH_QUEUE_URL")


class ImportFailuresConfig(Config):
    """import_failures: a stalled or dead-lettered import's last step may queue its finish."""

    import_queue_url: QueueUrl = Field(validation_alias="IMPORT_QUEUE_URL")


class WebhookIntakeConfig(Config):
    """webhook_intake: verified pushes go to the results queue; results free room for the dispatcher."""

    results_queue_url: QueueUrl = Field(validation_alias="RESULTS_QUEUE_URL")
    dispatch_queue_url: QueueUrl = Field(validation_alias="DISPATCH_QUEUE_URL")


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

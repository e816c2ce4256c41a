"""The functions' environment, validated: a missing or malformed queue URL or ARN is an error that
names the variable, never a send to a queue called ""."""

from __future__ import annotations

import pytest
from outcall.config import (
    Config,
    ConfigError,
    ContactImportConfig,
    ImportFailuresConfig,
    TaskControlConfig,
    WebhookIntakeConfig,
)

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/outcall-ImportQueue"


def test_names_default_to_the_local_stack_and_urls_are_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TABLE_NAME", "IMPORT_QUEUE_URL", "DISPATCH_QUEUE_URL", "SCHEDULER_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    config = Config.from_env()
    assert config.table_name == "outcall" and config.import_queue_url is None
    with pytest.raises(ConfigError, match="DISPATCH_QUEUE_URL is not set"):
        config.need("dispatch_queue_url")


def test_an_empty_variable_is_unset_not_a_queue_called_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMPORT_QUEUE_URL", "")
    assert Config.from_env().import_queue_url is None
    monkeypatch.setenv("DISPATCH_QUEUE_URL", QUEUE)
    with pytest.raises(ConfigError, match="IMPORT_QUEUE_URL"):
        ContactImportConfig.from_env()


@pytest.mark.parametrize(
    ("model", "needs"),
    [
        (ContactImportConfig, ("IMPORT_QUEUE_URL", "DISPATCH_QUEUE_URL")),
        (TaskControlConfig, ("IMPORT_QUEUE_URL", "DISPATCH_QUEUE_URL")),
        (WebhookIntakeConfig, ("RESULTS_QUEUE_URL", "DISPATCH_QUEUE_URL")),
        (ImportFailuresConfig, ("IMPORT_QUEUE_URL",)),
    ],
)
def test_each_function_requires_what_it_uses(
    monkeypatch: pytest.MonkeyPatch, model: type[Config], needs: tuple[str, ...]
) -> None:
    for name in needs:
        monkeypatch.setenv(name, QUEUE)
    assert model.from_env().need(needs[0].lower()) == QUEUE
    for name in needs:
        monkeypatch.delenv(name)
        with pytest.raises(ConfigError, match=name):
            model.from_env()
        monkeypatch.setenv(name, QUEUE)


def test_a_malformed_value_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEDULER_ROLE_ARN", "role/outcall")
    with pytest.raises(ConfigError, match="SCHEDULER_ROLE_ARN"):
        Config.from_env()
    monkeypatch.setenv("SCHEDULER_ROLE_ARN", "arn:aws:iam::123456789012:role/outcall")
    monkeypatch.setenv("RESULTS_QUEUE_URL", "outcall-results")
    with pytest.raises(ConfigError, match="RESULTS_QUEUE_URL"):
        Config.from_env()

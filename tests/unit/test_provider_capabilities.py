"""What a provider module declares it can do (providers/base.py Capabilities) is what it implements:
the engine and the pollers choose by the declaration, never by probing the class."""

from __future__ import annotations

import pytest
from outcall.models import PROVIDER_KEYS
from outcall.providers import provider_class
from outcall.providers.base import Provider

DECLARED = {
    "polling": "poll_results",
    "task_polling": "poll_task",
    "webhooks": "parse_webhook",
    "clone": "clone_task",
}


def overrides(cls: type[Provider], name: str) -> bool:
    return getattr(cls, name) is not getattr(Provider, name)


@pytest.mark.parametrize("key", PROVIDER_KEYS)
@pytest.mark.parametrize(("capability", "method"), sorted(DECLARED.items()))
def test_a_declared_capability_is_implemented_and_only_then(key: str, capability: str, method: str) -> None:
    cls = provider_class(key)
    assert getattr(cls.capabilities, capability) == overrides(cls, method), (key, capability, method)


def test_pause_is_declared_by_the_providers_that_pause() -> None:
    for key in PROVIDER_KEYS:
        cls = provider_class(key)
        if cls.capabilities.tasks:
            assert cls.capabilities.pause == overrides(cls, "pause_task"), key

"""Provider registry: one module per provider behind outcall.providers.base.Provider."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from outcall.errors import NotFound
from outcall.models import PROVIDER_KEYS
from outcall.providers.base import Provider


def provider_class(key: str) -> type[Provider]:
    if key not in PROVIDER_KEYS:
        raise NotFound(f"unknown provider {key!r}; known: {', '.join(PROVIDER_KEYS)}")
    module = importlib.import_module(f"outcall.providers.{key}")
    cls: type[Provider] = module.PROVIDER
    return cls


def get_provider(key: str, settings: Mapping[str, Any]) -> Provider:
    """A provider instance configured from its entry in the provider-settings secret."""
    return provider_class(key)(settings.get(key, {}))

"""Fixtures the provider contract tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.contract.support import Receiver


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """An HTTP server on 127.0.0.1 that records the pushes a simulator sends."""
    r = Receiver()
    yield r
    r.close()

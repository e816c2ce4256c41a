"""DynamoDB makes each conditional write atomic; moto does not lock, so two threads (the
threaded moto server, or concurrent requests in a test) can both pass the same condition.
outcall relies on that atomicity (claims on a task's version, first-writer-wins puts), so the
local stack and the tests serialise moto's DynamoDB writes, as the real service behaves."""

from __future__ import annotations

import functools
import threading
from typing import Any

from moto.dynamodb.models import DynamoDBBackend

_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")
_LOCK = threading.RLock()


def make_dynamodb_writes_atomic() -> None:
    for name in _WRITES:
        method = getattr(DynamoDBBackend, name)
        if getattr(method, "_outcall_atomic", False):
            continue

        @functools.wraps(method)
        def atomic(self: Any, *args: Any, __method: Any = method, **kwargs: Any) -> Any:
            with _LOCK:
                return __method(self, *args, **kwargs)

        atomic._outcall_atomic = True  # type: ignore[attr-defined]
        setattr(DynamoDBBackend, name, atomic)

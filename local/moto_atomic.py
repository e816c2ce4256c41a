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
WRITE_LOCK = threading.RLock()  # also taken by local.moto_bounded


def make_dynamodb_writes_atomic() -> None:
    for name in _WRITES:
        method = getattr(DynamoDBBackend, name)
        if getattr(method, "_outcall_atomic", False):
            continue

        @functools.wraps(method)
        def atomic(self: Any, *args: Any, __method: Any = method, **kwargs: Any) -> Any:
            with WRITE_LOCK:
                return __method(self, *args, **kwargs)

        atomic._outcall_atomic = True  # type: ignore[attr-defined]
        setattr(DynamoDBBackend, name, atomic)


def make_sqs_deletes_atomic() -> None:
    """moto's Queue.delete_message rebuilds the queue's message list; a message sent while it
    does (another thread of the moto server) is appended to the old list and lost. Deleting under
    the queue's own message lock (the one add_message appends under) loses nothing."""
    from moto.sqs.models import Queue

    method = Queue.delete_message
    if getattr(method, "_outcall_atomic", False):
        return

    @functools.wraps(method)
    def delete_message(self: Any, receipt_handle: str) -> None:
        with self._messages_lock:
            method(self, receipt_handle)

    delete_message._outcall_atomic = True  # type: ignore[attr-defined]
    Queue.delete_message = delete_message  # type: ignore[method-assign]

"""moto for a long-running local stack: memory that follows the data, not the history of requests.

moto is written for tests that reset it every few seconds; a local stack serving a
1,000,000-row import runs for many minutes without a reset. Two of its habits then grow without
bound (moto 5.2, checked in moto/core/common_models.py and moto/dynamodb/models/__init__.py):

1. `BaseModel.__new__` appends every model instance to its class's `instances_tracked` list and
   nothing but a reset ever drops it. Every DynamoDB item ever written, every copy moto makes
   of one (update_item deep-copies the item it updates), every S3 object version overwritten
   and every SQS message stays referenced for the life of the process. The lists serve moto's
   dashboard (/moto-api/data.json) and the reset of S3's temporary files; the local stack uses
   neither, so `stop_tracking_instances` makes `__new__` plain `object.__new__` again.
2. `DynamoDBBackend.transact_write_items` deep-copies every table a transaction touches, once
   per item of the transaction, to roll back on failure: its cost and its garbage grow with
   the table (about 4.3 MB per transaction at 100,000 contacts). `roll_back_items_not_tables`
   keeps a copy of the items the transaction names instead, puts exactly those back when the
   transaction fails (on any exception, not only the ones moto rolls back for), and makes
   moto's whole-table copy a no-op (moto's own restore then puts the same table back).

3. An SQS queue keeps the receipt handles of every message ever deleted from it
   (`Queue.deleted_messages`, moto/sqs/models.py) so that deleting one twice is not an error;
   `remember_recent_deletes` keeps the latest DELETED_HANDLES_KEPT of them per queue.

All three are applied in the local stack's moto process (local.moto_server) and where a benchmark
runs moto for a long time; the tests keep stock moto (they reset it per test).
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from local.moto_atomic import WRITE_LOCK

_PATCHED = "_outcall_bounded"


def stop_tracking_instances() -> None:
    """Model instances are no longer kept in `instances_tracked`; the lists already kept are dropped."""
    from moto.core.common_models import BaseModel
    from moto.core.model_instances import reset_model_data

    if getattr(BaseModel, _PATCHED, False):
        return

    def untracked_new(cls: type, *args: Any, **kwargs: Any) -> Any:
        return object.__new__(cls)

    BaseModel.__new__ = staticmethod(untracked_new)  # type: ignore[method-assign]
    setattr(BaseModel, _PATCHED, True)
    reset_model_data()


class _CopyKeepingTables:
    """Stands in for the `copy` module inside moto.dynamodb.models: `deepcopy` of a whole Table
    (only transact_write_items makes one there) returns the table itself; everything else is copied."""

    def __init__(self, table_type: type) -> None:
        self._table_type = table_type

    def deepcopy(self, value: Any, memo: dict[int, Any] | None = None) -> Any:
        if isinstance(value, self._table_type):
            return value
        return copy.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)


def _named_items(backend: Any, transact_items: list[dict[str, Any]]) -> list[tuple[Any, Any, Any, Any]]:
    """(table, hash key, range key, a copy of the item or None) for every item the transaction names."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    saved = []
    for entry in transact_items:
        if len(entry) != 1:
            continue  # moto refuses it before writing anything
        op = next(iter(entry.values()))
        table = backend.tables.get(op.get("TableName"))
        key = op.get("Key") or op.get("Item")
        if table is None or not isinstance(key, dict) or table.hash_key_attr not in key:
            continue  # moto refuses it; nothing of this item can have changed
        hash_value = DynamoType(key[table.hash_key_attr])
        range_value = None
        if table.range_key_attr is not None:
            if table.range_key_attr not in key:
                continue
            range_value = DynamoType(key[table.range_key_attr])
        current = table.get_item(hash_value, range_value)
        saved.append((table, hash_value, range_value, copy.deepcopy(current) if current is not None else None))
    return saved


def _put_back(saved: list[tuple[Any, Any, Any, Any]]) -> None:
    for table, hash_value, range_value, item in reversed(saved):
        if range_value is None:
            if item is None:
                table.items.pop(hash_value, None)
            else:
                table.items[hash_value] = item
        elif item is None:
            table.items.get(hash_value, {}).pop(range_value, None)
        else:
            table.items[hash_value][range_value] = item


def roll_back_items_not_tables() -> None:
    """transact_write_items keeps copies of the items it names, not of whole tables."""
    import moto.dynamodb.models as models
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    original = DynamoDBBackend.transact_write_items
    if getattr(original, _PATCHED, False):
        return
    models.copy = _CopyKeepingTables(Table)  # type: ignore[assignment]

    @functools.wraps(original)
    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        with WRITE_LOCK:  # the items copied are the items written: no other write in between
            saved = _named_items(self, transact_items)
            try:
                original(self, transact_items)
            except BaseException:
                _put_back(saved)
                raise

    setattr(transact_write_items, _PATCHED, True)
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


DELETED_HANDLES_KEPT = 100_000


class RecentSet:
    """A set that forgets its oldest members beyond `size` (what moto does with deleted_messages:
    `in` and `update`)."""

    def __init__(self, size: int = DELETED_HANDLES_KEPT) -> None:
        self.size = size
        self._members: dict[Any, None] = {}

    def update(self, values: Any) -> None:
        for value in values:
            self._members.pop(value, None)
            self._members[value] = None
        while len(self._members) > self.size:
            del self._members[next(iter(self._members))]

    def add(self, value: Any) -> None:
        self.update([value])

    def __contains__(self, value: object) -> bool:
        return value in self._members

    def __len__(self) -> int:
        return len(self._members)


def remember_recent_deletes() -> None:
    from moto.sqs.models import Queue

    original = Queue.__init__
    if getattr(original, _PATCHED, False):
        return

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.deleted_messages = RecentSet()

    setattr(__init__, _PATCHED, True)
    Queue.__init__ = __init__  # type: ignore[method-assign]


def bound_moto_memory() -> None:
    stop_tracking_instances()
    roll_back_items_not_tables()
    remember_recent_deletes()

"""The table and the primitives every kind of item uses; see outcall.store for the key design."""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import boto3
from boto3.dynamodb.conditions import ConditionExpressionBuilder, Key
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config as ClientConfig
from botocore.exceptions import ClientError

from outcall.config import Config
from outcall.errors import Unprocessable

WRITE_THREADS = 16  # requests a store call sends side by side (boto3 clients are thread-safe)
# The table's client. Its connection pool holds a connection for each of the threads a store call
# works with (WRITE_THREADS), not botocore's 10: otherwise every request past the
# tenth opens a connection and drops it. botocore's check of each request against the service model
# before it is sent is turned off: DynamoDB checks every request itself (a ValidationException, a
# ClientError as any other refusal), and the check costs about 0.3 ms per contact of an import's
# BatchWriteItem, a third of the import's client-side CPU (cProfile of a 5,000-row chunk).
CLIENT_CONFIG = ClientConfig(max_pool_connections=32, parameter_validation=False)

BATCH_GET_KEYS = 100  # BatchGetItem's limit per request
BATCH_WRITE_ITEMS = 25  # BatchWriteItem's limit per request
BATCH_TRIES = 10  # requests of a batch whose unprocessed part is sent again before giving up

GSI1 = "gsi1"
GSI2 = "gsi2"  # sparse: only items that set gsi2pk are in it (imports still open, store/imports.py)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; models want int/float."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


_to_wire = TypeSerializer().serialize
_from_wire = TypeDeserializer().deserialize
T = TypeVar("T")
R = TypeVar("R")


def _parallel(work: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """work(item) for each item, WRITE_THREADS at a time; the answers in order. Every item is worked
    before the first failure is raised: `pool.map` would cancel the items not yet started, so what a
    call wrote would depend on thread timing (a throttled batch would drop the batches beside it)."""
    if len(items) <= 1:
        return [work(i) for i in items]
    with ThreadPoolExecutor(max_workers=min(WRITE_THREADS, len(items))) as pool:
        futures = [pool.submit(work, item) for item in items]
    return [future.result() for future in futures]  # all done: the pool's exit waited for them


class BatchUnprocessed(RuntimeError):
    """DynamoDB left part of a batch unprocessed BATCH_TRIES times (throttled): the caller fails and is retried."""


def _backoff(attempt: int) -> None:
    time.sleep(min(1.0, 0.05 * 2**attempt))


class _BuilderPerThread(threading.local):
    """The Table resource builds the expressions of Key/Attr conditions with one
    ConditionExpressionBuilder per client, reset at the start of every request
    (boto3/dynamodb/transform.py, TransformationInjector): two threads building at once mix their
    placeholders, and a query runs with another's names and values: a ValidationException, or worse
    a silently wrong answer (boto/boto3#1332; tests/integration/test_store_threads.py). The store
    queries shards side by side (_parallel), and the local stack runs functions in threads: each
    thread builds with a builder of its own."""

    def __init__(self) -> None:
        self.builder = ConditionExpressionBuilder()

    def reset(self) -> None:
        self.builder.reset()

    def build_expression(self, condition: Any, is_key_condition: bool = False) -> Any:
        return self.builder.build_expression(condition, is_key_condition=is_key_condition)


def _table(table_name: str) -> Any:
    """A Table resource whose condition expressions are built per thread (_BuilderPerThread)."""
    resource = boto3.resource("dynamodb", config=CLIENT_CONFIG)
    table = resource.Table(table_name)
    for owner in (resource, table):  # the handler registered first (the resource's) is the one that runs
        owner._injector._condition_builder = _BuilderPerThread()
    return table


def _dynamo(value: Any) -> Any:
    """JSON-like values as DynamoDB takes them: floats become Decimal."""
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dynamo(v) for v in value]
    return value


def update_expression(
    changes: Mapping[str, Any], names: dict[str, str], values: dict[str, Any], sets: list[str], removes: list[str]
) -> str:
    """An UpdateExpression that sets each of `changes` (camelCase attribute -> value; None removes
    the attribute) after the given `sets`/`removes`; fills `names` and `values` as it goes."""
    for i, (attr, value) in enumerate(changes.items()):
        names[f"#a{i}"] = attr
        if value is None:
            removes.append(f"#a{i}")
        else:
            values[f":a{i}"] = _dynamo(value)
            sets.append(f"#a{i} = :a{i}")
    parts = ([f"SET {', '.join(sets)}"] if sets else []) + ([f"REMOVE {', '.join(removes)}"] if removes else [])
    return " ".join(parts)


def _is_conditional_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def encode_page_token(key: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(dict(key), separators=(",", ":")).encode()).decode()


GSI1_KEYS = ("pk", "sk", "gsi1pk", "gsi1sk")


def decode_page_token(token: str, keys: tuple[str, ...] = GSI1_KEYS) -> dict[str, Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise Unprocessable("nextToken is not a token this API gave out") from exc
    if not isinstance(key, dict) or set(key) != set(keys):
        raise Unprocessable("nextToken is not a token this API gave out")
    return key


class StoreBase:
    def __init__(self, table_name: str | None = None) -> None:
        self.table_name = table_name or Config.from_env().table_name
        self._table: Any = None
        self._wire: Any = None

    @property
    def table(self) -> Any:
        if self._table is None:
            self._table = _table(self.table_name)
        return self._table

    @property
    def wire(self) -> Any:
        """The table's low-level client: items in DynamoDB's JSON. The Table resource's client
        deep-copies every request and converts each value through the model on the way in and out;
        the bulk reads and writes below convert only the items (half an import's client-side CPU)."""
        if self._wire is None:
            self._wire = boto3.client("dynamodb", config=CLIENT_CONFIG)
        return self._wire

    # ------------------------------------------------------------ primitives
    def _batch_get(self, keys: Sequence[Mapping[str, str]]) -> list[dict[str, Any]]:
        """The items of these keys (string key attributes) that exist, plain: BatchGetItem with strongly
        consistent reads, BATCH_GET_KEYS keys a request, WRITE_THREADS requests side by side, the keys
        DynamoDB left unprocessed asked again with backoff. Keys given twice are asked once."""
        unique = list({tuple(sorted(k.items())): k for k in keys}.values())
        wire_keys = [{name: {"S": value} for name, value in key.items()} for key in unique]

        def get(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = []
            request: dict[str, Any] = {self.table_name: {"Keys": batch, "ConsistentRead": True}}
            for attempt in range(BATCH_TRIES):
                answer = self.wire.batch_get_item(RequestItems=request)
                found.extend(answer.get("Responses", {}).get(self.table_name, []))
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    return found
                _backoff(attempt)
            raise BatchUnprocessed("DynamoDB left keys of a BatchGetItem unprocessed; try again")

        slices = [wire_keys[i : i + BATCH_GET_KEYS] for i in range(0, len(wire_keys), BATCH_GET_KEYS)]
        return [
            _plain({name: _from_wire(value) for name, value in item.items()})
            for page in _parallel(get, slices)
            for item in page
        ]

    def _batch_put(self, items: Sequence[Mapping[str, Any]]) -> None:
        """Put these items (values as the Table resource takes them), no condition: BatchWriteItem,
        BATCH_WRITE_ITEMS a request, WRITE_THREADS requests side by side, what DynamoDB left
        unprocessed sent again with backoff. Two items of one key in a call are refused by DynamoDB."""
        wire_items = [{"PutRequest": {"Item": {k: _to_wire(v) for k, v in item.items()}}} for item in items]

        def put(batch: list[dict[str, Any]]) -> None:
            request: dict[str, Any] = {self.table_name: batch}
            for attempt in range(BATCH_TRIES):
                answer = self.wire.batch_write_item(RequestItems=request)
                request = answer.get("UnprocessedItems") or {}
                if not request:
                    return
                _backoff(attempt)
            raise BatchUnprocessed("DynamoDB left items of a BatchWriteItem unprocessed; try again")

        _parallel(put, [wire_items[i : i + BATCH_WRITE_ITEMS] for i in range(0, len(wire_items), BATCH_WRITE_ITEMS)])

    def _put_new(self, item: dict[str, Any]) -> bool:
        """Put unless an item with the same key exists; False when it did."""
        try:
            self.table.put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return False
            raise
        return True

    def _update_if(self, **kwargs: Any) -> dict[str, Any] | None:
        """An UpdateItem with a ConditionExpression: the item as it is now (plain), or None when the
        condition failed."""
        try:
            answer = self.table.update_item(**kwargs, ReturnValues="ALL_NEW")
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return None
            raise
        item: dict[str, Any] = _plain(answer["Attributes"])
        return item

    def _query_all(self, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
        """Every item a Query finds, page after page, as plain Python values."""
        found: list[dict[str, Any]] = []
        while True:
            page = self.table.query(**kwargs)
            found.extend(_plain(i) for i in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return found
            kwargs = {**kwargs, "ExclusiveStartKey": page["LastEvaluatedKey"]}

    def _get(self, pk: str, sk: str, *, consistent: bool = False) -> dict[str, Any] | None:
        item = self.table.get_item(Key={"pk": pk, "sk": sk}, ConsistentRead=consistent).get("Item")
        return _plain(item) if item else None

    def _query_gsi(self, gsi1pk: str, *, forward: bool = True, limit: int | None = None) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "IndexName": GSI1,
            "KeyConditionExpression": Key("gsi1pk").eq(gsi1pk),
            "ScanIndexForward": forward,
        }
        while True:
            if limit:
                kwargs["Limit"] = limit
            page = self.table.query(**kwargs)
            for item in page.get("Items", []):
                yield _plain(item)
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    @staticmethod
    def _strip(item: dict[str, Any]) -> dict[str, Any]:
        return {
            k: v
            for k, v in item.items()
            if k not in {"pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk", "expiresAt", "type"}
        }

    def _query_page(
        self, kwargs: dict[str, Any], limit: int, next_token: str | None, *, keys: tuple[str, ...] = GSI1_KEYS
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a Query (of gsi1 unless `keys` says the table's own key) of at most `limit`
        items that pass its filter, and the token of the next page (None on the last). Filtered-out
        items make DynamoDB return short pages, so this reads on until the page is full; the token
        is the key of the last item returned."""
        kwargs = {**kwargs, "Limit": limit}
        if next_token:
            kwargs["ExclusiveStartKey"] = decode_page_token(next_token, keys)
        found: list[dict[str, Any]] = []
        while True:
            page = self.table.query(**kwargs)
            items = page.get("Items", [])
            need = limit - len(found)
            found.extend(items[:need])
            if len(found) >= limit:
                more = len(items) > need or "LastEvaluatedKey" in page
                last = found[-1]
                token = encode_page_token({k: last[k] for k in keys}) if more else None
                return found, token
            if "LastEvaluatedKey" not in page:
                return found, None
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

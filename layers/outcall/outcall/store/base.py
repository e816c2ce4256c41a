"""The table and the primitives every kind of item uses; see outcall.store for the key design."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import boto3
from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from outcall.config import Config
from outcall.errors import Unprocessable

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
    def __init__(self, table_name: str | None = None, *, resource: Any = None) -> None:
        self.table_name = table_name or Config.from_env().table_name
        self._resource = resource
        self._table: Any = None

    @property
    def table(self) -> Any:
        if self._table is None:
            resource = self._resource or boto3.resource("dynamodb")
            self._table = resource.Table(self.table_name)
        return self._table

    # ------------------------------------------------------------ primitives
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

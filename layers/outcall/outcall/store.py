"""The only code that talks to DynamoDB.

One table, keys `pk`/`sk`, one GSI (`gsi1pk`/`gsi1sk`) and a TTL attribute `expiresAt`:

| item          | pk                  | sk                  | gsi1pk        | gsi1sk                |
|---------------|---------------------|---------------------|---------------|-----------------------|
| API token     | TOKEN#<sha256>      | TOKEN               | TOKENS        | <createdAt>#<name>    |
| import job    | IMPORT#<importId>   | IMPORT              | TASK#<taskId> | IMPORT#<createdAt>    |

Later capabilities add their items here, in this module, with the same conventions.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

import boto3
from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from outcall.config import Config
from outcall.models import ApiToken, ImportJob

GSI1 = "gsi1"


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


def _is_conditional_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class Store:
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
        return {k: v for k, v in item.items() if k not in {"pk", "sk", "gsi1pk", "gsi1sk", "expiresAt", "type"}}

    # ------------------------------------------------------------ API tokens
    def put_token(self, token: ApiToken) -> bool:
        item = {
            "pk": f"TOKEN#{token.token_hash}",
            "sk": "TOKEN",
            "type": "token",
            "gsi1pk": "TOKENS",
            "gsi1sk": f"{token.created_at.isoformat()}#{token.name}",
            **token.model_dump(mode="json", by_alias=True),
        }
        return self._put_new(item)

    def get_token(self, token_hash: str) -> ApiToken | None:
        item = self._get(f"TOKEN#{token_hash}", "TOKEN")
        return ApiToken.model_validate(self._strip(item)) if item else None

    def list_tokens(self) -> list[ApiToken]:
        return [ApiToken.model_validate(self._strip(i)) for i in self._query_gsi("TOKENS")]

    def delete_token(self, token_hash: str) -> bool:
        try:
            self.table.delete_item(
                Key={"pk": f"TOKEN#{token_hash}", "sk": "TOKEN"}, ConditionExpression="attribute_exists(pk)"
            )
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return False
            raise
        return True

    # ------------------------------------------------------------ import jobs
    def create_import(self, job: ImportJob) -> bool:
        """Store a new import job; False when one with this id exists (a redelivered S3 event)."""
        item = {
            "pk": f"IMPORT#{job.import_id}",
            "sk": "IMPORT",
            "type": "import",
            "gsi1pk": f"TASK#{job.task_id}",
            "gsi1sk": f"IMPORT#{job.created_at.isoformat()}",
            **job.model_dump(mode="json", by_alias=True, exclude_none=True),
        }
        return self._put_new(item)

    def get_import(self, import_id: str) -> ImportJob | None:
        item = self._get(f"IMPORT#{import_id}", "IMPORT", consistent=True)
        return ImportJob.model_validate(self._strip(item)) if item else None


@lru_cache(maxsize=1)
def default_store() -> Store:
    """The store of this Lambda environment (one per process, reused across invocations)."""
    return Store()

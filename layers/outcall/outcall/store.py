"""The only code that talks to DynamoDB.

One table, keys `pk`/`sk`, one GSI (`gsi1pk`/`gsi1sk`) and a TTL attribute `expiresAt`:

| item          | pk                  | sk                  | gsi1pk        | gsi1sk                |
|---------------|---------------------|---------------------|---------------|-----------------------|
| API token     | TOKEN#<sha256>      | TOKEN               | TOKENS        | <createdAt>#<name>    |
| import job    | IMPORT#<importId>   | IMPORT              | TASK#<taskId> | IMPORT#<createdAt>    |
| task          | TASK#<taskId>       | TASK                | TASKS         | <createdAt>#<taskId>  |
| task counts   | TASK#<taskId>       | COUNTS              | -             | -                     |
| task counter  | PROVIDER#<provider> | TASKCOUNT           | -             | -                     |

Later capabilities add their items here, in this module, with the same conventions.

Tasks. `GET /tasks` is one Query of gsi1 `TASKS` (newest first) with the status, provider and
name-prefix filters as a FilterExpression; pages are cut at `limit` items and the next page
starts after the last item returned (`nextToken` is that key, base64 JSON). A deployment holds
at most 100 tasks per provider account, so the one `TASKS` partition stays small. A task item
carries `version` (bumped by every write, checked by every conditional write) and, while an
operation is at its provider, `pending` (`create`, `start`, `pause`, `stop`, `update`, `delete`,
...) and `pendingAt`: claiming an operation is a conditional update that only one caller wins;
a claim older than PENDING_STALE_SECONDS (a crashed caller) may be taken over. The task counter
of a provider is updated in the same transaction that puts or deletes a task, conditioned on
staying under the limit. The counts item (`contacts.<status>`, `calls.<outcome>`) is kept current
by the writers of contacts and calls (`add_task_counts`); reading a task is one Query of its
partition, which returns the task and its counts together.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

import boto3
from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from outcall.config import Config
from outcall.errors import Unprocessable
from outcall.models import ApiToken, ImportJob, Task

GSI1 = "gsi1"
TASKS_GSI_PK = "TASKS"
PENDING_STALE_SECONDS = 120
_TASK_INTERNAL = {"pk", "sk", "gsi1pk", "gsi1sk", "entity", "pending", "pendingAt"}


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

    # ------------------------------------------------------------ tasks
    @staticmethod
    def _task_key(task_id: str) -> dict[str, str]:
        return {"pk": f"TASK#{task_id}", "sk": "TASK"}

    @staticmethod
    def _counter_key(provider: str) -> dict[str, str]:
        return {"pk": f"PROVIDER#{provider}", "sk": "TASKCOUNT"}

    @staticmethod
    def task_from_item(item: Mapping[str, Any]) -> Task:
        return Task.model_validate({k: v for k, v in _plain(dict(item)).items() if k not in _TASK_INTERNAL})

    def _task_item(self, task: Task, pending: str | None) -> dict[str, Any]:
        item: dict[str, Any] = {
            **self._task_key(task.task_id),
            "entity": "task",
            "gsi1pk": TASKS_GSI_PK,
            "gsi1sk": f"{task.created_at.isoformat()}#{task.task_id}",
            **task.model_dump(mode="json", by_alias=True, exclude_none=True),
        }
        if pending:
            item["pending"] = pending
            item["pendingAt"] = utcnow().isoformat()
        return item

    def create_task(self, task: Task, *, max_tasks: int, pending: str | None = "create") -> bool:
        """Put a new task and count it against its provider in one transaction; False when the
        provider account already holds `max_tasks` tasks (nothing is written then)."""
        counter_update = {
            "TableName": self.table_name,
            "Key": self._counter_key(task.provider),
            "UpdateExpression": "ADD tasks :one",
            "ConditionExpression": "attribute_not_exists(tasks) OR tasks < :max",
            "ExpressionAttributeValues": {":one": 1, ":max": max_tasks},
        }
        put = {
            "TableName": self.table_name,
            "Item": _dynamo(self._task_item(task, pending)),
            "ConditionExpression": "attribute_not_exists(pk)",
        }
        try:
            self.table.meta.client.transact_write_items(TransactItems=[{"Put": put}, {"Update": counter_update}])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            reasons = exc.response.get("CancellationReasons") or []
            if len(reasons) > 1 and reasons[1].get("Code") == "ConditionalCheckFailed":
                return False
            if self.task_count(task.provider) >= max_tasks:
                return False
            raise
        return True

    def delete_task(self, task: Task) -> bool:
        """Delete a task and uncount it in one transaction; False when it was already gone."""
        try:
            self.table.meta.client.transact_write_items(
                TransactItems=[
                    {
                        "Delete": {
                            "TableName": self.table_name,
                            "Key": self._task_key(task.task_id),
                            "ConditionExpression": "attribute_exists(pk)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self.table_name,
                            "Key": self._counter_key(task.provider),
                            "UpdateExpression": "ADD tasks :minus",
                            "ExpressionAttributeValues": {":minus": -1},
                        }
                    },
                ]
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "TransactionCanceledException":
                return False
            raise
        self.table.delete_item(Key={"pk": f"TASK#{task.task_id}", "sk": "COUNTS"})
        return True

    def task_count(self, provider: str) -> int:
        item = self._get(**self._counter_key(provider), consistent=True)
        return int(item.get("tasks", 0)) if item else 0

    def get_task(self, task_id: str) -> Task | None:
        item = self._get(**self._task_key(task_id), consistent=True)
        return self.task_from_item(item) if item else None

    def get_task_with_counts(self, task_id: str) -> tuple[Task, dict[str, Any]] | None:
        """The task and its counts item in one Query of the task's partition."""
        page = self.table.query(KeyConditionExpression=Key("pk").eq(f"TASK#{task_id}"), ConsistentRead=True)
        items = {i["sk"]: _plain(i) for i in page.get("Items", [])}
        if "TASK" not in items:
            return None
        counts: dict[str, dict[str, Any]] = {"contacts": {}, "calls": {}}
        for attr, value in items.get("COUNTS", {}).items():
            group, _, key = attr.partition(".")
            if group in counts and key:
                counts[group][key] = value
        return self.task_from_item(items["TASK"]), counts

    def add_task_counts(
        self, task_id: str, *, contacts: Mapping[str, int] | None = None, calls: Mapping[str, int] | None = None
    ) -> None:
        """Add to a task's aggregates (the writers of contacts and calls keep them current).
        Each count is a flat attribute `contacts.<status>` / `calls.<outcome>` (a literal name)."""
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        for group, deltas in (("contacts", contacts or {}), ("calls", calls or {})):
            for key, delta in deltas.items():
                i = len(names)
                names[f"#n{i}"] = f"{group}.{key}"
                values[f":d{i}"] = delta
        if not names:
            return
        self.table.update_item(
            Key={"pk": f"TASK#{task_id}", "sk": "COUNTS"},
            UpdateExpression="ADD " + ", ".join(f"{n} :d{n[2:]}" for n in names),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    @staticmethod
    def _stale_before() -> str:
        return (utcnow() - timedelta(seconds=PENDING_STALE_SECONDS)).isoformat()

    def claim_task(self, task_id: str, version: int, operation: str) -> Task | None:
        """Mark `operation` as under way on the task at `version`; None when another writer got
        there first (the version moved on, or another operation is under way)."""
        try:
            answer = self.table.update_item(
                Key=self._task_key(task_id),
                UpdateExpression="SET #pending = :op, pendingAt = :now, version = version + :one",
                ConditionExpression=("version = :v AND (attribute_not_exists(#pending) OR pendingAt < :stale)"),
                ExpressionAttributeNames={"#pending": "pending"},
                ExpressionAttributeValues={
                    ":op": operation,
                    ":now": utcnow().isoformat(),
                    ":one": 1,
                    ":v": version,
                    ":stale": self._stale_before(),
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return None
            raise
        return self.task_from_item(answer["Attributes"])

    def finish_task(self, task_id: str, version: int, changes: Mapping[str, Any]) -> Task:
        """End the operation claimed at `version`: write `changes` (camelCase attributes, None
        removes one), bump the version and clear the claim."""
        names: dict[str, str] = {"#pending": "pending"}
        values: dict[str, Any] = {":v": version, ":one": 1}
        sets = ["version = version + :one"]
        removes = ["#pending", "pendingAt"]
        for i, (attr, value) in enumerate(changes.items()):
            names[f"#a{i}"] = attr
            if value is None:
                removes.append(f"#a{i}")
            else:
                values[f":a{i}"] = _dynamo(value)
                sets.append(f"#a{i} = :a{i}")
        answer = self.table.update_item(
            Key=self._task_key(task_id),
            UpdateExpression=f"SET {', '.join(sets)} REMOVE {', '.join(removes)}",
            ConditionExpression="version = :v",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW",
        )
        return self.task_from_item(answer["Attributes"])

    def release_task(self, task_id: str, version: int) -> None:
        """Give up the operation claimed at `version` and leave the task as it was."""
        try:
            self.table.update_item(
                Key=self._task_key(task_id),
                UpdateExpression="REMOVE #pending, pendingAt",
                ConditionExpression="version = :v",
                ExpressionAttributeNames={"#pending": "pending"},
                ExpressionAttributeValues={":v": version},
            )
        except ClientError as exc:
            if not _is_conditional_failure(exc):
                raise

    def list_tasks(
        self,
        *,
        status: str | None = None,
        provider: str | None = None,
        name_prefix: str | None = None,
        limit: int = 50,
        next_token: str | None = None,
        oldest_first: bool = False,
    ) -> tuple[list[Task], str | None]:
        """One page of tasks (newest first) and the token of the next page, if any."""
        filters: list[str] = ["attribute_not_exists(#pending) OR #pending <> :creating"]
        names: dict[str, str] = {"#pending": "pending"}
        values: dict[str, Any] = {":creating": "create"}
        for attr, op, value in (("status", "=", status), ("provider", "=", provider), ("name", "^", name_prefix)):
            if value is None:
                continue
            names[f"#{attr}"] = attr
            values[f":{attr}"] = value
            filters.append(f"begins_with(#{attr}, :{attr})" if op == "^" else f"#{attr} = :{attr}")
        kwargs: dict[str, Any] = {
            "IndexName": GSI1,
            "KeyConditionExpression": Key("gsi1pk").eq(TASKS_GSI_PK),
            "FilterExpression": " AND ".join(f"({f})" for f in filters),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": oldest_first,
            "Limit": limit,
        }
        if next_token:
            kwargs["ExclusiveStartKey"] = decode_page_token(next_token)
        found: list[dict[str, Any]] = []
        while True:
            page = self.table.query(**kwargs)
            items = page.get("Items", [])
            need = limit - len(found)
            found.extend(items[:need])
            if len(found) >= limit:
                last = found[-1]
                more = len(items) > need or "LastEvaluatedKey" in page
                token = encode_page_token({k: last[k] for k in ("pk", "sk", "gsi1pk", "gsi1sk")}) if more else None
                return [self.task_from_item(i) for i in found], token
            if "LastEvaluatedKey" not in page:
                return [self.task_from_item(i) for i in found], None
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def encode_page_token(key: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(dict(key), separators=(",", ":")).encode()).decode()


def decode_page_token(token: str) -> dict[str, Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise Unprocessable("nextToken is not a token this API gave out") from exc
    if not isinstance(key, dict) or set(key) != {"pk", "sk", "gsi1pk", "gsi1sk"}:
        raise Unprocessable("nextToken is not a token this API gave out")
    return key


@lru_cache(maxsize=1)
def default_store() -> Store:
    """The store of this Lambda environment (one per process, reused across invocations)."""
    return Store()

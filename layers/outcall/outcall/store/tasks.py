"""Task items, their counts and the per-provider task counters."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from outcall.models import Task
from outcall.store.base import (
    GSI1,
    StoreBase,
    _dynamo,
    _is_conditional_failure,
    _plain,
    update_expression,
    utcnow,
)
from outcall.store.imports import task_counts_update

TASKS_GSI_PK = "TASKS"
PENDING_STALE_SECONDS = 120
_TASK_INTERNAL = {"pk", "sk", "gsi1pk", "gsi1sk", "entity", "pending", "pendingAt"}


class TaskItems(StoreBase):
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
        """Delete a task, uncount it and give its numbers back to the provider account, in one
        transaction; False when it was already gone."""
        counts = self._get(f"TASK#{task.task_id}", "COUNTS", consistent=True) or {}
        items: list[dict[str, Any]] = [
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
        if counts.get("numbersUsed"):
            items.append(
                {
                    "Update": {
                        "TableName": self.table_name,
                        "Key": {"pk": f"PROVIDER#{task.provider}", "sk": "NUMBERS"},
                        "UpdateExpression": "ADD numbers :minus",
                        "ExpressionAttributeValues": {":minus": -int(counts["numbersUsed"])},
                    }
                }
            )
        try:
            self.table.meta.client.transact_write_items(TransactItems=items)
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
        counts: dict[str, dict[str, Any]] = {"contacts": {}, "calls": {}, "outcomes": {}}
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
        deltas = {f"contacts.{k}": v for k, v in (contacts or {}).items()}
        deltas |= {f"calls.{k}": v for k, v in (calls or {}).items()}
        update = task_counts_update(self.table_name, task_id, deltas)
        if update is not None:
            self.table.meta.client.update_item(**update)

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
        expression = update_expression(changes, names, values, ["version = version + :one"], ["#pending", "pendingAt"])
        answer = self.table.update_item(
            Key=self._task_key(task_id),
            UpdateExpression=expression,
            ConditionExpression="version = :v",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW",
        )
        return self.task_from_item(answer["Attributes"])

    def set_task_fields(self, task_id: str, changes: Mapping[str, Any]) -> Task | None:
        """Write fields that no claim guards (what the provider was told, and its answer); None when
        the task is gone."""
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        expression = update_expression({**changes, "updatedAt": utcnow().isoformat()}, names, values, [], [])
        try:
            answer = self.table.update_item(
                Key=self._task_key(task_id),
                UpdateExpression=expression,
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return None
            raise
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
        }
        found, token = self._query_page(kwargs, limit, next_token)
        return [self.task_from_item(i) for i in found], token

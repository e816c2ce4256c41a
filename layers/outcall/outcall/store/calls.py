"""Call results: raw provider pushes, call records, their event history, the provider-task-id
lookup and the pollers' cursors (keys in the table of outcall.store)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from outcall.store.base import (
    GSI1,
    StoreBase,
    _dynamo,
    _is_conditional_failure,
    _plain,
    utcnow,
)

PUSH_TTL_SECONDS = 30 * 24 * 3600
_CALL_INTERNAL = {"pk", "sk", "gsi1pk", "gsi1sk", "entity", "expiresAt"}


def calls_pk(task_id: str | None, provider: str, provider_task_id: str | None) -> str:
    """The partition of a task's calls; calls of no known task are kept per provider task id."""
    if task_id:
        return f"CALLS#{task_id}"
    return f"CALLS#-{provider}#{provider_task_id or '-'}"


class CallItems(StoreBase):
    # ------------------------------------------------------------ raw pushes
    def put_push(self, item: Mapping[str, Any]) -> bool:
        """Keep a verified push once: False when a push with the same id is already kept."""
        now = utcnow()
        return self._put_new(
            {
                "pk": f"PUSH#{item['pushId']}",
                "sk": "PUSH",
                "entity": "push",
                **item,
                "expiresAt": int(now.timestamp()) + PUSH_TTL_SECONDS,
            }
        )

    def get_push(self, push_id: str) -> dict[str, Any] | None:
        item = self._get(f"PUSH#{push_id}", "PUSH", consistent=True)
        return self._strip(item) if item else None

    def mark_push(self, push_id: str, attr: str) -> None:
        """Stamp a push with the time of a step (`queuedAt`, `processedAt`)."""
        self.table.update_item(
            Key={"pk": f"PUSH#{push_id}", "sk": "PUSH"},
            UpdateExpression="SET #a = :now",
            ExpressionAttributeNames={"#a": attr},
            ExpressionAttributeValues={":now": utcnow().isoformat()},
        )

    # ------------------------------------------------------------ provider task id -> task
    def task_id_for(self, provider: str, provider_task_id: str) -> str | None:
        """The task that has this provider task id. A mapping item answers after the first
        lookup; the first one is a Query of the (small, bounded) TASKS partition of gsi1."""
        key = {"pk": f"PTASK#{provider}#{provider_task_id}", "sk": "PTASK"}
        item = self._get(key["pk"], key["sk"])
        if item:
            return str(item["taskId"])
        kwargs: dict[str, Any] = {
            "IndexName": GSI1,
            "KeyConditionExpression": Key("gsi1pk").eq("TASKS"),
            "FilterExpression": Attr("provider").eq(provider) & Attr("providerTaskId").eq(provider_task_id),
            "ProjectionExpression": "taskId",
        }
        while True:
            page = self.table.query(**kwargs)
            for found in page.get("Items", []):
                task_id = str(found["taskId"])
                self.table.put_item(Item={**key, "entity": "ptask", "taskId": task_id})
                return task_id
            if "LastEvaluatedKey" not in page:
                return None
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # ------------------------------------------------------------ call records
    def _counts_update(self, task_id: str, status: str) -> dict[str, Any]:
        return {
            "TableName": self.table_name,
            "Key": {"pk": f"TASK#{task_id}", "sk": "COUNTS"},
            "UpdateExpression": "ADD #n :one",
            "ExpressionAttributeNames": {"#n": f"calls.{status}"},
            "ExpressionAttributeValues": {":one": 1},
        }

    def _write(self, action: dict[str, Any], kind: str, count: tuple[str, str] | None) -> bool:
        """One conditional write, in a transaction with the task's counts when `count` is given
        (task id, outcome); False when the condition failed."""
        try:
            if count is None:
                if kind == "Put":
                    self.table.meta.client.put_item(**action)
                else:
                    self.table.meta.client.update_item(**action)
            else:
                self.table.meta.client.transact_write_items(
                    TransactItems=[{kind: action}, {"Update": self._counts_update(*count)}]
                )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code == "TransactionCanceledException":
                reasons = exc.response.get("CancellationReasons") or []
                if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                    return False
                raise
            if _is_conditional_failure(exc):
                return False
            raise
        return True

    def upsert_call(
        self,
        record: Mapping[str, Any],
        *,
        replaces: Sequence[str],
        count_as: str | None,
    ) -> str:
        """Apply one event's view of a call (`record`: camelCase attributes of a CallRecord).

        Creates the record when it is new; otherwise overwrites it only while its stored status
        is one of `replaces` (the caller's rule: a final status is never replaced). When `count_as`
        is given, the task's `calls.<count_as>` count is added in the same transaction, so it is
        counted exactly once. Answers "created", "updated" or "kept" (nothing written)."""
        task_id = record.get("taskId")
        pk = calls_pk(task_id, record["provider"], record.get("providerTaskId"))
        key = {"pk": pk, "sk": f"CALL#{record['recordId']}"}
        count = (str(task_id), count_as) if (count_as and task_id) else None
        client_item = _dynamo(
            {
                **key,
                "entity": "call",
                "gsi1pk": pk,
                "gsi1sk": f"{record['firstSeenAt']}#{record['recordId']}",
                **record,
            }
        )
        put = {"TableName": self.table_name, "Item": client_item, "ConditionExpression": "attribute_not_exists(pk)"}
        if self._write(put, "Put", count):
            return "created"
        names: dict[str, str] = {"#status": "status"}
        values: dict[str, Any] = {}
        sets: list[str] = []
        skip = {"recordId", "firstSeenAt", "taskId", "provider"}
        for i, (attr, value) in enumerate(record.items()):
            if attr in skip or value is None:
                continue
            names[f"#a{i}"] = attr
            values[f":a{i}"] = value
            sets.append(f"#a{i} = :a{i}")
        allowed = [f":s{i}" for i in range(len(replaces))]
        for i, status in enumerate(replaces):
            values[f":s{i}"] = status
        if not allowed:
            return "kept"
        update = {
            "TableName": self.table_name,
            "Key": key,
            "UpdateExpression": "SET " + ", ".join(sets),
            "ConditionExpression": f"attribute_exists(pk) AND #status IN ({', '.join(allowed)})",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": _dynamo(values),
        }
        return "updated" if self._write(update, "Update", count) else "kept"

    def get_call(self, task_id: str | None, provider: str, provider_task_id: str | None, record_id: str) -> Any:
        item = self._get(calls_pk(task_id, provider, provider_task_id), f"CALL#{record_id}", consistent=True)
        return {k: v for k, v in item.items() if k not in _CALL_INTERNAL} if item else None

    def put_call_event(self, pk: str, record_id: str, event_id: str, item: Mapping[str, Any]) -> bool:
        """Keep one event of a call's history; False when that event is already kept."""
        return self._put_new(_dynamo({"pk": pk, "sk": f"EVENT#{record_id}#{event_id}", "entity": "call-event", **item}))

    def call_events(self, pk: str, record_id: str) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key("pk").eq(pk) & Key("sk").begins_with(f"EVENT#{record_id}#"),
            "ConsistentRead": True,
        }
        out: list[dict[str, Any]] = []
        while True:
            page = self.table.query(**kwargs)
            out.extend(_plain(i) for i in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def list_calls(
        self,
        task_id: str,
        *,
        status: str | None = None,
        since: str | None = None,
        limit: int = 50,
        next_token: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a task's call records, oldest first (by first seen), from gsi1 `CALLS#<taskId>`:
        `since` (ISO time) bounds the sort key, `status` is a filter."""
        pk = calls_pk(task_id, "", None)
        condition: Any = Key("gsi1pk").eq(pk)
        if since:
            condition = condition & Key("gsi1sk").gte(since)
        kwargs: dict[str, Any] = {"IndexName": GSI1, "KeyConditionExpression": condition}
        if status:
            kwargs["FilterExpression"] = Attr("status").eq(status)
        found, token = self._query_page(kwargs, limit, next_token)
        return [self._call_item(i) for i in found], token

    @staticmethod
    def _call_item(item: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in _plain(dict(item)).items() if k not in _CALL_INTERNAL}

    # ------------------------------------------------------------ lifecycle pushes
    def put_lifecycle_event(self, item: Mapping[str, Any]) -> bool:
        """A provider's push about a task or meeting as a whole, kept once per dedup key."""
        return self._put_new(
            _dynamo(
                {
                    "pk": f"LIFECYCLE#{item['provider']}#{item.get('providerTaskId') or '-'}",
                    "sk": f"EVENT#{item['dedupKey']}",
                    "entity": "lifecycle-event",
                    **item,
                }
            )
        )

    # ------------------------------------------------------------ poll cursors
    def get_poll_cursor(self, provider: str) -> str | None:
        item = self._get(f"POLL#{provider}", "CURSOR", consistent=True)
        return str(item["cursor"]) if item and item.get("cursor") is not None else None

    def put_poll_cursor(self, provider: str, cursor: str | None) -> None:
        self.table.put_item(
            Item={
                "pk": f"POLL#{provider}",
                "sk": "CURSOR",
                "entity": "poll-cursor",
                "cursor": cursor,
                "updatedAt": utcnow().isoformat(),
            }
        )

"""Do-not-call entries (outcall.dnc): the only DynamoDB code for them.

An entry is `DNC#<list>` / `NUMBER#<e164>`, where `<list>` is `ACCOUNT` (the account-wide list) or
`TASK#<taskId>`. It holds `e164`, `reason`, `source` (api, import, provider-opt-out), `createdAt` and,
when it expires, `expiresAt` (epoch seconds: DynamoDB's TTL deletes it some time later, so every read
also ignores an entry whose `expiresAt` has passed). A list is one partition: `GET /dnc` is a Query of
it, checking numbers is a BatchGetItem (consistent) of their keys on both lists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from boto3.dynamodb.conditions import Key

from outcall.store.base import StoreBase, _dynamo, _plain

ACCOUNT: Final = "ACCOUNT"


def dnc_pk(list_id: str) -> str:
    return f"DNC#{list_id}"


def task_list(task_id: str) -> str:
    return f"TASK#{task_id}"


def _live(item: Mapping[str, Any] | None, now: datetime) -> bool:
    if not item:
        return False
    expires = item.get("expiresAt")
    return expires is None or float(expires) > now.timestamp()


class DncItems(StoreBase):
    def put_dnc(self, list_id: str, entries: Sequence[Mapping[str, Any]]) -> None:
        """Put entries (camelCase, `e164` required) on a list; an entry already there is replaced."""
        pk = dnc_pk(list_id)
        with self.table.batch_writer(overwrite_by_pkeys=["pk", "sk"]) as batch:
            for entry in entries:
                item = {**_dynamo(dict(entry)), "pk": pk, "sk": f"NUMBER#{entry['e164']}", "type": "dnc"}
                batch.put_item(Item={k: v for k, v in item.items() if v is not None})

    def get_dnc(self, list_id: str, e164: str, now: datetime) -> dict[str, Any] | None:
        item = self._get(dnc_pk(list_id), f"NUMBER#{e164}", consistent=True)
        return self._dnc_view(item) if item and _live(item, now) else None

    def delete_dnc(self, list_id: str, e164: str) -> dict[str, Any] | None:
        """Remove an entry; the entry removed, or None when there was none."""
        answer = self.table.delete_item(Key={"pk": dnc_pk(list_id), "sk": f"NUMBER#{e164}"}, ReturnValues="ALL_OLD")
        old = answer.get("Attributes")
        return self._dnc_view(_plain(old)) if old else None

    def list_dnc(
        self, list_id: str, now: datetime, *, limit: int = 100, next_token: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        kwargs: dict[str, Any] = {"KeyConditionExpression": Key("pk").eq(dnc_pk(list_id))}
        found, token = self._query_page(kwargs, limit, next_token, keys=("pk", "sk"))
        return [self._dnc_view(_plain(i)) for i in found if _live(i, now)], token

    def listed_numbers(self, numbers: Sequence[str], task_id: str | None, now: datetime) -> dict[str, dict[str, Any]]:
        """The live entries of these numbers on the account list and the task's list (consistent
        reads); an account entry wins over a task's. Keyed by number."""
        unique = list(dict.fromkeys(numbers))
        lists = [ACCOUNT] + ([task_list(task_id)] if task_id else [])
        keys = [{"pk": dnc_pk(lst), "sk": f"NUMBER#{n}"} for n in unique for lst in lists]
        client = self.table.meta.client
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(keys), 100):
            request: dict[str, Any] = {self.table_name: {"Keys": keys[start : start + 100], "ConsistentRead": True}}
            while request:
                page = client.batch_get_item(RequestItems=request)
                for item in page.get("Responses", {}).get(self.table_name, []):
                    plain = _plain(item)
                    if not _live(plain, now):
                        continue
                    view = self._dnc_view(plain)
                    if view["e164"] not in found or view["scope"] == "account":
                        found[view["e164"]] = view
                request = page.get("UnprocessedKeys") or {}
        return found

    @staticmethod
    def _dnc_view(item: Mapping[str, Any]) -> dict[str, Any]:
        pk = str(item["pk"]).removeprefix("DNC#")
        view = {k: v for k, v in item.items() if k not in {"pk", "sk", "type"}}
        view["scope"] = "account" if pk == ACCOUNT else "task"
        if pk != ACCOUNT:
            view["taskId"] = pk.removeprefix("TASK#")
        return view

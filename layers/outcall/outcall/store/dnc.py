"""Do-not-call entries (outcall.dnc): the only DynamoDB code for them.

An entry is `DNC#<list>` / `NUMBER#<e164>`, where `<list>` is `ACCOUNT` (the account-wide list) or
`TASK#<taskId>`. It holds `e164`, `reason`, `source` (api, import, provider-opt-out), `createdAt` and,
when it expires, `expiresAt` (epoch seconds: DynamoDB's TTL deletes it some time later, so every read
also ignores an entry whose `expiresAt` has passed). A list is one partition: `GET /dnc` is a Query of
it, checking numbers is a BatchGetItem (consistent) of their keys on both lists. An entry listed by an
upload also holds the `importId` of that upload.

A list that has ever held an entry has a marker, `DNCLIST#<list>` / `DNCLIST`, put before its first
entry and never removed: checking numbers reads the markers of the lists first and asks for the
numbers' keys only on lists that have one. Most tasks have no list of their own and many accounts
none either, and an import checks every accepted row: without the markers that was two keys read per
row whatever the lists held. An entry is never visible before its list's marker, so a number on a
list is always looked up.

A do-not-call upload (outcall.dnc_uploads) is `DNCIMPORT#<importId>` / `DNCIMPORT`: the list it fills
(`list`), its file, status and counts, `rowsDone` (the last row whose outcome is stored and counted) and,
while it runs, `runId` (the Lambda request id: its retries have the same) and `leaseUntil` (epoch
seconds; the run renews it at every checkpoint). Its `expiresAt` is the
TTL of the job itself (a waiting ticket a day after its URL expires, a finished import 90 days on); the
expiry of the entries it lists is `entriesExpireAt`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from boto3.dynamodb.conditions import Key

from outcall.store.base import StoreBase, _dynamo, _plain, update_expression

ACCOUNT: Final = "ACCOUNT"
DNC_IMPORT: Final = "DNCIMPORT"


def dnc_pk(list_id: str) -> str:
    return f"DNC#{list_id}"


def dnc_list_key(list_id: str) -> dict[str, str]:
    """The marker of a list that has held an entry (see the module docstring)."""
    return {"pk": f"DNCLIST#{list_id}", "sk": "DNCLIST"}


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
        if entries:  # the marker first: a reader that finds no marker may take the list as empty
            self.table.put_item(Item={**dnc_list_key(list_id), "type": "dnc-list"})
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
        lists = [ACCOUNT] + ([task_list(task_id)] if task_id else [])
        found: dict[str, dict[str, Any]] = {}
        for view in self._live_entries(lists, numbers, now):
            if view["e164"] not in found or view["scope"] == "account":
                found[view["e164"]] = view
        return found

    def dnc_entries(self, list_id: str, numbers: Sequence[str], now: datetime) -> dict[str, dict[str, Any]]:
        """The live entries of these numbers on one list (consistent reads), keyed by number."""
        return {view["e164"]: view for view in self._live_entries([list_id], numbers, now)}

    def _live_entries(self, lists: Sequence[str], numbers: Sequence[str], now: datetime) -> Iterator[dict[str, Any]]:
        if not numbers:
            return
        marked = {str(item["pk"]) for item in self._batch_get([dnc_list_key(lst) for lst in lists])}
        lists = [lst for lst in lists if dnc_list_key(lst)["pk"] in marked]
        keys = [{"pk": dnc_pk(lst), "sk": f"NUMBER#{n}"} for n in dict.fromkeys(numbers) for lst in lists]
        for item in self._batch_get(keys):
            if _live(item, now):
                yield self._dnc_view(item)

    # ------------------------------------------------------------ uploads
    @staticmethod
    def _dnc_import_key(import_id: str) -> dict[str, str]:
        return {"pk": f"{DNC_IMPORT}#{import_id}", "sk": DNC_IMPORT}

    def create_dnc_import(self, job: Mapping[str, Any], *, expires_at: int) -> bool:
        """Put a new upload job (camelCase attributes, `importId` required); False when it exists."""
        item = {**_dynamo(dict(job)), **self._dnc_import_key(str(job["importId"])), "type": "dnc-import"}
        return self._put_new({k: v for k, v in {**item, "expiresAt": expires_at}.items() if v is not None})

    def get_dnc_import(self, import_id: str) -> dict[str, Any] | None:
        item = self._get(**self._dnc_import_key(import_id), consistent=True)
        return self._strip(item) if item else None

    def claim_dnc_import(
        self, import_id: str, key: str, version: str, run_id: str, now: datetime, lease_seconds: int, keep_days: int
    ) -> dict[str, Any] | None:
        """Start (or take over) the run of an upload: a `waiting` job for this object key, or a
        `running` one of this object version whose lease ran out or whose run this is (a retry of
        it). The job as claimed, or None."""
        stamp = int(now.timestamp())
        item = self._update_if(
            Key=self._dnc_import_key(import_id),
            UpdateExpression="SET #s = :running, objectVersion = :v, runId = :run, leaseUntil = :lease, "
            "updatedAt = :now, startedAt = if_not_exists(startedAt, :now), expiresAt = :keep",
            ConditionExpression="objectKey = :key AND (#s = :waiting OR "
            "(#s = :running AND objectVersion = :v AND (leaseUntil < :stamp OR runId = :run)))",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={
                ":running": "running",
                ":waiting": "waiting",
                ":v": version,
                ":run": run_id,
                ":key": key,
                ":lease": stamp + lease_seconds,
                ":stamp": stamp,
                ":now": now.isoformat(),
                ":keep": stamp + keep_days * 86400,
            },
        )
        return self._strip(item) if item else None

    def update_dnc_import(
        self, import_id: str, run_id: str, changes: Mapping[str, Any], now: datetime
    ) -> dict[str, Any] | None:
        """Set attributes (camelCase; None removes one) of an upload while this run holds it; None
        when it does not (another run took it over)."""
        names: dict[str, str] = {"#s": "status"}
        values: dict[str, Any] = {":now": now.isoformat(), ":running": "running", ":run": run_id}
        item = self._update_if(
            Key=self._dnc_import_key(import_id),
            UpdateExpression=update_expression(changes, names, values, ["updatedAt = :now"], []),
            ConditionExpression="#s = :running AND runId = :run",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
        return self._strip(item) if item else None

    @staticmethod
    def _dnc_view(item: Mapping[str, Any]) -> dict[str, Any]:
        pk = str(item["pk"]).removeprefix("DNC#")
        view = {k: v for k, v in item.items() if k not in {"pk", "sk", "type"}}
        view["scope"] = "account" if pk == ACCOUNT else "task"
        if pk != ACCOUNT:
            view["taskId"] = pk.removeprefix("TASK#")
        return view

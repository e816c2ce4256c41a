"""Contact items of a task, and the number counters that keep tasks and accounts under their limits.

A contact is `CONTACTS#<taskId>#<shard>` / `CONTACT#<e164>`: the shard (0..CONTACT_SHARDS-1) is a hash of
the number, so a number has exactly one key in a task. A task holds it once: whoever creates contacts in a
shard holds that shard's writer lease (`TASK#<taskId>` / `WRITER#<shard>`, a conditional put), so the read
of which numbers the shard holds and the batch write of the others see no other creator in between. The
contacts of a task live in their own partitions, not in `TASK#<taskId>` (whose Query stays small), spread
over CONTACT_SHARDS keys so that a large import is not held to one partition key's 1,000 writes per
second, and written by as many writers side by side.

Numbers in use: the task's counts item holds `numbersUsed` and the provider's `PROVIDER#<p>` /
`NUMBERS` item holds `numbers`. An import reserves room for the rows it is about to add with a
conditional ADD on both (one transaction, so neither limit can be overrun by parallel imports), and
gives back what did not end up at the provider once it knows (duplicates, rejections, failures).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from outcall.errors import Conflict
from outcall.models import ContactState
from outcall.store.base import (
    StoreBase,
    _dynamo,
    _is_conditional_failure,
    _plain,
    decode_page_token,
    encode_page_token,
    utcnow,
)

# A task's contacts (and its hopper view) spread over this many partition keys: DynamoDB serves at most
# 1,000 write units per second per partition key, so one task imports at up to 16,000 rows/s. Changing it
# moves every contact of existing tasks: it is part of the key scheme, not a setting.
CONTACT_SHARDS: Final = 16
WRITER_LEASE_SECONDS: Final = 60  # a writer that died frees the task's contacts after this
WRITER_WAIT_SECONDS: Final = 15.0  # how long a writer waits for another (an HTTP request has 30 s)
WRITER_HOLD_CONTACTS: Final = 500  # contacts written per hold of the lease: a waiting writer's turn comes soon
WRITER_POLL_SECONDS: Final = 0.05  # a writer that found none of its shards free tries again after this


class ContactsBusy(Conflict):
    """Another writer holds the task's contacts for longer than a writer waits (409; a chunk's
    message is delivered again)."""


@dataclass(frozen=True, slots=True)
class Claim:
    """The answer to claiming one number for a task.

    `claimed`: this import now holds the number (nobody had it, or its previous holder was rejected
    or failed at the provider: `previous` is that item). Otherwise `previous` is the item that holds
    it; when that item is this very import's row (a chunk worked again), the number is still ours.
    """

    e164: str
    claimed: bool
    previous: dict[str, Any] | None

    def held_by(self, import_id: str, row: int) -> bool:
        return bool(self.previous) and self.previous.get("importId") == import_id and self.previous.get("row") == row  # type: ignore[union-attr]


def contact_shard(e164: str) -> int:
    """The shard of a task's contacts that holds a number: fixed by the number alone, so a number has
    one item per task whichever import or worker writes it."""
    return int.from_bytes(hashlib.blake2b(e164.encode(), digest_size=4).digest()) % CONTACT_SHARDS


def contacts_pk(task_id: str, shard: int) -> str:
    return f"CONTACTS#{task_id}#{shard:02d}"


def contact_key(task_id: str, e164: str) -> dict[str, str]:
    return {"pk": contacts_pk(task_id, contact_shard(e164)), "sk": f"CONTACT#{e164}"}


def writer_key(task_id: str, shard: int) -> dict[str, str]:
    """The lease of whoever creates contacts in this shard of the task (store.claim_contacts)."""
    return {"pk": f"TASK#{task_id}", "sk": f"WRITER#{shard:02d}"}


def _turns(contacts: Sequence[Mapping[str, Any]]) -> dict[int, list[list[int]]]:
    """The positions of the contacts by shard, cut into holds of WRITER_HOLD_CONTACTS, in call order
    within a shard (so the first of a number given twice is the one claimed)."""
    by_shard: dict[int, list[int]] = {}
    for i, contact in enumerate(contacts):
        by_shard.setdefault(contact_shard(str(contact["e164"])), []).append(i)
    return {
        shard: [rows[j : j + WRITER_HOLD_CONTACTS] for j in range(0, len(rows), WRITER_HOLD_CONTACTS)]
        for shard, rows in by_shard.items()
    }


def shard_of_pk(pk: str) -> int:
    return int(pk.rsplit("#", 1)[1])


def hopper_pk(task_id: str, e164: str) -> str:
    """The hopper view of a queued contact, sharded like the contact itself."""
    return hopper_shard_pk(task_id, contact_shard(e164))


def hopper_shard_pk(task_id: str, shard: int) -> str:
    return f"HOPPER#{task_id}#{shard:02d}"


def hopper_sk(due_at: str, e164: str) -> str:
    return f"{due_at}#{e164}"


def inflight_pk(provider: str) -> str:
    return f"INFLIGHT#{provider}"


def inflight_sk(task_id: str, e164: str) -> str:
    return f"{task_id}#{e164}"


class ContactItems(StoreBase):
    @staticmethod
    def _numbers_key(provider: str) -> dict[str, str]:
        return {"pk": f"PROVIDER#{provider}", "sk": "NUMBERS"}

    @staticmethod
    def _counts_key(task_id: str) -> dict[str, str]:
        return {"pk": f"TASK#{task_id}", "sk": "COUNTS"}

    # ------------------------------------------------------------ contacts
    def claim_contacts(self, task_id: str, contacts: Sequence[Mapping[str, Any]]) -> list[Claim]:
        """Put each contact (camelCase attributes, `e164` required) queued in the task's hopper, unless
        the task holds its number already; one Claim per contact, in order. A contact that was skipped
        (the provider refused it) is taken over.

        One writer per shard of a task at a time (a lease on TASK#<taskId>/WRITER#<shard> that every
        creator of the shard's contacts takes): it reads which of the shard's numbers the task holds
        (BatchGetItem, strongly consistent) and writes the others (BatchWriteItem,
        StoreBase._batch_put). Nobody else creates a contact in that shard meanwhile and the dispatcher
        only moves contacts that exist, so a number is written once without a condition per item: one
        write unit per accepted row, a twenty-fifth of the requests.

        A call holds one shard at a time, for at most WRITER_HOLD_CONTACTS contacts, and never waits
        while it holds one, so writers cannot deadlock; it takes whichever of its shards is free,
        starting at a random one, so the chunks of an upload write side by side on different shards
        and a JSON request gets its turn between them. A call that finds none of its shards free for
        WRITER_WAIT_SECONDS raises ContactsBusy (what it wrote so far stays: a retry finds it)."""
        turns = _turns(contacts)
        now = utcnow().isoformat()  # one time for the call: its contacts come due together, by number
        claims: list[Claim | None] = [None] * len(contacts)
        order = sorted(turns)
        offset = secrets.randbelow(len(order)) if order else 0
        order = order[offset:] + order[:offset]
        deadline = time.monotonic() + WRITER_WAIT_SECONDS
        while order:
            waited = True
            for shard in list(order):
                owner = self._take_writer(task_id, shard)
                if owner is None:
                    continue
                waited = False
                try:
                    rows = turns[shard].pop(0)
                    for i, claim in zip(rows, self._claim_some(task_id, [contacts[i] for i in rows], now), strict=True):
                        claims[i] = claim
                finally:
                    self._drop_writer(task_id, shard, owner)
                if not turns[shard]:
                    order.remove(shard)
                deadline = time.monotonic() + WRITER_WAIT_SECONDS
            if waited:  # every shard it still needs is held by another writer
                if time.monotonic() > deadline:
                    raise ContactsBusy(f"another import is writing the contacts of task {task_id}; try again")
                time.sleep(WRITER_POLL_SECONDS)
        return [c for c in claims if c is not None]

    def _claim_some(self, task_id: str, contacts: Sequence[Mapping[str, Any]], now: str) -> list[Claim]:
        """Claim these contacts of one shard, due `now`; the caller holds the shard's writer lease."""
        held = self._held(task_id, [str(c["e164"]) for c in contacts])
        claims: list[Claim] = []
        items: list[dict[str, Any]] = []
        for contact in contacts:
            e164 = str(contact["e164"])
            previous = held.get(e164)
            if previous is not None and previous.get("state") != ContactState.SKIPPED:
                claims.append(Claim(e164, False, previous))
                continue
            item = _dynamo(
                {
                    **dict(contact),
                    **contact_key(task_id, e164),
                    "type": "contact",
                    "taskId": task_id,
                    "state": str(ContactState.QUEUED),
                    "attempts": 0,
                    "outcomeCounts": {},
                    "dueAt": now,
                    "gsi1pk": hopper_pk(task_id, e164),
                    "gsi1sk": hopper_sk(now, e164),
                    "createdAt": now,
                    "updatedAt": now,
                }
            )
            items.append({k: v for k, v in item.items() if v is not None})
            held[e164] = _plain(items[-1])  # the same number twice in one call: the first has it
            claims.append(Claim(e164, True, previous))
        self._batch_put(items)
        return claims

    def _take_writer(self, task_id: str, shard: int) -> str | None:
        """Take the shard's contact-writer lease if it is free (or its holder died: the lease ran
        out); the owner token to drop it with, or None when another writer holds it."""
        owner = secrets.token_hex(8)
        now = utcnow()
        try:
            self.table.put_item(
                Item={
                    **writer_key(task_id, shard),
                    "owner": owner,
                    "leaseUntil": (now + timedelta(seconds=WRITER_LEASE_SECONDS)).isoformat(),
                },
                ConditionExpression="attribute_not_exists(pk) OR leaseUntil < :now",
                ExpressionAttributeValues={":now": now.isoformat()},
            )
        except ClientError as exc:
            if not _is_conditional_failure(exc):
                raise
            return None
        return owner

    def _drop_writer(self, task_id: str, shard: int, owner: str) -> None:
        try:
            self.table.delete_item(
                Key=writer_key(task_id, shard),
                ConditionExpression="#owner = :me",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":me": owner},
            )
        except ClientError as exc:
            if not _is_conditional_failure(exc):  # expired and taken by the next writer: theirs now
                raise

    def _held(self, task_id: str, numbers: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The task's contacts of these numbers, by number (strongly consistent)."""
        return {str(item["e164"]): item for item in self._batch_get([contact_key(task_id, n) for n in numbers])}

    def get_contact(self, task_id: str, e164: str) -> dict[str, Any] | None:
        key = contact_key(task_id, e164)
        item = self._get(key["pk"], key["sk"], consistent=True)
        return self._strip(item) if item else None

    def list_contacts(
        self, task_id: str, *, status: str | None = None, limit: int = 100, next_token: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a task's contacts and the token of the next page. The pages go through the task's
        shards in turn (by number within a shard): every contact once, in an order that does not change
        between pages. The token is the key of the last contact returned, its shard included."""
        start = decode_page_token(next_token, ("pk", "sk")) if next_token else None
        first = shard_of_pk(str(start["pk"])) if start else 0
        found: list[dict[str, Any]] = []
        for shard in range(first, CONTACT_SHARDS):
            kwargs: dict[str, Any] = {
                "KeyConditionExpression": Key("pk").eq(contacts_pk(task_id, shard)) & Key("sk").begins_with("CONTACT#"),
            }
            if status:
                kwargs["FilterExpression"] = Attr("state").eq(status)
            token = next_token if shard == first and start else None
            page, more = self._query_page(kwargs, limit - len(found), token, keys=("pk", "sk"))
            found.extend(page)
            if more is not None:
                return [self._strip(_plain(i)) for i in found], more
            if len(found) >= limit:  # this shard ended with the page: the next page starts after it
                last = found[-1]
                rest = shard + 1 < CONTACT_SHARDS
                return [self._strip(_plain(i)) for i in found], (
                    encode_page_token({"pk": last["pk"], "sk": last["sk"]}) if rest else None
                )
        return [self._strip(_plain(i)) for i in found], None

    def iter_contacts(self, task_id: str, *, status: str | None = None) -> Iterator[dict[str, Any]]:
        """Every contact of a task, page by page (for copying a task's contacts)."""
        token: str | None = None
        while True:
            page, token = self.list_contacts(task_id, status=status, limit=1000, next_token=token)
            yield from page
            if token is None:
                return

    # ------------------------------------------------------------ numbers in use
    def numbers_used(self, task_id: str, provider: str) -> tuple[int, int]:
        """(numbers the task uses, numbers the provider account uses), as counted here."""
        task = self._get(**self._counts_key(task_id), consistent=True) or {}
        account = self._get(**self._numbers_key(provider), consistent=True) or {}
        return int(task.get("numbersUsed", 0)), int(account.get("numbers", 0))

    def reserve_numbers(
        self,
        task_id: str,
        provider: str,
        count: int,
        *,
        max_per_task: int | None,
        max_per_account: int | None,
        marker: Mapping[str, Any] | None = None,
    ) -> str:
        """Count `count` more numbers against the task and its provider account, unless that would
        pass a limit. `marker` (an item put only if absent in the same transaction) makes the
        reservation happen once however often it is asked for.

        Returns "reserved", "already" (the marker exists), "task-limit" or "account-limit"."""
        items: list[dict[str, Any]] = []
        for key, attr, limit in (
            (self._counts_key(task_id), "numbersUsed", max_per_task),
            (self._numbers_key(provider), "numbers", max_per_account),
        ):
            update: dict[str, Any] = {
                "TableName": self.table_name,
                "Key": key,
                "UpdateExpression": "ADD #n :count",
                "ExpressionAttributeNames": {"#n": attr},
                "ExpressionAttributeValues": {":count": count},
            }
            if limit is not None:
                update["ConditionExpression"] = "attribute_not_exists(#n) OR #n <= :room"
                update["ExpressionAttributeValues"][":room"] = limit - count
            items.append({"Update": update})
        if marker is not None:
            put = {
                "TableName": self.table_name,
                "Item": _dynamo(dict(marker)),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
            items.append({"Put": put})
        if max_per_task is not None and count > max_per_task:
            return "task-limit"
        try:
            self.table.meta.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            codes = [r.get("Code") for r in exc.response.get("CancellationReasons") or []]
            if len(codes) > 2 and codes[2] == "ConditionalCheckFailed":
                return "already"
            if codes and codes[0] == "ConditionalCheckFailed":
                return "task-limit"
            if len(codes) > 1 and codes[1] == "ConditionalCheckFailed":
                return "account-limit"
            raise
        return "reserved"

    def account_numbers_update(self, provider: str, delta: int) -> dict[str, Any] | None:
        """The transaction item that adds `delta` to the numbers a provider account uses (the task's
        share, `numbersUsed`, goes with the task's other counts: see task_counts_update)."""
        if not delta:
            return None
        return {
            "Update": {
                "TableName": self.table_name,
                "Key": self._numbers_key(provider),
                "UpdateExpression": "ADD #n :delta",
                "ExpressionAttributeNames": {"#n": "numbers"},
                "ExpressionAttributeValues": {":delta": delta},
            }
        }

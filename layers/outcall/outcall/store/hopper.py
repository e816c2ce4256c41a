"""The dialing engine's items: contacts moving through the hopper, the dispatch lease and the pacing counters.

A contact (`CONTACTS#<taskId>#<shard>` / `CONTACT#<e164>`, see store/contacts.py) carries `state` and `attempts`,
and while it matters to the dispatcher it sits in one of two sparse views of gsi1:

| state                 | gsi1pk                 | gsi1sk              | who reads it                          |
|-----------------------|------------------------|---------------------|---------------------------------------|
| queued                | HOPPER#<taskId>#<shard>| <dueAt>#<e164>      | the dispatcher: who is due, in order  |
| releasing / released  | INFLIGHT#<provider>    | <taskId>#<e164>     | hopper level (per task), account cap  |
| done / skipped        | -                      | -                   | nobody: it left the engine            |

Every move is a conditional update on the state *and* the attempt the mover saw, so two dispatchers (or a
dispatcher and a late result) can never both move one contact: a contact is released once per attempt.
The task's counts item keeps `contacts.<state>` (added once per wave, not per contact) for `GET /tasks/{id}`;
the dispatcher's decisions (room in the hopper, the account's cap, completion) read the views themselves.

The compliance gate (outcall.compliance) moves claimed contacts back from `releasing` with their attempt
not spent (`settle_screened`): `skipped` (`dnc`) or `queued` again, due at their window's next opening or
when their cap frees; each decision is appended to the contact's `complianceLog`.

Pacing of a provider account: `PROVIDER#<p>` / `DISPATCH` is a lease held by the one dispatcher working
that account's tasks (so the account's in-flight cap and releases per minute are checked and spent by one
writer at a time), and `PROVIDER#<p>` / `PACE#<minute>` counts the releases of one UTC minute.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from outcall.models import ContactState
from outcall.store.base import GSI1, StoreBase, _dynamo, _is_conditional_failure, _parallel, _plain, utcnow
from outcall.store.contacts import (
    CONTACT_SHARDS,
    contact_key,
    hopper_pk,
    hopper_shard_pk,
    hopper_sk,
    inflight_pk,
    inflight_sk,
)
from outcall.store.imports import task_counts_update

PACE_TTL_SECONDS: Final = 3600


LEAVES: Final = ("gsi1pk", "gsi1sk", "dueAt")  # a contact that leaves the engine leaves both views
UNRELEASED: Final = ("releaseKey", "releasedAt", "providerRef")  # what a release that did not happen drops


@dataclass(frozen=True, slots=True)
class _Move:
    """One contact's conditional move: from one of `expect` at `attempt`, setting `sets`."""

    e164: str
    attempt: int
    expect: tuple[str, ...]
    sets: Mapping[str, Any]
    removes: tuple[str, ...] = ()
    appends: Mapping[str, list[Any]] | None = None


def _back_in_line(task_id: str, e164: str, attempt: int, due_at: datetime) -> dict[str, Any]:
    """The attributes of a contact queued again with its attempt not spent, due at `due_at`."""
    stamp = due_at.isoformat()
    return {
        "state": ContactState.QUEUED,
        "attempts": attempt - 1,
        "dueAt": stamp,
        "gsi1pk": hopper_pk(task_id, e164),
        "gsi1sk": hopper_sk(stamp, e164),
    }


class HopperItems(StoreBase):
    def _contact_key(self, task_id: str, e164: str) -> dict[str, str]:
        return contact_key(task_id, e164)

    # ------------------------------------------------------------ reading the views
    def due_contacts(self, task_id: str, now: datetime, limit: int) -> list[dict[str, Any]]:
        """Queued contacts of a task whose `dueAt` has come, earliest first (at most `limit`): the
        earliest `limit` of each shard of the hopper (queried in parallel), merged."""
        if limit <= 0:
            return []

        def due_in(shard: int) -> list[dict[str, Any]]:
            kwargs: dict[str, Any] = {
                "IndexName": GSI1,
                "KeyConditionExpression": Key("gsi1pk").eq(hopper_shard_pk(task_id, shard))
                & Key("gsi1sk").lte(f"{now.isoformat()}#~"),
                "Limit": limit,
            }
            found: list[dict[str, Any]] = []
            while len(found) < limit:
                page = self.table.query(**kwargs)
                found.extend(_plain(i) for i in page.get("Items", []))
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
                kwargs["Limit"] = limit - len(found)
            return [i for i in found if i.get("state") == ContactState.QUEUED]

        merged = heapq.merge(*_parallel(due_in, range(CONTACT_SHARDS)), key=lambda i: str(i["gsi1sk"]))
        return list(itertools.islice(merged, limit))

    def next_due(self, task_id: str) -> str | None:
        """When the earliest queued contact of a task becomes due (None: nothing queued)."""

        def first_in(shard: int) -> str | None:
            page = self.table.query(
                IndexName=GSI1, KeyConditionExpression=Key("gsi1pk").eq(hopper_shard_pk(task_id, shard)), Limit=1
            )
            items = page.get("Items", [])
            return str(items[0]["gsi1sk"]).rsplit("#", 1)[0] if items else None

        return min((d for d in _parallel(first_in, range(CONTACT_SHARDS)) if d is not None), default=None)

    def inflight(self, provider: str, task_id: str | None = None) -> list[dict[str, Any]]:
        """Released (or being released) contacts of a provider account, or of one of its tasks."""
        condition: Any = Key("gsi1pk").eq(inflight_pk(provider))
        if task_id is not None:
            condition = condition & Key("gsi1sk").begins_with(f"{task_id}#")
        return self._query_all({"IndexName": GSI1, "KeyConditionExpression": condition})

    def count_inflight(self, provider: str, task_id: str | None = None) -> int:
        condition: Any = Key("gsi1pk").eq(inflight_pk(provider))
        if task_id is not None:
            condition = condition & Key("gsi1sk").begins_with(f"{task_id}#")
        kwargs: dict[str, Any] = {"IndexName": GSI1, "KeyConditionExpression": condition, "Select": "COUNT"}
        total = 0
        while True:
            page = self.table.query(**kwargs)
            total += int(page.get("Count", 0))
            if "LastEvaluatedKey" not in page:
                return total
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # ------------------------------------------------------------ moving contacts
    def _move(
        self,
        task_id: str,
        e164: str,
        *,
        expect_state: Sequence[str],
        expect_attempts: int,
        sets: Mapping[str, Any],
        removes: Sequence[str] = (),
        adds: Mapping[str, int] | None = None,
        appends: Mapping[str, list[Any]] | None = None,
    ) -> dict[str, Any] | None:
        """One conditional move of a contact; its new item, or None when it was not in a state
        expected at that attempt (another mover was first)."""
        names: dict[str, str] = {"#state": "state", "#attempts": "attempts"}
        values: dict[str, Any] = {":attempts": expect_attempts}
        for i, state in enumerate(expect_state):
            values[f":e{i}"] = str(state)
        parts = []
        for i, (attr, value) in enumerate({**sets, "updatedAt": utcnow().isoformat()}.items()):
            names[f"#s{i}"] = attr
            values[f":s{i}"] = str(value) if isinstance(value, ContactState) else _dynamo(value)
            parts.append(f"#s{i} = :s{i}")
        for i, (attr, more) in enumerate((appends or {}).items()):
            names[f"#l{i}"] = attr
            values[f":l{i}"] = _dynamo(more)
            values[":nothing"] = []
            parts.append(f"#l{i} = list_append(if_not_exists(#l{i}, :nothing), :l{i})")
        expression = "SET " + ", ".join(parts)
        if removes:
            for i, attr in enumerate(removes):
                names[f"#r{i}"] = attr
            expression += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(removes)))
        if adds:
            for i, (attr, delta) in enumerate(adds.items()):
                names[f"#d{i}"] = attr
                values[f":d{i}"] = delta
            expression += " ADD " + ", ".join(f"#d{i} :d{i}" for i in range(len(adds)))
        states = ", ".join(f":e{i}" for i in range(len(expect_state)))
        return self._update_if(
            Key=self._contact_key(task_id, e164),
            UpdateExpression=expression,
            ConditionExpression=f"attribute_exists(pk) AND #state IN ({states}) AND #attempts = :attempts",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def claim_releases(
        self, task_id: str, provider: str, contacts: Sequence[Mapping[str, Any]], now: datetime
    ) -> list[dict[str, Any]]:
        """Move queued contacts to `releasing` for their next attempt (attempts + 1), each on the
        condition that it is still queued at the attempt it was read with; the ones won, in order."""
        stamp = now.isoformat()

        def claim(contact: Mapping[str, Any]) -> dict[str, Any] | None:
            seen = int(contact.get("attempts", 0))
            releases = int(contact.get("releases", seen)) + 1  # every release has its own key, see release_key
            return self._move(
                task_id,
                str(contact["e164"]),
                expect_state=[ContactState.QUEUED],
                expect_attempts=seen,
                sets={
                    "state": ContactState.RELEASING,
                    "attempts": seen + 1,
                    "releases": releases,
                    "releaseKey": release_key(task_id, str(contact["e164"]), releases),
                    "releasedAt": stamp,
                    "gsi1pk": inflight_pk(provider),
                    "gsi1sk": inflight_sk(task_id, str(contact["e164"])),
                },
                removes=["lastError"],  # dueAt stays: a withdrawn release goes back to its place in line
            )

        return [c for c in _parallel(claim, contacts) if c is not None]

    def _move_all(self, task_id: str, moves: Sequence[_Move]) -> int:
        """Each move a conditional update of its own (in parallel); how many happened."""
        return sum(
            _parallel(
                lambda m: (
                    self._move(
                        task_id,
                        m.e164,
                        expect_state=m.expect,
                        expect_attempts=m.attempt,
                        sets=m.sets,
                        removes=m.removes,
                        appends=m.appends,
                    )
                    is not None
                ),
                moves,
            )
        )

    def mark_released(
        self,
        task_id: str,
        contacts: Sequence[tuple[str, int, str | None]],
        audits: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> int:
        """(e164, attempt, provider ref): the provider has them; `audits` the compliance decision of each
        (by number). Returns how many moved."""
        moves = []
        for e164, attempt, ref in contacts:
            sets: dict[str, Any] = {"state": ContactState.RELEASED} | ({"providerRef": ref} if ref else {})
            audit = (audits or {}).get(e164)
            if audit is not None:
                sets["compliance"] = dict(audit)
            appends = {"complianceLog": [dict(audit)]} if audit is not None else None
            moves.append(_Move(e164, attempt, (ContactState.RELEASING,), sets, appends=appends))
        return self._move_all(task_id, moves)

    def mark_skipped(self, task_id: str, contacts: Sequence[tuple[str, int]], reason: str, state: str) -> int:
        """Contacts that leave the engine without a call (the provider refused them, a do-not-call
        entry, ...), from `state` at the attempt given."""
        sets = {"state": ContactState.SKIPPED, "skipReason": reason[:500]}
        return self._move_all(task_id, [_Move(e, a, (state,), sets, LEAVES) for e, a in contacts])

    def requeue(
        self,
        task_id: str,
        contacts: Sequence[tuple[str, int]],
        due_at: datetime,
        error: str | None,
        *,
        state: str = ContactState.RELEASING,
    ) -> int:
        """Releases that did not happen (the provider refused the whole batch, or a pause withdrew them
        before they were dialled): back in the hopper at the attempt they had, due again at `due_at`."""
        extra = {"lastError": error[:500]} if error else {}
        moves = [_Move(e, a, (state,), _back_in_line(task_id, e, a, due_at) | extra, UNRELEASED) for e, a in contacts]
        return self._move_all(task_id, moves)

    def settle_screened(
        self,
        task_id: str,
        skips: Sequence[tuple[str, int, Mapping[str, Any]]],
        defers: Sequence[tuple[str, int, datetime, Mapping[str, Any]]],
        skip_reason: str,
    ) -> tuple[int, int]:
        """Claimed contacts the compliance gate stopped (outcall.compliance), back from `releasing` with
        their attempt not spent: `skips` (e164, attempt, decision) leave the engine `skipped` with
        `skip_reason`; `defers` (e164, attempt, due, decision) wait `queued` again, due then. Returns
        (skipped, deferred) moved."""
        releasing = (ContactState.RELEASING,)
        skipped = [
            _Move(
                e164,
                attempt,
                releasing,
                {"state": ContactState.SKIPPED, "attempts": attempt - 1, "skipReason": skip_reason}
                | {"compliance": dict(audit)},
                (*LEAVES, *UNRELEASED),
                {"complianceLog": [dict(audit)]},
            )
            for e164, attempt, audit in skips
        ]
        deferred = [
            _Move(
                e164,
                attempt,
                releasing,
                _back_in_line(task_id, e164, attempt, due) | {"compliance": dict(audit)},
                UNRELEASED,
                {"complianceLog": [dict(audit)]},
            )
            for e164, attempt, due, audit in defers
        ]
        return self._move_all(task_id, skipped), self._move_all(task_id, deferred)

    def note_compliance(self, task_id: str, e164: str, attempt: int, note: str) -> None:
        """A released contact whose number was listed and could not be withdrawn: say so on it."""
        self._move(
            task_id,
            e164,
            expect_state=[ContactState.RELEASED, ContactState.RELEASING],
            expect_attempts=attempt,
            sets={"complianceNote": note[:500]},
        )

    def note_release_error(self, task_id: str, contacts: Sequence[tuple[str, int]], error: str) -> None:
        """A release whose answer never came: the contacts stay `releasing` (the provider may have
        them) and are sent again, with the same release key, once stale."""
        sets = {"lastError": error[:500]}
        self._move_all(task_id, [_Move(e, a, (ContactState.RELEASING,), sets) for e, a in contacts])

    def note_call_progress(self, task_id: str, e164: str, *, attempt: int, status: str, record_id: str) -> None:
        """A call of the contact's current release is ringing or answered."""
        self._move(
            task_id,
            e164,
            expect_state=[ContactState.RELEASING, ContactState.RELEASED],
            expect_attempts=attempt,
            sets={"callStatus": status, "callRecordId": record_id, "callAttempt": attempt, "callEnded": False},
        )

    def finish_contact_call(
        self,
        task_id: str,
        e164: str,
        *,
        attempt: int,
        outcome: str,
        requeue_at: datetime | None,
        record_id: str,
        provider: str,
    ) -> bool:
        """A released contact's call ended with `outcome`: back in the hopper at `requeue_at` (a retry)
        or done. The contact and the task's counts move together (one transaction), so a result
        counts once."""
        key = self._contact_key(task_id, e164)
        names = {"#state": "state", "#attempts": "attempts", "#oc": "outcomeCounts", "#o": outcome}
        values: dict[str, Any] = {
            ":attempts": attempt,
            ":releasing": str(ContactState.RELEASING),
            ":released": str(ContactState.RELEASED),
            ":now": utcnow().isoformat(),
            ":rid": record_id,
            ":status": outcome,
            ":one": 1,
        }
        sets = [
            "updatedAt = :now",
            "callRecordId = :rid",
            "callStatus = :status",
            "callAttempt = :attempts",
            "callEnded = :true",
            "callOutcome = :status",
        ]
        values[":true"] = True
        if requeue_at is not None:
            stamp = requeue_at.isoformat()
            values |= {":queued": str(ContactState.QUEUED), ":due": stamp, ":hpk": hopper_pk(task_id, e164)}
            values[":hsk"] = hopper_sk(stamp, e164)
            sets += ["#state = :queued", "dueAt = :due", "gsi1pk = :hpk", "gsi1sk = :hsk"]
            removes = ["releaseKey"]
            moves = {"contacts.released": -1, "contacts.queued": 1}
        else:
            values[":done"] = str(ContactState.DONE)
            sets += ["#state = :done", "outcome = :status"]
            removes = ["gsi1pk", "gsi1sk"]
            moves = {"contacts.released": -1, "contacts.done": 1, f"outcomes.{outcome}": 1}
        update = {
            "TableName": self.table_name,
            "Key": key,
            "UpdateExpression": "SET " + ", ".join(sets) + " REMOVE " + ", ".join(removes) + " ADD #oc.#o :one",
            "ConditionExpression": "#state IN (:releasing, :released) AND #attempts = :attempts",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        counts = task_counts_update(self.table_name, task_id, moves)
        items: list[dict[str, Any]] = [{"Update": update}]
        if counts is not None:
            items.append({"Update": counts})
        try:
            self.table.meta.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "TransactionCanceledException":
                return False
            raise
        return True

    # ------------------------------------------------------------ the account's lease and pace
    def take_dispatch_lease(self, provider: str, owner: str, seconds: int) -> bool:
        now = utcnow()
        try:
            self.table.put_item(
                Item={
                    "pk": f"PROVIDER#{provider}",
                    "sk": "DISPATCH",
                    "owner": owner,
                    "leaseUntil": (now + timedelta(seconds=seconds)).isoformat(),
                },
                ConditionExpression="attribute_not_exists(pk) OR leaseUntil < :now OR #owner = :me",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":now": now.isoformat(), ":me": owner},
            )
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return False
            raise
        return True

    def drop_dispatch_lease(self, provider: str, owner: str) -> None:
        try:
            self.table.delete_item(
                Key={"pk": f"PROVIDER#{provider}", "sk": "DISPATCH"},
                ConditionExpression="#owner = :me",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":me": owner},
            )
        except ClientError as exc:
            if not _is_conditional_failure(exc):
                raise

    def releases_this_minute(self, provider: str, now: datetime) -> int:
        item = self._get(f"PROVIDER#{provider}", f"PACE#{now:%Y-%m-%dT%H:%M}", consistent=True)
        return int(item.get("releases", 0)) if item else 0

    def count_releases(self, provider: str, now: datetime, count: int) -> None:
        if count <= 0:
            return
        self.table.update_item(
            Key={"pk": f"PROVIDER#{provider}", "sk": f"PACE#{now:%Y-%m-%dT%H:%M}"},
            UpdateExpression="ADD releases :n SET expiresAt = :ttl",
            ExpressionAttributeValues={":n": count, ":ttl": int(now.timestamp()) + PACE_TTL_SECONDS},
        )

    def add_contact_counts(self, task_id: str, deltas: Mapping[str, int]) -> None:
        update = task_counts_update(self.table_name, task_id, {f"contacts.{k}": v for k, v in deltas.items()})
        if update is not None:
            self.table.meta.client.update_item(**update)


def release_key(task_id: str, e164: str, release: int) -> str:
    """The provider-side id of one release of one contact (digits and letters only, at most 32 chars),
    the same however often that release is sent (a lost answer). `release` counts the contact's
    releases, not its attempts: a release that was withdrawn or canceled by a pause gives its attempt
    back, and the next release of that attempt has a key of its own, which a provider that still
    holds the withdrawn one does not take for it."""
    return hashlib.sha256(f"{task_id}\0{e164}\0{release}".encode()).hexdigest()[:32]

"""A task's contacts spread over CONTACT_SHARDS partition keys (issue: no hot partition): each number has
one item per task, paging returns every contact once, and the hopper hands out the earliest due first
across its shards."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
from outcall.models import ContactState
from outcall.store import Store, utcnow
from outcall.store.contacts import CONTACT_SHARDS, contact_key, contact_shard, writer_key

NUMBERS = [f"+8613{900000000 + i * 7919:09d}" for i in range(300)]
# numbers of one shard: a call of these is one read and one write batch per 100 and 25 of them
ONE_SHARD = [n for n in (f"+8613{700000000 + i * 7919:09d}" for i in range(2000)) if contact_shard(n) == 3][:40]


@pytest.fixture
def store(aws: Any) -> Store:
    return Store()


def put(store: Store, task_id: str, numbers: list[str]) -> None:
    claims = store.claim_contacts(task_id, [{"e164": n, "row": i} for i, n in enumerate(numbers)])
    assert all(c.claimed for c in claims)


def pages(store: Store, task_id: str, limit: int, status: str | None = None) -> list[list[dict[str, Any]]]:
    found, token = store.list_contacts(task_id, status=status, limit=limit)
    out = [found]
    while token is not None:
        found, token = store.list_contacts(task_id, status=status, limit=limit, next_token=token)
        out.append(found)
    return out


def test_contacts_spread_over_every_shard_and_a_number_has_one_item(store: Store) -> None:
    put(store, "tsk_shards", NUMBERS)
    raw = store.table.scan()["Items"]
    contacts = [i for i in raw if str(i["sk"]).startswith("CONTACT#")]
    assert len(contacts) == len(NUMBERS)
    assert len({i["pk"] for i in contacts}) == CONTACT_SHARDS  # 300 numbers reach all 16 keys
    assert len({i["gsi1pk"] for i in contacts}) == CONTACT_SHARDS  # the hopper view too
    assert {contact_key("tsk_shards", n)["pk"] for n in NUMBERS} == {i["pk"] for i in contacts}
    again = store.claim_contacts("tsk_shards", [{"e164": NUMBERS[5], "row": 99}])
    assert not again[0].claimed and again[0].previous is not None and again[0].previous["row"] == 5


@pytest.mark.parametrize("limit", [1, 7, 19, 300, 1000])
def test_pages_return_every_contact_once_in_a_stable_order(store: Store, limit: int) -> None:
    put(store, "tsk_pages", NUMBERS)
    got = pages(store, "tsk_pages", limit)
    flat = [c["e164"] for page in got for c in page]
    assert sorted(flat) == sorted(NUMBERS) and len(flat) == len(set(flat))
    assert all(0 < len(page) <= limit for page in got)
    assert flat == [c["e164"] for page in pages(store, "tsk_pages", limit) for c in page]  # same order again
    assert "pk" not in got[0][0]  # keys stay inside the store


def test_pages_with_a_state_filter_across_shards(store: Store) -> None:
    put(store, "tsk_filter", NUMBERS)
    done = set(random.Random(3).sample(NUMBERS, 40))
    for n in done:
        store.table.update_item(
            Key=contact_key("tsk_filter", n),
            UpdateExpression="SET #s = :d",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={":d": str(ContactState.DONE)},
        )
    flat = [c["e164"] for page in pages(store, "tsk_filter", 6, status="done") for c in page]
    assert sorted(flat) == sorted(done)


def test_the_hopper_hands_out_the_earliest_due_across_its_shards(store: Store) -> None:
    put(store, "tsk_due", NUMBERS)
    now = utcnow()
    claimed = store.claim_releases(
        "tsk_due", "nxcloud", store.due_contacts("tsk_due", now + timedelta(seconds=1), 300), now
    )
    assert len(claimed) == 300
    rng = random.Random(11)
    dues = {
        n: now + timedelta(minutes=m) for n, m in zip(NUMBERS, rng.sample(range(1, 10_000), len(NUMBERS)), strict=True)
    }
    for n in NUMBERS:  # each back in line at its own time (a retry's delay)
        assert store.requeue("tsk_due", [(n, 1)], dues[n], None) == 1
    later = now + timedelta(days=30)
    due = store.due_contacts("tsk_due", later, 25)
    expected = sorted(NUMBERS, key=lambda n: (dues[n].isoformat(), n))[:25]
    assert [c["e164"] for c in due] == expected
    assert store.next_due("tsk_due") == min(d.isoformat() for d in dues.values())
    cut = sorted(dues.values())[9]
    assert len(store.due_contacts("tsk_due", cut, 300)) == 10  # only what has come due


# ---------------------------------------------------------------- one writer per task, batch writes


def test_concurrent_imports_of_overlapping_numbers_claim_each_number_once(store: Store) -> None:
    import threading

    first, second = NUMBERS[:200], NUMBERS[100:300]  # 100 numbers in both
    answers: dict[str, list[Any]] = {}

    def claim(name: str, numbers: list[str]) -> None:
        answers[name] = store.claim_contacts(
            "tsk_race", [{"e164": n, "importId": name, "row": i} for i, n in enumerate(numbers)]
        )

    threads = [threading.Thread(target=claim, args=a) for a in (("imp_a", first), ("imp_b", second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = {c.e164: name for name, claims in answers.items() for c in claims if c.claimed}
    assert sorted(won) == sorted(NUMBERS)  # every number claimed, and by one import only
    assert sum(len([c for c in claims if c.claimed]) for claims in answers.values()) == len(NUMBERS)
    for name, claims in answers.items():
        for c in claims:
            if not c.claimed:
                assert c.previous is not None and c.previous["importId"] == won[c.e164] != name
    stored = {c["e164"]: c["importId"] for c in store.iter_contacts("tsk_race")}
    assert stored == won  # nothing overwritten by the loser


def test_a_number_twice_in_one_call_is_claimed_once_and_a_skipped_one_is_taken_over(store: Store) -> None:
    claims = store.claim_contacts("tsk_twice", [{"e164": NUMBERS[0], "row": 1}, {"e164": NUMBERS[0], "row": 2}])
    assert [c.claimed for c in claims] == [True, False] and claims[1].previous["row"] == 1  # type: ignore[index]
    store.table.update_item(
        Key=contact_key("tsk_twice", NUMBERS[0]),
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "state"},
        ExpressionAttributeValues={":s": "skipped"},
    )
    again = store.claim_contacts("tsk_twice", [{"e164": NUMBERS[0], "row": 7}])
    assert again[0].claimed and again[0].previous is not None and again[0].previous["state"] == "skipped"
    assert store.get_contact("tsk_twice", NUMBERS[0])["state"] == "queued"  # type: ignore[index]


def test_accepted_rows_cost_one_batched_write_each(store: Store) -> None:
    from collections import Counter

    calls: Counter[str] = Counter()
    items: Counter[str] = Counter()

    def count(event_name: str, params: Any = None, **_: Any) -> None:
        op = event_name.rsplit(".", 1)[-1]
        calls[op] += 1
        if op == "BatchWriteItem":
            items["written"] += sum(len(v) for v in params["RequestItems"].values())

    clients = (store.table.meta.client, store.wire)  # the table's, and the bulk reads' and writes'
    for client in clients:
        client.meta.events.register("provide-client-params.dynamodb", count)
    try:
        put(store, "tsk_cost", NUMBERS)
    finally:
        for client in clients:
            client.meta.events.unregister("provide-client-params.dynamodb", count)
    assert items["written"] == len(NUMBERS)  # one write per accepted row
    assert calls["BatchWriteItem"] <= len(NUMBERS) // 25 + 16
    shards = len({contact_shard(n) for n in NUMBERS})
    assert shards == CONTACT_SHARDS
    assert calls["PutItem"] == shards and calls["DeleteItem"] == shards  # each shard's lease taken and dropped once


def test_a_writer_waits_for_a_live_lease_and_takes_an_expired_one(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from outcall.store import contacts as module

    monkeypatch.setattr(module, "WRITER_WAIT_SECONDS", 0.3)
    key = writer_key("tsk_lease", contact_shard(NUMBERS[0]))
    live = (utcnow() + timedelta(seconds=60)).isoformat()
    store.table.put_item(Item={**key, "owner": "other", "leaseUntil": live})
    with pytest.raises(module.ContactsBusy):
        store.claim_contacts("tsk_lease", [{"e164": NUMBERS[0], "row": 1}])
    assert store.get_contact("tsk_lease", NUMBERS[0]) is None  # nothing written without the lease
    assert store.table.get_item(Key=key)["Item"]["owner"] == "other"  # the live lease is left alone
    dead = (utcnow() - timedelta(seconds=1)).isoformat()
    store.table.put_item(Item={**key, "owner": "other", "leaseUntil": dead})
    assert store.claim_contacts("tsk_lease", [{"e164": NUMBERS[0], "row": 1}])[0].claimed
    assert "Item" not in store.table.get_item(Key=key)  # dropped after


def test_a_held_shard_holds_up_only_its_own_numbers(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    from outcall.store import contacts as module

    monkeypatch.setattr(module, "WRITER_WAIT_SECONDS", 5.0)
    held = contact_shard(NUMBERS[0])
    key = writer_key("tsk_side", held)
    store.table.put_item(Item={**key, "owner": "other", "leaseUntil": (utcnow() + timedelta(seconds=60)).isoformat()})
    answer: list[Any] = []
    writer = threading.Thread(
        target=lambda: answer.extend(
            store.claim_contacts("tsk_side", [{"e164": n, "row": i} for i, n in enumerate(NUMBERS)])
        )
    )
    writer.start()
    others = [n for n in NUMBERS if contact_shard(n) != held]
    waited = time.monotonic() + 5
    while len(list(store.iter_contacts("tsk_side"))) < len(others) and time.monotonic() < waited:
        time.sleep(0.05)
    stored = {c["e164"] for c in store.iter_contacts("tsk_side")}
    assert stored == set(others)  # the other 15 shards are written while one is held by someone else
    assert writer.is_alive()  # still waiting for the held shard
    store.table.delete_item(Key=key)  # the other writer is done
    writer.join(timeout=5)
    assert not writer.is_alive()
    assert [c.e164 for c in answer] == NUMBERS and all(c.claimed for c in answer)  # one claim each, in order
    assert {c["e164"] for c in store.iter_contacts("tsk_side")} == set(NUMBERS)


def test_a_writer_that_waits_too_long_keeps_what_it_wrote(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from outcall.store import contacts as module

    monkeypatch.setattr(module, "WRITER_WAIT_SECONDS", 0.3)
    held = contact_shard(NUMBERS[0])
    live = (utcnow() + timedelta(seconds=60)).isoformat()
    store.table.put_item(Item={**writer_key("tsk_busy", held), "owner": "other", "leaseUntil": live})
    contacts = [{"e164": n, "row": i} for i, n in enumerate(NUMBERS)]
    with pytest.raises(module.ContactsBusy):
        store.claim_contacts("tsk_busy", contacts)
    others = {n for n in NUMBERS if contact_shard(n) != held}
    assert {c["e164"] for c in store.iter_contacts("tsk_busy")} == others
    store.table.delete_item(Key=writer_key("tsk_busy", held))
    again = store.claim_contacts("tsk_busy", contacts)  # the message's next delivery
    assert {c.e164 for c in again if c.claimed} == set(NUMBERS) - others
    assert all(c.claimed or c.previous["row"] == row for row, c in enumerate(again))  # type: ignore[index]


class Throttling:
    """The store's bulk client, leaving all but one of a batch unprocessed on the first `times` requests
    of the kinds in `ops` (as DynamoDB does when throttled); what it was asked, in order."""

    def __init__(self, client: Any, times: int, ops: tuple[str, ...] = ("get", "write")) -> None:
        self.client = client
        self.times = times
        self.ops = ops
        self.asked: list[tuple[str, int]] = []

    def _throttled(self, op: str, size: int) -> bool:
        self.asked.append((op, size))
        return op in self.ops and sum(1 for o, _ in self.asked if o in self.ops) <= self.times and size > 1

    def batch_write_item(self, RequestItems: dict[str, list[Any]]) -> dict[str, Any]:
        ((table, batch),) = RequestItems.items()
        if self._throttled("write", len(batch)):
            self.client.batch_write_item(RequestItems={table: batch[:1]})
            return {"UnprocessedItems": {table: batch[1:]}}
        return dict(self.client.batch_write_item(RequestItems=RequestItems))

    def batch_get_item(self, RequestItems: dict[str, dict[str, Any]]) -> dict[str, Any]:
        ((table, request),) = RequestItems.items()
        keys = request["Keys"]
        if self._throttled("get", len(keys)):
            answer = self.client.batch_get_item(RequestItems={table: {**request, "Keys": keys[:1]}})
            return {**answer, "UnprocessedKeys": {table: {**request, "Keys": keys[1:]}}}
        return dict(self.client.batch_get_item(RequestItems=RequestItems))


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    import outcall.store.base as base

    monkeypatch.setattr(base, "_backoff", lambda attempt: None)


@pytest.mark.parametrize("op", ["get", "write"])
def test_what_dynamodb_leaves_unprocessed_is_sent_again_until_it_is_done(
    store: Store, no_backoff: None, op: str
) -> None:
    throttling = Throttling(store.wire, times=3, ops=(op,))
    store._wire = throttling
    put(store, "tsk_throttled", ONE_SHARD[:20])  # 20 numbers of one shard: one read and one write batch
    asked = [size for o, size in throttling.asked if o == op]
    assert asked == [20, 19, 18, 17]  # all but one left unprocessed three times, then the rest at once
    contacts = list(store.iter_contacts("tsk_throttled"))
    assert sorted(c["e164"] for c in contacts) == sorted(ONE_SHARD[:20])
    assert {c["row"] for c in contacts} == set(range(20))


def test_a_batch_left_unprocessed_every_time_fails_and_the_next_delivery_writes_it(
    store: Store, no_backoff: None
) -> None:
    from outcall.store.base import BATCH_TRIES, BatchUnprocessed

    throttling = Throttling(store.wire, times=10**6, ops=("write",))
    store._wire = throttling
    with pytest.raises(BatchUnprocessed):
        store.claim_contacts("tsk_stuck", [{"e164": n, "row": i} for i, n in enumerate(ONE_SHARD[:30])])
    writes = [size for o, size in throttling.asked if o == "write"]
    # the batch of 25 asked BATCH_TRIES times and gave up; the batch of 5 (side by side) got through
    assert sorted(writes) == [1, 2, 3, 4, 5, *range(25 - BATCH_TRIES + 1, 26)]
    assert len(list(store.iter_contacts("tsk_stuck"))) == BATCH_TRIES + 5  # what was written stays
    store._wire = throttling.client  # DynamoDB has room again: the message's next delivery writes the rest
    claims = store.claim_contacts("tsk_stuck", [{"e164": n, "row": i} for i, n in enumerate(ONE_SHARD[:30])])
    assert sum(c.claimed for c in claims) == 30 - BATCH_TRIES - 5
    assert all(c.claimed or c.previous["row"] == row for row, c in enumerate(claims))  # type: ignore[index]
    assert sorted(c["e164"] for c in store.iter_contacts("tsk_stuck")) == sorted(ONE_SHARD[:30])


def test_the_contacts_of_one_call_come_due_together_and_leave_by_number(store: Store) -> None:
    put(store, "tsk_together", NUMBERS)  # written shard by shard, from a random first shard
    contacts = list(store.iter_contacts("tsk_together"))
    assert len({c["dueAt"] for c in contacts}) == 1  # one time for the whole call
    due = store.due_contacts("tsk_together", utcnow(), 40)
    assert [c["e164"] for c in due] == sorted(NUMBERS)[:40]  # the hopper hands them out by number

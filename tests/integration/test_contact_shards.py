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
from outcall.store.contacts import CONTACT_SHARDS, contact_key

NUMBERS = [f"+8613{900000000 + i * 7919:09d}" for i in range(300)]


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

    client = store.table.meta.client
    client.meta.events.register("provide-client-params.dynamodb", count)
    try:
        put(store, "tsk_cost", NUMBERS)
    finally:
        client.meta.events.unregister("provide-client-params.dynamodb", count)
    assert items["written"] == len(NUMBERS)  # one write per accepted row
    assert calls["BatchWriteItem"] <= len(NUMBERS) // 25 + 16
    assert calls["PutItem"] == 1 and calls["DeleteItem"] == 1  # the writer's lease, taken and dropped once


def test_a_writer_waits_for_a_live_lease_and_takes_an_expired_one(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from outcall.store import contacts as module

    monkeypatch.setattr(module, "WRITER_WAIT_SECONDS", 0.3)
    live = (utcnow() + timedelta(seconds=60)).isoformat()
    store.table.put_item(Item={"pk": "TASK#tsk_lease", "sk": "WRITER", "owner": "other", "leaseUntil": live})
    with pytest.raises(module.ContactsBusy):
        store.claim_contacts("tsk_lease", [{"e164": NUMBERS[0], "row": 1}])
    assert store.get_contact("tsk_lease", NUMBERS[0]) is None  # nothing written without the lease
    dead = (utcnow() - timedelta(seconds=1)).isoformat()
    store.table.put_item(Item={"pk": "TASK#tsk_lease", "sk": "WRITER", "owner": "other", "leaseUntil": dead})
    assert store.claim_contacts("tsk_lease", [{"e164": NUMBERS[0], "row": 1}])[0].claimed
    assert "Item" not in store.table.get_item(Key={"pk": "TASK#tsk_lease", "sk": "WRITER"})  # dropped after

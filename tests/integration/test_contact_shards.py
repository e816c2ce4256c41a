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

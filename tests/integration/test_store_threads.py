"""The store is used from many threads at once (its own shard queries side by side, the local stack's
functions): boto3's Table resource builds condition expressions with one builder per client, so
without a builder per thread (store.base._BuilderPerThread) queries run with another thread's
placeholders and answer wrongly (boto/boto3#1332)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from boto3.dynamodb.conditions import Attr, Key
from outcall.store import Store


@pytest.fixture
def often_switching() -> Iterator[None]:
    """Threads switch every microsecond, not every 5 ms: a race shows within a few hundred requests."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def test_queries_with_conditions_from_many_threads_at_once_each_answer_their_own(
    aws: Any, often_switching: None
) -> None:
    store = Store()
    for n in range(8):
        store.table.put_item(Item={"pk": f"THREADS#{n}", "sk": f"ITEM#{n}", "state": f"s{n}"})
    wrong: list[str] = []

    def work(n: int) -> None:
        for _ in range(60):
            try:
                got = store.table.query(
                    KeyConditionExpression=Key("pk").eq(f"THREADS#{n}") & Key("sk").begins_with("ITEM#"),
                    FilterExpression=Attr("state").eq(f"s{n}"),
                )["Items"]
                if [i["sk"] for i in got] != [f"ITEM#{n}"]:
                    wrong.append(f"thread {n}: {got}")
            except Exception as exc:  # a mixed-up request is refused: count it
                wrong.append(f"thread {n}: {exc!r}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []

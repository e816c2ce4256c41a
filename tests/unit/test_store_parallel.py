"""The store's side-by-side requests: a failing request does not drop the ones beside it."""

from __future__ import annotations

import threading
import time

import pytest
from outcall.store.base import WRITE_THREADS, _parallel


def test_every_item_is_worked_before_the_first_failure_is_raised() -> None:
    done: set[int] = set()
    lock = threading.Lock()

    def work(i: int) -> int:
        if i == 0:
            raise RuntimeError("throttled")
        time.sleep(0.01)  # the pool's threads are busy when item 0 fails: the rest wait in its queue
        with lock:
            done.add(i)
        return i

    items = list(range(3 * WRITE_THREADS))
    with pytest.raises(RuntimeError, match="throttled"):
        _parallel(work, items)
    assert done == set(items[1:])  # a batch left unprocessed does not cancel the batches queued beside it


def test_the_answers_come_in_the_order_of_the_items() -> None:
    def work(i: int) -> int:
        time.sleep(0.001 * (i % 3))
        return i * i

    assert _parallel(work, list(range(40))) == [i * i for i in range(40)]

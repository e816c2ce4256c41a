"""What the local stack keeps in memory stays bounded over a long run: the simulators' request
journal, their finished timers, and the deliveries journal behind /_local/deliveries."""

from __future__ import annotations

import threading
import time

import requests

from local.runtime import Runtime
from local.simulators.xswitch import SIMULATOR
from local.template import Stack


def test_a_simulator_keeps_only_its_latest_requests() -> None:
    sim = SIMULATOR(port=0, settings={}).start()
    sim.journal_size = 5
    try:
        for n in range(8):
            requests.get(f"{sim.url}/nothing/{n}", timeout=5)
        assert [r.path for r in sim.journal] == [f"/nothing/{n}" for n in range(3, 8)]
        listed = requests.get(f"{sim.url}/_sim/requests", timeout=5).json()
        assert [r["path"] for r in listed] == [f"/nothing/{n}" for n in range(3, 8)]
    finally:
        sim.stop()


def test_a_simulator_forgets_timers_that_have_fired() -> None:
    sim = SIMULATOR(port=0, settings={})
    fired = threading.Semaphore(0)
    for _ in range(5000):
        sim.later(0, fired.release)
    for _ in range(5000):
        assert fired.acquire(timeout=10)
    time.sleep(0.1)
    sim.later(0, fired.release)
    assert len(sim._timers) < 4096  # pruned as it grew, not 5,001 kept


def test_the_deliveries_journal_keeps_the_latest_entries() -> None:
    functions = Stack().functions()
    runtime = Runtime(functions, journal_size=3)
    fn = next(f for f in functions.values() if f.name == "outcall-api-docs")
    runtime._handlers[fn.logical_id] = lambda event, context: {"n": event["n"]}
    for n in range(5):
        runtime.invoke(fn, {"n": n}, "test", f"call {n}")
    assert [e["detail"] for e in runtime.journal] == ["call 2", "call 3", "call 4"]


def test_moto_queues_remember_only_recent_deleted_receipt_handles() -> None:
    from local.moto_bounded import RecentSet

    handles = RecentSet(size=3)
    handles.update(["a", "b"])
    handles.update(["c", "d"])
    assert "a" not in handles and all(h in handles for h in "bcd") and len(handles) == 3
    handles.update(["b"])  # seen again: the newest now
    handles.update(["e"])
    assert "c" not in handles and all(h in handles for h in "bde")

"""The dialing engine against moto, with a recording provider: the hopper, waves, once per attempt,
lost answers, provider faults, retries with a controlled clock, pacing, pause and completion."""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest
from outcall.calllists import process_records
from outcall.contacts import add_rows
from outcall.dispatch import (
    MAX_RELEASES_PER_RUN,
    START_RUN_SECONDS,
    Dispatcher,
    DispatchOutcome,
    on_call_event,
    retry_decision,
)
from outcall.engine import build_engine
from outcall.errors import ProviderError
from outcall.models import CallEvent, ContactOutcome, ContactSpec, RetryPolicy, RetryRule, Task, TaskSettings
from outcall.providers.base import Capabilities, Provider, ProviderLimits
from outcall.store import Store, utcnow
from outcall.tasks import TaskService


class RecordingProvider(Provider):
    """A provider that keeps every contact it was given by release key, as providers that take a
    client-side id per number do: a key sent again is answered `already_held`."""

    key = "nxcloud"
    limits: ClassVar[ProviderLimits] = ProviderLimits(batch_size=10)
    capabilities: ClassVar[Capabilities] = Capabilities(task_types=frozenset({"auto"}), pause=False, webhooks=True)

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        super().__init__(settings or {})
        self.calls: list[list[ContactSpec]] = []
        self.held: dict[str, ContactSpec] = {}
        self.fail_next: list[ProviderError] = []
        self.lose_answer_rate = 0.0
        self.fail_rate = 0.0
        self.rng = random.Random(7)
        self.canceled: list[str] = []
        self.lock = threading.Lock()

    def create_task(self, spec: Any) -> str:
        return "ptask-1"

    def start_task(self, provider_task_id: str) -> None:
        return None

    def stop_task(self, provider_task_id: str) -> None:
        return None

    def add_contacts(self, provider_task_id: str, contacts: Sequence[ContactSpec]) -> list[ContactOutcome]:
        with self.lock:
            self.calls.append(list(contacts))
            if self.fail_next:
                raise self.fail_next.pop(0)
            if self.fail_rate and self.rng.random() < self.fail_rate:
                raise ProviderError("503 from the provider", provider=self.key, retryable=True)
            answers = []
            for c in contacts:
                assert c.release_key
                if c.release_key in self.held:
                    answers.append(
                        ContactOutcome(e164=c.e164, accepted=False, already_held=True, provider_ref=c.release_key)
                    )
                else:
                    self.held[c.release_key] = c
                    answers.append(ContactOutcome(e164=c.e164, accepted=True, provider_ref=c.release_key))
            if self.lose_answer_rate and self.rng.random() < self.lose_answer_rate:
                raise ProviderError("read timeout", provider=self.key, retryable=True)
            return answers

    def cancel_contacts(self, provider_task_id: str, refs: Sequence[str]) -> list[str]:
        self.canceled.extend(refs)
        return list(refs)

    def releases_of(self, e164: str) -> list[ContactSpec]:
        return [c for c in self.held.values() if c.e164 == e164]


class Clock:
    """The dispatcher's time, a little ahead of the imports the test makes (they are due at once)."""

    def __init__(self) -> None:
        self.now = utcnow() + timedelta(seconds=5)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def numbers(n: int) -> list[str]:
    return [f"+8613{800000000 + i:09d}" for i in range(n)]


def make_task(store: Store, provider: RecordingProvider, n: int, **settings: Any) -> Task:
    now = utcnow()
    task = Task(
        task_id=f"tsk_{random.randrange(1 << 40):x}",
        name="engine",
        provider="nxcloud",
        type="auto",
        status="ready",
        settings=TaskSettings.model_validate(settings),
        created_at=now,
        updated_at=now,
    )
    assert store.create_task(task, max_tasks=100)
    task = store.finish_task(task.task_id, task.version, {"providerTaskId": "ptask-1"})
    rows = list(process_records([{"mobile": e} for e in numbers(n)], default_region="CN"))
    added = add_rows(store, task, "imp_1", rows, reserved=n)
    store.add_contact_counts(
        task.task_id, {k.split(".", 1)[1]: v for k, v in added.task_counts.items() if k.startswith("contacts.")}
    )
    return task


@pytest.fixture
def store(aws: Any) -> Store:
    return Store()


def service(store: Store, provider: RecordingProvider, clock: Clock) -> tuple[TaskService, Dispatcher]:
    engine = build_engine(store, lambda key: provider, clock=clock)
    return engine.tasks, engine.dispatcher


def finish_all(store: Store, task: Task, provider: RecordingProvider, status: str, clock: Clock) -> int:
    """Every contact the provider holds and has no result yet ends with `status`."""
    ended = 0
    for spec in list(provider.held.values()):
        contact = store.get_contact(task.task_id, spec.e164)
        assert contact is not None
        if contact["state"] != "released" or contact.get("releaseKey") != spec.release_key:
            continue
        event = CallEvent(
            provider="nxcloud",
            provider_task_id="ptask-1",
            provider_call_id=f"call-{spec.release_key}",
            provider_contact_ref=spec.release_key,
            phone=spec.e164,
            status=status,  # type: ignore[arg-type]
            started_at=clock.now,
            dedup_key=f"d-{spec.release_key}",
        )
        ended += on_call_event(store, store.get_task(task.task_id) or task, event, f"r-{spec.release_key}", clock.now)
    return ended


def states(store: Store, task: Task) -> dict[str, int]:
    found: dict[str, int] = {}
    for contact in store.iter_contacts(task.task_id):
        found[contact["state"]] = found.get(contact["state"], 0) + 1
    return found


# ---------------------------------------------------------------- the hopper


def test_nothing_reaches_the_provider_before_start_and_waves_keep_the_hopper_level(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    provider, clock = RecordingProvider(), Clock()
    task = make_task(store, provider, 35, concurrency=5, hopperLevel=12)
    svc, dispatcher = service(store, provider, clock)
    assert provider.calls == []
    assert states(store, task) == {"queued": 35}

    svc.transition(task.task_id, "start")
    assert len(provider.held) == 12  # the hopper level
    assert [len(c) for c in provider.calls] == [10, 2]  # the provider's batch size, one call per batch
    assert dispatcher.run(task.task_id).released == 0  # full: nothing more until results come

    assert finish_all(store, task, provider, "completed", clock) == 12
    out = dispatcher.run(task.task_id)
    assert out.released == 12 and out.provider_calls == 2
    finish_all(store, task, provider, "completed", clock)
    dispatcher.run(task.task_id)
    finish_all(store, task, provider, "completed", clock)
    out = dispatcher.run(task.task_id)
    assert out.status == "completed"
    assert store.get_task(task.task_id).status == "completed"  # type: ignore[union-attr]
    assert states(store, task) == {"done": 35}
    assert len(provider.held) == 35 and all(len(provider.releases_of(e)) == 1 for e in numbers(35))
    counts = store.get_task_with_counts(task.task_id)[1]  # type: ignore[index]
    assert counts["contacts"]["done"] == 35 and counts["contacts"]["queued"] == 0
    assert counts["contacts"]["released"] == 0 and counts["outcomes"]["completed"] == 35
    # the completion came from within the run: it did not wait for the run's own lease
    assert not [r for r in caplog.records if "outlasted the wait" in r.getMessage()]


class Ticking:
    """A run's timer that moves `step` seconds each time it is read."""

    def __init__(self, step: float) -> None:
        self.step = step
        self.now = 0.0

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_a_run_given_seconds_begins_no_wave_after_them_and_the_next_run_carries_on(store: Store) -> None:
    provider, clock = RecordingProvider(), Clock()
    task = make_task(store, provider, 30, hopperLevel=10)
    store.put_dnc(f"TASK#{task.task_id}", [{"e164": e, "source": "api", "createdAt": "x"} for e in numbers(30)[:10]])
    store.finish_task(task.task_id, store.get_task(task.task_id).version, {"status": "running"})  # type: ignore[union-attr]
    timed = Dispatcher(store, lambda key: provider, clock=clock, timer=Ticking(step=6.0))

    out = timed.run(task.task_id, seconds=10.0)  # read at 6 s: one wave (the 10 listed, skipped); at 12 s: no more
    assert out.time_up and out.dnc == 10 and out.released == 0 and provider.calls == []
    assert states(store, task) == {"skipped": 10, "queued": 20}

    out = timed.run(task.task_id)  # no limit: the wave the first run left
    assert not out.time_up and out.released == 10 and len(provider.held) == 10
    assert states(store, task) == {"skipped": 10, "released": 10, "queued": 10}


def test_a_paused_task_releases_nothing_and_withdraws_what_the_provider_holds(store: Store) -> None:
    provider, clock = RecordingProvider(), Clock()
    task = make_task(store, provider, 30, hopperLevel=10)
    svc, dispatcher = service(store, provider, clock)
    svc.transition(task.task_id, "start")
    assert len(provider.held) == 10
    paused = svc.transition(task.task_id, "pause")
    assert paused.status == "paused"
    assert sorted(provider.canceled) == sorted(provider.held)  # no pause at this provider: withdrawn
    assert dispatcher.run(task.task_id).status == "not-running"
    assert states(store, task) == {"queued": 30}  # withdrawn contacts wait again, their attempt not spent
    svc.transition(task.task_id, "start")
    contact = store.get_contact(task.task_id, numbers(30)[0])
    assert contact is not None and contact["attempts"] == 1 and contact["state"] == "released"


def test_a_pause_between_the_runs_status_read_and_its_claim_sends_nothing(store: Store) -> None:
    provider, clock = RecordingProvider(), Clock()
    task = make_task(store, provider, 30, hopperLevel=10)
    _svc, dispatcher = service(store, provider, clock)
    store.finish_task(task.task_id, task.version, {"status": "running"})
    claim = store.claim_releases

    def pause_then_claim(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        current = store.get_task(task.task_id)
        assert current is not None
        store.finish_task(task.task_id, current.version, {"status": "paused"})  # the pause lands here
        return claim(*args, **kwargs)

    store.claim_releases = pause_then_claim  # type: ignore[method-assign]
    assert dispatcher.run(task.task_id).status == "not-running"
    assert provider.calls == []
    assert states(store, task) == {"queued": 30}
    assert all(c["attempts"] == 0 for c in store.iter_contacts(task.task_id))  # no attempt spent
    counts = store.get_task_with_counts(task.task_id)[1]  # type: ignore[index]
    assert counts["contacts"]["queued"] == 30 and counts["contacts"]["released"] == 0


def test_a_pause_while_a_wave_is_sent_waits_for_it_and_withdraws_it(store: Store) -> None:
    provider, clock = RecordingProvider(), Clock()
    task = make_task(store, provider, 30, hopperLevel=10)
    svc, dispatcher = service(store, provider, clock)
    store.finish_task(task.task_id, task.version, {"status": "running"})
    send = provider.add_contacts
    pausing: list[threading.Thread] = []

    def pause_during_send(ptid: str, contacts: Sequence[ContactSpec]) -> list[ContactOutcome]:
        if not pausing:  # the user pauses while the provider takes the wave
            pausing.append(threading.Thread(target=svc.transition, args=(task.task_id, "pause")))
            pausing[0].start()
            threading.Event().wait(0.5)
        return send(ptid, contacts)

    provider.add_contacts = pause_during_send  # type: ignore[method-assign]
    dispatcher.run(task.task_id)
    pausing[0].join(20)
    assert store.get_task(task.task_id).status == "paused"  # type: ignore[union-attr]
    assert len(provider.held) == 10 and sorted(provider.canceled) == sorted(provider.held)  # read after the send
    assert states(store, task) == {"queued": 30}


class PausingProvider(RecordingProvider):
    """A provider with a pause of its own that ends the calls in progress `canceled` (as xswitch's
    stop does), and takes a number again only under a key it does not hold yet."""

    capabilities: ClassVar[Capabilities] = Capabilities(task_types=frozenset({"auto"}), pause=True, webhooks=True)

    def __init__(self) -> None:
        super().__init__()
        self.paused = 0

    def pause_task(self, provider_task_id: str) -> None:
        self.paused += 1


def test_calls_canceled_by_a_pause_are_no_attempt_and_go_again_under_a_new_key(store: Store) -> None:
    provider, clock = PausingProvider(), Clock()
    task = make_task(store, provider, 4, hopperLevel=4, retryPolicy={"maxAttempts": 1})
    svc, dispatcher = service(store, provider, clock)
    svc.transition(task.task_id, "start")
    first_keys = set(provider.held)
    svc.transition(task.task_id, "pause")
    assert provider.paused == 1 and provider.canceled == []  # its own pause, nothing withdrawn
    assert finish_all(store, task, provider, "canceled", clock) == 4  # the provider ends them canceled
    assert states(store, task) == {"queued": 4}
    assert all(c["attempts"] == 0 for c in store.iter_contacts(task.task_id))  # with maxAttempts 1: not spent
    svc.transition(task.task_id, "start")
    assert states(store, task) == {"released": 4}
    again = {c["releaseKey"] for c in store.iter_contacts(task.task_id)}
    assert again.isdisjoint(first_keys) and again <= set(provider.held)  # new keys, taken by the provider
    assert finish_all(store, task, provider, "completed", clock) == 4
    assert dispatcher.run(task.task_id).status == "completed"
    assert all(c["attempts"] == 1 and c["outcome"] == "completed" for c in store.iter_contacts(task.task_id))


def test_a_call_canceled_while_the_task_runs_is_an_attempt(store: Store) -> None:
    provider, clock = PausingProvider(), Clock()
    task = make_task(store, provider, 2, hopperLevel=2, retryPolicy={"maxAttempts": 1})
    _svc, dispatcher = service(store, provider, clock)
    _svc.transition(task.task_id, "start")
    finish_all(store, task, provider, "canceled", clock)
    assert states(store, task) == {"done": 2}  # the provider canceled it on its own: the one attempt is spent
    assert dispatcher.run(task.task_id).status == "completed"


# ---------------------------------------------------------------- once per attempt


def test_concurrent_dispatchers_release_each_contact_once(store: Store) -> None:
    provider, clock = RecordingProvider(), Clock()
    task = make_task(store, provider, 60, hopperLevel=60)
    _svc, dispatcher = service(store, provider, clock)
    store.finish_task(task.task_id, store.get_task(task.task_id).version, {"status": "running"})  # type: ignore[union-attr]
    outcomes: list[Any] = []
    threads = [threading.Thread(target=lambda: outcomes.append(dispatcher.run(task.task_id))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(o.released for o in outcomes) == 60
    assert {o.status for o in outcomes} <= {"dispatched", "busy", "idle"}
    sent = [c.e164 for call in provider.calls for c in call]
    assert sorted(sent) == sorted(numbers(60))  # each number sent once


def test_a_claim_taken_by_another_run_is_not_released_again(store: Store) -> None:
    provider, clock = RecordingProvider(), Clock()
    task = make_task(store, provider, 5, hopperLevel=5)
    due = store.due_contacts(task.task_id, clock.now, 5)
    first = store.claim_releases(task.task_id, "nxcloud", due, clock.now)
    second = store.claim_releases(task.task_id, "nxcloud", due, clock.now)  # the same read, a second dispatcher
    assert len(first) == 5 and second == []


def test_a_release_whose_answer_was_lost_is_sent_again_with_the_same_key(store: Store) -> None:
    provider, clock = RecordingProvider(), Clock()
    task = make_task(store, provider, 10, hopperLevel=10)
    svc, dispatcher = service(store, provider, clock)
    provider.lose_answer_rate = 1.0  # the provider takes the batch, the answer never comes
    svc.transition(task.task_id, "start")
    assert states(store, task) == {"releasing": 10}
    assert store.get_contact(task.task_id, numbers(10)[0])["lastError"].startswith("retryable")  # type: ignore[index]
    provider.lose_answer_rate = 0.0
    assert dispatcher.run(task.task_id).resent == 0  # not stale yet: maybe the answer is still under way
    clock.advance(minutes=3)
    out = dispatcher.run(task.task_id)
    assert out.resent == 10 and out.already_held == 10 and out.released == 0
    assert states(store, task) == {"released": 10}
    assert len(provider.held) == 10  # nobody twice


def test_a_crash_between_the_provider_call_and_the_write_loses_and_duplicates_nothing(store: Store) -> None:
    provider, clock = RecordingProvider(), Clock()
    task = make_task(store, provider, 10, hopperLevel=10)
    _svc, dispatcher = service(store, provider, clock)
    store.finish_task(task.task_id, store.get_task(task.task_id).version, {"status": "running"})  # type: ignore[union-attr]

    def crash(*args: Any, **kwargs: Any) -> int:
        raise SystemExit("the function died")

    store.mark_released = crash  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        dispatcher.run(task.task_id)
    del store.mark_released
    assert len(provider.held) == 10 and states(store, task) == {"releasing": 10}
    clock.advance(minutes=3)
    out = dispatcher.run(task.task_id)
    assert out.resent == 10 and out.already_held == 10
    assert states(store, task) == {"released": 10} and len(provider.held) == 10


def test_faults_on_30_percent_of_release_calls_lose_and_duplicate_nothing(store: Store) -> None:
    provider, clock = RecordingProvider(), Clock()
    task = make_task(store, provider, 200, hopperLevel=50)
    svc, dispatcher = service(store, provider, clock)
    provider.fail_rate, provider.lose_answer_rate = 0.15, 0.15
    svc.transition(task.task_id, "start")
    for _ in range(200):
        if store.get_task(task.task_id).status == "completed":  # type: ignore[union-attr]
            break
        clock.advance(minutes=3)
        dispatcher.run(task.task_id)
        finish_all(store, task, provider, "completed", clock)
    assert store.get_task(task.task_id).status == "completed"  # type: ignore[union-attr]
    assert states(store, task) == {"done": 200}
    assert all(len(provider.releases_of(e)) == 1 for e in numbers(200))  # 0 released twice for one attempt
    assert len(provider.held) == 200  # 0 lost


def test_a_429_on_release_waits_and_sends_the_same_releases_again(store: Store) -> None:
    """The provider's rate limit outlasts the module's own retries: the wave stops at that batch, the
    contacts stay `releasing` (never guessed released or refused) and go again, same keys, once stale."""
    provider, clock = RecordingProvider(), Clock()
    task = make_task(store, provider, 25, hopperLevel=25)  # three batches of 10, 10, 5
    svc, dispatcher = service(store, provider, clock)
    provider.fail_next = [ProviderError("429 Too Many Requests", provider="nxcloud", provider_code=429, retryable=True)]
    svc.transition(task.task_id, "start")
    assert len(provider.calls) == 1 and provider.held == {}  # the wave stopped at the refused batch
    waiting = list(store.iter_contacts(task.task_id))
    assert {c["state"] for c in waiting} == {"releasing"}
    assert all("429" in c["lastError"] for c in waiting)
    keys = {c["e164"]: c["releaseKey"] for c in waiting}
    assert dispatcher.run(task.task_id).released == 0  # not stale yet: nothing sent twice meanwhile
    assert len(provider.calls) == 1
    clock.advance(seconds=121)
    out = dispatcher.run(task.task_id)
    assert out.resent == 25 and out.errors == []
    assert {c.e164: c.release_key for c in provider.held.values()} == keys  # the same releases
    assert states(store, task) == {"released": 25}
    assert all(c["attempts"] == 1 for c in store.iter_contacts(task.task_id))


def test_a_batch_refused_as_a_whole_goes_back_to_the_hopper_without_spending_an_attempt(store: Store) -> None:
    provider, clock = RecordingProvider(), Clock()
    task = make_task(store, provider, 5, hopperLevel=5)
    svc, dispatcher = service(store, provider, clock)
    provider.fail_next = [ProviderError("task is not running", provider="nxcloud", retryable=False)]
    svc.transition(task.task_id, "start")
    contact = store.get_contact(task.task_id, numbers(5)[0])
    assert contact is not None and contact["state"] == "queued" and contact["attempts"] == 0
    assert "task is not running" in contact["lastError"]
    assert dispatcher.run(task.task_id).released == 0  # due again only later
    clock.advance(minutes=6)
    assert dispatcher.run(task.task_id).released == 5


def test_contacts_the_provider_rejects_are_skipped_with_its_reason(store: Store) -> None:
    class Picky(RecordingProvider):
        def add_contacts(self, provider_task_id: str, contacts: Sequence[ContactSpec]) -> list[ContactOutcome]:
            self.calls.append(list(contacts))
            return [ContactOutcome(e164=c.e164, accepted=False, reason="blacklisted number") for c in contacts]

    provider, clock = Picky(), Clock()
    task = make_task(store, provider, 3, hopperLevel=3)
    svc, _dispatcher = service(store, provider, clock)
    svc.transition(task.task_id, "start")
    contact = store.get_contact(task.task_id, numbers(3)[0])
    assert contact is not None and contact["state"] == "skipped"
    assert contact["skipReason"] == "provider_rejected: blacklisted number"
    assert store.get_task(task.task_id).status == "completed"  # type: ignore[union-attr]


# ---------------------------------------------------------------- retries


def test_retry_decision_follows_the_policy_per_outcome_and_the_cap() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    policy = RetryPolicy(
        max_attempts=3,
        outcomes={
            "busy": RetryRule(attempts=5, delay_minutes=10),
            "no-answer": RetryRule(attempts=1, delay_minutes=60),
        },
    )
    assert retry_decision(policy, "busy", attempts=1, outcome_counts={}, now=now) == now + timedelta(minutes=10)
    assert retry_decision(policy, "busy", attempts=3, outcome_counts={"busy": 2}, now=now) is None  # the cap
    assert retry_decision(policy, "no-answer", attempts=1, outcome_counts={}, now=now) == now + timedelta(hours=1)
    assert retry_decision(policy, "no-answer", attempts=2, outcome_counts={"no-answer": 1}, now=now) is None
    assert retry_decision(policy, "completed", attempts=1, outcome_counts={}, now=now) is None
    assert retry_decision(policy, "failed", attempts=1, outcome_counts={}, now=now) is None  # not in the policy


def test_retries_honour_their_delays_and_never_pass_the_cap(store: Store) -> None:
    provider, clock = RecordingProvider(), Clock()
    policy = {"maxAttempts": 3, "outcomes": {"busy": {"attempts": 5, "delayMinutes": 10}}}
    task = make_task(store, provider, 4, hopperLevel=10, retryPolicy=policy)
    svc, dispatcher = service(store, provider, clock)
    svc.transition(task.task_id, "start")
    assert len(provider.calls) == 1
    for attempt in range(1, 4):
        assert finish_all(store, task, provider, "busy", clock) == 4
        if attempt == 3:
            break
        clock.advance(minutes=9)
        assert dispatcher.run(task.task_id).released == 0  # the delay holds
        clock.advance(minutes=2)
        assert dispatcher.run(task.task_id).released == 4
    clock.advance(days=1)
    out = dispatcher.run(task.task_id)
    assert out.released == 0 and out.status == "completed"
    for e164 in numbers(4):
        assert len(provider.releases_of(e164)) == 3  # the cap over all outcomes
        contact = store.get_contact(task.task_id, e164)
        assert contact is not None and contact["state"] == "done" and contact["outcome"] == "busy"
        assert contact["attempts"] == 3 and contact["outcomeCounts"] == {"busy": 3}


def test_a_late_result_of_an_earlier_attempt_changes_nothing(store: Store) -> None:
    provider, clock = RecordingProvider(), Clock()
    policy = {"maxAttempts": 2, "outcomes": {"no-answer": {"attempts": 1, "delayMinutes": 1}}}
    task = make_task(store, provider, 1, retryPolicy=policy)
    svc, dispatcher = service(store, provider, clock)
    svc.transition(task.task_id, "start")
    first = next(iter(provider.held.values()))
    finish_all(store, task, provider, "no-answer", clock)
    clock.advance(minutes=2)
    dispatcher.run(task.task_id)
    late = CallEvent(
        provider="nxcloud",
        provider_task_id="ptask-1",
        provider_call_id="late",
        provider_contact_ref=first.release_key,
        phone=first.e164,
        status="completed",
        dedup_key="late",
    )
    assert not on_call_event(store, store.get_task(task.task_id), late, "r-late", clock.now)  # type: ignore[arg-type]
    contact = store.get_contact(task.task_id, first.e164)
    assert contact is not None and contact["state"] == "released" and contact["attempts"] == 2


# ---------------------------------------------------------------- pacing


def test_the_account_cap_holds_across_tasks(store: Store) -> None:
    provider, clock = RecordingProvider({"maxInFlight": 15}), Clock()
    first = make_task(store, provider, 20, hopperLevel=20)
    second = make_task(store, provider, 20, hopperLevel=20)
    svc, _dispatcher = service(store, provider, clock)
    svc.transition(first.task_id, "start")
    svc.transition(second.task_id, "start")
    assert len(provider.held) == 15
    assert store.count_inflight("nxcloud") == 15


def test_releases_per_minute_are_capped(store: Store) -> None:
    provider, clock = RecordingProvider({"maxReleasesPerMinute": 7}), Clock()
    clock.now = (clock.now + timedelta(minutes=1)).replace(second=0)
    task = make_task(store, provider, 20, hopperLevel=20)
    svc, dispatcher = service(store, provider, clock)
    svc.transition(task.task_id, "start")
    assert len(provider.held) == 7
    assert dispatcher.run(task.task_id).released == 0
    clock.advance(minutes=1)
    assert dispatcher.run(task.task_id).released == 7


@pytest.mark.parametrize(
    ("outcome", "carried_on"),
    [
        (DispatchOutcome(task_id="tsk_1", status="dispatched", released=12, time_up=True), True),
        (DispatchOutcome(task_id="tsk_1", status="busy"), True),
        (DispatchOutcome(task_id="tsk_1", status="dispatched", released=MAX_RELEASES_PER_RUN), True),
        (DispatchOutcome(task_id="tsk_1", status="dispatched", released=12), False),
        (DispatchOutcome(task_id="tsk_1", status="idle"), False),
    ],
)
def test_a_start_releases_for_start_run_seconds_and_leaves_the_rest_to_the_dispatch_queue(
    aws: Any, monkeypatch: pytest.MonkeyPatch, outcome: DispatchOutcome, carried_on: bool
) -> None:
    import task_control_handler

    asked: list[float | None] = []
    sent: list[str] = []

    class Run:
        def run(self, task_id: str, *, seconds: float | None = None) -> DispatchOutcome:
            asked.append(seconds)
            return outcome

    monkeypatch.setattr(task_control_handler, "dispatcher", Run)
    monkeypatch.setattr(task_control_handler, "request_dispatch", lambda task_id, reason: sent.append(task_id))
    task_control_handler._dispatch_now("tsk_1")
    assert asked == [START_RUN_SECONDS]
    assert sent == (["tsk_1"] if carried_on else [])

"""The dispatcher: outcall, not the provider, decides which contact is dialled next.

Contacts wait `queued` in their task's hopper (store/hopper.py). While a task runs, `Dispatcher.run`
releases the due ones to the task's provider in waves: each wave takes at most the room left under

- the task's hopper level (released-but-unfinished contacts of the task; `settings.hopperLevel`, by default
  twice its concurrency; `releaseMode: direct` lifts it for provider engines that pace themselves),
- the provider account's cap on released-but-unfinished contacts over all its tasks (provider setting
  `maxInFlight`) and on releases per minute (`maxReleasesPerMinute`),

and sends them in the provider's batch size: one provider call per batch.

Once per attempt: the dispatcher holds the provider account's lease while it works (a second run for the
same account returns `busy` and is tried again), and each contact moves `queued -> releasing` by a
conditional write on the attempt it was read at, so duplicate or concurrent runs release it once. The
release key (store.hopper.release_key) is the same for every send of one attempt, so a contact whose
answer never came (crash, timeout, 5xx after the module's retries) stays `releasing` and is sent again
with the same key once stale: a provider that holds it already answers `already_held`, which counts as
released. Nothing is lost and nothing is released twice for one attempt.

Compliance (outcall.compliance): every contact claimed for release passes the gate before it is sent:
a number on a do-not-call list is skipped (`dnc`), a callee outside its calling window or over a
frequency cap goes back to the hopper due at its next opening (its attempt not spent). The check follows
the claim, so a number listed any time before it is never sent; one listed after it was sent is
withdrawn at the next run (`_withdraw_listed`) where the provider can.

Retries (`retry_decision`) and completion are decided here from the results outcall records, the same on
every provider.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from pydantic import Field

from outcall.compliance import DNC, Gate, Screened
from outcall.errors import NotSupported, ProviderError
from outcall.models import (
    FINAL_CALL_STATUSES,
    CallEvent,
    ContactSpec,
    ContactState,
    Model,
    RetryPolicy,
    RetryRule,
    Task,
    TaskSettings,
)
from outcall.observability import logger, mask_phone
from outcall.providers.base import Provider, batched
from outcall.store import Store, utcnow
from outcall.store.base import _parallel

LEASE_SECONDS: Final = 120
QUIET_WAIT_SECONDS: Final = 10.0  # how long a pause or stop waits for a wave under way to end
STALE_RELEASE_SECONDS: Final = 120  # a `releasing` contact this old lost its answer: send it again
REFUSED_BATCH_DELAY_SECONDS: Final = 300  # a batch the provider refused as a whole is due again after this
MAX_RELEASES_PER_RUN: Final = 5000  # one run's share; the next trigger carries on
MAX_DECISIONS_PER_RUN: Final = 20000  # contacts screened per run (deferred ones included)
# A run inside a start or resume request: waves begin within this many seconds of its start, so the
# request answers well inside API Gateway's 30 s (the provider's start call comes first); what is left
# is carried on from the dispatch queue.
START_RUN_SECONDS: Final = 10.0
RETRYABLE_OUTCOMES: Final = ("no-answer", "busy", "rejected", "failed", "canceled")
CONTACT_FIELDS: Final = ("e164", "name", "company", "externalId", "variables")


def place_in_line(contacts: Sequence[Mapping[str, Any]], now: datetime) -> datetime:
    """When contacts whose release did not happen are due again: their place in line, the earliest
    `dueAt` among them (ahead of those never released), or now when they have none."""
    first = min((str(c.get("dueAt") or "") for c in contacts), default="")
    return datetime.fromisoformat(first) if first else now


class DispatchOutcome(Model):
    task_id: str
    status: str = Field(description="what the run did: dispatched, busy, idle, completed, not-running")
    released: int = 0
    provider_calls: int = 0
    already_held: int = 0
    skipped: int = 0
    requeued: int = 0
    deferred: int = Field(default=0, description="back in the hopper: outside the calling window or over a cap")
    dnc: int = Field(default=0, description="skipped or withdrawn: on a do-not-call list")
    resent: int = 0
    in_flight: int = 0
    next_due_at: str | None = None
    errors: list[str] = Field(default_factory=list)
    time_up: bool = Field(default=False, description="the run's time ran out before its share: another run carries on")


# ---------------------------------------------------------------- rules without a store


def effective_policy(settings: TaskSettings) -> RetryPolicy:
    """The task's retry policy: `retryPolicy`, or the `retry` shorthand, or none (one call per contact)."""
    if settings.retry_policy is not None:
        return settings.retry_policy
    if settings.retry is not None and settings.retry.rounds > 0:
        rule = RetryRule(attempts=settings.retry.rounds, delay_minutes=settings.retry.interval_minutes)
        return RetryPolicy(
            max_attempts=1 + settings.retry.rounds,
            outcomes={"no-answer": rule, "busy": rule, "failed": rule},
        )
    return RetryPolicy(max_attempts=1, outcomes={})


def retry_decision(
    policy: RetryPolicy, outcome: str, *, attempts: int, outcome_counts: Mapping[str, int], now: datetime
) -> datetime | None:
    """When a contact whose call just ended with `outcome` is due again, or None: it is done.
    `attempts` counts every call of the contact so far (this one included), `outcome_counts` its ended
    calls by outcome before this one."""
    rule = policy.outcomes.get(outcome)  # type: ignore[call-overload]
    if rule is None or attempts >= policy.max_attempts:
        return None
    if int(outcome_counts.get(outcome, 0)) + 1 > rule.attempts:
        return None
    return now + timedelta(minutes=rule.delay_minutes)


def hopper_level(task: Task) -> int:
    if task.settings.release_mode == "direct":
        return MAX_RELEASES_PER_RUN
    return task.settings.hopper_level or 2 * task.settings.concurrency


def account_caps(provider: Provider) -> tuple[int | None, int | None]:
    """(released-but-unfinished contacts, releases per minute) allowed for the provider account."""
    caps = []
    for setting in ("maxInFlight", "maxReleasesPerMinute"):
        value = provider.settings.get(setting)
        caps.append(int(value) if value else None)
    return caps[0], caps[1]


def contact_spec(item: Mapping[str, Any]) -> ContactSpec:
    fields = {k: item[k] for k in CONTACT_FIELDS if item.get(k) is not None}
    fields["variables"] = {str(k): str(v) for k, v in (fields.get("variables") or {}).items()}
    return ContactSpec.model_validate(
        {**fields, "releaseKey": item.get("releaseKey"), "attempt": int(item.get("attempts", 1))}
    )


# ---------------------------------------------------------------- the dispatcher


@dataclass
class _Wave:
    released: list[tuple[str, int, str | None]] = field(default_factory=list)
    skipped: list[tuple[str, int, str]] = field(default_factory=list)
    requeue: list[tuple[str, int]] = field(default_factory=list)
    unanswered: list[tuple[str, int]] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)  # e164 -> the release key sent
    already_held: int = 0
    calls: int = 0
    error: str | None = None


class Dispatcher:
    """Releases contacts of running tasks (see the module docstring). `complete(task_id)` is called when
    a running task has nothing queued and nothing in flight (TaskService.complete)."""

    def __init__(
        self,
        store: Store,
        providers: Callable[[str], Provider],
        complete: Callable[[str], object] | None = None,
        clock: Callable[[], datetime] = utcnow,
        gate: Callable[[Store, Task], Gate] = Gate,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        """`gate(store, task)` makes the task's compliance gate (outcall.compliance.Gate; tests give the
        account's caps); `timer` measures a run's time (`seconds`)."""
        self.store = store
        self.providers = providers
        self.complete = complete
        self.clock = clock
        self.gate = gate
        self.timer = timer

    def run(self, task_id: str, *, seconds: float | None = None) -> DispatchOutcome:
        """Release the task's next waves: up to MAX_RELEASES_PER_RUN, and when `seconds` is given no
        wave begins after that many seconds (`time_up`: the caller has another run carry on)."""
        task = self.store.get_task(task_id)
        if task is None or task.status != "running" or not task.provider_task_id:
            return DispatchOutcome(task_id=task_id, status="not-running")
        provider = self.providers(task.provider)
        owner = secrets.token_hex(8)
        if not self.store.take_dispatch_lease(provider.key, owner, LEASE_SECONDS):
            return DispatchOutcome(task_id=task_id, status="busy")
        try:
            return self._run(task, provider, None if seconds is None else self.timer() + seconds)
        finally:
            self.store.drop_dispatch_lease(provider.key, owner)

    def _run(self, task: Task, provider: Provider, until: float | None) -> DispatchOutcome:
        assert task.provider_task_id is not None
        out = DispatchOutcome(task_id=task.task_id, status="dispatched")
        gate = self.gate(self.store, task)
        held = self.store.inflight(provider.key, task.task_id)
        self._withdraw_listed(task, provider, out, held)
        self._resend_stale(task, provider, out, gate, held)
        decisions = 0
        while out.released + out.resent < MAX_RELEASES_PER_RUN and decisions < MAX_DECISIONS_PER_RUN and not out.errors:
            if until is not None and self.timer() >= until:
                out.time_up = True
                break
            if not self._still_running(task.task_id):
                out.status = "not-running"
                return out
            now = self.clock()
            room = min(self._room(task, provider, now), MAX_RELEASES_PER_RUN - out.released)
            if room <= 0:
                break
            due = self.store.due_contacts(task.task_id, now, room)
            if not due:
                break
            claimed = self.store.claim_releases(task.task_id, provider.key, due, now)
            if not claimed:
                break
            decisions += len(claimed)
            self.store.add_contact_counts(task.task_id, {"queued": -len(claimed), "released": len(claimed)})
            if not self._still_running(task.task_id):  # paused or stopped while this wave was claimed
                self._unclaim(task, claimed)
                out.status = "not-running"
                return out
            screened = gate.screen(claimed, now)
            self._settle(task, screened, out)
            if not screened.send:
                continue
            self.store.count_releases(provider.key, now, len(screened.send))
            wave = self._send(task, provider, screened.send)
            self._record(task, wave, out, audits=screened.audits)
        out.in_flight = self.store.count_inflight(provider.key, task.task_id)
        out.next_due_at = self.store.next_due(task.task_id)
        if out.in_flight == 0 and out.next_due_at is None and self._ever_had_contacts(task):
            out.status = "completed"
            if self.complete is not None:
                self.complete(task.task_id)
        elif out.released == 0 and out.resent == 0:
            out.status = "idle"
        logger.info(
            "dispatch",
            extra={k: v for k, v in out.dump().items() if k != "errors"} | {"provider": provider.key},
        )
        return out

    def _room(self, task: Task, provider: Provider, now: datetime) -> int:
        """How many the next wave may release: under the task's hopper level and the account's caps."""
        room = hopper_level(task) - self.store.count_inflight(provider.key, task.task_id)
        max_in_flight, per_minute = account_caps(provider)
        if max_in_flight is not None:
            room = min(room, max_in_flight - self.store.count_inflight(provider.key))
        if per_minute is not None:
            room = min(room, per_minute - self.store.releases_this_minute(provider.key, now))
        return room

    def _still_running(self, task_id: str) -> bool:
        """Read before every wave and again after its claim: a pause or stop ends releases at once,
        not at the end of a run."""
        current = self.store.get_task(task_id)
        return current is not None and current.status == "running"

    def _unclaim(self, task: Task, claimed: Sequence[Mapping[str, Any]]) -> None:
        """Claimed contacts of a task that stopped running meanwhile: back in line, attempt not spent."""
        keys = [(str(c["e164"]), int(c["attempts"])) for c in claimed]
        due = place_in_line(claimed, self.clock())
        moved = self.store.requeue(task.task_id, keys, due, None)
        self.store.add_contact_counts(task.task_id, {"released": -moved, "queued": moved})

    @contextmanager
    def quiet(self, provider_key: str) -> Iterator[bool]:
        """Hold the account's lease while a pause or stop tells the provider (TaskService), waiting up
        to QUIET_WAIT_SECONDS for a run under way, which ends after its current wave once it reads the
        new status: the provider is paused, and what it holds is read, after the last send. True when
        held; a run that outlasts the wait is not waited for."""
        owner = secrets.token_hex(8)
        deadline = time.monotonic() + QUIET_WAIT_SECONDS
        held = self.store.take_dispatch_lease(provider_key, owner, LEASE_SECONDS)
        while not held and time.monotonic() < deadline:
            time.sleep(0.2)
            held = self.store.take_dispatch_lease(provider_key, owner, LEASE_SECONDS)
        if not held:
            logger.warning("a dispatch run outlasted the wait of a pause or stop", extra={"provider": provider_key})
        try:
            yield held
        finally:
            if held:
                self.store.drop_dispatch_lease(provider_key, owner)

    def _ever_had_contacts(self, task: Task) -> bool:
        """Whether the task holds any contact (with nothing queued and nothing in flight, every one of
        them has left the engine): read from the contacts themselves, not from counters."""
        page, _ = self.store.list_contacts(task.task_id, limit=1)
        return bool(page)

    def _settle(self, task: Task, screened: Screened, out: DispatchOutcome) -> None:
        """Contacts the gate stopped: skipped (do-not-call) or back in the hopper (window, cap)."""
        if not screened.skip and not screened.defer:
            return
        skipped, deferred = self.store.settle_screened(task.task_id, screened.skip, screened.defer, DNC)
        self.store.add_contact_counts(
            task.task_id, {"released": -(skipped + deferred), "skipped": skipped, "queued": deferred}
        )
        out.dnc += skipped
        out.skipped += skipped
        out.deferred += deferred
        for e164, _, audit in screened.skip:
            logger.info(
                "contact on a do-not-call list",
                extra={"taskId": task.task_id, "phone": mask_phone(e164), "list": audit.get("dncList")},
            )

    def _withdraw_listed(
        self, task: Task, provider: Provider, out: DispatchOutcome, inflight: Sequence[Mapping[str, Any]]
    ) -> None:
        """Released contacts whose number was listed since: withdrawn at the provider where it can, and
        then skipped (`dnc`); where it cannot, the contact says so (`complianceNote`) and the task goes on."""
        assert task.provider_task_id is not None
        held = [i for i in inflight if i.get("state") == ContactState.RELEASED and not i.get("complianceNote")]
        if not held:
            return
        now = self.clock()
        listed = self.store.listed_numbers([str(i["e164"]) for i in held], task.task_id, now)
        hit = {str(i.get("providerRef") or i["e164"]): i for i in held if str(i["e164"]) in listed}
        if not hit:
            return
        note = None
        try:
            withdrawn = set(provider.cancel_contacts(task.provider_task_id, list(hit)))
        except NotSupported:
            withdrawn = set()
            note = f"listed after release; {provider.key} cannot withdraw released contacts: its call may be placed"
        except ProviderError as exc:  # asked again at the next run; releases go on meanwhile
            logger.warning(
                "provider refused to withdraw listed contacts",
                extra={"taskId": task.task_id, "provider": provider.key, "code": exc.provider_code},
            )
            return
        gone = [(str(i["e164"]), int(i["attempts"])) for r, i in hit.items() if r in withdrawn]
        moved = self.store.mark_skipped(task.task_id, gone, DNC, ContactState.RELEASED)
        self.store.add_contact_counts(task.task_id, {"released": -moved, "skipped": moved})
        out.dnc += moved
        out.skipped += moved
        for ref, item in hit.items():
            if ref not in withdrawn:
                text = note or f"listed after release; {provider.key} did not withdraw it (dialled already?)"
                self.store.note_compliance(task.task_id, str(item["e164"]), int(item["attempts"]), text)
        logger.info(
            "listed numbers withdrawn",
            extra={"taskId": task.task_id, "withdrawn": moved, "kept": len(hit) - len(gone), "provider": provider.key},
        )

    def _resend_stale(
        self, task: Task, provider: Provider, out: DispatchOutcome, gate: Gate, inflight: Sequence[Mapping[str, Any]]
    ) -> None:
        """Contacts left `releasing` by a run that lost its answer: send them again, same release key."""
        limit = (self.clock() - timedelta(seconds=STALE_RELEASE_SECONDS)).isoformat()
        stale = [
            dict(i)
            for i in inflight
            if i.get("state") == ContactState.RELEASING and str(i.get("releasedAt", "")) < limit
        ]
        if not stale:
            return
        logger.info("sending again releases whose answer was lost", extra={"taskId": task.task_id, "n": len(stale)})
        screened = gate.screen(stale, self.clock())
        self._settle(task, screened, out)
        if not screened.send:
            return
        wave = self._send(task, provider, screened.send)
        out.resent += len(wave.released) + len(wave.skipped)
        self._record(task, wave, out, counted=True, audits=screened.audits)

    def _send(self, task: Task, provider: Provider, contacts: Sequence[Mapping[str, Any]]) -> _Wave:
        assert task.provider_task_id is not None
        wave = _Wave()
        for batch in batched(list(contacts), provider.limits.batch_size):
            keys = [(str(c["e164"]), int(c["attempts"])) for c in batch]
            wave.keys.update((str(c["e164"]), str(c["releaseKey"])) for c in batch if c.get("releaseKey"))
            if wave.error is not None:  # an earlier batch failed: these wait for the next run
                wave.unanswered.extend(keys) if wave.error.startswith("retryable") else wave.requeue.extend(keys)
                continue
            wave.calls += 1
            try:
                answers = provider.add_contacts(task.provider_task_id, [contact_spec(c) for c in batch])
            except ProviderError as exc:
                if exc.retryable:
                    wave.error = f"retryable: {exc.message}"
                    wave.unanswered.extend(keys)
                else:
                    wave.error = f"refused: {exc.message}"
                    wave.requeue.extend(keys)
                logger.warning(
                    "provider failed a release",
                    extra={"taskId": task.task_id, "provider": provider.key, "code": exc.provider_code},
                )
                continue
            by_number = {a.e164: a for a in answers}
            for e164, attempt in keys:
                answer = by_number.get(e164)
                if answer is None:
                    wave.unanswered.append((e164, attempt))
                elif answer.accepted or answer.already_held:
                    wave.already_held += int(answer.already_held and not answer.accepted)
                    wave.released.append((e164, attempt, answer.provider_ref))
                else:
                    wave.skipped.append((e164, attempt, f"provider_rejected: {answer.reason or 'refused'}"))
        return wave

    def _record(
        self,
        task: Task,
        wave: _Wave,
        out: DispatchOutcome,
        *,
        counted: bool = False,
        audits: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.store.mark_released(task.task_id, wave.released, audits)
        skipped = 0
        for reason in {r for _, _, r in wave.skipped}:
            skipped += self.store.mark_skipped(
                task.task_id, [(e, a) for e, a, r in wave.skipped if r == reason], reason, ContactState.RELEASING
            )
        requeued = 0
        if wave.requeue:
            due = self.clock() + timedelta(seconds=REFUSED_BATCH_DELAY_SECONDS)
            requeued = self.store.requeue(task.task_id, wave.requeue, due, wave.error or "refused")
            self._give_back([(e, wave.keys[e]) for e, _ in wave.requeue if e in wave.keys])
        if wave.unanswered:
            self.store.note_release_error(task.task_id, wave.unanswered, wave.error or "no answer for this contact")
        self.store.add_contact_counts(
            task.task_id, {"released": -(skipped + requeued), "skipped": skipped, "queued": requeued}
        )
        if not counted:
            out.released += len(wave.released)
        out.provider_calls += wave.calls
        out.already_held += wave.already_held
        out.skipped += skipped
        out.requeued += requeued
        if wave.error:
            out.errors.append(wave.error)
        for e164, _, reason in wave.skipped:
            logger.info("contact skipped", extra={"taskId": task.task_id, "phone": mask_phone(e164), "reason": reason})

    # ------------------------------------------------------------ pause and stop at the provider
    def withdraw(self, task: Task, provider: Provider) -> int:
        """Cancel at the provider what it holds of the task and has not dialled yet (a pause or stop on a
        provider without a pause of its own). The contacts withdrawn go back to the hopper at the attempt
        they had: a resumed task releases them again, a stopped one never does."""
        assert task.provider_task_id is not None
        held = [i for i in self.store.inflight(provider.key, task.task_id) if i.get("state") == ContactState.RELEASED]
        refs = {str(i.get("providerRef") or i["e164"]): i for i in held}
        if not refs:
            return 0
        try:
            withdrawn = provider.cancel_contacts(task.provider_task_id, list(refs))
        except NotSupported:
            return 0
        gone = [refs[r] for r in withdrawn if r in refs]
        back = [(str(i["e164"]), int(i["attempts"])) for i in gone]
        # they keep their place in line: due from when they were released, ahead of those never released
        due = place_in_line(gone, self.clock())
        moved = self.store.requeue(task.task_id, back, due, None, state=ContactState.RELEASED)
        self.store.add_contact_counts(task.task_id, {"released": -moved, "queued": moved})
        self._give_back([(str(i["e164"]), str(i["releaseKey"])) for i in gone if i.get("releaseKey")])
        return moved

    def _give_back(self, releases: Sequence[tuple[str, str]]) -> None:
        """Releases (number, release key) that did not happen (refused batch, withdrawn before dialling)
        do not count on the numbers' frequency caps."""
        _parallel(lambda r: self.store.give_back_attempt(r[0], r[1]), releases)


# ---------------------------------------------------------------- results


STALE_EVENT_SLACK: Final = timedelta(seconds=5)


def on_call_event(store: Store, task: Task, event: CallEvent, record_id: str, now: datetime | None = None) -> bool:
    """A call event of a task's contact: a progress event notes the call on the contact; a final one
    ends the contact's current attempt: it goes back to the hopper when the task's retry policy says
    so, or is done. An event of an earlier release (a provider ref that is neither the current release's
    ref nor its release key, or a call that began before the current release) changes nothing. True
    when the contact's attempt ended here: the dispatcher has room for another contact."""
    if not event.phone:
        return False
    contact = store.get_contact(task.task_id, event.phone)
    if contact is None or contact.get("state") not in (ContactState.RELEASING, ContactState.RELEASED):
        return False
    current = {contact.get("providerRef"), contact.get("releaseKey")} - {None}
    if event.provider_contact_ref and current and event.provider_contact_ref not in current:
        return False  # another release's (its provider ref or its release key)
    released_at = contact.get("releasedAt")
    began = event.started_at or event.occurred_at
    if began is not None and released_at and began < datetime.fromisoformat(released_at) - STALE_EVENT_SLACK:
        return False
    attempt = int(contact.get("attempts", 0))
    if event.status not in FINAL_CALL_STATUSES:
        store.note_call_progress(task.task_id, event.phone, attempt=attempt, status=event.status, record_id=record_id)
        return False
    if event.status == "canceled" and task.status in ("paused", "stopped"):
        return _not_an_attempt(store, task, contact)
    now = now or utcnow()
    due = retry_decision(
        effective_policy(task.settings),
        event.status,
        attempts=attempt,
        outcome_counts=contact.get("outcomeCounts") or {},
        now=now,
    )
    return store.finish_contact_call(
        task.task_id,
        event.phone,
        attempt=attempt,
        outcome=event.status,
        requeue_at=due,
        record_id=record_id,
        provider=task.provider,
    )


def _not_an_attempt(store: Store, task: Task, contact: Mapping[str, Any]) -> bool:
    """A call the provider canceled because outcall paused or stopped the task (xswitch's stop ends
    the calls in progress `canceled`): the contact goes back to its place in line with its attempt not
    spent, and the attempt leaves the number's frequency caps."""
    e164, attempt = str(contact["e164"]), int(contact.get("attempts", 0))
    due = place_in_line([contact], utcnow())
    moved = store.requeue(task.task_id, [(e164, attempt)], due, None, state=str(contact["state"]))
    if not moved:
        return False
    store.add_contact_counts(task.task_id, {"released": -moved, "queued": moved})
    if contact.get("releaseKey"):
        store.give_back_attempt(e164, str(contact["releaseKey"]))
    logger.info("a call canceled by a pause or stop: not an attempt", extra={"taskId": task.task_id})
    return True


# ---------------------------------------------------------------- triggers


class DispatchMessage(Model):
    """The dispatch queue's message: run the dispatcher for one task."""

    task_id: str
    reason: str = "results"


def request_dispatch(task_id: str, reason: str) -> None:
    """Have the dispatcher run for a task soon (a message on the dispatch queue)."""
    from outcall import queues
    from outcall.config import Config

    queues.send(Config.from_env().need("dispatch_queue_url"), DispatchMessage(task_id=task_id, reason=reason))

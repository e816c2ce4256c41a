"""The compliance gate every release passes (dispatch.Dispatcher), and the forecast of a task.

For each contact a dispatcher has just claimed (`releasing`, so no other dispatcher can release it), in
this order:

1. do-not-call (outcall.dnc): the account's and the task's lists, consistent reads at `dncCheckedAt`;
   a listed number is `skipped` with skipReason `dnc`;
2. the calling window (outcall.windows), for a task with `settings.compliance`: closed, or closing within
   the margin, puts the contact back `queued` with `dueAt` at the window's next opening;
3. the frequency caps (outcall.caps): the release is counted on the number's attempt log (every task's
   releases are counted; a task with `settings.compliance` is held to the account's caps and its own):
   a full cap puts the contact back `queued`, due when the cap frees (and its window is open).

Each decision is kept on the contact: `compliance` (the latest) and `complianceLog` (all), with the
zones and window, the cap counts and the time of the do-not-call check (GET /tasks/{taskId}/contacts).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from pydantic import Field

from outcall.caps import CapRule, account_caps, check_caps, effective_caps, judge
from outcall.errors import NotFound
from outcall.models import CallingWindow, ContactState, Model, Task, TaskSettings
from outcall.store import Store
from outcall.windows import HORIZON_DAYS, Rules, check_policy, next_open_at, verdict

DNC: Final = "dnc"
NO_WINDOW_RETRY: Final = timedelta(days=HORIZON_DAYS)  # no opening in the horizon: look again then


def default_zone(settings: TaskSettings) -> str:
    """The zone of a number phonenumbers gives none for: the task's callingWindow timezone."""
    return (settings.calling_window or CallingWindow.model_validate({})).timezone


def validate_settings(settings: TaskSettings, account: Sequence[CapRule] | None = None) -> None:
    """A task's compliance policy may narrow the presets and the account's caps, never widen them (422)."""
    policy = settings.compliance
    if policy is None:
        return
    check_policy(policy.window)
    check_caps(policy.caps, account if account is not None else account_caps())


@dataclass
class Screened:
    send: list[dict[str, Any]] = field(default_factory=list)
    skip: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)
    defer: list[tuple[str, int, datetime, dict[str, Any]]] = field(default_factory=list)
    audits: dict[str, dict[str, Any]] = field(default_factory=dict)  # e164 -> decision of those sent


class Gate:
    """The rules of one task, resolved once per dispatcher run."""

    def __init__(self, store: Store, task: Task, caps: Sequence[CapRule] | None = None) -> None:
        self.store = store
        self.task = task
        policy = task.settings.compliance
        self.rules = Rules.of(policy.window, default_zone(task.settings)) if policy else None
        account = list(caps) if caps is not None else account_caps()
        self.caps = effective_caps(account, policy.caps) if policy else []

    def screen(self, contacts: Sequence[Mapping[str, Any]], now: datetime) -> Screened:
        out = Screened()
        if not contacts:
            return out
        stamp = now.isoformat()
        listed = self.store.listed_numbers([str(c["e164"]) for c in contacts], self.task.task_id, now)
        passing: list[tuple[Mapping[str, Any], dict[str, Any]]] = []
        for contact in contacts:
            e164, attempt = str(contact["e164"]), int(contact["attempts"])
            audit: dict[str, Any] = {"at": stamp, "dncCheckedAt": stamp}
            entry = listed.get(e164)
            if entry is not None:
                audit |= {"decision": "skipped", "rule": DNC, "dncList": entry["scope"], "dncSource": entry["source"]}
                out.skip.append((e164, attempt, audit))
                continue
            if self.rules is not None:
                window = verdict(e164, now, self.rules)
                audit |= {"zones": window.zones, "region": window.region, "hours": window.hours}
                if not window.open:
                    due = window.next_open or now + NO_WINDOW_RETRY
                    audit |= {"decision": "deferred", "rule": "window", "dueAt": due.isoformat()}
                    if window.next_open is None:
                        audit["note"] = f"no open window in the next {HORIZON_DAYS} days"
                    out.defer.append((e164, attempt, due, audit))
                    continue
                audit["openUntil"] = window.open_until.isoformat() if window.open_until else None
            passing.append((contact, audit))

        spends = [(str(c["e164"]), str(c["releaseKey"])) for c, _ in passing]
        verdicts = self.store.spend_attempts(spends, self.caps, now) if spends else []
        for (contact, audit), cap in zip(passing, verdicts, strict=True):
            e164, attempt = str(contact["e164"]), int(contact["attempts"])
            audit["caps"] = cap.counts
            if not cap.allowed:
                assert cap.frees_at is not None
                due = cap.frees_at
                if self.rules is not None:
                    due = next_open_at(e164, cap.frees_at, self.rules) or cap.frees_at + NO_WINDOW_RETRY
                audit |= {"decision": "deferred", "rule": "cap", "dueAt": due.isoformat()}
                out.defer.append((e164, attempt, due, audit))
                continue
            audit["decision"] = "released"
            out.audits[e164] = audit
            out.send.append(dict(contact))
        return out


# ---------------------------------------------------------------- forecast


class ForecastHour(Model):
    hour: datetime = Field(description="the hour, UTC")
    local_hour: str = Field(description="the same hour in the task's zone")
    contacts: int


class Forecast(Model):
    task_id: str
    at: datetime
    zone: str = Field(description="the task's zone (callingWindow.timezone)")
    queued: int
    callable_now: int
    later: list[ForecastHour] = Field(description="queued contacts not callable now, by the hour they become so")
    skipped: dict[str, int] = Field(
        description="queued contacts that would not be called: dnc, cap (frees after the end), window (no opening "
        "before autoStopAt, or in 15 days)"
    )
    until: datetime | None = Field(default=None, description="the task's autoStopAt")


EXAMPLE_FORECAST: Final = {
    "taskId": "tsk_0123456789abcdef01234567",
    "at": "2027-01-05T02:00:00Z",
    "zone": "Asia/Shanghai",
    "queued": 7,
    "callableNow": 3,
    "later": [{"hour": "2027-01-05T13:00:00Z", "localHour": "2027-01-05T21:00:00+08:00", "contacts": 3}],
    "skipped": {"dnc": 1, "cap": 0, "window": 0},
    "until": None,
}


def forecast(
    store: Store, task_id: str, now: datetime, caps: Sequence[CapRule] | None = None, *, batch: int = 500
) -> Forecast:
    """What the gate would decide for every queued contact of the task, without spending anything."""
    task = store.get_task(task_id)
    if task is None:
        raise NotFound(f"no task {task_id!r}")
    gate = Gate(store, task, caps)
    zone = ZoneInfo(default_zone(task.settings))
    end = task.settings.auto_stop_at
    queued = callable_now = 0
    hours: dict[datetime, int] = {}
    skipped = {"dnc": 0, "cap": 0, "window": 0}
    for chunk in _chunks(store.iter_contacts(task_id, status=ContactState.QUEUED), batch):
        numbers = [str(c["e164"]) for c in chunk]
        listed = store.listed_numbers(numbers, task_id, now)
        logs = store.attempt_logs(numbers) if gate.caps else {}
        for contact in chunk:
            queued += 1
            e164 = str(contact["e164"])
            if e164 in listed:
                skipped["dnc"] += 1
                continue
            found = _forecast_one(gate, e164, max(now, _due_of(contact, now)), logs.get(e164, {}), end)
            if isinstance(found, str):
                skipped[found] += 1
                continue
            due = found
            if due <= now:
                callable_now += 1
            else:
                hour = due.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
                hours[hour] = hours.get(hour, 0) + 1
    later = [
        ForecastHour(hour=h, local_hour=h.astimezone(zone).isoformat(), contacts=n) for h, n in sorted(hours.items())
    ]
    return Forecast(
        task_id=task_id,
        at=now,
        zone=str(zone),
        queued=queued,
        callable_now=callable_now,
        later=later,
        skipped=skipped,
        until=end,
    )


def _forecast_one(
    gate: Gate, e164: str, due: datetime, log: Mapping[str, float], end: datetime | None
) -> datetime | str:
    """When the gate would first release this contact (due then), or why it would not before `end`."""
    reason = "window"
    if gate.rules is not None:
        opened = next_open_at(e164, due, gate.rules)
        if opened is None:
            return "window"
        due = opened
    if gate.caps:
        cap = judge(log, gate.caps, due)
        if not cap.allowed:
            assert cap.frees_at is not None
            reason, due = "cap", cap.frees_at
            if gate.rules is not None:
                opened = next_open_at(e164, due, gate.rules)
                if opened is None:
                    return "window"
                due = opened
    if end is not None and due >= end:
        return reason
    return due


def _due_of(contact: Mapping[str, Any], now: datetime) -> datetime:
    raw = contact.get("dueAt")
    return datetime.fromisoformat(str(raw)) if raw else now


def _chunks(items: Iterable[dict[str, Any]], size: int) -> Iterable[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk

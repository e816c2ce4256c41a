"""Conference pre-meeting dialing (DESIGN.md "Conference pre-meeting dialing").

Business rules only. A ConferenceService receives a Store, a provider factory (provider key ->
Provider), the conference schedules and a clock; it never talks to AWS or HTTP itself.

A callee added with `beforeMinutes = m` to a meeting starting at `T` is due at `T - m`. A due time
still ahead gets one one-time schedule per meeting and due time (callees with the same due time
share it; its input carries the meeting's `revision`); a due time already passed is dialled now.
Moving the meeting bumps its revision and moves its schedules; cancelling it removes them. When a
schedule fires, only a matching revision of a scheduled meeting dials anything, and each due
callee is claimed with a conditional write `pending -> dialling` first, so a schedule delivered
twice dials nobody twice. Late firings still dial until the meeting ends (start +
`durationMinutes`, or Quanshi's `meetingend`); after that, callees are recorded as `missed`.

A meeting goes `scheduled -> started -> ended` (or `cancelled`): from the provider's lifecycle
pushes (Quanshi's `meetingbegin` / `meetingend`) and from time, so a meeting whose start has
passed reads as `started` and one past its end as `ended` without any push. A change that would
put the whole meeting in the past (its end at or before now) is refused unless the request says
`confirmPast: true`: it would mark every callee not dialled yet `missed`. Callees a move marked
missed that way are given back (`pending`, scheduled or dialled as their new due time says) when
a later move puts the meeting back into the future; callees missed because the meeting really
ended stay missed.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from pydantic import ConfigDict, Field, StrictBool, field_validator
from pydantic.alias_generators import to_camel

from outcall import limits
from outcall.errors import Conflict, NotFound, ProviderError, Unprocessable
from outcall.models import (
    CallingWindow,
    DialOutcome,
    DialResult,
    InputModel,
    IsoDateTime,
    Meeting,
    MeetingCallee,
    MeetingSchedule,
    Model,
    ProviderKey,
    TaskLifecycleEvent,
)
from outcall.observability import logger, mask_phone
from outcall.providers.base import Provider, batched
from outcall.store import Store, utcnow

ProviderFactory = Callable[[str], Provider]
Clock = Callable[[], datetime]
DEFAULT_DURATION_MINUTES = 120
ERROR_INVALID = 1
ERROR_DUPLICATE = 2
ADD_CALLS_MESSAGE = "Successfully to create the event call!"
# lastResult.reason of a callee marked missed, and of one given back by a later move
MISSED_ENDED = "the meeting had ended"
MISSED_MOVED = "the meeting was moved into the past"
REVIVED = "the meeting was moved back into the future"


class ConferenceScheduler(Protocol):
    def put(self, event_id: str, due_at: datetime, revision: int) -> tuple[str, str]: ...

    def remove(self, event_id: str, due_at: datetime) -> bool: ...


# ---------------------------------------------------------------- API models


class PutMeetingRequest(InputModel):
    title: str = Field(min_length=1, max_length=200)
    start_time: IsoDateTime = Field(description="ISO 8601 with an offset, e.g. 2030-01-01T09:00:00+08:00")
    provider: ProviderKey = Field("quanshi", description="quanshi, or any provider that can dial callees now")
    caller_id: str | None = Field(None, max_length=32)
    duration_minutes: int = Field(DEFAULT_DURATION_MINUTES, ge=1, le=1440, description="when the meeting ends")
    compliance: StrictBool = Field(
        False,
        description="hold callees to calling windows in their local time and the account's frequency caps; off by "
        "default (they registered for this meeting's time). Do-not-call lists hold always.",
    )
    confirm_past: StrictBool = Field(
        False,
        description="true to make a change that puts the whole meeting in the past (startTime + durationMinutes "
        "at or before now): without it such a change is refused (422), since every callee not dialled yet "
        "would be marked missed",
    )

    @field_validator("start_time")
    @classmethod
    def _with_offset(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("give a time zone offset (ISO 8601, e.g. 2030-01-01T09:00:00+08:00)")
        return value.astimezone(UTC).replace(microsecond=0)


class CallListEntry(InputModel):
    """One callee as the seed's `callList` gives it: `mobile`, or `areaCode` + `phone`."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", coerce_numbers_to_str=True
    )

    name: str | None = Field(None, max_length=100)
    company: str | None = Field(None, max_length=200)
    country_code: str | None = Field(None, max_length=8)
    mobile: str | None = Field(None, max_length=32)
    area_code: str | None = Field(None, max_length=8)
    phone: str | None = Field(None, max_length=32)
    role: int = Field(0, ge=0, le=3, description="0 attendee, 1 speaker, 2 host, 3 guest")


class AddCallsRequest(InputModel):
    """The seed's event/call/add body; `token` is accepted and ignored (auth is the bearer token)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", coerce_numbers_to_str=True
    )

    token: str | None = Field(None, max_length=limits.TOKEN_CHARS, description="accepted for compatibility, ignored")
    event_id: str | None = Field(
        None,
        max_length=limits.ID_CHARS,
        description="when given, must be the eventId of the path (a number, as Quanshi sends it, or a string)",
        json_schema_extra={"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]},
    )
    before_minutes: int = Field(30, ge=0, le=60, description="minutes before the start to dial")
    call_list: list[CallListEntry] = Field(min_length=1, max_length=10_000)


class CallRow(Model):
    id: str | None = None
    name: str = ""
    company: str = ""
    country_code: str = ""
    mobile: str = ""
    area_code: str = ""
    phone: str = ""
    error_type: int | None = Field(None, description="1 invalid number, 2 duplicate; failed rows only")


class ScheduledCall(Model):
    success_data: list[CallRow] | None = None
    failed_data: list[CallRow] | None = None


class RealTimeFailure(Model):
    name: str = ""
    company: str = ""
    country_code: str = ""
    area_code: str = ""
    number: str = ""
    error_type: int | None = None


class RealTimeCall(Model):
    failed_data: list[RealTimeFailure] | None = None


class AddCallsData(Model):
    scheduled_call: ScheduledCall | None = None
    real_time_call: RealTimeCall | None = None
    call_type: int = Field(description="1 scheduled before the meeting, 2 dialled now")


class AddCallsAnswer(Model):
    time_stamp: int = Field(description="milliseconds since the epoch")
    code: int = 200
    msg: str = ADD_CALLS_MESSAGE
    data: AddCallsData
    request_id: str = ""


class CalleeView(MeetingCallee):
    due_at: datetime


class MeetingView(Meeting):
    callees: list[CalleeView] = Field(default_factory=list)
    schedules: list[MeetingSchedule] = Field(default_factory=list)


class ConferenceDialEvent(Model):
    kind: Literal["conference-dial"]
    event_id: str
    revision: int
    due_at: datetime


class DialSummary(Model):
    event_id: str
    reason: str
    dialled: int = 0
    failed: int = 0
    missed: int = 0


# ---------------------------------------------------------------- helpers


def new_callee_id() -> str:
    return secrets.token_hex(12)


def due_at(meeting: Meeting, callee: MeetingCallee) -> datetime:
    return meeting.start_time - timedelta(minutes=callee.before_minutes)


def meeting_end(meeting: Meeting) -> datetime:
    if meeting.ended_at is not None:
        return meeting.ended_at
    return meeting.start_time + timedelta(minutes=meeting.duration_minutes)


def effective_status(meeting: Meeting, now: datetime) -> str:
    """The status a meeting reads as: the stored one (from requests and provider pushes), moved on
    by time: `started` once its start has passed, `ended` once its end has."""
    if meeting.status in ("cancelled", "ended"):
        return meeting.status
    if now >= meeting_end(meeting):
        return "ended"
    if meeting.status == "started" or now >= meeting.start_time:
        return "started"
    return "scheduled"


def _refuse_past(request: PutMeetingRequest, now: datetime) -> None:
    """422 unless confirmed: the requested times put the whole meeting in the past."""
    end = request.start_time + timedelta(minutes=request.duration_minutes)
    if end > now or request.confirm_past:
        return
    message = (
        f"the meeting would be over (it would end at {end.isoformat()}, before now, {now.isoformat()}) and "
        "every callee not dialled yet marked missed; send confirmPast: true to do it anyway"
    )
    raise Unprocessable(
        f"startTime: {message}",
        details=[{"field": "startTime", "message": message}, {"field": "confirmPast", "message": "must be true"}],
    )


def _row(entry: CallListEntry, *, callee_id: str | None = None, error: int | None = None) -> CallRow:
    return CallRow(
        id=callee_id,
        name=entry.name or "",
        company=entry.company or "",
        country_code=entry.country_code or "",
        mobile=entry.mobile or "",
        area_code=entry.area_code or "",
        phone=entry.phone or "",
        error_type=error,
    )


def _failure(row: CallRow) -> RealTimeFailure:
    return RealTimeFailure(
        name=row.name,
        company=row.company,
        country_code=row.country_code,
        area_code=row.area_code,
        number=row.mobile or row.phone,
        error_type=row.error_type,
    )


# ---------------------------------------------------------------- the service


class ConferenceService:
    def __init__(
        self,
        store: Store,
        providers: ProviderFactory,
        schedules: ConferenceScheduler | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.store = store
        self.providers = providers
        self.schedules = schedules
        self.clock = clock

    # ------------------------------------------------------------ reads
    def get(self, event_id: str) -> Meeting:
        meeting = self.store.get_meeting(event_id)
        if meeting is None:
            raise NotFound(f"no meeting {event_id!r}")
        return meeting

    def view(self, event_id: str) -> MeetingView:
        meeting, callees, schedules = self.store.meeting_partition(event_id)
        if meeting is None:
            raise NotFound(f"no meeting {event_id!r}")
        views = [CalleeView.model_validate({**dict(c), "due_at": due_at(meeting, c)}) for c in callees]
        status = effective_status(meeting, self.clock())
        return MeetingView.model_validate({**dict(meeting), "status": status, "callees": views, "schedules": schedules})

    # ------------------------------------------------------------ register, move, cancel
    def _dialling_provider(self, key: str) -> Provider:
        provider = self.providers(key)
        if not provider.capabilities.conference_dial:
            raise Unprocessable(
                f"provider: {key!r} cannot dial conference callees",
                details=[{"field": "provider", "message": f"{key} has no conference dialing"}],
            )
        return provider

    def put(self, event_id: str, request: PutMeetingRequest) -> tuple[MeetingView, bool]:
        """Register a meeting, or change it; a new start time moves every schedule (and gives back
        the callees an earlier move into the past marked missed). A change that would put the whole
        meeting in the past needs `confirmPast`. (view, created)"""
        self._dialling_provider(request.provider)
        now = self.clock()
        current = self.store.get_meeting(event_id)
        if current is None:
            _refuse_past(request, now)
            meeting = Meeting(
                event_id=event_id,
                title=request.title,
                start_time=request.start_time,
                provider=request.provider,
                caller_id=request.caller_id,
                duration_minutes=request.duration_minutes,
                compliance=request.compliance,
                created_at=now,
                updated_at=now,
            )
            if not self.store.put_meeting(meeting, expected_version=None):
                raise Conflict(f"meeting {event_id!r} was registered at the same time; read it again")
            logger.info("meeting registered", extra={"eventId": event_id, "provider": meeting.provider})
            return self.view(event_id), True
        moved = current.start_time != request.start_time or current.status == "cancelled"
        if moved or current.duration_minutes != request.duration_minutes:
            _refuse_past(request, now)
        # a moved meeting starts over: what the provider said about the old time no longer holds
        meeting = current.model_copy(
            update={
                "title": request.title,
                "start_time": request.start_time,
                "provider": request.provider,
                "caller_id": request.caller_id,
                "duration_minutes": request.duration_minutes,
                "compliance": request.compliance,
                "status": "scheduled" if moved else current.status,
                "started_at": None if moved else current.started_at,
                "ended_at": None if moved else current.ended_at,
                "revision": current.revision + (1 if moved else 0),
                "updated_at": now,
                "version": current.version + 1,
            }
        )
        if not self.store.put_meeting(meeting, expected_version=current.version):
            raise Conflict(f"another change of meeting {event_id!r} just happened; read it again")
        if moved:
            self._reschedule(meeting)
            logger.info("meeting moved", extra={"eventId": event_id, "revision": meeting.revision})
        return self.view(event_id), False

    def cancel(self, event_id: str) -> None:
        current = self.get(event_id)
        if current.status != "cancelled":
            meeting = current.model_copy(
                update={
                    "status": "cancelled",
                    "revision": current.revision + 1,
                    "updated_at": self.clock(),
                    "version": current.version + 1,
                }
            )
            if not self.store.put_meeting(meeting, expected_version=current.version):
                raise Conflict(f"another change of meeting {event_id!r} just happened; read it again")
        self._remove_schedules(event_id)
        logger.info("meeting cancelled", extra={"eventId": event_id})

    def _remove_schedules(self, event_id: str) -> None:
        _, _, schedules = self.store.meeting_partition(event_id)
        for schedule in schedules:
            if self.schedules is not None:
                self.schedules.remove(event_id, schedule.due_at)
            self.store.delete_meeting_schedule(event_id, schedule)

    def _ensure_schedule(self, meeting: Meeting, when: datetime, existing: Sequence[MeetingSchedule] = ()) -> None:
        if any(s.due_at == when and s.revision == meeting.revision for s in existing):
            return
        if self.schedules is None:
            return
        name, expression = self.schedules.put(meeting.event_id, when, meeting.revision)
        self.store.put_meeting_schedule(
            meeting.event_id, MeetingSchedule(name=name, due_at=when, revision=meeting.revision, expression=expression)
        )

    def _reschedule(self, meeting: Meeting) -> DialSummary:
        """The start moved: drop every schedule, give back the callees an earlier move into the
        past marked missed if the meeting is not over now, schedule the pending callees at their new
        due times and dial those whose new due time has already passed (all of them are marked
        missed, MISSED_MOVED, if the move put the whole meeting in the past)."""
        self._remove_schedules(meeting.event_id)
        _, callees, _ = self.store.meeting_partition(meeting.event_id)
        now = self.clock()
        if now < meeting_end(meeting):
            callees = [self._revive(meeting.event_id, c, now) for c in callees]
        pending = [c for c in callees if c.dial_state == "pending"]
        for when in sorted({due_at(meeting, c) for c in pending if due_at(meeting, c) > now}):
            self._ensure_schedule(meeting, when)
        due = [c for c in pending if due_at(meeting, c) <= now]
        return self._dial(meeting, due, now, reason="moved into the past", missed_reason=MISSED_MOVED)

    def _revive(self, event_id: str, callee: MeetingCallee, now: datetime) -> MeetingCallee:
        """A callee a move into the past marked missed goes back to pending (conditional on it
        still being missed); any other callee is returned as it is."""
        last = callee.last_result
        if callee.dial_state != "missed" or last is None or last.reason != MISSED_MOVED:
            return callee
        result = DialResult(state="pending", reason=REVIVED, at=now)
        changes = {"lastResult": result.dump(), "updatedAt": now.isoformat()}
        if not self.store.set_callee_state(
            event_id, callee.e164, expected=["missed"], state="pending", changes=changes
        ):
            return callee
        logger.info("callee rescheduled", extra={"eventId": event_id, "e164": mask_phone(callee.e164)})
        return callee.model_copy(update={"dial_state": "pending", "last_result": result, "updated_at": now})

    # ------------------------------------------------------------ add callees
    def add_calls(self, event_id: str, request: AddCallsRequest, request_id: str = "") -> AddCallsAnswer:
        if request.event_id is not None and str(request.event_id) != event_id:
            raise Unprocessable(
                "eventId: must be the eventId of the path",
                details=[{"field": "eventId", "message": "must be the eventId of the path"}],
            )
        meeting, _, existing = self.store.meeting_partition(event_id)
        if meeting is None:
            raise NotFound(f"no meeting {event_id!r}")
        now = self.clock()
        status = effective_status(meeting, now)
        if status in ("ended", "cancelled"):
            raise Conflict(f"meeting {event_id!r} is {status}; callees cannot be added")
        when = meeting.start_time - timedelta(minutes=request.before_minutes)
        realtime = when <= now
        accepted: list[tuple[CallRow, MeetingCallee]] = []
        failed: list[CallRow] = []
        seen: set[str] = set()
        # imported here: phone-number parsing (phonenumbers) is only needed to add callees
        from outcall.phones import normalise_callee

        for entry in request.call_list:
            number = normalise_callee(entry)
            if number.e164 is None:
                failed.append(_row(entry, error=ERROR_INVALID))
                continue
            if number.e164 in seen:
                failed.append(_row(entry, error=ERROR_DUPLICATE))
                continue
            seen.add(number.e164)
            callee = MeetingCallee(
                callee_id=new_callee_id(),
                name=entry.name,
                company=entry.company,
                country_code=entry.country_code,
                mobile=entry.mobile,
                area_code=entry.area_code,
                phone=entry.phone,
                role=entry.role,
                e164=number.e164,
                before_minutes=request.before_minutes,
                created_at=now,
                updated_at=now,
            )
            if not self.store.add_meeting_callee(event_id, callee):
                logger.info(
                    "callee already on the meeting", extra={"eventId": event_id, "e164": mask_phone(number.e164)}
                )
                failed.append(_row(entry, error=ERROR_DUPLICATE))
                continue
            accepted.append((_row(entry, callee_id=callee.callee_id), callee))
        logger.info(
            "callees added",
            extra={"eventId": event_id, "accepted": len(accepted), "failed": len(failed), "realtime": realtime},
        )
        stamp = int(time.time() * 1000)
        if not realtime:
            if accepted:
                self._ensure_schedule(meeting, when, existing)
            data = AddCallsData(
                scheduled_call=ScheduledCall(
                    success_data=[row for row, _ in accepted] or None, failed_data=failed or None
                ),
                real_time_call=None,
                call_type=1,
            )
            return AddCallsAnswer(time_stamp=stamp, data=data, request_id=request_id)
        outcomes = self._dial(
            meeting, [c for _, c in accepted], now, reason="added after its due time", on_error="fail"
        )
        refused = {o.e164: o for o in outcomes.get("outcomes", []) if not o.accepted}
        for row, callee in accepted:
            outcome = refused.get(callee.e164)
            if outcome is not None:
                error = {"invalid-number": ERROR_INVALID, "duplicate": ERROR_DUPLICATE}.get(outcome.reason or "")
                failed.append(row.model_copy(update={"error_type": error}))
        data = AddCallsData(
            scheduled_call=None,
            real_time_call=RealTimeCall(failed_data=[_failure(r) for r in failed] or None),
            call_type=2,
        )
        return AddCallsAnswer(time_stamp=stamp, data=data, request_id=request_id)

    # ------------------------------------------------------------ dialing
    def _mark(self, event_id: str, callee: MeetingCallee, expected: str, result: DialResult) -> bool:
        return self.store.set_callee_state(
            event_id,
            callee.e164,
            expected=[expected],
            state=result.state,
            changes={"lastResult": result.dump(), "updatedAt": result.at.isoformat()},
        )

    def _dial(
        self,
        meeting: Meeting,
        callees: Sequence[MeetingCallee],
        now: datetime,
        *,
        reason: str,
        on_error: Literal["revert", "fail"] = "revert",
        missed_reason: str = MISSED_ENDED,
    ) -> Any:
        """Dial pending `callees` now (or record them missed, `missed_reason`, once the meeting has ended)."""
        summary: dict[str, Any] = {"event_id": meeting.event_id, "reason": reason, "outcomes": []}
        counts = {"dialled": 0, "failed": 0, "missed": 0}
        if not callees:
            return {**summary, **counts}
        if now >= meeting_end(meeting):
            for c in callees:
                result = DialResult(state="missed", reason=missed_reason, at=now)
                if self._mark(meeting.event_id, c, "pending", result):
                    counts["missed"] += 1
            logger.info("callees missed", extra={"eventId": meeting.event_id, "missed": counts["missed"]})
            return {**summary, **counts, "reason": "meeting ended"}
        claimed = [
            c
            for c in callees
            if self.store.set_callee_state(
                meeting.event_id, c.e164, expected=["pending"], state="dialling", changes={"updatedAt": now.isoformat()}
            )
        ]
        claimed = self._refuse_listed(meeting, claimed, now, summary, counts)
        if not claimed:
            return {**summary, **counts}
        provider = self._dialling_provider(meeting.provider)
        # minutes from now to the start (0 once it has started), so the provider dials now
        before_minutes = max(0, min(60, math.ceil((meeting.start_time - now).total_seconds() / 60)))
        batches = list(batched(claimed, provider.limits.batch_size))
        for i, batch in enumerate(batches):
            try:
                outcomes: list[DialOutcome] = provider.dial_now(meeting.event_id, batch, before_minutes)
            except Exception as exc:
                rest = [c for b in batches[i:] for c in b]
                if on_error == "revert" or not isinstance(exc, ProviderError):
                    for c in rest:
                        self.store.set_callee_state(meeting.event_id, c.e164, expected=["dialling"], state="pending")
                    raise
                message = getattr(exc, "message", str(exc))
                for c in rest:
                    self._mark(meeting.event_id, c, "dialling", DialResult(state="failed", reason=message, at=now))
                    summary["outcomes"].append(DialOutcome(e164=c.e164, accepted=False, reason=message))
                    counts["failed"] += 1
                break
            for c, outcome in zip(batch, outcomes, strict=False):
                state: Literal["dialled", "failed"] = "dialled" if outcome.accepted else "failed"
                result = DialResult(
                    state=state, reason=outcome.reason, provider_call_id=outcome.provider_call_id, at=now
                )
                self._mark(meeting.event_id, c, "dialling", result)
                summary["outcomes"].append(outcome.model_copy(update={"e164": c.e164}))
                counts[state] += 1
        logger.info(
            "callees dialled",
            extra={"eventId": meeting.event_id, "batches": len(batches), **counts, "reason": reason},
        )
        return {**summary, **counts}

    def _refuse_listed(
        self,
        meeting: Meeting,
        claimed: list[MeetingCallee],
        now: datetime,
        summary: dict[str, Any],
        counts: dict[str, int],
    ) -> list[MeetingCallee]:
        """Callees whose number is on the account's do-not-call list (outcall.dnc) are not dialled: they
        fail with reason `dnc`. The check follows the claim, so a number listed before it is never dialled.
        A meeting with `compliance` also holds them to their calling window (region presets, default
        hours) and the account's frequency caps (a dial counts on the number's attempt log): reasons
        `window` and `cap`."""
        from outcall.caps import account_caps
        from outcall.models import WindowPolicy
        from outcall.windows import Rules, verdict

        def refuse(c: MeetingCallee, reason: str, detail: str) -> None:
            self._mark(
                meeting.event_id, c, "dialling", DialResult(state="failed", reason=f"{reason}: {detail}", at=now)
            )
            summary["outcomes"].append(DialOutcome(e164=c.e164, accepted=False, reason=reason))
            counts["failed"] += 1

        listed = self.store.listed_numbers([c.e164 for c in claimed], None, now)
        passing = []
        for c in claimed:
            if c.e164 in listed:
                refuse(c, "dnc", "on the account's do-not-call list")
            else:
                passing.append(c)
        if not meeting.compliance or not passing:
            return passing
        rules = Rules.of(WindowPolicy.model_validate({}), CallingWindow.model_validate({}).timezone)
        open_now = []
        for c in passing:
            window = verdict(c.e164, now, rules)
            if window.open:
                open_now.append(c)
            else:
                opens = window.next_open.isoformat() if window.next_open else "not within 15 days"
                refuse(c, "window", f"closed at the callee ({', '.join(window.zones)}); opens {opens}")
        keys = [(c.e164, f"meeting-{meeting.event_id}-{meeting.revision}-{c.e164}") for c in open_now]
        verdicts = self.store.spend_attempts(keys, account_caps(), now) if keys else []
        dialled = []
        for c, cap in zip(open_now, verdicts, strict=True):
            if cap.allowed:
                dialled.append(c)
            else:
                refuse(c, "cap", f"{cap.counts} calls in the cap windows; frees at {cap.frees_at}")
        return dialled

    def _summary(self, raw: Any) -> DialSummary:
        return DialSummary.model_validate({k: v for k, v in raw.items() if k != "outcomes"})

    def fire(self, event: ConferenceDialEvent) -> DialSummary:
        """A dialing schedule fired. A cancelled, ended or moved meeting dials nobody; each due
        pending callee is claimed before it is dialled. A provider failure is raised (the claims are
        given back) so Scheduler retries, then dead-letters."""
        meeting, callees, schedules = self.store.meeting_partition(event.event_id)
        if meeting is None:
            return DialSummary(event_id=event.event_id, reason="meeting unknown")
        for s in schedules:
            if s.due_at == event.due_at and s.revision == event.revision:
                self.store.delete_meeting_schedule(meeting.event_id, s)
        if meeting.status == "cancelled":
            return DialSummary(event_id=event.event_id, reason="meeting cancelled")
        if meeting.revision != event.revision:
            return DialSummary(event_id=event.event_id, reason=f"meeting moved (revision {meeting.revision})")
        now = self.clock()
        cutoff = max(now, event.due_at)
        due = [c for c in callees if c.dial_state == "pending" and due_at(meeting, c) <= cutoff]
        return self._summary(self._dial(meeting, due, now, reason="schedule"))

    # ------------------------------------------------------------ provider lifecycle pushes
    def _pushed_meeting(self, event: TaskLifecycleEvent) -> tuple[Meeting, list[MeetingCallee]] | None:
        if not event.provider_task_id:
            return None
        meeting, callees, _ = self.store.meeting_partition(event.provider_task_id)
        if meeting is None or meeting.provider != event.provider:
            return None
        return meeting, callees

    def _save(self, current: Meeting, **changes: Any) -> Meeting:
        meeting = current.model_copy(update={**changes, "updated_at": self.clock(), "version": current.version + 1})
        if not self.store.put_meeting(meeting, expected_version=current.version):
            raise Conflict(f"another change of meeting {current.event_id!r} just happened")
        return meeting

    def on_meetingbegin(self, event: TaskLifecycleEvent) -> DialSummary:
        """The meeting has begun (`scheduled -> started`): every callee still pending is dialled at once."""
        found = self._pushed_meeting(event)
        if found is None:
            return DialSummary(event_id=event.provider_task_id or "", reason="meeting unknown")
        meeting, callees = found
        if meeting.status in ("ended", "cancelled"):
            return DialSummary(event_id=meeting.event_id, reason=f"meeting {meeting.status}")
        now = self.clock()
        if meeting.status != "started" or meeting.started_at is None:
            meeting = self._save(meeting, status="started", started_at=meeting.started_at or now)
        pending = [c for c in callees if c.dial_state == "pending"]
        return self._summary(self._dial(meeting, pending, now, reason="meetingbegin"))

    def on_meetingend(self, event: TaskLifecycleEvent) -> DialSummary:
        """The meeting has ended (`started -> ended`): callees not dialled yet are missed; its schedules go."""
        found = self._pushed_meeting(event)
        if found is None:
            return DialSummary(event_id=event.provider_task_id or "", reason="meeting unknown")
        meeting, callees = found
        now = self.clock()
        if meeting.status in ("scheduled", "started"):
            meeting = self._save(meeting, status="ended", ended_at=now)
        self._remove_schedules(meeting.event_id)
        missed = 0
        for c in callees:
            if c.dial_state == "pending" and self._mark(
                meeting.event_id, c, "pending", DialResult(state="missed", reason=MISSED_ENDED, at=now)
            ):
                missed += 1
        return DialSummary(event_id=meeting.event_id, reason="meetingend", missed=missed)

    def on_update(self, event: TaskLifecycleEvent) -> DialSummary:
        """The provider changed the meeting: a new start time reschedules, a cancellation cancels."""
        found = self._pushed_meeting(event)
        if found is None:
            return DialSummary(event_id=event.provider_task_id or "", reason="meeting unknown")
        meeting, _ = found
        if event.status == "cancelled":
            self.cancel(meeting.event_id)
            return DialSummary(event_id=meeting.event_id, reason="meeting cancelled")
        start = event.start_time.astimezone(UTC).replace(microsecond=0) if event.start_time else None
        if start is None or start == meeting.start_time or meeting.status not in ("scheduled", "started"):
            return DialSummary(event_id=meeting.event_id, reason="nothing to change")
        meeting = self._save(
            meeting, start_time=start, revision=meeting.revision + 1, status="scheduled", started_at=None
        )
        summary = self._summary(self._reschedule(meeting))
        return summary.model_copy(update={"reason": "rescheduled"})

    def on_lifecycle(self, event: TaskLifecycleEvent) -> DialSummary:
        handlers = {"meetingbegin": self.on_meetingbegin, "meetingend": self.on_meetingend, "update": self.on_update}
        handler = handlers.get(event.kind)
        if handler is None:
            return DialSummary(event_id=event.provider_task_id or "", reason=f"ignored {event.kind}")
        return handler(event)


# ---------------------------------------------------------------- entry points for other functions


def default_service() -> ConferenceService:
    """The service of this Lambda environment: default store, provider settings from the secret,
    the conference schedules."""
    from outcall.config import provider_settings
    from outcall.providers import get_provider
    from outcall.schedules import ConferenceSchedules
    from outcall.store import default_store

    return ConferenceService(default_store(), lambda key: get_provider(key, provider_settings()), ConferenceSchedules())


def on_meetingbegin(event: TaskLifecycleEvent, service: ConferenceService | None = None) -> DialSummary:
    return (service or default_service()).on_meetingbegin(event)


def on_meetingend(event: TaskLifecycleEvent, service: ConferenceService | None = None) -> DialSummary:
    return (service or default_service()).on_meetingend(event)


def on_update(event: TaskLifecycleEvent, service: ConferenceService | None = None) -> DialSummary:
    return (service or default_service()).on_update(event)


def on_lifecycle(event: TaskLifecycleEvent, service: ConferenceService | None = None) -> DialSummary | None:
    """A provider's meeting push (quanshi meetingbegin / meetingend / update); other providers'
    lifecycle pushes are not about meetings."""
    if event.kind not in {"meetingbegin", "meetingend", "update"}:
        return None
    return (service or default_service()).on_lifecycle(event)


def fire(event: ConferenceDialEvent, service: ConferenceService | None = None) -> DialSummary:
    return (service or default_service()).fire(event)

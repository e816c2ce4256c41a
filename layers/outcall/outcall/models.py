"""pydantic v2 domain models: what the API accepts and answers, what the store keeps,
and what providers take and give. JSON is camelCase; Python attributes are snake_case."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from outcall import limits

ProviderKey = Literal["quanshi", "xswitch", "aliyun", "nxcloud", "airudder"]
PROVIDER_KEYS: tuple[str, ...] = ("quanshi", "xswitch", "aliyun", "nxcloud", "airudder")
TaskType = Literal["auto", "predictive", "robot"]
TaskStatus = Literal["ready", "running", "paused", "stopped", "completed", "failed"]
# One outcome vocabulary for every provider. `answered` is a call in progress; a call ends as one of
# the final statuses: `completed` (it was answered), `no-answer`, `busy`, `rejected` (the callee or
# the network refused it), `failed` (it could not be placed), `canceled` (withdrawn before it was placed).
CallStatus = Literal[
    "queued", "ringing", "answered", "no-answer", "busy", "rejected", "failed", "canceled", "completed"
]
FINAL_CALL_STATUSES: frozenset[str] = frozenset({"no-answer", "busy", "rejected", "failed", "canceled", "completed"})
ContactOutcomeKind = Literal["accepted", "duplicate", "invalid"]
ImportStatus = Literal["waiting", "queued", "running", "completed", "partial", "failed"]


def _iso_only(value: Any) -> Any:
    """pydantic reads a number (`0`, `"0.5"`) as a Unix time; the API takes ISO 8601 only."""
    number = r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*"  # 0, 0.5, .5, -1.4e+16
    if isinstance(value, int | float) or (isinstance(value, str) and re.fullmatch(number, value)):
        raise ValueError("an ISO 8601 date-time, e.g. 2030-01-01T09:00:00+08:00")
    return value


# A date-time as the OpenAPI document says it (`format: date-time`): ISO 8601 text, never a number.
IsoDateTime = Annotated[datetime, BeforeValidator(_iso_only)]


class Model(BaseModel):
    """camelCase on the wire, snake_case in Python; both accepted on input.

    Schemas are built on first use (`defer_build`), not at import: a cold start builds those of
    the models its request touches, not the few dozen every handler imports."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, defer_build=True)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class InputModel(Model):
    """Request bodies: an unknown field is an error, not silently dropped."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", defer_build=True)


# ---------------------------------------------------------------- tasks


class RetryStrategy(InputModel):
    rounds: int = Field(0, ge=0, le=10, description="redial rounds after the first attempt")
    interval_minutes: int = Field(30, ge=1, le=1440, description="minutes between rounds")


# providerOptions: a JSON object handed to the provider; bounded so the task item stays storable
ProviderOptions = Annotated[
    dict[str, Any],
    Field(
        max_length=limits.PROVIDER_OPTIONS_KEYS,
        description=f"provider-specific options (see README); at most {limits.PROVIDER_OPTIONS_BYTES} bytes as "
        f"JSON, nested at most {limits.PROVIDER_OPTIONS_DEPTH} levels, numbers of at most "
        f"{limits.DYNAMODB_NUMBER_DIGITS} digits",
    ),
    AfterValidator(
        limits.bounded_json(max_bytes=limits.PROVIDER_OPTIONS_BYTES, max_depth=limits.PROVIDER_OPTIONS_DEPTH)
    ),
]
CallerId = Annotated[str, Field(min_length=1, max_length=limits.CALLER_ID_CHARS)]
# a default region for numbers without a country code: one phonenumbers knows, upper-cased
Region = Annotated[str, Field(min_length=2, max_length=2, pattern="^[A-Za-z]{2}$"), AfterValidator(limits.known_region)]


class CallingWindow(InputModel):
    timezone: str = Field(
        "Asia/Shanghai", min_length=1, max_length=limits.TIMEZONE_CHARS, description="IANA timezone name"
    )
    start: time = Field(time(9, 0))
    end: time = Field(time(20, 0))
    weekdays: list[int] = Field(
        default_factory=lambda: [1, 2, 3, 4, 5, 6, 7],
        max_length=limits.MAX_WEEKDAYS,
        description="ISO weekdays, 1=Monday",
    )
    blackout_dates: list[date] = Field(default_factory=list, max_length=limits.MAX_BLACKOUT_DATES)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise ValueError(f"unknown IANA timezone {value!r}") from exc
        return value

    @field_validator("weekdays")
    @classmethod
    def _iso_weekdays(cls, value: list[int]) -> list[int]:
        if not value or any(d < 1 or d > 7 for d in value):
            raise ValueError("weekdays are ISO numbers 1 (Monday) to 7 (Sunday), at least one")
        return sorted(set(value))


RetryOutcome = Literal["no-answer", "busy", "rejected", "failed", "canceled"]


class RetryRule(InputModel):
    attempts: int = Field(ge=0, le=10, description="calls after one that ended with this outcome")
    delay_minutes: int = Field(ge=1, le=10080, description="minutes before the contact is due again")


class RetryPolicy(InputModel):
    """Retries decided by outcall, the same on every provider: after a call ends with an outcome
    named here, the contact goes back in the hopper, due `delayMinutes` later, while its calls
    with that outcome stay under `attempts` and all its calls under `maxAttempts`."""

    max_attempts: int = Field(3, ge=1, le=20, description="calls per contact over all outcomes")
    outcomes: dict[RetryOutcome, RetryRule] = Field(default_factory=dict)


# ---------------------------------------------------------------- compliance (README "Compliance")

ALL_DAYS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7)
DEFAULT_MARGIN_MINUTES = 10
MAX_CAP_WINDOW_HOURS = 31 * 24


def minutes_of(text: str) -> int:
    """ "HH:MM" -> minutes from midnight."""
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


class Hours(InputModel):
    """Opening hours on some weekdays, in the callee's local time; `end` may be 24:00."""

    days: list[int] = Field(default_factory=lambda: list(ALL_DAYS), description="ISO weekdays, 1=Monday")
    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM")
    end: str = Field(pattern=r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$", description="HH:MM, after start")

    @field_validator("days")
    @classmethod
    def _iso_days(cls, value: list[int]) -> list[int]:
        if not value or any(d < 1 or d > 7 for d in value):
            raise ValueError("days are ISO weekdays 1 (Monday) to 7 (Sunday), at least one")
        return sorted(set(value))

    @model_validator(mode="after")
    def _ordered(self) -> Hours:
        if minutes_of(self.end) <= minutes_of(self.start):
            raise ValueError("end must be after start (a window does not cross midnight: give two)")
        return self


class WindowPolicy(InputModel):
    """A task's calling window (README "Compliance")."""

    hours: list[Hours] | None = Field(
        None, description="weekly hours for every callee (default: the region's preset, else 09:00-20:00)"
    )
    regions: dict[str, list[Hours]] = Field(
        default_factory=dict, description="hours per ISO region (e.g. US); must lie within the region's preset"
    )
    restricted_dates: list[date] = Field(default_factory=list, description="no calls on these local dates")
    margin_minutes: int = Field(
        DEFAULT_MARGIN_MINUTES, ge=0, le=240, description="released only while the window stays open this long"
    )

    @field_validator("regions")
    @classmethod
    def _regions(cls, value: dict[str, list[Hours]]) -> dict[str, list[Hours]]:
        out = {}
        for region, hours in value.items():
            if len(region) != 2 or not region.isalpha():
                raise ValueError(f"{region!r} is not an ISO 3166 region code")
            out[region.upper()] = hours
        return out


class CapRule(InputModel):
    attempts: int = Field(ge=1, le=1000, description="releases of one number allowed in the window")
    window_hours: int = Field(
        ge=1, le=MAX_CAP_WINDOW_HOURS, description="the rolling window, in hours (at most 31 days)"
    )

    @property
    def window(self) -> timedelta:
        return timedelta(hours=self.window_hours)

    def label(self) -> str:
        return f"{self.attempts}/{self.window_hours}h"


class CompliancePolicy(InputModel):
    """A task's compliance rules beyond the do-not-call lists (which hold for every task): its calling
    window in the callee's local time (outcall.windows) and its frequency caps (outcall.caps). A task
    with this object is held to the region presets and the account's caps; `caps` adds stricter ones."""

    window: WindowPolicy = Field(default_factory=lambda: WindowPolicy.model_validate({}))
    caps: list[CapRule] = Field(default_factory=list, max_length=10, description="stricter caps for this task")


class TaskSettings(InputModel):
    caller_ids: list[CallerId] = Field(default_factory=list, max_length=limits.MAX_CALLER_IDS)
    concurrency: int = Field(1, ge=1, le=1000)
    ring_timeout_seconds: int = Field(30, ge=5, le=120)
    retry: RetryStrategy | None = Field(
        None,
        description="shorthand for retryPolicy: `rounds` retries of no-answer, busy and failed calls, "
        "`intervalMinutes` apart (retryPolicy wins when both are given)",
    )
    retry_policy: RetryPolicy | None = None
    hopper_level: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="at most this many contacts released and not finished at the provider (default: 2 x concurrency)",
    )
    release_mode: Literal["paced", "direct"] = Field(
        "paced",
        description="`direct`: every callable contact is released at start, for provider engines that pace "
        "by agents themselves (aliyun predictive)",
    )
    provider_redial: StrictBool = Field(
        False, description="let the provider redial by its own rules too (off: outcall decides every retry)"
    )
    calling_window: CallingWindow | None = None
    compliance: CompliancePolicy | None = Field(
        None, description="calling windows in the callee's local time and frequency caps (README: Compliance)"
    )
    auto_start_at: datetime | None = None
    auto_stop_at: datetime | None = None
    provider_options: ProviderOptions = Field(default_factory=dict)


class Task(Model):
    task_id: str
    name: str
    provider: ProviderKey
    type: TaskType
    status: TaskStatus = "ready"
    settings: TaskSettings = Field(default_factory=lambda: TaskSettings.model_validate({}))
    provider_task_id: str | None = None
    provider_state: str | None = Field(
        default=None, description="what the provider was last told: running, paused or stopped"
    )
    provider_note: str | None = Field(default=None, description="why the provider could not follow the last change")
    auto_delete: bool = False
    created_at: datetime
    updated_at: datetime
    version: int = 0


# ---------------------------------------------------------------- contacts and imports


class ContactSpec(Model):
    """A contact as providers receive it: the number is already E.164."""

    e164: str
    name: str | None = None
    company: str | None = None
    external_id: str | None = None
    variables: dict[str, str] = Field(default_factory=dict)
    release_key: str | None = Field(
        default=None,
        description="unique per contact and attempt (set by the dispatcher): providers that take a client-side id "
        "per number (nxcloud orderID, airudder case_id) send it, so a batch sent again is recognised",
    )
    attempt: int = 1


class ContactOutcome(Model):
    """A provider's per-contact answer to an add-contacts call. `already_held`: the provider refused it
    because it already holds this very release (same release key): it has the contact, so it counts as added."""

    e164: str
    accepted: bool
    reason: str | None = None
    provider_ref: str | None = None
    already_held: bool = False


class ContactState(StrEnum):
    """Where a contact is in the dialing engine (see dispatch.py)."""

    QUEUED = "queued"  # waits in the hopper; `dueAt` says from when it may be released
    RELEASING = "releasing"  # a dispatcher is handing it to the provider (attempt counted, answer not yet kept)
    RELEASED = "released"  # at the provider, its call not ended yet
    DONE = "done"  # final: `outcome` is how its last call ended
    SKIPPED = "skipped"  # final without a call: `skipReason` says why


class Contact(Model):
    """A contact of a task: one per E.164 number. `state` is its place in the dialing engine,
    `attempts` how often it was released, `callStatus` the status of its latest call."""

    task_id: str
    e164: str
    name: str | None = None
    company: str | None = None
    external_id: str | None = None
    variables: dict[str, str] = Field(default_factory=dict)
    import_id: str
    row: int = Field(description="the row of the call list (or position in the JSON request, from 1)")
    state: ContactState = ContactState.QUEUED
    attempts: int = 0
    due_at: datetime | None = Field(default=None, description="queued: not released before this time")
    released_at: datetime | None = None
    outcome: str | None = Field(default=None, description="done: how its last call ended")
    skip_reason: str | None = None
    last_error: str | None = Field(default=None, description="why the last release did not reach the provider")
    provider_ref: str | None = None
    outcome_counts: dict[str, int] = Field(default_factory=dict, description="ended calls by outcome")
    call_status: CallStatus | None = None
    call_record_id: str | None = None
    compliance: dict[str, Any] | None = Field(
        default=None, description="the latest compliance decision: released, deferred or skipped, and why"
    )
    compliance_log: list[dict[str, Any]] = Field(default_factory=list, description="every compliance decision")
    compliance_note: str | None = Field(default=None, description="listed after release: what was done")
    created_at: datetime
    updated_at: datetime


class CallListFile(Model):
    """What the import made of an uploaded file."""

    kind: Literal["csv", "xlsx", "json"] = Field(description="json: a JSON request of more than 1,000 contacts")
    header: list[str] = Field(default_factory=list)
    encoding: str | None = None
    delimiter: str | None = None
    sheet: str | None = None


class ImportStall(Model):
    """What the stalled-import check found on an import that has not moved for too long."""

    since: datetime = Field(description="the import's last progress")
    checked_at: datetime
    reason: str = Field(description="why it is not moving, as far as the check can tell")


class ImportJob(Model):
    """One import of contacts into a task: an uploaded file worked through in chunks, or a JSON
    request. `rows = accepted + duplicate + invalid` once it is completed, partial or failed;
    while running, `rowsRead` says how far the file has been read and `chunksDone` of `chunks`
    how far the rows have been worked."""

    import_id: str
    task_id: str
    source: Literal["s3", "json", "clone"]
    clone_of: str | None = Field(default=None, description="for a clone: the task whose contacts are copied")
    status: ImportStatus = "queued"
    object_key: str | None = None
    object_version: str | None = None
    filename: str | None = None
    default_region: str = "CN"
    sheet: str | None = None
    file: CallListFile | None = None
    rows_read: int = 0
    chunks: int | None = None
    chunks_done: int = 0
    rows: int = 0
    accepted: int = 0
    duplicate: int = 0
    invalid: int = 0
    reasons: dict[str, int] = Field(default_factory=dict, description="duplicate and invalid rows by reason")
    report_key: str | None = None
    report_url: str | None = Field(default=None, description="a short-lived link to the row-level report")
    error: str | None = Field(
        default=None,
        description="why the import is partial or failed: the file broke off, a chunk or the upload event failed "
        "every attempt (DLQ), the task went away",
    )
    last_error: str | None = Field(
        default=None, description="the error of the last failed attempt of a step; it is tried again (3 in all)"
    )
    stalled: ImportStall | None = Field(
        default=None, description="set by the stalled-import check while the import has not moved for 30 minutes"
    )
    upload_of: str | None = Field(
        default=None, description="for a later PUT of an upload URL: the import that URL was given with"
    )
    later_imports: list[str] = Field(
        default_factory=list, description="imports started by later PUTs of this import's upload URL, in order"
    )
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


# ---------------------------------------------------------------- conferences


class Callee(Model):
    """A meeting participant to dial; `e164` is filled once phones.py has normalised the number."""

    callee_id: str | None = None
    name: str | None = None
    company: str | None = None
    country_code: str | None = None
    mobile: str | None = None
    area_code: str | None = None
    phone: str | None = None
    role: int = Field(0, ge=0, le=3, description="0 attendee, 1 speaker, 2 host, 3 guest")
    e164: str | None = None


class DialOutcome(Model):
    """A provider's answer for one callee of a dial-now request."""

    e164: str
    accepted: bool
    reason: str | None = None
    provider_call_id: str | None = None


# ---------------------------------------------------------------- call results


class CallEvent(Model):
    """One normalised call result, whatever provider it came from."""

    provider: ProviderKey
    dedup_key: str = Field(description="stable across redeliveries of the same push or poll row")
    provider_call_id: str | None = None
    provider_task_id: str | None = None
    provider_contact_ref: str | None = None
    phone: str | None = Field(None, description="E.164 where the provider gives a number")
    status: CallStatus
    attempt: int = 1
    started_at: datetime | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    duration_seconds: int | None = None
    hangup_cause: str | None = None
    intents: list[str] = Field(default_factory=list)
    recording_url: str | None = None
    occurred_at: datetime | None = None
    raw: dict[str, Any] = Field(default_factory=dict)


class TaskLifecycleEvent(Model):
    """A provider's push about a task or meeting as a whole (not one call)."""

    provider: ProviderKey
    dedup_key: str
    kind: str = Field(description="e.g. task-status, meetingbegin, meetingend, update")
    provider_task_id: str | None = None
    status: str | None = None
    start_time: datetime | None = None
    raw: dict[str, Any] = Field(default_factory=dict)


# ---------------------------------------------------------------- auth


class ApiToken(Model):
    token_hash: str
    name: str
    created_at: datetime


class CallRecord(Model):
    """One call as outcall keeps it: the latest state of every event received about that call.
    `record_id` is `<provider>:<providerCallId>` (or the event's dedup key when the provider names no
    call); `task_id` is None when no task here has the provider task id of the call."""

    record_id: str
    task_id: str | None = None
    provider: ProviderKey
    provider_call_id: str | None = None
    provider_task_id: str | None = None
    provider_contact_ref: str | None = None
    phone: str | None = Field(None, description="the contact's number, E.164")
    attempt: int = 1
    status: CallStatus
    started_at: datetime | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    duration_seconds: int | None = None
    hangup_cause: str | None = None
    intents: list[str] = Field(default_factory=list)
    recording_url: str | None = None
    raw: dict[str, Any] = Field(default_factory=dict, description="the provider's payload of the latest event applied")
    first_seen_at: datetime
    updated_at: datetime


# ---------------------------------------------------------------- conference meetings

DialState = Literal["pending", "dialling", "dialled", "failed", "missed"]
MeetingStatus = Literal["scheduled", "started", "ended", "cancelled"]


class Meeting(Model):
    """A conference whose participants are dialled before it starts; `start_time` is stored in UTC.
    `revision` changes whenever the start moves (or the meeting is cancelled): a schedule that
    carries an older revision dials nobody."""

    event_id: str
    title: str
    start_time: datetime
    provider: ProviderKey = "quanshi"
    caller_id: str | None = None
    duration_minutes: int = Field(120, description="the meeting ends this long after its start")
    compliance: bool = Field(
        False, description="hold callees to calling windows and the account's frequency caps (do-not-call always)"
    )
    status: MeetingStatus = "scheduled"
    revision: int = 1
    started_at: datetime | None = None
    ended_at: datetime | None = None
    created_at: datetime
    updated_at: datetime
    version: int = 0


class DialResult(Model):
    """The latest outcome of dialling one callee."""

    state: DialState
    reason: str | None = None
    provider_call_id: str | None = None
    at: datetime


class MeetingCallee(Callee):
    """A participant of a meeting; one per E.164 number. Due at `start_time - before_minutes`."""

    callee_id: str
    e164: str
    before_minutes: int = Field(30, ge=0, le=60)
    dial_state: DialState = "pending"
    last_result: DialResult | None = None
    created_at: datetime
    updated_at: datetime


class MeetingSchedule(Model):
    """One EventBridge Scheduler one-time schedule of a meeting (one per due time)."""

    name: str
    due_at: datetime
    revision: int
    expression: str

"""Call results: verified pushes in, CallEvents turned into call records, pollers, listing and CSV.

Business rules only: this module gets a store, a provider and (for the queue) a send function;
it imports neither boto3 nor an HTTP client.

- A push to a `{kind}` its provider does not push to (Provider.webhook_kinds) is refused (404)
  before anything else. Then it is verified by its provider (and, when the provider's settings
  have `webhookHmacSecret`, by an HMAC-SHA256 of the body in the header `webhookHmacHeader`,
  default `X-Outcall-Signature`, hex, optionally prefixed `sha256=`); nxcloud pushes are refused
  when their signed createTs is more than WEBHOOK_MAX_SKEW_SECONDS off (a smaller
  `webhookMaxSkewSeconds` setting wins; 0 turns it off). A verified push whose body is empty, not
  JSON or not something its provider can parse is refused (400, logged at WARNING): it would only
  fail later, in the DLQ. The rest is kept once under the sha256 of its provider and its content
  (the JSON, canonical: key order, spacing, gzip, the path's kind and the query do not count, so
  one push posted on several paths, or redelivered, is one push), then queued once.
- A CallEvent updates the record of its call (`<provider>:<providerCallId>`, else its dedup key).
  Status ranks: queued < ringing < answered < final (no-answer, busy, failed, completed). An
  event only replaces a record whose status ranks lower, so a late non-final event never
  overwrites a final status and a second final never replaces the first. Each event is kept in
  the call's history once, under a hash of its dedup key, status and attempt.
"""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import hmac
import io
import json
import zlib
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import partial
from typing import Any, Literal, Protocol

from pydantic import Field

from outcall.errors import InvalidSignature, NotFound, NotSupported, OutcallError
from outcall.limits import read_json
from outcall.models import FINAL_CALL_STATUSES, CallEvent, CallRecord, CallStatus, Model, Task, TaskLifecycleEvent
from outcall.observability import logger, mask_phone, mask_text
from outcall.providers.base import Provider
from outcall.store import Store, utcnow
from outcall.store.calls import calls_pk

WEBHOOK_MAX_SKEW_SECONDS = 300
RESEND_UNPROCESSED_AFTER_SECONDS = 60
MAX_POLL_PAGES = 20
KEPT_HEADERS = ("content-type", "content-encoding")

STATUS_RANK: dict[str, int] = {
    "queued": 0,
    "ringing": 1,
    "answered": 2,
    **{status: 3 for status in FINAL_CALL_STATUSES},
}

Outcome = Literal["created", "updated", "kept", "duplicate"]


class UnreadablePush(OutcallError):
    """A verified push whose body is empty, not JSON, or not what its provider sends (400)."""

    status = 400
    code = "UnreadablePush"


class PushMessage(Model):
    """The SQS message from the webhook route to the result processor."""

    push_id: str
    provider: str | None = None


class PushReceipt(Model):
    push_id: str
    duplicate: bool


class StoredPush(Model):
    push_id: str
    provider: str
    kind: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    body: str = Field(description="base64 of the body as received")
    received_at: datetime
    queued_at: datetime | None = None
    processed_at: datetime | None = None

    def raw_body(self) -> bytes:
        return base64.b64decode(self.body)


class ProcessOutcome(Model):
    calls: dict[str, int] = Field(default_factory=dict)
    lifecycle: int = 0
    ended_tasks: list[str] = Field(default_factory=list, description="tasks whose contacts finished an attempt")


class PollOutcome(Model):
    provider: str
    ended_tasks: list[str] = Field(default_factory=list)
    events: int = 0
    pages: int = 0
    outcomes: dict[str, int] = Field(default_factory=dict)
    error: str | None = None


class CallPage(Model):
    items: list[CallRecord]
    next_token: str | None = None


class ProviderFactory(Protocol):
    def __call__(self, key: str) -> Provider: ...


# ---------------------------------------------------------------- intake


def push_id(provider: str, content: bytes) -> str:
    """The identity of a push: its provider and its canonical content (see `canonical_content`)."""
    digest = hashlib.sha256()
    for part in (provider.encode(), b"\0", content):
        digest.update(part)
    return digest.hexdigest()


def canonical_content(headers: Mapping[str, str], body: bytes) -> bytes:
    """A push's JSON as one byte string whatever its spelling: gzip undone, keys sorted, no
    spacing. Raises UnreadablePush when the body is empty or not JSON."""
    encoding = next((v for k, v in headers.items() if k.lower() == "content-encoding"), "")
    if encoding.strip().lower() == "gzip":
        try:
            body = gzip.decompress(body)
        except (OSError, EOFError, zlib.error) as exc:
            raise UnreadablePush("the body is not valid gzip") from exc
    if not body.strip():
        raise UnreadablePush("the body is empty")
    try:
        data = read_json(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UnreadablePush("the body is not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise UnreadablePush(f"the body is not JSON ({exc.msg})") from exc
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _parseable(provider: Provider, headers: Mapping[str, str], body: bytes, kind: str | None) -> None:
    """The provider must make events of the push now, or it never will (it would end in the DLQ)."""
    try:
        provider.parse_webhook(headers, body, kind)
    except Exception as exc:  # any failure of a pure parse means the body is not what the provider sends
        raise UnreadablePush(
            f"{provider.key} cannot read it ({type(exc).__name__}: {mask_text(str(exc))[:160]})"
        ) from exc


def webhook_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A provider's settings with the push time window of outcall (at most 5 minutes)."""
    out = dict(settings)
    configured = float(out.get("webhookMaxSkewSeconds", WEBHOOK_MAX_SKEW_SECONDS))
    out["webhookMaxSkewSeconds"] = 0 if configured == 0 else min(configured, WEBHOOK_MAX_SKEW_SECONDS)
    return out


def _verify_hmac(provider: Provider, headers: Mapping[str, str], body: bytes) -> None:
    secret = str(provider.settings.get("webhookHmacSecret") or "")
    if not secret:
        return
    wanted = str(provider.settings.get("webhookHmacHeader", "X-Outcall-Signature")).lower()
    value = next((v for k, v in headers.items() if k.lower() == wanted), "")
    value = value.removeprefix("sha256=").strip().lower()
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not value or not hmac.compare_digest(value, expected):
        raise InvalidSignature(f"{provider.key} push without a valid {wanted} HMAC-SHA256")


def receive_push(
    store: Store,
    provider: Provider,
    headers: Mapping[str, str],
    body: bytes,
    kind: str | None,
    query: Mapping[str, Any] | None,
    enqueue: Callable[[PushMessage], None],
) -> PushReceipt:
    """Verify a push, keep it once and queue it once. NotFound (an unknown kind), InvalidSignature,
    UnreadablePush: nothing is kept."""
    if not provider.capabilities.webhooks:
        raise NotSupported(provider.key, "webhooks")
    if kind is not None and kind not in provider.webhook_kinds:
        known = ", ".join(sorted(provider.webhook_kinds))
        raise NotFound(
            f"no push kind {kind[:64]!r} for {provider.key}: pushes go to /webhooks/{provider.key}/<kind>, "
            f"kind one of: {known}"
        )
    provider.verify_webhook(headers, body, kind, query)
    _verify_hmac(provider, headers, body)
    try:
        content = canonical_content(headers, body)
        _parseable(provider, headers, body, kind)
    except UnreadablePush as exc:
        logger.warning(
            "verified push refused: unreadable body",
            extra={"provider": provider.key, "kind": kind, "bytes": len(body), "reason": exc.message},
        )
        raise
    pid = push_id(provider.key, content)
    kept = {k.lower(): v for k, v in headers.items() if k.lower() in KEPT_HEADERS}
    now = utcnow()
    push = StoredPush(
        push_id=pid,
        provider=provider.key,
        kind=kind,
        headers=kept,
        body=base64.b64encode(body).decode(),
        received_at=now,
    )
    created = store.put_push(push.dump())
    if not created:
        existing = store.get_push(pid)
        stale = existing is not None and not existing.get("processedAt")
        if stale and existing is not None:
            since = (
                now - datetime.fromisoformat(str(existing.get("queuedAt") or existing["receivedAt"]))
            ).total_seconds()
            stale = since > RESEND_UNPROCESSED_AFTER_SECONDS
        if not stale:
            return PushReceipt(push_id=pid, duplicate=True)
        logger.info("re-queueing a push kept but not processed", extra={"pushId": pid})
    enqueue(PushMessage(push_id=pid, provider=provider.key))
    return PushReceipt(push_id=pid, duplicate=not created)


# ---------------------------------------------------------------- processing


def record_id(event: CallEvent) -> str:
    return f"{event.provider}:{event.provider_call_id}" if event.provider_call_id else event.dedup_key


def event_id(event: CallEvent) -> str:
    raw = f"{event.dedup_key}\0{event.status}\0{event.attempt}".encode()
    return hashlib.sha256(raw).hexdigest()[:32]


def _lower_ranks(status: str) -> list[str]:
    rank = STATUS_RANK[status]
    return [s for s, r in STATUS_RANK.items() if r < rank]


def record_event(
    store: Store,
    event: CallEvent,
    *,
    task_cache: dict[tuple[str, str], str | None] | None = None,
    ended: set[str] | None = None,
    opt_out_intents: frozenset[str] = frozenset(),
) -> Outcome:
    """Apply one CallEvent: the call record, the task's counts, the call's history, and the task's
    contact (dispatch.on_call_event). A task whose contact's attempt ended is added to `ended`: its
    dispatcher has room for more. An event with one of `opt_out_intents` (the provider's
    `optOutIntents` setting) puts its number on the account's do-not-call list (outcall.dnc)."""
    task_id: str | None = None
    if event.provider_task_id:
        cache_key = (event.provider, event.provider_task_id)
        if task_cache is not None and cache_key in task_cache:
            task_id = task_cache[cache_key]
        else:
            task_id = store.task_id_for(event.provider, event.provider_task_id)
            if task_cache is not None:
                task_cache[cache_key] = task_id
    now = utcnow()
    rid = record_id(event)
    record = CallRecord(
        record_id=rid,
        task_id=task_id,
        provider=event.provider,
        provider_call_id=event.provider_call_id,
        provider_task_id=event.provider_task_id,
        provider_contact_ref=event.provider_contact_ref,
        phone=event.phone,
        attempt=event.attempt,
        status=event.status,
        started_at=event.started_at,
        answered_at=event.answered_at,
        ended_at=event.ended_at,
        duration_seconds=event.duration_seconds,
        hangup_cause=event.hangup_cause,
        intents=event.intents,
        recording_url=event.recording_url,
        raw=event.raw,
        first_seen_at=now,
        updated_at=now,
    )
    final = event.status in FINAL_CALL_STATUSES
    outcome: Outcome = store.upsert_call(  # type: ignore[assignment]
        record.dump(), replaces=_lower_ranks(event.status), count_as=event.status if final else None
    )
    # before the contact moves: a retry it gets is never released
    opted = sorted(i for i in event.intents if i.strip().lower() in opt_out_intents)
    if opted and event.phone:
        from outcall.dnc import DncService

        DncService(store).opt_out(event.phone, event.provider, opted[0])
    if task_id and event.phone and outcome != "kept":
        from outcall.dispatch import on_call_event  # the dialing engine: only when a contact moves

        task = store.get_task(task_id)
        if task is not None and on_call_event(store, task, event, rid) and ended is not None:
            ended.add(task_id)
    pk = calls_pk(task_id, event.provider, event.provider_task_id)
    history = {
        "recordId": rid,
        "eventId": event_id(event),
        "dedupKey": event.dedup_key,
        "status": event.status,
        "attempt": event.attempt,
        "occurredAt": event.occurred_at.isoformat() if event.occurred_at else None,
        "receivedAt": now.isoformat(),
        "applied": outcome != "kept",
        "event": event.dump(),
    }
    kept = store.put_call_event(pk, rid, event_id(event), {k: v for k, v in history.items() if v is not None})
    if not kept and outcome == "kept":
        outcome = "duplicate"
    logger.info(
        "call event",
        extra={
            "provider": event.provider,
            "taskId": task_id,
            "recordId": rid,
            "status": event.status,
            "outcome": outcome,
            "phone": mask_phone(event.phone) if event.phone else None,
        },
    )
    return outcome


def record_lifecycle(store: Store, event: TaskLifecycleEvent) -> bool:
    return store.put_lifecycle_event({**event.dump(), "receivedAt": utcnow().isoformat()})


LifecycleHandler = Callable[[TaskLifecycleEvent], object]


def process_events(
    store: Store,
    events: list[CallEvent | TaskLifecycleEvent],
    on_lifecycle: LifecycleHandler | None = None,
    opt_out_intents: frozenset[str] = frozenset(),
) -> ProcessOutcome:
    """Call events become call records; lifecycle events (a meeting began, ended, moved) go to
    `on_lifecycle` first (its actions are idempotent, so a retried push is safe) and are kept."""
    outcome = ProcessOutcome()
    cache: dict[tuple[str, str], str | None] = {}
    ended: set[str] = set()
    for event in events:
        if isinstance(event, CallEvent):
            result = record_event(store, event, task_cache=cache, ended=ended, opt_out_intents=opt_out_intents)
            outcome.calls[result] = outcome.calls.get(result, 0) + 1
        else:
            if on_lifecycle is not None:
                on_lifecycle(event)
            outcome.lifecycle += int(record_lifecycle(store, event))
    outcome.ended_tasks = sorted(ended)
    return outcome


def process_push(
    store: Store, providers: ProviderFactory, message: PushMessage, on_lifecycle: LifecycleHandler | None = None
) -> ProcessOutcome:
    """The result processor: the kept push, parsed by its provider, applied event by event.
    Any error propagates, so the message is retried and in the end lands in the DLQ."""
    item = store.get_push(message.push_id)
    if item is None:
        raise NotFound(f"push {message.push_id} is not kept (expired?)")
    push = StoredPush.model_validate(item)
    provider = providers(push.provider)
    events = provider.parse_webhook(push.headers, push.raw_body(), push.kind)
    outcome = process_events(store, events, on_lifecycle, _opt_outs(provider))
    store.mark_push(push.push_id, "processedAt")
    return outcome


def _opt_outs(provider: Provider) -> frozenset[str]:
    from outcall.dnc import opt_out_intents

    return opt_out_intents(dict(provider.settings))


# ---------------------------------------------------------------- polling


def poll_provider(
    store: Store, provider: Provider, *, max_pages: int = MAX_POLL_PAGES, task: Task | None = None
) -> PollOutcome:
    """Poll from the stored cursor; the cursor moves only past events that were applied, so a
    failed poll leaves it where it was (no gap) and redelivered rows are absorbed (no duplicate).
    With `task`, the provider's per-task reconciliation (`poll_task(provider_task_id, cursor)`) is
    polled from that task's own cursor."""
    cursor_key = provider.key if task is None else f"{provider.key}#{task.task_id}"
    fetch = provider.poll_results if task is None else partial(provider.poll_task, str(task.provider_task_id))
    outcome = PollOutcome(provider=cursor_key)
    cursor = store.get_poll_cursor(cursor_key)
    cache: dict[tuple[str, str], str | None] = {}
    ended: set[str] = set()
    for _ in range(max_pages):
        try:
            page = fetch(cursor)
        except Exception as exc:  # the provider's fault: keep the cursor, try at the next schedule
            outcome.error = f"{type(exc).__name__}: {exc}"[:300]
            logger.warning("poll failed; cursor kept", extra={"provider": provider.key, "error": outcome.error})
            break
        for event in page.events:
            result = record_event(store, event, task_cache=cache, ended=ended, opt_out_intents=_opt_outs(provider))
            outcome.outcomes[result] = outcome.outcomes.get(result, 0) + 1
        outcome.events += len(page.events)
        outcome.pages += 1
        if page.cursor != cursor:
            store.put_poll_cursor(cursor_key, page.cursor)
            cursor = page.cursor
        if not page.more:
            break
    outcome.ended_tasks = sorted(ended)
    return outcome


def poll_all(store: Store, settings: Mapping[str, Any], providers: ProviderFactory) -> list[PollOutcome]:
    """Every provider that is polled for results and has settings."""
    from outcall.models import PROVIDER_KEYS
    from outcall.providers import provider_class

    outcomes = []
    for key in PROVIDER_KEYS:
        if key not in settings:
            continue
        if provider_class(key).capabilities.polling:
            outcomes.append(poll_provider(store, providers(key)))
        elif provider_class(key).capabilities.task_polling:  # reconciled per task: the tasks that dial
            provider = providers(key)
            for status in ("running", "paused"):
                token: str | None = None
                while True:
                    tasks, token = store.list_tasks(provider=key, status=status, limit=50, next_token=token)
                    outcomes += [poll_provider(store, provider, task=t) for t in tasks if t.provider_task_id]
                    if not token:
                        break
    return outcomes


# ---------------------------------------------------------------- reading


def _ensure_task(store: Store, task_id: str) -> None:
    """A task that exists, or existed (its calls stay after it is deleted)."""
    if store.get_task(task_id) is None and not store.list_calls(task_id, limit=1)[0]:
        raise NotFound(f"no task {task_id!r}")


def list_calls(
    store: Store,
    task_id: str,
    *,
    status: CallStatus | None = None,
    since: datetime | None = None,
    limit: int = 50,
    next_token: str | None = None,
) -> CallPage:
    _ensure_task(store, task_id)
    items, token = store.list_calls(
        task_id, status=status, since=since.isoformat() if since else None, limit=limit, next_token=next_token
    )
    return CallPage(items=[CallRecord.model_validate(i) for i in items], next_token=token)


CSV_COLUMNS = (
    "recordId",
    "taskId",
    "provider",
    "providerCallId",
    "providerContactRef",
    "phone",
    "attempt",
    "status",
    "startedAt",
    "answeredAt",
    "endedAt",
    "durationSeconds",
    "hangupCause",
    "intents",
    "recordingUrl",
)


def calls_csv(store: Store, task_id: str, *, status: CallStatus | None = None, since: datetime | None = None) -> str:
    """Every call of a task (read page by page) as CSV, one row per call."""
    _ensure_task(store, task_id)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    token: str | None = None
    while True:
        items, token = store.list_calls(
            task_id, status=status, since=since.isoformat() if since else None, limit=100, next_token=token
        )
        for item in items:
            record = CallRecord.model_validate(item)
            row = record.dump()
            row["intents"] = "|".join(record.intents)
            writer.writerow([row.get(c, "") for c in CSV_COLUMNS])
        if not token:
            return out.getvalue()

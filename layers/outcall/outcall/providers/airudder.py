"""AIRUDDER workflow dialing.

Documents: AIRUDDER API on apifox (docs site 1780479, shared aea72e1c-...; each operation below names
its page) and the seed /work/shared/seeds/airudder-workflow-api-node-push.txt (the workflow API-node
push, "自定义API 节点数据推送").

Auth ("Token Authentication and Obtain", api-44712004): `POST {baseUrl}/service/cloud/auth
{"APPKey","APPSecret"}` answers `{"data":{"token"},"status":"OK","code":200}`; the token is valid 24 h
and every other call sends `Authorization: Token <token>`. The token is cached per account until
shortly before it expires; an answer with code 10813 (token expired) or HTTP 401 drops it, fetches a new
one and retries the call once.

An outcall task is a workflow instance: `workflow/createinstance` creates it, contacts are added with
`workflow/uploaddetails` while it runs (the instance dials what it is given), `workflow/cancel` stops
the remaining flow of one contact, `workflow/stop` stops the instance. AIRUDDER has no pause and no
delete: pause is NotSupported (the dispatcher stops releasing and cancels what is not dialled yet),
start is a no-op, delete stops the task.

Times: AIRUDDER's push times (`call_start_time`, `call_end_time`, `redial_call[].call_start_time`) are
the callee's local time without an offset (seed). outcall converts them to UTC in the callee's zone:
the setting `calleeTimezone` when set, else the one zone phonenumbers gives for the callee's number,
else the setting `timezone` (default UTC). `end_time` of createinstance is sent in `timezone`.

Settings: baseUrl, appKey, appSecret, workflowTemplateId (integer; used when providerOptions names no
workflow_template_id), timezone (the account's zone, default "UTC"), calleeTimezone (optional),
defaultRunDays (end_time when a task has no autoStopAt: now + this many days, default 30), webhookUrl
(base of our callback URLs), webhookSecret, webhookAuth, webhookTokenParam, webhookHeader, batchSize
(details per uploaddetails, default 1000, *not documented*), plus the ProviderSession keys.

Errors (global error codes): 10510 bad phone (must start with "+", at most 14 digits) -> per-contact
rejection "invalid: ..."; 10508 duplicate task name -> Conflict; 10813 expired token -> refresh and one
retry. *Not confirmed by any public page* (kept as outcall's reading): the error envelope
`{"status","code","message","data"}`; uploaddetails answering per-detail refusals in
`data.fail_list[{case_id, callee, code, message}]`; the request fields of workflow/cancel
(`workflow_id`, `case_id`), workflow/stop (`workflow_id`) and workflow/taskdetail (`workflow_id`,
`page`, `page_size`), and taskdetail answering `data.list` and `data.total`; the meaning of ring_type
values beyond their names.

Webhooks carry no signature, so outcall authenticates them with a per-provider secret (`webhookSecret`)
that is in the callback URL (`webhookAuth: "query"`, parameter `webhookTokenParam`, default `token`) or
that a proxy adds as a header (`webhookAuth: "header"`). AIRUDDER retries a push every minute, 5 times:
the same call can arrive more than once, its dedup key is `airudder:call:<call_id>`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_timezone

from outcall.errors import Conflict, ProviderError, Unprocessable
from outcall.models import CallEvent, CallStatus, ContactOutcome, ContactSpec, TaskLifecycleEvent
from outcall.observability import logger
from outcall.providers.base import Capabilities, PollPage, Provider, ProviderLimits, TaskSpec
from outcall.providers.http import ProviderSession, TokenCache, json_object

TOKEN_TTL = 24 * 3600
TOKEN_MARGIN = 300
OK = 200
BAD_PHONE = 10510
DUPLICATE_TASK_NAME = 10508
TOKEN_EXPIRED = 10813
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

ERROR_CODES: dict[int, str] = {
    BAD_PHONE: "bad phone number (must start with + and have at most 14 digits)",
    DUPLICATE_TASK_NAME: "a task with this name already exists",
    TOKEN_EXPIRED: "token expired",
}

# ring_type (seed: busy, cantuse, hold, line, switchoff, outofarea, unregister, wrongnum, notmatch,
# normal, null) -> outcall's normalised cause and the status of a call that was not answered
RING_TYPES: dict[str, tuple[str, CallStatus]] = {
    "busy": ("busy", "busy"),
    "hold": ("busy", "busy"),
    "cantuse": ("unreachable", "failed"),
    "line": ("network-error", "failed"),
    "switchoff": ("unreachable", "failed"),
    "outofarea": ("unreachable", "failed"),
    "unregister": ("invalid-number", "failed"),
    "wrongnum": ("invalid-number", "failed"),
    "notmatch": ("invalid-number", "failed"),
    "normal": ("no-answer", "no-answer"),
    "null": ("no-answer", "no-answer"),
}
HANGUP_TYPES = {"ByCallee": "callee-hangup", "ByRobot": "robot-hangup", "Canceled": "canceled"}

_TOKENS = TokenCache(margin=TOKEN_MARGIN)


def _zone(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


class AirudderProvider(Provider):
    key = "airudder"
    webhook_kinds = frozenset({"task", "call", "workflow", "workflow-status"})  # callback URLs given
    limits = ProviderLimits(batch_size=1000)
    capabilities = Capabilities(
        tasks=True,
        task_types=frozenset({"robot", "auto", "predictive"}),
        pause=False,
        webhooks=True,
        task_polling=True,
    )

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self.app_key = str(self.settings.get("appKey", ""))
        self.app_secret = str(self.settings.get("appSecret", ""))
        self.tz = _zone(str(self.settings.get("timezone", "UTC"))) or ZoneInfo("UTC")
        self.callee_tz = _zone(self.settings.get("calleeTimezone"))
        self.http = ProviderSession(self.key, self.settings)

    # ------------------------------------------------------------------ auth
    @property
    def _cache_key(self) -> tuple[str, str]:
        return (self.http.base_url, self.app_key)

    def token(self, *, refresh: bool = False) -> str:
        return _TOKENS.token(self._cache_key, self._new_token, refresh=refresh)

    def _new_token(self) -> tuple[str, float]:
        """Token Authentication and Obtain (api-44712004)."""
        response = self.http.request(
            "POST", "/service/cloud/auth", json={"APPKey": self.app_key, "APPSecret": self.app_secret}
        )
        answer = json_object(response, self.key, "auth")
        token = (answer.get("data") or {}).get("token")
        if response.status_code != 200 or answer.get("code") != OK or not token:
            raise ProviderError(
                f"airudder refused the credentials: HTTP {response.status_code} {answer.get('message', '')}",
                provider=self.key,
                provider_code=answer.get("code", response.status_code),
            )
        return str(token), float(self.settings.get("tokenTtlSeconds", TOKEN_TTL))

    def forget_token(self) -> None:
        _TOKENS.forget(self._cache_key)

    # ------------------------------------------------------------------ plumbing
    def call(self, op: str, payload: dict[str, Any], method: str = "POST") -> dict[str, Any]:
        """One authenticated call; refreshes the token and retries once on 10813 / HTTP 401."""
        for attempt in (1, 2):
            headers = {"Authorization": f"Token {self.token(refresh=attempt == 2)}", "User-Agent": "Airudder"}
            kwargs: dict[str, Any] = {"params": payload} if method == "GET" else {"json": payload}
            response = self.http.request(method, f"/service/cloud/{op}", headers=headers, **kwargs)
            answer = json_object(response, self.key, op)
            code = answer.get("code")
            if (code == TOKEN_EXPIRED or response.status_code == 401) and attempt == 1:
                logger.info("airudder token refused; refreshing", extra={"op": op})
                self.forget_token()
                continue
            if response.status_code == 200 and code == OK:
                return answer
            meaning = (ERROR_CODES.get(code) if isinstance(code, int) else None) or answer.get("status")
            message = f"airudder {op} refused: code {code} ({meaning}): {answer.get('message') or ''}"
            if code == DUPLICATE_TASK_NAME:
                raise Conflict(message, details={"provider": self.key, "providerCode": code})
            raise ProviderError(
                message,
                provider=self.key,
                provider_code=code or response.status_code,
                details={"httpStatus": response.status_code},
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def callback_url(self, kind: str) -> str:
        base = str(self.settings.get("webhookUrl", "")).rstrip("/")
        if not base:
            return ""
        url = f"{base}/{kind}"
        if self.settings.get("webhookAuth", "query") == "query" and self.settings.get("webhookSecret"):
            url += "?" + urlencode({self.settings.get("webhookTokenParam", "token"): self.settings["webhookSecret"]})
        return url

    # ------------------------------------------------------------------ tasks
    def _template_id(self, spec: TaskSpec) -> int:
        value: Any = spec.provider_options.get("workflow_template_id", self.settings.get("workflowTemplateId"))
        try:
            template = int(value)
        except (TypeError, ValueError):
            template = 0
        if template <= 0:
            field = "settings.providerOptions.workflow_template_id"
            message = "airudder createinstance requires an integer workflow_template_id; none given or configured"
            raise Unprocessable(f"{field}: {message}", details=[{"field": field, "message": message}])
        return template

    def create_task(self, spec: TaskSpec) -> str:
        """Create a New WorkFlow Task (api-45238811): POST workflow/createinstance with
        workflow_template_id (integer), name and end_time, all three required; workflow_template_name
        and auto_finish optional. end_time is the task's autoStopAt, else now + defaultRunDays."""
        end = spec.auto_stop_at or datetime.now(UTC) + timedelta(days=int(self.settings.get("defaultRunDays", 30)))
        body: dict[str, Any] = {
            "workflow_template_id": self._template_id(spec),
            "name": spec.name,
            "end_time": end.astimezone(self.tz).strftime(TIME_FORMAT),
        }
        for name in ("workflow_template_name", "auto_finish"):
            if spec.provider_options.get(name) is not None:
                body[name] = spec.provider_options[name]
        answer = self.call("workflow/createinstance", body)
        workflow_id = (answer.get("data") or {}).get("workflow_id")
        if not workflow_id:
            raise ProviderError("airudder createinstance answered no workflow_id", provider=self.key)
        return str(workflow_id)

    def start_task(self, provider_task_id: str) -> None:
        """A workflow instance dials the contacts it is given: nothing to call."""
        logger.info("airudder workflows start by themselves", extra={"task": provider_task_id})

    def stop_task(self, provider_task_id: str) -> None:
        """Stop the Workflow Task: POST workflow/stop {workflow_id}."""
        self.call("workflow/stop", {"workflow_id": provider_task_id})

    def delete_task(self, provider_task_id: str) -> None:
        """No delete at AIRUDDER: the workflow is stopped (already stopped is fine)."""
        try:
            self.stop_task(provider_task_id)
        except ProviderError as exc:
            if "already" not in exc.message:
                raise

    # ------------------------------------------------------------------ contacts
    def add_contacts(self, provider_task_id: str, contacts: Sequence[ContactSpec]) -> list[ContactOutcome]:
        """Add lists to an workflow task (api-45244680): POST workflow/uploaddetails {workflow_id,
        details[]}; a detail's fields are those the seed names as the upload's: case_id, callee,
        customer_name, gender, platform, extra_a/b/c, comments, extra[{Question, Content}]. case_id is
        the contact's release key, so a batch sent again is recognised: a refused case that
        workflow/detailinstances places in this workflow is answered already_held."""
        if len(contacts) > self.limits.batch_size:
            raise ValueError(f"airudder takes at most {self.limits.batch_size} contacts per call")
        refs = [str(c.release_key or c.external_id or f"{provider_task_id[:8]}-{c.e164.lstrip('+')}") for c in contacts]
        details = []
        seen: set[str] = set()
        repeated: set[int] = set()  # a case_id twice in one batch: the later ones are not sent
        for i, (c, ref) in enumerate(zip(contacts, refs, strict=True)):
            if ref in seen:
                repeated.add(i)
                continue
            seen.add(ref)
            detail: dict[str, Any] = {
                "case_id": ref,
                "callee": c.e164,
                "customer_name": c.name or "",
                "platform": c.company or "",
            }
            if c.variables:
                detail["extra"] = [{"Question": k, "Content": v} for k, v in c.variables.items()]
            details.append(detail)
        answer = self.call("workflow/uploaddetails", {"workflow_id": provider_task_id, "details": details})
        failed: dict[str, tuple[Any, str]] = {}
        for fail in (answer.get("data") or {}).get("fail_list") or []:
            failed[str(fail.get("case_id"))] = (fail.get("code"), str(fail.get("message", "")))
        held = {ref for ref in failed if failed[ref][0] != BAD_PHONE and self.holds_case(provider_task_id, ref)}
        outcomes = []
        for i, (c, ref) in enumerate(zip(contacts, refs, strict=True)):
            if i in repeated:
                outcomes.append(ContactOutcome(e164=c.e164, accepted=False, reason="duplicate: repeated in the batch"))
            elif ref not in failed:
                outcomes.append(ContactOutcome(e164=c.e164, accepted=True, provider_ref=ref))
            elif ref in held:
                outcomes.append(ContactOutcome(e164=c.e164, accepted=True, already_held=True, provider_ref=ref))
            else:
                code, msg = failed[ref]
                kind = "duplicate" if code != BAD_PHONE and "duplic" in msg.lower() else "invalid"
                reason = f"{kind}: code {code} {msg}".strip()
                outcomes.append(ContactOutcome(e164=c.e164, accepted=False, reason=reason))
        return outcomes

    def holds_case(self, workflow_id: str, case_id: str) -> bool:
        """Query workflow_id using case_id/callee (api-154088166): POST workflow/detailinstances
        {case_id, start_time, end_time} (start and end required): does this workflow hold the case?"""
        now = datetime.now(UTC)
        body = {
            "case_id": case_id,
            "start_time": (now - timedelta(days=int(self.settings.get("defaultRunDays", 30)) + 1))
            .astimezone(self.tz)
            .strftime(TIME_FORMAT),
            "end_time": (now + timedelta(days=1)).astimezone(self.tz).strftime(TIME_FORMAT),
        }
        answer = self.call("workflow/detailinstances", body)
        rows = answer.get("data")
        rows = rows.get("list", []) if isinstance(rows, dict) else rows or []
        return any(isinstance(r, dict) and str(r.get("workflow_id")) == workflow_id for r in rows)

    def cancel_contacts(self, provider_task_id: str, refs: Sequence[str]) -> list[str]:
        """Cancel the processes for a specific list (workflow/cancel {workflow_id, case_id}), one
        contact a call. Returns the cases withdrawn; one already dialled or unknown is left out."""
        withdrawn = []
        for ref in refs:
            try:
                answer = self.call("workflow/cancel", {"workflow_id": provider_task_id, "case_id": ref})
            except ProviderError as exc:
                logger.info("airudder cancel refused", extra={"task": provider_task_id, "error": exc.message})
                continue
            if str((answer.get("data") or {}).get("state", "canceled")) == "canceled":
                withdrawn.append(ref)
        return withdrawn

    # ------------------------------------------------------------------ webhooks
    def verify_webhook(
        self,
        headers: Mapping[str, str],
        body: bytes,
        kind: str | None = None,
        query: Mapping[str, Any] | None = None,
    ) -> None:
        """The push must carry webhookSecret: in the URL query (pass `query`) or in the header."""
        self.verify_shared_secret(headers, query)

    def callee_zone(self, number: str | None) -> ZoneInfo:
        """The zone the callee's local push times are in (see the module docstring)."""
        if self.callee_tz:
            return self.callee_tz
        try:
            zones = phone_timezone.time_zones_for_number(phonenumbers.parse(str(number or "")))
        except phonenumbers.NumberParseException:
            zones = ()
        zone = _zone(zones[0]) if len(zones) == 1 else None
        return zone or self.tz

    @staticmethod
    def _local(value: Any, zone: ZoneInfo) -> datetime | None:
        if not value:
            return None
        try:
            return datetime.strptime(str(value), TIME_FORMAT).replace(tzinfo=zone).astimezone(UTC)
        except ValueError:
            return None

    def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, kind: str | None = None
    ) -> list[CallEvent | TaskLifecycleEvent]:
        data = json.loads(body)
        items = data if isinstance(data, list) else [data]
        events: list[CallEvent | TaskLifecycleEvent] = []
        for item in items:
            if not isinstance(item, dict):
                continue
            if isinstance(item.get("call"), dict) or "call_id" in item:
                events.extend(self.call_events(item))
            elif kind in ("task", "workflow-status") or "status" in item:
                events.append(self._task_event(item, kind or "task"))
        return events

    def _task_event(self, item: Mapping[str, Any], kind: str) -> TaskLifecycleEvent:
        task_id = item.get("workflow_id") or item.get("task_id")
        status = str(item.get("status") or item.get("state") or "")
        return TaskLifecycleEvent(
            provider="airudder",
            dedup_key=f"airudder:{kind}:{task_id}:{status}",
            kind="task-status",
            provider_task_id=task_id,
            status=status.lower() or None,
            raw=dict(item),
        )

    def call_events(self, item: Mapping[str, Any]) -> list[CallEvent]:
        """A call push (the seed's API-node shape `{workflow_id, callee{}, call{}}`, or a flat call
        row): the round's earlier attempts (`call.redial_call[]`, each with its own call_id) as
        attempts 1..n in time order, then the call itself as attempt n+1 (or `call_times` when there is
        no redial list). Unanswered: call_start_time equals call_end_time (seed)."""
        nested, who = item.get("call"), item.get("callee")
        call: Mapping[str, Any] = nested if isinstance(nested, dict) else item
        callee: Mapping[str, Any] = who if isinstance(who, dict) else {}
        number = call.get("callee_number") or callee.get("callee_number") or item.get("callee")
        zone = self.callee_zone(number)
        redials = [r for r in call.get("redial_call") or [] if isinstance(r, dict)]
        redials.sort(key=lambda r: str(r.get("call_start_time") or ""))
        events = [self._redial_event(item, call, callee, r, n, zone) for n, r in enumerate(redials, start=1)]
        attempt = len(redials) + 1 if redials else int(call.get("call_times") or 1)
        events.append(self._call_event(item, call, callee, attempt, zone))
        return events

    def _common(self, item: Mapping[str, Any], call: Mapping[str, Any], callee: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "provider": "airudder",
            "provider_task_id": item.get("workflow_id") or call.get("task_id") or item.get("task_id"),
            "provider_contact_ref": callee.get("case_id") or item.get("case_id"),
            "raw": dict(item),
        }

    def _call_event(
        self,
        item: Mapping[str, Any],
        call: Mapping[str, Any],
        callee: Mapping[str, Any],
        attempt: int,
        zone: ZoneInfo,
    ) -> CallEvent:
        call_id = str(call.get("call_id") or "")
        ring = str(call.get("ring_type") or "null").lower()
        hangup = str(call.get("hangup_type") or "")
        started = self._local(call.get("call_start_time"), zone)
        ended = self._local(call.get("call_end_time"), zone)
        answered = bool(started and ended and ended > started)
        status: CallStatus
        if hangup == "Canceled":
            status, cause = "canceled", "canceled"
        elif answered:
            status, cause = "completed", HANGUP_TYPES.get(hangup, "normal-clearing")
        else:
            cause, status = RING_TYPES.get(ring, ("other", "no-answer"))
        intents = [str(call["intention"])] if call.get("intention") else []
        intents += [str(v) for v in (call.get("multi_label") or {}).values()]
        common = self._common(item, call, callee)
        return CallEvent(
            **common,
            dedup_key=f"airudder:call:{call_id}"
            if call_id
            else f"airudder:case:{common['provider_task_id']}:{common['provider_contact_ref']}",
            provider_call_id=call_id or None,
            phone=call.get("callee_number") or callee.get("callee_number") or item.get("callee"),
            status=status,
            attempt=attempt,
            started_at=started,
            answered_at=started if answered else None,
            ended_at=ended,
            duration_seconds=int((ended - started).total_seconds()) if answered and ended and started else 0,
            hangup_cause=cause,
            intents=intents,
            recording_url=call.get("record_url") or call.get("recording_url"),
            occurred_at=ended or started,
        )

    def _redial_event(
        self,
        item: Mapping[str, Any],
        call: Mapping[str, Any],
        callee: Mapping[str, Any],
        redial: Mapping[str, Any],
        attempt: int,
        zone: ZoneInfo,
    ) -> CallEvent:
        """An earlier attempt of the round: it was redialled, so it was not a completed call."""
        call_id = str(redial.get("call_id") or "")
        ring = str(redial.get("ring_type") or "null").lower()
        status: CallStatus
        if redial.get("hangup_type") == "Canceled":
            status, cause = "canceled", "canceled"
        else:
            cause, status = RING_TYPES.get(ring, ("other", "no-answer"))
        started = self._local(redial.get("call_start_time"), zone)
        common = self._common(item, call, callee)
        return CallEvent(
            **common,
            dedup_key=f"airudder:call:{call_id}" if call_id else f"airudder:redial:{call.get('call_id')}:{attempt}",
            provider_call_id=call_id or None,
            phone=redial.get("callee_number") or callee.get("callee_number"),
            status=status,
            attempt=attempt,
            started_at=started,
            hangup_cause=cause,
            intents=[str(redial["result_label"])] if redial.get("result_label") else [],
            occurred_at=started,
        )

    # ------------------------------------------------------------------ reconciliation
    def poll_task(self, provider_task_id: str, cursor: str | None) -> PollPage:
        """Reconciliation of missed pushes for one workflow: Obtain the Outbound Task Details of
        Workflow (api-154573225), POST workflow/taskdetail, whose rows carry the fields of the
        call-completion notification plus workflow_id and case_id. The cursor is the next page."""
        page = int(cursor or 1)
        size = int(self.settings.get("pollPageSize", 100))
        answer = self.call("workflow/taskdetail", {"workflow_id": provider_task_id, "page": page, "page_size": size})
        data = answer.get("data") or {}
        rows = [r for r in (data.get("list") if isinstance(data, dict) else data) or [] if isinstance(r, dict)]
        events = [e for r in rows for e in self.call_events({"workflow_id": provider_task_id, **r})]
        total = int(data.get("total") or 0) if isinstance(data, dict) else 0
        more = page * size < total
        return PollPage(events=events, cursor=str(page + 1) if more else str(page), more=more)


PROVIDER = AirudderProvider

"""AIRUDDER robot / workflow dialing.

Auth: `POST {baseUrl}/service/cloud/auth {"APPKey","APPSecret"}` answers `data.token`, valid 24 h;
every other call sends `Authorization: Token <token>`. The token is cached per account until shortly
before it expires; an answer with code 10813 (token expired) or HTTP 401 drops it, fetches a new one
and retries the call once.

An outcall task is, by default (`mode: "workflow"`), a workflow instance:
`workflow/createinstance` (`workflow_template_id`, `name`, `end_time`) creates it, contacts are sent
with `workflow/uploaddetails` (`workflow_id`, `details[]`), `workflow/stop` stops it and
`workflow/cancel` cancels one contact. With `mode: "task"` a task is a robot task (`task`,
`operation` to stop, `cancelphonecall`); robot tasks take their callees at creation
(`TaskSpec.provider_options["callees"]`), so add_contacts is not supported in that mode.
AIRUDDER has no pause and no delete: pause is NotSupported, start is a no-op (an instance dials as
soon as it has contacts, within its calling window), delete stops the task.

Errors: 10510 bad phone (must start with "+", at most 14 digits) -> per-contact rejection
"invalid: ..."; 10508 duplicate task name -> Conflict; 10813 expired token -> refresh + one retry.
*Inferred*: the envelope `{"status","code","message","data"}` (code 200 = ok), uploaddetails
answering per-detail failures in `data.fail_list[{case_id, callee, code, message}]`, and
the field names of task creation beyond those in the public pages (TaskSpec.provider_options is merged
into the body, so real names can always be given).

Webhooks (task, call, workflow API node) carry no signature, so outcall authenticates them with a
per-provider secret (`webhookSecret`) that we put into the callback URL (`webhookAuth: "query"`,
parameter `webhookTokenParam`, default `token`) or that a proxy adds as a header (`webhookAuth:
"header"`, header `webhookHeader`, default `X-Outcall-Token`). The same call may be pushed more than
once (retried every minute, 5 times): its dedup key is `airudder:call:<call_id>`.

Settings: baseUrl, appKey, appSecret, mode, workflowTemplateId, robotId, webhookUrl (base of our
callback URLs), webhookSecret, webhookAuth, webhookTokenParam, webhookHeader, timezone (of the
call times AIRUDDER reports, default UTC), batchSize (default 1000, *inferred*), plus ProviderSession keys.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from outcall.errors import Conflict, NotSupported, ProviderError
from outcall.models import CallEvent, ContactOutcome, ContactSpec, TaskLifecycleEvent
from outcall.observability import logger
from outcall.providers.base import Capabilities, Provider, ProviderLimits, TaskSpec
from outcall.providers.http import ProviderSession, TokenCache, json_object

TOKEN_TTL = 24 * 3600
TOKEN_MARGIN = 300
OK = 200
BAD_PHONE = 10510
DUPLICATE_TASK_NAME = 10508
TOKEN_EXPIRED = 10813

ERROR_CODES: dict[int, str] = {
    BAD_PHONE: "bad phone number (must start with + and have at most 14 digits)",
    DUPLICATE_TASK_NAME: "a task with this name already exists",
    TOKEN_EXPIRED: "token expired",
}

FAILED_RING_TYPES = {"cantuse", "line", "switchoff", "outofarea", "unregister", "wrongnum", "notmatch"}

_TOKENS = TokenCache(margin=TOKEN_MARGIN)


class AirudderProvider(Provider):
    key = "airudder"
    webhook_kinds = frozenset({"task", "call", "workflow", "workflow-status"})  # callback URLs given
    limits = ProviderLimits(batch_size=1000)
    capabilities = Capabilities(
        tasks=True, task_types=frozenset({"robot", "auto", "predictive"}), pause=False, webhooks=True
    )

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self.app_key = str(self.settings.get("appKey", ""))
        self.app_secret = str(self.settings.get("appSecret", ""))
        self.mode = str(self.settings.get("mode", "workflow"))
        self.tz = ZoneInfo(str(self.settings.get("timezone", "UTC")))
        self.http = ProviderSession(self.key, self.settings)

    # ------------------------------------------------------------------ auth
    @property
    def _cache_key(self) -> tuple[str, str]:
        return (self.http.base_url, self.app_key)

    def token(self, *, refresh: bool = False) -> str:
        return _TOKENS.token(self._cache_key, self._new_token, refresh=refresh)

    def _new_token(self) -> tuple[str, float]:
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
            headers = {"Authorization": f"Token {self.token(refresh=attempt == 2)}", "User-Agent": "outcall"}
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
            detail = answer.get("message") or answer.get("msg") or ""
            message = f"airudder {op} refused: code {code} ({meaning}): {detail}"
            if code == DUPLICATE_TASK_NAME:
                raise Conflict(message, details={"provider": self.key, "providerCode": code})
            raise ProviderError(
                message,
                provider=self.key,
                provider_code=code or response.status_code,
                retryable=False,
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
    def _window(self, spec: TaskSpec) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if spec.auto_start_at:
            body["start_time"] = spec.auto_start_at.astimezone(self.tz).strftime("%Y-%m-%d %H:%M:%S")
        if spec.auto_stop_at:
            body["end_time"] = spec.auto_stop_at.astimezone(self.tz).strftime("%Y-%m-%d %H:%M:%S")
        return body

    def create_task(self, spec: TaskSpec) -> str:
        options = dict(spec.provider_options)
        if self.mode == "task":
            body = {
                "task_name": spec.name,
                "robot_id": options.pop("robot_id", self.settings.get("robotId")),
                "concurrency": spec.concurrency,
                "callees": options.pop("callees", []),
                "callback_url": self.callback_url("task"),
                "call_callback_url": self.callback_url("call"),
                **self._window(spec),
                **options,
            }
            answer = self.call("task", body)
            return str(answer["data"]["task_id"])
        body = {
            "workflow_template_id": options.pop("workflow_template_id", self.settings.get("workflowTemplateId")),
            "name": spec.name,
            **self._window(spec),
            **options,
        }
        answer = self.call("workflow/createinstance", body)
        return str(answer["data"]["workflow_id"])

    def start_task(self, provider_task_id: str) -> None:
        """AIRUDDER dials as soon as a task has contacts: nothing to call."""
        logger.info("airudder tasks start by themselves", extra={"task": provider_task_id})

    def stop_task(self, provider_task_id: str) -> None:
        if self.mode == "task":
            self.call("operation", {"task_id": provider_task_id, "operation": "stop"})
        else:
            self.call("workflow/stop", {"workflow_id": provider_task_id})

    def delete_task(self, provider_task_id: str) -> None:
        """No delete at AIRUDDER: the task is stopped (already stopped is fine)."""
        try:
            self.stop_task(provider_task_id)
        except ProviderError as exc:
            if "already" not in exc.message:
                raise

    def cancel_call(self, provider_task_id: str, case_id: str, callee: str | None = None) -> None:
        """Stop dialling one contact (robot task: cancelphonecall; workflow: cancel its remaining flow)."""
        if self.mode == "task":
            body = {"task_id": provider_task_id, "case_id": case_id}
            if callee:
                body["callee"] = callee
            self.call("cancelphonecall", body)
        else:
            self.call("workflow/cancel", {"workflow_id": provider_task_id, "case_id": case_id})

    # ------------------------------------------------------------------ contacts
    def add_contacts(self, provider_task_id: str, contacts: Sequence[ContactSpec]) -> list[ContactOutcome]:
        if self.mode == "task":
            raise NotSupported(self.key, "adding contacts to a robot task (use mode workflow)")
        if len(contacts) > self.limits.batch_size:
            raise ValueError(f"airudder takes at most {self.limits.batch_size} contacts per call")
        refs = [str(c.external_id or f"{provider_task_id[:8]}-{c.e164.lstrip('+')}") for c in contacts]
        details = []
        seen: set[str] = set()
        repeated: set[int] = set()  # a case_id twice in one batch: the later ones are duplicates, not sent
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
        outcomes = []
        for i, (c, ref) in enumerate(zip(contacts, refs, strict=True)):
            if i in repeated:
                outcomes.append(ContactOutcome(e164=c.e164, accepted=False, reason="duplicate: repeated in the batch"))
                continue
            if ref not in failed:
                outcomes.append(ContactOutcome(e164=c.e164, accepted=True, provider_ref=ref))
                continue
            code, msg = failed[ref]
            kind = "invalid" if code == BAD_PHONE else ("duplicate" if "duplic" in msg.lower() else "invalid")
            outcomes.append(ContactOutcome(e164=c.e164, accepted=False, reason=f"{kind}: code {code} {msg}".strip()))
        return outcomes

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

    def _time(self, value: Any) -> datetime | None:
        if not value:
            return None
        try:
            return datetime.strptime(str(value), "%Y-%m-%d %H:%M:%S").replace(tzinfo=self.tz)
        except ValueError:
            return None

    def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, kind: str | None = None
    ) -> list[CallEvent | TaskLifecycleEvent]:
        data = json.loads(body)
        items = data if isinstance(data, list) else [data]
        events: list[CallEvent | TaskLifecycleEvent] = []
        for item in items:
            is_task = kind in ("task", "workflow-status") or (
                kind is None and "call" not in item and "call_id" not in item and "status" in item
            )
            events.append(self._task_event(item, kind or "task") if is_task else self.call_event(item))
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

    def call_event(self, item: Mapping[str, Any]) -> CallEvent:
        """A call push: the workflow API-node shape (`callee{}`, `call{}`) or the flat task/call shape."""
        nested, who = item.get("call"), item.get("callee")
        call: Mapping[str, Any] = nested if isinstance(nested, dict) else item
        callee: Mapping[str, Any] = who if isinstance(who, dict) else {}
        call_id = str(call.get("call_id") or "")
        ring = str(call.get("ring_type") or "null").lower()
        hangup = str(call.get("hangup_type") or "")
        if hangup == "Canceled" or ring in FAILED_RING_TYPES:
            status = "failed"
        elif ring == "busy":
            status = "busy"
        elif ring == "normal":
            status = "completed"
        else:
            status = "no-answer"
        started = self._time(call.get("call_start_time"))
        ended = self._time(call.get("call_end_time"))
        answered = started if status == "completed" else None
        duration = int((ended - started).total_seconds()) if (answered and ended and started) else 0
        intents = [str(call["intention"])] if call.get("intention") else []
        intents += [str(v) for v in (call.get("multi_label") or {}).values()]
        task_id = call.get("task_id") or item.get("task_id")
        return CallEvent(
            provider="airudder",
            dedup_key=f"airudder:call:{call_id}" if call_id else f"airudder:case:{task_id}:{callee.get('case_id')}",
            provider_call_id=call_id or None,
            provider_task_id=item.get("workflow_id") or task_id,
            provider_contact_ref=callee.get("case_id") or item.get("case_id"),
            phone=call.get("callee_number") or callee.get("callee_number") or item.get("callee"),
            status=status,  # type: ignore[arg-type]
            attempt=int(call.get("call_times") or 1),
            started_at=started,
            answered_at=answered,
            ended_at=ended,
            duration_seconds=duration,
            hangup_cause=f"{ring}/{hangup}" if hangup else ring,
            intents=intents,
            recording_url=call.get("record_url") or call.get("recording_url"),
            occurred_at=ended,
            raw=dict(item),
        )


PROVIDER = AirudderProvider

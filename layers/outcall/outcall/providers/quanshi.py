"""Quanshi (全时) live-event conference dial-out. Conference only: task operations are NotSupported.

Documents: seeds/quanshi-event-call-add.txt (event/call/add: the request, its field rules, and both
answer shapes it shows) and PROVIDERS.md, which records the events open API's token/create,
event/call/save, event/info and the lifecycle pushes. Quanshi has no task: re-adding a callee already
in the meeting is refused (errorType 2, duplicate), no redial is documented, and nothing can be
paused or withdrawn per callee except by event/call/save with a shorter list (before it is due).

Token: `POST {baseUrl}/eventopenapi/token/create {"userId": <admin>}` with headers `AppKey`, `Nonce`,
`CurTime` (ms) and `CheckSum`; the answer's `data.token` is valid 86400 s and travels in every JSON
body as `token`. The CheckSum formula is not public: it is a pluggable function, chosen by the
setting `checksum` among CHECKSUMS (register more with `register_checksum`) or passed to the
constructor. Default (*inferred*): `sha1(appSecret + nonce + curTime)` in lower-case hex.
An answer whose code is in `tokenErrorCodes` (default 401, 40001, 40002: *inferred*) drops the
token, fetches a new one and retries once.

`dial_now(eventId, callees)` is `event/call/add` (adds callees, keeps existing ones; if the meeting
has started Quanshi dials at once, otherwise `beforeMinutes` before the start). Both answer shapes of
the seed are read: camelCase (`scheduledCall{successData, failedData}`, `realTimeCall{failedData}`,
`callType`) and snake_case (`success_data`, `fail_data`, counts). `errorType` 1 means a bad number,
2 a duplicate: DialOutcome reason "invalid-number" / "duplicate".
`save_callees` is `event/call/save` (replaces the whole list), `event_info` is `event/info`.

Lifecycle pushes (`meetingbegin`, `meetingend`, `update`) carry no documented signature: outcall
authenticates them with `webhookSecret` in the URL query (`webhookAuth: "query"`, parameter
`webhookTokenParam`, default `token`) or a header (`webhookAuth: "header"`, `webhookHeader`, default
`X-Outcall-Token`). Their body (*inferred*): `{"event": "meetingbegin"|"meetingend"|"update",
"eventId", "timestamp" (ms), "startTime", "endTime" (s), "status"}`.

Settings: baseUrl, appKey, appSecret, userId, checksum, beforeMinutes (default 30),
tokenErrorCodes, webhookSecret, webhookAuth, webhookTokenParam, webhookHeader, batchSize (default
100, *inferred*), plus ProviderSession keys.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from outcall.errors import NotFound, ProviderError
from outcall.models import Callee, CallEvent, DialOutcome, TaskLifecycleEvent
from outcall.observability import logger, mask_text
from outcall.providers.base import Capabilities, Provider, ProviderLimits
from outcall.providers.http import ProviderSession, TokenCache, json_object

Checksum = Callable[[str, str, str], str]  # (appSecret, nonce, curTime) -> CheckSum


def sha1_secret_nonce_curtime(secret: str, nonce: str, cur_time: str) -> str:
    return hashlib.sha1(f"{secret}{nonce}{cur_time}".encode(), usedforsecurity=False).hexdigest()


def md5_secret_nonce_curtime(secret: str, nonce: str, cur_time: str) -> str:
    return hashlib.md5(f"{secret}{nonce}{cur_time}".encode(), usedforsecurity=False).hexdigest()


CHECKSUMS: dict[str, Checksum] = {
    "sha1": sha1_secret_nonce_curtime,
    "md5": md5_secret_nonce_curtime,
}


def register_checksum(name: str, fn: Checksum) -> None:
    CHECKSUMS[name] = fn


OK = 200
TOKEN_TTL = 86400
TOKEN_MARGIN = 300
ERROR_TYPES = {1: "invalid-number", 2: "duplicate"}
LIFECYCLE_KINDS = ("meetingbegin", "meetingend", "update")
EVENT_STATUS = {0: "cancelled", 1: "created", 4: "ended"}

_TOKENS = TokenCache(margin=TOKEN_MARGIN)


def callee_e164(c: Callee) -> str:
    if c.e164:
        return c.e164
    cc = (c.country_code or "").lstrip("+")
    if c.mobile:
        return f"+{cc}{c.mobile}"
    return f"+{cc}{c.area_code or ''}{c.phone or ''}"


def _digits(*parts: Any) -> str:
    return "".join(ch for p in parts if p for ch in str(p) if ch.isdigit())


class QuanshiProvider(Provider):
    key = "quanshi"
    webhook_kinds = frozenset(LIFECYCLE_KINDS)  # pushes go to {webhookUrl}/{event}
    limits = ProviderLimits(batch_size=100)
    capabilities = Capabilities(tasks=False, task_types=frozenset(), pause=False, conference_dial=True, webhooks=True)

    def __init__(self, settings: Mapping[str, Any], checksum: Checksum | None = None) -> None:
        super().__init__(settings)
        self.app_key = str(self.settings.get("appKey", ""))
        self.app_secret = str(self.settings.get("appSecret", ""))
        self.user_id = str(self.settings.get("userId", ""))
        name = str(self.settings.get("checksum", "sha1"))
        if checksum is None and name not in CHECKSUMS:
            raise ValueError(f"unknown quanshi checksum {name!r}; known: {', '.join(CHECKSUMS)}")
        self.checksum: Checksum = checksum or CHECKSUMS[name]
        self.token_errors = {int(c) for c in self.settings.get("tokenErrorCodes", (401, 40001, 40002))}
        self.http = ProviderSession(self.key, self.settings)

    # ------------------------------------------------------------------ auth
    @property
    def _cache_key(self) -> tuple[str, str, str]:
        return (self.http.base_url, self.app_key, self.user_id)

    def auth_headers(self) -> dict[str, str]:
        nonce = uuid.uuid4().hex
        cur_time = str(int(time.time() * 1000))
        return {
            "AppKey": self.app_key,
            "Nonce": nonce,
            "CurTime": cur_time,
            "CheckSum": self.checksum(self.app_secret, nonce, cur_time),
        }

    def token(self, *, refresh: bool = False) -> str:
        return _TOKENS.token(self._cache_key, self._new_token, refresh=refresh)

    def _new_token(self) -> tuple[str, float]:
        """POST /eventopenapi/token/create {"userId"} with AppKey/Nonce/CurTime/CheckSum (PROVIDERS.md)."""
        response = self.http.request(
            "POST", "/eventopenapi/token/create", json={"userId": self.user_id}, headers=self.auth_headers()
        )
        answer = self._json(response, "token/create")
        token = (answer.get("data") or {}).get("token")
        if answer.get("code") != OK or not token:
            raise ProviderError(
                f"quanshi refused a token: code {answer.get('code')} {answer.get('msg', '')}",
                provider=self.key,
                provider_code=answer.get("code", response.status_code),
            )
        return str(token), float(self.settings.get("tokenTtlSeconds", TOKEN_TTL))

    def forget_token(self) -> None:
        _TOKENS.forget(self._cache_key)

    # ------------------------------------------------------------------ plumbing
    def _json(self, response: Any, op: str) -> dict[str, Any]:
        """The answer's JSON object; an HTTP error status is an error even with one (its code kept)."""
        data = json_object(response, self.key, op)
        if response.status_code >= 400:
            raise ProviderError(
                f"quanshi {op} answered HTTP {response.status_code}",
                provider=self.key,
                provider_code=data.get("code", response.status_code),
                details={"body": mask_text(response.text[:300])},
            )
        return data

    def call(self, op: str, payload: dict[str, Any]) -> dict[str, Any]:
        for attempt in (1, 2):
            body = {"token": self.token(refresh=attempt == 2), **payload}
            response = self.http.request("POST", f"/eventopenapi/{op}", json=body)
            answer = self._json(response, op)
            code = answer.get("code")
            if code == OK:
                return answer
            if code in self.token_errors and attempt == 1:
                logger.info("quanshi token refused; refreshing", extra={"op": op})
                self.forget_token()
                continue
            message = (
                f"quanshi {op} refused: code {code}: {answer.get('msg', '')} (requestId {answer.get('requestId')})"
            )
            if code == 404:
                raise NotFound(message, details={"provider": self.key})
            raise ProviderError(message, provider=self.key, provider_code=code)
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ conference
    @staticmethod
    def _call_entry(c: Callee) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": c.name or "",
            "company": c.company or "",
            "countryCode": (c.country_code or "").lstrip("+"),
            "mobile": c.mobile or "",
            "areaCode": (c.area_code or "").lstrip("0"),
            "phone": c.phone or "",
            "role": c.role,
        }
        return entry

    def _payload(self, event_id: str, callees: Sequence[Callee], before_minutes: int | None) -> dict[str, Any]:
        if len(callees) > self.limits.batch_size:
            raise ValueError(f"quanshi takes at most {self.limits.batch_size} callees per call")
        minutes = int(self.settings.get("beforeMinutes", 30) if before_minutes is None else before_minutes)
        return {
            "eventId": int(event_id) if str(event_id).isdigit() else event_id,
            "beforeMinutes": max(0, min(60, minutes)),
            "callList": [self._call_entry(c) for c in callees],
        }

    def dial_now(
        self, conference_ref: str, callees: Sequence[Callee], before_minutes: int | None = None
    ) -> list[DialOutcome]:
        """event/call/add (seed quanshi-event-call-add.txt). Pass `before_minutes` = minutes from now to
        the meeting start (0 if it has
        started) so that Quanshi dials now rather than at its own default 30 minutes before the start."""
        answer = self.call("event/call/add", self._payload(conference_ref, callees, before_minutes))
        return self.outcomes(callees, answer.get("data") or {})

    def save_callees(
        self, conference_ref: str, callees: Sequence[Callee], before_minutes: int | None = None
    ) -> list[DialOutcome]:
        """event/call/save (PROVIDERS.md): replace the meeting's whole callee list."""
        answer = self.call("event/call/save", self._payload(conference_ref, callees, before_minutes))
        return self.outcomes(callees, answer.get("data") or {})

    def event_info(self, conference_ref: str) -> dict[str, Any]:
        """event/info (PROVIDERS.md): startTime / endTime (seconds) as UTC datetimes, status 0 cancelled /
        1 created / 4 ended."""
        event_id = int(conference_ref) if str(conference_ref).isdigit() else conference_ref
        data = dict(self.call("event/info", {"eventId": event_id}).get("data") or {})
        for key in ("startTime", "endTime"):
            if data.get(key):
                data[key] = datetime.fromtimestamp(int(data[key]), tz=UTC)
        if "status" in data:
            data["statusName"] = EVENT_STATUS.get(int(data["status"]), "unknown")
        return data

    def reconcile(self, conference_refs: Sequence[str], now: datetime | None = None) -> list[TaskLifecycleEvent]:
        """What the lifecycle pushes would have said, read back with event/info, for meetings whose
        push may have been missed: `meetingbegin` once startTime has passed (and the meeting was not
        cancelled), `meetingend` once status is 4 (ended). Their dedup keys are the pushes' own
        (`quanshi:<eventId>:meetingbegin|meetingend`), so a push and its reconciliation are recorded
        once. No per-call result exists to reconcile: Quanshi documents none."""
        moment = now or datetime.now(UTC)
        events: list[TaskLifecycleEvent] = []
        for ref in conference_refs:
            info = self.event_info(ref)
            if info.get("status") is None:
                continue
            status = int(info["status"])
            start = info.get("startTime")
            kinds = []
            if status != 0 and isinstance(start, datetime) and start <= moment:
                kinds.append("meetingbegin")
            if status == 4:
                kinds.append("meetingend")
            raw = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in info.items()}
            for kind in kinds:
                events.append(
                    TaskLifecycleEvent(
                        provider="quanshi",
                        dedup_key=f"quanshi:{ref}:{kind}",
                        kind=kind,
                        provider_task_id=str(ref),
                        status=EVENT_STATUS.get(status, str(status)),
                        start_time=start if isinstance(start, datetime) else None,
                        raw={"source": "event/info", **raw},
                    )
                )
        return events

    def outcomes(self, callees: Sequence[Callee], data: Mapping[str, Any]) -> list[DialOutcome]:
        """Map either answer shape to one DialOutcome per callee, in order (matched by number)."""
        success: list[Mapping[str, Any]] = []
        failed: list[Mapping[str, Any]] = []
        if "success_data" in data or "fail_data" in data:  # the older snake_case shape
            success = list(data.get("success_data") or [])
            failed = list(data.get("fail_data") or [])
        else:
            scheduled = data.get("scheduledCall") or {}
            success = list(scheduled.get("successData") or [])
            failed = list(scheduled.get("failedData") or [])
            failed += list((data.get("realTimeCall") or {}).get("failedData") or [])

        def keys(row: Mapping[str, Any]) -> set[str]:
            # a row names its number as mobile, areaCode+phone, or (real-time failures) number
            area = row.get("areaCode")
            found = {
                _digits(row.get("mobile")),
                _digits(area, row.get("phone")),
                _digits(row.get("number")),
                _digits(area, row.get("number")),
            }
            return {k for k in found if k and k != _digits(area)}

        ok = [(keys(r), r) for r in success]
        bad = [(keys(r), r) for r in failed]

        def take(rows: list[tuple[set[str], Mapping[str, Any]]], key: str) -> Mapping[str, Any] | None:
            for i, (candidates, row) in enumerate(rows):
                if key in candidates:
                    rows.pop(i)
                    return row
            return None

        # Quanshi handles the list in order, so when a number occurs n times and f of its rows failed,
        # the first n - f occurrences went through and the last f were refused.
        wanted = [_digits(c.mobile) or _digits(c.area_code, c.phone) for c in callees]
        remaining = {k: wanted.count(k) for k in wanted}
        failures: dict[str, list[Mapping[str, Any]]] = {}
        for k in remaining:
            while (row := take(bad, k)) is not None:
                failures.setdefault(k, []).append(row)
        results = []
        for c, key in zip(callees, wanted, strict=True):
            refused = failures.get(key) or []
            if remaining[key] <= len(refused):
                row = refused.pop(0)
                try:
                    error_type = int(row.get("errorType") or 0)
                except (TypeError, ValueError):
                    error_type = 0
                reason = ERROR_TYPES.get(error_type, "failed")
                results.append(
                    DialOutcome(e164=callee_e164(c), accepted=False, reason=reason, provider_call_id=row.get("id"))
                )
            else:
                row = take(ok, key) or {}
                results.append(DialOutcome(e164=callee_e164(c), accepted=True, provider_call_id=row.get("id")))
            remaining[key] -= 1
        return results

    # ------------------------------------------------------------------ lifecycle pushes
    def verify_webhook(
        self,
        headers: Mapping[str, str],
        body: bytes,
        kind: str | None = None,
        query: Mapping[str, Any] | None = None,
    ) -> None:
        self.verify_shared_secret(headers, query)

    def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, kind: str | None = None
    ) -> list[CallEvent | TaskLifecycleEvent]:
        data = json.loads(body)
        items = data if isinstance(data, list) else [data]
        events: list[CallEvent | TaskLifecycleEvent] = []
        for item in items:
            event_kind = str(item.get("event") or item.get("type") or kind or "").lower()
            if event_kind not in LIFECYCLE_KINDS:
                raise ValueError(f"unknown quanshi push {event_kind!r}")
            event_id = str(item.get("eventId"))
            start = item.get("startTime")
            stamp = item.get("timestamp") or item.get("timeStamp") or ""
            # begin and end happen once per meeting; updates are told apart by their timestamp
            suffix = f":{stamp}" if event_kind == "update" else ""
            status = item.get("status")
            events.append(
                TaskLifecycleEvent(
                    provider="quanshi",
                    dedup_key=f"quanshi:{event_id}:{event_kind}{suffix}",
                    kind=event_kind,
                    provider_task_id=event_id,
                    status=EVENT_STATUS.get(int(status), str(status)) if status is not None else None,
                    start_time=datetime.fromtimestamp(int(start), tz=UTC) if start else None,
                    raw=dict(item),
                )
            )
        return events


PROVIDER = QuanshiProvider

"""XSwitch (FreeSWITCH XUI) auto-dial task groups: `/api/out_call_tasks`.

Auth: `POST /api/sessions` with `{login, password}` (or `{dev_key}`) answers a token that
travels as header `X-XTRA-AUTH-ID`. A 401/403 on any other call means the token is gone: log in
again once and repeat the call once. A refused login is never retried (5 bad logins lock the
account for 2 h).

Results: XSwitch pushes nothing. `poll_results` walks every started task's numbers and turns
numbers whose `call_status` is `done` or `stop` into CallEvents. Each number is dialled at most
once (a restarted task dials only numbers never tried), so the cursor is the set of number ids
already emitted per task, kept as id ranges so it stays small.

Settings: baseUrl, login + password or devKey, and the ProviderSession keys (connectTimeout,
readTimeout, retries, backoffFactor, backoffMax, backoffJitter, rateLimit). Optional:
timezone (of the PBX clock, default Asia/Shanghai, *inferred*), defaultRegion (to read numbers
back, default CN), dialFormat ("e164" default, "national", "digits"), destContext (default
dest_context for new tasks), pageSize (numbers per list page, default 500), pollMaxPages
(list requests per poll, default 200).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from outcall.errors import ProviderError, Unprocessable
from outcall.models import CallEvent, CallStatus, ContactOutcome, ContactSpec
from outcall.observability import logger
from outcall.phones import dial_string, provider_number_to_e164
from outcall.providers.base import Capabilities, PollPage, Provider, ProviderLimits, TaskSpec
from outcall.providers.http import ProviderSession

KEY: Final = "xswitch"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

# provider_options keys, by the PUT kind they belong to (field names as the API spells them)
BASIC_FIELDS = ("group_name", "description", "cid_number", "cid_name")
CALL_FIELDS = (
    "dest_context",
    "calling_time",
    "max_caps",
    "max_concurrency",
    "task_start_time",
    "auto_dial",
    "disable_ring_back",
    "auto_record",
)
CONFIRM_FIELDS = ("group_confirm_key", "group_confirm_read_timeout", "group_confirm_file")
ACTION_FIELDS = ("action", "data", "group_confirm_file")
KNOWN_OPTIONS = frozenset(BASIC_FIELDS + CALL_FIELDS + CONFIRM_FIELDS + ACTION_FIELDS)

# FreeSWITCH hangup causes that mean "nobody picked up" / "line busy"
NO_ANSWER_CAUSES = frozenset(
    {"NO_ANSWER", "NO_USER_RESPONSE", "ORIGINATOR_CANCEL", "ALLOTTED_TIMEOUT", "RECOVERY_ON_TIMER_EXPIRE"}
)
BUSY_CAUSES = frozenset({"USER_BUSY", "CALL_REJECTED", "NORMAL_CIRCUIT_CONGESTION"})


# ---------------------------------------------------------------- id ranges (the cursor)


def _add_id(ranges: list[list[int]], value: int) -> None:
    """Insert value into sorted, disjoint, non-adjacent [lo, hi] ranges."""
    lo_idx, hi_idx = 0, len(ranges)
    while lo_idx < hi_idx:  # first range with hi >= value - 1
        mid = (lo_idx + hi_idx) // 2
        if ranges[mid][1] < value - 1:
            lo_idx = mid + 1
        else:
            hi_idx = mid
    i = lo_idx
    if i < len(ranges) and ranges[i][0] <= value <= ranges[i][1]:
        return
    if i < len(ranges) and ranges[i][1] == value - 1:
        ranges[i][1] = value
        if i + 1 < len(ranges) and ranges[i + 1][0] == value + 1:
            ranges[i][1] = ranges[i + 1][1]
            del ranges[i + 1]
        return
    if i < len(ranges) and ranges[i][0] == value + 1:
        ranges[i][0] = value
        return
    ranges.insert(i, [value, value])


def _has_id(ranges: list[list[int]], value: int) -> bool:
    lo_idx, hi_idx = 0, len(ranges)
    while lo_idx < hi_idx:
        mid = (lo_idx + hi_idx) // 2
        if ranges[mid][1] < value:
            lo_idx = mid + 1
        else:
            hi_idx = mid
    return lo_idx < len(ranges) and ranges[lo_idx][0] <= value


class XSwitchProvider(Provider):
    key = KEY
    limits = ProviderLimits(batch_size=1000)  # per import call: *inferred*, the API names no limit
    capabilities = Capabilities(
        tasks=True, task_types=frozenset({"auto"}), pause=False, clone=True, webhooks=False, polling=True
    )

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self.http = ProviderSession(KEY, self.settings)
        self.tz = ZoneInfo(str(self.settings.get("timezone", "Asia/Shanghai")))
        self.region = str(self.settings.get("defaultRegion", "CN"))
        self.dial_format = str(self.settings.get("dialFormat", "e164"))
        self.page_size = int(self.settings.get("pageSize", 500))
        self.poll_max_pages = int(self.settings.get("pollMaxPages", 200))
        self._token: str | None = None
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- auth and plumbing

    def _login(self) -> str:
        if self.settings.get("devKey"):
            body: dict[str, Any] = {"dev_key": self.settings["devKey"]}
        else:
            body = {"login": self.settings.get("login", ""), "password": self.settings.get("password", "")}
        response = self.http.request("POST", "/api/sessions", json=body)
        payload = _json(response)
        if response.status_code != 200 or not isinstance(payload, dict) or not payload.get("token"):
            message = payload.get("message") if isinstance(payload, dict) else None
            raise ProviderError(
                f"xswitch login refused (HTTP {response.status_code}): {message or 'no token'}",
                provider=KEY,
                provider_code=response.status_code,
                retryable=False,
            )
        logger.debug("xswitch logged in", extra={"provider": KEY})
        return str(payload["token"])

    def _auth_token(self, *, refresh: bool = False, stale: str | None = None) -> str:
        with self._lock:
            if refresh and self._token == stale:
                self._token = None
            if self._token is None:
                self._token = self._login()
            return self._token

    def _call(self, method: str, path: str, body: Any = None, params: Mapping[str, Any] | None = None) -> Any:
        """One API call: token attached, one re-login on 401/403, the envelope checked."""
        token = self._auth_token()
        response = self._send(method, path, token, body, params)
        if response.status_code in (401, 403):
            logger.info("xswitch token refused, logging in again", extra={"provider": KEY})
            token = self._auth_token(refresh=True, stale=token)
            response = self._send(method, path, token, body, params)
        payload = _json(response)
        if response.status_code >= 400:
            raise ProviderError(
                f"xswitch {method} {path} failed (HTTP {response.status_code}): {_message(payload)}",
                provider=KEY,
                provider_code=response.status_code,
                retryable=False,
                details=payload if isinstance(payload, dict) else None,
            )
        if isinstance(payload, dict) and "code" in payload and _int(payload.get("code")) != 200:
            raise ProviderError(
                f"xswitch {method} {path} refused: {_message(payload)}",
                provider=KEY,
                provider_code=payload.get("code"),
                retryable=False,
                details=payload,
            )
        return payload

    def _send(self, method: str, path: str, token: str, body: Any, params: Mapping[str, Any] | None) -> Any:
        return self.http.request(method, path, json=body, params=dict(params or {}), headers={"X-XTRA-AUTH-ID": token})

    # ---------------------------------------------------------------- mapping

    def _options(self, spec: TaskSpec) -> dict[str, Any]:
        unknown = sorted(set(spec.provider_options) - KNOWN_OPTIONS)
        if unknown:
            raise Unprocessable(
                f"unknown xswitch providerOptions: {', '.join(unknown)}; known: {', '.join(sorted(KNOWN_OPTIONS))}"
            )
        if spec.retry is not None and spec.retry.rounds > 0:
            raise Unprocessable("xswitch tasks have no retry strategy: a number is dialled once")
        if spec.calling_window is not None:
            raise Unprocessable("xswitch tasks have no calling window; use autoStartAt and stop the task")
        options: dict[str, Any] = {}
        for key, value in spec.provider_options.items():
            options[key] = json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else value
        return options

    def _updates(self, spec: TaskSpec, *, include_basic: bool) -> list[dict[str, Any]]:
        """The PUT bodies that carry a TaskSpec, one per documented update kind."""
        opts = self._options(spec)
        bodies: list[dict[str, Any]] = []
        if include_basic:
            basic: dict[str, Any] = {"group_name": spec.name, "description": opts.get("description", "")}
            if spec.caller_ids:
                basic["cid_number"] = spec.caller_ids[0]
                basic["cid_name"] = opts.get("cid_name", spec.caller_ids[0])
            for key in ("cid_number", "cid_name"):
                if key in opts:
                    basic[key] = opts[key]
            bodies.append(basic)
        call: dict[str, Any] = {
            "dest_context": opts.get("dest_context", self.settings.get("destContext", "default")),
            "calling_time": opts.get("calling_time", spec.ring_timeout_seconds),
            "max_caps": opts.get("max_caps", spec.concurrency),
            "max_concurrency": opts.get("max_concurrency", spec.concurrency),
            "task_start_time": "",
            "auto_dial": 0,
            "disable_ring_back": opts.get("disable_ring_back", 1),
            "auto_record": opts.get("auto_record", 0),
        }
        if spec.auto_start_at is not None:
            call["task_start_time"] = spec.auto_start_at.astimezone(self.tz).strftime(TIME_FORMAT)
            call["auto_dial"] = 1
        for key in ("task_start_time", "auto_dial"):
            if key in opts:
                call[key] = opts[key]
        bodies.append(call)
        confirm = {k: opts[k] for k in CONFIRM_FIELDS if k in opts}
        if "group_confirm_key" in confirm:
            bodies.append(confirm)
        if "action" in opts:
            bodies.append({k: opts[k] for k in ACTION_FIELDS if k in opts})
        return bodies

    def _dest_number(self, e164: str) -> str:
        return dial_string(e164, self.dial_format)

    def _e164(self, number: str | None) -> str | None:
        return provider_number_to_e164(number, self.region)

    def _time(self, value: Any) -> datetime | None:
        if not value:
            return None
        try:
            return datetime.strptime(str(value), TIME_FORMAT).replace(tzinfo=self.tz)
        except ValueError:
            return None

    # ---------------------------------------------------------------- tasks

    def create_task(self, spec: TaskSpec) -> str:
        bodies = self._updates(spec, include_basic=True)  # validate before creating anything
        opts = self._options(spec)
        payload = self._call(
            "POST", "/api/out_call_tasks", {"group_name": spec.name, "description": opts.get("description", "")}
        )
        task_id = str(payload.get("data"))
        for body in bodies:
            self._call("PUT", f"/api/out_call_tasks/{task_id}", body)
        return task_id

    def update_task(self, provider_task_id: str, spec: TaskSpec) -> None:
        for body in self._updates(spec, include_basic=True):
            self._call("PUT", f"/api/out_call_tasks/{provider_task_id}", body)

    def update_basic_info(self, provider_task_id: str, **fields: Any) -> None:
        self._put_kind(provider_task_id, BASIC_FIELDS, fields)

    def update_call_settings(self, provider_task_id: str, **fields: Any) -> None:
        self._put_kind(provider_task_id, CALL_FIELDS, fields)

    def update_confirmation(self, provider_task_id: str, **fields: Any) -> None:
        self._put_kind(provider_task_id, CONFIRM_FIELDS, fields)

    def update_answer_action(self, provider_task_id: str, **fields: Any) -> None:
        self._put_kind(provider_task_id, ACTION_FIELDS, fields)

    def _put_kind(self, provider_task_id: str, allowed: Sequence[str], fields: Mapping[str, Any]) -> None:
        unknown = sorted(set(fields) - set(allowed))
        if unknown:
            raise Unprocessable(f"not part of this xswitch update: {', '.join(unknown)}")
        body = {k: json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else v for k, v in fields.items()}
        self._call("PUT", f"/api/out_call_tasks/{provider_task_id}", body)

    def get_task(self, provider_task_id: str) -> dict[str, Any]:
        payload = self._call("GET", f"/api/out_call_tasks/{provider_task_id}")
        return dict(payload) if isinstance(payload, dict) else {}

    def list_tasks(self, *, name: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        tasks: list[dict[str, Any]] = []
        page = 1
        while True:
            params: dict[str, Any] = {"perPage": self.page_size, "page": page}
            if name:
                params["name"] = name
            if status:
                params["status"] = status
            payload = self._call("GET", "/api/out_call_tasks", params=params)
            tasks.extend(payload.get("data") or [])
            if page >= _int(payload.get("pageCount")):
                return tasks
            page += 1

    def delete_task(self, provider_task_id: str) -> None:
        self._call("DELETE", f"/api/out_call_tasks/{provider_task_id}")

    def start_task(self, provider_task_id: str) -> None:
        self._call("PUT", "/api/out_call_tasks", {"action": "start", "data": [str(provider_task_id)]})

    def stop_task(self, provider_task_id: str) -> None:
        self._call("PUT", "/api/out_call_tasks", {"action": "stop", "data": [str(provider_task_id)]})

    def clone_task(self, provider_task_id: str, name: str, *, with_numbers: bool = False) -> str:
        payload = self._call(
            "POST",
            "/api/out_call_tasks/clone",
            {"group_name": name, "description": "", "is_clone_numbers": with_numbers, "id": _int(provider_task_id)},
        )
        return str(payload.get("data"))

    # ---------------------------------------------------------------- numbers

    def add_contacts(self, provider_task_id: str, contacts: Sequence[ContactSpec]) -> list[ContactOutcome]:
        if len(contacts) > self.limits.batch_size:
            raise Unprocessable(f"at most {self.limits.batch_size} contacts per xswitch import call")
        if not contacts:
            return []
        rows = [{"dest_number": self._dest_number(c.e164), "external_id": c.external_id or ""} for c in contacts]
        self._call("POST", f"/api/out_call_tasks/{provider_task_id}/import", {"data": rows})
        # the import answers `data: "{}"`: no per-number ids or refusals to report
        return [ContactOutcome(e164=c.e164, accepted=True, provider_ref=c.external_id) for c in contacts]

    def list_numbers(self, provider_task_id: str, page: int = 1, per_page: int | None = None) -> dict[str, Any]:
        """One page of a task's numbers (`data`, `page`, `pageCount`, `rowCount`; values are strings)."""
        params = {"page": page, "perPage": per_page or self.page_size}
        payload = self._call("GET", f"/api/out_call_tasks/{provider_task_id}/numbers", params=params)
        return dict(payload) if isinstance(payload, dict) else {"data": []}

    def download_numbers(self, provider_task_id: str) -> list[list[str]]:
        """The export: a header row then one row per number."""
        payload = self._call("GET", f"/api/out_call_tasks/{provider_task_id}/download")
        return list(payload) if isinstance(payload, list) else []

    # ---------------------------------------------------------------- results

    def _event(self, task_id: str, row: Mapping[str, Any]) -> CallEvent:
        cause = str(row.get("cause") or "")
        status: CallStatus
        if row.get("call_answer_time"):
            status = "completed"
        elif cause in BUSY_CAUSES:
            status = "busy"
        elif cause in NO_ANSWER_CAUSES:
            status = "no-answer"
        else:
            status = "failed"
        started = self._time(row.get("call_start_time"))
        answered = self._time(row.get("call_answer_time"))
        ended = self._time(row.get("call_end_time"))
        duration = int((ended - answered).total_seconds()) if ended and answered else None
        number_id = str(row.get("id"))
        return CallEvent(
            provider=KEY,
            dedup_key=f"{KEY}:{task_id}:{number_id}",
            provider_call_id=str(row.get("uuid") or "") or None,
            provider_task_id=task_id,
            provider_contact_ref=str(row.get("external_id") or "") or number_id,
            phone=self._e164(str(row.get("dest_number") or "")),
            status=status,
            started_at=started,
            answered_at=answered,
            ended_at=ended,
            duration_seconds=duration,
            hangup_cause=cause or str(row.get("call_status")),
            occurred_at=ended or started,
            raw={k: v for k, v in row.items() if k not in ("dest_number",)},
        )

    def poll_results(self, cursor: str | None) -> PollPage:
        """Walk started tasks' numbers; emit each done/stop number once. A failure after some
        pages returns what was read with the cursor advanced past exactly those numbers."""
        state: dict[str, list[list[int]]] = json.loads(cursor) if cursor else {}
        events: list[CallEvent] = []
        pages = 0
        try:
            tasks = self.list_tasks()
            pages += 1
            live = {str(t.get("id")) for t in tasks}
            state = {k: v for k, v in state.items() if k in live}
            for task in tasks:
                if task.get("status") == "init":
                    continue
                task_id = str(task.get("id"))
                seen = state.setdefault(task_id, [])
                page = 1
                while True:
                    if pages >= self.poll_max_pages:
                        return PollPage(events=events, cursor=json.dumps(state), more=True)
                    payload = self.list_numbers(task_id, page)
                    pages += 1
                    for row in payload.get("data") or []:
                        if row.get("call_status") not in ("done", "stop"):
                            continue
                        if row.get("call_status") == "stop" and str(row.get("outbound_call")) == "1":
                            continue  # stopped before it was dialled: a restart will still dial it
                        number_id = _int(row.get("id"))
                        if _has_id(seen, number_id):
                            continue
                        events.append(self._event(task_id, row))
                        _add_id(seen, number_id)
                    if page >= _int(payload.get("pageCount")):
                        break
                    page += 1
        except ProviderError:
            if not events:
                raise
            logger.warning("xswitch poll stopped early", extra={"provider": KEY, "events": len(events)})
            return PollPage(events=events, cursor=json.dumps(state), more=True)
        return PollPage(events=events, cursor=json.dumps(state), more=False)


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _message(payload: Any) -> str:
    if isinstance(payload, dict):
        return str(payload.get("message") or payload.get("msg") or payload)
    return str(payload)[:200]


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


PROVIDER = XSwitchProvider

"""XSwitch (FreeSWITCH XUI) auto-dial task groups: `/api/out_call_tasks`.

Documents followed: the REST API page docs.xswitch.cn/rest-api/api (section 认证 / 获取 Token), the
authentication page docs.xswitch.cn/auth/ (token lifetime, expiry answered 403), and the auto-dial
section 高级配置-自动外呼 kept as seeds/xswitch-out-call-tasks.txt (every task and number operation,
named per method below). Per PROVIDERS.md, from the XSwitch user manual: a stopped task started
again dials only the numbers never tried (`outbound_call` "1").

Auth: `POST /api/sessions` with `{login, password}`, or `{login, dev_key}` (the REST page's example
`login=1007&dev_key=...`), answers `{"code": 200, "token"}`; the token travels as header
`X-XTRA-AUTH-ID`. An expired token is answered HTTP 403 (auth page; 401 is read the same way): log
in again once and repeat the call once. A refused login is never retried (after 2 failures a captcha
is asked for, after 5 no token for 2 hours). Errors are an HTTP status with `{code, text}` (or
`message`).

Results: XSwitch pushes nothing. `poll_results` walks every started task's numbers (`GET
/api/out_call_tasks/{id}/numbers`) and turns numbers whose `call_status` is `done` or `stop` into
CallEvents. Each number row is dialled at most once, so the cursor is the set of number ids
already emitted per task, kept as id ranges so it stays small. `page` / `perPage` are documented
for the task list only; the numbers answer carries `page`, `pageCount`, `rowCount`, so a poll
asks for pages and checks the answers: a server that ignores `page` (answers another page, or the
same rows again) or hides rows (fewer than `rowCount` over all pages) is an error naming the task,
never a silent gap.

Settings: baseUrl, login + password, or login + devKey, and the ProviderSession keys
(connectTimeout, readTimeout, retries, backoffFactor, backoffMax, backoffJitter, rateLimit).
Optional: timezone (the PBX clock of the `YYYY-MM-DD HH:MM:SS` times, which carry no offset;
default Asia/Shanghai, *inferred*; events are given in UTC), defaultRegion (to read numbers back,
default CN), dialFormat ("e164" default, "national", "digits"), destContext (default
dest_context for new tasks, "default"), pageSize (rows per list page asked for, default 500),
pollMaxPages (list requests per poll, default 200), providerRedial (true: settings.retry is refused,
the PBX has no redial; false: it is left to outcall's dispatcher, which imports a retry as a new
row), checkHeld (true: before an import, the task's
numbers are read so that a batch sent again is answered already_held instead of imported twice).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
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

# The `cause` of a number row is FreeSWITCH's hangup cause (the seed calls it 挂机原因 and names no
# values; FreeSWITCH's hangup-cause table gives them). Unanswered calls by cause:
CAUSE_STATUSES: tuple[tuple[CallStatus, frozenset[str]], ...] = (
    ("no-answer", frozenset({"NO_ANSWER", "NO_USER_RESPONSE", "ALLOTTED_TIMEOUT", "RECOVERY_ON_TIMER_EXPIRE"})),
    ("busy", frozenset({"USER_BUSY"})),
    ("rejected", frozenset({"CALL_REJECTED", "USER_CHALLENGE", "OUTGOING_CALL_BARRED", "INCOMING_CALL_BARRED"})),
    ("canceled", frozenset({"ORIGINATOR_CANCEL", "LOSE_RACE", "PICKED_OFF"})),
)
# normalised hangup causes (the raw `cause` stays in `raw`)
CAUSE_NAMES = {
    "NORMAL_CLEARING": "hangup",
    "NO_ANSWER": "no-answer",
    "NO_USER_RESPONSE": "no-answer",
    "ALLOTTED_TIMEOUT": "no-answer",
    "RECOVERY_ON_TIMER_EXPIRE": "no-answer",
    "USER_BUSY": "busy",
    "CALL_REJECTED": "rejected",
    "ORIGINATOR_CANCEL": "canceled",
    "UNALLOCATED_NUMBER": "invalid-number",
    "INVALID_NUMBER_FORMAT": "invalid-number",
    "NO_ROUTE_DESTINATION": "invalid-number",
    "NORMAL_CIRCUIT_CONGESTION": "network",
    "NETWORK_OUT_OF_ORDER": "network",
    "DESTINATION_OUT_OF_ORDER": "network",
    "MANAGER_REQUEST": "operator-stop",
}
RELEASE_RE = re.compile(r"^a(\d+):(.+)$")


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
        tasks=True, task_types=frozenset({"auto"}), pause=True, clone=True, webhooks=False, polling=True
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
        """POST /api/sessions (REST API page, 获取 Token): `login` with `password`, or with `dev_key`."""
        body: dict[str, Any] = {"login": self.settings.get("login", "")}
        if self.settings.get("devKey"):
            body["dev_key"] = self.settings["devKey"]
        else:
            body["password"] = self.settings.get("password", "")
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
        if spec.retry is not None and spec.retry.rounds > 0 and self.settings.get("providerRedial", True):
            raise Unprocessable(
                "settings.retry: xswitch tasks have no retry strategy (a number is dialled once); "
                "with the setting providerRedial false, outcall's dispatcher imports retries itself"
            )
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
            return datetime.strptime(str(value), TIME_FORMAT).replace(tzinfo=self.tz).astimezone(UTC)
        except ValueError:
            return None

    # ---------------------------------------------------------------- tasks

    def create_task(self, spec: TaskSpec) -> str:
        """POST /api/out_call_tasks {group_name, description} (创建新的自动外呼, answers `data`: the id),
        then one PUT per update kind the spec fills (修改基本信息 / 修改呼叫设置 / 修改呼叫确认 / 修改接通后动作)."""
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
        """PUT /api/out_call_tasks/$id, once per update kind (修改指定自动外呼表)."""
        for body in self._updates(spec, include_basic=True):
            self._call("PUT", f"/api/out_call_tasks/{provider_task_id}", body)

    def update_basic_info(self, provider_task_id: str, **fields: Any) -> None:
        """PUT /api/out_call_tasks/$id 修改基本信息: group_name, description, cid_number, cid_name."""
        self._put_kind(provider_task_id, BASIC_FIELDS, fields)

    def update_call_settings(self, provider_task_id: str, **fields: Any) -> None:
        """PUT /api/out_call_tasks/$id 修改呼叫设置: dest_context, calling_time, max_caps, max_concurrency,
        task_start_time, auto_dial, disable_ring_back, auto_record."""
        self._put_kind(provider_task_id, CALL_FIELDS, fields)

    def update_confirmation(self, provider_task_id: str, **fields: Any) -> None:
        """PUT /api/out_call_tasks/$id 修改呼叫确认: group_confirm_key, group_confirm_read_timeout,
        group_confirm_file."""
        self._put_kind(provider_task_id, CONFIRM_FIELDS, fields)

    def update_answer_action(self, provider_task_id: str, **fields: Any) -> None:
        """PUT /api/out_call_tasks/$id 修改接通后动作: action, data, group_confirm_file."""
        self._put_kind(provider_task_id, ACTION_FIELDS, fields)

    def _put_kind(self, provider_task_id: str, allowed: Sequence[str], fields: Mapping[str, Any]) -> None:
        unknown = sorted(set(fields) - set(allowed))
        if unknown:
            raise Unprocessable(f"not part of this xswitch update: {', '.join(unknown)}")
        body = {k: json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else v for k, v in fields.items()}
        self._call("PUT", f"/api/out_call_tasks/{provider_task_id}", body)

    def get_task(self, provider_task_id: str) -> dict[str, Any]:
        """GET /api/out_call_tasks/$id (查看指定自动外呼表的配置参数: the task itself, values as integers)."""
        payload = self._call("GET", f"/api/out_call_tasks/{provider_task_id}")
        return dict(payload) if isinstance(payload, dict) else {}

    def list_tasks(self, *, name: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """GET /api/out_call_tasks?perPage=&page=&name=&status= (查询自动外呼信息: documented paging)."""
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
        """DELETE /api/out_call_tasks/$id (删除指定自动外呼表)."""
        self._call("DELETE", f"/api/out_call_tasks/{provider_task_id}")

    def start_task(self, provider_task_id: str) -> None:
        """PUT /api/out_call_tasks {"action": "start", "data": ["<id>"]} (启动自动外呼). After a stop it
        dials only the numbers never tried."""
        self._call("PUT", "/api/out_call_tasks", {"action": "start", "data": [str(provider_task_id)]})

    def stop_task(self, provider_task_id: str) -> None:
        """PUT /api/out_call_tasks {"action": "stop", "data": ["<id>"]} (关闭自动外呼): calls in progress
        end as `stop`, numbers never tried keep `outbound_call` "1"."""
        self._call("PUT", "/api/out_call_tasks", {"action": "stop", "data": [str(provider_task_id)]})

    def pause_task(self, provider_task_id: str) -> None:
        """The API has no pause; its stop is one: a later start dials only the numbers never tried
        (user manual, PROVIDERS.md), so pause is stop and resume is start."""
        self.stop_task(provider_task_id)

    def clone_task(self, provider_task_id: str, name: str, *, with_numbers: bool = False) -> str:
        """POST /api/out_call_tasks/clone {group_name, description, is_clone_numbers, id} (克隆自动外呼)."""
        payload = self._call(
            "POST",
            "/api/out_call_tasks/clone",
            {"group_name": name, "description": "", "is_clone_numbers": with_numbers, "id": _int(provider_task_id)},
        )
        return str(payload.get("data"))

    # ---------------------------------------------------------------- numbers

    @staticmethod
    def _external_id(contact: ContactSpec) -> str:
        """external_id carries the release (`a<attempt>:<releaseKey>`) when the dispatcher gave one, so a
        batch sent again is recognised and the result names its attempt; else the contact's own id."""
        if contact.release_key:
            return f"a{contact.attempt}:{contact.release_key}"
        return contact.external_id or ""

    def add_contacts(self, provider_task_id: str, contacts: Sequence[ContactSpec]) -> list[ContactOutcome]:
        """POST /api/out_call_tasks/$id/import {"data": [{dest_number, external_id}]} (创建被叫号码表).
        The answer is `data: "{}"`: no per-number ids or refusals. The document names no limit per
        import (batchSize 1,000 is outcall's, *inferred*) and says nothing of a number imported twice:
        the task holds it twice, and a started task dials it (a retry is a second row). With
        checkHeld, rows whose external_id the task already has are not imported again (already_held)."""
        if len(contacts) > self.limits.batch_size:
            raise Unprocessable(f"at most {self.limits.batch_size} contacts per xswitch import call")
        if not contacts:
            return []
        ids = [self._external_id(c) for c in contacts]
        held: set[str] = set()
        if self.settings.get("checkHeld", True) and any(c.release_key for c in contacts):
            held = {str(row.get("external_id") or "") for row in self._all_numbers(provider_task_id)} - {""}
        outcomes: list[ContactOutcome] = []
        rows: list[dict[str, str]] = []
        for contact, external in zip(contacts, ids, strict=True):
            if contact.release_key and external in held:
                outcomes.append(
                    ContactOutcome(e164=contact.e164, accepted=True, already_held=True, provider_ref=external)
                )
                continue
            held.add(external)
            rows.append({"dest_number": self._dest_number(contact.e164), "external_id": external})
            outcomes.append(ContactOutcome(e164=contact.e164, accepted=True, provider_ref=external or None))
        if rows:
            self._call("POST", f"/api/out_call_tasks/{provider_task_id}/import", {"data": rows})
        return outcomes

    def list_numbers(self, provider_task_id: str, page: int = 1, per_page: int | None = None) -> dict[str, Any]:
        """GET /api/out_call_tasks/$id/numbers (查看被叫号码表): `data`, `page`, `pageCount`, `rowCount`,
        values as strings. `page` / `perPage` are sent though documented only for the task list."""
        params = {"page": page, "perPage": per_page or self.page_size}
        payload = self._call("GET", f"/api/out_call_tasks/{provider_task_id}/numbers", params=params)
        return dict(payload) if isinstance(payload, dict) else {"data": []}

    def _number_pages(self, provider_task_id: str, first_page: int = 1) -> Iterator[tuple[int, dict[str, Any]]]:
        """The task's number pages, checked: an answer for another page than asked, rows already seen
        on an earlier page, or fewer rows than `rowCount` over every page raise ProviderError."""
        page = first_page
        seen: set[str] = set()
        read = 0
        while True:
            payload = self.list_numbers(provider_task_id, page)
            rows = payload.get("data") or []
            answered = _int(payload.get("page")) or page
            ids = {str(r.get("id")) for r in rows}
            if answered != page or (page > first_page and ids & seen):
                raise ProviderError(
                    f"xswitch ignored page={page} on /api/out_call_tasks/{provider_task_id}/numbers "
                    f"(answered page {answered}; page/perPage are documented for the task list only): "
                    "numbers past the first page cannot be read",
                    provider=KEY,
                    provider_code="paging-ignored",
                    retryable=False,
                )
            seen |= ids
            read += len(rows)
            yield page, payload
            if page >= _int(payload.get("pageCount")):
                total = _int(payload.get("rowCount"))
                if first_page == 1 and total > read:
                    raise ProviderError(
                        f"xswitch answered {read} of {total} numbers of task {provider_task_id}: "
                        "the rest cannot be read",
                        provider=KEY,
                        provider_code="paging-ignored",
                        retryable=False,
                    )
                return
            page += 1

    def _all_numbers(self, provider_task_id: str) -> list[dict[str, Any]]:
        return [row for _, payload in self._number_pages(provider_task_id) for row in payload.get("data") or []]

    def download_numbers(self, provider_task_id: str) -> list[list[str]]:
        """GET /api/out_call_tasks/$id/download (导出被叫号码表): a header row then one row per number."""
        payload = self._call("GET", f"/api/out_call_tasks/{provider_task_id}/download")
        return list(payload) if isinstance(payload, list) else []

    # ---------------------------------------------------------------- results

    def _status(self, row: Mapping[str, Any]) -> tuple[CallStatus, str]:
        """(outcome, normalised hangup cause) of a finished number row. Answered (call_answer_time set)
        is completed; otherwise the FreeSWITCH hangup cause decides; a number stopped by the operator
        before an answer is canceled."""
        cause = str(row.get("cause") or "").upper()
        if row.get("call_answer_time"):
            return "completed", "operator-stop" if cause == "MANAGER_REQUEST" else CAUSE_NAMES.get(cause, "hangup")
        if row.get("call_status") == "stop" or cause == "MANAGER_REQUEST":
            return "canceled", "operator-stop"
        for status, causes in CAUSE_STATUSES:
            if cause in causes:
                return status, CAUSE_NAMES.get(cause, status)
        return "failed", CAUSE_NAMES.get(cause, "failed" if not cause else cause.lower().replace("_", "-"))

    def _event(self, task_id: str, row: Mapping[str, Any]) -> CallEvent:
        status, cause = self._status(row)
        started = self._time(row.get("call_start_time"))
        answered = self._time(row.get("call_answer_time"))
        ended = self._time(row.get("call_end_time"))
        duration = int((ended - answered).total_seconds()) if ended and answered else None
        number_id = str(row.get("id"))
        external = str(row.get("external_id") or "")
        attempt, ref = 1, external or number_id
        match = RELEASE_RE.match(external)
        if match:
            attempt, ref = int(match.group(1)), match.group(2)
        return CallEvent(
            provider=KEY,
            dedup_key=f"{KEY}:{task_id}:{number_id}",
            provider_call_id=str(row.get("uuid") or "") or None,
            provider_task_id=task_id,
            provider_contact_ref=ref,
            phone=self._e164(str(row.get("dest_number") or "")),
            status=status,
            attempt=attempt,
            started_at=started,
            answered_at=answered,
            ended_at=ended,
            duration_seconds=duration,
            hangup_cause=cause,
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
                for _, payload in self._number_pages(task_id):
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
                    if pages >= self.poll_max_pages:
                        return PollPage(events=events, cursor=json.dumps(state), more=True)
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
        return str(payload.get("message") or payload.get("text") or payload.get("msg") or payload)
    return str(payload)[:200]


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


PROVIDER = XSwitchProvider

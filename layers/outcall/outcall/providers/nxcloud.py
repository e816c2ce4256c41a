"""NXCLOUD Callbot v3 (AI robot dialing).

Every call is `POST {baseUrl}/callcentre/api/v3/<op>` with a JSON body that carries
`"productID": "callbot"` and the caller-made `userTaskID` (that id is also the provider task id
outcall keeps). Every request is signed:

    raw  = secretKey + "&body=" + <exact body string> + "&createTs=" + createTs
           + "&requestID=" + requestID + "&uuid=" + uuid
    sign = upper(hex(md5(raw)))            (or sha256 with header `algorithm: SHA256`)

with headers `uuid` (the account key), `requestID`, `createTs` (seconds), `sign`, `algorithm`.
Responses and callbacks are signed the same way (headers of the response / the push).
With `gzip: true` the body is sent `Content-Encoding: gzip`; *inferred*: the signature covers the
uncompressed body (the docs do not say), so the signer always signs the JSON text.

Settings (the `nxcloud` entry of the provider secret):
  baseUrl            required
  appKey             the account key, sent as header `uuid`
  secretKey          signing secret
  algorithm          "MD5" (default) or "SHA256"
  gzip               compress request bodies (default false)
  verifyResponses    check the signature of every answer (default true)
  webhookUrl         base of our callback URLs; callbacks go to {webhookUrl}/call, /order, /task
  callCallbackUrl / orderCallbackUrl / taskCallbackUrl   explicit callback URLs (override webhookUrl)
  webhookMaxSkewSeconds  reject callbacks whose createTs is further off (default 600; 0 = no check)
  importMode         "import" (importBatchCall, default; the seed) or "add" (addBatchCall)
  importBusyRetries  how often add_contacts re-sends a batch answered retCode 1001 (default 3)
  importBusyDelay    first wait in seconds before such a re-send, doubled each time (default 1.0)
  batchSize          contacts per batch call (default 500, *inferred*; the API answers 4001 above it)
  plus the ProviderSession keys (timeouts, retries, backoffFactor, rateLimit).

retCode 1001 ("batch import still running") is handled explicitly: the batch is re-sent after
importBusyDelay, importBusyDelay*2, ... up to importBusyRetries times; if the import is still running
after that, a ProviderError with provider_code=1001 and retryable=True is raised so the caller (the
SQS chunk worker) can redeliver the chunk later.

*Inferred* (not in the public pages): the field names of createTask/updateTask besides productID and
userTaskID (anything in TaskSpec.provider_options is merged into the body as is, so a real field
name can always be given), the `callStatus` codes of call callbacks (1 answered, 2 no answer, 3 busy,
4 failed) and the `orderStatus` codes (1 pending, 2 calling, 3 done, 4 cancelled).
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from outcall.errors import InvalidSignature, ProviderError
from outcall.models import CallEvent, CallStatus, ContactOutcome, ContactSpec, TaskLifecycleEvent
from outcall.observability import logger, mask_phone
from outcall.providers.base import Capabilities, PollPage, Provider, ProviderLimits, TaskSpec
from outcall.providers.http import ProviderSession

API_PREFIX = "/callcentre/api/v3/"
PRODUCT_ID = "callbot"

# retCode -> (meaning, retryable)
RET_CODES: dict[int, tuple[str, bool]] = {
    1: ("general error", False),
    2: ("missing parameter", False),
    3: ("malformed parameter", False),
    4: ("invalid parameter value", False),
    4001: ("too many elements in an array (batch too large)", False),
    5: ("server under maintenance", True),
    5001: ("internal server error", True),
    6: ("wrong signature", False),
    6001: ("signature missing", False),
    6002: ("account does not exist", False),
    6003: ("no permission", False),
    7: ("system busy", True),
    1001: ("a batch import is still running; retry later", True),
}
IMPORT_RUNNING = 1001
AUTH_CODES = frozenset({6, 6001, 6002, 6003})

TASK_STATUS = {1: "ready", 2: "running", 3: "completed", 4: "failed", 5: "paused"}
TASK_OPERATE = {"start": 1, "pause": 2, "complete": 3}
CALL_STATUS: dict[int, CallStatus] = {1: "completed", 2: "no-answer", 3: "busy", 4: "failed"}
ORDER_STATUS: dict[int, CallStatus] = {1: "queued", 2: "ringing", 3: "completed", 4: "failed"}


def compute_sign(secret: str, body: str, create_ts: str, request_id: str, account: str, algorithm: str = "MD5") -> str:
    """The NXCLOUD signature (requests, responses and callbacks alike)."""
    raw = f"{secret}&body={body}&createTs={create_ts}&requestID={request_id}&uuid={account}"
    algo = (algorithm or "MD5").upper()
    if algo == "SHA256":
        return hashlib.sha256(raw.encode()).hexdigest().upper()
    if algo == "MD5":
        return hashlib.md5(raw.encode(), usedforsecurity=False).hexdigest().upper()
    raise ValueError(f"unknown nxcloud signature algorithm {algorithm!r}")


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()}


def _ts(value: Any) -> datetime | None:
    """NXCLOUD timestamps are epoch seconds (or ms); 0/empty means 'did not happen'."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if number <= 0:
        return None
    if number > 1e11:
        number /= 1000
    return datetime.fromtimestamp(number, tz=UTC)


def _e164(phone: Any) -> str | None:
    if not phone:
        return None
    text = str(phone)
    return text if text.startswith("+") else f"+{text}"


class NxcloudProvider(Provider):
    key = "nxcloud"
    webhook_kinds = frozenset({"call", "order", "task"})  # the callback URLs create_task gives
    limits = ProviderLimits(batch_size=500)
    capabilities = Capabilities(
        tasks=True, task_types=frozenset({"robot", "auto"}), pause=True, webhooks=True, polling=True
    )

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self.app_key = str(self.settings.get("appKey", ""))
        self.secret = str(self.settings.get("secretKey", ""))
        self.algorithm = str(self.settings.get("algorithm", "MD5")).upper()
        self.gzip = bool(self.settings.get("gzip", False))
        self.verify_responses = bool(self.settings.get("verifyResponses", True))
        self.import_mode = str(self.settings.get("importMode", "import"))
        self.import_busy_retries = int(self.settings.get("importBusyRetries", 3))
        self.import_busy_delay = float(self.settings.get("importBusyDelay", 1.0))
        self.max_skew = float(self.settings.get("webhookMaxSkewSeconds", 600))
        self.http = ProviderSession(self.key, self.settings)

    # ------------------------------------------------------------------ plumbing
    def callback_url(self, kind: str) -> str:
        explicit = self.settings.get(f"{kind}CallbackUrl")
        if explicit:
            return str(explicit)
        base = str(self.settings.get("webhookUrl", "")).rstrip("/")
        return f"{base}/{kind}" if base else ""

    def sign(self, body: str, create_ts: str, request_id: str, algorithm: str | None = None) -> str:
        return compute_sign(self.secret, body, create_ts, request_id, self.app_key, algorithm or self.algorithm)

    def call(self, op: str, payload: dict[str, Any]) -> dict[str, Any]:
        """One signed call; returns the answer when retCode is 0, else raises ProviderError."""
        body = json.dumps({"productID": PRODUCT_ID, **payload}, ensure_ascii=False, separators=(",", ":"))
        request_id = uuid.uuid4().hex
        create_ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/json;charset=utf-8",
            "uuid": self.app_key,
            "requestID": request_id,
            "createTs": create_ts,
            "algorithm": self.algorithm,
            "sign": self.sign(body, create_ts, request_id),
        }
        data = body.encode()
        if self.gzip:
            data = gzip.compress(data)
            headers["Content-Encoding"] = "gzip"
        response = self.http.request("POST", API_PREFIX + op, data=data, headers=headers)
        if response.status_code >= 400:
            raise ProviderError(
                f"nxcloud {op} answered HTTP {response.status_code}",
                provider=self.key,
                provider_code=response.status_code,
                retryable=False,
                details={"body": response.text[:500]},
            )
        try:
            answer = response.json()
        except ValueError as exc:
            raise ProviderError(f"nxcloud {op} answered something that is not JSON", provider=self.key) from exc
        code = int(answer.get("retCode", -1))
        # An answer refusing our credentials cannot verify with them; it grants nothing, so report it as is.
        if self.verify_responses and code not in AUTH_CODES:
            self._verify_response(op, response.headers, response.text)
        if code != 0:
            meaning, retryable = RET_CODES.get(code, ("unknown error", False))
            raise ProviderError(
                f"nxcloud {op} refused: retCode {code} ({meaning}): {answer.get('retMsg', '')}",
                provider=self.key,
                provider_code=code,
                retryable=retryable,
                details={"responseID": answer.get("responseID")},
            )
        return dict(answer)

    def _verify_response(self, op: str, headers: Mapping[str, str], text: str) -> None:
        h = _lower(headers)
        sign = h.get("sign")
        if not sign:
            raise ProviderError(f"nxcloud {op} answer is not signed", provider=self.key, provider_code="unsigned")
        try:
            expected = compute_sign(
                self.secret,
                text,
                h.get("createts", ""),
                h.get("requestid", ""),
                h.get("uuid", ""),
                h.get("algorithm") or "MD5",
            )
        except ValueError as exc:
            raise ProviderError(str(exc), provider=self.key, provider_code="bad-signature") from exc
        if h.get("uuid") != self.app_key or not hmac.compare_digest(expected, sign.upper()):
            raise ProviderError(
                f"nxcloud {op} answer has a wrong signature", provider=self.key, provider_code="bad-signature"
            )

    # ------------------------------------------------------------------ tasks
    def _task_body(self, spec: TaskSpec) -> dict[str, Any]:
        body: dict[str, Any] = {
            "taskName": spec.name,
            "concurrency": spec.concurrency,
            "ringTimeout": spec.ring_timeout_seconds,
            "callerNumbers": [n.lstrip("+") for n in spec.caller_ids],
            "taskCallbackUrl": self.callback_url("task"),
            "callCallbackUrl": self.callback_url("call"),
            "orderCallbackUrl": self.callback_url("order"),
        }
        if spec.retry:
            body["redialTimes"] = spec.retry.rounds
            body["redialInterval"] = spec.retry.interval_minutes
        if spec.calling_window:
            w = spec.calling_window
            body["timezone"] = w.timezone
            body["callTimeRanges"] = [{"start": w.start.strftime("%H:%M"), "end": w.end.strftime("%H:%M")}]
            body["weekdays"] = w.weekdays
        if spec.auto_start_at:
            body["startTs"] = int(spec.auto_start_at.timestamp())
        if spec.auto_stop_at:
            body["endTs"] = int(spec.auto_stop_at.timestamp())
        body.update(spec.provider_options)
        return body

    def create_task(self, spec: TaskSpec) -> str:
        user_task_id = str(spec.provider_options.get("userTaskID") or uuid.uuid4().hex)
        self.call("createTask", {**self._task_body(spec), "userTaskID": user_task_id})
        return user_task_id

    def update_task(self, provider_task_id: str, spec: TaskSpec) -> None:
        """Only a paused or not-yet-started task can be updated; NXCLOUD answers retCode 4 otherwise."""
        self.call("updateTask", {**self._task_body(spec), "userTaskID": provider_task_id})

    def _operate(self, provider_task_id: str, operation: str) -> None:
        self.call("mgrTaskStatus", {"userTaskID": provider_task_id, "taskOperate": TASK_OPERATE[operation]})

    def start_task(self, provider_task_id: str) -> None:
        self._operate(provider_task_id, "start")

    def pause_task(self, provider_task_id: str) -> None:
        self._operate(provider_task_id, "pause")

    def stop_task(self, provider_task_id: str) -> None:
        self._operate(provider_task_id, "complete")

    def delete_task(self, provider_task_id: str) -> None:
        """NXCLOUD has no delete: the task is completed so it never dials again (already-completed is fine)."""
        try:
            self._operate(provider_task_id, "complete")
        except ProviderError as exc:
            if exc.provider_code != 4:
                raise
            logger.info("nxcloud task already finished", extra={"task": provider_task_id})

    def list_tasks(self, **filters: Any) -> dict[str, Any]:
        return self.call("listTask", dict(filters))

    def stop_orders(self, provider_task_id: str, order_ids: Sequence[str]) -> dict[str, Any]:
        """stopOrder: stop dialling the given orders (contacts) of a task."""
        return self.call("stopOrder", {"userTaskID": provider_task_id, "orderIDs": list(order_ids)})

    def ping(self) -> bool:
        self.call("ping", {})
        return True

    # ------------------------------------------------------------------ contacts
    def add_contacts(self, provider_task_id: str, contacts: Sequence[ContactSpec]) -> list[ContactOutcome]:
        if len(contacts) > self.limits.batch_size:
            raise ValueError(f"nxcloud takes at most {self.limits.batch_size} contacts per call")
        orders = [(c, str(c.external_id or uuid.uuid4().hex)) for c in contacts]
        call_list = [
            {
                "orderID": order_id,
                "userPhone": c.e164.lstrip("+"),
                "other": c.company or "",
                "userName": c.name or "",
                "customerName": c.company or "",
                "params": [{"name": k, "value": v} for k, v in c.variables.items()],
            }
            for c, order_id in orders
        ]
        op = "addBatchCall" if self.import_mode == "add" else "importBatchCall"
        payload = {
            "userTaskID": provider_task_id,
            "callInfoList": {
                "orderCallbackUrl": self.callback_url("order"),
                "callCallbackUrl": self.callback_url("call"),
                "callList": call_list,
            },
        }
        answer = self._call_when_import_idle(op, payload)
        errors: dict[str, str] = {}
        for err in answer.get("errList") or []:
            errors[str(err.get("phone", "")).lstrip("+")] = str(err.get("errMsg", ""))
        outcomes = []
        for c, order_id in orders:
            msg = errors.get(c.e164.lstrip("+"))
            if msg is None:
                outcomes.append(ContactOutcome(e164=c.e164, accepted=True, provider_ref=order_id))
            else:
                kind = "duplicate" if ("重复" in msg or "duplicate" in msg.lower()) else "invalid"
                outcomes.append(ContactOutcome(e164=c.e164, accepted=False, reason=f"{kind}: {msg}"))
        return outcomes

    def _call_when_import_idle(self, op: str, payload: dict[str, Any]) -> dict[str, Any]:
        delay = self.import_busy_delay
        for attempt in range(self.import_busy_retries + 1):
            try:
                return self.call(op, payload)
            except ProviderError as exc:
                if exc.provider_code != IMPORT_RUNNING or attempt == self.import_busy_retries:
                    raise
                logger.info("nxcloud import still running; waiting", extra={"op": op, "wait": delay})
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ results
    def verify_webhook(
        self,
        headers: Mapping[str, str],
        body: bytes,
        kind: str | None = None,
        query: Mapping[str, Any] | None = None,
    ) -> None:
        h = _lower(headers)
        sign = h.get("sign")
        if not sign:
            raise InvalidSignature("nxcloud callback without sign header")
        if h.get("uuid") != self.app_key:
            raise InvalidSignature("nxcloud callback for another account")
        if self.max_skew > 0:
            try:
                skew = abs(time.time() - float(h.get("createts", "")))
            except ValueError as exc:
                raise InvalidSignature("nxcloud callback without a valid createTs") from exc
            if skew > self.max_skew:
                raise InvalidSignature("nxcloud callback createTs too far from now")
        text = self._body_text(h, body)
        try:
            expected = compute_sign(
                self.secret,
                text,
                h.get("createts", ""),
                h.get("requestid", ""),
                self.app_key,
                h.get("algorithm") or "MD5",
            )
        except ValueError as exc:
            raise InvalidSignature(str(exc)) from exc
        if not hmac.compare_digest(expected, sign.upper()):
            raise InvalidSignature("nxcloud callback signature mismatch")

    @staticmethod
    def _body_text(h: Mapping[str, str], body: bytes) -> str:
        if h.get("content-encoding", "").lower() == "gzip":
            try:
                body = gzip.decompress(body)
            except OSError as exc:
                raise InvalidSignature("nxcloud callback body is not valid gzip") from exc
        return body.decode("utf-8")

    def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, kind: str | None = None
    ) -> list[CallEvent | TaskLifecycleEvent]:
        data = json.loads(self._body_text(_lower(headers), body))
        items = data if isinstance(data, list) else [data]
        events: list[CallEvent | TaskLifecycleEvent] = []
        for item in items:
            k = kind or self._guess_kind(item)
            if k == "task":
                events.append(self._task_event(item))
            elif k == "order":
                events.append(self._order_event(item))
            else:
                events.append(self.call_event(item))
        return events

    @staticmethod
    def _guess_kind(item: Mapping[str, Any]) -> str:
        if "taskStatus" in item:
            return "task"
        if "orderStatus" in item:
            return "order"
        return "call"

    def call_event(self, item: Mapping[str, Any]) -> CallEvent:
        detail = item.get("callInfoDetail") or item
        call_id = str(detail.get("callID") or "")
        answered = _ts(detail.get("callAnswerTs"))
        try:
            code = int(detail.get("callStatus") or 0)
        except (TypeError, ValueError):
            code = 0
        status: CallStatus = "completed" if answered else CALL_STATUS.get(code, "failed")
        intents = [str(i.get("intentName", i) if isinstance(i, dict) else i) for i in detail.get("intents") or []]
        ended = _ts(detail.get("callEndTs"))
        return CallEvent(
            provider="nxcloud",
            dedup_key=f"nxcloud:call:{call_id}" if call_id else f"nxcloud:order:{item.get('orderID')}:call",
            provider_call_id=call_id or None,
            provider_task_id=item.get("userTaskID"),
            provider_contact_ref=item.get("orderID"),
            phone=_e164(item.get("userPhone")),
            status=status,
            attempt=int(detail.get("callTimes") or item.get("callTimes") or 1),
            started_at=_ts(detail.get("callStartTs")),
            answered_at=answered,
            ended_at=ended,
            duration_seconds=int(detail.get("callDuration") or 0),
            hangup_cause=str(detail.get("hangupCause")) if detail.get("hangupCause") not in (None, "") else None,
            intents=intents,
            recording_url=detail.get("recordUrl") or detail.get("recordingUrl"),
            occurred_at=ended,
            raw=dict(item),
        )

    def _order_event(self, item: Mapping[str, Any]) -> CallEvent:
        """An order (one contact, all its rounds) is final. When it names its last call, it shares that
        call's dedup key, so a contact's final call is stored once whichever push arrives first."""
        if item.get("callInfoDetail"):
            return self.call_event(item)
        try:
            code = int(item.get("orderStatus") or 0)
        except (TypeError, ValueError):
            code = 0
        return CallEvent(
            provider="nxcloud",
            dedup_key=f"nxcloud:order:{item.get('orderID')}:{code}",
            provider_task_id=item.get("userTaskID"),
            provider_contact_ref=item.get("orderID"),
            phone=_e164(item.get("userPhone")),
            status=ORDER_STATUS.get(code, "failed"),
            attempt=int(item.get("callTimes") or 1),
            occurred_at=_ts(item.get("orderEndTs")),
            raw=dict(item),
        )

    def _task_event(self, item: Mapping[str, Any]) -> TaskLifecycleEvent:
        try:
            code = int(item.get("taskStatus") or 0)
        except (TypeError, ValueError):
            code = 0
        task_id = item.get("userTaskID") or item.get("taskID")
        return TaskLifecycleEvent(
            provider="nxcloud",
            dedup_key=f"nxcloud:task:{task_id}:{code}",
            kind="task-status",
            provider_task_id=task_id,
            status=TASK_STATUS.get(code, f"unknown-{code}"),
            raw=dict(item),
        )

    def poll_results(self, cursor: str | None) -> PollPage:
        """listCall page by page; the cursor is the next page number (results normally come as callbacks)."""
        page = int(cursor or 1)
        size = int(self.settings.get("pollPageSize", 100))
        answer = self.call("listCall", {"pageNum": page, "pageSize": size})
        rows = answer.get("data") or answer.get("list") or []
        events = [self.call_event(row) for row in rows]
        total = int(answer.get("total") or 0)
        more = page * size < total
        logger.debug(
            "nxcloud listCall",
            extra={
                "page": page,
                "rows": len(rows),
                "first": mask_phone(str(rows[0].get("userPhone", ""))) if rows else None,
            },
        )
        return PollPage(events=events, cursor=str(page + 1) if more else str(page), more=more)


PROVIDER = NxcloudProvider

"""NXCLOUD Callbot v3 (AI robot dialing).

Documents (github wiki nxtele/http-api-document, English mirror nxtele/http-api-document-en; each
operation below names its page): Callbot-API-authorization, -createTask, -updateTask, -mgrTaskStatus,
-addBatchOrder (addBatchCall), -batchImportCall (the seed), -batchExportCall, -stopOrder, -taskList
(listTask), -orderList (listOrder), -callList (listCall), -orderDetailList (listOrderDetail), -ping,
-callCallback, -orderCallback, -taskCallback.

Every operation is `POST {baseUrl}/callcentre/api/v3/<op>` with a JSON body that carries
`"productID": "callbot"`; the caller-made `userTaskID` is the provider task id outcall keeps. Every
request is signed (Callbot-API-authorization):

    authRaw = secretKey + "&body=" + <exact body string> + "&createTs=" + createTs
              + "&requestID=" + requestID + "&uuid=" + uuid
    sign    = upper(hex(md5(authRaw)))   or upper(hex(sha256(authRaw)))

with headers `uuid` (the account's uuid), `requestID`, `createTs` (seconds), `sign` and `algorithm`
(MD5 or SHA256; MD5 when absent). Answers carry the same headers, signed the same way. Callbacks carry
`requestID`, `uuid`, `createTs`, `sign` and no `algorithm` header: the algorithm is the account's
setting ("backend -> Developer", viewable and settable there), so outcall verifies callbacks with the
`algorithm` setting below, never with anything the push says.

Settings (the `nxcloud` entry of the provider secret):
  baseUrl            required (production https://nxbot.nxcloud.com)
  appKey             the account's uuid, sent as header `uuid`
  secretKey          signing secret
  algorithm          "MD5" (default) or "SHA256": the account's algorithm (requests, answers, callbacks)
  sceneID            the script template used when a task's providerOptions names none (createTask
                     requires one; there is no documented default)
  gzip               send request bodies `Content-Encoding: gzip` (default false; the signature covers
                     the uncompressed JSON text, *inferred*: the documents do not say)
  verifyResponses    check the signature of every answer (default true)
  webhookUrl         base of our callback URLs: {webhookUrl}/call, /order, /task
  webhookMaxSkewSeconds  refuse callbacks whose createTs is further off (default 600; 0 = no check)
  importMode         "add" (addBatchCall, default: adds orders to an existing task, also while it runs)
                     or "import" (importBatchCall, the seed: the task's latest batch; answers 1001
                     while a batch import is running)
  importBusyRetries / importBusyDelay   re-sends of a batch answered 1001 (default 3, 1.0 s doubling)
  batchSize          orders per add call (default 500; *not documented*: the API answers 4001 when an
                     array holds too many elements, without naming the limit)
  hangupCauseMap     extra raw hangupCause -> normalised cause entries (merged over HANGUP_CAUSES)
  pollPageSize       listCall / listTask page size (default 100)
  reconcileLookbackSeconds  how far back the reconciliation looks for tasks (default 7 days)
  reconcileOverlapSeconds   each reconciliation window starts this long before the last one ended
                     (default 300), so a call written late is still found; dedup keys absorb repeats
  listCallRowsKey / listCallTotalKey  where listCall's answer holds its rows and its total (defaults
                     "callList" and "totalCount", *not confirmed*: the page's answer table is not in
                     the public copy; exportBatchCall answers those names)
  plus the ProviderSession keys (timeouts, retries, backoffFactor, rateLimit).

Not settled by any document, and handled so: the enumeration of `callStatus` and `callbackType` (the
status is derived from `callAnswerTs`, `termSipCode` and `hangupCause` instead); whether the same
`userPhone` may be added again to a task under a new orderID (outcall sends a new orderID per attempt,
which the document requires to be globally unique); the batch limit (setting `batchSize`).
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
from zoneinfo import ZoneInfo

from outcall.errors import InvalidSignature, ProviderError, Unprocessable
from outcall.models import CallEvent, CallStatus, ContactOutcome, ContactSpec, TaskLifecycleEvent
from outcall.observability import logger
from outcall.providers.base import Capabilities, PollPage, Provider, ProviderLimits, TaskSpec, batched
from outcall.providers.http import ProviderSession

API_PREFIX = "/callcentre/api/v3/"
PRODUCT_ID = "callbot"
ALGORITHMS = ("MD5", "SHA256")

# retCode -> (meaning, retryable): the response-code table of Callbot-API-batchImportCall (the seed)
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

# taskStatus (Callbot-API-taskList enumeration): 1 pending, 2 in progress, 3 completed, 4 completed
# (failed), 5 paused
TASK_STATUS = {1: "ready", 2: "running", 3: "completed", 4: "failed", 5: "paused"}
TASK_OPERATE = {"start": 1, "pause": 2, "complete": 3}  # Callbot-API-mgrTaskStatus
ORDER_DETAIL_MAX = 500  # Callbot-API-orderDetailList: orderList "limited to a maximum of 500"

# Fields of createTask that outcall owns: a providerOptions value for them is refused (tasks.py).
OWNED_FIELDS = ("productID", "userTaskID", "taskCallbackUrl", "orderCallbackUrl", "callCallbackUrl")

# Raw hangupCause (FreeSWITCH / Q.850 names, as NXCLOUD's CDRs carry them) -> outcall's normalised
# cause, and the status an unanswered call with that cause ends in.
HANGUP_CAUSES: dict[str, tuple[str, CallStatus]] = {
    "NORMAL_CLEARING": ("normal-clearing", "no-answer"),
    "USER_BUSY": ("busy", "busy"),
    "NO_ANSWER": ("no-answer", "no-answer"),
    "NO_USER_RESPONSE": ("no-answer", "no-answer"),
    "ALLOTTED_TIMEOUT": ("no-answer", "no-answer"),
    "ORIGINATOR_CANCEL": ("canceled", "no-answer"),
    "CALL_REJECTED": ("rejected", "rejected"),
    "USER_CHALLENGE": ("rejected", "rejected"),
    "SUBSCRIBER_ABSENT": ("unreachable", "failed"),
    "UNALLOCATED_NUMBER": ("invalid-number", "failed"),
    "INVALID_NUMBER_FORMAT": ("invalid-number", "failed"),
    "NO_ROUTE_DESTINATION": ("invalid-number", "failed"),
    "NUMBER_CHANGED": ("invalid-number", "failed"),
    "DESTINATION_OUT_OF_ORDER": ("unreachable", "failed"),
    "NETWORK_OUT_OF_ORDER": ("network-error", "failed"),
    "NORMAL_TEMPORARY_FAILURE": ("network-error", "failed"),
    "NORMAL_CIRCUIT_CONGESTION": ("network-error", "failed"),
    "SWITCH_CONGESTION": ("network-error", "failed"),
    "RECOVERY_ON_TIMER_EXPIRE": ("network-error", "failed"),
    "OUTGOING_CALL_BARRED": ("barred", "failed"),
}
# SIP final response (termSipCode) -> normalised cause and status, for calls that were not answered
SIP_CAUSES: dict[int, tuple[str, CallStatus]] = {
    486: ("busy", "busy"),
    600: ("busy", "busy"),
    603: ("rejected", "rejected"),
    480: ("no-answer", "no-answer"),
    408: ("no-answer", "no-answer"),
    487: ("canceled", "no-answer"),
    404: ("invalid-number", "failed"),
    484: ("invalid-number", "failed"),
    410: ("invalid-number", "failed"),
    604: ("invalid-number", "failed"),
}


def compute_sign(secret: str, body: str, create_ts: str, request_id: str, account: str, algorithm: str = "MD5") -> str:
    """The NXCLOUD signature (requests, answers and callbacks alike; Callbot-API-authorization)."""
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
    """NXCLOUD times are epoch seconds (UTC by definition); 0/empty means 'did not happen'."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if number <= 0:
        return None
    if number > 1e11:  # milliseconds
        number /= 1000
    return datetime.fromtimestamp(number, tz=UTC)


def _e164(phone: Any) -> str | None:
    """`userPhone` carries the country code without '+' (86156xxxxxxxx)."""
    if not phone:
        return None
    text = str(phone).strip()
    return text if text.startswith("+") else f"+{text}"


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


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
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"nxcloud algorithm must be MD5 or SHA256, not {self.algorithm!r}")
        self.gzip = bool(self.settings.get("gzip", False))
        self.verify_responses = bool(self.settings.get("verifyResponses", True))
        self.import_mode = str(self.settings.get("importMode", "add"))
        self.import_busy_retries = int(self.settings.get("importBusyRetries", 3))
        self.import_busy_delay = float(self.settings.get("importBusyDelay", 1.0))
        self.max_skew = float(self.settings.get("webhookMaxSkewSeconds", 600))
        self.hangup_causes = {**HANGUP_CAUSES, **dict(self.settings.get("hangupCauseMap") or {})}
        self.http = ProviderSession(self.key, self.settings)

    # ------------------------------------------------------------------ plumbing
    def callback_url(self, kind: str) -> str:
        base = str(self.settings.get("webhookUrl", "")).rstrip("/")
        return f"{base}/{kind}" if base else ""

    def sign(self, body: str, create_ts: str, request_id: str) -> str:
        return compute_sign(self.secret, body, create_ts, request_id, self.app_key, self.algorithm)

    def _post(self, op: str, payload: Mapping[str, Any]) -> tuple[dict[str, Any], Any]:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
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
                details={"body": response.text[:300]},
            )
        try:
            answer = response.json()
        except ValueError as exc:
            raise ProviderError(f"nxcloud {op} answered something that is not JSON", provider=self.key) from exc
        if not isinstance(answer, dict):
            raise ProviderError(f"nxcloud {op} answered JSON that is not an object", provider=self.key)
        return answer, response

    def call(self, op: str, payload: dict[str, Any]) -> dict[str, Any]:
        """One signed operation; the answer when retCode is 0, else ProviderError (retCode table of
        the seed, Callbot-API-batchImportCall)."""
        answer, response = self._post(op, {"productID": PRODUCT_ID, **payload})
        code = _int(answer.get("retCode"))
        if code is None:
            raise ProviderError(f"nxcloud {op} answered without a retCode", provider=self.key)
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
        return answer

    def _verify_response(self, op: str, headers: Mapping[str, str], text: str) -> None:
        """Answers carry requestID, uuid, createTs and sign headers, signed like the request."""
        h = _lower(headers)
        sign = h.get("sign")
        if not sign:
            raise ProviderError(f"nxcloud {op} answer is not signed", provider=self.key, provider_code="unsigned")
        expected = compute_sign(
            self.secret, text, h.get("createts", ""), h.get("requestid", ""), h.get("uuid", ""), self.algorithm
        )
        if h.get("uuid") != self.app_key or not hmac.compare_digest(expected, sign.upper()):
            raise ProviderError(
                f"nxcloud {op} answer has a wrong signature", provider=self.key, provider_code="bad-signature"
            )

    def ping(self) -> bool:
        """Callbot-API-ping: body `{"data": <string>}` (no productID), answer `{data, timestamp, code,
        msg, reqId}` with `code` 0 for success and `data` echoed."""
        token = uuid.uuid4().hex
        answer, response = self._post("ping", {"data": token})
        code = _int(answer.get("code"))
        if self.verify_responses and code not in AUTH_CODES:
            self._verify_response("ping", response.headers, response.text)
        if code != 0:
            raise ProviderError(
                f"nxcloud ping refused: code {answer.get('code')}: {answer.get('msg', '')}",
                provider=self.key,
                provider_code=code,
                retryable=bool(code is not None and RET_CODES.get(code, ("", False))[1]),
            )
        if answer.get("data") != token:
            raise ProviderError("nxcloud ping did not echo its data", provider=self.key, provider_code="ping-echo")
        return True

    # ------------------------------------------------------------------ tasks
    def _scene(self, spec: TaskSpec) -> str:
        scene = spec.provider_options.get("sceneID") or self.settings.get("sceneID")
        if not scene:
            field = "settings.providerOptions.sceneID"
            message = "nxcloud createTask requires a sceneID (the script template); none given and none configured"
            raise Unprocessable(f"{field}: {message}", details=[{"field": field, "message": message}])
        return str(scene)

    def _settings_of(self, spec: TaskSpec) -> tuple[dict[str, Any], dict[str, Any]]:
        """taskCreateSetting and funcFlag of a task (Callbot-API-createTask / -updateTask)."""
        setting: dict[str, Any] = {
            "taskName": spec.name,
            "maxCall": spec.concurrency,
            "maxRingTime": spec.ring_timeout_seconds,
            "taskCallbackUrl": self.callback_url("task"),
        }
        if spec.calling_window:
            w = spec.calling_window
            offset = datetime.now(ZoneInfo(w.timezone)).utcoffset()
            setting["zoneSecond"] = int(offset.total_seconds()) if offset else 0
            setting["dialAtWeekDay"] = ",".join(str(d) for d in w.weekdays)
            setting["dialAtUpHour"] = w.start.strftime("%H:%M")
            setting["dialAtDownHour"] = w.end.strftime("%H:%M")
        setting.update(dict(spec.provider_options.get("taskCreateSetting") or {}))
        # outcall dials retries itself (a new order per attempt): NXCLOUD's own round redial is off
        # unless providerOptions.funcFlag.roundRedial turns it on. funcFlag.taskKeep (setting
        # `taskKeep`, default true) keeps the task open when its orders run out, so the dispatcher's
        # next wave can still be added; the page lists the flag without saying more (*inferred*).
        func: dict[str, Any] = {"roundRedial": False, "taskKeep": bool(self.settings.get("taskKeep", True))}
        func.update(dict(spec.provider_options.get("funcFlag") or {}))
        return setting, func

    def create_task(self, spec: TaskSpec) -> str:
        """Callbot-API-createTask: productID, userTaskID (ours, unique), sceneID (required),
        taskCreateSetting, funcFlag, taskCallbackUrl / orderCallbackUrl (the page's example puts the
        callback URLs at the top level, createAndCall and updateTask put taskCallbackUrl inside
        taskCreateSetting: outcall sends both places). A missing required field is retCode 2."""
        user_task_id = uuid.uuid4().hex
        setting, func = self._settings_of(spec)
        body: dict[str, Any] = {
            "userTaskID": user_task_id,
            "sceneID": self._scene(spec),
            "taskCreateSetting": setting,
            "funcFlag": func,
            "taskCallbackUrl": self.callback_url("task"),
            "orderCallbackUrl": self.callback_url("order"),
        }
        if spec.provider_options.get("other") is not None:
            body["other"] = str(spec.provider_options["other"])
        self.call("createTask", body)
        return user_task_id

    def update_task(self, provider_task_id: str, spec: TaskSpec) -> None:
        """Callbot-API-updateTask: only taskCreateSetting and funcFlag change, and only on a paused or
        not yet started task (NXCLOUD refuses others)."""
        setting, func = self._settings_of(spec)
        self.call("updateTask", {"userTaskID": provider_task_id, "taskCreateSetting": setting, "funcFlag": func})

    def _operate(self, provider_task_id: str, operation: str) -> dict[str, Any]:
        """Callbot-API-mgrTaskStatus: taskOperate 1 start, 2 pause, 3 complete; answers taskStatus."""
        return self.call("mgrTaskStatus", {"userTaskID": provider_task_id, "taskOperate": TASK_OPERATE[operation]})

    def start_task(self, provider_task_id: str) -> None:
        self._operate(provider_task_id, "start")

    def pause_task(self, provider_task_id: str) -> None:
        self._operate(provider_task_id, "pause")

    def stop_task(self, provider_task_id: str) -> None:
        self._operate(provider_task_id, "complete")

    def delete_task(self, provider_task_id: str) -> None:
        """No delete operation exists: the task is completed so it never dials again (a task already
        finished answers retCode 4, which is fine here)."""
        try:
            self._operate(provider_task_id, "complete")
        except ProviderError as exc:
            if exc.provider_code != 4:
                raise
            logger.info("nxcloud task already finished", extra={"task": provider_task_id})

    def list_tasks(self, page: int = 1, size: int = 100, **conditions: Any) -> dict[str, Any]:
        """Callbot-API-taskList (listTask): productID, page, size, queryConditions{taskStatus[],
        taskName[], sceneID, userTaskID[], startTs, endTs}; answers `taskData`."""
        return self.call("listTask", {"page": page, "size": size, "queryConditions": dict(conditions)})

    # ------------------------------------------------------------------ contacts
    def add_contacts(self, provider_task_id: str, contacts: Sequence[ContactSpec]) -> list[ContactOutcome]:
        """Callbot-API-addBatchOrder (addBatchCall; or the seed's importBatchCall with importMode
        "import"): callInfoList{orderCallbackUrl, callCallbackUrl, callList[{orderID, userPhone, other,
        userName, customerName, params[{name, value}]}]}; answers totalCount, successCount,
        errList[{phone, errMsg}]. orderID is the contact's release key (unique per contact and attempt,
        as the document wants it globally unique), so a batch sent again is recognised: a refused order
        that listOrderDetail shows this task already holds is answered already_held."""
        if len(contacts) > self.limits.batch_size:
            raise ValueError(f"nxcloud takes at most {self.limits.batch_size} contacts per call")
        orders = [(c, str(c.release_key or c.external_id or uuid.uuid4().hex)) for c in contacts]
        call_list = [
            {
                "orderID": order_id,
                "userPhone": c.e164.lstrip("+"),
                "other": "",
                "userName": c.name or "",
                "customerName": c.company or "",
                "params": [{"name": k, "value": v} for k, v in c.variables.items()],
            }
            for c, order_id in orders
        ]
        op = "importBatchCall" if self.import_mode == "import" else "addBatchCall"
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
        refused = [order_id for c, order_id in orders if c.e164.lstrip("+") in errors]
        success = _int(answer.get("successCount"))
        unexplained = success is not None and success + len(refused) < len(orders)
        # Which orders does the task hold? Asked only when something was refused or left unexplained.
        held = self.held_orders(provider_task_id, [o for _, o in orders] if unexplained else refused)
        outcomes = []
        for c, order_id in orders:
            msg = errors.get(c.e164.lstrip("+"))
            mine = held.get(order_id) == c.e164.lstrip("+")  # this very release: same order, same number
            if msg is None and (not unexplained or mine):
                outcomes.append(ContactOutcome(e164=c.e164, accepted=True, provider_ref=order_id))
            elif mine:
                outcomes.append(
                    ContactOutcome(
                        e164=c.e164, accepted=True, already_held=True, provider_ref=order_id, reason=msg or None
                    )
                )
            elif msg is None:
                outcomes.append(ContactOutcome(e164=c.e164, accepted=False, reason="invalid: not taken by nxcloud"))
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

    def order_details(self, provider_task_id: str, order_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Callbot-API-orderDetailList (listOrderDetail): every call of each order (at most 500 orders
        a request); answers orderDetailList[{orderID, ..., finish, callInfoDetailList[]}]."""
        rows: list[dict[str, Any]] = []
        for chunk in batched(list(order_ids), ORDER_DETAIL_MAX):
            answer = self.call("listOrderDetail", {"userTaskID": provider_task_id, "orderList": list(chunk)})
            rows.extend(r for r in answer.get("orderDetailList") or [] if isinstance(r, dict))
        return rows

    def held_orders(self, provider_task_id: str, order_ids: Sequence[str]) -> dict[str, str]:
        """orderID -> userPhone of the given orders the task holds (listOrderDetail)."""
        if not order_ids:
            return {}
        rows = self.order_details(provider_task_id, order_ids)
        return {str(r.get("orderID")): str(r.get("userPhone", "")).lstrip("+") for r in rows}

    def cancel_contacts(self, provider_task_id: str, refs: Sequence[str]) -> list[str]:
        """Callbot-API-stopOrder: userTaskID, orderIDs[], delCall; answers totalCount, successCount,
        errList[{orderID, errMsg}]. Stopping an order is irreversible. Returns the orders stopped."""
        stopped: list[str] = []
        for chunk in batched(list(refs), self.limits.batch_size):
            answer = self.call("stopOrder", {"userTaskID": provider_task_id, "orderIDs": list(chunk)})
            failed = {str(e.get("orderID")) for e in answer.get("errList") or []}
            stopped.extend(r for r in chunk if r not in failed)
        return stopped

    # ------------------------------------------------------------------ results
    def verify_webhook(
        self,
        headers: Mapping[str, str],
        body: bytes,
        kind: str | None = None,
        query: Mapping[str, Any] | None = None,
    ) -> None:
        """Callbacks (Callbot-API-callCallback / -orderCallback / -taskCallback) carry requestID, uuid,
        createTs and sign; the algorithm is the account's (setting `algorithm`), never the push's."""
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
        expected = compute_sign(
            self.secret, text, h.get("createts", ""), h.get("requestid", ""), self.app_key, self.algorithm
        )
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
            k = kind or ("task" if "taskStat" in item or "taskStatus" in item else "call")
            if k == "task":
                events.append(self.task_event(item))
            elif isinstance(item.get("callInfoDetail"), dict):
                events.append(self.call_event(item, item["callInfoDetail"]))
        return events

    def _outcome(self, detail: Mapping[str, Any]) -> tuple[CallStatus, str | None]:
        """Status and normalised hangup cause of one call: answered when callAnswerTs is set; else the
        SIP final response (termSipCode), else the hangupCause name."""
        raw_cause = str(detail.get("hangupCause") or "").strip()
        if _ts(detail.get("callAnswerTs")):
            ended = _ts(detail.get("callEndTs"))
            mapped = self.hangup_causes.get(raw_cause.upper())
            cause = "normal-clearing" if raw_cause.upper() in ("", "NORMAL_CLEARING") else (mapped or ("other",))[0]
            return ("completed" if ended else "answered"), cause
        sip = _int(detail.get("termSipCode"))
        if sip in SIP_CAUSES:
            return SIP_CAUSES[sip][1], SIP_CAUSES[sip][0]
        if raw_cause.upper() in self.hangup_causes:
            cause, status = self.hangup_causes[raw_cause.upper()]
            return status, cause
        if sip is not None and sip >= 500:
            return "failed", "network-error"
        return "no-answer", ("other" if raw_cause else None)

    def call_event(self, item: Mapping[str, Any], detail: Mapping[str, Any], attempt: int = 1) -> CallEvent:
        """One call (a round of an order) as a CallEvent: times are epoch seconds (UTC), the recording
        is callInfoDetail.callAudioUrl, intents[].intentName."""
        call_id = str(detail.get("callID") or "")
        status, cause = self._outcome(detail)
        intents = [str(i.get("intentName") or i.get("intentID")) for i in detail.get("intents") or [] if i]
        ended = _ts(detail.get("callEndTs"))
        order_id = item.get("orderID")
        return CallEvent(
            provider="nxcloud",
            dedup_key=f"nxcloud:call:{call_id}" if call_id else f"nxcloud:order:{order_id}:{attempt}",
            provider_call_id=call_id or None,
            provider_task_id=item.get("userTaskID"),
            provider_contact_ref=str(order_id) if order_id else None,
            phone=_e164(item.get("userPhone")),
            status=status,
            attempt=attempt,
            started_at=_ts(detail.get("callStartTs")),
            answered_at=_ts(detail.get("callAnswerTs")),
            ended_at=ended,
            duration_seconds=_int(detail.get("callDuration")) or 0,
            hangup_cause=cause,
            intents=intents,
            recording_url=detail.get("callAudioUrl") or None,
            occurred_at=ended or _ts(detail.get("callStartTs")),
            raw=dict(item),
        )

    def task_event(self, item: Mapping[str, Any]) -> TaskLifecycleEvent:
        """Callbot-API-taskCallback: callbackType, userTaskID, taskID, sceneID, taskStatus, createTs,
        taskStat{answerOrderCount, finishOrderCount, totalOrderCount, finishRate, totalAnswerCall,
        totalCall, answerRate}."""
        code = _int(item.get("taskStatus")) or 0
        task_id = item.get("userTaskID") or item.get("taskID")
        stat = item.get("taskStat") or {}
        return TaskLifecycleEvent(
            provider="nxcloud",
            dedup_key=f"nxcloud:task:{task_id}:{code}:{stat.get('finishOrderCount', '')}",
            kind="task-status",
            provider_task_id=task_id,
            status=TASK_STATUS.get(code, f"unknown-{code}"),
            raw=dict(item),
        )

    def order_events(self, order: Mapping[str, Any]) -> list[CallEvent]:
        """Every round of one order of listOrderDetail, in order: round n is attempt n."""
        calls = [c for c in order.get("callInfoDetailList") or [] if isinstance(c, dict)]
        calls.sort(key=lambda c: _int(c.get("callStartTs")) or 0)
        return [self.call_event(order, c, attempt=n) for n, c in enumerate(calls, start=1)]

    def reconcile_orders(self, provider_task_id: str, order_ids: Sequence[str]) -> list[CallEvent]:
        """The calls of orders whose result outcall has not seen (a push that never arrived): every
        round of each order, from listOrderDetail. Their dedup keys are the pushes' (the callID), so a
        push that did arrive is not recorded twice."""
        return [e for order in self.order_details(provider_task_id, order_ids) for e in self.order_events(order)]

    def _list_call_rows(self, answer: Mapping[str, Any]) -> tuple[list[dict[str, Any]], int | None]:
        rows = answer.get(str(self.settings.get("listCallRowsKey", "callList"))) or []
        total = _int(answer.get(str(self.settings.get("listCallTotalKey", "totalCount"))))
        return [r for r in rows if isinstance(r, dict)], total

    def list_calls(
        self, provider_task_id: str, start_ts: int, end_ts: int, page: int, size: int
    ) -> tuple[list[CallEvent], bool]:
        """Callbot-API-callList (listCall): {productID, userTaskID, options{callStatus[], startTs,
        endTs}, page, size}. A row is read as an order with its callInfoDetail, or as a flat call row
        (the shape exportBatchCall answers)."""
        options = {"startTs": start_ts, "endTs": end_ts}
        answer = self.call("listCall", {"userTaskID": provider_task_id, "options": options, "page": page, "size": size})
        rows, total = self._list_call_rows(answer)
        events = []
        for row in rows:
            nested = row.get("callInfoDetail")
            detail: Mapping[str, Any] = nested if isinstance(nested, dict) else row
            item = {"userTaskID": provider_task_id, **row}
            events.append(self.call_event(item, detail))
        more = page * size < total if total is not None else len(rows) == size
        return events, more

    def poll_results(self, cursor: str | None) -> PollPage:
        """Reconciliation of missed pushes, account wide: the tasks created in the last
        `reconcileLookbackSeconds` that ran (listTask, taskStatus 2/3/5), and for each the calls of the
        window since the last poll (listCall by startTs/endTs). The cursor is JSON: the window, the
        tasks still to read and the next page; a failed poll leaves it where it was."""
        size = int(self.settings.get("pollPageSize", 100))
        now = int(time.time())
        state: dict[str, Any] = json.loads(cursor) if cursor and cursor.startswith("{") else {}
        if not state.get("tasks"):
            since = int(state.get("until") or now - int(self.settings.get("reconcileLookbackSeconds", 7 * 86400)))
            since -= int(self.settings.get("reconcileOverlapSeconds", 300)) if state.get("until") else 0
            tasks = self._recent_tasks(now - int(self.settings.get("reconcileLookbackSeconds", 7 * 86400)), size)
            if not tasks:
                return PollPage(events=[], cursor=json.dumps({"until": now}), more=False)
            state = {"since": since, "until": now, "tasks": tasks, "page": 1}
        task, page = state["tasks"][0], int(state["page"])
        events, more = self.list_calls(task, int(state["since"]), int(state["until"]), page, size)
        if more:
            state["page"] = page + 1
        else:
            state["tasks"], state["page"] = state["tasks"][1:], 1
        done = not state["tasks"]
        next_cursor = json.dumps({"until": state["until"]}) if done else json.dumps(state)
        return PollPage(events=events, cursor=next_cursor, more=not done)

    def _recent_tasks(self, created_after: int, size: int) -> list[str]:
        found: list[str] = []
        page = 1
        while True:
            answer = self.list_tasks(page=page, size=size, taskStatus=[2, 3, 5], startTs=created_after)
            rows = [r for r in answer.get("taskData") or [] if isinstance(r, dict)]
            found += [str(r["userTaskID"]) for r in rows if r.get("userTaskID")]
            if len(rows) < size:
                return found
            page += 1


PROVIDER = NxcloudProvider

"""Alibaba Cloud VMS (Dyvmsapi 2017-05-25) `Cloud*` simulator, good enough for the official SDK.

It answers the SDK's real RPC requests on `/`: parameters in the query string and/or the
urlencoded form body, the action in `Action` (RPC signature v1, HMAC-SHA1, `Signature` param)
or in header `x-acs-action` (ACS3-HMAC-SHA256 in `Authorization`), version 2017-05-25. Both
signatures are recomputed from the AccessKeySecret; a wrong one is refused as POP does
(`SignatureDoesNotMatch` 400, `InvalidAccessKeyId.NotFound` 404, `IncompleteSignature` 400).
Success is `{RequestId, Code:"OK", Message:"OK", Data}`; business refusals are HTTP 200 with a
non-OK Code (codes are the simulator's, in the documented style): TaskCountLimit (100 tasks;
AutoDelete=1 removes the oldest finished one), ImportTelLimit (100,000 per import),
TaskTelLimit (1,000,000 per task), EnterpriseTelLimit (10,000,000), RunningTaskLimit (10
running or paused), TaskNotFound, TaskStatusError. Parameter errors are HTTP 400
MissingParameter / InvalidParameter. Injected faults look like POP's: 500 InternalError and
400 Throttling.User.

Settings (same dict as the provider): accessKeyId, accessKeySecret, enterpriseId (or
instanceId); optional maxTasks, maxTelsPerImport, maxTelsPerTask, maxTelsPerEnterprise,
maxRunningTasks, timezone.

Known gap: the base server keeps the parsed query only, so a query parameter with an empty
value cannot be part of the recomputed signature (the provider never sends empty values).
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, quote
from zoneinfo import ZoneInfo

from local.simulators.base import Reply, SimRequest, Simulator

VERSION = "2017-05-25"
AUTH_RE = re.compile(r"^(ACS3-HMAC-SHA256) Credential=([^,]+),SignedHeaders=([^,]+),Signature=([0-9a-f]+)$")


def _pct(value: str) -> str:
    return quote(value, safe="~")


@dataclass
class Tel:
    tel: str
    file_id: int
    property: dict[str, Any] = field(default_factory=dict)
    dialled: bool = False


@dataclass
class Task:
    id: int
    fields: dict[str, Any]
    created: float
    status: int = 0  # 0 not started, 1 running, 2 paused, 3 finished (*inferred* numbering)
    tels: list[Tel] = field(default_factory=list)
    generation: int = 0


class AliyunSimulator(Simulator):
    key = "aliyun"

    def register(self) -> None:
        self.tz = ZoneInfo(str(self.settings.get("timezone", "Asia/Shanghai")))
        self.tasks: dict[int, Task] = {}
        self.cdrs: list[dict[str, Any]] = []
        self._next_task = 1
        self._next_file = 1
        self._next_cdr = 1
        self._closed = threading.Event()
        self._pending = threading.local()
        self.route("POST", r"/", self._rpc)
        self.route("GET", r"/", self._rpc)
        self.actions = {
            "CloudCreateTask": self._create,
            "CloudUpdateTask": self._update,
            "CloudGetTask": self._get,
            "CloudDeleteTask": self._delete,
            "CloudStartTask": self._start,
            "CloudPauseTask": self._pause,
            "CloudImportTaskTel": self._import,
            "CloudQueryPredictiveCallCdr": self._cdr,
        }

    def stop(self) -> None:
        self._closed.set()
        super().stop()

    # ---------------------------------------------------------------- faults in POP's shape

    def _fault(self) -> str | None:
        kind = super()._fault()
        if kind in ("error", "throttle"):
            self._pending.kind = kind
            return None
        return kind

    def dispatch(self, req: SimRequest) -> Reply:
        kind = getattr(self._pending, "kind", None)
        self._pending.kind = None
        if kind == "error":
            return self.pop_error(500, "InternalError", "The request processing has failed due to some unknown error.")
        if kind == "throttle":
            return self.pop_error(400, "Throttling.User", "Request was denied due to user flow control.")
        return super().dispatch(req)

    # ---------------------------------------------------------------- envelope

    @staticmethod
    def request_id() -> str:
        return str(uuid.uuid4()).upper()

    def pop_error(self, status: int, code: str, message: str) -> Reply:
        return Reply(
            status,
            {"RequestId": self.request_id(), "HostId": "dyvmsapi.aliyuncs.com", "Code": code, "Message": message},
        )

    def ok(self, data: Any) -> Reply:
        return Reply(200, {"RequestId": self.request_id(), "Code": "OK", "Message": "OK", "Data": data})

    def refuse(self, code: str, message: str) -> Reply:
        return Reply(200, {"RequestId": self.request_id(), "Code": code, "Message": message})

    # ---------------------------------------------------------------- the RPC front door

    def _params(self, req: SimRequest) -> dict[str, str]:
        params = {k: v[-1] for k, v in req.query.items()}
        content_type = next((v for k, v in req.headers.items() if k.lower() == "content-type"), "")
        if req.body and "x-www-form-urlencoded" in content_type:
            form = parse_qs(req.body.decode("utf-8"), keep_blank_values=True)
            params.update({k: v[-1] for k, v in form.items()})
        return params

    def _verify(self, req: SimRequest, params: dict[str, str]) -> Reply | None:
        key_id = str(self.settings.get("accessKeyId", ""))
        secret = str(self.settings.get("accessKeySecret", ""))
        headers = {k.lower(): v for k, v in req.headers.items()}
        auth = headers.get("authorization", "")
        if auth.startswith("ACS3-"):
            match = AUTH_RE.match(auth)
            if not match:
                return self.pop_error(
                    400, "IncompleteSignature", "The request signature does not conform to standards."
                )
            algorithm, credential, signed_headers, signature = match.groups()
            if credential != key_id:
                return self.pop_error(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
            payload_hash = hashlib.sha256(req.body).hexdigest()
            if headers.get("x-acs-content-sha256") != payload_hash:
                return self.pop_error(400, "SignatureDoesNotMatch", "The payload hash does not match the body.")
            names = signed_headers.split(";")
            if any(name not in headers for name in names):
                return self.pop_error(400, "IncompleteSignature", "A signed header is missing from the request.")
            canonical_headers = "".join(f"{name}:{headers[name].strip()}\n" for name in names)
            query = {k: v[-1] for k, v in req.query.items()}
            canonical_query = "&".join(f"{k}={_pct(query[k])}" for k in sorted(query))
            canonical = "\n".join(
                [req.method, req.path or "/", canonical_query, canonical_headers, signed_headers, payload_hash]
            )
            to_sign = f"{algorithm}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
            expected = hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, signature):
                return self.pop_error(
                    400, "SignatureDoesNotMatch", "Specified signature is not matched with our calculation."
                )
            return None
        if "Signature" in params:
            if params.get("AccessKeyId") != key_id:
                return self.pop_error(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
            if params.get("SignatureMethod") != "HMAC-SHA1":
                return self.pop_error(400, "InvalidSignatureMethod", "Specified signature method is not supported.")
            signed = {k: v for k, v in params.items() if k != "Signature"}
            canonical = "&".join(f"{_pct(k)}={_pct(signed[k])}" for k in sorted(signed))
            to_sign = f"{req.method}&{_pct('/')}&{_pct(canonical)}"
            expected = base64.b64encode(
                hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()
            ).decode()
            if not hmac.compare_digest(expected, params["Signature"]):
                return self.pop_error(
                    400, "SignatureDoesNotMatch", "Specified signature is not matched with our calculation."
                )
            return None
        return self.pop_error(400, "MissingSignature", "Signature is mandatory for this action.")

    def _rpc(self, req: SimRequest, match: re.Match[str]) -> Reply:
        params = self._params(req)
        headers = {k.lower(): v for k, v in req.headers.items()}
        action = params.get("Action") or headers.get("x-acs-action", "")
        version = params.get("Version") or headers.get("x-acs-version", "")
        if not action:
            return self.pop_error(400, "MissingAction", "Action is mandatory for this request.")
        if version != VERSION:
            return self.pop_error(400, "InvalidVersion", f"Specified parameter Version {version!r} is not valid.")
        refused = self._verify(req, params)
        if refused is not None:
            return refused
        handler = self.actions.get(action)
        if handler is None:
            return self.pop_error(404, "InvalidAction.NotFound", f"Specified api {action} is not found.")
        if "EnterpriseId" not in params:
            return self.pop_error(400, "MissingEnterpriseId", "EnterpriseId is mandatory for this action.")
        enterprise = self.settings.get("enterpriseId", self.settings.get("instanceId"))
        if enterprise is not None and params["EnterpriseId"] != str(enterprise):
            return self.refuse("EnterpriseNotFound", "The call center does not exist or is not yours.")
        try:
            return handler(params)
        except ValueError as exc:
            return self.pop_error(400, "InvalidParameter", str(exc))

    # ---------------------------------------------------------------- helpers

    @staticmethod
    def _int(params: dict[str, str], name: str, default: int | None = None) -> int:
        value = params.get(name)
        if value in (None, ""):
            if default is None:
                raise ValueError(f"{name} is mandatory for this action.")
            return default
        try:
            return int(value)
        except ValueError as exc:
            raise ValueError(f"Specified parameter {name} is not valid.") from exc

    def _task(self, params: dict[str, str]) -> Task | None:
        return self.tasks.get(self._int(params, "TaskId"))

    def _task_data(self, task: Task) -> dict[str, Any]:
        data: dict[str, Any] = {k: str(v) for k, v in task.fields.items() if k not in ("EnterpriseId", "AutoDelete")}
        data.update(
            Id=str(task.id),
            Status=str(task.status),
            EnterpriseId=str(task.fields.get("EnterpriseId", "")),
            CreateTime=datetime.fromtimestamp(task.created, self.tz).strftime("%Y-%m-%d %H:%M:%S"),
        )
        if "AutoComplete" in task.fields:
            data["AutoComplete"] = int(task.fields["AutoComplete"])
        return data

    # ---------------------------------------------------------------- tasks

    def _create(self, params: dict[str, str]) -> Reply:
        if not params.get("Name"):
            raise ValueError("Name is mandatory for this action.")
        task_type = self._int(params, "Type")
        if task_type not in (1, 2):
            raise ValueError("Specified parameter Type is not valid.")
        if task_type == 2 and not (params.get("IvrId") or params.get("IvrName")):
            raise ValueError("IvrId or IvrName is mandatory for an auto outbound task.")
        for name, low, high in (("CustomerTimeout", 5, 60), ("AgentTimeout", 5, 60), ("AnswerRate", 1, 100)):
            if name in params and not low <= self._int(params, name) <= high:
                raise ValueError(f"Specified parameter {name} is out of range.")
        for name in ("RetryStrategy", "UserFields", "CallVariables", "CallLimitStrategy", "ClidProperty"):
            if name in params:
                try:
                    json.loads(params[name])
                except ValueError as exc:
                    raise ValueError(f"Specified parameter {name} is not valid JSON.") from exc
        with self.lock:
            if len(self.tasks) >= int(self.settings.get("maxTasks", 100)):
                finished = sorted((t for t in self.tasks.values() if t.status == 3), key=lambda t: t.created)
                if params.get("AutoDelete") == "1" and finished:
                    self._drop(finished[0])
                else:
                    return self.refuse("TaskCountLimit", "The number of tasks has reached the limit of 100.")
            task_id = self._next_task
            self._next_task += 1
            fields = {k: v for k, v in params.items() if k[:1].isupper() and k not in _PROTOCOL_PARAMS}
            task = Task(task_id, fields, time.time())
            self.tasks[task_id] = task
            return self.ok(self._task_data(task))

    def _drop(self, task: Task) -> None:
        task.generation += 1
        self.tasks.pop(task.id, None)

    def _update(self, params: dict[str, str]) -> Reply:
        with self.lock:
            task = self._task(params)
            if task is None:
                return self.refuse("TaskNotFound", "The task does not exist.")
            if task.status == 1:
                return self.refuse("TaskStatusError", "A running task cannot be changed; pause it first.")
            if "Type" in params and params["Type"] != task.fields.get("Type"):
                raise ValueError("The task type cannot be changed.")
            task.fields.update(
                {k: v for k, v in params.items() if k[:1].isupper() and k not in _PROTOCOL_PARAMS and k != "TaskId"}
            )
            return self.ok(self._task_data(task))

    def _get(self, params: dict[str, str]) -> Reply:
        with self.lock:
            task = self._task(params)
            if task is None:
                return self.refuse("TaskNotFound", "The task does not exist.")
            data = self._task_data(task)
            data["AutoComplete"] = str(data.get("AutoComplete", "1"))  # all strings here
            return self.ok({"TaskProperty": data})

    def _delete(self, params: dict[str, str]) -> Reply:
        with self.lock:
            task = self._task(params)
            if task is None:
                return self.refuse("TaskNotFound", "The task does not exist.")
            if task.status == 1:
                return self.refuse("TaskStatusError", "A running task cannot be deleted; pause it first.")
            self._drop(task)  # its numbers go with it; CDRs stay
            return self.ok({"Result": 1})

    def _start(self, params: dict[str, str]) -> Reply:
        with self.lock:
            task = self._task(params)
            if task is None:
                return self.refuse("TaskNotFound", "The task does not exist.")
            if task.status == 3:
                return self.refuse("TaskStatusError", "A finished task cannot be started again.")
            if task.status == 1:
                return self.ok({"Result": 1})
            active = sum(1 for t in self.tasks.values() if t.status in (1, 2) and t.id != task.id)
            if active >= int(self.settings.get("maxRunningTasks", 10)):
                return self.refuse("RunningTaskLimit", "At most 10 tasks can be running or paused at once.")
            task.status = 1
            task.generation += 1
            generation = task.generation
        self.later(0, lambda: self._dial(task, generation))
        return self.ok({"Result": 1})

    def _pause(self, params: dict[str, str]) -> Reply:
        with self.lock:
            task = self._task(params)
            if task is None:
                return self.refuse("TaskNotFound", "The task does not exist.")
            if task.status != 1:
                return self.refuse("TaskStatusError", "Only a running task can be paused.")
            task.status = 2
            task.generation += 1
            return self.ok({"Result": 1})

    # ---------------------------------------------------------------- numbers

    def _import(self, params: dict[str, str]) -> Reply:
        raw = params.get("TaskTelList")
        if not raw:
            raise ValueError("TaskTelList is mandatory for this action.")
        try:
            rows = json.loads(raw)
        except ValueError as exc:
            raise ValueError("Specified parameter TaskTelList is not valid JSON.") from exc
        if not isinstance(rows, list):
            raise ValueError("Specified parameter TaskTelList is not valid.")
        if len(rows) > int(self.settings.get("maxTelsPerImport", 100_000)):
            return self.refuse("ImportTelLimit", "At most 100000 numbers can be imported in one call.")
        is_repeat = self._int(params, "IsRepeat", 0)
        with self.lock:
            task = self._task(params)
            if task is None:
                return self.refuse("TaskNotFound", "The task does not exist.")
            if len(task.tels) + len(rows) > int(self.settings.get("maxTelsPerTask", 1_000_000)):
                return self.refuse("TaskTelLimit", "A task holds at most 1000000 numbers.")
            total = sum(len(t.tels) for t in self.tasks.values())
            if total + len(rows) > int(self.settings.get("maxTelsPerEnterprise", 10_000_000)):
                return self.refuse("EnterpriseTelLimit", "An enterprise holds at most 10000000 numbers.")
            file_id = self._next_file
            self._next_file += 1
            existing = {t.tel for t in task.tels} if is_repeat == 1 else set()
            batch: set[str] = set()
            invalid = 0
            for row in rows:
                tel = str(row.get("Tel", "")) if isinstance(row, dict) else ""
                digits = tel[1:] if tel.startswith("+") else tel
                backups = row.get("BackupTels") if isinstance(row, dict) else None
                if not digits.isdigit() or not 3 <= len(digits) <= 20 or (backups and len(str(backups).split(",")) > 8):
                    invalid += 1
                    continue
                if tel in existing or (is_repeat in (1, 2, 3) and tel in batch):
                    invalid += 1
                    continue
                batch.add(tel)
                prop: dict[str, Any] = {}
                if row.get("Property"):
                    try:
                        prop = json.loads(row["Property"])
                    except ValueError:
                        invalid += 1
                        continue
                task.tels.append(Tel(tel, file_id, prop))
            success = len(rows) - invalid
            if success and task.status == 3:
                task.status = 0
        return self.ok(
            {
                "TaskId": str(task.id),
                "FileId": file_id,
                "ImportTotal": len(rows),
                "SuccessTotal": success,
                "InvalidTotal": invalid,
            }
        )

    # ---------------------------------------------------------------- the virtual dialer and CDRs

    def _dial(self, task: Task, generation: int) -> None:
        while not self._closed.is_set():
            with self.lock:
                if task.generation != generation or task.status != 1:
                    return
                width = int(task.fields.get("Concurrency") or 0) or 10
                batch = [t for t in task.tels if not t.dialled][:width]
                if not batch:
                    if str(task.fields.get("AutoComplete", "1")) != "0":
                        task.status = 3
                    return
                for tel in batch:
                    tel.dialled = True
                started = int(time.time())
                outcomes = [self.outcome() for _ in batch]
            time.sleep(self.dialing.ring_seconds)
            answered_at = int(time.time())
            if "answered" in outcomes:
                time.sleep(self.dialing.talk_seconds)
            with self.lock:
                ended = int(time.time())
                for tel, outcome in zip(batch, outcomes, strict=True):
                    self._write_cdr(task, tel, outcome, started, answered_at, ended)

    def _write_cdr(self, task: Task, tel: Tel, outcome: str, started: int, answered: int, ended: int) -> None:
        cdr_id = self._next_cdr
        self._next_cdr += 1
        is_answer = outcome == "answered"
        status = ("43" if str(task.fields.get("Type")) == "1" else "41") if is_answer else "40"
        sip = {"answered": "200", "busy": "486"}.get(outcome, "480")
        self.cdrs.append(
            {
                "Id": str(cdr_id),
                "UniqueId": f"sim-{uuid.uuid4().hex}",
                "CallId": f"call-{cdr_id}",
                "TaskId": str(task.id),
                "TaskName": str(task.fields.get("Name", "")),
                "TaskFileId": str(tel.file_id),
                "CustomerNumber": tel.tel,
                "Clid": str(task.fields.get("CustomerClids", "")).split(",")[0],
                "StartTime": str(started),
                "AnswerTime": str(answered) if is_answer else "0",
                "EndTime": str(ended),
                "BridgeDuration": str(ended - answered) if is_answer else "0",
                "TotalDuration": str(ended - started),
                "Status": status,
                "SipCause": sip,
                "SipCauseStr": {"200": "OK", "486": "Busy Here"}.get(sip, "Temporarily Unavailable"),
                "EndReason": "1" if is_answer else "0",
                "IsRealAnswer": "1" if is_answer else "0",
                "UserField": dict(tel.property),
                "RecordFile": [],
            }
        )

    def add_cdr(self, **values: Any) -> dict[str, Any]:
        """Test hook: append a CDR as if a call had just ended (fields as the API names them)."""
        with self.lock:
            cdr_id = self._next_cdr
            self._next_cdr += 1
            now = str(int(time.time()))
            row = {
                "Id": str(cdr_id),
                "UniqueId": f"sim-{uuid.uuid4().hex}",
                "TaskId": "0",
                "CustomerNumber": "13800000000",
                "StartTime": now,
                "EndTime": now,
                "Status": "40",
                "SipCause": "480",
                **{k: v for k, v in values.items()},
            }
            self.cdrs.append(row)
            return row

    def _month(self, seconds: int) -> tuple[int, int]:
        local = datetime.fromtimestamp(seconds, self.tz)
        return local.year, local.month

    def _cdr(self, params: dict[str, str]) -> Reply:
        limit = self._int(params, "Limit", 10)
        start = self._int(params, "Start", 0)
        if not 0 < limit <= 1000:
            raise ValueError("Specified parameter Limit must be between 1 and 1000.")
        if start < 0:
            raise ValueError("Specified parameter Start must not be negative.")
        now = datetime.now(self.tz)
        first = int(now.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp())
        last_day = calendar.monthrange(now.year, now.month)[1]
        last = int(now.replace(day=last_day, hour=23, minute=59, second=59, microsecond=0).timestamp())
        since = self._int(params, "StartTime", first)
        until = self._int(params, "EndTime", last)
        if self._month(since) != self._month(until):
            raise ValueError("StartTime and EndTime must be in the same month.")
        key = "EndTime" if params.get("TimeRangeType") == "2" else "StartTime"
        with self.lock:
            rows = [
                r
                for r in self.cdrs
                if since <= int(r[key]) <= until
                and (not params.get("TaskId") or r.get("TaskId") == params["TaskId"])
                and (not params.get("Status") or r.get("Status") == params["Status"])
                and (not params.get("CustomerNumber") or r.get("CustomerNumber") == params["CustomerNumber"])
            ]
            rows.sort(key=lambda r: (int(r[key]), int(r["Id"])))
            page = [dict(r) for r in rows[start : start + limit]]
        return self.ok({"List": page})


_PROTOCOL_PARAMS = frozenset(
    {
        "Action",
        "Version",
        "Format",
        "Timestamp",
        "SignatureNonce",
        "SignatureMethod",
        "SignatureVersion",
        "Signature",
        "AccessKeyId",
        "SecurityToken",
        "RegionId",
        "OwnerId",
        "ResourceOwnerAccount",
        "ResourceOwnerId",
    }
)

SIMULATOR = AliyunSimulator

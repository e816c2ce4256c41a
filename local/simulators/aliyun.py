"""Alibaba Cloud VMS (Dyvmsapi 2017-05-25) `Cloud*` simulator, written from the documents: the seed
seeds/aliyun-vms-cloud-create-task.txt (CloudCreateTask: required fields, ranges, at most 100 tasks,
AutoDelete), the CloudImportTaskTel page (at most 100,000 numbers per batch, 1,000,000 per task,
10,000,000 per enterprise) and the model docstrings of the official SDK `alibabacloud-dyvmsapi20170525`
(CloudImportTaskTel, CloudDeleteTaskTel, CloudStart/PauseTask, CloudQueryPredictiveCallCdr, task
Status 0 initial / 1 running / 2 paused / 3 ended, AutoComplete on by default: a task whose numbers
are all called ends, and an ended task cannot be started again).

It answers the SDK's real RPC requests on `/`: parameters in the query string and/or the
urlencoded form body, the action in `Action` (RPC signature v1, HMAC-SHA1, `Signature` param)
or in header `x-acs-action` (ACS3-HMAC-SHA256 in `Authorization`), version 2017-05-25. Both
signatures are recomputed from the AccessKeySecret; a wrong one is refused as POP does
(`SignatureDoesNotMatch` 400, `InvalidAccessKeyId.NotFound` 404, `IncompleteSignature` 400).
Success is `{RequestId, Code:"OK", Message:"OK", Data}` with Data's values typed as the SDK's
response models say (ImportTaskTel's counts are strings). The documents list no business error
codes ("访问错误中心查看更多错误码"): a missing required parameter is POP's `MissingParameter` (400),
a value outside its documented range or enumeration `InvalidParameter` (400), and a refused state
or limit HTTP 200 with a non-OK Code named here (TaskCountLimit, ImportTelLimit, TaskTelLimit,
EnterpriseTelLimit, RunningTaskLimit, TaskNotFound, TaskStatusError: the simulator's names).
Injected faults look like POP's: 500 InternalError and 400 Throttling.User.

Dialling: a running task dials its numbers not called yet, also those imported while it runs, and
writes one CDR per call with StatusCode 40/41/42/43 and Status as text, EndReason 1000/1001 after an
answer, SipCause a number-status code when not answered (the SDK names codes such as 710, 719, 800
without meanings; `numberStatusCodes` sets the simulator's), epoch-second times, UserField = the
number's Property, RecordFile [{File, Type: "record", MonitorType: 1}] for answered calls.

Settings (same dict as the provider): accessKeyId, accessKeySecret, enterpriseId (or
instanceId); optional maxTasks, maxTelsPerImport, maxTelsPerTask, maxTelsPerEnterprise,
maxRunningTasks, timezone, refuseTels (numbers counted invalid:
the platform's own rules are not published), numberStatusCodes ({"busy": "710", "no-answer": "719"}).

Known gap: the base server keeps the parsed query only, so a query parameter with an empty
value cannot be part of the recomputed signature (the provider never sends empty values).
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import itertools
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
    status: int = 0  # 0 initial, 1 running, 2 paused, 3 ended (SDK CloudQueryTask TaskProperties.Status)
    tels: list[Tel] = field(default_factory=list)
    generation: int = 0


class AliyunSimulator(Simulator):
    key = "aliyun"

    def register(self) -> None:
        self.tz = ZoneInfo(str(self.settings.get("timezone", "Asia/Shanghai")))
        self.tasks: dict[int, Task] = {}
        self.cdrs: list[dict[str, Any]] = []
        self._next_task = 1
        self.files: dict[int, str] = {}
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
            "CloudDeleteTaskTel": self._delete_tel,
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
        except KeyError as exc:
            name = exc.args[0]
            return self.pop_error(
                400,
                "MissingParameter",
                f'The input parameter "{name}" that is mandatory for processing this request is not supplied.',
            )
        except ValueError as exc:
            return self.pop_error(400, "InvalidParameter", str(exc))

    # ---------------------------------------------------------------- helpers

    @staticmethod
    def _int(params: dict[str, str], name: str, default: int | None = None) -> int:
        value = params.get(name)
        if value in (None, ""):
            if default is None:
                raise KeyError(name)
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

    # (name, low, high) of CloudCreateTask's documented ranges (seed aliyun-vms-cloud-create-task.txt)
    RANGES = (
        ("CustomerTimeout", 5, 60),
        ("AgentTimeout", 5, 60),
        ("Wrapup", 1, 10800),
        ("MaxWaitTime", 10, 600),
        ("MinAvailableAgentCount", 1, 10),
        ("PredictAdjust", 50, 400),
        ("AnswerRate", 1, 100),
        ("WarmUpDuration", 60, 600),
        ("Concurrency", 0, None),
    )
    # documented enumerations (seed; SDK CloudQueryTask TaskProperties)
    ENUMS = {
        "Type": {1, 2},
        "AutoStart": {0, 1},
        "AutoStop": {0, 1},
        "ForceEndFlag": {0, 1},
        "AutoTaskType": {0, 1},
        "AutoComplete": {0, 1},
        "RetryStrategyTimeType": {1, 2},
        "RetryStrategyOnlyToday": {0, 1, 2, 3},
        "CustomerClidsCategory": {1, 2, 4, 5},
        "CustomerClidType": {1, 2},
        "CustomerClidWeightFlag": {0, 1},
        "CallRouteStrategy": {1, 2},
        "CallGroupType": {1, 2},
        "CallStrategy": {1, 2, 3, 4},
        "AutoDelete": {0, 1},
        "IsRewarm": {0, 1},
    }
    JSON_FIELDS = (
        "RetryStrategy",
        "UserFields",
        "CallVariables",
        "CallLimitStrategy",
        "ClidProperty",
        "CustomerClidWeight",
    )

    def _check_task_fields(self, params: dict[str, str], task_type: int) -> None:
        """Raise ValueError (InvalidParameter / MissingParameter) where CloudCreateTask's document says no."""
        name = params.get("Name", "")
        if len(name) >= 50:
            raise ValueError("Specified parameter Name must be shorter than 50 characters.")
        if len(params.get("Description", "")) >= 200:
            raise ValueError("Specified parameter Description must be shorter than 200 characters.")
        for field_name, allowed in self.ENUMS.items():
            if field_name in params and self._int(params, field_name) not in allowed:
                raise ValueError(f"Specified parameter {field_name} is not valid.")
        for field_name, low, high in self.RANGES:
            if field_name in params and not (low <= self._int(params, field_name) <= (high or 10**9)):
                raise ValueError(f"Specified parameter {field_name} is out of range.")
        if "Quotiety" in params:
            try:
                quotiety = float(params["Quotiety"])
            except ValueError as exc:
                raise ValueError("Specified parameter Quotiety is not valid.") from exc
            if not 0 < quotiety <= 20:
                raise ValueError("Specified parameter Quotiety is out of range.")
        parsed: dict[str, Any] = {}
        for field_name in self.JSON_FIELDS:
            if field_name in params:
                try:
                    parsed[field_name] = json.loads(params[field_name])
                except ValueError as exc:
                    raise ValueError(f"Specified parameter {field_name} is not valid JSON.") from exc
        if isinstance(parsed.get("CallVariables"), list) and len(parsed["CallVariables"]) > 5:
            raise ValueError("Specified parameter CallVariables holds at most 5 variables.")
        if "RetryStrategy" in parsed:
            self._check_retry(parsed["RetryStrategy"], int(params.get("RetryStrategyTimeType") or 1))
        category = int(params.get("CustomerClidsCategory") or 0)
        if category in (1, 2) and not params.get("CustomerClids"):
            raise KeyError("CustomerClids")
        if category in (4, 5) and not params.get("CustomerClidsGroup"):
            raise KeyError("CustomerClidsGroup")
        if params.get("CallGroupType") == "1" and not params.get("Cnos"):
            raise KeyError("Cnos")
        if params.get("CallGroupType") == "2" and not params.get("AgentGroup"):
            raise KeyError("AgentGroup")
        if params.get("AutoTaskType") == "1" and not params.get("AutoTriggerTimeStrategy"):
            raise KeyError("AutoTriggerTimeStrategy")
        if task_type == 2 and not (params.get("IvrId") or params.get("IvrName")):
            raise KeyError("IvrId")

    @staticmethod
    def _check_retry(value: Any, time_type: int) -> None:
        """RetryStrategy basic `{"retry", "strategy": [{"round", "time": "d-h-m"}]}` or advanced (a list of
        those with `condition`); timed from the first call (type 1) each round later than the last."""
        blocks = value if isinstance(value, list) else [value]
        for block in blocks:
            rounds = block.get("strategy") if isinstance(block, dict) else None
            if not isinstance(rounds, list):
                raise ValueError("Specified parameter RetryStrategy is not valid.")
            times = []
            for item in sorted(rounds, key=lambda r: int(r.get("round", 0)) if isinstance(r, dict) else 0):
                match = re.match(r"^(\d+)-(\d+)-(\d+)$", str(item.get("time") if isinstance(item, dict) else ""))
                if not match:
                    raise ValueError("Specified parameter RetryStrategy time must be d-h-m.")
                d, h, m = (int(g) for g in match.groups())
                times.append(d * 1440 + h * 60 + m)
            if time_type == 1 and any(b <= a for a, b in itertools.pairwise(times)):
                raise ValueError("Specified parameter RetryStrategy: each round must be later than the one before.")

    def _create(self, params: dict[str, str]) -> Reply:
        if not params.get("Name"):
            raise KeyError("Name")
        task_type = self._int(params, "Type")
        self._check_task_fields(params, task_type)
        with self.lock:
            if len(self.tasks) >= int(self.settings.get("maxTasks", 100)):
                finished = sorted((t for t in self.tasks.values() if t.status == 3), key=lambda t: t.created)
                if params.get("AutoDelete") == "1" and finished:
                    self._drop(finished[0])
                else:
                    return self.refuse("TaskCountLimit", "The number of tasks has reached the limit of 100.")
            task_id = self._next_task
            self._next_task += 1
            fields = {
                k: v for k, v in params.items() if k[:1].isupper() and k not in _PROTOCOL_PARAMS and k != "AutoDelete"
            }
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
                raise ValueError("The task type cannot be changed.")  # "外呼任务创建后任务类型不支持修改"
            merged = {**task.fields, **params}
            self._check_task_fields(merged, int(task.fields.get("Type") or 1))
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
        self._int(params, "TaskId")
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
        """CloudImportTaskTel: EnterpriseId, Name, TaskId, TaskTelList required; FileId adds to a batch;
        IsRepeat 0 none / 1 within the task (default) / 2 imported numbers / 3 within the batch;
        Priority 0..999999; per number Tel required, BackupTels at most 8, Property JSON."""
        if not params.get("Name"):
            raise KeyError("Name")
        self._int(params, "TaskId")
        raw = params.get("TaskTelList")
        if not raw:
            raise KeyError("TaskTelList")
        if len(raw.encode()) > 8 * 1024 * 1024:
            raise ValueError("Specified parameter TaskTelList is larger than 8MB.")
        try:
            rows = json.loads(raw)
        except ValueError as exc:
            raise ValueError("Specified parameter TaskTelList is not valid JSON.") from exc
        if not isinstance(rows, list) or not rows:
            raise ValueError("Specified parameter TaskTelList is not valid.")
        is_repeat = self._int(params, "IsRepeat", 1)
        if is_repeat not in (0, 1, 2, 3):
            raise ValueError("Specified parameter IsRepeat is not valid.")
        if "Priority" in params and not 0 <= self._int(params, "Priority") <= 999_999:
            raise ValueError("Specified parameter Priority is out of range.")
        if len(rows) > int(self.settings.get("maxTelsPerImport", 100_000)):
            return self.refuse("ImportTelLimit", "At most 100000 numbers can be imported in one batch.")
        with self.lock:
            task = self._task(params)
            if task is None:
                return self.refuse("TaskNotFound", "The task does not exist.")
            if len(task.tels) + len(rows) > int(self.settings.get("maxTelsPerTask", 1_000_000)):
                return self.refuse("TaskTelLimit", "A task holds at most 1000000 numbers.")
            total = sum(len(t.tels) for t in self.tasks.values())
            if total + len(rows) > int(self.settings.get("maxTelsPerEnterprise", 10_000_000)):
                return self.refuse("EnterpriseTelLimit", "An enterprise holds at most 10000000 numbers.")
            if params.get("FileId"):
                file_id = self._int(params, "FileId")
                if file_id not in {t.file_id for t in task.tels} and file_id not in self.files:
                    return self.refuse("TaskFileNotFound", "The batch does not exist.")
            else:
                file_id = self._next_file
                self._next_file += 1
            self.files[file_id] = str(params["Name"])
            in_task = {t.tel for t in task.tels}
            refused = set(self.settings.get("refuseTels") or ())  # numbers the platform counts invalid
            in_batch = {t.tel for t in task.tels if t.file_id == file_id}
            taken: set[str] = set()
            invalid = repeated = 0
            for row in rows:
                tel = str(row.get("Tel", "")) if isinstance(row, dict) else ""
                digits = tel[1:] if tel.startswith("+") else tel
                backups = row.get("BackupTels") if isinstance(row, dict) else None
                prop: dict[str, Any] = {}
                bad = not digits.isdigit() or not 3 <= len(digits) <= 20 or tel in refused
                bad = bad or bool(backups and len(str(backups).split(",")) > 8)
                if not bad and isinstance(row, dict) and row.get("Property"):
                    try:
                        prop = json.loads(row["Property"])
                    except ValueError:
                        bad = True
                if bad:
                    invalid += 1
                    continue
                if (
                    (is_repeat == 1 and tel in in_task)
                    or (is_repeat == 3 and tel in in_batch)
                    or (is_repeat in (1, 2, 3) and tel in taken)
                ):
                    repeated += 1
                    continue
                taken.add(tel)
                task.tels.append(Tel(tel, file_id, prop))
        return self.ok(
            {
                "TaskId": str(task.id),
                "FileId": str(file_id),
                "ImportTotal": str(len(rows)),
                "SuccessTotal": str(len(taken)),
                "InvalidTotal": str(invalid),
            }
        )

    def _delete_tel(self, params: dict[str, str]) -> Reply:
        """CloudDeleteTaskTel: TaskId required; FileId or FileName (the latest batch of that name), Tels
        (comma separated, at most 100,000), Status 0 not called / 1 called; also while running."""
        tels = [t for t in params.get("Tels", "").split(",") if t]
        if len(tels) > 100_000:
            raise ValueError("Specified parameter Tels holds at most 100000 numbers.")
        status = params.get("Status")
        if status not in (None, "", "0", "1"):
            raise ValueError("Specified parameter Status is not valid.")
        with self.lock:
            task = self._task(params)
            if task is None:
                return self.refuse("TaskNotFound", "The task does not exist.")
            file_id = self._int(params, "FileId") if params.get("FileId") else None
            if file_id is None and params.get("FileName"):
                named = [f for f, n in self.files.items() if n == params["FileName"]]
                file_id = max(named) if named else -1
            keep = []
            for tel in task.tels:
                match = (
                    (file_id is None or tel.file_id == file_id)
                    and (not tels or tel.tel in tels)
                    and (status in (None, "") or (status == "1") == tel.dialled)
                )
                if not match:
                    keep.append(tel)
            task.tels = keep
        return self.ok({"Result": 1})

    # ---------------------------------------------------------------- the virtual dialer and CDRs

    def _dial(self, task: Task, generation: int) -> None:
        while not self._closed.is_set():
            with self.lock:
                if task.generation != generation or task.status != 1:
                    return
                width = int(task.fields.get("Concurrency") or 0) or 10
                batch = [t for t in task.tels if not t.dialled][:width]
                if not batch and str(task.fields.get("AutoComplete", "1")) != "0":
                    task.status = 3  # AutoComplete (default on): every number called, the task ends
                    return
                if batch:
                    for tel in batch:
                        tel.dialled = True
                    started = int(time.time())
                    outcomes = [self.outcome() for _ in batch]
            if not batch:
                self._closed.wait(0.02)  # AutoComplete 0: a running task waits for numbers imported into it
                continue
            time.sleep(self.dialing.ring_seconds)
            answered_at = int(time.time())
            if "answered" in outcomes:
                time.sleep(self.dialing.talk_seconds)
            with self.lock:
                ended = int(time.time())
                for tel, outcome in zip(batch, outcomes, strict=True):
                    self._write_cdr(task, tel, outcome, started, answered_at, ended)

    STATUS_TEXT = {"40": "客户未接听", "41": "客户接听", "42": "已呼叫", "43": "双方接听"}

    def _write_cdr(self, task: Task, tel: Tel, outcome: str, started: int, answered: int, ended: int) -> None:
        cdr_id = self._next_cdr
        self._next_cdr += 1
        is_answer = outcome == "answered"
        code = ("43" if str(task.fields.get("Type")) == "1" else "41") if is_answer else "40"
        codes = {"busy": "710", "no-answer": "719", **dict(self.settings.get("numberStatusCodes") or {})}
        unique = f"sim-{uuid.uuid4().hex}"
        self.cdrs.append(
            {
                "Id": str(cdr_id),
                "UniqueId": unique,
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
                "StatusCode": code,
                "Status": self.STATUS_TEXT[code],
                "SipCause": "" if is_answer else codes.get(outcome, "800"),
                "EndReason": "1000" if is_answer else "",
                "IsRealAnswer": "1" if is_answer else "0",
                "UserField": dict(tel.property),
                "RecordFile": [{"File": f"{unique}.mp3", "Type": "record", "MonitorType": 1}] if is_answer else [],
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
                "StatusCode": "40",
                "Status": self.STATUS_TEXT["40"],
                "SipCause": "719",
                **{k: v for k, v in values.items()},
            }
            self.cdrs.append(row)
            return row

    def _month(self, seconds: int) -> tuple[int, int]:
        local = datetime.fromtimestamp(seconds, self.tz)
        return local.year, local.month

    def _cdr(self, params: dict[str, str]) -> Reply:
        """CloudQueryPredictiveCallCdr: Limit 1..1000 (default 10), Start >= 0 (default 0), StartTime /
        EndTime epoch seconds in one month (default: this month), TimeRangeType 1 start / 2 end
        (default 1), filters TaskId, TaskFileId, Status (the code 40..43), CustomerNumber, UniqueId."""
        limit = self._int(params, "Limit", 10)
        start = self._int(params, "Start", 0)
        if not 0 < limit <= 1000:
            raise ValueError("Specified parameter Limit must be between 1 and 1000.")
        if start < 0:
            raise ValueError("Specified parameter Start must not be negative.")
        if params.get("TimeRangeType") not in (None, "", "1", "2"):
            raise ValueError("Specified parameter TimeRangeType is not valid.")
        if params.get("Status") not in (None, "", "40", "41", "42", "43"):
            raise ValueError("Specified parameter Status is not valid.")
        now = datetime.now(self.tz)
        first = int(now.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp())
        last_day = calendar.monthrange(now.year, now.month)[1]
        last = int(now.replace(day=last_day, hour=23, minute=59, second=59, microsecond=0).timestamp())
        since = self._int(params, "StartTime", first)
        until = self._int(params, "EndTime", last)
        if self._month(since) != self._month(until):
            raise ValueError("StartTime and EndTime must be in the same month.")
        key = "EndTime" if params.get("TimeRangeType") == "2" else "StartTime"
        filters = {
            name: params[name] for name in ("TaskId", "TaskFileId", "CustomerNumber", "UniqueId") if params.get(name)
        }
        with self.lock:
            rows = [
                r
                for r in self.cdrs
                if since <= int(r[key]) <= until
                and all(str(r.get(name)) == value for name, value in filters.items())
                and (not params.get("Status") or r.get("StatusCode") == params["Status"])
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

"""Alibaba Cloud VMS `Dyvmsapi` 2017-05-25 `Cloud*` call-center tasks, through the official SDK.

Documents followed (per operation, named in each docstring): the model docstrings of the official
SDK `alibabacloud-dyvmsapi20170525` (CloudCreateTaskRequest, CloudImportTaskTelRequest /
ResponseBody, CloudDeleteTaskTelRequest, CloudPauseTaskRequest, CloudQueryPredictiveCallCdrRequest /
ResponseBody, ...), the seed page seeds/aliyun-vms-cloud-create-task.txt (CloudCreateTask, its limits
and ranges) and the CloudImportTaskTel page (help.aliyun.com api-dyvmsapi-2017-05-25-cloudimporttasktel:
at most 100,000 numbers per batch, 1,000,000 per task, 10,000,000 per enterprise).

The SDK signs every call (ACS3-HMAC-SHA256 by default, the RPC HMAC-SHA1 signature with
`signatureAlgorithm: "v2"`), retries by its own RetryOptions (throttling codes, 5xx and network
errors, exponential backoff with equal jitter, capped), and raises Tea exceptions that this module
turns into ProviderError with the provider's code.

Settings: accessKeyId, accessKeySecret, enterpriseId (or instanceId: the call-center id every
Cloud* call carries); baseUrl (omit for the real endpoint dyvmsapi.aliyuncs.com over https;
`http://127.0.0.1:PORT` points the SDK at a simulator), regionId (cn-hangzhou),
signatureAlgorithm, connectTimeout / readTimeout (s), retries (2), backoffFactor (s, 0.5),
backoffMax (s, 20); timezone (Asia/Shanghai: the platform's clock for AutoStartDay/Time and for
the month a CDR query may span; CDR times are epoch seconds and come back in UTC),
defaultRegion (CN, to read national numbers back), dialFormat ("national" default, as the
documents write Tel / CustomerNumber, or "e164"), isRepeat (1, the documented default: numbers
deduplicated within the task, for first attempts), retryIsRepeat (0: no deduplication, for attempts
after the first, which import the number into the task again; not 3, because the document says
deduplication within the task and within the batch cannot both hold and a switch between them
restarts it), autoComplete (0: a task that has dialled every number stays running for the next
wave instead of ending, as the documented default 1 would do; an ended task cannot be started
again), autoDelete (0),
pageSize (CDRs per query, <=1000), pollMaxPages (50), pollLookbackSeconds (first poll, 86400),
cdrSettleSeconds (CDRs ending within this many seconds of now are left for the next poll, 5),
statusMap (override of StatusCode -> CallStatus), numberStatusMap (SipCause number-status code ->
CallStatus for unanswered calls; empty: the SDK names the codes but publishes no meanings),
endReasonMap (override of EndReason -> normalised hangup cause), providerRedial (true: settings.retry
becomes RetryStrategy and the platform redials; false: no RetryStrategy is sent, the platform
dials each imported number once and outcall's dispatcher imports retries itself), typeMap (TaskSpec.type -> Type:
1 predictive, 2 auto, as CloudQueryTask's TaskProperties.Type documents).
"""

from __future__ import annotations

import calendar
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import phonenumbers
from alibabacloud_dyvmsapi20170525 import models as vms
from alibabacloud_dyvmsapi20170525.client import Client
from alibabacloud_tea_openapi import utils_models as open_api
from alibabacloud_tea_openapi.utils import Utils
from darabonba.policy.retry import RetryCondition, RetryOptions
from darabonba.runtime import RuntimeOptions
from Tea.exceptions import TeaException

from outcall.errors import ProviderError, Unprocessable
from outcall.models import CallEvent, CallStatus, ContactOutcome, ContactSpec
from outcall.observability import logger
from outcall.phones import dial_string, provider_number_to_e164
from outcall.providers.aliyun_rules import OWNED_FIELDS, check_retry_strategy
from outcall.providers.base import Capabilities, PollPage, Provider, ProviderLimits, TaskSpec

KEY: Final = "aliyun"
VERSION = "2017-05-25"
THROTTLING_CODES = ("Throttling", "Throttling.User", "Throttling.Api", "Throttling.Tenant", "ServiceUnavailable")
RETRY_EXCEPTIONS = ("ServerException", "ThrottlingException", "RetryError")
# CDR StatusCode (SDK CloudQueryPredictiveCallCdrResponseBodyDataList.status_code): 40 customer did not
# answer, 41 customer answered, 42 dialled, 43 both answered. `Status` is the same result as text.
DEFAULT_STATUS_MAP: dict[str, CallStatus] = {
    "40": "no-answer",
    "41": "completed",
    "42": "failed",  # "dialled" and nothing more: placed, no answer recorded (*inferred*: failed)
    "43": "completed",
}
# EndReason, "the hang-up reason after answer": 1000 main channel hung up, 1001 another channel hung up,
# 1002 forcibly released. The main channel of an outbound task is the customer's leg (*inferred*).
DEFAULT_END_REASONS: dict[str, str] = {
    "1000": "callee-hangup",
    "1001": "caller-hangup",
    "1002": "released",
}


class AliyunProvider(Provider):
    key = KEY
    limits = ProviderLimits(
        batch_size=100_000,
        max_tasks=100,
        max_numbers_per_task=1_000_000,
        max_numbers_per_account=10_000_000,
        max_running_tasks=10,
    )
    capabilities = Capabilities(
        tasks=True, task_types=frozenset({"auto", "predictive"}), pause=True, clone=False, webhooks=False, polling=True
    )

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        s = self.settings
        enterprise = s.get("enterpriseId", s.get("instanceId"))
        try:
            self.enterprise_id = int(enterprise)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise ValueError("aliyun settings need an integer enterpriseId (or instanceId)") from exc
        self.tz = ZoneInfo(str(s.get("timezone", "Asia/Shanghai")))
        self.region = str(s.get("defaultRegion", "CN"))
        self.dial_format = str(s.get("dialFormat", "national"))
        self.page_size = min(1000, int(s.get("pageSize", 1000)))
        self.poll_max_pages = int(s.get("pollMaxPages", 50))
        self.status_map = {**DEFAULT_STATUS_MAP, **{str(k): v for k, v in dict(s.get("statusMap") or {}).items()}}
        self.number_status_map = {str(k): v for k, v in dict(s.get("numberStatusMap") or {}).items()}
        self.end_reasons = {**DEFAULT_END_REASONS, **{str(k): v for k, v in dict(s.get("endReasonMap") or {}).items()}}
        self.is_repeat = int(s.get("isRepeat", 1))
        self.retry_is_repeat = int(s.get("retryIsRepeat", 0))
        self.type_map = {"predictive": 1, "auto": 2, **dict(s.get("typeMap") or {})}
        retries = int(s.get("retries", 2))
        backoff = {
            "policy": "ExponentialWithEqualJitter",
            "period": max(1, int(float(s.get("backoffFactor", 0.5)) * 1000)),
            "cap": int(float(s.get("backoffMax", 20)) * 1000),
        }
        self.retry_options = RetryOptions(
            {
                "retryable": retries > 0,
                "retryCondition": [
                    RetryCondition(
                        {
                            "maxAttempts": retries + 1,
                            "backoff": backoff,
                            "exception": list(RETRY_EXCEPTIONS),
                            "errorCode": list(THROTTLING_CODES),
                            "maxDelay": backoff["cap"],
                        }
                    )
                ],
            }
        )
        config = open_api.Config(
            access_key_id=s.get("accessKeyId"),
            access_key_secret=s.get("accessKeySecret"),
            region_id=s.get("regionId", "cn-hangzhou"),
            connect_timeout=int(float(s.get("connectTimeout", 5)) * 1000),
            read_timeout=int(float(s.get("readTimeout", 10)) * 1000),
            retry_options=self.retry_options,
        )
        if s.get("signatureAlgorithm"):
            config.signature_algorithm = str(s["signatureAlgorithm"])
        base_url = s.get("baseUrl")
        if base_url:
            parts = urlsplit(str(base_url))
            config.endpoint = parts.netloc
            config.protocol = parts.scheme or "https"
        else:
            config.endpoint = "dyvmsapi.aliyuncs.com"
        self.client = Client(config)

    # ---------------------------------------------------------------- plumbing

    def _runtime(self) -> RuntimeOptions:
        s = self.settings
        return RuntimeOptions(
            connect_timeout=int(float(s.get("connectTimeout", 5)) * 1000),
            read_timeout=int(float(s.get("readTimeout", 10)) * 1000),
            autoretry=int(s.get("retries", 2)) > 0,
            max_attempts=int(s.get("retries", 2)) + 1,
        )

    def _error(self, operation: str, exc: TeaException) -> ProviderError:
        inner: Any = getattr(exc, "inner_exception", None) or exc
        code = getattr(inner, "code", None)
        status = getattr(inner, "status_code", None)
        data = getattr(inner, "data", None)
        name = getattr(inner, "name", type(inner).__name__)
        reason = (data or {}).get("Message") if isinstance(data, dict) else None
        reason = reason or getattr(inner, "message", None) or str(inner)
        retryable = (
            name in RETRY_EXCEPTIONS
            or (isinstance(status, int) and status >= 500)
            or status == 429
            or code in THROTTLING_CODES
            or not isinstance(inner, TeaException)
        )
        provider_code = code if code not in (None, "None") else status
        return ProviderError(
            f"aliyun {operation} failed: {provider_code}: {reason}",
            provider=KEY,
            provider_code=provider_code,
            retryable=retryable,
            details={"status": status, "requestId": (data or {}).get("RequestId") if isinstance(data, dict) else None},
        )

    def _check(self, operation: str, body: Any) -> Any:
        if body is None or getattr(body, "code", None) != "OK":
            code = getattr(body, "code", None)
            raise ProviderError(
                f"aliyun {operation} refused: {code}: {getattr(body, 'message', '')}",
                provider=KEY,
                provider_code=code,
                retryable=code in THROTTLING_CODES,
                details={"requestId": getattr(body, "request_id", None)},
            )
        return body

    def _call(self, operation: str, method: Any, request: Any) -> Any:
        try:
            response = method(request, self._runtime())
        except TeaException as exc:
            raise self._error(operation, exc) from exc
        return self._check(operation, response.body)

    # ---------------------------------------------------------------- mapping

    def _clids_category(self, caller_ids: Sequence[str]) -> int:
        """CustomerClidsCategory for caller ids given as numbers: 2 (mobile) when every one is a mobile
        number, else 1 (fixed-line). 4 (number pool) and 5 (caller-id navigation) name a
        CustomerClidsGroup instead and come only from providerOptions."""
        kinds: set[Any] = set()
        for number in caller_ids:
            try:
                parsed = phonenumbers.parse(number, None if number.startswith("+") else self.region)
                kinds.add(phonenumbers.number_type(parsed))
            except phonenumbers.NumberParseException:
                kinds.add(None)
        return 2 if kinds == {phonenumbers.PhoneNumberType.MOBILE} else 1

    @staticmethod
    def retry_strategy(rounds: int, interval_minutes: int, time_type: int = 1) -> str:
        """RetryStrategy JSON (SDK CloudCreateTaskRequest.retry_strategy, basic mode):
        `{"retry": n, "strategy": [{"round": r, "time": "d-h-m"}, ...]}`. With RetryStrategyTimeType 1
        (timed from the first call, the default) round r waits r * interval, so each round's time is
        later than the round before; with 2 (timed from the previous call) every round waits interval."""

        def dhm(minutes: int) -> str:
            return f"{minutes // 1440}-{minutes % 1440 // 60}-{minutes % 60}"

        strategy = [
            {"round": r, "time": dhm(interval_minutes * (r if time_type == 1 else 1))} for r in range(1, rounds + 1)
        ]
        return json.dumps({"retry": rounds, "strategy": strategy}, separators=(",", ":"))

    def _fields(self, spec: TaskSpec, *, create: bool) -> dict[str, Any]:
        """TaskSpec -> CloudCreateTask / CloudUpdateTask fields (PascalCase, as the API names them).
        providerOptions carry documented field names only (checked by tasks.AliyunOptions)."""
        if spec.type not in self.type_map:
            raise Unprocessable(f"aliyun has no {spec.type!r} tasks; types: {', '.join(self.type_map)}")
        if len(spec.name) >= 50:
            raise Unprocessable("name: aliyun task names are shorter than 50 characters (CloudCreateTask Name)")
        options = dict(spec.provider_options)
        owned = sorted(set(options) & OWNED_FIELDS)
        if owned:
            raise Unprocessable(f"settings.providerOptions.{owned[0]}: set by outcall, not overridable")
        fields: dict[str, Any] = {"EnterpriseId": self.enterprise_id, "Name": spec.name}
        if create:
            fields["Type"] = int(self.type_map[spec.type])
            fields["AutoDelete"] = int(self.settings.get("autoDelete", 0))
            fields["AutoComplete"] = int(self.settings.get("autoComplete", 0))
        if spec.caller_ids:
            fields["CustomerClidsCategory"] = self._clids_category(spec.caller_ids)
            fields["CustomerClids"] = ",".join(spec.caller_ids)
        fields["Concurrency"] = spec.concurrency
        fields["CustomerTimeout"] = max(5, min(60, spec.ring_timeout_seconds))
        if spec.retry is not None and spec.retry.rounds > 0 and self.settings.get("providerRedial", True):
            time_type = int(options.get("RetryStrategyTimeType", 1))
            fields["RetryStrategy"] = self.retry_strategy(spec.retry.rounds, spec.retry.interval_minutes, time_type)
            fields["RetryStrategyTimeType"] = time_type
        for prefix, moment in (("AutoStart", spec.auto_start_at), ("AutoStop", spec.auto_stop_at)):
            if moment is not None:
                local = moment.astimezone(self.tz)
                fields[prefix] = 1
                fields[f"{prefix}Day"] = local.strftime("%Y-%m-%d")
                fields[f"{prefix}Time"] = local.strftime("%H:%M:%S")
        if spec.calling_window is not None and not (
            options.get("AutoTriggerTimeStrategy") or options.get("TimeStrategy")
        ):
            raise Unprocessable(
                "aliyun calling windows are time-condition ids set up in the console: "
                "give providerOptions.AutoTriggerTimeStrategy (with AutoTaskType 1) or TimeStrategy"
            )
        if "AutoTriggerTimeStrategy" in options:
            fields["AutoTaskType"] = 1
        for key, value in options.items():
            fields[key] = json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else value
        self._check_fields(fields, spec, create=create)
        return fields

    @staticmethod
    def _check_fields(fields: Mapping[str, Any], spec: TaskSpec, *, create: bool) -> None:
        """The dependencies between CloudCreateTask fields the document states (caller ids by category,
        rounds of a RetryStrategy, the IVR of an auto task)."""
        category = int(fields.get("CustomerClidsCategory") or 0)
        if category in (1, 2) and not fields.get("CustomerClids"):
            raise Unprocessable(
                f"settings.providerOptions.CustomerClids: needed with CustomerClidsCategory {category} "
                "(or give settings.callerIds)"
            )
        if category in (4, 5) and not fields.get("CustomerClidsGroup"):
            raise Unprocessable(
                f"settings.providerOptions.CustomerClidsGroup: needed with CustomerClidsCategory {category}"
            )
        if fields.get("RetryStrategy"):
            try:
                check_retry_strategy(str(fields["RetryStrategy"]), int(fields.get("RetryStrategyTimeType") or 1))
            except ValueError as exc:
                raise Unprocessable(f"settings.providerOptions.RetryStrategy: {exc}") from exc
        if spec.type == "auto" and create and not (fields.get("IvrId") or fields.get("IvrName")):
            raise Unprocessable("settings.providerOptions.IvrId: aliyun auto tasks need IvrId or IvrName")

    @staticmethod
    def _model(cls: type, fields: Mapping[str, Any]) -> Any:
        fields = {k: v for k, v in fields.items() if v is not None and v != ""}  # empty means "leave as is"
        request = cls().from_map(dict(fields))
        unknown = sorted(set(fields) - set(request.to_map()))
        if unknown:
            raise Unprocessable(f"unknown aliyun fields for {cls.__name__}: {', '.join(unknown)}")
        return request

    def _tel(self, e164: str) -> str:
        return dial_string(e164, self.dial_format)

    def _e164(self, number: str | None) -> str | None:
        return provider_number_to_e164(number, self.region)

    # ---------------------------------------------------------------- tasks

    def create_task(self, spec: TaskSpec) -> str:
        """CloudCreateTask (seed aliyun-vms-cloud-create-task.txt; SDK CloudCreateTaskRequest)."""
        request = self._model(vms.CloudCreateTaskRequest, self._fields(spec, create=True))
        body = self._call("CloudCreateTask", self.client.cloud_create_task_with_options, request)
        return str(body.data.id)

    def update_task(self, provider_task_id: str, spec: TaskSpec) -> None:
        """CloudUpdateTask (SDK CloudUpdateTaskRequest): Type is fixed at creation ("外呼任务创建后任务类型不支持
        修改"); AutoDelete, TemplateName and CallGroupType are CloudCreateTask's only, so none is sent."""
        fields = {**self._fields(spec, create=False), "TaskId": int(provider_task_id)}
        for key in ("Type", "AutoDelete", "TemplateName", "CallGroupType"):  # not in CloudUpdateTaskRequest
            fields.pop(key, None)
        request = self._model(vms.CloudUpdateTaskRequest, fields)
        self._call("CloudUpdateTask", self.client.cloud_update_task_with_options, request)

    def get_task(self, provider_task_id: str) -> dict[str, Any]:
        """CloudGetTask (SDK CloudGetTaskResponseBody: Data.TaskProperty)."""
        request = vms.CloudGetTaskRequest(enterprise_id=self.enterprise_id, task_id=int(provider_task_id))
        body = self._call("CloudGetTask", self.client.cloud_get_task_with_options, request)
        prop = body.data.task_property if body.data else None
        return dict(prop.to_map()) if prop else {}

    def delete_task(self, provider_task_id: str) -> None:
        """CloudDeleteTask (SDK CloudDeleteTaskRequest; seed: numbers go, CDRs and recordings stay)."""
        request = vms.CloudDeleteTaskRequest(enterprise_id=self.enterprise_id, task_id=int(provider_task_id))
        self._call("CloudDeleteTask", self.client.cloud_delete_task_with_options, request)

    def start_task(self, provider_task_id: str) -> None:
        """CloudStartTask (SDK CloudStartTaskRequest): also resumes a paused task."""
        request = vms.CloudStartTaskRequest(enterprise_id=self.enterprise_id, task_id=int(provider_task_id))
        self._call("CloudStartTask", self.client.cloud_start_task_with_options, request)

    def pause_task(self, provider_task_id: str, pause_duration: int = 0) -> None:
        """CloudPauseTask (SDK CloudPauseTaskRequest: TaskId, PauseDuration default 0). The task stops
        taking numbers until CloudStartTask; calls already placed go on. Its numbers stay in it."""
        request = vms.CloudPauseTaskRequest(
            enterprise_id=self.enterprise_id, task_id=int(provider_task_id), pause_duration=pause_duration
        )
        self._call("CloudPauseTask", self.client.cloud_pause_task_with_options, request)

    def stop_task(self, provider_task_id: str) -> None:
        """The API has no stop operation (no CloudStopTask in the SDK; a task ends by AutoStop /
        ForceEndFlag or AutoComplete). outcall's stop is CloudPauseTask then CloudDeleteTaskTel with
        Status 0, which withdraws every number not called yet (SDK CloudDeleteTaskTelRequest: "任务在运行中，
        号码也会被删除"): nothing is dialled after it, the CDRs stay."""
        self.pause_task(provider_task_id)
        self._delete_tels(provider_task_id)

    # ---------------------------------------------------------------- numbers

    def _delete_tels(self, provider_task_id: str, file_id: int | None = None, tels: Sequence[str] = ()) -> None:
        """CloudDeleteTaskTel (SDK CloudDeleteTaskTelRequest): TaskId, optional FileId (batch), Tels (comma
        separated, at most 100,000), Status 0 = only numbers not called yet."""
        request = vms.CloudDeleteTaskTelRequest(
            enterprise_id=self.enterprise_id,
            task_id=int(provider_task_id),
            file_id=file_id,
            tels=",".join(tels) or None,
            status=0,
        )
        self._call("CloudDeleteTaskTel", self.client.cloud_delete_task_tel_with_options, request)

    def _import(
        self, provider_task_id: str, rows: Sequence[Mapping[str, Any]], is_repeat: int
    ) -> tuple[int, int, int, int | None]:
        """One CloudImportTaskTel call (SDK CloudImportTaskTelRequest / ResponseBody): a new batch (`Name`)
        of `TaskTelList` [{Tel, Property(json string)}]. Answers (ImportTotal, SuccessTotal,
        InvalidTotal, FileId). The SDK's generated method puts TaskTelList in the URL, where 100,000
        numbers do not fit; the same signed RPC call goes through the SDK's call_api with the list in
        the form body (RPC reads parameters from either)."""
        query = {
            "EnterpriseId": self.enterprise_id,
            "TaskId": int(provider_task_id),
            "Name": f"outcall-{uuid.uuid4().hex[:12]}",
            "IsRepeat": is_repeat,
        }
        params = open_api.Params(
            action="CloudImportTaskTel",
            version=VERSION,
            protocol="HTTPS",
            pathname="/",
            method="POST",
            auth_type="AK",
            style="RPC",
            req_body_type="formData",
            body_type="json",
        )
        request = open_api.OpenApiRequest(
            query=Utils.query(query),
            body={"TaskTelList": json.dumps(list(rows), ensure_ascii=False, separators=(",", ":"))},
        )
        try:
            result = self.client.call_api(params, request, self._runtime())
        except TeaException as exc:
            raise self._error("CloudImportTaskTel", exc) from exc
        body = self._check("CloudImportTaskTel", vms.CloudImportTaskTelResponse().from_map(result).body)
        data = body.data
        if data is None:
            raise ProviderError("aliyun CloudImportTaskTel answered OK without Data", provider=KEY)
        total = int(data.import_total if data.import_total is not None else len(rows))
        success = int(data.success_total or 0)
        invalid = int(data.invalid_total or 0)
        file_id = int(data.file_id) if str(data.file_id or "").isdigit() else None
        return total, success, invalid, file_id

    def _row(self, contact: ContactSpec) -> dict[str, Any]:
        row: dict[str, Any] = {"Tel": self._tel(contact.e164)}
        prop: dict[str, Any] = {**contact.variables}
        if contact.external_id:
            prop["externalId"] = contact.external_id
        if contact.name:
            prop["name"] = contact.name
        if contact.release_key:
            prop["releaseKey"] = contact.release_key
        prop["attempt"] = contact.attempt
        row["Property"] = json.dumps(prop, ensure_ascii=False, separators=(",", ":"))
        return row

    def _import_exact(
        self, provider_task_id: str, items: list[tuple[int, ContactSpec]], is_repeat: int
    ) -> dict[int, ContactOutcome]:
        """Import `items` and find out which of them the task took. CloudImportTaskTel answers counts
        only (ImportTotal, SuccessTotal, InvalidTotal; the failures are named only by an event push
        whose format is not public). When SuccessTotal < ImportTotal for more than one number, the
        batch's numbers not called yet are withdrawn (CloudDeleteTaskTel FileId, Status 0) and each
        half is imported again as its own batch, down to single numbers, whose answer is exact.
        A single number refused without being invalid is a duplicate: under IsRepeat 1 the task
        already holds it (a batch sent again, or a number of a withdrawn batch that was dialled
        meanwhile), so it counts as held."""
        rows = [self._row(c) for _, c in items]
        total, success, invalid, file_id = self._import(provider_task_id, rows, is_repeat)
        if success >= total:
            return {
                i: ContactOutcome(e164=c.e164, accepted=True, provider_ref=f"{file_id}:{row['Tel']}")
                for (i, c), row in zip(items, rows, strict=True)
            }
        if len(items) == 1:
            i, c = items[0]
            if invalid:
                return {i: ContactOutcome(e164=c.e164, accepted=False, reason="invalid")}
            if is_repeat == 1:
                return {i: ContactOutcome(e164=c.e164, accepted=True, already_held=True, reason="duplicate in task")}
            return {i: ContactOutcome(e164=c.e164, accepted=False, reason="duplicate")}
        if success == 0 and invalid in (0, total):
            reason = "invalid" if invalid else "duplicate in task"
            held = not invalid and is_repeat == 1
            return {i: ContactOutcome(e164=c.e164, accepted=held, already_held=held, reason=reason) for i, c in items}
        if success:
            if file_id is None:
                raise ProviderError("aliyun took part of an import and named no FileId to withdraw it", provider=KEY)
            logger.info(
                "aliyun took part of an import; withdrawing it to find which numbers",
                extra={"provider": KEY, "task": provider_task_id, "total": total, "success": success},
            )
            self._delete_tels(provider_task_id, file_id=file_id)
        half = len(items) // 2
        return {
            **self._import_exact(provider_task_id, items[:half], is_repeat),
            **self._import_exact(provider_task_id, items[half:], is_repeat),
        }

    def add_contacts(self, provider_task_id: str, contacts: Sequence[ContactSpec]) -> list[ContactOutcome]:
        """CloudImportTaskTel, one batch per call (at most 100,000 numbers, CloudImportTaskTel page).
        First attempts use IsRepeat `isRepeat` (1: within the task); later attempts import the number
        into the task again, so they use `retryIsRepeat` (0: none; duplicates within the call are
        refused here). The API has no client-side id per number: a batch sent again after a lost
        answer is recognised only by the task-level deduplication (IsRepeat 1) of first attempts.
        `provider_ref` is `FileId:Tel`, what cancel_contacts withdraws."""
        if len(contacts) > self.limits.batch_size:
            raise Unprocessable(f"at most {self.limits.batch_size} numbers per aliyun import call")
        outcomes: dict[int, ContactOutcome] = {}
        groups: dict[int, list[tuple[int, ContactSpec]]] = {}
        seen: set[tuple[str, int]] = set()
        for i, contact in enumerate(contacts):
            if (contact.e164, contact.attempt) in seen:
                outcomes[i] = ContactOutcome(e164=contact.e164, accepted=False, reason="duplicate in batch")
                continue
            seen.add((contact.e164, contact.attempt))
            is_repeat = self.is_repeat if contact.attempt <= 1 else self.retry_is_repeat
            groups.setdefault(is_repeat, []).append((i, contact))
        for is_repeat, items in groups.items():
            outcomes.update(self._import_exact(provider_task_id, items, is_repeat))
        return [outcomes[i] for i in range(len(contacts))]

    def cancel_contacts(self, provider_task_id: str, refs: Sequence[str]) -> list[str]:
        """CloudDeleteTaskTel per batch (FileId, Tels, Status 0: only numbers not called yet). The answer
        says no more than `Result`, so the numbers of those batches that have a CDR
        (CloudQueryPredictiveCallCdr by TaskId and TaskFileId, this month) count as dialled, not
        withdrawn. A call still ringing has no CDR yet: it is not deleted (it has been called) but
        is reported withdrawn; its CDR still arrives by polling."""
        by_file: dict[int, list[str]] = {}
        for ref in refs:
            batch, _, tel = ref.partition(":")
            if batch.isdigit() and tel:
                by_file.setdefault(int(batch), []).append(tel)
        withdrawn: list[str] = []
        for file_id, tels in by_file.items():
            for start in range(0, len(tels), 100_000):
                self._delete_tels(provider_task_id, file_id=file_id, tels=tels[start : start + 100_000])
            dialled = self._dialled(provider_task_id, file_id)
            withdrawn.extend(f"{file_id}:{tel}" for tel in tels if tel not in dialled)
        return withdrawn

    def _dialled(self, provider_task_id: str, file_id: int) -> set[str]:
        numbers: set[str] = set()
        start = 0
        while True:
            request = vms.CloudQueryPredictiveCallCdrRequest(
                enterprise_id=self.enterprise_id,
                task_id=int(provider_task_id),
                task_file_id=file_id,
                start=start,
                limit=self.page_size,
            )
            body = self._call(
                "CloudQueryPredictiveCallCdr", self.client.cloud_query_predictive_call_cdr_with_options, request
            )
            rows = body.data.list if body.data and body.data.list else []
            numbers.update(str(r.customer_number) for r in rows if r.customer_number)
            if len(rows) < self.page_size:
                return numbers
            start += len(rows)

    # ---------------------------------------------------------------- results

    def _month_end(self, since: int) -> int:
        local = datetime.fromtimestamp(since, self.tz)
        last = calendar.monthrange(local.year, local.month)[1]
        end = local.replace(day=last, hour=23, minute=59, second=59, microsecond=0)
        return int(end.timestamp())

    def _event(self, row: Mapping[str, Any]) -> CallEvent:
        """One CDR row (SDK CloudQueryPredictiveCallCdrResponseBodyDataList) as a CallEvent. The result
        is `StatusCode` (40/41/42/43; `Status` is the same as text); an unanswered call's SipCause
        (a number-status code, e.g. 710, 719, 800) refines it only through numberStatusMap. The hangup
        cause is EndReason (1000/1001/1002, after an answer) normalised, or `no-answer` / the
        number-status code; the raw values stay in `raw`. Times are epoch seconds, given in UTC.
        The attempt is the one outcall put in the number's Property (read back as UserField)."""
        code = str(row.get("StatusCode") or "")
        status: CallStatus = self.status_map.get(code, "failed")
        sip_cause = str(row.get("SipCause") or "")
        if status == "no-answer" and sip_cause in self.number_status_map:
            status = self.number_status_map[sip_cause]
        user_field: dict[str, Any] = row["UserField"] if isinstance(row.get("UserField"), dict) else {}

        def at(name: str) -> datetime | None:
            value = row.get(name)
            try:
                return datetime.fromtimestamp(int(value), UTC) if value not in (None, "", "0") else None
            except (TypeError, ValueError):
                return None

        end_reason = str(row.get("EndReason") or "")
        if end_reason in self.end_reasons:
            cause: str | None = self.end_reasons[end_reason]
        elif status == "completed":
            cause = "hangup"
        elif status == "no-answer":
            cause = "no-answer"
        else:
            cause = status if status != "failed" else (f"number-status-{sip_cause}" if sip_cause else "failed")
        duration = row.get("BridgeDuration") or row.get("TotalDuration")
        records = row.get("RecordFile") or []
        unique = str(row.get("UniqueId") or row.get("Id"))
        ref = user_field.get("releaseKey") or user_field.get("externalId")
        try:
            attempt = max(1, int(user_field.get("attempt") or 1))
        except (TypeError, ValueError):
            attempt = 1
        return CallEvent(
            provider=KEY,
            dedup_key=f"{KEY}:{unique}",
            provider_call_id=str(row.get("CallId") or unique),
            provider_task_id=str(row.get("TaskId")) if row.get("TaskId") is not None else None,
            provider_contact_ref=str(ref) if ref else None,
            phone=self._e164(str(row.get("CustomerNumber") or "")),
            status=status,
            attempt=attempt,
            started_at=at("StartTime"),
            answered_at=at("AnswerTime") if status == "completed" else None,
            ended_at=at("EndTime"),
            duration_seconds=int(str(duration)) if str(duration or "").isdigit() else None,
            hangup_cause=cause,
            recording_url=self._recording(records),
            occurred_at=at("EndTime"),
            raw={k: v for k, v in row.items() if k not in ("CustomerNumber", "UserField")},
        )

    def _recording(self, records: Any) -> str | None:
        """RecordFile[].File is a file name ("录音文件名"); `recordingUrlTemplate` (e.g.
        "https://records.example/{file}") makes it a URL; without it the name is kept as is (the
        signed URL comes from CloudGetRecordUrl, not called here)."""
        for record in records if isinstance(records, list) else []:
            if isinstance(record, dict) and record.get("File") and record.get("Type", "record") == "record":
                template = self.settings.get("recordingUrlTemplate")
                name = str(record["File"])
                return str(template).format(file=name) if template else name
        return None

    def _cdr_page(self, since: int, until: int, start: int) -> list[dict[str, Any]]:
        request = vms.CloudQueryPredictiveCallCdrRequest(
            enterprise_id=self.enterprise_id,
            start_time=since,
            end_time=until,
            time_range_type="2",  # by call end time: a CDR exists once the call has ended
            start=start,
            limit=self.page_size,
        )
        body = self._call(
            "CloudQueryPredictiveCallCdr", self.client.cloud_query_predictive_call_cdr_with_options, request
        )
        rows = body.data.list if body.data and body.data.list else []
        return [r.to_map() for r in rows]

    def poll_results(self, cursor: str | None) -> PollPage:
        """CloudQueryPredictiveCallCdr (SDK request docstring: StartTime / EndTime epoch seconds that must
        not span two months, TimeRangeType 2 = by call end, Start >= 0, Limit 1..1000): CDRs by end
        time, window by window, each window inside one month of the platform clock. The cursor holds
        the window start `since` (and the UniqueIds already emitted that end exactly then), and,
        mid-window, its end and offset.
        A failure after some pages returns those with the cursor at the failed page."""
        now = int(datetime.now(self.tz).timestamp())
        settle = int(self.settings.get("cdrSettleSeconds", 5))
        if cursor:
            state = json.loads(cursor)
        else:
            state = {"since": now - int(self.settings.get("pollLookbackSeconds", 86400)), "seen": []}
        since = int(state["since"])
        seen = set(state.get("seen") or [])
        horizon = max(since, now - settle)
        until = int(state["until"]) if state.get("until") is not None else min(horizon, self._month_end(since))
        offset = int(state.get("start") or 0)
        at_until = set(state.get("atUntil") or [])
        events: list[CallEvent] = []

        def cursor_now(**extra: Any) -> str:
            return json.dumps({"since": since, "seen": sorted(seen), **extra})

        for _ in range(self.poll_max_pages):
            try:
                rows = self._cdr_page(since, until, offset)
            except ProviderError:
                if not events:
                    raise
                logger.warning("aliyun CDR poll stopped early", extra={"provider": KEY, "events": len(events)})
                return PollPage(
                    events=events,
                    cursor=cursor_now(until=until, start=offset, atUntil=sorted(at_until)),
                    more=True,
                )
            for row in rows:
                unique = str(row.get("UniqueId") or row.get("Id"))
                end = int(row.get("EndTime") or 0)
                if end == since and unique in seen:
                    continue
                if end == until:
                    if unique in at_until:
                        continue
                    at_until.add(unique)
                events.append(self._event(row))
            offset += len(rows)
            if len(rows) < self.page_size:
                break
        else:
            return PollPage(
                events=events, cursor=cursor_now(until=until, start=offset, atUntil=sorted(at_until)), more=True
            )
        # the window [since, until] is read whole: the next one starts at until (inclusive)
        next_seen = at_until | (seen if until == since else set())
        next_cursor = json.dumps({"since": until, "seen": sorted(next_seen)})
        more = until < horizon
        if more and until == self._month_end(since):
            next_cursor = json.dumps({"since": until + 1, "seen": []})
        return PollPage(events=events, cursor=next_cursor, more=more)


PROVIDER = AliyunProvider

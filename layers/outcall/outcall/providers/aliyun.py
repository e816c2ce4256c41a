"""Alibaba Cloud VMS `Dyvmsapi` 2017-05-25 `Cloud*` call-center tasks, through the official SDK.

The SDK (`alibabacloud_dyvmsapi20170525`) signs every call (ACS3-HMAC-SHA256 by default, the
RPC HMAC-SHA1 signature with `signatureAlgorithm: "v2"`), retries by its own RetryOptions
(throttling codes, 5xx and network errors, exponential backoff with equal jitter, capped),
and raises Tea exceptions that this module turns into ProviderError with the provider's code.

Settings: accessKeyId, accessKeySecret, enterpriseId (or instanceId: the call-center id every
Cloud* call carries); baseUrl (omit for the real endpoint dyvmsapi.aliyuncs.com over https;
`http://127.0.0.1:PORT` points the SDK at a simulator), regionId (cn-hangzhou),
signatureAlgorithm, connectTimeout / readTimeout (s), retries (2), backoffFactor (s, 0.5),
backoffMax (s, 20); timezone (Asia/Shanghai: the platform's clock for days and months),
defaultRegion (CN, to read national numbers back), dialFormat ("national" default, "e164"),
isRepeat (1: refuse duplicates within a task), autoDelete (0), pageSize (CDRs per query, <=1000),
pollMaxPages (50), pollLookbackSeconds (first poll, 86400), cdrSettleSeconds (CDRs ending within
this many seconds of now are left for the next poll, 5), statusMap (override of CDR Status ->
CallStatus), typeMap (TaskSpec.type -> Type; *inferred* 1 predictive, 2 auto).
"""

from __future__ import annotations

import calendar
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

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
from outcall.providers.base import Capabilities, PollPage, Provider, ProviderLimits, TaskSpec

KEY: Final = "aliyun"
VERSION = "2017-05-25"
THROTTLING_CODES = ("Throttling", "Throttling.User", "Throttling.Api", "Throttling.Tenant", "ServiceUnavailable")
RETRY_EXCEPTIONS = ("ServerException", "ThrottlingException", "RetryError")
DEFAULT_STATUS_MAP: dict[str, CallStatus] = {
    "40": "no-answer",  # predictive call, customer did not answer
    "41": "completed",  # customer answered (no agent bridged)
    "42": "failed",  # dialled, no answer record (*inferred*)
    "43": "completed",  # customer and agent both answered
}
BUSY_SIP_CAUSES = frozenset({"486", "600", "603"})
JSON_STRING_FIELDS = frozenset(
    {"RetryStrategy", "UserFields", "CallVariables", "CallLimitStrategy", "ClidProperty", "CustomerClidWeight"}
)


def _pascal(key: str) -> str:
    return key[:1].upper() + key[1:]


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

    def _fields(self, spec: TaskSpec, *, create: bool) -> dict[str, Any]:
        """TaskSpec -> CloudCreateTask/CloudUpdateTask fields (PascalCase, as the API names them)."""
        if spec.type not in self.type_map:
            raise Unprocessable(f"aliyun has no {spec.type!r} tasks; types: {', '.join(self.type_map)}")
        fields: dict[str, Any] = {"EnterpriseId": self.enterprise_id, "Name": spec.name}
        if create:
            fields["Type"] = int(self.type_map[spec.type])
            fields["AutoDelete"] = int(self.settings.get("autoDelete", 0))
        if spec.caller_ids:
            fields["CustomerClidsCategory"] = 1
            fields["CustomerClids"] = ",".join(spec.caller_ids)
        fields["Concurrency"] = spec.concurrency
        fields["CustomerTimeout"] = max(5, min(60, spec.ring_timeout_seconds))
        if spec.retry is not None and spec.retry.rounds > 0:
            minutes = spec.retry.interval_minutes
            when = f"{minutes // 1440}-{minutes % 1440 // 60}-{minutes % 60}"  # day-hour-minute, *inferred*
            fields["RetryStrategy"] = json.dumps(
                {
                    "retry": spec.retry.rounds,
                    "strategy": [{"round": r, "time": when} for r in range(1, spec.retry.rounds + 1)],
                },
                separators=(",", ":"),
            )
            fields["RetryStrategyTimeType"] = 1
        for prefix, moment in (("AutoStart", spec.auto_start_at), ("AutoStop", spec.auto_stop_at)):
            if moment is not None:
                local = moment.astimezone(self.tz)
                fields[prefix] = 1
                fields[f"{prefix}Day"] = local.strftime("%Y-%m-%d")
                fields[f"{prefix}Time"] = local.strftime("%H:%M:%S")
        options = {_pascal(k): v for k, v in spec.provider_options.items()}
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
        if spec.type == "auto" and create and not (fields.get("IvrId") or fields.get("IvrName")):
            raise Unprocessable("aliyun auto tasks need providerOptions.IvrId or IvrName (the IVR callers hear)")
        return fields

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
        request = self._model(vms.CloudCreateTaskRequest, self._fields(spec, create=True))
        body = self._call("CloudCreateTask", self.client.cloud_create_task_with_options, request)
        return str(body.data.id)

    def update_task(self, provider_task_id: str, spec: TaskSpec) -> None:
        fields = {**self._fields(spec, create=False), "TaskId": int(provider_task_id)}
        for key in ("Type", "AutoDelete", "TemplateName"):  # fixed at creation / not task properties
            fields.pop(key, None)
        request = self._model(vms.CloudUpdateTaskRequest, fields)
        self._call("CloudUpdateTask", self.client.cloud_update_task_with_options, request)

    def get_task(self, provider_task_id: str) -> dict[str, Any]:
        request = vms.CloudGetTaskRequest(enterprise_id=self.enterprise_id, task_id=int(provider_task_id))
        body = self._call("CloudGetTask", self.client.cloud_get_task_with_options, request)
        prop = body.data.task_property if body.data else None
        return dict(prop.to_map()) if prop else {}

    def delete_task(self, provider_task_id: str) -> None:
        request = vms.CloudDeleteTaskRequest(enterprise_id=self.enterprise_id, task_id=int(provider_task_id))
        self._call("CloudDeleteTask", self.client.cloud_delete_task_with_options, request)

    def start_task(self, provider_task_id: str) -> None:
        request = vms.CloudStartTaskRequest(enterprise_id=self.enterprise_id, task_id=int(provider_task_id))
        self._call("CloudStartTask", self.client.cloud_start_task_with_options, request)

    def pause_task(self, provider_task_id: str, pause_duration: int = 0) -> None:
        request = vms.CloudPauseTaskRequest(
            enterprise_id=self.enterprise_id, task_id=int(provider_task_id), pause_duration=pause_duration
        )
        self._call("CloudPauseTask", self.client.cloud_pause_task_with_options, request)

    # ---------------------------------------------------------------- numbers

    def add_contacts(self, provider_task_id: str, contacts: Sequence[ContactSpec]) -> list[ContactOutcome]:
        """One CloudImportTaskTel call. The SDK's generated method puts TaskTelList in the URL,
        where 100,000 numbers do not fit; the same signed RPC call goes through the SDK's
        call_api with the list in the form body (RPC reads parameters from either)."""
        if len(contacts) > self.limits.batch_size:
            raise Unprocessable(f"at most {self.limits.batch_size} numbers per aliyun import call")
        if not contacts:
            return []
        outcomes: list[ContactOutcome | None] = [None] * len(contacts)
        rows: list[dict[str, Any]] = []
        seen: dict[str, int] = {}
        for i, contact in enumerate(contacts):
            if contact.e164 in seen:
                outcomes[i] = ContactOutcome(e164=contact.e164, accepted=False, reason="duplicate in batch")
                continue
            seen[contact.e164] = i
            row: dict[str, Any] = {"Tel": self._tel(contact.e164)}
            prop = {**contact.variables}
            if contact.external_id:
                prop["externalId"] = contact.external_id
            if contact.name:
                prop["name"] = contact.name
            if prop:
                row["Property"] = json.dumps(prop, ensure_ascii=False, separators=(",", ":"))
            rows.append(row)
        batch = f"outcall-{uuid.uuid4().hex[:12]}"
        query = {
            "EnterpriseId": self.enterprise_id,
            "TaskId": int(provider_task_id),
            "Name": batch,
            "IsRepeat": int(self.settings.get("isRepeat", 1)),
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
            body={"TaskTelList": json.dumps(rows, ensure_ascii=False, separators=(",", ":"))},
        )
        try:
            result = self.client.call_api(params, request, self._runtime())
        except TeaException as exc:
            raise self._error("CloudImportTaskTel", exc) from exc
        body = self._check("CloudImportTaskTel", vms.CloudImportTaskTelResponse().from_map(result).body)
        invalid = int(getattr(body.data, "invalid_total", 0) or 0) if body.data else 0
        if invalid:
            logger.warning(
                "aliyun import reported invalid numbers it does not name",
                extra={"provider": KEY, "task": provider_task_id, "batch": batch, "invalid": invalid},
            )
        file_id = str(body.data.file_id) if body.data and body.data.file_id is not None else batch
        return [
            outcome or ContactOutcome(e164=contact.e164, accepted=True, provider_ref=file_id)
            for outcome, contact in zip(outcomes, contacts, strict=True)
        ]

    # ---------------------------------------------------------------- results

    def _month_end(self, since: int) -> int:
        local = datetime.fromtimestamp(since, self.tz)
        last = calendar.monthrange(local.year, local.month)[1]
        end = local.replace(day=last, hour=23, minute=59, second=59, microsecond=0)
        return int(end.timestamp())

    def _event(self, row: Mapping[str, Any]) -> CallEvent:
        status_code = str(row.get("Status") or "")
        status: CallStatus = self.status_map.get(status_code, "failed")
        if status == "no-answer" and str(row.get("SipCause") or "") in BUSY_SIP_CAUSES:
            status = "busy"
        user_field: dict[str, Any] = row["UserField"] if isinstance(row.get("UserField"), dict) else {}

        def at(name: str) -> datetime | None:
            value = row.get(name)
            try:
                return datetime.fromtimestamp(int(value), self.tz) if value not in (None, "", "0") else None
            except (TypeError, ValueError):
                return None

        duration = row.get("BridgeDuration") or row.get("TotalDuration")
        records = row.get("RecordFile") or []
        unique = str(row.get("UniqueId") or row.get("Id"))
        return CallEvent(
            provider=KEY,
            dedup_key=f"{KEY}:{unique}",
            provider_call_id=str(row.get("CallId") or unique),
            provider_task_id=str(row.get("TaskId")) if row.get("TaskId") is not None else None,
            provider_contact_ref=str(user_field.get("externalId")) if user_field.get("externalId") else None,
            phone=self._e164(str(row.get("CustomerNumber") or "")),
            status=status,
            started_at=at("StartTime"),
            answered_at=at("AnswerTime"),
            ended_at=at("EndTime"),
            duration_seconds=int(str(duration)) if str(duration or "").isdigit() else None,
            hangup_cause=str(row.get("EndReason") or row.get("SipCauseStr") or status_code) or None,
            recording_url=str(records[0].get("File"))
            if records and isinstance(records[0], dict) and records[0].get("File")
            else None,
            occurred_at=at("EndTime"),
            raw={k: v for k, v in row.items() if k not in ("CustomerNumber", "UserField")} | {"Status": status_code},
        )

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
        """CDRs by end time, window by window. The cursor holds the window start `since` (and the
        UniqueIds already emitted that end exactly then), and, mid-window, its end and offset.
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

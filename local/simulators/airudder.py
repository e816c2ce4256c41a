"""AIRUDDER workflow simulator, written from AIRUDDER's API pages (apifox) and the seed (the workflow
API-node push), not from outcall's module.

What it holds to the documents:
- auth (api-44712004): `POST /service/cloud/auth {"APPKey","APPSecret"}` answers
  `{"data":{"token"},"status":"OK","code":200}`; the token lives 24 h (tokenTtlSeconds) and is sent as
  `Authorization: Token <token>`; an expired or unknown token is code 10813;
- workflow/createinstance (api-45238811): workflow_template_id (an integer), name and end_time are
  required; a name already used is 10508;
- workflow/uploaddetails: details with case_id and callee; a callee that does not start with "+" or has
  more than 14 digits is 10510; the instance dials what it is given, also while it runs;
- workflow/detailinstances (api-154088166): start_time and end_time required; the workflows holding a
  case_id / callee;
- workflow/cancel, workflow/stop, workflow/taskdetail (api-154573225: rows with the fields of the
  call-completion notification plus workflow_id and case_id);
- pushes: the API-node shape of the seed (`workflow_id, workflow_name, node_id, node_name, callee{},
  custom_attribute{}, call{}`), times in the callee's local time without offset (the zone phonenumbers
  gives for the number, or setting calleeTimezone), an unanswered call with call_start_time equal to
  call_end_time, the round's earlier attempts in call.redial_call[] (each with its own call_id),
  answered 2xx within 10 s or pushed again every `pushRetrySeconds` (60 in AIRUDDER), 5 times.

*Not in the public pages* and chosen here: the error envelope `{"status","code","message","data"}`
with code 400 for a bad request, uploaddetails answering `data.fail_list[{case_id, callee, code,
message}]`, the end_time format "YYYY-MM-DD HH:MM:SS", the fields of workflow/cancel, /stop and
/taskdetail (`workflow_id`, `case_id`, `page`, `page_size`; answer `data.list`, `data.total`), the
batch limit (setting batchSize, default 1000).

Settings: appKey, appSecret, webhookUrl (pushes go to {webhookUrl}/workflow), webhookSecret,
webhookAuth ("query" or "header"), webhookTokenParam, webhookHeader, batchSize, tokenTtlSeconds,
pushRetrySeconds (60), pushCopies (1), redialTimes (0: attempts after the first within a round),
calleeTimezone.
Test hooks: `expire_tokens()`, `answer_next(Reply)`.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import timezone as phone_timezone

from local.simulators.base import Reply, SimRequest, Simulator

P = "/service/cloud/"
FMT = "%Y-%m-%d %H:%M:%S"
RING = {"answered": "normal", "busy": "busy", "no-answer": "null"}


def _ok(data: Any = None) -> Reply:
    return Reply(200, {"status": "OK", "code": 200, "message": "success", "data": data if data is not None else {}})


def _err(http: int, code: int, message: str, data: Any = None) -> Reply:
    return Reply(http, {"status": "Error", "code": code, "message": message, "data": data})


def _bad_phone(phone: Any) -> bool:
    text = str(phone or "")
    return not (text.startswith("+") and text[1:].isdigit() and 6 <= len(text) - 1 <= 14)


class AirudderSimulator(Simulator):
    key = "airudder"

    def __init__(self, port: int = 0, settings: dict[str, Any] | None = None) -> None:
        self.tokens: dict[str, float] = {}
        self.workflows: dict[str, dict[str, Any]] = {}
        self.pushes: list[dict[str, Any]] = []
        self.rows: list[dict[str, Any]] = []  # every finished call, as workflow/taskdetail answers it
        super().__init__(port, settings)

    @property
    def tasks(self) -> dict[str, dict[str, Any]]:
        return self.workflows

    def register(self) -> None:
        self.route("POST", P + "auth", self._auth)
        ops = "createinstance|uploaddetails|detailinstances|stop|cancel|taskdetail"
        self.route("POST", P + rf"workflow/(?P<op>{ops})", self._api)

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.tokens.clear()
            self.workflows.clear()
            self.pushes.clear()
            self.rows.clear()

    def expire_tokens(self) -> None:
        with self.lock:
            for token in self.tokens:
                self.tokens[token] = 0.0

    # ---------------------------------------------------------------- auth
    def _auth(self, req: SimRequest, _: re.Match[str]) -> Reply:
        try:
            body = req.json() or {}
        except ValueError:
            return _err(400, 400, "body is not JSON")
        if body.get("APPKey") != self.settings.get("appKey") or body.get("APPSecret") != self.settings.get("appSecret"):
            return _err(403, 403, "APPKey or APPSecret is wrong")
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = time.time() + float(self.settings.get("tokenTtlSeconds", 86400))
        return Reply(200, {"data": {"token": token}, "status": "OK", "code": 200})

    def _api(self, req: SimRequest, match: re.Match[str]) -> Reply:
        auth = req.headers.get("Authorization") or req.headers.get("authorization") or ""
        token = auth[len("Token ") :] if auth.startswith("Token ") else ""
        with self.lock:
            if self.tokens.get(token, 0.0) <= time.time():
                return _err(401, 10813, "token expired or invalid")
        try:
            body = req.json()
        except ValueError:
            return _err(400, 400, "body is not JSON")
        if not isinstance(body, dict):
            return _err(400, 400, "body must be a JSON object")
        with self.lock:
            reply: Reply = getattr(self, f"_wf_{match.group('op')}")(body)
            return reply

    # ---------------------------------------------------------------- workflows
    def _workflow(self, body: dict[str, Any]) -> dict[str, Any] | None:
        return self.workflows.get(str(body.get("workflow_id")))

    def _wf_createinstance(self, body: dict[str, Any]) -> Reply:
        template = body.get("workflow_template_id")
        if not isinstance(template, int) or isinstance(template, bool):
            return _err(400, 400, "workflow_template_id is required and must be an integer")
        name = body.get("name")
        if not isinstance(name, str) or not name:
            return _err(400, 400, "name is required")
        try:
            end = datetime.strptime(str(body.get("end_time")), FMT)
        except ValueError:
            return _err(400, 400, "end_time is required (YYYY-MM-DD HH:MM:SS)")
        if any(w["name"] == name for w in self.workflows.values()):
            return _err(400, 10508, "task name already exists")
        wid = uuid.uuid4().hex
        self.workflows[wid] = {
            "id": wid,
            "name": name,
            "template": template,
            "end_time": end,
            "status": "Running",
            "contacts": {},
            "node_id": uuid.uuid4().hex,
        }
        return _ok({"workflow_id": wid})

    def _wf_uploaddetails(self, body: dict[str, Any]) -> Reply:
        wf = self._workflow(body)
        if wf is None:
            return _err(400, 400, "workflow not found")
        details = body.get("details")
        if not isinstance(details, list) or not details:
            return _err(400, 400, "details are required")
        limit = int(self.settings.get("batchSize", 1000))
        if len(details) > limit:
            return _err(400, 400, f"at most {limit} details per call")
        if wf["status"] != "Running":
            return _err(400, 400, "workflow already stopped")
        fails = []
        for d in details:
            case_id = str(d.get("case_id") or "") if isinstance(d, dict) else ""
            callee = d.get("callee") if isinstance(d, dict) else None
            if not case_id:
                fails.append({"case_id": case_id, "callee": callee, "code": 400, "message": "case_id is required"})
            elif _bad_phone(callee):
                message = "callee must start with + and have at most 14 digits"
                fails.append({"case_id": case_id, "callee": callee, "code": 10510, "message": message})
            elif case_id in wf["contacts"]:
                fails.append({"case_id": case_id, "callee": callee, "code": 400, "message": "duplicate case_id"})
            else:
                self._add_contact(wf, case_id, d)
        return _ok({"success_count": len(details) - len(fails), "fail_list": fails})

    def _wf_detailinstances(self, body: dict[str, Any]) -> Reply:
        for name in ("start_time", "end_time"):
            try:
                datetime.strptime(str(body.get(name)), FMT)
            except ValueError:
                return _err(400, 400, f"{name} is required (YYYY-MM-DD HH:MM:SS)")
        case_id, callee = body.get("case_id"), body.get("callee")
        if not case_id and not callee:
            return _err(400, 400, "case_id or callee is required")
        rows = [
            {"workflow_id": wf["id"], "workflow_name": wf["name"], "case_id": k, "callee": c["detail"].get("callee")}
            for wf in self.workflows.values()
            for k, c in wf["contacts"].items()
            if (not case_id or k == case_id) and (not callee or c["detail"].get("callee") == callee)
        ]
        return _ok(rows)

    def _wf_stop(self, body: dict[str, Any]) -> Reply:
        wf = self._workflow(body)
        if wf is None:
            return _err(400, 400, "workflow not found")
        if wf["status"] != "Running":
            return _err(400, 400, "workflow already stopped")
        wf["status"] = "Stopped"
        return _ok()

    def _wf_cancel(self, body: dict[str, Any]) -> Reply:
        wf = self._workflow(body)
        if wf is None:
            return _err(400, 400, "workflow not found")
        contact = wf["contacts"].get(str(body.get("case_id")))
        if contact is None:
            return _err(400, 400, "case_id not found")
        if contact["state"] == "pending":
            contact["state"] = "canceled"
        return _ok({"case_id": body.get("case_id"), "state": contact["state"]})

    def _wf_taskdetail(self, body: dict[str, Any]) -> Reply:
        wf = self._workflow(body)
        if wf is None:
            return _err(400, 400, "workflow not found")
        page, size = int(body.get("page") or 1), int(body.get("page_size") or 100)
        rows = [r for r in self.rows if r["workflow_id"] == wf["id"]]
        return _ok({"list": rows[(page - 1) * size : page * size], "total": len(rows)})

    # ---------------------------------------------------------------- virtual dialing and pushes
    def _add_contact(self, wf: dict[str, Any], case_id: str, detail: dict[str, Any]) -> None:
        wf["contacts"][case_id] = {"detail": detail, "state": "pending"}
        delay = self.dialing.ring_seconds + self.rng().random() * 0.05
        self.later(delay, lambda: self._dial(wf, case_id))

    def _zone(self, number: str) -> ZoneInfo:
        if self.settings.get("calleeTimezone"):
            return ZoneInfo(str(self.settings["calleeTimezone"]))
        try:
            zones = phone_timezone.time_zones_for_number(phonenumbers.parse(number))
        except phonenumbers.NumberParseException:
            zones = ()
        return ZoneInfo(zones[0]) if len(zones) == 1 else ZoneInfo("UTC")

    def _dial(self, wf: dict[str, Any], case_id: str) -> None:
        with self.lock:
            contact = wf["contacts"].get(case_id)
            if contact is None or contact["state"] != "pending" or wf["status"] != "Running":
                return
            contact["state"] = "done"
            d = contact["detail"]
            number = str(d.get("callee"))
            zone = self._zone(number)
            now = datetime.now(UTC).replace(microsecond=0)
            redials = []
            result = self.outcome()
            for n in range(int(self.settings.get("redialTimes", 0))):
                if result == "answered":
                    break
                at = (now - timedelta(seconds=30 * (n + 1))).astimezone(zone)
                redials.append(
                    {
                        "call_id": uuid.uuid4().hex,
                        "call_start_time": at.strftime(FMT),
                        "ring_type": RING[result],
                        "ring_time": 5,
                        "hangup_type": "ByRobot",
                        "result_label": "F",
                        "callee_number": number,
                        "caller_number": "+6620000000",
                    }
                )
                result = self.outcome()
            redials.reverse()
            talk = max(1, round(self.dialing.talk_seconds)) if result == "answered" else 0
            start = now.astimezone(zone)
            call = {
                "task_id": uuid.uuid4().hex,
                "call_id": uuid.uuid4().hex,
                "robot_id": "4496",
                "callee_number": number,
                "call_start_time": start.strftime(FMT),
                "call_end_time": (start + timedelta(seconds=talk)).strftime(FMT),
                "call_times": len(redials) + 1,
                "ring_type": RING[result],
                "hangup_type": "ByCallee" if result == "answered" else "ByRobot",
                "intention": "A" if result == "answered" else "F",
                "multi_label": {},
                "asr_ptp": "",
                "asr_result": [],
                "ner_slots": {},
                "slots": "",
                "talk_round": 2 if result == "answered" else 0,
                "ring_time": 3,
                "intention_description": "simulated",
                "redial_call": redials,
                "caller_number": "+6620000000",
            }
            payload: dict[str, Any] = {
                "workflow_id": wf["id"],
                "workflow_name": wf["name"],
                "node_id": wf["node_id"],
                "node_name": "API1",
                "callee": {
                    "case_id": case_id,
                    "callee_name": d.get("customer_name", ""),
                    "callee_gender": d.get("gender", ""),
                    "callee_number": number,
                    "platform_name": d.get("platform", ""),
                    "extra_a": d.get("extra_a", ""),
                    "extra_b": d.get("extra_b", ""),
                    "extra_c": d.get("extra_c", ""),
                    "extra": d.get("extra", []),
                    "extend": {"variables": {}, "detail_source": "api", "pds_variables": {}},
                    "comments": d.get("comments", ""),
                },
                "custom_attribute": {},
                "call": call,
            }
            self.rows.append({"workflow_id": wf["id"], "case_id": case_id, **call})
            url = self._url("workflow")
        for _ in range(int(self.settings.get("pushCopies", 1))):
            self.push("call", url, payload)

    def _url(self, kind: str) -> str:
        base = str(self.webhook_url or "").rstrip("/")
        if not base:
            return ""
        url = f"{base}/{kind}"
        secret = self.settings.get("webhookSecret")
        if secret and self.settings.get("webhookAuth", "query") == "query":
            url += "?" + urlencode({self.settings.get("webhookTokenParam", "token"): secret})
        return url

    def push(self, kind: str, url: str | None, payload: dict[str, Any], attempt: int = 1) -> None:
        if not url:
            return
        headers = {"Content-Type": "application/json", "User-Agent": "Airudder"}
        secret = self.settings.get("webhookSecret")
        if secret and self.settings.get("webhookAuth", "query") == "header":
            headers[str(self.settings.get("webhookHeader", "X-Outcall-Token"))] = str(secret)
        status = self.post_webhook(url, json.dumps(payload, ensure_ascii=False).encode(), headers)
        with self.lock:
            self.pushes.append({"kind": kind, "url": url, "status": status, "attempt": attempt, "body": payload})
        if (status is None or not 200 <= status < 300) and attempt <= 5:
            retry = float(self.settings.get("pushRetrySeconds", 60))
            self.later(retry, lambda: self.push(kind, url, payload, attempt + 1))


SIMULATOR = AirudderSimulator

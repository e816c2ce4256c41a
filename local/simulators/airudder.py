"""AIRUDDER simulator: token auth (24 h, 10813 when expired or unknown), robot tasks and workflow
instances in memory, 10510 bad phone, 10508 duplicate task name, batch limit, virtual dialing and
pushes (workflow API node, call, task) that carry the webhook secret as the settings say, redelivered
when the receiver does not answer 2xx (every `pushRetrySeconds`, 5 times, as AIRUDDER does every minute).

Settings: appKey, appSecret, webhookUrl (pushes go to {webhookUrl}/workflow, /call, /task unless a task
gave its own callback URLs), webhookSecret, webhookAuth ("query" or "header"), webhookTokenParam,
webhookHeader, batchSize (1000), tokenTtlSeconds (86400), pushRetrySeconds (60), pushCopies (1: how
many times each call is pushed, to exercise deduplication).
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

from local.simulators.base import Reply, SimRequest, Simulator

P = "/service/cloud/"


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
        self.tasks: dict[str, dict[str, Any]] = {}  # robot tasks and workflow instances alike
        self.pushes: list[dict[str, Any]] = []
        super().__init__(port, settings)

    def register(self) -> None:
        self.route("POST", P + "auth", self._auth)
        self.route("POST", P + r"(?P<op>task|operation|cancelphonecall|detail)", self._api)
        self.route("GET", P + r"(?P<op>list|detail)", self._api)
        self.route("POST", P + r"workflow/(?P<op>createinstance|uploaddetails|stop|cancel)", self._api)

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.tokens.clear()
            self.tasks.clear()
            self.pushes.clear()

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
        return _ok({"token": token})

    def _api(self, req: SimRequest, match: re.Match[str]) -> Reply:
        auth = req.headers.get("Authorization") or req.headers.get("authorization") or ""
        token = auth[len("Token ") :] if auth.startswith("Token ") else ""
        with self.lock:
            if self.tokens.get(token, 0.0) <= time.time():
                return _err(401, 10813, "token expired or invalid")
        try:
            body = req.json() if req.method == "POST" else {k: v[0] for k, v in req.query.items()}
        except ValueError:
            return _err(400, 400, "body is not JSON")
        workflow = "/workflow/" in req.path
        op = ("wf_" if workflow else "task_") + match.group("op")
        with self.lock:
            return getattr(self, f"_{op}")(body or {})

    # ---------------------------------------------------------------- robot tasks
    def _name_taken(self, name: str) -> bool:
        return any(t["name"] == name for t in self.tasks.values())

    def _task_task(self, body: dict[str, Any]) -> Reply:
        name = body.get("task_name")
        if not name or not body.get("robot_id"):
            return _err(400, 400, "task_name and robot_id are required")
        if self._name_taken(name):
            return _err(400, 10508, "task name already exists")
        callees = body.get("callees") or []
        if len(callees) > int(self.settings.get("batchSize", 1000)):
            return _err(400, 400, "too many callees")
        bad = [c.get("callee") for c in callees if _bad_phone(c.get("callee"))]
        if bad:
            return _err(400, 10510, "callee must start with + and have at most 14 digits", {"callees": bad})
        tid = uuid.uuid4().hex
        task = {
            "id": tid,
            "kind": "task",
            "name": name,
            "status": "Running",
            "contacts": {},
            "callback_url": body.get("callback_url"),
            "call_callback_url": body.get("call_callback_url"),
        }
        self.tasks[tid] = task
        for c in callees:
            self._add_contact(task, str(c.get("case_id") or uuid.uuid4().hex), c)
        return _ok({"task_id": tid})

    def _task_operation(self, body: dict[str, Any]) -> Reply:
        task = self.tasks.get(str(body.get("task_id")))
        if task is None or task["kind"] != "task":
            return _err(400, 400, "task not found")
        if body.get("operation") != "stop":
            return _err(400, 400, "operation must be stop")
        if task["status"] != "Running":
            return _err(400, 400, "task already stopped")
        self._finish(task, "Stopped")
        return _ok()

    def _task_cancelphonecall(self, body: dict[str, Any]) -> Reply:
        return self._cancel(self.tasks.get(str(body.get("task_id"))), body.get("case_id"), "task")

    def _cancel(self, task: dict[str, Any] | None, case_id: Any, kind: str) -> Reply:
        if task is None or task["kind"] != kind:
            return _err(400, 400, f"{kind} not found")
        contact = task["contacts"].get(str(case_id))
        if contact is None:
            return _err(400, 400, "case_id not found")
        if contact["state"] == "pending":
            contact["state"] = "canceled"
        return _ok({"case_id": case_id, "state": contact["state"]})

    def _task_list(self, body: dict[str, Any]) -> Reply:
        return _ok(
            {
                "tasks": [
                    {"task_id": t["id"], "task_name": t["name"], "status": t["status"]}
                    for t in self.tasks.values()
                    if t["kind"] == "task"
                ]
            }
        )

    def _task_detail(self, body: dict[str, Any]) -> Reply:
        task = self.tasks.get(str(body.get("task_id")))
        if task is None:
            return _err(400, 400, "task not found")
        return _ok(
            {
                "task_id": task["id"],
                "status": task["status"],
                "calls": [{"case_id": k, "state": c["state"]} for k, c in task["contacts"].items()],
            }
        )

    # ---------------------------------------------------------------- workflows
    def _wf_createinstance(self, body: dict[str, Any]) -> Reply:
        name = body.get("name")
        if not name or not body.get("workflow_template_id"):
            return _err(400, 400, "name and workflow_template_id are required")
        if self._name_taken(name):
            return _err(400, 10508, "task name already exists")
        wid = uuid.uuid4().hex
        self.tasks[wid] = {
            "id": wid,
            "kind": "workflow",
            "name": name,
            "status": "Running",
            "contacts": {},
            "template": body["workflow_template_id"],
            "node_id": uuid.uuid4().hex,
        }
        return _ok({"workflow_id": wid})

    def _wf_uploaddetails(self, body: dict[str, Any]) -> Reply:
        task = self.tasks.get(str(body.get("workflow_id")))
        if task is None or task["kind"] != "workflow":
            return _err(400, 400, "workflow not found")
        details = body.get("details")
        if not isinstance(details, list) or not details:
            return _err(400, 400, "details are required")
        if len(details) > int(self.settings.get("batchSize", 1000)):
            return _err(400, 400, f"at most {self.settings.get('batchSize', 1000)} details per call")
        if task["status"] != "Running":
            return _err(400, 400, "workflow already stopped")
        fails = []
        for d in details:
            case_id = str(d.get("case_id") or "")
            if _bad_phone(d.get("callee")):
                fails.append(
                    {
                        "case_id": case_id,
                        "callee": d.get("callee"),
                        "code": 10510,
                        "message": "callee must start with + and have at most 14 digits",
                    }
                )
            elif not case_id or case_id in task["contacts"]:
                fails.append(
                    {"case_id": case_id, "callee": d.get("callee"), "code": 400, "message": "duplicate case_id"}
                )
            else:
                self._add_contact(task, case_id, d)
        return _ok({"success_count": len(details) - len(fails), "fail_list": fails})

    def _wf_stop(self, body: dict[str, Any]) -> Reply:
        task = self.tasks.get(str(body.get("workflow_id")))
        if task is None or task["kind"] != "workflow":
            return _err(400, 400, "workflow not found")
        if task["status"] != "Running":
            return _err(400, 400, "workflow already stopped")
        self._finish(task, "Stopped")
        return _ok()

    def _wf_cancel(self, body: dict[str, Any]) -> Reply:
        return self._cancel(self.tasks.get(str(body.get("workflow_id"))), body.get("case_id"), "workflow")

    # ---------------------------------------------------------------- virtual dialing and pushes
    def _add_contact(self, task: dict[str, Any], case_id: str, detail: dict[str, Any]) -> None:
        task["contacts"][case_id] = {"detail": detail, "state": "pending", "calls": 0}
        delay = self.dialing.ring_seconds + self.rng().random() * 0.05
        self.later(delay, lambda: self._dial(task, case_id))

    def _dial(self, task: dict[str, Any], case_id: str) -> None:
        with self.lock:
            contact = task["contacts"].get(case_id)
            if contact is None or contact["state"] != "pending" or task["status"] != "Running":
                return
            result = self.outcome()
            contact["calls"] += 1
            contact["state"] = "done"
            now = datetime.now(UTC).replace(microsecond=0)
            talk = round(self.dialing.talk_seconds) if result == "answered" else 0
            fmt = "%Y-%m-%d %H:%M:%S"
            call = {
                "task_id": task["id"] if task["kind"] == "task" else uuid.uuid4().hex,
                "call_id": uuid.uuid4().hex,
                "robot_id": "4496",
                "callee_number": contact["detail"].get("callee"),
                "call_start_time": now.strftime(fmt),
                "call_end_time": (now + timedelta(seconds=talk)).strftime(fmt),
                "call_times": contact["calls"],
                "ring_type": {"answered": "normal", "busy": "busy", "no-answer": "null"}[result],
                "hangup_type": "ByCallee" if result == "answered" else "ByRobot",
                "intention": "A" if result == "answered" else "F",
                "multi_label": {},
                "talk_round": 2 if result == "answered" else 0,
                "ring_time": 3,
                "intention_description": "simulated",
            }
            if task["kind"] == "workflow":
                d = contact["detail"]
                payload: dict[str, Any] = {
                    "workflow_id": task["id"],
                    "workflow_name": task["name"],
                    "node_id": task["node_id"],
                    "node_name": "API1",
                    "callee": {
                        "case_id": case_id,
                        "callee_name": d.get("customer_name", ""),
                        "callee_gender": d.get("gender", ""),
                        "callee_number": d.get("callee"),
                        "platform_name": d.get("platform", ""),
                        "extra_a": "",
                        "extra_b": "",
                        "extra_c": "",
                        "extra": d.get("extra", []),
                        "extend": {},
                        "comments": "",
                    },
                    "custom_attribute": {},
                    "call": call,
                }
                url = self._url("workflow")
            else:
                payload = {**call, "case_id": case_id}
                url = task.get("call_callback_url") or self._url("call")
            done = all(c["state"] != "pending" for c in task["contacts"].values())
        for _ in range(int(self.settings.get("pushCopies", 1))):
            self.push("call", url, payload)
        if done and task["kind"] == "task":
            with self.lock:
                self._finish(task, "Finished")

    def _finish(self, task: dict[str, Any], status: str) -> None:
        task["status"] = status
        key = "task_id" if task["kind"] == "task" else "workflow_id"
        url = task.get("callback_url") or self._url("task")
        payload = {key: task["id"], "status": status, "name": task["name"]}
        self.later(0.01, lambda: self.push("task", url, payload))

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

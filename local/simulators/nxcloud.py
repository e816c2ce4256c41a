"""NXCLOUD Callbot v3 simulator: signed requests checked (retCode 6 / 6001 / 6002), signed answers,
gzip bodies, batch limit (retCode 4001), import-running window (retCode 1001), tasks and orders in
memory, virtual dialing, and signed call / order / task callbacks.

Settings: appKey, secretKey (same as the provider), webhookUrl (callbacks go to the URLs given in the
requests, else {webhookUrl}/call, /order, /task), batchSize (default 500), importBusySeconds (how long
an import keeps the task busy, default 0.0), signResponses (default true).
Extra test hooks: `answer_next(Reply)` queues canned answers; `tamper_responses` corrupts answer signatures.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import threading
import time
import uuid
from functools import partial
from typing import Any

from local.simulators.base import Reply, SimRequest, Simulator

PREFIX = "/callcentre/api/v3/"


def _sign(secret: str, body: str, create_ts: str, request_id: str, account: str, algorithm: str) -> str:
    raw = f"{secret}&body={body}&createTs={create_ts}&requestID={request_id}&uuid={account}"
    if algorithm == "SHA256":
        return hashlib.sha256(raw.encode()).hexdigest().upper()
    return hashlib.md5(raw.encode(), usedforsecurity=False).hexdigest().upper()


class NxcloudSimulator(Simulator):
    key = "nxcloud"

    def __init__(self, port: int = 0, settings: dict[str, Any] | None = None) -> None:
        self.tasks: dict[str, dict[str, Any]] = {}
        self.orders: dict[str, dict[str, Any]] = {}
        self.calls: list[dict[str, Any]] = []
        self.callbacks: list[dict[str, Any]] = []  # every push sent: {"kind", "url", "status", "body"}
        self.tamper_responses = False
        self._busy_until: dict[str, float] = {}
        self._cb_lock = threading.Lock()
        super().__init__(port, settings)

    # ---------------------------------------------------------------- config
    @property
    def app_key(self) -> str:
        return str(self.settings.get("appKey", "nx-account"))

    @property
    def secret(self) -> str:
        return str(self.settings.get("secretKey", "nx-secret"))

    @property
    def batch_size(self) -> int:
        return int(self.settings.get("batchSize", 500))

    def reset(self) -> None:
        """Forget every task, order, call, push, queued answer, fault and journal entry (tests)."""
        super().reset()
        with self.lock:
            self.tasks.clear()
            self.orders.clear()
            self.calls.clear()
            self.callbacks.clear()
            self._busy_until.clear()
            self.tamper_responses = False

    def register(self) -> None:
        self.route("POST", PREFIX + r"(?P<op>\w+)", self._api)

    # ---------------------------------------------------------------- envelope
    def _reply(self, req_headers: dict[str, str], body: dict[str, Any]) -> Reply:
        body.setdefault("retMsg", "success" if body.get("retCode", 0) == 0 else "error")
        body.setdefault("responseID", uuid.uuid4().hex)
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        headers: dict[str, str] = {}
        if self.settings.get("signResponses", True):
            algorithm = (req_headers.get("algorithm") or "MD5").upper()
            if algorithm not in ("MD5", "SHA256"):
                algorithm = "MD5"
            create_ts = str(int(time.time()))
            request_id = req_headers.get("requestid", "")
            sign = _sign(self.secret, text, create_ts, request_id, self.app_key, algorithm)
            if self.tamper_responses:
                sign = ("0" if sign[0] != "0" else "1") + sign[1:]
            headers = {
                "requestID": request_id,
                "uuid": self.app_key,
                "createTs": create_ts,
                "sign": sign,
                "algorithm": algorithm,
            }
        return Reply(200, raw=text.encode(), headers=headers)

    def _err(self, h: dict[str, str], code: int, msg: str) -> Reply:
        return self._reply(h, {"retCode": code, "retMsg": msg})

    def _api(self, req: SimRequest, match: re.Match[str]) -> Reply:
        h = {k.lower(): v for k, v in req.headers.items()}
        op = match.group("op")
        raw = req.body
        if h.get("content-encoding", "").lower() == "gzip":
            try:
                raw = gzip.decompress(raw)
            except OSError:
                return self._err(h, 3, "body is not valid gzip")
        text = raw.decode("utf-8", "replace")
        for name in ("uuid", "requestid", "createts"):
            if not h.get(name):
                return self._err(h, 2, f"header {name} missing")
        if not h.get("sign"):
            return self._err(h, 6001, "sign missing")
        if h["uuid"] != self.app_key:
            return self._err(h, 6002, "account does not exist")
        algorithm = (h.get("algorithm") or "MD5").upper()
        if algorithm not in ("MD5", "SHA256"):
            return self._err(h, 3, f"unknown algorithm {algorithm}")
        expected = _sign(self.secret, text, h["createts"], h["requestid"], h["uuid"], algorithm)
        if expected != h["sign"].upper():
            return self._err(h, 6, "sign incorrect")
        try:
            body = json.loads(text)
        except ValueError:
            return self._err(h, 3, "body is not JSON")
        if op == "ping":
            return self._reply(h, {"retCode": 0})
        if body.get("productID") != "callbot":
            return self._err(h, 4 if "productID" in body else 2, "productID must be callbot")
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            return self._err(h, 1, f"unknown operation {op}")
        with self.lock:
            answer = handler(body)
        return self._reply(h, answer)

    # ---------------------------------------------------------------- operations
    def _task(self, body: dict[str, Any]) -> dict[str, Any]:
        tid = body.get("userTaskID")
        if not tid:
            return {"retCode": 2, "retMsg": "userTaskID missing"}
        task = self.tasks.get(str(tid))
        if task is None:
            return {"retCode": 4, "retMsg": f"task {tid} not found"}
        return task

    def _op_createTask(self, body: dict[str, Any]) -> dict[str, Any]:
        tid = body.get("userTaskID")
        if not tid:
            return {"retCode": 2, "retMsg": "userTaskID missing"}
        if not body.get("taskName"):
            return {"retCode": 2, "retMsg": "taskName missing"}
        if tid in self.tasks:
            return {"retCode": 4, "retMsg": "userTaskID already exists"}
        self.tasks[tid] = {
            "userTaskID": tid,
            "taskID": uuid.uuid4().hex[:16],
            "status": 1,
            "config": body,
            "orders": [],
            "phones": set(),
        }
        return {"retCode": 0, "taskID": self.tasks[tid]["taskID"]}

    def _op_updateTask(self, body: dict[str, Any]) -> dict[str, Any]:
        task = self._task(body)
        if "retCode" in task:
            return task
        if task["status"] not in (1, 5):
            return {"retCode": 4, "retMsg": "only a paused or not started task can be updated"}
        task["config"].update({k: v for k, v in body.items() if k not in ("productID", "userTaskID")})
        return {"retCode": 0}

    def _op_mgrTaskStatus(self, body: dict[str, Any]) -> dict[str, Any]:
        task = self._task(body)
        if "retCode" in task:
            return task
        operate = body.get("taskOperate")
        if operate not in (1, 2, 3):
            return {"retCode": 4, "retMsg": "taskOperate must be 1, 2 or 3"}
        status = task["status"]
        if status in (3, 4):
            return {"retCode": 4, "retMsg": "task already finished"}
        if operate == 1:
            if status == 2:
                return {"retCode": 4, "retMsg": "task already running"}
            self._set_status(task, 2)
            self._dial_pending(task)
        elif operate == 2:
            if status != 2:
                return {"retCode": 4, "retMsg": "only a running task can be paused"}
            self._set_status(task, 5)
        else:
            self._set_status(task, 3)
        return {"retCode": 0}

    def _import(self, body: dict[str, Any], busy: bool) -> dict[str, Any]:
        task = self._task(body)
        if "retCode" in task:
            return task
        tid = task["userTaskID"]
        if busy and self._busy_until.get(tid, 0) > time.monotonic():
            return {"retCode": 1001, "retMsg": "批次导入进行中,不可导入导出"}
        info = body.get("callInfoList")
        if not isinstance(info, dict) or not isinstance(info.get("callList"), list):
            return {"retCode": 2, "retMsg": "callInfoList.callList missing"}
        calls = info["callList"]
        if len(calls) > self.batch_size:
            return {"retCode": 4001, "retMsg": f"callList holds more than {self.batch_size} numbers"}
        if task["status"] in (3, 4):
            return {"retCode": 4, "retMsg": "task already finished"}
        errs = []
        for entry in calls:
            phone = str(entry.get("userPhone", ""))
            order_id = str(entry.get("orderID", ""))
            if not order_id:
                errs.append({"phone": phone, "errMsg": "orderID missing"})
            elif not phone.isdigit() or not 7 <= len(phone) <= 15:
                errs.append({"phone": phone, "errMsg": "号码格式错误 invalid phone"})
            elif phone in task["phones"] or order_id in self.orders:
                errs.append({"phone": phone, "errMsg": "号码重复 duplicate phone"})
            else:
                task["phones"].add(phone)
                order = {
                    "orderID": order_id,
                    "userPhone": phone,
                    "userTaskID": tid,
                    "status": 1,
                    "calls": 0,
                    "callCallbackUrl": info.get("callCallbackUrl"),
                    "orderCallbackUrl": info.get("orderCallbackUrl"),
                }
                self.orders[order_id] = order
                task["orders"].append(order_id)
        if busy:
            self._busy_until[tid] = time.monotonic() + float(self.settings.get("importBusySeconds", 0.0))
        if task["status"] == 2:
            self._dial_pending(task)
        return {"retCode": 0, "totalCount": len(calls), "successCount": len(calls) - len(errs), "errList": errs}

    def _op_importBatchCall(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._import(body, busy=True)

    def _op_addBatchCall(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._import(body, busy=False)

    def _op_exportBatchCall(self, body: dict[str, Any]) -> dict[str, Any]:
        task = self._task(body)
        if "retCode" in task:
            return task
        if self._busy_until.get(task["userTaskID"], 0) > time.monotonic():
            return {"retCode": 1001, "retMsg": "批次导入进行中,不可导入导出"}
        rows = [{k: v for k, v in self.orders[o].items() if not k.endswith("Url")} for o in task["orders"]]
        return {"retCode": 0, "data": rows}

    def _op_stopOrder(self, body: dict[str, Any]) -> dict[str, Any]:
        ids = body.get("orderIDs")
        if not isinstance(ids, list) or not ids:
            return {"retCode": 2, "retMsg": "orderIDs missing"}
        if len(ids) > 500:
            return {"retCode": 4001, "retMsg": "at most 500 orderIDs"}
        stopped = 0
        for oid in ids:
            order = self.orders.get(str(oid))
            if order and order["status"] in (1, 2):
                order["status"] = 4
                stopped += 1
        return {"retCode": 0, "successCount": stopped}

    def _op_listTask(self, body: dict[str, Any]) -> dict[str, Any]:
        rows = [
            {
                "userTaskID": t["userTaskID"],
                "taskID": t["taskID"],
                "taskStatus": t["status"],
                "taskName": t["config"].get("taskName"),
            }
            for t in self.tasks.values()
        ]
        return {"retCode": 0, "total": len(rows), "data": rows}

    def _op_listCall(self, body: dict[str, Any]) -> dict[str, Any]:
        page = int(body.get("pageNum") or 1)
        size = min(int(body.get("pageSize") or 100), 500)
        rows = self.calls
        if body.get("userTaskID"):
            rows = [r for r in rows if r["userTaskID"] == body["userTaskID"]]
        return {"retCode": 0, "total": len(rows), "data": rows[(page - 1) * size : page * size]}

    def _op_listOrder(self, body: dict[str, Any]) -> dict[str, Any]:
        rows = [{k: v for k, v in o.items() if not k.endswith("Url")} for o in self.orders.values()]
        return {"retCode": 0, "total": len(rows), "data": rows}

    # ---------------------------------------------------------------- virtual dialing
    def _set_status(self, task: dict[str, Any], status: int) -> None:
        task["status"] = status
        stat = {
            "total": len(task["orders"]),
            "finished": sum(1 for o in task["orders"] if self.orders[o]["status"] in (3, 4)),
        }
        payload = {
            "userTaskID": task["userTaskID"],
            "taskID": task["taskID"],
            "taskStatus": status,
            "taskStat": stat,
            "ts": int(time.time()),
        }
        url = task["config"].get("taskCallbackUrl") or self._default_url("task")
        self.later(0.01, lambda: self.push("task", url, payload))

    def _default_url(self, kind: str) -> str:
        base = str(self.webhook_url or "").rstrip("/")
        return f"{base}/{kind}" if base else ""

    def _dial_pending(self, task: dict[str, Any]) -> None:
        for oid in task["orders"]:
            order = self.orders[oid]
            if order["status"] == 1:
                order["status"] = 2
                delay = self.dialing.ring_seconds + self.rng().random() * 0.05
                self.later(delay, partial(self._finish_call, order))

    def _finish_call(self, order: dict[str, Any]) -> None:
        with self.lock:
            task = self.tasks.get(order["userTaskID"])
            if task is None or order["status"] != 2:
                return
            if task["status"] != 2:  # paused or completed meanwhile: dialled again on start
                order["status"] = 1
                return
            result = self.outcome()
            now = int(time.time())
            talk = round(self.dialing.talk_seconds) if result == "answered" else 0
            order["calls"] += 1
            detail = {
                "callID": uuid.uuid4().hex,
                "callStatus": {"answered": 1, "no-answer": 2, "busy": 3}[result],
                "callStartTs": now,
                "callAnswerTs": now if result == "answered" else 0,
                "callEndTs": now + talk,
                "callDuration": talk,
                "callTimes": order["calls"],
                "hangupCause": {"answered": "NORMAL_CLEARING", "no-answer": "NO_ANSWER", "busy": "USER_BUSY"}[result],
                "intents": [{"intentName": "A"}] if result == "answered" else [],
            }
            call = {
                "orderID": order["orderID"],
                "userPhone": order["userPhone"],
                "userTaskID": task["userTaskID"],
                "taskID": task["taskID"],
                "callInfoDetail": detail,
            }
            self.calls.append(call)
            order["status"] = 3
            order_payload = {**call, "orderStatus": 3, "callTimes": order["calls"], "orderEndTs": now + talk}
            done = all(self.orders[o]["status"] in (3, 4) for o in task["orders"])
            call_url = order.get("callCallbackUrl") or self._default_url("call")
            order_url = order.get("orderCallbackUrl") or self._default_url("order")
        self.push("call", call_url, call)
        self.push("order", order_url, order_payload)
        if done:
            with self.lock:
                if task["status"] == 2:
                    self._set_status(task, 3)

    def signed_push(self, payload: Any, algorithm: str = "MD5") -> tuple[bytes, dict[str, str]]:
        """A callback body and its signed headers, as NXCLOUD sends them."""
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        create_ts = str(int(time.time()))
        request_id = uuid.uuid4().hex
        headers = {
            "Content-Type": "application/json;charset=utf-8",
            "uuid": self.app_key,
            "requestID": request_id,
            "createTs": create_ts,
            "algorithm": algorithm,
            "sign": _sign(self.secret, text, create_ts, request_id, self.app_key, algorithm),
        }
        return text.encode(), headers

    def push(self, kind: str, url: str | None, payload: dict[str, Any]) -> None:
        if not url:
            return
        body, headers = self.signed_push(payload, str(self.settings.get("algorithm", "MD5")).upper())
        status = self.post_webhook(url, body, headers)
        with self._cb_lock:
            self.callbacks.append({"kind": kind, "url": url, "status": status, "body": payload})


SIMULATOR = NxcloudSimulator

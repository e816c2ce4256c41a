"""NXCLOUD Callbot v3 simulator, written from the wiki pages (nxtele/http-api-document, Callbot-API-*)
and the seed (importBatchCall), not from outcall's module.

What it holds to the documents:
- every request is `POST /callcentre/api/v3/<op>` signed as Callbot-API-authorization says:
  headers requestID, uuid, createTs, sign (algorithm optional, MD5 when absent); a missing sign is
  retCode 6001, another missing header 2, an unknown uuid 6002, a wrong sign 6, an algorithm other
  than MD5/SHA256 3; a gzip body (Content-Encoding: gzip) is unpacked first;
- answers are signed the same way, with the request's algorithm (response-header tables);
- `productID` must be "callbot"; a missing required field is retCode 2, a wrong type or an unknown
  field 3, a wrong value 4, too many array elements 4001 (the seed's response-code table);
- ping takes `{"data"}` and answers `{data, timestamp, code, msg, reqId}`;
- createTask needs userTaskID and sceneID, settings only inside taskCreateSetting / funcFlag;
  updateTask takes only taskCreateSetting and funcFlag, on a pending or paused task;
- addBatchCall / importBatchCall take callInfoList{orderCallbackUrl, callCallbackUrl, callList[...]}
  with every documented field of an entry; orderID is unique across the account; importBatchCall
  answers 1001 while the task's previous import is still running (setting importBusySeconds);
- stopOrder, listTask (taskData), listCall, listOrderDetail (at most 500 orders);
- dialling: a running task dials its pending orders, also those added while it runs; with
  funcFlag.roundRedial an unanswered order gets up to `redialRounds` more rounds; each call is pushed
  to callCallbackUrl, each finished order to orderCallbackUrl, task status changes to
  taskCreateSetting.taskCallbackUrl (or the top-level taskCallbackUrl). Callbacks carry requestID,
  uuid, createTs and sign and no algorithm header: they are signed with the account's algorithm
  (setting `algorithm`, MD5 by default), whatever the requests used.

*Not in the public pages* and chosen here: the enumeration of callStatus (1 answered, 2 not answered)
and of callbackType (1), the answer of listCall (`callList` rows and `totalCount`, the names
exportBatchCall answers), the retCode of an updateTask on a running task (4), the batch limit
(setting batchSize, default 500).

Settings: appKey, secretKey, algorithm, batchSize, importBusySeconds (0.0), redialRounds (1),
signResponses (true), recordingBase ("https://rec.nxcloud.sim").
Test hooks: `answer_next(Reply)`, `tamper_responses`.
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
ENTRY_FIELDS = ("orderID", "userPhone", "other", "userName", "customerName", "params")
TOP_CREATE = {
    "account",
    "productID",
    "userTaskID",
    "sceneID",
    "taskCreateSetting",
    "funcFlag",
    "other",
    "taskCallbackUrl",
    "orderCallbackUrl",
}
SETTING_TYPES: dict[str, type | tuple[type, ...]] = {
    "strategyName": str,
    "startupType": int,
    "startupAt": int,
    "zoneSecond": int,
    "dialAtWeekDay": str,
    "dialAtUpHour": str,
    "dialAtDownHour": str,
    "maxCall": int,
    "taskName": str,
    "taskCallbackUrl": str,
    "maxRingTime": int,
    "routeID": str,
    "manualCallSetting": dict,
}
FLAG_TYPES: dict[str, type | tuple[type, ...]] = {
    "taskKeep": bool,
    "roundRedial": bool,
    "wholeTTS": bool,
    "smsEnable": bool,
    "smsFuncFlag": list,
    "phoneEncrypt": bool,
}
OUTCOMES = {
    "answered": {"callStatus": 1, "hangupCause": "NORMAL_CLEARING", "termSipCode": "200"},
    "busy": {"callStatus": 2, "hangupCause": "USER_BUSY", "termSipCode": "486"},
    "no-answer": {"callStatus": 2, "hangupCause": "NO_ANSWER", "termSipCode": "480"},
}


def sign_of(secret: str, body: str, create_ts: str, request_id: str, account: str, algorithm: str) -> str:
    raw = f"{secret}&body={body}&createTs={create_ts}&requestID={request_id}&uuid={account}"
    if algorithm == "SHA256":
        return hashlib.sha256(raw.encode()).hexdigest().upper()
    return hashlib.md5(raw.encode(), usedforsecurity=False).hexdigest().upper()


class Refused(Exception):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


def _typed(obj: Any, types: dict[str, type | tuple[type, ...]], where: str) -> None:
    if not isinstance(obj, dict):
        raise Refused(3, f"{where} must be an object")
    for name, value in obj.items():
        if name not in types:
            raise Refused(3, f"{where}.{name} is not a field of {where}")
        wanted = types[name]
        if value is not None and (not isinstance(value, wanted) or (wanted is int and isinstance(value, bool))):
            raise Refused(3, f"{where}.{name} has the wrong type")


class NxcloudSimulator(Simulator):
    key = "nxcloud"

    def __init__(self, port: int = 0, settings: dict[str, Any] | None = None) -> None:
        self.tasks: dict[str, dict[str, Any]] = {}
        self.orders: dict[str, dict[str, Any]] = {}
        self.calls: list[dict[str, Any]] = []  # every call placed: {"userTaskID", "orderID", ..., callInfoDetail}
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
    def account_algorithm(self) -> str:
        return str(self.settings.get("algorithm", "MD5")).upper()

    def reset(self) -> None:
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
    def _signed(self, h: dict[str, str], body: dict[str, Any]) -> Reply:
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        headers: dict[str, str] = {}
        if self.settings.get("signResponses", True):
            algorithm = (h.get("algorithm") or "MD5").upper()
            algorithm = algorithm if algorithm in ("MD5", "SHA256") else "MD5"
            create_ts = str(int(time.time()))
            request_id = h.get("requestid", "")
            sign = sign_of(self.secret, text, create_ts, request_id, self.app_key, algorithm)
            if self.tamper_responses:
                sign = ("0" if sign[0] != "0" else "1") + sign[1:]
            headers = {"requestID": request_id, "uuid": self.app_key, "createTs": create_ts, "sign": sign}
            if h.get("algorithm"):
                headers["algorithm"] = algorithm
        return Reply(200, raw=text.encode(), headers=headers)

    def _answer(self, h: dict[str, str], op: str, code: int, msg: str, extra: dict[str, Any] | None = None) -> Reply:
        if op == "ping":
            body = {"data": (extra or {}).get("data", ""), "timestamp": int(time.time()), "code": code}
            return self._signed(h, {**body, "msg": msg, "reqId": uuid.uuid4().hex})
        return self._signed(h, {"retCode": code, "retMsg": msg, "responseID": uuid.uuid4().hex, **(extra or {})})

    def _api(self, req: SimRequest, match: re.Match[str]) -> Reply:
        h = {k.lower(): v for k, v in req.headers.items()}
        op = match.group("op")
        raw = req.body
        if h.get("content-encoding", "").lower() == "gzip":
            try:
                raw = gzip.decompress(raw)
            except OSError:
                return self._answer(h, op, 3, "body is not valid gzip")
        text = raw.decode("utf-8", "replace")
        if not h.get("sign"):
            return self._answer(h, op, 6001, "签名错误丢失 sign missing")
        for name in ("uuid", "requestid", "createts"):
            if not h.get(name):
                return self._answer(h, op, 2, f"参数丢失 header {name} missing")
        if h["uuid"] != self.app_key:
            return self._answer(h, op, 6002, "账号不存在 account does not exist")
        algorithm = (h.get("algorithm") or "MD5").upper()
        if algorithm not in ("MD5", "SHA256"):
            return self._answer(h, op, 3, f"algorithm must be MD5 or SHA256, not {algorithm}")
        expected = sign_of(self.secret, text, h["createts"], h["requestid"], h["uuid"], algorithm)
        if expected != h["sign"].upper():
            return self._answer(h, op, 6, "签名不正确 sign incorrect")
        try:
            body = json.loads(text)
        except ValueError:
            return self._answer(h, op, 3, "body is not JSON")
        if not isinstance(body, dict):
            return self._answer(h, op, 3, "body must be an object")
        if op == "ping":
            if not isinstance(body.get("data"), str):
                return self._answer(h, op, 2, "data missing")
            return self._answer(h, op, 0, "success", {"data": body["data"]})
        if "productID" not in body:
            return self._answer(h, op, 2, "productID missing")
        if body["productID"] != "callbot":
            return self._answer(h, op, 4, 'productID must be "callbot"')
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            return self._answer(h, op, 1, f"unknown operation {op}")
        try:
            with self.lock:
                extra = handler(body)
        except Refused as exc:
            return self._answer(h, op, exc.code, exc.msg)
        return self._answer(h, op, 0, "success", extra)

    # ---------------------------------------------------------------- operations
    def _task(self, body: dict[str, Any]) -> dict[str, Any]:
        tid = body.get("userTaskID")
        if not tid:
            raise Refused(2, "userTaskID missing")
        task = self.tasks.get(str(tid))
        if task is None:
            raise Refused(4, f"task {tid} does not exist")
        return task

    def _op_createTask(self, body: dict[str, Any]) -> dict[str, Any]:
        unknown = set(body) - TOP_CREATE
        if unknown:
            raise Refused(3, f"not fields of createTask: {sorted(unknown)}")
        for name in ("userTaskID", "sceneID"):
            if not body.get(name):
                raise Refused(2, f"{name} missing")
        _typed(body.get("taskCreateSetting") or {}, SETTING_TYPES, "taskCreateSetting")
        _typed(body.get("funcFlag") or {}, FLAG_TYPES, "funcFlag")
        tid = str(body["userTaskID"])
        if tid in self.tasks:
            raise Refused(4, "userTaskID already exists")
        self.tasks[tid] = {
            "userTaskID": tid,
            "taskID": uuid.uuid4().hex[:16],
            "sceneID": str(body["sceneID"]),
            "status": 1,
            "createTs": int(time.time()),
            "setting": dict(body.get("taskCreateSetting") or {}),
            "funcFlag": dict(body.get("funcFlag") or {}),
            "taskCallbackUrl": body.get("taskCallbackUrl"),
            "orders": [],
        }
        return {}

    def _op_updateTask(self, body: dict[str, Any]) -> dict[str, Any]:
        unknown = set(body) - {"productID", "userTaskID", "sceneID", "taskCreateSetting", "funcFlag"}
        if unknown:
            raise Refused(3, f"updateTask changes only taskCreateSetting and funcFlag, not {sorted(unknown)}")
        task = self._task(body)
        _typed(body.get("taskCreateSetting") or {}, SETTING_TYPES, "taskCreateSetting")
        _typed(body.get("funcFlag") or {}, FLAG_TYPES, "funcFlag")
        if task["status"] not in (1, 5):
            raise Refused(4, "only a paused or not started task can be updated")
        task["setting"].update(body.get("taskCreateSetting") or {})
        task["funcFlag"].update(body.get("funcFlag") or {})
        return {}

    def _op_mgrTaskStatus(self, body: dict[str, Any]) -> dict[str, Any]:
        task = self._task(body)
        operate = body.get("taskOperate")
        if operate is None:
            raise Refused(2, "taskOperate missing")
        if operate not in (1, 2, 3):
            raise Refused(4, "taskOperate must be 1, 2 or 3")
        status = task["status"]
        if status in (3, 4):
            raise Refused(4, "task already finished")
        if operate == 1:
            if status == 2:
                raise Refused(4, "task already running")
            self._set_status(task, 2)
            self._dial_pending(task)
        elif operate == 2:
            if status != 2:
                raise Refused(4, "only a running task can be paused")
            self._set_status(task, 5)
        else:
            self._set_status(task, 3)
        return {"taskID": task["taskID"], "taskStatus": task["status"]}

    def _add(self, body: dict[str, Any], importing: bool) -> dict[str, Any]:
        task = self._task(body)
        tid = task["userTaskID"]
        if importing and self._busy_until.get(tid, 0) > time.monotonic():
            raise Refused(1001, "批次导入进行中,不可导入导出")
        info = body.get("callInfoList")
        if not isinstance(info, dict):
            raise Refused(2, "callInfoList missing")
        for name in ("orderCallbackUrl", "callCallbackUrl", "callList"):
            if name not in info:
                raise Refused(2, f"callInfoList.{name} missing")
        calls = info["callList"]
        if not isinstance(calls, list):
            raise Refused(3, "callInfoList.callList must be an array")
        if len(calls) > int(self.settings.get("batchSize", 500)):
            raise Refused(4001, "参数内容容量错误(数组元素过多)")
        for entry in calls:
            missing = [f for f in ENTRY_FIELDS if not isinstance(entry, dict) or f not in entry]
            if missing:
                raise Refused(2, f"callList entry misses {missing}")
            if not isinstance(entry["params"], list):
                raise Refused(3, "params must be an array")
        if task["status"] in (3, 4):
            raise Refused(4, "task already finished")
        errs = []
        for entry in calls:
            phone, order_id = str(entry["userPhone"]), str(entry["orderID"])
            if not phone.isdigit() or not 7 <= len(phone) <= 15:
                errs.append({"phone": phone, "errMsg": "号码格式错误 userPhone must be digits with the country code"})
            elif not order_id or order_id in self.orders:
                errs.append({"phone": phone, "errMsg": "orderID 重复 orderID already used"})
            else:
                self.orders[order_id] = {
                    "orderID": order_id,
                    "userPhone": phone,
                    "userName": entry["userName"],
                    "other": entry["other"],
                    "userTaskID": tid,
                    "state": "pending",
                    "finish": False,
                    "calls": [],
                    "callCallbackUrl": info["callCallbackUrl"],
                    "orderCallbackUrl": info["orderCallbackUrl"],
                }
                task["orders"].append(order_id)
        if importing:
            self._busy_until[tid] = time.monotonic() + float(self.settings.get("importBusySeconds", 0.0))
        if task["status"] == 2:
            self._dial_pending(task)
        return {"totalCount": len(calls), "successCount": len(calls) - len(errs), "errList": errs}

    def _op_importBatchCall(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._add(body, importing=True)

    def _op_addBatchCall(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._add(body, importing=False)

    def _op_stopOrder(self, body: dict[str, Any]) -> dict[str, Any]:
        task = self._task(body)
        ids = body.get("orderIDs")
        if ids is None:
            raise Refused(2, "orderIDs missing")
        if not isinstance(ids, list):
            raise Refused(3, "orderIDs must be an array")
        errs = []
        for oid in ids:
            order = self.orders.get(str(oid))
            if order is None or order["userTaskID"] != task["userTaskID"]:
                errs.append({"orderID": oid, "errMsg": "order does not exist"})
            elif order["state"] != "pending":
                errs.append({"orderID": oid, "errMsg": f"order already {order['state']}"})
            else:
                order["state"] = "stopped"
                order["finish"] = True
        return {"totalCount": len(ids), "successCount": len(ids) - len(errs), "errList": errs}

    def _page(self, body: dict[str, Any]) -> tuple[int, int]:
        for name in ("page", "size"):
            if name not in body:
                raise Refused(2, f"{name} missing")
            if not isinstance(body[name], int) or body[name] < 1:
                raise Refused(3, f"{name} must be a positive integer")
        return int(body["page"]), int(body["size"])

    def _op_listTask(self, body: dict[str, Any]) -> dict[str, Any]:
        page, size = self._page(body)
        cond = body.get("queryConditions")
        if not isinstance(cond, dict):
            raise Refused(2, "queryConditions missing")
        rows = list(self.tasks.values())
        if cond.get("taskStatus"):
            rows = [t for t in rows if t["status"] in cond["taskStatus"]]
        if cond.get("userTaskID"):
            rows = [t for t in rows if t["userTaskID"] in cond["userTaskID"]]
        if cond.get("startTs"):
            rows = [t for t in rows if t["createTs"] >= int(cond["startTs"])]
        if cond.get("endTs"):
            rows = [t for t in rows if t["createTs"] <= int(cond["endTs"])]
        data = [
            {"userTaskID": t["userTaskID"], "taskID": t["taskID"], "sceneID": t["sceneID"], "taskStatus": t["status"]}
            for t in rows[(page - 1) * size : page * size]
        ]
        return {"taskData": data}

    def _op_listCall(self, body: dict[str, Any]) -> dict[str, Any]:
        task = self._task(body)
        page, size = self._page(body)
        options = body.get("options")
        if not isinstance(options, dict):
            raise Refused(2, "options missing")
        rows = [c for c in self.calls if c["userTaskID"] == task["userTaskID"]]
        if options.get("callStatus"):
            rows = [c for c in rows if c["callInfoDetail"]["callStatus"] in options["callStatus"]]
        if options.get("startTs"):
            rows = [c for c in rows if c["callInfoDetail"]["callStartTs"] >= int(options["startTs"])]
        if options.get("endTs"):
            rows = [c for c in rows if c["callInfoDetail"]["callStartTs"] <= int(options["endTs"])]
        return {"totalCount": len(rows), "callList": rows[(page - 1) * size : page * size]}

    def _op_listOrderDetail(self, body: dict[str, Any]) -> dict[str, Any]:
        task = self._task(body)
        ids = body.get("orderList")
        if ids is None:
            raise Refused(2, "orderList missing")
        if not isinstance(ids, list):
            raise Refused(3, "orderList must be an array")
        if len(ids) > 500:
            raise Refused(4001, "orderList holds at most 500 orders")
        out = []
        for oid in ids:
            order = self.orders.get(str(oid))
            if order is None or order["userTaskID"] != task["userTaskID"]:
                continue
            out.append({**self._order_fields(task, order), "callInfoDetailList": list(order["calls"])})
        return {"orderDetailList": out}

    # ---------------------------------------------------------------- virtual dialing and callbacks
    def _order_fields(self, task: dict[str, Any], order: dict[str, Any]) -> dict[str, Any]:
        return {
            "orderID": order["orderID"],
            "userPhone": order["userPhone"],
            "userName": order["userName"],
            "sceneID": task["sceneID"],
            "userTaskID": task["userTaskID"],
            "taskID": task["taskID"],
            "finish": order["finish"],
            "other": order["other"],
        }

    def _stat(self, task: dict[str, Any]) -> dict[str, Any]:
        orders = [self.orders[o] for o in task["orders"] if o in self.orders]
        calls = [c for o in orders for c in o["calls"]]
        answered_orders = sum(1 for o in orders if any(c["callAnswerTs"] for c in o["calls"]))
        finished = sum(1 for o in orders if o["finish"])
        answered_calls = sum(1 for c in calls if c["callAnswerTs"])
        return {
            "answerOrderCount": answered_orders,
            "finishOrderCount": finished,
            "totalOrderCount": len(orders),
            "finishRate": round(finished / len(orders), 2) if orders else 0,
            "totalAnswerCall": answered_calls,
            "totalCall": len(calls),
            "answerRate": round(answered_calls / len(calls), 2) if calls else 0,
        }

    def _set_status(self, task: dict[str, Any], status: int) -> None:
        task["status"] = status
        payload = {
            "callbackType": 1,
            "userTaskID": task["userTaskID"],
            "taskID": task["taskID"],
            "sceneID": task["sceneID"],
            "taskStatus": status,
            "createTs": task["createTs"],
            "taskStat": self._stat(task),
        }
        url = task["setting"].get("taskCallbackUrl") or task.get("taskCallbackUrl")
        self.later(0.01, lambda: self.push("task", url, payload))

    def _dial_pending(self, task: dict[str, Any]) -> None:
        for oid in task["orders"]:
            order = self.orders[oid]
            if order["state"] == "pending":
                order["state"] = "calling"
                self.later(self.dialing.ring_seconds + self.rng().random() * 0.05, partial(self._round, order))

    def _round(self, order: dict[str, Any]) -> None:
        with self.lock:
            task = self.tasks.get(order["userTaskID"])
            if task is None or self.orders.get(order["orderID"]) is not order or order["state"] != "calling":
                return
            if task["status"] != 2:  # paused or completed meanwhile: dialled when it runs again
                order["state"] = "pending"
                return
            result = self.outcome()
            now = int(time.time())
            talk = max(1, round(self.dialing.talk_seconds)) if result == "answered" else 0
            call_id = uuid.uuid4().hex
            detail = {
                "callID": call_id,
                "callingNumber": str(self.settings.get("callingNumber", "8675512345678")),
                "lineAddress": "sim",
                "callStatus": OUTCOMES[result]["callStatus"],
                "callStartTs": now,
                "callAnswerTs": now if result == "answered" else 0,
                "callEndTs": now + talk,
                "callDuration": talk,
                "callAudioUrl": f"{self.settings.get('recordingBase', 'https://rec.nxcloud.sim')}/{call_id}.mp3"
                if result == "answered"
                else "",
                "hangupCause": OUTCOMES[result]["hangupCause"],
                "termSipCode": OUTCOMES[result]["termSipCode"],
                "intents": [{"intentID": "i-a", "intentTag": "A", "intentName": "A", "intentLevel": 1}]
                if result == "answered"
                else [],
                "sms": [],
                "agent": {},
                "params": [],
            }
            order["calls"].append(detail)
            rounds = 1 + (int(self.settings.get("redialRounds", 1)) if task["funcFlag"].get("roundRedial") else 0)
            order["finish"] = result == "answered" or len(order["calls"]) >= rounds
            order["state"] = "done" if order["finish"] else "calling"
            call = {"callbackType": 1, **self._order_fields(task, order), "callInfoDetail": detail}
            self.calls.append(call)
            order_push = {**call, "callbackType": "1"} if order["finish"] else None
            done = all(self.orders[o]["finish"] for o in task["orders"] if o in self.orders)
            if not order["finish"]:
                self.later(self.dialing.ring_seconds, partial(self._round, order))
        self.push("call", order["callCallbackUrl"], call)
        if order_push:
            self.push("order", order["orderCallbackUrl"], order_push)
        if done and not task["funcFlag"].get("taskKeep"):  # a kept task waits for more orders
            with self.lock:
                if task["status"] == 2:
                    self._set_status(task, 3)

    def signed_push(self, payload: Any, algorithm: str | None = None) -> tuple[bytes, dict[str, str]]:
        """A callback body and its headers as NXCLOUD sends them: requestID, uuid, createTs, sign, and
        no algorithm header (the account's algorithm signs it)."""
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        create_ts = str(int(time.time()))
        request_id = uuid.uuid4().hex
        algo = (algorithm or self.account_algorithm).upper()
        headers = {
            "Content-Type": "application/json;charset=utf-8",
            "uuid": self.app_key,
            "requestID": request_id,
            "createTs": create_ts,
            "sign": sign_of(self.secret, text, create_ts, request_id, self.app_key, algo),
        }
        return text.encode(), headers

    def push(self, kind: str, url: str | None, payload: dict[str, Any]) -> None:
        if not url:
            return
        body, headers = self.signed_push(payload)
        status = self.post_webhook(url, body, headers)
        with self._cb_lock:
            self.callbacks.append({"kind": kind, "url": url, "status": status, "body": payload})


SIMULATOR = NxcloudSimulator

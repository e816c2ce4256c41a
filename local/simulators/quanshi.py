"""Quanshi live-event dial-out simulator, written from seeds/quanshi-event-call-add.txt (event/call/add:
body `token`, `eventId` Long, `beforeMinutes` Int 0-60 default 30, `callList` of {name, company,
countryCode (digits, no + or 00), mobile, or areaCode (mainland China, no leading 0) + phone, role 0-3};
answer `{timeStamp, requestId, code, msg, data}` with `scheduledCall{successData, failedData}`,
`realTimeCall{failedData: name, company, countryCode, areaCode, number}`, `callType` 1 scheduled /
2 real time, `errorType` 1 bad number / 2 duplicate in failed rows only; the older event/call/create
answering `total_count, success_count, fail_count, fail_data, success_data`) and PROVIDERS.md (token
with headers AppKey / Nonce / CurTime (ms) / CheckSum answering `data.token`, valid 86400 s;
event/call/save replacing the list; event/info with `startTime` / `endTime` in seconds and `status`
0 cancelled / 1 created / 4 ended; lifecycle pushes meetingbegin / meetingend / update).

What no document settles is the simulator's, stated here: the CheckSum formula (setting `checksum`,
"sha1" default or "md5", of secret+nonce+curTime, as the module's default assumes), the codes of
refusals (40001 token unknown or expired, 400 a malformed body, 404 an unknown meeting; 200 is the
only documented code), the push body (`{event, eventId, timestamp, startTime, endTime, status}`) and
how a push proves itself (webhookSecret in the query or a header), the callee limit per call
(batchSize 100). A callee due (`startTime - beforeMinutes`) is dialled then; one added after the
start is dialled at once (callType 2).

Settings: appKey, appSecret, userId, checksum, webhookUrl, webhookSecret, webhookAuth ("query"/"header"),
webhookTokenParam, webhookHeader, batchSize (100), tokenTtlSeconds (86400), autoCreateEvents (true: an
unknown eventId is a meeting starting in autoEventStartSeconds, default 3600), answerShape
("camel"/"snake"). Test hooks: create_event(), begin(), end(), expire_tokens(), answer_next(Reply).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
import uuid
from functools import partial
from typing import Any
from urllib.parse import urlencode

import phonenumbers

from local.simulators.base import Reply, SimRequest, Simulator

P = "/eventopenapi/"


def _answer(code: int, msg: str, data: Any = None) -> Reply:
    return Reply(
        200,
        {"timeStamp": int(time.time() * 1000), "code": code, "msg": msg, "data": data, "requestId": uuid.uuid4().hex},
    )


class QuanshiSimulator(Simulator):
    key = "quanshi"

    def __init__(self, port: int = 0, settings: dict[str, Any] | None = None) -> None:
        self.tokens: dict[str, float] = {}
        self.events: dict[str, dict[str, Any]] = {}
        self.pushes: list[dict[str, Any]] = []
        super().__init__(port, settings)

    def register(self) -> None:
        self.route("POST", P + "token/create", self._token)
        self.route("POST", P + r"(?P<op>event/call/add|event/call/save|event/call/create|event/info)", self._api)

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.tokens.clear()
            self.events.clear()
            self.pushes.clear()

    def expire_tokens(self) -> None:
        with self.lock:
            for token in self.tokens:
                self.tokens[token] = 0.0

    # ---------------------------------------------------------------- meetings
    def create_event(
        self, event_id: int | str, start_in: float = 3600, duration: float = 3600, title: str = "meeting"
    ) -> dict[str, Any]:
        """A meeting starting `start_in` seconds from now (negative: already started)."""
        now = time.time()
        event = {
            "eventId": int(event_id),
            "title": title,
            "startTime": now + start_in,
            "endTime": now + start_in + duration,
            "status": 1,
            "callees": [],
            "begun": False,
        }
        with self.lock:
            self.events[str(event_id)] = event
        if start_in >= 0 and start_in < 60:
            self.later(start_in, lambda: self.begin(event_id))
        elif start_in < 0:
            event["begun"] = True
        return event

    def begin(self, event_id: int | str) -> None:
        with self.lock:
            event = self.events[str(event_id)]
            if event["begun"]:
                return
            event["begun"] = True
            event["startTime"] = min(event["startTime"], time.time())
            due = [c for c in event["callees"] if c["state"] == "scheduled"]
        for callee in due:
            self._dial(event, callee)
        self.push("meetingbegin", event)

    def end(self, event_id: int | str) -> None:
        with self.lock:
            event = self.events[str(event_id)]
            event["status"] = 4
            event["endTime"] = time.time()
        self.push("meetingend", event)

    # ---------------------------------------------------------------- auth
    def _checksum(self, nonce: str, cur_time: str) -> str:
        raw = f"{self.settings.get('appSecret', '')}{nonce}{cur_time}".encode()
        if self.settings.get("checksum", "sha1") == "md5":
            return hashlib.md5(raw, usedforsecurity=False).hexdigest()
        return hashlib.sha1(raw, usedforsecurity=False).hexdigest()

    def _token(self, req: SimRequest, _: re.Match[str]) -> Reply:
        h = {k.lower(): v for k, v in req.headers.items()}
        if h.get("appkey") != self.settings.get("appKey"):
            return _answer(401, "AppKey invalid")
        nonce, cur_time, checksum = h.get("nonce", ""), h.get("curtime", ""), h.get("checksum", "")
        if not nonce or not cur_time.isdigit() or abs(time.time() * 1000 - int(cur_time)) > 300_000:
            return _answer(401, "Nonce/CurTime invalid")
        if checksum.lower() != self._checksum(nonce, cur_time):
            return _answer(401, "CheckSum invalid")
        try:
            body = req.json() or {}
        except ValueError:
            return _answer(400, "body is not JSON")
        if self.settings.get("userId") and str(body.get("userId")) != str(self.settings["userId"]):
            return _answer(403, "userId is not an administrator of this app")
        token = secrets.token_hex(16)
        with self.lock:
            self.tokens[token] = time.time() + float(self.settings.get("tokenTtlSeconds", 86400))
        return _answer(200, "success", {"token": token})

    def _api(self, req: SimRequest, match: re.Match[str]) -> Reply:
        try:
            body = req.json() or {}
        except ValueError:
            return _answer(400, "body is not JSON")
        with self.lock:
            if self.tokens.get(str(body.get("token")), 0.0) <= time.time():
                return _answer(40001, "token invalid or expired")
            op = match.group("op")
            if "eventId" not in body:
                return _answer(400, "eventId is required")
            if isinstance(body["eventId"], bool) or not str(body["eventId"]).isdigit():
                return _answer(400, "eventId is a Long")
            event = self.events.get(str(body["eventId"]))
        if event is None:
            if not self.settings.get("autoCreateEvents", True):
                return _answer(404, "event not found")
            event = self.create_event(body["eventId"], float(self.settings.get("autoEventStartSeconds", 3600)))
        if op == "event/info":
            return _answer(
                200,
                "success",
                {
                    "eventId": event["eventId"],
                    "title": event["title"],
                    "startTime": int(event["startTime"]),
                    "endTime": int(event["endTime"]),
                    "status": event["status"],
                    "callList": [{k: v for k, v in c.items() if k != "entry"} for c in event["callees"]],
                },
            )
        return self._calls(event, body, replace=op == "event/call/save", snake=op == "event/call/create")

    # ---------------------------------------------------------------- callees
    def _calls(self, event: dict[str, Any], body: dict[str, Any], replace: bool, snake: bool) -> Reply:
        minutes = body.get("beforeMinutes", 30)
        if isinstance(minutes, bool) or not isinstance(minutes, int) or not 0 <= minutes <= 60:
            return _answer(400, "beforeMinutes must be 0-60")
        call_list = body.get("callList")
        if not isinstance(call_list, list) or not all(isinstance(e, dict) for e in call_list):
            return _answer(400, "callList is required")
        if any(e.get("role", 0) not in (0, 1, 2, 3) for e in call_list):
            return _answer(400, "role is 0 attendee, 1 speaker, 2 host or 3 guest")
        if len(call_list) > int(self.settings.get("batchSize", 100)):
            return _answer(400, f"callList holds more than {self.settings.get('batchSize', 100)} callees")
        if event["status"] != 1:
            return _answer(400, "event cancelled or ended")
        with self.lock:
            if replace:
                event["callees"] = []
            known = {c["number"] for c in event["callees"]}
            realtime = event["begun"] or time.time() >= event["startTime"]
            success, failed, to_dial = [], [], []
            for entry in call_list:
                cc = str(entry.get("countryCode") or "")
                mobile, area, phone = (
                    str(entry.get("mobile") or ""),
                    str(entry.get("areaCode") or ""),
                    str(entry.get("phone") or ""),
                )
                local = mobile or (area + phone if phone else "")
                row = {
                    "id": uuid.uuid4().hex[:24],
                    "name": entry.get("name", ""),
                    "company": entry.get("company", ""),
                    "countryCode": cc,
                    "mobile": mobile,
                    "areaCode": area,
                    "phone": phone,
                    "errorType": None,
                }
                error = None
                if not cc.isdigit() or not local.isdigit() or (area and cc != "86") or (area.startswith("0")):
                    error = 1
                else:
                    try:
                        parsed = phonenumbers.parse(f"+{cc}{local}")
                        if not phonenumbers.is_possible_number(parsed):
                            error = 1
                    except phonenumbers.NumberParseException:
                        error = 1
                number = f"{cc}{local}"
                if error is None and number in known:
                    error = 2
                if error is not None:
                    failed.append({**row, "errorType": error})
                    continue
                known.add(number)
                callee = {
                    "id": row["id"],
                    "number": number,
                    "state": "scheduled",
                    "result": None,
                    "role": entry.get("role", 0),
                    "due": event["startTime"] - minutes * 60,
                }
                event["callees"].append(callee)
                success.append(row)
                if realtime or callee["due"] <= time.time():
                    to_dial.append(callee)
                else:
                    self.later(max(0.0, callee["due"] - time.time()), partial(self._dial, event, callee))
        for callee in to_dial:
            self._dial(event, callee)
        if replace:
            self.push("update", event)
        if snake or self.settings.get("answerShape") == "snake":
            data: dict[str, Any] = {
                "total_count": len(call_list),
                "success_count": len(success),
                "fail_count": len(failed),
                "requestId": None,
                "fail_data": failed,
                "success_data": success,
            }
        elif realtime:
            data = {
                "scheduledCall": None,
                "callType": 2,
                "realTimeCall": {
                    "failedData": [
                        {
                            "name": f["name"],
                            "company": f["company"],
                            "countryCode": f["countryCode"],
                            "areaCode": f["areaCode"],
                            "number": f["mobile"] or f["phone"],
                        }
                        for f in failed
                    ]
                    or None
                },
            }
        else:
            data = {
                "scheduledCall": {"successData": success or None, "failedData": failed or None},
                "realTimeCall": None,
                "callType": 1,
            }
        return _answer(200, "Successfully to create the event call!", data)

    def _dial(self, event: dict[str, Any], callee: dict[str, Any]) -> None:
        with self.lock:
            if callee["state"] != "scheduled" or event["status"] != 1:
                return
            callee["state"] = "calling"
        self.later(self.dialing.ring_seconds, lambda: self._answered(callee))

    def _answered(self, callee: dict[str, Any]) -> None:
        with self.lock:
            callee["result"] = self.outcome()
            callee["state"] = "done"

    # ---------------------------------------------------------------- pushes
    def push(self, kind: str, event: dict[str, Any]) -> None:
        base = str(self.webhook_url or "").rstrip("/")
        if not base:
            return
        url = f"{base}/{kind}"
        headers = {"Content-Type": "application/json"}
        secret = self.settings.get("webhookSecret")
        if secret and self.settings.get("webhookAuth", "query") == "query":
            url += "?" + urlencode({self.settings.get("webhookTokenParam", "token"): secret})
        elif secret:
            headers[str(self.settings.get("webhookHeader", "X-Outcall-Token"))] = str(secret)
        payload = {
            "event": kind,
            "eventId": event["eventId"],
            "timestamp": int(time.time() * 1000),
            "startTime": int(event["startTime"]),
            "endTime": int(event["endTime"]),
            "status": event["status"],
        }
        status = self.post_webhook(url, json.dumps(payload).encode(), headers)
        with self.lock:
            self.pushes.append({"kind": kind, "url": url, "status": status, "body": payload})


SIMULATOR = QuanshiSimulator

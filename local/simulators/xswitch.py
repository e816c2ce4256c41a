"""XSwitch XUI simulator, written from the documents: docs.xswitch.cn/rest-api/api (获取 Token:
`POST /api/sessions` with `login` + `password` or `login` + `dev_key`, JSON or form body, answers
`{"code": 200, "token"}`, a refused login HTTP 403 `{code: 403, text: "Wrong username or password"}`,
5 failures lock token issue for 2 hours), docs.xswitch.cn/auth/ (a token past its lifetime, default
24 h, is answered HTTP 403) and the auto-dial section kept as seeds/xswitch-out-call-tasks.txt
(every route below, its body fields and answer shapes: list endpoints answer strings, the
single-task endpoint integers, writes `{code: 200, message: "success", data}`, the import
`data: "{}"`, start/stop a list of ids).

What the documents do not settle is a setting: numbersPaging ("honour": `/numbers` pages by
`page`/`perPage` like the task list; "ignore": `page`/`perPage` are not documented there, so it
answers its first numbersPageSize rows with the true pageCount/rowCount whatever is asked),
numbersPageSize (50), tokenTtlSeconds (86400). Errors other than the login's are the HTTP status
with `{code, text}` (the login's documented shape). A running task dials its numbers never tried,
also those imported while it runs; stop ends calls in progress as `stop` (cause MANAGER_REQUEST)
and a later start dials only numbers with `outbound_call` "1".

Settings (same dict as the provider): login, password, devKey; optional maxNumbersPerImport
(default 10000, the simulator's), maxNumbersPerTask (default 1000000, the simulator's), timezone
(Asia/Shanghai), numbersPaging, numbersPageSize, tokenTtlSeconds.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

from local.simulators.base import Reply, SimRequest, Simulator

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
LOCK_AFTER = 5
LOCK_SECONDS = 2 * 3600

TASK_FIELDS = {
    "group_name": "",
    "description": "",
    "cid_number": "",
    "cid_name": "",
    "dest_context": "",
    "calling_time": 30,
    "max_caps": 1,
    "max_concurrency": 1,
    "task_start_time": "",
    "task_end_time": "",
    "auto_dial": 0,
    "disable_ring_back": 1,
    "auto_record": 0,
    "group_confirm_key": "",
    "group_confirm_read_timeout": "",
    "group_confirm_file": "",
    "action": "",
    "data": "",
    "context": "",
}
# what the four documented PUT kinds write (修改基本信息 / 修改呼叫设置 / 修改呼叫确认 / 修改接通后动作)
WRITABLE = {
    "group_name",
    "description",
    "cid_number",
    "cid_name",
    "dest_context",
    "calling_time",
    "max_caps",
    "max_concurrency",
    "task_start_time",
    "auto_dial",
    "disable_ring_back",
    "auto_record",
    "group_confirm_key",
    "group_confirm_read_timeout",
    "group_confirm_file",
    "action",
    "data",
}
SWITCHES = {"auto_dial", "disable_ring_back", "auto_record"}  # 开关: 0 or 1
INT_FIELDS = {"calling_time", "max_caps", "max_concurrency", "auto_dial", "disable_ring_back", "auto_record"}


@dataclass
class Number:
    id: int
    group_id: int
    dest_number: str
    external_id: str
    created_at: str
    call_status: str = "init"
    outbound_call: str = "1"
    uuid: str = ""
    cause: str = ""
    dtmf: str = ""
    call_start_time: str = ""
    call_answer_time: str = ""
    call_end_time: str = ""
    updated_at: str = ""

    def row(self) -> dict[str, str]:
        return {
            "outbound_call": self.outbound_call,
            "id": str(self.id),
            "dest_number": self.dest_number,
            "dtmf": self.dtmf,
            "cause": self.cause,
            "call_answer_time": self.call_answer_time,
            "call_status": self.call_status,
            "created_at": self.created_at,
            "external_id": self.external_id,
            "group_id": str(self.group_id),
            "updated_at": self.updated_at or self.created_at,
            "call_end_time": self.call_end_time,
            "call_start_time": self.call_start_time,
            "uuid": self.uuid,
            "deleted_at": "",
        }


@dataclass
class Task:
    id: int
    fields: dict[str, Any]
    created_at: str
    updated_at: str
    status: str = "init"
    numbers: list[Number] = field(default_factory=list)
    generation: int = 0  # bumps on every start/stop so an old dialer thread knows to quit


class XSwitchSimulator(Simulator):
    key = "xswitch"

    def register(self) -> None:
        self.tz = ZoneInfo(str(self.settings.get("timezone", "Asia/Shanghai")))
        self.tokens: dict[str, float] = {}
        self.bad_logins = 0
        self.locked_until = 0.0
        self.tasks: dict[int, Task] = {}
        self._next_task = 1
        self._next_number = 1
        self._closed = threading.Event()
        self.route("POST", r"/api/sessions", self._login)
        self.route("GET", r"/api/out_call_tasks", self._list_tasks)
        self.route("POST", r"/api/out_call_tasks", self._create)
        self.route("PUT", r"/api/out_call_tasks", self._start_stop)
        self.route("POST", r"/api/out_call_tasks/clone", self._clone)
        self.route("GET", r"/api/out_call_tasks/(\d+)", self._get)
        self.route("PUT", r"/api/out_call_tasks/(\d+)", self._update)
        self.route("DELETE", r"/api/out_call_tasks/(\d+)", self._delete)
        self.route("POST", r"/api/out_call_tasks/(\d+)/import", self._import)
        self.route("GET", r"/api/out_call_tasks/(\d+)/numbers", self._numbers)
        self.route("GET", r"/api/out_call_tasks/(\d+)/download", self._download)

    def stop(self) -> None:
        self._closed.set()
        super().stop()

    # ---------------------------------------------------------------- helpers

    def now(self) -> str:
        return datetime.now(self.tz).strftime(TIME_FORMAT)

    def expire_tokens(self) -> None:
        """What a session timeout does: every issued token is past its lifetime."""
        with self.lock:
            for token in self.tokens:
                self.tokens[token] = 0.0

    @staticmethod
    def ok(data: Any) -> Reply:
        return Reply(200, {"code": 200, "message": "success", "data": data})

    @staticmethod
    def err(status: int, text: str) -> Reply:
        return Reply(status, {"code": status, "text": text})

    def authed(self, req: SimRequest) -> bool:
        token = req.headers.get("X-XTRA-AUTH-ID") or req.headers.get("x-xtra-auth-id")
        with self.lock:
            return bool(token) and self.tokens.get(str(token), 0.0) > time.time()

    def task(self, match: re.Match[str]) -> Task | None:
        return self.tasks.get(int(match.group(1)))

    def body(self, req: SimRequest) -> dict[str, Any]:
        try:
            data = req.json()
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def _list_row(self, task: Task) -> dict[str, Any]:
        row: dict[str, Any] = {k: str(task.fields.get(k, v)) for k, v in TASK_FIELDS.items()}
        done = sum(1 for n in task.numbers if n.call_status in ("done", "stop"))
        row.update(
            id=str(task.id),
            status=task.status,
            created_at=task.created_at,
            updated_at=task.updated_at,
            deleted_at="",
            total=len(task.numbers),
            done=done,
        )
        return row

    def _single(self, task: Task) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for key, default in TASK_FIELDS.items():
            value = task.fields.get(key, default)
            row[key] = _int(value) if key in INT_FIELDS else value
        done = sum(1 for n in task.numbers if n.call_status in ("done", "stop"))
        row.update(
            id=task.id,
            status=task.status,
            created_at=task.created_at,
            updated_at=task.updated_at,
            deleted_at="",
            done_total=f"{done}/{len(task.numbers)}",
        )
        return row

    # ---------------------------------------------------------------- auth

    def _login(self, req: SimRequest, match: re.Match[str]) -> Reply:
        """login is required; with password, or with dev_key in its place. JSON or form body."""
        content_type = next((v for k, v in req.headers.items() if k.lower() == "content-type"), "")
        if "x-www-form-urlencoded" in content_type:
            body: dict[str, Any] = {k: v[-1] for k, v in parse_qs(req.body.decode()).items()}
        else:
            body = self.body(req)
        with self.lock:
            if time.time() < self.locked_until:
                return self.err(403, "Wrong username or password")  # locked: no token for 2 hours
            dev_key = self.settings.get("devKey")
            known = bool(body.get("login")) and str(body.get("login")) == str(self.settings.get("login"))
            good = known and (
                ("password" in body and body.get("password") == self.settings.get("password"))
                or (bool(dev_key) and body.get("dev_key") == dev_key)
            )
            if not good:
                self.bad_logins += 1
                if self.bad_logins >= LOCK_AFTER:
                    self.locked_until = time.time() + LOCK_SECONDS
                return self.err(403, "Wrong username or password")
            self.bad_logins = 0
            token = str(uuid.uuid4())
            self.tokens[token] = time.time() + float(self.settings.get("tokenTtlSeconds", 86400))
        return Reply(200, {"code": 200, "token": token})

    # ---------------------------------------------------------------- tasks

    def _list_tasks(self, req: SimRequest, match: re.Match[str]) -> Reply:
        if not self.authed(req):
            return self.err(403, "Forbidden")
        q = req.query
        page = max(1, _int(q.get("page", ["1"])[0]))
        per_page = max(1, _int(q.get("perPage", ["500"])[0]))
        name = q.get("name", [""])[0]
        status = q.get("status", [""])[0]
        with self.lock:
            tasks = [
                t
                for t in sorted(self.tasks.values(), key=lambda t: t.id)
                if (not name or name in str(t.fields.get("group_name"))) and (not status or status == t.status)
            ]
            rows = [self._list_row(t) for t in tasks[(page - 1) * per_page : page * per_page]]
        page_count = max(1, -(-len(tasks) // per_page))
        return Reply(200, {"page": page, "data": rows, "rowCount": len(tasks), "pageCount": page_count})

    def _create(self, req: SimRequest, match: re.Match[str]) -> Reply:
        if not self.authed(req):
            return self.err(403, "Forbidden")
        body = self.body(req)
        if not body.get("group_name"):
            return self.err(400, "group_name is required")
        with self.lock:
            task_id = self._next_task
            self._next_task += 1
            now = self.now()
            fields = dict(TASK_FIELDS)
            fields.update(group_name=str(body["group_name"]), description=str(body.get("description", "")))
            self.tasks[task_id] = Task(task_id, fields, now, now)
        return self.ok(task_id)

    def _get(self, req: SimRequest, match: re.Match[str]) -> Reply:
        if not self.authed(req):
            return self.err(403, "Forbidden")
        with self.lock:
            task = self.task(match)
            if task is None:
                return self.err(404, "not found")
            return Reply(200, self._single(task))

    def _update(self, req: SimRequest, match: re.Match[str]) -> Reply:
        if not self.authed(req):
            return self.err(403, "Forbidden")
        body = self.body(req)
        with self.lock:
            task = self.task(match)
            if task is None:
                return self.err(404, "not found")
            unknown = sorted(set(body) - WRITABLE)
            if unknown:
                return self.err(400, f"unknown field: {', '.join(unknown)}")
            for key, value in body.items():
                if key in INT_FIELDS and not str(value).lstrip("-").isdigit():
                    return self.err(400, f"{key} must be an integer")
                if key in SWITCHES and str(value) not in ("0", "1"):
                    return self.err(400, f"{key} is a switch: 0 or 1")
            start_time = body.get("task_start_time")
            if start_time:
                try:
                    datetime.strptime(str(start_time), TIME_FORMAT)
                except ValueError:
                    return self.err(400, "task_start_time is YYYY-MM-DD HH:MM:SS")
            task.fields.update(body)
            task.updated_at = self.now()
        return self.ok(str(task.id))

    def _delete(self, req: SimRequest, match: re.Match[str]) -> Reply:
        if not self.authed(req):
            return self.err(403, "Forbidden")
        with self.lock:
            task = self.tasks.pop(int(match.group(1)), None)
            if task is None:
                return self.err(404, "not found")
            task.generation += 1
        return self.ok(str(task.id))

    def _clone(self, req: SimRequest, match: re.Match[str]) -> Reply:
        if not self.authed(req):
            return self.err(403, "Forbidden")
        body = self.body(req)
        with self.lock:
            source = self.tasks.get(_int(body.get("id")))
            if source is None:
                return self.err(404, "not found")
            if not body.get("group_name"):
                return self.err(400, "group_name is required")
            task_id = self._next_task
            self._next_task += 1
            now = self.now()
            fields = dict(source.fields)
            fields.update(group_name=str(body["group_name"]), description=str(body.get("description", "")))
            clone = Task(task_id, fields, now, now)
            if body.get("is_clone_numbers"):
                for n in source.numbers:
                    clone.numbers.append(Number(self._next_number, task_id, n.dest_number, n.external_id, now))
                    self._next_number += 1
            self.tasks[task_id] = clone
        return self.ok(task_id)

    def _start_stop(self, req: SimRequest, match: re.Match[str]) -> Reply:
        if not self.authed(req):
            return self.err(403, "Forbidden")
        body = self.body(req)
        action = body.get("action")
        ids = body.get("data")
        if action not in ("start", "stop") or not isinstance(ids, list) or not ids:
            return self.err(400, "action must be start or stop and data a list of ids")
        result = []
        with self.lock:
            tasks = [self.tasks.get(_int(i)) for i in ids]
            if any(t is None for t in tasks):
                return self.err(404, "not found")
            now = self.now()
            for task in tasks:
                assert task is not None
                task.generation += 1
                task.updated_at = now
                if action == "start":
                    task.status = "running"
                    task.fields["task_start_time"] = now
                    result.append(
                        {"task_start_time": now, "data_id": str(task.id), "updated_at": now, "status": "running"}
                    )
                    generation = task.generation
                    self.later(0, partial(self._dial, task, generation))
                else:
                    task.status = "stop"
                    task.fields["task_end_time"] = now
                    for n in task.numbers:
                        if n.call_status == "calling":
                            n.call_status = "stop"
                            n.cause = "MANAGER_REQUEST"
                            n.call_end_time = now
                            n.updated_at = now
                    result.append({"status": "stop", "data_id": str(task.id), "updated_at": now, "task_end_time": now})
        return Reply(200, {"data": result, "code": 200, "message": "success"})

    # ---------------------------------------------------------------- numbers

    def _import(self, req: SimRequest, match: re.Match[str]) -> Reply:
        if not self.authed(req):
            return self.err(403, "Forbidden")
        rows = self.body(req).get("data")
        if not isinstance(rows, list):
            return self.err(400, "data must be a list")
        if len(rows) > int(self.settings.get("maxNumbersPerImport", 10000)):
            return self.err(400, "too many numbers in one import")
        with self.lock:
            task = self.task(match)
            if task is None:
                return self.err(404, "not found")
            if len(task.numbers) + len(rows) > int(self.settings.get("maxNumbersPerTask", 1_000_000)):
                return self.err(400, "too many numbers in this task")
            now = self.now()
            for row in rows:
                if not isinstance(row, dict) or set(row) - {"dest_number", "external_id"}:
                    return self.err(400, "each number is an object of dest_number and external_id")
            for row in rows:
                task.numbers.append(
                    Number(
                        self._next_number,
                        task.id,
                        str(row.get("dest_number", "")),
                        str(row.get("external_id", "")),
                        now,
                    )
                )
                self._next_number += 1
        return Reply(200, {"data": "{}", "code": 200, "message": "success"})

    def _numbers(self, req: SimRequest, match: re.Match[str]) -> Reply:
        if not self.authed(req):
            return self.err(403, "Forbidden")
        page = max(1, _int(req.query.get("page", ["1"])[0]))
        per_page = max(1, _int(req.query.get("perPage", ["500"])[0]))
        if self.settings.get("numbersPaging", "honour") == "ignore":
            page, per_page = 1, int(self.settings.get("numbersPageSize", 50))
        with self.lock:
            task = self.task(match)
            if task is None:
                return self.err(404, "not found")
            ordered = sorted(task.numbers, key=lambda n: -n.id)  # newest first, as the seed shows
            rows = [n.row() for n in ordered[(page - 1) * per_page : page * per_page]]
            total = len(ordered)
        page_count = max(1, -(-total // per_page))
        return Reply(200, {"pageCount": page_count, "data": rows, "page": page, "rowCount": total})

    def _download(self, req: SimRequest, match: re.Match[str]) -> Reply:
        if not self.authed(req):
            return self.err(403, "Forbidden")
        header = [
            "任务名称",
            "接通后动作",
            "被叫号码",
            "呼叫状态",
            "呼叫开始时间",
            "呼叫应答时间",
            "呼叫结束时间",
            "总时长",
            "计费时长",
            "挂机原因",
        ]
        with self.lock:
            task = self.task(match)
            if task is None:
                return self.err(404, "not found")
            rows: list[list[str]] = [header]
            for n in sorted(task.numbers, key=lambda n: n.id):
                total = billed = ""
                if n.call_start_time and n.call_end_time:
                    total = str(_seconds(n.call_start_time, n.call_end_time))
                if n.call_answer_time and n.call_end_time:
                    billed = str(_seconds(n.call_answer_time, n.call_end_time))
                rows.append(
                    [
                        str(task.fields.get("group_name")),
                        "放音" if task.fields.get("action") == "playback" else str(task.fields.get("action") or ""),
                        n.dest_number,
                        n.call_status,
                        n.call_start_time,
                        n.call_answer_time,
                        n.call_end_time,
                        total,
                        billed,
                        n.cause,
                    ]
                )
        return Reply(200, rows)

    # ---------------------------------------------------------------- the virtual dialer

    def _dial(self, task: Task, generation: int) -> None:
        """Dial numbers never tried, max_concurrency at a time, while the task runs (numbers imported
        into it meanwhile too), until it is stopped, restarted or deleted."""
        while not self._closed.is_set():
            with self.lock:
                if task.generation != generation or task.status != "running":
                    return
                width = max(1, _int(task.fields.get("max_concurrency")) or 1)
                batch = [n for n in task.numbers if n.outbound_call == "1" and n.call_status == "init"][:width]
                now = self.now()
                for n in batch:
                    n.call_status = "calling"
                    n.outbound_call = "0"
                    n.uuid = str(uuid.uuid4())
                    n.call_start_time = now
                    n.updated_at = now
                outcomes = [self.outcome() for _ in batch]
            if not batch:
                self._closed.wait(0.02)  # a running task dials numbers imported into it later
                continue
            time.sleep(self.dialing.ring_seconds)
            if any(o == "answered" for o in outcomes):
                with self.lock:
                    now = self.now()
                    for n, outcome in zip(batch, outcomes, strict=True):
                        if outcome == "answered" and n.call_status == "calling":
                            n.call_answer_time = now
                time.sleep(self.dialing.talk_seconds)
            with self.lock:
                now = self.now()
                for n, outcome in zip(batch, outcomes, strict=True):
                    if n.call_status != "calling":
                        continue  # stopped meanwhile
                    n.call_status = "done"
                    n.call_end_time = now
                    n.updated_at = now
                    n.cause = {"answered": "NORMAL_CLEARING", "busy": "USER_BUSY"}.get(outcome, "NO_ANSWER")
                    if outcome == "answered" and task.fields.get("group_confirm_key"):
                        n.dtmf = str(task.fields["group_confirm_key"])


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _seconds(start: str, end: str) -> int:
    return int((datetime.strptime(end, TIME_FORMAT) - datetime.strptime(start, TIME_FORMAT)).total_seconds())


SIMULATOR = XSwitchSimulator

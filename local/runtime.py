"""Runs the template's functions as Lambda would import and call them (in this process, or an
isolated invocation in a worker process: local.workers), and keeps a journal of every delivery
(trigger, function, outcome) for /_local/deliveries."""

from __future__ import annotations

import importlib
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from local.template import Function
from local.workers import Invocation, WorkerPool


@dataclass
class LambdaContext:
    """What Lambda passes as `context`; Powertools reads these fields."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_seconds: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self._started)) * 1000))


def import_handler(code_uri: str, handler: str) -> Any:
    """Import the handler as Lambda does: CodeUri on the path, `module.function`."""
    if code_uri not in sys.path:
        sys.path.insert(0, code_uri)
    module_name, func_name = handler.rsplit(".", 1)
    return getattr(importlib.import_module(module_name.replace("/", ".")), func_name)


class Runtime:
    def __init__(
        self, functions: dict[str, Function], journal_size: int = 1000, workers: WorkerPool | None = None
    ) -> None:
        self.functions = functions
        self.workers = workers
        self.by_arn = {fn.arn: fn for fn in functions.values()}
        self.by_name = {fn.name: fn for fn in functions.values()}
        self._handlers: dict[str, Any] = {}
        self._serial: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self.journal: deque[dict[str, Any]] = deque(maxlen=journal_size)

    def handler(self, fn: Function) -> Any:
        with self._lock:
            if fn.logical_id not in self._handlers:
                self._handlers[fn.logical_id] = import_handler(str(fn.code_uri), fn.handler)
            return self._handlers[fn.logical_id]

    def _one_at_a_time(self, fn: Function) -> threading.Lock:
        """A function's invocations in this process run one at a time, as a Lambda sandbox serves one
        request at a time: its module-level objects (Powertools' resolver keeps the route of the
        request in hand in `app.context`) are not shared by two requests at once. Concurrency is the
        worker processes' (local.workers)."""
        with self._lock:
            return self._serial.setdefault(fn.logical_id, threading.Lock())

    def invoke(
        self, fn: Function, event: dict[str, Any], trigger: str, detail: str = "", *, isolated: bool = False
    ) -> Any:
        """Call the function; the journal records the trigger and the outcome. Exceptions propagate.
        `isolated`: in one of the worker processes when the runtime has them (local.workers)."""
        context = LambdaContext(fn.name, fn.arn, fn.memory, fn.timeout)
        entry: dict[str, Any] = {
            "function": fn.name,
            "trigger": trigger,
            "detail": detail,
            "requestId": context.aws_request_id,
            "at": time.time(),
        }
        started = time.monotonic()
        try:
            if isolated and self.workers is not None:
                call = Invocation(fn.name, fn.arn, str(fn.code_uri), fn.handler, fn.memory, fn.timeout)
                result = self.workers.invoke(call, event)
            else:
                with self._one_at_a_time(fn):
                    result = self.handler(fn)(event, context)
        except Exception as exc:
            entry.update(outcome="error", error=f"{type(exc).__name__}: {exc}")
            traceback.print_exc()
            raise
        else:
            entry["outcome"] = "ok"
            if isinstance(result, dict) and result.get("batchItemFailures"):
                entry["batchItemFailures"] = len(result["batchItemFailures"])
            return result
        finally:
            entry["ms"] = round((time.monotonic() - started) * 1000, 1)
            self.journal.append(entry)
